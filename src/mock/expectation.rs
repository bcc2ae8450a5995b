//! Expectations: what a request must look like (method, path, query, headers, JSON body) and what
//! to answer (a fixed response, a delay before proxying, or a Python handler).
//!
//! The JSON shape is the one of the mockserver seed (`path`, `response_delay`, `status_code`, `body`,
//! `headers`, `repeat_count`) plus the matching fields `method`, `path_match`, `query`,
//! `request_headers`, `json_body` and the dynamic `handler`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use globset::GlobMatcher;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An expectation as written by a user (API body or `mocks/*.json` entry).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpectationSpec {
    /// Name used to delete it and shown in the journal; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Request path to match (required).
    pub path: String,
    /// How `path` matches: `exact` (default), `glob` (`*` within a segment, `**` across) or `regex`.
    #[serde(default, skip_serializing_if = "PathMatch::is_exact")]
    pub path_match: PathMatch,
    /// HTTP method to match (any when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Query parameters that must be present with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    /// Request headers that must be present with these values (names are case-insensitive).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_headers: BTreeMap<String, String>,
    /// JSON the request body must contain (objects match when they hold at least these keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_body: Option<Value>,
    /// Milliseconds to wait before answering (or before proxying when there is no `status_code`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_delay: Option<Value>,
    /// Status of the fixed response; absent = only delay the proxied request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Body of the fixed response: a string is sent as it is, anything else as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Headers of the fixed response.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Answer this many times, then forget the expectation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_count: Option<Value>,
    /// Python file defining `handler(body, headers)`, relative to the mocks folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// Time limit of one handler call in milliseconds (default 5000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler_timeout_ms: Option<u64>,
    /// Run the handler in a process of its own for every request (isolation over speed) instead
    /// of on a warm worker.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fresh: bool,
}

/// How an expectation's path is compared with the request path.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PathMatch {
    #[default]
    Exact,
    Glob,
    Regex,
}

impl PathMatch {
    fn is_exact(&self) -> bool {
        *self == PathMatch::Exact
    }
}

/// Default time limit of a handler call.
pub const DEFAULT_HANDLER_TIMEOUT_MS: u64 = 5000;

/// What a matched expectation does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Answer with this response.
    Respond {
        status: http::StatusCode,
        headers: Vec<(http::HeaderName, http::HeaderValue)>,
        body: bytes::Bytes,
    },
    /// Forward to the upstream (after the delay).
    Proxy,
    /// Run a Python handler (`fresh`: in a process of its own per request).
    Handler {
        file: PathBuf,
        timeout_ms: u64,
        fresh: bool,
    },
}

/// An exact `path` without its query string (the mockserver seed matches on the path alone).
pub fn exact_path(path: &str) -> &str {
    path.split_once('?').map_or(path, |(path, _)| path)
}

/// A validated expectation, ready to match requests.
#[derive(Debug)]
pub struct Expectation {
    pub id: String,
    pub spec: ExpectationSpec,
    path: PathMatcher,
    method: Option<http::Method>,
    request_headers: Vec<(http::HeaderName, String)>,
    pub delay_ms: u64,
    pub repeat_count: Option<u64>,
    pub action: Action,
}

#[derive(Debug)]
enum PathMatcher {
    Exact(String),
    Glob(GlobMatcher),
    Regex(Regex),
}

/// The parts of a request an expectation looks at.
pub struct RequestView<'a> {
    pub method: &'a http::Method,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub headers: &'a http::HeaderMap,
}

