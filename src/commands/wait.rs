//! `inframock wait [--timeout S]`: returns once the project's stack answers and every declared
//! resource exists — for scripts and CI after `run --detach`, or after `docker compose up` with
//! `--runtime external`. Exit code 4 (with what is still missing) when the time runs out.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::EXIT_NOT_RUNNING;
use crate::aws::Endpoint;
use crate::cli::{RuntimeKind, WaitArgs};
use crate::config::Settings;
use crate::output::Reporter;
use crate::stack::{runtime, state, up::probe_for};

/// How often the stack is asked again.
const POLL: Duration = Duration::from_millis(500);

/// Waits for the stack; 0 when ready, 4 when `--timeout` ran out.
pub async fn execute(
    settings: &Settings,
    args: &WaitArgs,
    reporter: &Reporter,
) -> Result<ExitCode> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout);
    let step = reporter.step("waiting for the stack to answer and its resources to exist");
    loop {
        let missing = missing(settings).await;
        if missing.is_empty() || Instant::now() >= deadline {
            let ready = missing.is_empty();
            let waited = started.elapsed().as_secs_f64();
            if ready {
                step.done(format!("ready after {waited:.1} s"));
            } else {
                step.fail(format!(
                    "not ready after {} s (--timeout): {}",
                    args.timeout,
                    missing.join("; ")
                ));
            }
            if settings.json {
                let document = serde_json::json!({"ready": ready, "waited_s": (waited * 10.0).round() / 10.0, "missing": missing});
                if ready {
                    crate::output::print_json(document);
                } else {
                    crate::output::print_json_failure(
                        document,
                        crate::output::ErrorCode::NotRunning,
                        format!("not ready after {} s: {}", args.timeout, missing.join("; ")),
                    );
                }
            }
            return Ok(if ready {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_NOT_RUNNING)
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What is not there yet (empty: ready): services that do not answer, resources that do not exist.
async fn missing(settings: &Settings) -> Vec<String> {
    let recorded = match state::read(&settings.state_dir()) {
        Ok(recorded) => recorded,
        Err(e) => return vec![e.to_string()],
    };
    let external = settings.runtime == RuntimeKind::External;
    let mut missing = Vec::new();
    match (&recorded, external) {
        (_, true) => {}
        (None, false) => {
            return vec!["no stack recorded for this project (`inframock run --detach` starts one; a stack started elsewhere: --runtime external --endpoint-url URL)".to_string()]
        }
        (Some(stack), false) => {
            for record in &stack.services {
                if !runtime::is_running(record, &stack.project).await {
                    missing.push(format!("{} is not running", record.name));
                } else if let Err(e) = probe_for(settings, record).check().await {
                    missing.push(format!("{} does not answer yet ({e})", record.name));
                }
            }
        }
    }
    if !missing.is_empty() {
        return missing;
    }
    let endpoint = match Endpoint::resolve(settings, recorded.as_ref()) {
        Ok(endpoint) => endpoint,
        Err(e) => return vec![e.to_string()],
    };
    let clients = endpoint.clients().await;
    let runtime = recorded.as_ref().map_or(settings.runtime, |r| r.runtime);
    let inventory =
        crate::inventory::inspect_all(&clients, &settings.stack, &settings.resource_vars(runtime))
            .await;
    for item in inventory {
        if let Some(error) = &item.error {
            missing.push(format!("{} {}: {error}", item.kind, item.name));
        } else if !item.exists {
            missing.push(format!("{} {} does not exist yet", item.kind, item.name));
        }
    }
    missing
}
