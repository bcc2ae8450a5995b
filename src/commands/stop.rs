//! `inframock stop`: stop exactly what this project started — the processes recorded in
//! `.inframock/state.json` (local runtime), or every container labelled with this project (docker).

use std::process::ExitCode;

use anyhow::{anyhow, Result};

use crate::cli::RuntimeKind;
use crate::config::Settings;
use crate::output::Reporter;
use crate::stack::docker::{engine_address, DockerRuntime};
use crate::stack::local::{stop_recorded, StopOutcome};
use crate::stack::state;
use crate::stack::up::STOP_GRACE;

/// Stops what this project started; stale records are cleaned up with a message.
pub async fn execute(settings: &Settings, reporter: &Reporter) -> Result<ExitCode> {
    let state_dir = settings.state_dir();
    let recorded = state::read(&state_dir)?;
    let mut stopped: Vec<String> = Vec::new();
    let mut gone: Vec<String> = Vec::new();
    match recorded.as_ref().map(|s| s.runtime) {
        Some(RuntimeKind::Docker) => {
            let docker = DockerRuntime::connect(&settings.project_name).await.map_err(|e| {
                anyhow!(
                    "cannot stop the containers: no Docker engine answers at {} ({e}); start Docker and run `inframock stop` again",
                    engine_address()
                )
            })?;
            for (id, _) in docker.list_ours(None).await? {
                docker.remove(&id).await;
                reporter.info(format!("removed container {}", &id[..12.min(id.len())]));
                stopped.push(id);
            }
            docker.remove_network().await;
            if stopped.is_empty() {
                reporter.info("the recorded containers were already gone; record cleaned up");
            }
            // The mock server is a process in every runtime.
            stop_processes(recorded.as_ref(), reporter, &mut stopped, &mut gone);
        }
        Some(_) => stop_processes(recorded.as_ref(), reporter, &mut stopped, &mut gone),
        None => {
            // No record, but containers of this project may exist (a run interrupted while it
            // created them): remove those too.
            if let Ok(docker) = DockerRuntime::connect(&settings.project_name).await {
                for (id, _) in docker.list_ours(None).await.unwrap_or_default() {
                    docker.remove(&id).await;
                    reporter.info(format!("removed container {}", &id[..12.min(id.len())]));
                    stopped.push(id);
                }
                docker.remove_network().await;
            }
            if stopped.is_empty() {
                if settings.json {
                    println!("{}", serde_json::json!({"stopped": [], "already_gone": []}));
                } else {
                    println!("nothing to stop: no stack is recorded for this project");
                }
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    state::remove(&state_dir)?;
    if settings.json {
        println!(
            "{}",
            serde_json::json!({"stopped": stopped, "already_gone": gone})
        );
    } else if recorded.is_some_and(|s| s.runtime == RuntimeKind::External) {
        println!("forgot the external endpoint (nothing of it was started here)");
    } else {
        println!("stack stopped");
    }
    Ok(ExitCode::SUCCESS)
}

/// Stops the recorded processes (local runtime services, and the mock server in any runtime).
fn stop_processes(
    recorded: Option<&state::StackState>,
    reporter: &Reporter,
    stopped: &mut Vec<String>,
    gone: &mut Vec<String>,
) {
    for record in recorded.iter().flat_map(|s| s.services.iter().rev()) {
        if record.runtime != RuntimeKind::Local {
            continue;
        }
        let pid = record.pid.unwrap_or(0);
        match stop_recorded(record, STOP_GRACE) {
            StopOutcome::Stopped => {
                reporter.info(format!("stopped {} (pid {pid})", record.name));
                stopped.push(record.name.to_string());
            }
            StopOutcome::AlreadyGone => {
                reporter.info(format!(
                    "{} (pid {pid}) had already exited; its record is cleaned up",
                    record.name
                ));
                gone.push(record.name.to_string());
            }
        }
    }
}
