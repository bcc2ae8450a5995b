//! `inframock reset`: back to the declared state without restarting anything — the engine's state
//! wiped, Redis flushed, mocks and faults cleared, every resource created, the data folder loaded.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;

use crate::cli::ResetArgs;
use crate::config::Settings;
use crate::data::session;
use crate::output::Reporter;
use crate::stack::lifecycle;
use crate::stack::lock::{ProjectLock, LOCK_WAIT};

/// Resets the running stack.
pub async fn execute(
    settings: &Settings,
    args: &ResetArgs,
    reporter: &Reporter,
) -> Result<ExitCode> {
    let _lock = ProjectLock::acquire_async(&settings.state_dir(), "reset", LOCK_WAIT).await?;
    let began = Instant::now();
    let mut stack = lifecycle::running_stack(settings).await?;
    let step = reporter.step("wiping the stack's state");
    let wiped = match lifecycle::wipe(settings, &stack.state).await {
        Ok(wiped) => {
            let mut parts: Vec<String> = wiped
                .services
                .iter()
                .map(|(name, how)| format!("{name} ({how})"))
                .collect();
            if wiped.mock {
                parts.push("mock server".into());
            }
            if wiped.faults {
                parts.push("faults".into());
            }
            step.done(format!("wiped: {}", parts.join(", ")));
            for kept in &wiped.kept {
                reporter.info(kept.clone());
            }
            wiped
        }
        Err(e) => {
            step.fail("the stack's state could not be wiped");
            return Err(e);
        }
    };
    let endpoint = lifecycle::endpoint_of(settings, &stack)?;
    let clients = endpoint.clients().await;
    let ensured = lifecycle::ensure_declared(settings, reporter, &clients, &mut stack).await?;
    // A queue worker restarted for the new queues runs on after this command.
    for item in stack.started.drain(..) {
        item.keep_running();
    }
    let mut exit = ExitCode::SUCCESS;
    let mut data = serde_json::Value::Null;
    if !args.no_data {
        let created = lifecycle::created_tables(&ensured);
        let report = session::load(settings, &clients, &args.load, created, reporter).await?;
        exit = super::data_exit_code(&report);
        data = report.json;
    }
    let elapsed = began.elapsed();
    if settings.json {
        let document = serde_json::json!({
            "wiped": wiped,
            "resources": ensured,
            "data": data,
            "elapsed_ms": elapsed.as_millis() as u64,
        });
        super::print_load_json(document, &data);
    } else {
        outln!("reset in {:.2} s", elapsed.as_secs_f64());
    }
    Ok(exit)
}
