//! One load session: walk the data folder, plan, load, report — the data step of `run`, `reset`
//! and `reload-data`.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{anyhow, Result};

use super::discover::{self, drop_conflicting_objects, LoadPlan};
use super::fingerprint::{FingerprintCache, LoadedFiles, CACHE_FILE, LOADED_FILE};
use super::load::{FileOutcome, FileResult, LoadOptions};
use super::rules::Rules;
use super::summary::{apply_showing_progress, render_table, totals, PlainProgress};
use crate::aws::AwsClients;
use crate::cli::LoadArgs;
use crate::config::Settings;
use crate::output::Reporter;
use crate::stack::readiness::{self, Step, StepState};

/// What one load did: the JSON report and how many files failed.
#[derive(Debug)]
pub struct LoadReport {
    pub json: serde_json::Value,
    pub failed: usize,
}

/// The declared services of the running stack, name → URL (what SQL rules run against).
fn running_services(settings: &Settings) -> std::collections::BTreeMap<String, String> {
    let recorded = crate::stack::state::read(&settings.state_dir())
        .ok()
        .flatten();
    recorded
        .iter()
        .flat_map(|stack| stack.services.iter())
        .filter(|record| matches!(record.name, crate::stack::ServiceName::Declared(_)))
        .map(|record| (record.name.to_string(), record.url.clone()))
        .collect()
}

/// One load of the data folder: walk it, plan (with `--dry-run`, print the plan and stop), then
/// load every file and report. `created_tables` are the tables the calling command created (their
/// files are written whatever the record says). Human output is printed here. A real load is a
/// readiness step (`stack::readiness`): running while it loads, then done, or failed with why.
pub async fn load(
    settings: &Settings,
    clients: &AwsClients,
    args: &LoadArgs,
    created_tables: BTreeSet<String>,
    reporter: &Reporter,
) -> Result<LoadReport> {
    if args.dry_run {
        return load_or_decide(settings, clients, args, created_tables, reporter).await;
    }
    let state_dir = settings.state_dir();
    readiness::mark(&state_dir, Step::Data, StepState::Running, None);
    let result = load_or_decide(settings, clients, args, created_tables, reporter).await;
    let (state, detail) = match &result {
        Ok(report) if report.failed == 0 => (StepState::Done, loaded_summary(&report.json)),
        Ok(report) => (
            StepState::Failed,
            format!(
                "{} data file(s) failed to load (`inframock reload-data` says why)",
                report.failed
            ),
        ),
        Err(e) => (StepState::Failed, format!("{e:#}")),
    };
    readiness::mark(&state_dir, Step::Data, state, Some(detail));
    if let Ok(report) = &result {
        save_last_load(&state_dir, &report.json);
    }
    result
}

/// File name, inside `.inframock/`, of the last load's report (what the dashboard's Data page
/// shows).
pub const LAST_LOAD_FILE: &str = "last-load.json";

/// Keeps the report of the last real load (best effort: it is a report, not state).
fn save_last_load(state_dir: &std::path::Path, report: &serde_json::Value) {
    let document = serde_json::json!({
        "finished_at": crate::stack::up::now_seconds(),
        "report": report,
    });
    let temporary = state_dir.join(format!("{LAST_LOAD_FILE}.tmp"));
    if let Ok(text) = serde_json::to_string(&document) {
        if std::fs::write(&temporary, text).is_ok() {
            let _ = std::fs::rename(&temporary, state_dir.join(LAST_LOAD_FILE));
        }
    }
}

/// `12 items, 3 objects written; 2 files unchanged` from a load report's totals.
fn loaded_summary(json: &serde_json::Value) -> String {
    let count = |field: &str| json["total"][field].as_u64().unwrap_or(0);
    format!(
        "{} items, {} objects written; {} files unchanged",
        count("items"),
        count("objects"),
        count("unchanged")
    )
}

