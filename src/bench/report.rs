//! A finished run and the ways it is shown: a table for people, JSON for scripts and `--compare`,
//! and a self-contained HTML page (the plot inline, a table of every step; no script, no CDN).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::plot;
use super::stats::{Load, StepResult};
use crate::output::column_width;

/// A run: what was loaded, how, and every step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub url: String,
    pub method: String,
    /// When the run started (RFC 3339, UTC).
    pub started: String,
    /// `closed` (concurrency steps) or `open` (rate steps).
    pub mode: String,
    pub steps: Vec<StepResult>,
}

impl Report {
    /// Whether the steps are scheduled rates (latency corrected for coordinated omission).
    pub fn is_open_loop(&self) -> bool {
        self.mode == "open"
    }

    /// Reads a report written by `--json` (the whole envelope, or just its `data`), for `--compare`.
    pub fn from_json(text: &str) -> Result<Report, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("it is not JSON: {e}"))?;
        let data = match value.get("data") {
            Some(data) if value.get("schema").is_some() => data.clone(),
            _ => value,
        };
        serde_json::from_value(data)
            .map_err(|e| format!("it is not the JSON of `inframock bench --json`: {e}"))
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let open = self.is_open_loop();
        let rows: Vec<Vec<String>> = self.steps.iter().map(cells).collect();
        let widths: Vec<usize> = COLUMNS
            .iter()
            .enumerate()
            .map(|(i, name)| column_width(rows.iter().map(|r| r[i].as_str()), name.len()))
            .collect();
        let mut text = String::new();
        let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
            cells
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        let _ = writeln!(text, "{}", line(&mut COLUMNS.iter().copied()));
        for row in &rows {
            let _ = writeln!(text, "{}", line(&mut row.iter().map(String::as_str)));
        }
        text.push_str(if open {
            "latency counts from when each request was due (coordinated omission corrected); `p99 from send` leaves out the wait before the send\n"
        } else {
            "latency corrected for coordinated omission as wrk does (a stalled answer stands for the requests its worker did not send); `p99 from send` is uncorrected\n"
        });
        text
    }

    /// One HTML file that opens offline: the plot inline and the table of every step.
    pub fn html(&self, earlier: Option<&Report>) -> Result<String, String> {
        let svg = plot::svg(self, earlier)?;
        let mut rows = String::new();
        for step in &self.steps {
            let _ = write!(rows, "<tr data-step=\"{}\">", escape(&step.load.label()));
            for cell in cells(step) {
                let _ = write!(rows, "<td>{}</td>", escape(&cell));
            }
            rows.push_str("</tr>\n");
        }
        let head: String = COLUMNS
            .iter()
            .map(|name| format!("<th>{name}</th>"))
            .collect();
        let compared = earlier.map_or(String::new(), |e| {
            format!(
                "<p>Dashed: the earlier run of {} ({}).</p>",
                escape(&e.started),
                escape(&e.url)
            )
        });
        let mode = if self.is_open_loop() {
            "open loop: requests sent on a schedule; latency counts from when each was due"
        } else {
            "closed loop: each worker sends its next request when the previous answer arrived; latency corrected for coordinated omission as wrk does"
        };
        Ok(format!(
            r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>inframock bench: {method} {url}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin-top: 1rem; }}
th, td {{ border-bottom: 1px solid #ddd; padding: .3rem .7rem; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
.meta {{ color: #555; }}
</style></head>
<body>
<h1>inframock bench</h1>
<p class="meta">{method} {url} · started {started} · {mode}</p>
{compared}
<figure>{svg}</figure>
<table id="steps">
<thead><tr>{head}</tr></thead>
<tbody>
{rows}</tbody></table>
</body></html>
"#,
            method = escape(&self.method),
            url = escape(&self.url),
            started = escape(&self.started),
        ))
    }
}

/// The columns of the table and of the HTML page.
const COLUMNS: [&str; 11] = [
    "load",
    "answers",
    "answers/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
    "p99 from send",
    "statuses",
    "errors",
];

/// One step's cells, in `COLUMNS` order: the leading (corrected) percentiles, then the p99 from
/// the send.
fn cells(step: &StepResult) -> Vec<String> {
    let mut row = vec![
        step.load.label(),
        step.requests.to_string(),
        format!("{:.0}", step.throughput),
    ];
    row.extend(
        step.headline()
            .named()
            .iter()
            .map(|(_, v)| format!("{v:.2}")),
    );
    row.push(format!("{:.2}", step.latency_ms.p99));
    row.push(statuses(step));
    row.push(failures(step));
    row
}

fn statuses(step: &StepResult) -> String {
    step.statuses
        .iter()
        .map(|(status, count)| format!("{status}×{count}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn failures(step: &StepResult) -> String {
    let mut parts: Vec<String> = step
        .errors
        .iter()
        .map(|(kind, count)| format!("{kind}×{count}"))
        .collect();
    if step.timeouts > 0 {
        parts.push(format!("timeout×{}", step.timeouts));
    }
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(" ")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Whether a report's loads are the kind `load` is (a rate run is not compared with a ramp).
pub fn same_mode(report: &Report, load: Load) -> bool {
    report.is_open_loop() == matches!(load, Load::Rate(_))
}

#[cfg(test)]
mod tests {
    use super::super::stats::Recorder;
    use super::*;
    use std::time::Duration;

    fn report(mode: &str, loads: &[Load]) -> Report {
        let steps = loads
            .iter()
            .map(|load| {
                let mut recorder = Recorder::new(matches!(load, Load::Rate(_)));
                for ms in 1..=10 {
                    recorder.answer(
                        200,
                        Duration::from_millis(ms),
                        Some(Duration::from_millis(ms * 2)),
                    );
                }
                recorder.summary(*load, Duration::from_secs(1))
            })
            .collect();
        Report {
            url: "http://127.0.0.1:1/<x>".into(),
            method: "GET".into(),
            started: "2026-11-26T00:00:00Z".into(),
            mode: mode.into(),
            steps,
        }
    }

    #[test]
    fn the_html_page_holds_every_step_and_the_plot_and_nothing_remote() {
        let run = report(
            "closed",
            &[
                Load::Concurrency(1),
                Load::Concurrency(2),
                Load::Concurrency(4),
            ],
        );
        let html = run.html(Some(&run)).unwrap();
        for label in ["c=1", "c=2", "c=4"] {
            assert!(html.contains(&format!("data-step=\"{label}\"")), "{label}");
        }
        assert!(html.contains("<svg"));
        assert!(html.contains("&lt;x&gt;"), "the URL is escaped");
        assert!(
            !html.contains("http://cdn") && !html.contains("<script"),
            "offline"
        );
    }

    #[test]
    fn reports_read_back_from_their_json_envelope_or_bare() {
        let run = report("open", &[Load::Rate(100.0), Load::Rate(200.0)]);
        let bare = serde_json::to_string(&run).unwrap();
        let envelope =
            serde_json::json!({"schema": 1, "command": "bench", "ok": true, "data": run})
                .to_string();
        for text in [bare, envelope] {
            let read = Report::from_json(&text).unwrap();
            assert_eq!(read.steps, run.steps);
            assert!(read.is_open_loop());
        }
        assert!(Report::from_json("{}")
            .unwrap_err()
            .contains("inframock bench --json"));
        assert!(Report::from_json("nope").unwrap_err().contains("not JSON"));
        assert!(run.table().contains("p99 from send"));
        assert!(same_mode(&run, Load::Rate(1.0)) && !same_mode(&run, Load::Concurrency(1)));
    }
}
