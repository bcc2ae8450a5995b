//! `inframock status`: each service with its runtime, port, PID and health.

use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use super::EXIT_NOT_RUNNING;
use crate::cli::RuntimeKind;
use crate::config::Settings;
use crate::stack::runtime;
use crate::stack::state;
use crate::stack::up::probe_for;
use crate::stack::ServiceName;

/// One row of the status table.
#[derive(Debug, Serialize)]
pub struct ServiceStatus {
    pub service: ServiceName,
    /// Its kind: the AWS engine (`moto`, `ministack`, ...) or the preset (`redis`, `memcached`, ...).
    pub kind: String,
    /// The version it reports, when it can be told.
    pub version: Option<String>,
    pub runtime: RuntimeKind,
    pub url: String,
    pub port: u16,
    pub pid: Option<u32>,
    /// Container id (docker runtime).
    pub container: Option<String>,
    /// The process or container exists, is ours and runs.
    pub running: bool,
    /// "healthy", or why not.
    pub health: String,
}

/// Prints the status; exit code 4 when nothing runs or a service is unhealthy.
pub async fn execute(settings: &Settings) -> Result<ExitCode> {
    let Some(stack) = state::read(&settings.state_dir())? else {
        if settings.json {
            crate::output::print_json_failure(
                serde_json::json!({"project": settings.project_name, "running": false, "services": []}),
                crate::output::ErrorCode::NotRunning,
                format!("no stack is running for project {}", settings.project_name),
            );
        } else {
            outln!(
                "no stack is running for project {} (start one with `inframock run`)",
                settings.project_name
            );
        }
        return Ok(ExitCode::from(EXIT_NOT_RUNNING));
    };
    let mut rows = Vec::new();
    for record in &stack.services {
        let running = runtime::is_running(record, &stack.project).await;
        let kind = crate::stack::lifecycle::kind_of(settings, record);
        let version = if running {
            crate::stack::version::of_service(settings, record, &kind).await
        } else {
            None
        };
        let health = if running {
            match probe_for(settings, record).check().await {
                Ok(()) => "healthy".to_string(),
                Err(e) => format!("unhealthy: {e}"),
            }
        } else {
            "not running (stale record; `inframock stop` cleans it up)".to_string()
        };
        rows.push(ServiceStatus {
            service: record.name.clone(),
            kind: kind.id.clone(),
            version,
            runtime: record.runtime,
            url: record.url.clone(),
            port: record.port,
            pid: record.pid,
            container: record.container.clone(),
            running,
            health,
        });
    }
    let all_healthy = rows.iter().all(|r| r.health == "healthy");
    if settings.json {
        let document = serde_json::json!({
            "project": stack.project,
            "running": true,
            "healthy": all_healthy,
            "runtime": stack.runtime,
            "region": stack.region,
            "cluster_env": stack.cluster_env,
            "started_at": stack.started_at,
            "services": rows,
        });
        if all_healthy {
            crate::output::print_json(document);
        } else {
            crate::output::print_json_failure(
                document,
                crate::output::ErrorCode::NotRunning,
                "a service is not healthy (see data.services)",
            );
        }
    } else {
        outln!(
            "project {} (runtime {}, region {}, env {})",
            stack.project,
            stack.runtime,
            stack.region,
            stack.cluster_env
        );
        let url_width = crate::output::column_width(rows.iter().map(|r| r.url.as_str()), 24);
        outln!(
            "{:<7} {:<22} {:<9} {:<url_width$} {:>6} {:>12}  HEALTH",
            "SERVICE",
            "KIND",
            "RUNTIME",
            "URL",
            "PORT",
            "PID/ID"
        );
        for row in &rows {
            let kind = match &row.version {
                Some(version) => format!("{} {version}", row.kind),
                None => row.kind.clone(),
            };
            outln!(
                "{:<7} {:<22} {:<9} {:<url_width$} {:>6} {:>12}  {}",
                row.service.as_str(),
                kind,
                row.runtime.to_string(),
                row.url,
                row.port,
                row.pid
                    .map(|p| p.to_string())
                    .or_else(|| row
                        .container
                        .as_ref()
                        .map(|c| c[..12.min(c.len())].to_string()))
                    .unwrap_or_else(|| "-".into()),
                row.health
            );
        }
    }
    Ok(if all_healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOT_RUNNING)
    })
}
