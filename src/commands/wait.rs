//! `inframock wait [--timeout S]`: returns once the project's stack is ready (`stack::readiness`:
//! it answers, every declared resource exists, and the data of the last run/reset/reload is
//! loaded) — for scripts and CI after `run --detach`, or after `docker compose up` with
//! `--runtime external`. Exit code 4 (with what is still missing) when the time runs out, or at
//! once when a step failed.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::EXIT_NOT_RUNNING;
use crate::cli::WaitArgs;
use crate::config::Settings;
use crate::output::Reporter;
use crate::stack::readiness;

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
        let readiness = readiness::check(settings).await;
        let missing = readiness.missing;
        // A failed step (data files that did not load) stays failed however long one waits.
        if readiness.ready || readiness.failed || Instant::now() >= deadline {
            let ready = readiness.ready;
            let waited = started.elapsed().as_secs_f64();
            if ready {
                step.done(format!("ready after {waited:.1} s"));
            } else if readiness.failed {
                step.fail(format!("not ready: {}", missing.join("; ")));
            } else {
                step.fail(format!(
                    "not ready after {} s (--timeout): {}",
                    args.timeout,
                    missing.join("; ")
                ));
            }
            if settings.json {
                let document = serde_json::json!({"ready": ready, "waited_s": (waited * 10.0).round() / 10.0, "missing": missing, "steps": readiness.steps});
                if ready {
                    crate::output::print_json(document);
                } else {
                    crate::output::print_json_failure(
                        document,
                        crate::output::ErrorCode::NotRunning,
                        format!("not ready: {}", missing.join("; ")),
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
