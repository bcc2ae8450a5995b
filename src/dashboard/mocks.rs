//! The Mocks page, over the running mock server's own admin API (so it does what `curl` to
//! `/mocker/*` does): the expectations in force (edit, delete), the request journal with filters
//! (path, method, matched) and, for an unmatched request, why each close expectation did not match;
//! the scenario's request times; forms to create an expectation from fields or pasted JSON, and to
//! reset the mock.

use std::fmt::Write;
use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{json, Value};

use super::layout::{encode, escape, html_table, json_block, Page};
use super::{Context, Query, Reply};
use crate::stack::ServiceName;

/// How long the mock server may take to answer its admin API.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Journal entries shown.
const JOURNAL_SHOWN: usize = 100;

fn not_running() -> Reply {
    Reply::Problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "the mock server does not run: `[services.mock] enabled = true` in inframock.toml, then `inframock run`".into(),
    )
}

/// `GET /mocks?path=&method=&matched=&edit=ID`.
pub async fn page(context: &Context, query: &Query) -> Reply {
    let Some(mock) = context.helper_url(&ServiceName::Mock) else {
        return not_running();
    };
    let expectations = match crate::http_client::get_json(
        &mock,
        "is the mock server running?",
        "/mocker/expectations?format=full",
    )
    .await
    {
        Ok(value) => value,
        Err(e) => return Reply::Problem(StatusCode::BAD_GATEWAY, format!("{e:#}")),
    };
    let listed: Vec<Value> = expectations.as_array().cloned().unwrap_or_default();
    let mut journal_query = format!("/mocker/requests?limit={JOURNAL_SHOWN}");
    for name in ["path", "method"] {
        if let Some(value) = query.get(name).filter(|v| !v.is_empty()) {
            let _ = write!(journal_query, "&{name}={}", encode(value));
        }
    }
    let journal = crate::http_client::get_json(&mock, "", &journal_query)
        .await
        .unwrap_or_default();
    let matched_filter = query.get("matched").filter(|v| !v.is_empty());

    let rows: Vec<Vec<String>> = listed
        .iter()
        .map(|e| {
            let id = e["id"].as_str().unwrap_or("");
            let method = e["method"].as_str().unwrap_or("any");
            let path = e["path"].as_str().unwrap_or("");
            let answer = match e["status_code"].as_u64() {
                Some(status) => status.to_string(),
                None if e["handler"].is_string() => "handler".into(),
                None => "delay, then upstream".into(),
            };
            vec![
                escape(path),
                escape(method),
                escape(&answer),
                e["hits"].as_u64().unwrap_or(0).to_string(),
                escape(e["source"].as_str().unwrap_or("")),
                format!(
                    "<a href=\"/mocks?edit={id_q}\">edit</a> \
<form method=\"post\" action=\"/mocks/delete\" style=\"display:inline;border:0;padding:0;margin:0\">\
<input type=\"hidden\" name=\"id\" value=\"{id}\"><button>delete</button></form>",
                    id_q = encode(id),
                    id = escape(id)
                ),
            ]
        })
        .collect();
    let mut live = format!(
        "<h2>Mocks</h2><p>mock server <code>{}</code> · <span id=\"expectation-count\">{}</span> expectation(s)</p>{}",
        escape(&mock),
        listed.len(),
        html_table("expectations",
            &["path", "method", "answer", "hits", "source", ""],
            &rows
        )
    );
    let entries: Vec<&Value> = journal["requests"]
        .as_array()
        .map(|r| r.iter().collect())
        .unwrap_or_default();
    let journal_rows: Vec<Vec<String>> = entries
        .iter()
        .filter(|r| matched_filter.is_none_or(|m| r["matched"].as_str() == Some(m.as_str())))
        .map(|r| {
            let matched = r["matched"].as_str().unwrap_or("");
            let why = match r.get("closest") {
                Some(closest) => format!(
                    "<details><summary>why no expectation matched</summary>{}</details>",
                    json_block(closest)
                ),
                None => String::new(),
            };
            let class = if matched == "unmatched" { "bad" } else { "" };
            vec![
                escape(r["time"].as_str().unwrap_or("")),
                escape(r["method"].as_str().unwrap_or("")),
                escape(r["path"].as_str().unwrap_or("")),
                format!("<span class=\"{class}\">{}</span>{why}", escape(matched)),
                r["status"].as_u64().unwrap_or(0).to_string(),
                format!("{} ms", r["latency_ms"].as_f64().unwrap_or(0.0)),
            ]
        })
        .collect();
    let _ = write!(
        live,
        "<h3>Requests</h3>{}",
        html_table(
            "journal",
            &["time", "method", "path", "matched", "status", "latency"],
            &journal_rows
        )
    );
    // The scenario seed's view: arrival times of the requests to `/` since the scenario was set.
    let scenario = crate::http_client::get_json(&mock, "", "/requests")
        .await
        .unwrap_or_default();
    let arrivals: Vec<String> = scenario
        .as_array()
        .map(|times| times.iter().map(|t| t.to_string()).collect())
        .unwrap_or_default();
    let _ = write!(
        live,
        "<h3>Scenario</h3><p id=\"scenario\">{}</p>",
        if arrivals.is_empty() {
            "no request to <code>/</code> since a scenario was set (<code>POST /setscenario</code>)"
                .to_string()
        } else {
            format!(
                "{} request(s) to <code>/</code>, seconds after the scenario was set: {}",
                arrivals.len(),
                escape(&arrivals.join(", "))
            )
        }
    );
    let editing = query
        .get("edit")
        .and_then(|id| listed.iter().find(|e| e["id"].as_str() == Some(id.as_str())))
        .map(editable)
        .unwrap_or_else(|| {
            json!({"method": "GET", "path": "/hello", "status_code": 200, "body": {"hello": "world"}})
        });
    let value = |name: &str| escape(query.get(name).map(String::as_str).unwrap_or(""));
    let controls = format!(
        "<form method=\"get\" action=\"/mocks\" id=\"filter\"><b>Filter requests</b> \
path <input type=\"text\" name=\"path\" value=\"{path}\" style=\"width:12em\"> \
method <input type=\"text\" name=\"method\" value=\"{method}\" style=\"width:5em\"> \
matched <select name=\"matched\"><option value=\"\">any</option><option>expectation</option>\
<option>unmatched</option><option>proxied</option><option>scenario</option></select> <button>filter</button></form><br>\
<form method=\"post\" action=\"/mocks/create\" id=\"create-fields\"><b>New expectation</b><br>\
method <input type=\"text\" name=\"method\" value=\"GET\" style=\"width:5em\"> \
path <input type=\"text\" name=\"path\" value=\"/hello\"> \
status <input type=\"text\" name=\"status_code\" value=\"200\" style=\"width:4em\"><br>\
body <textarea name=\"body\">{{\"hello\": \"world\"}}</textarea><br><button>create</button></form><br>\
<form method=\"post\" action=\"/mocks/create\" id=\"create-json\"><b>Expectation as JSON</b> \
(any field of <code>POST /mocker/expectation</code>; the same path and predicates replace it)<br>\
<textarea name=\"json\">{json}</textarea><br><button>save</button></form><br>\
<form method=\"post\" action=\"/mocks/reset\" id=\"reset\"><button>reset the mock</button> \
(back to the mocks/*.json ones; clears the journal and the scenario)</form>",
        path = value("path"),
        method = value("method"),
        json = escape(&serde_json::to_string_pretty(&editing).unwrap_or_default()),
    );
    Reply::Page(Page {
        section: "/mocks",
        title: "Mocks".into(),
        live,
        controls,
    })
}

