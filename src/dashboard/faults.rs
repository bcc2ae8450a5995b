//! The Faults page, over the fault proxies' control port (what `inframock faults ...` sends):
//! each proxied service with the faults in force and its connections, and a form for every
//! command (`faults::command::COMMANDS`; idx/bucket, CouchbaseMock's, are left out).

use std::fmt::Write;

use hyper::StatusCode;

use super::layout::{encode, escape, html_table, Page};
use super::{Context, Query, Reply};
use crate::faults::command::COMMANDS;
use crate::stack::ServiceName;

fn not_running() -> Reply {
    Reply::Problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "no fault proxies run: `faults = true` on a service in inframock.toml, then `inframock run`"
            .into(),
    )
}

/// `GET /faults`.
pub async fn page(context: &Context) -> Reply {
    let Some(control) = context.helper_url(&ServiceName::Faults) else {
        return not_running();
    };
    let status = match crate::http_client::get_json(&control, "", "/mock/status").await {
        Ok(status) => status,
        Err(e) => return Reply::Problem(StatusCode::BAD_GATEWAY, format!("{e:#}")),
    };
    let services: Vec<String> = status["faults"]
        .as_object()
        .map(|f| f.keys().cloned().collect())
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = status["faults"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(service, faults)| {
            let in_force: Vec<String> = faults
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(name, value)| {
                    *name != "connections"
                        && !value.is_null()
                        && **value != serde_json::json!(false)
                })
                .map(|(name, value)| format!("{name} {value}"))
                .collect();
            let in_force = if in_force.is_empty() {
                "<span class=\"ok\">none</span>".to_string()
            } else {
                format!(
                    "<span class=\"bad\">{}</span>",
                    escape(&in_force.join(", "))
                )
            };
            vec![
                escape(service),
                in_force,
                faults["connections"].as_u64().unwrap_or(0).to_string(),
            ]
        })
        .collect();
    let live = format!(
        "<h2>Faults</h2><p>control <code>{}</code></p>{}",
        escape(&control),
        html_table(
            "faults",
            &["service", "faults in force", "connections"],
            &rows
        )
    );
    let mut options = String::from("<option value=\"\">every proxied service</option>");
    for service in &services {
        let _ = write!(options, "<option>{}</option>", escape(service));
    }
    let mut controls = String::from("<h3>Commands</h3>");
    for (name, params, what) in COMMANDS {
        if matches!(name, "status" | "help") {
            continue;
        }
        let mut fields = String::new();
        for param in params.iter().filter(|p| !matches!(**p, "idx" | "bucket")) {
            let _ = write!(
                fields,
                " {param} <input type=\"text\" name=\"{param}\" style=\"width:5em\">"
            );
        }
        let _ = write!(
            controls,
            "<form method=\"post\" action=\"/faults/command\" id=\"fault-{name}\">\
<input type=\"hidden\" name=\"command\" value=\"{name}\"><b>{name}</b>{fields} \
service <select name=\"service\">{options}</select> <button>{name}</button><br><small>{}</small></form><br>",
            escape(what)
        );
    }
    Reply::Page(Page {
        section: "/faults",
        title: "Faults".into(),
        live,
        controls,
    })
}

/// `POST /faults/command`: the form's command and parameters, sent to the control port.
pub async fn command(context: &Context, form: &Query) -> Reply {
    let Some(control) = context.helper_url(&ServiceName::Faults) else {
        return not_running();
    };
    let command = form.get("command").cloned().unwrap_or_default();
    let Some((name, params, _)) = COMMANDS.iter().find(|(name, _, _)| **name == command) else {
        return Reply::Redirect {
            to: "/faults".into(),
            flash: format!("unknown command {command:?}"),
        };
    };
    let pairs: Vec<String> = params
        .iter()
        .chain(std::iter::once(&"service"))
        .filter_map(|param| {
            form.get(*param)
                .filter(|v| !v.trim().is_empty())
                .map(|v| format!("{param}={}", encode(v.trim())))
        })
        .collect();
    let path = if pairs.is_empty() {
        format!("/mock/{name}")
    } else {
        format!("/mock/{name}?{}", pairs.join("&"))
    };
    let flash = match crate::http_client::get_json(&control, "", &path).await {
        Ok(_) => format!("{name}: done"),
        Err(e) => format!("{name} refused: {e:#}"),
    };
    Reply::Redirect {
        to: "/faults".into(),
        flash,
    }
}
