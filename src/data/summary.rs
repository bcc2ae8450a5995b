//! Reporting a load: progress while it runs (bars on a TTY, one line per file when piped) and the
//! final table (experiment, items, objects, bytes, unchanged, ignored, failed).

use std::collections::HashMap;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;

use super::discover::LoadPlan;
use super::load::{FileOutcome, FileResult, LoadObserver};
use crate::output::human_bytes;

/// Totals of one experiment.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ExperimentTotals {
    pub experiment: String,
    pub items: usize,
    pub objects: usize,
    pub bytes: u64,
    pub unchanged: usize,
    pub ignored: usize,
    pub failed: usize,
    /// SQL files run (declared PostgreSQL services).
    pub sql: usize,
    /// `--dry-run`: files the load would write.
    #[serde(skip_serializing_if = "is_zero")]
    pub would_write: usize,
}

fn is_zero(count: &usize) -> bool {
    *count == 0
}

/// Totals per experiment (plan order) plus a TOTAL row.
pub fn totals(
    plan: &LoadPlan,
    outcomes: &[FileOutcome],
) -> (Vec<ExperimentTotals>, ExperimentTotals) {
    let mut rows: Vec<ExperimentTotals> = plan
        .experiments
        .iter()
        .map(|e| ExperimentTotals {
            experiment: e.id.clone(),
            ignored: e.skipped.len(),
            ..ExperimentTotals::default()
        })
        .collect();
    let index: HashMap<String, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.experiment.clone(), i))
        .collect();
    for outcome in outcomes {
        let Some(&at) = index.get(&outcome.experiment) else {
            continue;
        };
        let row = &mut rows[at];
        match &outcome.result {
            FileResult::Items { count, .. } => row.items += count,
            FileResult::Uploaded { bytes } => {
                row.objects += 1;
                row.bytes += bytes;
            }
            FileResult::Unchanged => row.unchanged += 1,
            FileResult::Failed { .. } | FileResult::WouldFail { .. } => row.failed += 1,
            FileResult::Ran => row.sql += 1,
            FileResult::WouldWrite { .. } => row.would_write += 1,
        }
    }
    let mut total = ExperimentTotals {
        experiment: "TOTAL".to_string(),
        ..ExperimentTotals::default()
    };
    for row in &rows {
        total.items += row.items;
        total.objects += row.objects;
        total.bytes += row.bytes;
        total.unchanged += row.unchanged;
        total.ignored += row.ignored;
        total.failed += row.failed;
        total.sql += row.sql;
        total.would_write += row.would_write;
    }
    (rows, total)
}

/// The summary table as text.
pub fn render_table(rows: &[ExperimentTotals], total: &ExperimentTotals) -> String {
    let width = rows
        .iter()
        .map(|r| r.experiment.len())
        .chain([10])
        .max()
        .unwrap_or(10);
    // The SQL column only when SQL files are loaded at all.
    let sql = |value: String| {
        if total.sql > 0 {
            format!("  {value:>4}")
        } else {
            String::new()
        }
    };
    let mut text = format!(
        "{:<width$}  {:>7}  {:>7}  {:>10}  {:>9}  {:>7}  {:>6}{}\n",
        "EXPERIMENT",
        "ITEMS",
        "OBJECTS",
        "BYTES",
        "UNCHANGED",
        "IGNORED",
        "FAILED",
        sql("SQL".into())
    );
    for row in rows.iter().chain([total]) {
        text.push_str(&format!(
            "{:<width$}  {:>7}  {:>7}  {:>10}  {:>9}  {:>7}  {:>6}{}\n",
            row.experiment,
            row.items,
            row.objects,
            human_bytes(row.bytes),
            row.unchanged,
            row.ignored,
            row.failed,
            sql(row.sql.to_string())
        ));
    }
    text
}

/// One line for a file's outcome.
pub fn outcome_line(outcome: &FileOutcome) -> String {
    let what = match &outcome.result {
        FileResult::Items { count, format } => format!(
            "{count} item{} ({})",
            if *count == 1 { "" } else { "s" },
            match format {
                super::dynamo_json::JsonFormat::Plain => "plain JSON",
                super::dynamo_json::JsonFormat::Typed => "DynamoDB JSON",
            }
        ),
        FileResult::Uploaded { bytes } => human_bytes(*bytes),
        FileResult::Unchanged => "unchanged".to_string(),
        FileResult::Ran => "SQL ran".to_string(),
        FileResult::Failed { error } => format!("FAILED: {error}"),
        FileResult::WouldWrite { verdict } => format!("would write ({})", verdict.word()),
        FileResult::WouldFail { error } => format!("WOULD FAIL: {error}"),
    };
    format!(
        "{}/{} -> {}: {what} ({})",
        outcome.experiment, outcome.file, outcome.target, outcome.why
    )
}

