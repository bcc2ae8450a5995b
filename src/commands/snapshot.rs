//! `inframock snapshot save|load|list|rm|diff|export|import`.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{SnapshotAction, SnapshotArgs};
use crate::config::Settings;
use crate::output::{human_age, human_bytes, print_json, Reporter};
use crate::snapshot::restore::{self, Mode};
use crate::snapshot::{archive, blocking, diff, save, store, Service};
use crate::stack::lifecycle;
use crate::stack::lock::{ProjectLock, LOCK_WAIT};

/// Runs one snapshot action.
pub async fn execute(
    settings: &Settings,
    args: &SnapshotArgs,
    reporter: &Reporter,
) -> Result<ExitCode> {
    let state_dir = settings.state_dir();
    match &args.action {
        SnapshotAction::Save { name, services } => {
            let chosen = Service::parse_list(services.as_deref()).map_err(anyhow::Error::msg)?;
            store::check_name(name)?;
            settings.ensure_state_dir()?;
            let _lock = ProjectLock::acquire_async(&state_dir, "snapshot save", LOCK_WAIT).await?;
            let stack = lifecycle::running_stack(settings).await?;
            let saved = save::save(
                settings,
                &stack.state,
                name,
                &chosen,
                services.is_some(),
                reporter,
                crate::signals::stop_requested(),
            )
            .await?;
            if settings.json {
                print_json(serde_json::to_value(&saved)?);
            } else {
                let counts = &saved.manifest.counts;
                outln!(
                    "saved snapshot {} in {:.2} s: {} objects ({}, {} distinct contents), {} items, {} messages, {} Redis keys",
                    saved.name,
                    saved.elapsed_ms as f64 / 1000.0,
                    counts.objects,
                    human_bytes(counts.object_bytes),
                    counts.contents,
                    counts.items,
                    counts.messages,
                    counts.redis_keys
                );
                for note in &saved.manifest.notes {
                    outln!("note: {note}");
                }
                if !saved.tables_without_stream.is_empty()
                    && !crate::snapshot::persist::enabled(settings)
                {
                    let (them, they) = match saved.tables_without_stream.len() {
                        1 => ("it", "it"),
                        _ => ("them", "they"),
                    };
                    outln!(
                        "hint: {} had no stream, so this save read {them} whole to see whether {they} changed; with `[stack] persist = true` in inframock.toml, declared tables get a stream and a save reads again only the tables written since the last",
                        plural_tables(&saved.tables_without_stream),
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SnapshotAction::Load {
            name,
            replace,
            merge: _,
            services,
        } => {
            let only = match services {
                Some(list) => Some(Service::parse_list(Some(list)).map_err(anyhow::Error::msg)?),
                None => None,
            };
            let mode = if *replace { Mode::Replace } else { Mode::Merge };
            let _lock = ProjectLock::acquire_async(&state_dir, "snapshot load", LOCK_WAIT).await?;
            let stack = lifecycle::running_stack(settings).await?;
            let loaded = restore::load(
                settings,
                &stack.state,
                name,
                mode,
                only.as_deref(),
                reporter,
            )
            .await?;
            let failed = loaded.failed.len();
            if settings.json {
                let document = serde_json::to_value(&loaded)?;
                if failed == 0 {
                    print_json(document);
                } else {
                    crate::output::print_json_failure(
                        document,
                        crate::output::ErrorCode::DataFailed,
                        format!("{failed} file(s) of snapshot {name} failed to load; everything else loaded"),
                    );
                }
            } else {
                outln!(
                    "loaded snapshot {} ({}, saved from {}) in {:.2} s: {} objects written, {} unchanged; {} items; {} messages; {} Redis keys",
                    loaded.name,
                    match loaded.mode {
                        Mode::Merge => "merged",
                        Mode::Replace => "replaced",
                    },
                    loaded.saved_from,
                    loaded.elapsed_ms as f64 / 1000.0,
                    loaded.objects_written,
                    loaded.objects_unchanged,
                    loaded.items,
                    loaded.messages,
                    loaded.redis_keys
                );
                for outcome in &loaded.failed {
                    if let crate::data::load::FileResult::Failed { error } = &outcome.result {
                        reporter.warn(format!("{} -> {}: {error}", outcome.file, outcome.target));
                    }
                }
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(super::EXIT_DATA_FAILED)
            })
        }
        SnapshotAction::List => {
            let listed = store::list(&state_dir);
            if settings.json {
                print_json(serde_json::json!({ "snapshots": listed }));
                return Ok(ExitCode::SUCCESS);
            }
            if listed.is_empty() {
                outln!("no snapshots yet; `inframock snapshot save NAME` saves the running stack's state");
            }
            let now = crate::stack::up::now_seconds();
            for snapshot in listed {
                match (&snapshot.counts, &snapshot.problem) {
                    (Some(counts), _) => outln!(
                        "{:<20} {:>12}  {:<10} {} objects, {} items, {} messages, {} keys  ({})",
                        snapshot.name,
                        snapshot
                            .created_at
                            .map_or_else(String::new, |t| human_age(now.saturating_sub(t))),
                        snapshot.engine.as_deref().unwrap_or("?"),
                        counts.objects,
                        counts.items,
                        counts.messages,
                        counts.redis_keys,
                        human_bytes(snapshot.bytes)
                    ),
                    (None, problem) => outln!(
                        "{:<20} unreadable: {}",
                        snapshot.name,
                        problem.as_deref().unwrap_or("no manifest")
                    ),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SnapshotAction::Rm { name } => {
            let _lock = ProjectLock::acquire_async(&state_dir, "snapshot rm", LOCK_WAIT).await?;
            store::remove(&state_dir, name)?;
            if settings.json {
                print_json(serde_json::json!({ "removed": name }));
            } else {
                outln!("removed snapshot {name}");
            }
            Ok(ExitCode::SUCCESS)
        }
        SnapshotAction::Diff { from, to } => {
            let from_dir = store::existing(&state_dir, from)?;
            let to_dir = store::existing(&state_dir, to)?;
            let found = blocking(move || diff::diff(&from_dir, &to_dir)).await?;
            if settings.json {
                print_json(serde_json::json!({ "same": found.is_empty(), "diff": found }));
            } else {
                out!("{}", diff::render(&found, 20));
            }
            Ok(ExitCode::SUCCESS)
        }
        SnapshotAction::Export { name, file } => {
            let dir = store::existing(&state_dir, name)?;
            let (target, exported) = (file.clone(), name.clone());
            let bytes = blocking(move || archive::export(&dir, &exported, &target)).await?;
            if settings.json {
                print_json(serde_json::json!({ "snapshot": name, "file": file, "bytes": bytes }));
            } else {
                outln!(
                    "exported snapshot {name} to {} ({}); `inframock snapshot import {}` adds it elsewhere",
                    file.display(),
                    human_bytes(bytes),
                    file.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SnapshotAction::Keep { every } => {
            crate::snapshot::persist::keep(settings, std::time::Duration::from_secs(*every))
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        SnapshotAction::Import { file, name, force } => {
            settings.ensure_state_dir()?;
            std::fs::create_dir_all(store::root(&state_dir))?;
            let _lock =
                ProjectLock::acquire_async(&state_dir, "snapshot import", LOCK_WAIT).await?;
            let (file, rename, force, importing_into) =
                (file.clone(), name.clone(), *force, state_dir.clone());
            let shown = file.display().to_string();
            let (imported, dir) =
                blocking(move || archive::import(&importing_into, &file, rename.as_deref(), force))
                    .await?;
            if settings.json {
                print_json(serde_json::json!({ "imported": imported, "path": dir }));
            } else {
                outln!(
                    "imported snapshot {imported} from {shown} (verified); `inframock snapshot load {imported}` loads it"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// "table a" or "3 tables (a, b, c)".
fn plural_tables(names: &[String]) -> String {
    match names {
        [one] => format!("table {one}"),
        many => format!("{} tables ({})", many.len(), many.join(", ")),
    }
}
