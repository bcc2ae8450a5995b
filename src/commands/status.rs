//! `inframock status`: each service with its runtime, port, PID and health.

use std::process::ExitCode;

use anyhow::Result;

use super::EXIT_NOT_RUNNING;
use crate::config::Settings;
use crate::stack::health;
use crate::stack::state;

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
    let rows = health::of_stack(settings, &stack).await;
    let all_healthy = rows.iter().all(|r| r.health == health::HEALTHY);
    let uptime = crate::stack::up::now_seconds().saturating_sub(stack.started_at);
    if settings.json {
        let document = serde_json::json!({
            "project": stack.project,
            "running": true,
            "healthy": all_healthy,
            "runtime": stack.runtime,
            "region": stack.region,
            "cluster_env": stack.cluster_env,
            "started_at": stack.started_at,
            "uptime_s": uptime,
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
            "project {} (runtime {}, region {}, env {}, up {})",
            stack.project,
            stack.runtime,
            stack.region,
            stack.cluster_env,
            crate::output::human_duration(std::time::Duration::from_secs(uptime))
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
