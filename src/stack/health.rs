//! Each recorded service of a stack as `status` and the dashboard show it: kind, version,
//! runtime, where it listens, whether it runs and answers.

use serde::Serialize;

use super::state::StackState;
use super::up::probe_for;
use super::{runtime, ServiceName};
use crate::cli::RuntimeKind;
use crate::config::Settings;

/// The health of a service that runs and answers its probe.
pub const HEALTHY: &str = "healthy";

/// One service of the stack, as it is now.
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
    /// [`HEALTHY`], or why not.
    pub health: String,
}

/// Every recorded service of `stack`, asked now (running, probe, version).
pub async fn of_stack(settings: &Settings, stack: &StackState) -> Vec<ServiceStatus> {
    let mut rows = Vec::new();
    for record in &stack.services {
        let running = runtime::is_running(record, &stack.project).await;
        let kind = super::lifecycle::kind_of(settings, record);
        let version = if running {
            super::version::of_service(settings, record, &kind).await
        } else {
            None
        };
        let health = if running {
            match probe_for(settings, record).check().await {
                Ok(()) => HEALTHY.to_string(),
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
    rows
}