async fn load_or_decide(
    settings: &Settings,
    clients: &AwsClients,
    args: &LoadArgs,
    created_tables: BTreeSet<String>,
    reporter: &Reporter,
) -> Result<LoadReport> {
    let rules = Rules::compile(&settings.stack.data.rules, &settings.name_vars())
        .map_err(|e| anyhow!("{}: {e}", settings.stack_origin))?;
    let experiments = match discover::list(&settings.data_path, &args.experiments) {
        Err(discover::DataFolderError::Missing(path)) if !settings.data_named => {
            reporter.info(format!(
                "note: no data folder at {}, nothing to load (create it with one sub-folder per experiment, or point --data at yours)",
                path.display()
            ));
            let json = serde_json::json!({"data": path, "note": "no data folder: nothing to load", "files": []});
            return Ok(LoadReport { json, failed: 0 });
        }
        listed => listed?,
    };
    let mut plan = discover::plan(&experiments, &rules);
    drop_conflicting_objects(&mut plan);
    let files: usize = plan.experiments.iter().map(|e| e.actions.len()).sum();
    reporter.info(format!(
        "{} {} from {} ({} experiment{})",
        if args.dry_run {
            "deciding (dry run, nothing is written)"
        } else {
            "loading"
        },
        if files == 1 {
            "1 file".to_string()
        } else {
            format!("{files} files")
        },
        settings.data_path.display(),
        plan.experiments.len(),
        if plan.experiments.len() == 1 { "" } else { "s" }
    ));
    let state_dir = settings.state_dir();
    if !args.dry_run {
        settings.ensure_state_dir()?;
    }
    let cache = Arc::new(FingerprintCache::load(state_dir.join(CACHE_FILE)));
    let loaded = LoadedFiles::load(state_dir.join(LOADED_FILE));
    let options = LoadOptions {
        force: args.force,
        created_tables,
        services: running_services(settings),
        dry_run: args.dry_run,
    };
    let started = std::time::Instant::now();
    let outcomes = apply_showing_progress(
        clients,
        &plan,
        cache,
        &loaded,
        &options,
        reporter,
        &PlainProgress,
    )
    .await;
    let elapsed = started.elapsed();
    let (rows, total) = totals(&plan, &outcomes);
    if args.dry_run {
        return Ok(dry_run_report(settings, &plan, &outcomes, &total));
    }
    if !settings.json {
        outln!();
        out!("{}", render_table(&rows, &total));
        for experiment in &plan.experiments {
            for skipped in &experiment.skipped {
                outln!(
                    "ignored {}/{} ({})",
                    experiment.id,
                    skipped.file,
                    skipped.reason
                );
            }
        }
        outln!("loaded in {:.2} s", elapsed.as_secs_f64());
    }
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|o| match &o.result {
            FileResult::Failed { error } => Some(format!(
                "{}: {error}",
                settings
                    .data_path
                    .join(&o.experiment)
                    .join(&o.file)
                    .display()
            )),
            _ => None,
        })
        .collect();
    for failure in &failures {
        reporter.warn(failure);
    }
    let json = serde_json::json!({
        "data": settings.data_path,
        "elapsed_ms": elapsed.as_millis() as u64,
        "experiments": rows,
        "total": total,
        "files": outcomes,
        "ignored": plan.experiments.iter().flat_map(|e| e.skipped.iter().map(move |s| serde_json::json!({"experiment": e.id, "file": s.file, "reason": s.reason}))).collect::<Vec<_>>(),
    });
    Ok(LoadReport {
        json,
        failed: failures.len(),
    })
}

/// `--dry-run`: each file with what the load would do (the same decisions, nothing written).
fn dry_run_report(
    settings: &Settings,
    plan: &LoadPlan,
    outcomes: &[FileOutcome],
    total: &super::summary::ExperimentTotals,
) -> LoadReport {
    let failed = outcomes
        .iter()
        .filter(|o| matches!(o.result, FileResult::WouldFail { .. }))
        .count();
    if !settings.json {
        out!("{}", render_dry_run(plan, outcomes));
    }
    let json = serde_json::json!({
        "dry_run": true,
        "data": settings.data_path,
        "total": total,
        "files": outcomes,
        "ignored": plan.experiments.iter().flat_map(|e| e.skipped.iter().map(move |s| serde_json::json!({"experiment": e.id, "file": s.file, "reason": s.reason}))).collect::<Vec<_>>(),
    });
    LoadReport { json, failed }
}

/// The dry run as text: per experiment, each file's verdict (`new`, `changed`, `missing`,
/// `forced`, `unchanged`, `would fail`) and target, then the ignored files.
pub fn render_dry_run(plan: &LoadPlan, outcomes: &[FileOutcome]) -> String {
    let mut text = String::new();
    for experiment in &plan.experiments {
        text.push_str(&format!("{}:\n", experiment.id));
        for outcome in outcomes.iter().filter(|o| o.experiment == experiment.id) {
            let (word, detail) = match &outcome.result {
                FileResult::WouldWrite { verdict } => (verdict.word(), outcome.why.clone()),
                FileResult::Unchanged => ("unchanged", outcome.why.clone()),
                FileResult::WouldFail { error } => ("would fail", error.clone()),
                other => ("?", format!("{other:?}")),
            };
            text.push_str(&format!(
                "  {word:<10}  {} -> {} ({detail})\n",
                outcome.file, outcome.target
            ));
        }
        for skipped in &experiment.skipped {
            text.push_str(&format!(
                "  {:<10}  {} ({})\n",
                "ignore", skipped.file, skipped.reason
            ));
        }
    }
    if plan.experiments.is_empty() {
        text.push_str("no experiment folders found\n");
    }
    text
}