impl Expectation {
    /// Validates a spec; `handlers_dir` resolves relative handler paths. The error says what is wrong.
    pub fn compile(
        mut spec: ExpectationSpec,
        id: String,
        handlers_dir: &Path,
    ) -> Result<Self, String> {
        if spec.path.is_empty() {
            return Err("`path` must not be empty".into());
        }
        if spec.path_match == PathMatch::Exact {
            // As the mockserver seed stores it: `/mds/q?x=1` answers `/mds/q` with any query.
            spec.path = exact_path(&spec.path).to_string();
        }
        let path = match spec.path_match {
            PathMatch::Exact => {
                if !spec.path.starts_with('/') {
                    return Err(format!(
                        "`path` {:?} must start with `/` (or set \"path_match\": \"glob\"/\"regex\")",
                        spec.path
                    ));
                }
                PathMatcher::Exact(spec.path.clone())
            }
            PathMatch::Glob => PathMatcher::Glob(
                globset::GlobBuilder::new(&spec.path)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| format!("invalid glob in `path` {:?}: {e}", spec.path))?
                    .compile_matcher(),
            ),
            PathMatch::Regex => PathMatcher::Regex(
                Regex::new(&spec.path)
                    .map_err(|e| format!("invalid regex in `path` {:?}: {e}", spec.path))?,
            ),
        };
        let method = match &spec.method {
            None => None,
            Some(m) => Some(
                http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| format!("`method` {m:?} is not an HTTP method"))?,
            ),
        };
        let mut request_headers = Vec::new();
        for (name, value) in &spec.request_headers {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`request_headers`: {name:?} is not a header name"))?;
            request_headers.push((name, value.clone()));
        }
        let delay_ms = match &spec.response_delay {
            None => 0,
            Some(v) => non_negative(v, "response_delay", "milliseconds")?,
        };
        let repeat_count = match &spec.repeat_count {
            None => None,
            Some(v) => match non_negative(v, "repeat_count", "answers")? {
                0 => {
                    return Err(
                        "`repeat_count` must be at least 1 (omit it to answer forever)".into(),
                    )
                }
                n => Some(n),
            },
        };
        let action = match (&spec.handler, spec.status_code) {
            (Some(_), Some(_)) => return Err(
                "`handler` and `status_code` exclude each other: the handler returns the status"
                    .into(),
            ),
            (Some(_), None) if spec.body.is_some() => {
                return Err(
                    "`handler` and `body` exclude each other: the handler returns the body".into(),
                )
            }
            (Some(file), None) => {
                if !file.ends_with(".py") {
                    return Err(format!("`handler` {file:?} must be a Python file (.py)"));
                }
                let resolved = crate::python::file_inside(handlers_dir, file, "`handler`")?;
                let timeout_ms = spec
                    .handler_timeout_ms
                    .unwrap_or(DEFAULT_HANDLER_TIMEOUT_MS);
                if timeout_ms == 0 {
                    return Err("`handler_timeout_ms` must be at least 1".into());
                }
                Action::Handler {
                    file: resolved,
                    timeout_ms,
                    fresh: spec.fresh,
                }
            }
            (None, Some(code)) => {
                let status = http::StatusCode::from_u16(code)
                    .map_err(|_| format!("`status_code` {code} is not an HTTP status (100-999)"))?;
                let (body, default_type) = response_body(spec.body.as_ref());
                let mut headers = Vec::new();
                let mut has_type = false;
                for (name, value) in &spec.headers {
                    let header = http::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| format!("`headers`: {name:?} is not a header name"))?;
                    let value = http::HeaderValue::from_str(value).map_err(|_| {
                        format!("`headers`: the value of {name:?} is not a valid header value")
                    })?;
                    has_type |= header == http::header::CONTENT_TYPE;
                    headers.push((header, value));
                }
                if !has_type {
                    if let Some(kind) = default_type {
                        headers.push((
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static(kind),
                        ));
                    }
                }
                Action::Respond {
                    status,
                    headers,
                    body,
                }
            }
            (None, None) => Action::Proxy,
        };
        if spec.handler_timeout_ms.is_some() && spec.handler.is_none() {
            return Err("`handler_timeout_ms` needs a `handler`".into());
        }
        if spec.fresh && spec.handler.is_none() {
            return Err("`fresh` needs a `handler`".into());
        }
        Ok(Expectation {
            id,
            spec,
            path,
            method,
            request_headers,
            delay_ms,
            repeat_count,
            action,
        })
    }

    /// Whether everything but the body matches.
    pub fn matches_head(&self, request: &RequestView<'_>) -> bool {
        self.mismatches(request, None, false).is_empty()
    }

    /// Whether the expectation looks at the request body.
    pub fn needs_body(&self) -> bool {
        self.spec.json_body.is_some()
    }

    /// Whether a request body satisfies `json_body`.
    pub fn matches_body(&self, body: &[u8]) -> bool {
        match &self.spec.json_body {
            None => true,
            Some(expected) => serde_json::from_slice::<Value>(body)
                .map(|actual| json_contains(&actual, expected))
                .unwrap_or(false),
        }
    }

    /// Why a request does not match, one reason per predicate (empty = it matches). With
    /// `all = false` it stops at the first reason.
    pub fn mismatches(
        &self,
        request: &RequestView<'_>,
        body: Option<&[u8]>,
        all: bool,
    ) -> Vec<String> {
        let mut reasons = Vec::new();
        if let Some(method) = &self.method {
            if method != request.method {
                reasons.push(format!("method: expected {method}, got {}", request.method));
                if !all {
                    return reasons;
                }
            }
        }
        let path_ok = match &self.path {
            PathMatcher::Exact(p) => p == request.path,
            PathMatcher::Glob(g) => g.is_match(request.path),
            PathMatcher::Regex(r) => r.is_match(request.path),
        };
        if !path_ok {
            reasons.push(format!(
                "path: expected {} {:?}, got {:?}",
                match self.spec.path_match {
                    PathMatch::Exact => "exactly",
                    PathMatch::Glob => "glob",
                    PathMatch::Regex => "regex",
                },
                self.spec.path,
                request.path
            ));
            if !all {
                return reasons;
            }
        }
        for (name, value) in &self.spec.query {
            let found = request.query.iter().find(|(k, _)| k == name);
            match found {
                Some((_, v)) if v == value => {}
                Some((_, v)) => {
                    reasons.push(format!("query {name}: expected {value:?}, got {v:?}"))
                }
                None => reasons.push(format!("query {name}: expected {value:?}, absent")),
            }
            if !all && !reasons.is_empty() {
                return reasons;
            }
        }
        for (name, value) in &self.request_headers {
            let found = request
                .headers
                .get_all(name)
                .iter()
                .any(|v| v == value.as_str());
            if !found {
                reasons.push(format!("header {name}: expected {value:?}"));
                if !all {
                    return reasons;
                }
            }
        }
        if let (Some(body), Some(expected)) = (body, &self.spec.json_body) {
            match serde_json::from_slice::<Value>(body) {
                Err(_) if body.is_empty() => {
                    reasons.push("json_body: the request has no body".to_string())
                }
                Err(e) => reasons.push(format!("json_body: the request body is not JSON ({e})")),
                Ok(actual) => {
                    if let Some(difference) = json_difference(&actual, expected, "json_body") {
                        reasons.push(difference);
                    }
                }
            }
        }
        reasons
    }

    /// For the 404 listing: a closeness score (lower is closer) and why the request does not match
    /// (`json_body` included when the body was read).
    pub fn closeness(
        &self,
        request: &RequestView<'_>,
        body: Option<&[u8]>,
    ) -> (usize, Vec<String>) {
        let mismatches = self.mismatches(request, body, true);
        let path_missed = mismatches.iter().any(|m| m.starts_with("path"));
        let path_cost = match &self.path {
            PathMatcher::Exact(p) => edit_distance(p, request.path),
            _ if path_missed => request.path.len().max(4),
            _ => 0,
        };
        let others = mismatches.len() - usize::from(path_missed);
        (path_cost + others * 3, mismatches)
    }
}

