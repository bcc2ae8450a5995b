//! Is the stack ready for its users? One answer for `inframock wait` and the dashboard's
//! `GET /health/ready`: every recorded service runs and answers, every declared resource exists,
//! and the steps of the last `run`, `reset` or `reload-data` (services, resources, data) are done —
//! recorded in `.inframock/readiness.json` as each step starts and ends. A stack started elsewhere
//! (`--runtime external`, compose) has no steps recorded: its services and resources decide.
//!
//! Unlike a health check that says "up" while the init scripts still run, this is not ready while
//! the data folder loads, and a step that failed (data files that did not load) keeps it not ready
//! until a later run of that step succeeds.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::aws::Endpoint;
use crate::cli::RuntimeKind;
use crate::config::Settings;
use crate::stack::health::ServiceStatus;
use crate::stack::state;

/// File name of the steps record inside `.inframock/`.
pub const READINESS_FILE: &str = "readiness.json";

/// The steps that make a stack ready, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// The services are started (or reused) and answer.
    Services,
    /// Every declared table, bucket, queue and topic exists.
    Resources,
    /// The state kept by `[stack] persist = true` (or `snapshot load`) is loaded.
    Snapshot,
    /// The data folder is loaded.
    Data,
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    Running,
    Done,
    /// Not wanted this time (`--no-populate`, no data folder).
    Skipped,
    Failed,
}

/// One step's last known state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub state: StepState,
    /// What it did or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Seconds since the Unix epoch.
    pub at: u64,
}

/// The record of the steps.
pub type Steps = BTreeMap<Step, StepRecord>;

/// Records that `step` is in `state` (the file is replaced whole, so a reader never sees half of
/// it). A `run` starts by forgetting the steps of earlier commands: `begin_run`.
pub fn mark(state_dir: &Path, step: Step, state: StepState, detail: Option<String>) {
    let mut steps = read_steps(state_dir);
    steps.insert(
        step,
        StepRecord {
            state,
            detail,
            at: super::up::now_seconds(),
        },
    );
    write_steps(state_dir, &steps);
}

/// A `run` begins: the steps of earlier commands no longer say anything.
pub fn begin_run(state_dir: &Path) {
    write_steps(state_dir, &Steps::new());
    mark(state_dir, Step::Services, StepState::Running, None);
}

/// The recorded steps (none when nothing was recorded or the record cannot be read).
pub fn read_steps(state_dir: &Path) -> Steps {
    std::fs::read_to_string(state_dir.join(READINESS_FILE))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

fn write_steps(state_dir: &Path, steps: &Steps) {
    // Best effort: readiness is a report; a folder that cannot be written shows as not ready.
    let Ok(text) = serde_json::to_string_pretty(steps) else {
        return;
    };
    let temporary = state_dir.join(format!("{READINESS_FILE}.tmp"));
    if std::fs::write(&temporary, text).is_ok() {
        let _ = std::fs::rename(&temporary, state_dir.join(READINESS_FILE));
    }
}

/// Whether the stack is ready, and if not, what is missing.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// What is not there yet, one sentence each (empty when ready).
    pub missing: Vec<String>,
    /// A recorded step failed: waiting longer will not help until the step runs again.
    pub failed: bool,
    /// The recorded steps of the last `run`, `reset` or `reload-data`.
    pub steps: Steps,
}

/// Asks the stack: steps, services, resources (in that order; the first that is missing
/// something answers).
pub async fn check(settings: &Settings) -> Readiness {
    check_asked(settings, None).await
}

/// [`check`] with the recorded services already asked (the dashboard's Stack page asks them for
/// its table, and need not probe them twice).
pub async fn check_with(settings: &Settings, asked: &[ServiceStatus]) -> Readiness {
    check_asked(settings, Some(asked)).await
}

async fn check_asked(settings: &Settings, asked: Option<&[ServiceStatus]>) -> Readiness {
    let state_dir = settings.state_dir();
    let steps = read_steps(&state_dir);
    let mut missing = Vec::new();
    let mut failed = false;
    for (step, record) in &steps {
        let detail = record
            .detail
            .as_deref()
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        match record.state {
            StepState::Done | StepState::Skipped => {}
            StepState::Running => {
                missing.push(format!("{} still running{detail}", step_name(*step)))
            }
            StepState::Failed => {
                failed = true;
                missing.push(format!("{} failed{detail}", step_name(*step)));
            }
        }
    }
    if missing.is_empty() {
        missing = services_and_resources(settings, asked).await;
    }
    Readiness {
        ready: missing.is_empty(),
        missing,
        failed,
        steps,
    }
}

fn step_name(step: Step) -> &'static str {
    match step {
        Step::Services => "starting the services",
        Step::Resources => "creating the resources",
        Step::Snapshot => "loading the snapshot",
        Step::Data => "loading the data folder",
    }
}

/// Services that do not run or answer, resources that do not exist (empty: all there).
async fn services_and_resources(
    settings: &Settings,
    asked: Option<&[ServiceStatus]>,
) -> Vec<String> {
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
            let fresh;
            let rows = match asked {
                Some(rows) => rows,
                None => {
                    fresh = super::health::of_stack(settings, stack).await;
                    &fresh[..]
                }
            };
            for row in rows {
                if !row.running {
                    missing.push(format!("{} is not running", row.service));
                } else if row.health != super::health::HEALTHY {
                    let why = row.health.trim_start_matches("unhealthy: ");
                    missing.push(format!("{} does not answer yet ({why})", row.service));
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
    let inventory = crate::inventory::inspect_all(
        &clients,
        &settings.stack,
        &settings.resource_vars(runtime),
        crate::inventory::Counting::Quick,
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_forgets_earlier_steps_and_each_mark_replaces_its_step() {
        let dir = tempfile::tempdir().expect("temp dir");
        mark(dir.path(), Step::Data, StepState::Failed, Some("x".into()));
        begin_run(dir.path());
        let steps = read_steps(dir.path());
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[&Step::Services].state, StepState::Running);
        mark(dir.path(), Step::Services, StepState::Done, None);
        mark(
            dir.path(),
            Step::Data,
            StepState::Done,
            Some("1 file".into()),
        );
        let steps = read_steps(dir.path());
        assert_eq!(steps[&Step::Services].state, StepState::Done);
        assert_eq!(steps[&Step::Data].detail.as_deref(), Some("1 file"));
        let text = std::fs::read_to_string(dir.path().join(READINESS_FILE)).expect("file");
        assert!(
            text.contains("\"services\"") && text.contains("\"done\""),
            "{text}"
        );
    }
}
