//! The dashboard's HTML, rendered on the server: one page shell (inline CSS, a few lines of
//! script that take server-sent events) and the fragments it shows. Every text from the stack is
//! escaped.

use std::fmt::Write;
use std::time::Duration;

use super::Overview;
use crate::output::human_duration;
use crate::stack::health::HEALTHY;
use crate::stack::readiness::StepState;

const STYLE: &str =
    "body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}\
header{background:#1d2330;color:#fff;padding:10px 20px}header b{font-size:16px}\
main{padding:16px 20px}table{border-collapse:collapse;background:#fff;margin:8px 0 20px}\
th,td{border:1px solid #d8dce3;padding:4px 10px;text-align:left}th{background:#eef0f4}\
.ok{color:#17753a}.bad{color:#b3261e}.wait{color:#8a5a00}code{font-size:13px}\
.ready{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff}\
.ready.ok{background:#17753a}.ready.bad{background:#b3261e}";

const SCRIPT: &str = "new EventSource('/events/stack').addEventListener('stack',\
function(e){document.getElementById('stack').innerHTML=e.data;});";

/// The Stack page.
pub fn stack_page(overview: &Overview) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>inframock · {project}</title><style>{STYLE}</style></head><body>\
<header><b>inframock</b> · project {project}</header>\
<main><div id=\"stack\">{fragment}</div></main><script>{SCRIPT}</script></body></html>\n",
        project = escape(&overview.project),
        fragment = stack_fragment(overview),
    )
}

/// The live part of the Stack page, on one line (it travels as one server-sent event).
pub fn stack_fragment(overview: &Overview) -> String {
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
    html.replace(['\n', '\r'], " ")
}

/// Text made safe inside HTML elements and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::readiness::Readiness;

    #[test]
    fn text_from_the_stack_is_escaped_and_the_fragment_is_one_line() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let overview = Overview {
            project: "<p>".into(),
            stack: None,
            readiness: Readiness {
                ready: false,
                missing: vec!["aws is not running\n<script>".into()],
                failed: false,
                steps: Default::default(),
            },
        };
        let fragment = stack_fragment(&overview);
        assert!(!fragment.contains('\n'), "{fragment}");
        assert!(fragment.contains("&lt;script&gt;"), "{fragment}");
        assert!(stack_page(&overview).contains("project &lt;p&gt;"));
    }
}