fn non_negative(value: &Value, field: &str, unit: &str) -> Result<u64, String> {
    if let Some(n) = value.as_u64() {
        return Ok(n);
    }
    match value.as_f64() {
        Some(f) if f < 0.0 => Err(format!(
            "`{field}` must not be negative (got {value}); it is in {unit}"
        )),
        Some(f) if f.fract() == 0.0 && f <= u64::MAX as f64 => Ok(f as u64),
        _ => Err(format!(
            "`{field}` must be a whole number of {unit} (got {value})"
        )),
    }
}

/// The bytes of a fixed response body and the content type they imply.
fn response_body(body: Option<&Value>) -> (bytes::Bytes, Option<&'static str>) {
    match body {
        None | Some(Value::Null) => (bytes::Bytes::new(), None),
        Some(Value::String(text)) => (
            bytes::Bytes::from(text.clone()),
            Some(if looks_like_json(text) {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            }),
        ),
        Some(other) => (
            bytes::Bytes::from(other.to_string()),
            Some("application/json"),
        ),
    }
}

/// Whether a text is a JSON object or array (so it gets a JSON content type).
pub fn looks_like_json(text: &str) -> bool {
    let trimmed = text.trim_start();
    (trimmed.starts_with('{') || trimmed.starts_with('['))
        && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

/// Subset match: every key of an expected object is in the actual one with a matching value;
/// arrays match element by element; numbers compare by value.
pub fn json_contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, ev)| a.get(k).is_some_and(|av| json_contains(av, ev))),
        (Value::Array(a), Value::Array(e)) => {
            a.len() == e.len() && a.iter().zip(e).all(|(av, ev)| json_contains(av, ev))
        }
        (Value::Number(a), Value::Number(e)) => {
            a == e || matches!((a.as_f64(), e.as_f64()), (Some(x), Some(y)) if x == y)
        }
        _ => actual == expected,
    }
}

