//! The Stack page: each service with kind and version, runtime, URL, PID or container and
//! health; the readiness steps and what is missing.

use std::fmt::Write;
use std::time::Duration;

use super::layout::{escape, Page};
use super::{Context, Reply};
use crate::config::Settings;
use crate::output::human_duration;
use crate::stack::health::{self, HEALTHY};
use crate::stack::readiness::{self, StepState};
use crate::stack::state;

/// What the Stack page shows (and `/api/stack` gives as JSON).
#[derive(Debug, serde::Serialize)]
pub struct Overview {
    pub project: String,
    /// `None` when no stack is recorded for the project.
    pub stack: Option<StackOverview>,
    pub readiness: readiness::Readiness,
}

/// The recorded stack, asked now.
#[derive(Debug, serde::Serialize)]
pub struct StackOverview {
    pub runtime: crate::cli::RuntimeKind,
    pub region: String,
    pub cluster_env: String,
    pub uptime_s: u64,
    pub services: Vec<health::ServiceStatus>,
}

/// Asks the stack now.
pub async fn overview(settings: &Settings) -> Overview {
    let recorded = state::read(&settings.state_dir()).ok().flatten();
    let stack = match &recorded {
        Some(stack) => Some(StackOverview {
            runtime: stack.runtime,
            region: stack.region.clone(),
            cluster_env: stack.cluster_env.clone(),
            uptime_s: crate::stack::up::now_seconds().saturating_sub(stack.started_at),
            services: health::of_stack(settings, stack).await,
        }),
        None => None,
    };
    let readiness = match &stack {
        Some(stack) => readiness::check_with(settings, &stack.services).await,
        None => readiness::check(settings).await,
    };
    Overview {
        project: settings.project_name.clone(),
        stack,
        readiness,
    }
}

/// `GET /`.
pub async fn page(context: &Context) -> Reply {
    let overview = overview(&context.settings).await;
    Reply::Page(Page {
        section: "/",
        title: "Stack".into(),
        live: render(&overview),
        controls: String::new(),
    })
}

fn render(overview: &Overview) -> String {
    let mut html = String::new();
    let readiness = &overview.readiness;
    let (class, word) = if readiness.ready {
        ("ok", "ready")
    } else {
        ("bad", "not ready")
    };
    let _ = write!(
        html,
        "<h2>Stack <span class=\"ready {class}\" id=\"readiness\">{word}</span></h2>"
    );
    match &overview.stack {
        None => html.push_str(
            "<p>No stack runs for this project: start one with <code>inframock run</code>.</p>",
        ),
        Some(stack) => {
            let _ = write!(
                html,
                "<p>runtime <b>{}</b> · region <b>{}</b> · env <b>{}</b> · up {}</p>",
                stack.runtime,
                escape(&stack.region),
                escape(&stack.cluster_env),
                human_duration(Duration::from_secs(stack.uptime_s))
            );
            html.push_str(
                "<table id=\"services\"><tr><th>service</th><th>kind</th><th>runtime</th>\
<th>URL</th><th>PID / container</th><th>health</th></tr>",
            );
            for row in &stack.services {
                let kind = match &row.version {
                    Some(version) => format!("{} {version}", row.kind),
                    None => row.kind.clone(),
                };
                let process = row
                    .pid
                    .map(|pid| pid.to_string())
                    .or_else(|| row.container.as_ref().map(|c| c.chars().take(12).collect()))
                    .unwrap_or_else(|| "-".into());
                let health_class = if row.health == HEALTHY { "ok" } else { "bad" };
                let _ = write!(
                    html,
                    "<tr data-service=\"{service}\"><td>{service}</td><td>{kind}</td><td>{runtime}</td>\
<td><code>{url}</code></td><td>{process}</td><td class=\"{health_class}\">{health}</td></tr>",
                    service = escape(row.service.as_str()),
                    kind = escape(&kind),
                    runtime = row.runtime,
                    url = escape(&row.url),
                    health = escape(&row.health),
                );
            }
            html.push_str("</table>");
        }
    }
    html.push_str(
        "<h3>Readiness</h3><table id=\"steps\"><tr><th>step</th><th>state</th><th>detail</th></tr>",
    );
    for (step, record) in &readiness.steps {
        let (class, state) = match record.state {
            StepState::Done => ("ok", "done"),
            StepState::Skipped => ("ok", "skipped"),
            StepState::Running => ("wait", "running"),
            StepState::Failed => ("bad", "failed"),
        };
        let step = serde_json::to_value(step)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = write!(
            html,
            "<tr><td>{}</td><td class=\"{class}\">{state}</td><td>{}</td></tr>",
            escape(&step),
            escape(record.detail.as_deref().unwrap_or(""))
        );
    }
    html.push_str("</table>");
    if !readiness.missing.is_empty() {
        html.push_str("<ul id=\"missing\">");
        for missing in &readiness.missing {
            let _ = write!(html, "<li>{}</li>", escape(missing));
        }
        html.push_str("</ul>");
    }
    html
}
