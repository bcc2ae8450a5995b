//! `[stack] persist = true`: `stop` saves the stack's state as snapshot `persist`, and the next
//! `run` that starts the AWS engine loads it (before the data folder, which still wins for its
//! own files). `persist_every = N` also saves every N seconds, from a helper process
//! (`snapshot keep`) recorded with the stack like the other helpers.

use std::time::Duration;

use anyhow::Result;

use super::restore::{self, Loaded, Mode};
use super::save::{self, Saved};
use super::{store, Service};
use crate::cli::RuntimeKind;
use crate::config::Settings;
use crate::output::Reporter;
use crate::stack::readiness::{self, Step, StepState};
use crate::stack::state::{self, StackState};
use crate::stack::ServiceName;

/// The name of the snapshot `persist` keeps.
pub const PERSIST_SNAPSHOT: &str = "persist";

/// Whether the stack file asks for persistence.
pub fn enabled(settings: &Settings) -> bool {
    settings.stack.stack.persist
}

/// Saves the running stack as snapshot `persist` (every service it runs).
pub async fn save_now(
    settings: &Settings,
    stack: &StackState,
    reporter: &Reporter,
) -> Result<Saved> {
    save::save(
        settings,
        stack,
        PERSIST_SNAPSHOT,
        &Service::ALL,
        false,
        reporter,
        // A save before a stop, or by the persist helper, runs to its end.
        std::future::pending(),
    )
    .await
}

/// Before `stop` (or a foreground `run` ending): saves the recorded stack if persistence is on and
/// the stack still runs. `Ok(None)`: nothing to save.
pub async fn save_before_stop(settings: &Settings, reporter: &Reporter) -> Result<Option<Saved>> {
    if !enabled(settings) {
        return Ok(None);
    }
    let Some(stack) = state::read(&settings.state_dir())? else {
        return Ok(None);
    };
    if stack.runtime == RuntimeKind::External {
        return Ok(None);
    }
    let Some(aws) = stack.service(&ServiceName::Aws) else {
        return Ok(None);
    };
    let engine_gone = || {
        reporter.warn(format!(
            "persist: the AWS engine had already exited, so its state could not be saved; snapshot `{PERSIST_SNAPSHOT}` keeps the last save"
        ));
        Ok(None)
    };
    if !crate::stack::runtime::is_running(aws, &stack.project).await {
        return engine_gone();
    }
    let saved = match save_now(settings, &stack, reporter).await {
        Ok(saved) => saved,
        // It died between the check and the save (or while saving): nothing of it can be saved.
        Err(_) if !crate::stack::runtime::is_running(aws, &stack.project).await => {
            return engine_gone()
        }
        Err(e) => return Err(e),
    };
    reporter.info(format!(
        "persist: saved the stack's state as snapshot `{PERSIST_SNAPSHOT}` ({}); the next `run` loads it",
        saved.manifest.counts.summary()
    ));
    Ok(Some(saved))
}

/// During `run`, after the resources: loads snapshot `persist` when persistence is on, it exists,
/// and this run started the AWS engine (a stack that was already running holds its state).
pub async fn load_on_run(
    settings: &Settings,
    stack: &StackState,
    aws_started_here: bool,
    reporter: &Reporter,
) -> Result<Option<Loaded>> {
    let state_dir = settings.state_dir();
    if !enabled(settings) || stack.runtime == RuntimeKind::External {
        return Ok(None);
    }
    let exists = store::dir_of(&state_dir, PERSIST_SNAPSHOT)?
        .join(super::manifest::MANIFEST_FILE)
        .is_file();
    if !exists {
        readiness::mark(
            &state_dir,
            Step::Snapshot,
            StepState::Skipped,
            Some("persist: nothing saved yet (the first `stop` saves)".into()),
        );
        return Ok(None);
    }
    if !aws_started_here {
        readiness::mark(
            &state_dir,
            Step::Snapshot,
            StepState::Skipped,
            Some("persist: the stack was already running and holds its state".into()),
        );
        return Ok(None);
    }
    restore::load(
        settings,
        stack,
        PERSIST_SNAPSHOT,
        Mode::Merge,
        None,
        reporter,
    )
    .await
    .map(Some)
}

/// `inframock snapshot keep --every N`, the persist keeper `run` starts with `persist_every`: saves
/// every `every` under the project lock, and ends by itself once the stack is gone (no record, or
/// the AWS engine stopped). A save that fails is logged and tried again next time.
pub async fn keep(settings: &Settings, every: Duration) -> Result<()> {
    let quiet = Reporter { interactive: false };
    let state_dir = settings.state_dir();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        // A command holding the lock longer than LOCK_WAIT (a long load) only costs this save.
        let Ok(_lock) = crate::stack::lock::ProjectLock::acquire_async(
            &state_dir,
            "persist keeper",
            crate::stack::lock::LOCK_WAIT,
        )
        .await
        else {
            eprintln!("warning: the project is busy (another command holds its lock): this save is skipped");
            continue;
        };
        let running = match state::read(&state_dir)? {
            Some(stack) => match stack.service(&ServiceName::Aws) {
                Some(aws) if crate::stack::runtime::is_running(aws, &stack.project).await => {
                    Some(stack)
                }
                _ => None,
            },
            None => None,
        };
        let Some(stack) = running else {
            println!("the stack is gone: the persist keeper ends");
            return Ok(());
        };
        match save_now(settings, &stack, &quiet).await {
            Ok(saved) => println!(
                "saved snapshot `{PERSIST_SNAPSHOT}` in {} ms: {} ({} objects fetched)",
                saved.elapsed_ms,
                saved.manifest.counts.summary(),
                saved.objects_fetched
            ),
            Err(e) => eprintln!(
                "warning: the periodic save failed: {e:#} (tried again in {} s)",
                every.as_secs()
            ),
        }
    }
}
