//! The Data page: the last load of the data folder (per experiment: items, objects, bytes,
//! unchanged, failed; every file that failed with its reason) and a button that runs
//! `inframock reload-data` — the same command, as a process of this binary — whose progress shows
//! live through the readiness step `data`.

use std::fmt::Write;

use hyper::StatusCode;

use super::layout::{escape, html_table, Page};
use super::{Context, Reply};
use crate::data::session::LAST_LOAD_FILE;
use crate::output::{human_age, human_bytes};
use crate::stack::readiness::{self, Step, StepState};

/// `GET /data`.
pub async fn page(context: &Context) -> Reply {
    let state_dir = context.settings.state_dir();
    let mut live = String::from("<h2>Data</h2>");
    let step = readiness::read_steps(&state_dir).remove(&Step::Data);
    let _ = match &step {
        Some(record) => write!(
            live,
            "<p>data folder <code>{}</code>: <b id=\"data-state\">{}</b> {} ({})</p>",
            escape(&context.settings.data_path.display().to_string()),
            state_word(record.state),
            escape(record.detail.as_deref().unwrap_or("")),
            human_age(crate::stack::up::now_seconds().saturating_sub(record.at))
        ),
        None => write!(
            live,
            "<p>data folder <code>{}</code>: <b id=\"data-state\">not loaded by this stack yet</b></p>",
            escape(&context.settings.data_path.display().to_string())
        ),
    };
    let last: Option<serde_json::Value> = std::fs::read_to_string(state_dir.join(LAST_LOAD_FILE))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    match last {
        None => live.push_str("<p>No load recorded yet.</p>"),
        Some(last) => {
            let report = &last["report"];
            let number =
                |value: &serde_json::Value, field: &str| value[field].as_u64().unwrap_or(0);
            let rows: Vec<Vec<String>> = report["experiments"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|e| {
                    vec![
                        escape(e["experiment"].as_str().unwrap_or("")),
                        number(e, "items").to_string(),
                        number(e, "objects").to_string(),
                        human_bytes(number(e, "bytes")),
                        number(e, "unchanged").to_string(),
                        number(e, "failed").to_string(),
                    ]
                })
                .collect();
            let _ = write!(
                live,
                "<h3>Last load</h3><p>finished {}</p>{}",
                human_age(
                    crate::stack::up::now_seconds().saturating_sub(number(&last, "finished_at"))
                ),
                html_table(
                    "experiments",
                    &[
                        "experiment",
                        "items",
                        "objects",
                        "bytes",
                        "unchanged",
                        "failed"
                    ],
                    &rows
                )
            );
            let files: Vec<Vec<String>> = report["files"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|f| {
                    let result = f["result"].as_str().unwrap_or("");
                    let class = if result == "failed" { "bad" } else { "" };
                    let why = f["error"]
                        .as_str()
                        .or_else(|| f["why"].as_str())
                        .unwrap_or("");
                    vec![
                        escape(f["experiment"].as_str().unwrap_or("")),
                        escape(f["file"].as_str().unwrap_or("")),
                        escape(f["target"].as_str().unwrap_or("")),
                        format!("<span class=\"{class}\">{}</span>", escape(result)),
                        escape(why),
                    ]
                })
                .collect();
            live.push_str(&html_table(
                "files",
                &["experiment", "file", "into", "result", "why"],
                &files,
            ));
        }
    }
    Reply::Page(Page {
        section: "/data",
        title: "Data".into(),
        live,
        controls: "<form method=\"post\" action=\"/data/reload\" id=\"reload\">\
<button>reload the data folder</button> (what <code>inframock reload-data</code> does: only what changed is written)</form>"
            .into(),
    })
}

fn state_word(state: StepState) -> &'static str {
    match state {
        StepState::Running => "loading",
        StepState::Done => "loaded",
        StepState::Skipped => "skipped",
        StepState::Failed => "failed",
    }
}

/// `POST /data/reload`: starts `inframock reload-data` for this project; its progress shows on
/// the page (the readiness step), its output goes to `.inframock/logs/dashboard-reload.log`.
pub async fn reload(context: &Context) -> Reply {
    let settings = &context.settings;
    let running = readiness::read_steps(&settings.state_dir())
        .get(&Step::Data)
        .is_some_and(|r| r.state == StepState::Running);
    if running {
        return Reply::Redirect {
            to: "/data".into(),
            flash: "a load is already running".into(),
        };
    }
    let log_path = settings
        .state_dir()
        .join("logs")
        .join("dashboard-reload.log");
    let started = std::env::current_exe().and_then(|binary| {
        if let Some(folder) = log_path.parent() {
            std::fs::create_dir_all(folder)?;
        }
        let log = std::fs::File::create(&log_path)?;
        let mut command = std::process::Command::new(binary);
        command
            .args(crate::stack::helpers::base_command_line(settings))
            .arg("--data")
            .arg(&settings.data_path)
            .arg("reload-data")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let mut child = command.spawn()?;
        // Reaped in the background so it does not linger as a zombie.
        std::thread::spawn(move || child.wait());
        Ok(())
    });
    match started {
        Ok(()) => Reply::Redirect {
            to: "/data".into(),
            flash: format!("reload started (its output: {})", log_path.display()),
        },
        Err(e) => Reply::Problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not start `inframock reload-data`: {e}"),
        ),
    }
}
