//! The Queues page: the declared tails with the messages they recorded (newest first), the
//! declared bridges, and the queue worker's latest lines (where a bridge reports its errors).

use std::fmt::Write;

use super::layout::{encode, escape, html_table, pre, Page};
use super::{Context, Reply};
use crate::queues::record::{messages_file, Recorded};
use crate::stack::runtime::local::last_lines;

/// Messages shown per tail.
const MESSAGES_SHOWN: usize = 50;

/// Lines of the worker's log shown.
const LOG_LINES: usize = 20;

/// `GET /queues`.
pub async fn page(context: &Context) -> Reply {
    let settings = &context.settings;
    let state_dir = settings.state_dir();
    let vars = settings.name_vars();
    let mut live = String::from("<h2>Queues</h2>");
    if settings.stack.tails.is_empty() && settings.stack.bridges.is_empty() {
        live.push_str(
            "<p>No tails or bridges are declared: <code>[[tails]]</code> and <code>[[bridges]]</code> in inframock.toml (README, Queue tails and bridges).</p>",
        );
    }
    for tail in &settings.stack.tails {
        let source = match (&tail.queue, &tail.topic) {
            (Some(queue), _) => format!("queue {}", vars.expand(queue)),
            (None, Some(topic)) => format!("topic {}", vars.expand(topic)),
            (None, None) => String::new(),
        };
        let file = messages_file(&state_dir, &tail.name);
        let mut messages: Vec<Recorded> = last_lines(&file, MESSAGES_SHOWN)
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        messages.reverse();
        let rows: Vec<Vec<String>> = messages
            .iter()
            .map(|m| {
                vec![
                    escape(&m.time),
                    escape(m.subject.as_deref().unwrap_or("")),
                    escape(m.group.as_deref().unwrap_or("")),
                    pre(&m.body),
                ]
            })
            .collect();
        let _ = write!(
            live,
            "<h3>Tail {} <small>({})</small></h3><p>recorded in <code>{}</code>; newest first</p>{}",
            escape(&tail.name),
            escape(&source),
            escape(&file.display().to_string()),
            html_table(
                &format!("tail-{}", encode(&tail.name)),
                &["received", "subject", "group", "body"],
                &rows
            )
        );
    }
    if !settings.stack.bridges.is_empty() {
        let rows: Vec<Vec<String>> = settings
            .stack
            .bridges
            .iter()
            .map(|b| {
                vec![
                    escape(&vars.expand(&b.from)),
                    escape(&vars.expand(&b.to)),
                    escape(&b.mapper.display().to_string()),
                    b.max_attempts
                        .unwrap_or(crate::queues::bridge::DEFAULT_MAX_ATTEMPTS)
                        .to_string(),
                    escape(
                        &b.dead_letter
                            .as_deref()
                            .map(|d| vars.expand(d))
                            .unwrap_or_default(),
                    ),
                ]
            })
            .collect();
        let _ = write!(
            live,
            "<h3>Bridges</h3>{}",
            html_table(
                "bridges",
                &["from", "to", "mapper", "max attempts", "dead letter"],
                &rows
            )
        );
    }
    let log = state_dir.join("logs").join("queues.log");
    let lines = last_lines(&log, LOG_LINES);
    if !lines.is_empty() {
        let _ = write!(
            live,
            "<h3>Worker log</h3><p>the last lines of <code>{}</code> (bridge errors show here)</p><div id=\"worker-log\">{}</div>",
            escape(&log.display().to_string()),
            pre(&lines.join("\n"))
        );
    }
    Reply::Page(Page {
        section: "/queues",
        title: "Queues".into(),
        live,
        controls: String::new(),
    })
}