/// The first place where `actual` does not contain `expected` (as `json_contains` decides), said
/// with its JSON path: `json_body.order.sku: expected "A1", got "B2"`.
pub fn json_difference(actual: &Value, expected: &Value, path: &str) -> Option<String> {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e.iter().find_map(|(key, ev)| match a.get(key) {
            None => Some(format!("{path}.{key}: expected {ev}, absent")),
            Some(av) => json_difference(av, ev, &format!("{path}.{key}")),
        }),
        (Value::Array(a), Value::Array(e)) if a.len() != e.len() => Some(format!(
            "{path}: expected {} items, got {}",
            e.len(),
            a.len()
        )),
        (Value::Array(a), Value::Array(e)) => a
            .iter()
            .zip(e)
            .enumerate()
            .find_map(|(i, (av, ev))| json_difference(av, ev, &format!("{path}[{i}]"))),
        _ if json_contains(actual, expected) => None,
        _ => Some(format!("{path}: expected {expected}, got {actual}")),
    }
}

/// Levenshtein distance on bytes, for "closest expectation" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(json: &str) -> ExpectationSpec {
        serde_json::from_str(json).unwrap()
    }

    fn compile(json: &str) -> Result<Expectation, String> {
        Expectation::compile(spec(json), "e1".into(), Path::new("/nonexistent"))
    }

    fn view<'a>(
        method: &'a http::Method,
        path: &'a str,
        query: &'a [(String, String)],
        headers: &'a http::HeaderMap,
    ) -> RequestView<'a> {
        RequestView {
            method,
            path,
            query,
            headers,
        }
    }

    #[test]
    fn seed_shape_compiles_to_a_response() {
        let e = compile(r#"{"path": "/abc/test", "response_delay": 20, "status_code": 404, "body": {"a": 1}, "headers": {"x-k": "v"}, "repeat_count": 4}"#).unwrap();
        assert_eq!(e.delay_ms, 20);
        assert_eq!(e.repeat_count, Some(4));
        match e.action {
            Action::Respond {
                status,
                headers,
                body,
            } => {
                assert_eq!(status, 404);
                assert_eq!(&body[..], br#"{"a":1}"#);
                assert!(headers
                    .iter()
                    .any(|(n, v)| n == "content-type" && v == "application/json"));
                assert!(headers.iter().any(|(n, v)| n == "x-k" && v == "v"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            compile(r#"{"path": "/x", "response_delay": 5}"#)
                .unwrap()
                .action,
            Action::Proxy
        ));
    }

    #[test]
    fn bad_input_is_explained() {
        let cases = [
            (
                r#"{"path": "/x", "response_delay": -1}"#,
                "must not be negative",
            ),
            (r#"{"path": "/x", "response_delay": 1.5}"#, "whole number"),
            (r#"{"path": "(", "path_match": "regex"}"#, "invalid regex"),
            (r#"{"path": "/a/[", "path_match": "glob"}"#, "invalid glob"),
            (r#"{"path": "x"}"#, "must start with `/`"),
            (r#"{"path": "/x", "status_code": 42}"#, "not an HTTP status"),
            (r#"{"path": "/x", "repeat_count": 0}"#, "at least 1"),
            (r#"{"path": "/x", "method": "G E T"}"#, "not an HTTP method"),
            (r#"{"path": "/x", "handler": "h.py"}"#, "no such file"),
            (
                r#"{"path": "/x", "handler": "h.py", "status_code": 200}"#,
                "exclude each other",
            ),
        ];
        for (json, reason) in cases {
            let err = compile(json).unwrap_err();
            assert!(err.contains(reason), "{json}: {err}");
        }
        assert!(
            serde_json::from_str::<ExpectationSpec>(r#"{"path": "/x", "stauts_code": 1}"#)
                .unwrap_err()
                .to_string()
                .contains("unknown field `stauts_code`")
        );
    }

    #[test]
    fn matches_method_path_query_headers_and_body() {
        let e = compile(r#"{"path": "/users/*", "path_match": "glob", "method": "post", "query": {"v": "2"}, "request_headers": {"X-Key": "k"}, "json_body": {"user": {"name": "ann"}}, "status_code": 201}"#).unwrap();
        let post = http::Method::POST;
        let get = http::Method::GET;
        let mut headers = http::HeaderMap::new();
        headers.insert("x-key", "k".parse().unwrap());
        let query = vec![("v".to_string(), "2".to_string())];
        assert!(e.matches_head(&view(&post, "/users/7", &query, &headers)));
        assert!(!e.matches_head(&view(&get, "/users/7", &query, &headers)));
        assert!(!e.matches_head(&view(&post, "/users/7/x", &query, &headers)));
        assert!(!e.matches_head(&view(&post, "/users/7", &[], &headers)));
        assert!(!e.matches_head(&view(&post, "/users/7", &query, &http::HeaderMap::new())));
        assert!(e.matches_body(br#"{"user": {"name": "ann", "age": 3}, "extra": true}"#));
        assert!(!e.matches_body(br#"{"user": {"name": "bob"}}"#));
        assert!(!e.matches_body(b"not json"));
        let all = e.mismatches(
            &view(&get, "/nope", &[], &http::HeaderMap::new()),
            Some(b"{}"),
            true,
        );
        assert_eq!(all.len(), 5, "{all:?}");
    }

    #[test]
    fn regex_paths_and_number_equality() {
        let e = compile(r#"{"path": "^/items/\\d+$", "path_match": "regex", "status_code": 200}"#)
            .unwrap();
        let get = http::Method::GET;
        let h = http::HeaderMap::new();
        assert!(e.matches_head(&view(&get, "/items/12", &[], &h)));
        assert!(!e.matches_head(&view(&get, "/items/x", &[], &h)));
        assert!(json_contains(
            &serde_json::json!({"n": 1.0}),
            &serde_json::json!({"n": 1})
        ));
        assert!(!json_contains(
            &serde_json::json!([1, 2]),
            &serde_json::json!([1])
        ));
    }

    #[test]
    fn json_differences_are_named_by_their_path() {
        let actual = json!({"order": {"sku": "B2", "lines": [1, 2]}, "user": 7});
        let diff = |expected: Value| json_difference(&actual, &expected, "json_body");
        assert_eq!(diff(json!({"user": 7})), None);
        assert_eq!(
            diff(json!({"order": {"sku": "A1"}})).as_deref(),
            Some("json_body.order.sku: expected \"A1\", got \"B2\"")
        );
        assert_eq!(
            diff(json!({"order": {"id": 1}})).as_deref(),
            Some("json_body.order.id: expected 1, absent")
        );
        assert_eq!(
            diff(json!({"order": {"lines": [1]}})).as_deref(),
            Some("json_body.order.lines: expected 1 items, got 2")
        );
        assert_eq!(
            diff(json!({"order": {"lines": [1, 3]}})).as_deref(),
            Some("json_body.order.lines[1]: expected 3, got 2")
        );
    }

    #[test]
    fn closest_is_the_smallest_distance() {
        let near = compile(r#"{"path": "/api/users", "status_code": 200}"#).unwrap();
        let far = compile(r#"{"path": "/health", "status_code": 200}"#).unwrap();
        let get = http::Method::GET;
        let h = http::HeaderMap::new();
        let request = view(&get, "/api/user", &[], &h);
        assert!(near.closeness(&request, None).0 < far.closeness(&request, None).0);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
