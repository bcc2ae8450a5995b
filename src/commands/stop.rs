//! `inframock stop`: stop exactly what this project started — the processes recorded in
//! `.inframock/state.json`, and every container labelled with this project.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::StopArgs;
use crate::config::Settings;
use crate::output::Reporter;
use crate::snapshot::persist;
use crate::stack::lifecycle;
use crate::stack::lock::{ProjectLock, LOCK_WAIT};

/// Stops what this project started; stale records are cleaned up with a message. With
/// `[stack] persist = true` the state is saved first, and a failed save stops nothing.
pub async fn execute(
    settings: &Settings,
    args: &StopArgs,
    reporter: &Reporter,
) -> Result<ExitCode> {
    let _lock = ProjectLock::acquire_async(&settings.state_dir(), "stop", LOCK_WAIT).await?;
    if args.no_save {
        if persist::enabled(settings) {
            reporter
                .info("persist: not saving (--no-save); snapshot `persist` keeps the last save");
        }
    } else if let Err(e) = persist::save_before_stop(settings, reporter).await {
        return Err(e.context(
            "persist: the stack's state could not be saved, so nothing was stopped; fix the cause, or stop without saving: `inframock stop --no-save`",
        ));
    }
    let down = lifecycle::down(settings, reporter).await?;
    if settings.json {
        crate::output::print_json(serde_json::to_value(&down)?);
    } else if down.nothing {
        outln!("nothing to stop: no stack is recorded for this project");
    } else if down.external {
        outln!("forgot the external endpoint (nothing of it was started here)");
    } else {
        outln!("stack stopped");
    }
    Ok(ExitCode::SUCCESS)
}