/// An expectation as listed (`format=full`) without what the server adds, to post again.
fn editable(listed: &Value) -> Value {
    let mut value = listed.clone();
    if let Some(fields) = value.as_object_mut() {
        for added in ["id", "hits", "remaining", "source"] {
            fields.remove(added);
        }
        fields.retain(|_, v| !v.is_null());
    }
    value
}

/// The expectation a create form describes: its pasted JSON, or its fields.
fn expectation_of(form: &Query) -> Result<Value, String> {
    if let Some(text) = form.get("json").filter(|t| !t.trim().is_empty()) {
        return serde_json::from_str(text).map_err(|e| format!("the JSON is not valid: {e}"));
    }
    let path = form
        .get("path")
        .filter(|p| !p.is_empty())
        .ok_or("`path` is required")?;
    let mut expectation = json!({"path": path});
    if let Some(method) = form.get("method").filter(|m| !m.trim().is_empty()) {
        expectation["method"] = json!(method.trim().to_ascii_uppercase());
    }
    if let Some(status) = form.get("status_code").filter(|s| !s.trim().is_empty()) {
        let status: u16 = status
            .trim()
            .parse()
            .map_err(|_| format!("status {status:?} is not a number"))?;
        expectation["status_code"] = json!(status);
    }
    if let Some(body) = form.get("body").filter(|b| !b.is_empty()) {
        // JSON stays JSON; anything else is sent as text.
        expectation["body"] = serde_json::from_str(body).unwrap_or_else(|_| json!(body));
    }
    Ok(expectation)
}