/// Progress as plain lines on stderr (not a TTY, or `--json`).
pub struct PlainProgress;

impl LoadObserver for PlainProgress {
    fn file_done(&self, outcome: &FileOutcome) {
        eprintln!("{}", outcome_line(outcome));
    }
}

/// Progress as plain lines on stderr, only for the files that failed (a snapshot load: thousands
/// of objects, which the summary counts).
pub struct FailuresOnly;

impl LoadObserver for FailuresOnly {
    fn file_done(&self, outcome: &FileOutcome) {
        if let FileResult::Failed { error } = &outcome.result {
            eprintln!("failed {} -> {}: {error}", outcome.file, outcome.target);
        }
    }
}

/// Applies `plan` with its progress shown: bars on a terminal, `plain` otherwise.
pub async fn apply_showing_progress(
    clients: &crate::aws::AwsClients,
    plan: &LoadPlan,
    cache: std::sync::Arc<super::fingerprint::FingerprintCache>,
    loaded: &super::fingerprint::LoadedFiles,
    options: &super::load::LoadOptions,
    reporter: &crate::output::Reporter,
    plain: &dyn LoadObserver,
) -> Vec<FileOutcome> {
    if reporter.interactive {
        let bars = BarProgress::new(plan);
        let outcomes = super::load::apply(clients, plan, cache, loaded, options, &bars).await;
        bars.finish();
        outcomes
    } else {
        super::load::apply(clients, plan, cache, loaded, options, plain).await
    }
}

/// One progress bar per experiment, counting files; failures are printed above the bars.
pub struct BarProgress {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
}

impl BarProgress {
    /// Bars for every experiment of the plan.
    pub fn new(plan: &LoadPlan) -> BarProgress {
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template(
            "{prefix:<34!} {bar:30.cyan/blue} {pos}/{len} files {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bars = plan
            .experiments
            .iter()
            .map(|e| {
                let bar = multi.add(ProgressBar::new(e.actions.len() as u64));
                bar.set_style(style.clone());
                bar.set_prefix(e.id.clone());
                (e.id.clone(), bar)
            })
            .collect();
        BarProgress { multi, bars }
    }

    /// Finishes every bar.
    pub fn finish(&self) {
        for bar in self.bars.values() {
            bar.finish();
        }
    }
}

impl LoadObserver for BarProgress {
    fn file_done(&self, outcome: &FileOutcome) {
        if let Some(bar) = self.bars.get(&outcome.experiment) {
            bar.inc(1);
            if let FileResult::Failed { .. } = outcome.result {
                let _ = self.multi.println(outcome_line(outcome));
                bar.set_message("(with failures)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::discover::{ExperimentPlan, Skipped};

    #[test]
    fn totals_count_each_kind_of_outcome() {
        let plan = LoadPlan {
            experiments: vec![ExperimentPlan {
                id: "e1".into(),
                path: "/d/e1".into(),
                actions: vec![],
                skipped: vec![Skipped {
                    file: "x".into(),
                    reason: "no rule matches",
                }],
            }],
        };
        let outcome = |result| FileOutcome {
            experiment: "e1".into(),
            file: "f".into(),
            target: "t".into(),
            result,
            why: "because".into(),
        };
        let outcomes = vec![
            outcome(FileResult::Items {
                count: 3,
                format: crate::data::dynamo_json::JsonFormat::Plain,
            }),
            outcome(FileResult::Uploaded { bytes: 100 }),
            outcome(FileResult::Unchanged),
            outcome(FileResult::Failed {
                error: "bad".into(),
            }),
            outcome(FileResult::Ran),
            outcome(FileResult::WouldWrite {
                verdict: crate::data::load::Verdict::New,
            }),
            outcome(FileResult::WouldFail {
                error: "invalid".into(),
            }),
        ];
        let (rows, total) = totals(&plan, &outcomes);
        let expected = ExperimentTotals {
            experiment: "e1".into(),
            items: 3,
            objects: 1,
            bytes: 100,
            unchanged: 1,
            ignored: 1,
            failed: 2,
            sql: 1,
            would_write: 1,
        };
        assert_eq!(rows, std::slice::from_ref(&expected));
        assert_eq!(
            total,
            ExperimentTotals {
                experiment: "TOTAL".into(),
                ..expected
            }
        );
        let table = render_table(&rows, &total);
        assert!(table.starts_with("EXPERIMENT"));
        assert!(table.contains("TOTAL"));
        assert!(outcome_line(&outcomes[3]).ends_with("FAILED: bad (because)"));
    }
}
