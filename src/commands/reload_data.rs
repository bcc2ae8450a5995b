//! `inframock reload-data`: ensure resources, then load the data folder into the running stack.
//! Also the data step of `run`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};

use super::EXIT_DATA_FAILED;
use crate::aws::AwsClients;
use crate::cli::{LoadArgs, ReloadArgs, RuntimeKind};
use crate::config::Settings;
use crate::data::discover::{self, drop_conflicting_objects, LoadPlan};
use crate::data::fingerprint::{FingerprintCache, LoadedFiles, CACHE_FILE, LOADED_FILE};
use crate::data::load::{apply, describe_target, LoadOptions};
use crate::data::rules::Rules;
use crate::data::summary::{render_table, totals, BarProgress, PlainProgress};
use crate::output::Reporter;
use crate::resources::ensure_all;
use crate::stack::state;
use crate::stack::ServiceName;

/// Reloads the data folder into the running stack.
pub async fn execute(
    settings: &Settings,
    args: &ReloadArgs,
    reporter: &Reporter,
) -> Result<ExitCode> {
    let recorded = state::read(&settings.state_dir())?;
    let (endpoint, local) = match (&settings.endpoint_url, &recorded) {
        (Some(url), _) if settings.runtime == RuntimeKind::External => (url.clone(), false),
        (_, Some(stack)) => {
            let aws = stack
                .service(ServiceName::Aws)
                .context("the recorded stack has no aws service; run `inframock run` again")?;
            (aws.url.clone(), stack.runtime != RuntimeKind::External)
        }
        (_, None) => {
            return Err(anyhow!(
                "no stack is running for this project; start it with `inframock run --detach` (or use --runtime external --endpoint-url URL)"
            ))
        }
    };
    let clients = AwsClients::new(&endpoint, &settings.region, local).await;
    if !args.load.dry_run {
        let step = reporter.step("checking declared resources");
        match ensure_all(&clients, &settings.stack, &settings.name_vars()).await {
            Ok(ensured) => step.done(super::run::resource_summary(&ensured)),
            Err(e) => {
                step.fail("resources could not be ensured");
                return Err(e);
            }
        }
    }
    let stack_id = recorded
        .as_ref()
        .filter(|_| local)
        .and_then(|stack| stack.instance_id());
    let (report, code) = load_data(
        settings,
        &clients,
        stack_id.as_deref(),
        &args.load,
        reporter,
    )
    .await?;
    if settings.json {
        println!("{report}");
    }
    Ok(code)
}

/// Walks the data folder and loads it (or prints the plan with `--dry-run`). Returns the JSON
/// report and the exit code (3 when some files failed). Human output is printed here.
pub async fn load_data(
    settings: &Settings,
    clients: &AwsClients,
    stack_id: Option<&str>,
    args: &LoadArgs,
    reporter: &Reporter,
) -> Result<(serde_json::Value, ExitCode)> {
    let rules = Rules::compile(&settings.stack.data.rules, &settings.name_vars())
        .map_err(|e| anyhow!("{}: {e}", settings.stack_origin))?;
    let experiments = discover::list(&settings.data_path, &args.experiments)?;
    let mut plan = discover::plan(&experiments, &rules);
    drop_conflicting_objects(&mut plan);
    if args.dry_run {
        if !settings.json {
            print!("{}", render_plan(&plan));
        }
        let report = serde_json::json!({"dry_run": true, "data": settings.data_path, "plan": plan});
        return Ok((report, ExitCode::SUCCESS));
    }
    let files: usize = plan.experiments.iter().map(|e| e.actions.len()).sum();
    reporter.info(format!(
        "loading {} from {} ({} experiment{})",
        if files == 1 {
            "1 file".to_string()
        } else {
            format!("{files} files")
        },
        settings.data_path.display(),
        plan.experiments.len(),
        if plan.experiments.len() == 1 { "" } else { "s" }
    ));
    let state_dir = settings.ensure_state_dir()?;
    let cache = Arc::new(FingerprintCache::load(state_dir.join(CACHE_FILE)));
    let loaded = LoadedFiles::load(state_dir.join(LOADED_FILE));
    let options = LoadOptions {
        force: args.force,
        stack_id: stack_id.map(str::to_string),
    };
    let started = std::time::Instant::now();
    let outcomes = if reporter.interactive {
        let bars = BarProgress::new(&plan);
        let outcomes = apply(clients, &plan, cache, &loaded, &options, &bars).await;
        bars.finish();
        outcomes
    } else {
        apply(clients, &plan, cache, &loaded, &options, &PlainProgress).await
    };
    let elapsed = started.elapsed();
    let (rows, total) = totals(&plan, &outcomes);
    if !settings.json {
        println!();
        print!("{}", render_table(&rows, &total));
        for experiment in &plan.experiments {
            for skipped in &experiment.skipped {
                println!(
                    "ignored {}/{} ({})",
                    experiment.id, skipped.file, skipped.reason
                );
            }
        }
        println!("loaded in {:.2} s", elapsed.as_secs_f64());
    }
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|o| match &o.result {
            crate::data::load::FileResult::Failed { error } => Some(format!(
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
    let report = serde_json::json!({
        "data": settings.data_path,
        "elapsed_ms": elapsed.as_millis() as u64,
        "experiments": rows,
        "total": total,
        "files": outcomes,
        "ignored": plan.experiments.iter().flat_map(|e| e.skipped.iter().map(move |s| serde_json::json!({"experiment": e.id, "file": s.file, "reason": s.reason}))).collect::<Vec<_>>(),
    });
    let code = if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DATA_FAILED)
    };
    Ok((report, code))
}

/// The plan as text for `--dry-run`.
pub fn render_plan(plan: &LoadPlan) -> String {
    let mut text = String::new();
    for experiment in &plan.experiments {
        text.push_str(&format!("{}:\n", experiment.id));
        for action in &experiment.actions {
            text.push_str(&format!(
                "  load    {} -> {}\n",
                action.file,
                describe_target(&action.target)
            ));
        }
        for skipped in &experiment.skipped {
            text.push_str(&format!(
                "  ignore  {} ({})\n",
                skipped.file, skipped.reason
            ));
        }
    }
    if plan.experiments.is_empty() {
        text.push_str("no experiment folders found\n");
    }
    text
}