/// `POST /mocks/create`: forwards to `POST /mocker/expectation`; the mock's own error (a 400 that
/// says what is wrong) is shown as it is.
pub async fn create(context: &Context, form: &Query) -> Reply {
    let Some(mock) = context.helper_url(&ServiceName::Mock) else {
        return not_running();
    };
    let expectation = match expectation_of(form) {
        Ok(expectation) => expectation,
        Err(why) => {
            return Reply::Redirect {
                to: "/mocks".into(),
                flash: format!("not saved: {why}"),
            }
        }
    };
    let body = Bytes::from(serde_json::to_vec(&expectation).unwrap_or_default());
    let flash = match crate::http_client::post_bytes(
        &format!("{mock}/mocker/expectation"),
        body,
        ADMIN_TIMEOUT,
    )
    .await
    {
        Ok((status, _)) if status.is_success() => format!(
            "saved the expectation for {}",
            expectation["path"].as_str().unwrap_or("?")
        ),
        Ok((status, answer)) => {
            let answer: Value = serde_json::from_slice(&answer).unwrap_or_default();
            format!(
                "not saved ({status}): {}",
                answer["error"].as_str().unwrap_or("the mock refused it")
            )
        }
        Err(e) => format!("not saved: {e:#}"),
    };
    Reply::Redirect {
        to: "/mocks".into(),
        flash,
    }
}

/// `POST /mocks/delete` (form field `id`).
pub async fn delete(context: &Context, form: &Query) -> Reply {
    let Some(mock) = context.helper_url(&ServiceName::Mock) else {
        return not_running();
    };
    let id = form.get("id").cloned().unwrap_or_default();
    let body = Bytes::from(json!({"id": id}).to_string());
    let flash = match crate::http_client::send(
        http::Method::DELETE,
        &format!("{mock}/mocker/expectation"),
        body,
        ADMIN_TIMEOUT,
    )
    .await
    {
        Ok((status, _)) if status.is_success() => format!("deleted expectation {id}"),
        Ok((status, _)) => format!("not deleted ({status}): expectation {id} is gone already"),
        Err(e) => format!("not deleted: {e:#}"),
    };
    Reply::Redirect {
        to: "/mocks".into(),
        flash,
    }
}

/// `POST /mocks/reset`.
pub async fn reset(context: &Context) -> Reply {
    let Some(mock) = context.helper_url(&ServiceName::Mock) else {
        return not_running();
    };
    let flash = match crate::http_client::post_empty(&format!("{mock}/mocker/reset"), ADMIN_TIMEOUT)
        .await
    {
        Ok(Some(status)) if status.is_success() => "the mock is reset".to_string(),
        Ok(Some(status)) => format!("the mock answered {status} to its reset"),
        Ok(None) | Err(_) => "the mock did not answer its reset".to_string(),
    };
    Reply::Redirect {
        to: "/mocks".into(),
        flash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Query {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_create_form_becomes_the_expectation_it_describes() {
        assert_eq!(
            expectation_of(&form(&[
                ("method", "post"),
                ("path", "/p"),
                ("status_code", "201"),
                ("body", "{\"a\": 1}")
            ])),
            Ok(json!({"path": "/p", "method": "POST", "status_code": 201, "body": {"a": 1}}))
        );
        assert_eq!(
            expectation_of(&form(&[("path", "/t"), ("body", "plain text")])),
            Ok(json!({"path": "/t", "body": "plain text"}))
        );
        assert!(
            expectation_of(&form(&[("path", "/t"), ("status_code", "x")]))
                .is_err_and(|e| e.contains("not a number"))
        );
        assert!(expectation_of(&form(&[("json", "{")])).is_err_and(|e| e.contains("not valid")));
        assert!(expectation_of(&form(&[])).is_err_and(|e| e.contains("path")));
    }
}
