//! `inframock stop`: stop exactly the processes recorded in `.inframock/state.json`.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::RuntimeKind;
use crate::config::Settings;
use crate::output::Reporter;
use crate::stack::local::{stop_recorded, StopOutcome};
use crate::stack::state;
use crate::stack::up::STOP_GRACE;

/// Stops what this project started; stale records are cleaned up with a message.
pub fn execute(settings: &Settings, reporter: &Reporter) -> Result<ExitCode> {
    let state_dir = settings.state_dir();
    let Some(stack) = state::read(&state_dir)? else {
        if settings.json {
            println!("{}", serde_json::json!({"stopped": [], "already_gone": []}));
        } else {
            println!("nothing to stop: no stack is recorded for this project");
        }
        return Ok(ExitCode::SUCCESS);
    };
    let mut stopped = Vec::new();
    let mut gone = Vec::new();
    for record in stack.services.iter().rev() {
        if record.runtime != RuntimeKind::Local {
            continue;
        }
        match stop_recorded(record, STOP_GRACE) {
            StopOutcome::Stopped => {
                reporter.info(format!(
                    "stopped {} (pid {})",
                    record.name,
                    record.pid.unwrap_or(0)
                ));
                stopped.push(record.name.as_str());
            }
            StopOutcome::AlreadyGone => {
                reporter.info(format!(
                    "{} (pid {}) had already exited; its record is cleaned up",
                    record.name,
                    record.pid.unwrap_or(0)
                ));
                gone.push(record.name.as_str());
            }
        }
    }
    state::remove(&state_dir)?;
    if settings.json {
        println!(
            "{}",
            serde_json::json!({"stopped": stopped, "already_gone": gone})
        );
    } else if stack.runtime == RuntimeKind::External {
        println!("forgot the external endpoint (nothing of it was started here)");
    } else {
        println!("stack stopped");
    }
    Ok(ExitCode::SUCCESS)
}
