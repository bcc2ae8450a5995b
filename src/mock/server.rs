//! Request handling: admin routes (expectations, journal, scenario) and mocked traffic (scenario
//! step, expectation, proxy, or a 404 listing the closest expectations).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body as _, Incoming};
use serde::Deserialize;
use serde_json::{json, Value};

use super::backend_log::{BackendError, BackendErrorLog};
use super::expectation::{Action, ExpectationSpec, RequestView};
use super::flaky::{Flaky, FlakyAnswer};
use super::handler::{HandlerRequest, HandlerRunner};
use super::journal::{now_ms, ClosestExpectations, Journal, JournalEntry, JournalQuery, Outcome};
use super::proxy::{Body, BoxError};
use super::routes::{Destination, Routes};
use super::scenario::{self, Scenario};
use super::sinks::Sink;
use super::store::{Lookup, Source, Store};

/// Largest request body read into memory (admin calls, body matching, handlers).
pub const BODY_LIMIT: usize = 16 << 20;
/// Expectations listed in a 404 body.
const CLOSEST_LISTED: usize = 3;

/// Everything the server shares between requests.
pub struct MockState {
    pub store: Store,
    pub scenario: Scenario,
    pub journal: Journal,
    /// Where unanswered requests go: declared routes, then `--upstream`.
    pub routes: Routes,
    pub handlers: HandlerRunner,
    /// Answer admin routes from any address, not only loopback.
    pub admin_any_host: bool,
    /// The scenario seed's mimicked backend, for its path when no scenario step is left.
    pub flaky: Option<Flaky>,
    /// Answer a scenario step whose status is not 200 with a bare `500`, as the seed did.
    pub scenario_errors_as_500: bool,
    /// Event sinks: the seed's ingestion and logger services.
    pub sinks: Vec<Sink>,
    /// Where upstream failures are appended (`.inframock/logs/backend-errors.jsonl`).
    pub backend_errors: BackendErrorLog,
}

/// Returned instead of a response to close the connection without answering.
#[derive(Debug)]
pub struct NoAnswer;

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("closed without an answer (scenario status 0 or the flaky responder)")
    }
}

impl std::error::Error for NoAnswer {}

/// Whether a path belongs to the admin API.
pub fn is_admin_path(path: &str) -> bool {
    path == "/mocker"
        || path.starts_with("/mocker/")
        || path == "/setscenario"
        || path == "/requests"
}

/// Answers one request, or (`NoAnswer`) closes the connection without an answer.
pub async fn handle(
    state: Arc<MockState>,
    peer: SocketAddr,
    request: http::Request<Incoming>,
) -> Result<Response<Body>, NoAnswer> {
    if is_admin_path(request.uri().path()) {
        return Ok(admin(&state, peer, request).await);
    }
    serve_mocked(&state, peer, request).await.ok_or(NoAnswer)
}

// ---------------------------------------------------------------- admin

async fn admin(
    state: &MockState,
    peer: SocketAddr,
    request: http::Request<Incoming>,
) -> Response<Body> {
    if !peer.ip().to_canonical().is_loopback() && !state.admin_any_host {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "admin routes answer only to 127.0.0.1 (this request came from {}); start the mock with --admin-any-host to allow it",
                peer.ip()
            ),
        );
    }
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = parse_query(request.uri().query());
    match (path.as_str(), &method) {
        ("/mocker/expectation", &Method::POST) => match read_json(request).await {
            Ok(value) => add_expectations(state, value),
            Err(response) => response,
        },
        ("/mocker/expectation", &Method::DELETE) => match read_json(request).await {
            Ok(value) => delete_expectation(state, value),
            Err(response) => response,
        },
        ("/mocker/expectations", &Method::GET) => {
            if query.iter().any(|(k, v)| k == "format" && v == "full") {
                json_response(StatusCode::OK, &Value::Array(state.store.list()))
            } else {
                json_response(StatusCode::OK, &state.store.list_by_path())
            }
        }
        ("/mocker/history", &Method::GET) => json_response(StatusCode::OK, &history(state)),
        ("/mocker/reset", &Method::POST) => match state.store.reset() {
            Ok(()) => {
                state.scenario.clear();
                state.journal.clear();
                state.sinks.iter().for_each(Sink::clear);
                json_response(
                    StatusCode::OK,
                    &json!({"status": "ok", "expectations": state.store.len()}),
                )
            }
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        },
        ("/mocker/requests", &Method::GET) => journal_query(state, &query),
        ("/mocker/requests", &Method::DELETE) => {
            state.journal.clear();
            json_response(StatusCode::OK, &json!({"status": "ok"}))
        }
        ("/mocker/health", &Method::GET) => json_response(
            StatusCode::OK,
            &json!({"status": "ok", "expectations": state.store.len()}),
        ),
        ("/setscenario", &Method::POST | &Method::PUT) => {
            let body = match read_body(request.into_body()).await {
                Ok(body) => body,
                Err(response) => return response,
            };
            match scenario::parse(&body) {
                Ok(steps) => {
                    state.scenario.set(steps, time_seconds());
                    text_response(StatusCode::OK, "OK")
                }
                Err(e) => error(StatusCode::BAD_REQUEST, e),
            }
        }
        ("/requests", &Method::GET) => json_response(StatusCode::OK, &json!(state.scenario.requests())),
        _ => match allowed_methods(&path) {
            Some(allowed) => {
                let mut response = error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{path} does not take {method}; it takes {allowed}"),
                );
                if let Ok(value) = http::HeaderValue::from_str(allowed) {
                    response.headers_mut().insert(http::header::ALLOW, value);
                }
                response
            }
            None => error(
                StatusCode::NOT_FOUND,
                format!("{path} is not an admin route; they are /mocker/expectation, /mocker/expectations, /mocker/reset, /mocker/requests, /mocker/history, /mocker/health, /setscenario, /requests"),
            ),
        },
    }
}

fn allowed_methods(path: &str) -> Option<&'static str> {
    Some(match path {
        "/mocker/expectation" => "POST, DELETE",
        "/mocker/expectations" | "/mocker/history" | "/mocker/health" | "/requests" => "GET",
        "/mocker/reset" => "POST",
        "/mocker/requests" => "GET, DELETE",
        "/setscenario" => "POST, PUT",
        _ => return None,
    })
}

/// Adds one expectation or a list of them: all are validated before any is added.
fn add_expectations(state: &MockState, value: Value) -> Response<Body> {
    let (items, single) = match value {
        Value::Array(items) => (items, false),
        object @ Value::Object(_) => (vec![object], true),
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expected an expectation object or a list of them, got {other}"),
            )
        }
    };
    let prefix = |index: usize| {
        if single {
            String::new()
        } else {
            format!("expectation {index}: ")
        }
    };
    let mut specs = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match serde_json::from_value::<ExpectationSpec>(item) {
            Ok(spec) => specs.push(spec),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("{}{e}", prefix(index))),
        }
    }
    let mut added = match state.store.add_all(specs, Source::Api) {
        Ok(added) => added,
        Err((index, e)) => return error(StatusCode::BAD_REQUEST, format!("{}{e}", prefix(index))),
    };
    // 201 with the mockserver seed's message (its clients check both), plus what was stored.
    let body = if single {
        json!({"message": "Mock response set successfully.", "expectation": added.remove(0)})
    } else {
        json!({"message": "Mock response set successfully.", "expectations": added})
    };
    json_response(StatusCode::CREATED, &body)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteRequest {
    path: Option<String>,
    id: Option<String>,
}

fn delete_expectation(state: &MockState, value: Value) -> Response<Body> {
    let request: DeleteRequest = match serde_json::from_value(value) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if request.path.is_none() && request.id.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "give the `path` (or `id`) of the expectation to delete",
        );
    }
    let deleted = state
        .store
        .delete(request.path.as_deref(), request.id.as_deref());
    if deleted == 0 {
        // The mockserver seed's answer, word for word.
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "Mock response not found."}),
        );
    }
    json_response(StatusCode::OK, &json!({"deleted": deleted}))
}

fn journal_query(state: &MockState, query: &[(String, String)]) -> Response<Body> {
    let mut filter = JournalQuery::default();
    for (key, value) in query {
        match key.as_str() {
            "path" => filter.path = Some(value.clone()),
            "method" => filter.method = Some(value.clone()),
            "limit" => match value.parse() {
                Ok(n) => filter.limit = Some(n),
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("`limit` {value:?} is not a non-negative number"),
                    )
                }
            },
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown parameter `{other}`; filter with path, method, limit"),
                )
            }
        }
    }
    match state.journal.query(&filter) {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn read_json(request: http::Request<Incoming>) -> Result<Value, Response<Body>> {
    let body = read_body(request.into_body()).await?;
    serde_json::from_slice(&body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON: {e}"),
        )
    })
}

async fn read_body(body: Incoming) -> Result<Bytes, Response<Body>> {
    match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {} MiB", BODY_LIMIT >> 20),
        )),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("cannot read the body: {e}"),
        )),
    }
}

// ---------------------------------------------------------------- mocked traffic

/// A request body: not read yet (streams when proxied) or read into memory.
enum RequestBody {
    Unread(Incoming),
    Read(Bytes),
}

impl RequestBody {
    /// Reads the body (once) and returns it.
    async fn bytes(&mut self, counter: &AtomicU64) -> Result<Bytes, Response<Body>> {
        let bytes = match std::mem::replace(self, RequestBody::Read(Bytes::new())) {
            RequestBody::Read(bytes) => bytes,
            RequestBody::Unread(incoming) => {
                let bytes = read_body(incoming).await?;
                counter.store(bytes.len() as u64, Ordering::Relaxed);
                bytes
            }
        };
        *self = RequestBody::Read(bytes.clone());
        Ok(bytes)
    }

    /// For a body that is not read: its declared length goes to the journal.
    fn note_size(&self, counter: &AtomicU64) {
        if let RequestBody::Unread(incoming) = self {
            counter.store(incoming.size_hint().exact().unwrap_or(0), Ordering::Relaxed);
        }
    }

    /// The body to forward, counting streamed bytes into `counter`.
    fn into_forwarded(self, counter: Arc<AtomicU64>) -> Body {
        match self {
            RequestBody::Read(bytes) => full(bytes),
            RequestBody::Unread(incoming) => incoming
                .map_frame(move |frame| {
                    if let Some(data) = frame.data_ref() {
                        counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    frame
                })
                .map_err(|e| Box::new(e) as BoxError)
                .boxed(),
        }
    }
}

async fn serve_mocked(
    state: &MockState,
    peer: SocketAddr,
    request: http::Request<Incoming>,
) -> Option<Response<Body>> {
    let started = Instant::now();
    let time_ms = now_ms();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let query = parse_query(parts.uri.query());
    let counter = Arc::new(AtomicU64::new(0));
    let method = parts.method.to_string();
    let raw_query = parts.uri.query().map(str::to_string);
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let (mut response, outcome) = answer(
        state,
        peer,
        parts,
        RequestBody::Unread(body),
        &path,
        &query,
        &counter,
    )
    .await;
    // A mocked answer's framing is the server's: a content-length or transfer-encoding set by an
    // expectation or a handler would desynchronise the connection. Proxied answers keep theirs.
    let note = match outcome {
        Outcome::Proxied(_) | Outcome::NoAnswer => None,
        _ => drop_framing_headers(response.headers_mut()),
    };
    let backend_error = response.extensions_mut().remove::<BackendError>();
    let closest = response
        .extensions_mut()
        .remove::<ClosestExpectations>()
        .map(|c| c.0);
    if let Some(failure) = &backend_error {
        state.backend_errors.append(
            &super::journal::rfc3339(time_ms),
            method.as_str(),
            &path,
            failure,
        );
    }
    let silent = outcome == Outcome::NoAnswer;
    state.journal.record(JournalEntry {
        note,
        backend_error,
        closest,
        time_ms,
        method,
        path,
        query: raw_query,
        headers,
        body_size: counter,
        outcome,
        status: if silent {
            0
        } else {
            response.status().as_u16()
        },
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
    });
    (!silent).then_some(response)
}

/// Removes user-set framing headers; the note for the journal names them.
pub fn drop_framing_headers(headers: &mut http::HeaderMap) -> Option<String> {
    let dropped: Vec<&str> = [
        http::header::CONTENT_LENGTH,
        http::header::TRANSFER_ENCODING,
    ]
    .into_iter()
    .filter(|name| headers.remove(name).is_some())
    .map(|name| {
        if name == http::header::CONTENT_LENGTH {
            "content-length"
        } else {
            "transfer-encoding"
        }
    })
    .collect();
    (!dropped.is_empty()).then(|| {
        format!(
            "dropped the {} header set by the expectation or handler: the server frames the body itself",
            dropped.join(" and ")
        )
    })
}

async fn answer(
    state: &MockState,
    peer: SocketAddr,
    parts: http::request::Parts,
    mut body: RequestBody,
    path: &str,
    query: &[(String, String)],
    counter: &Arc<AtomicU64>,
) -> (Response<Body>, Outcome) {
    if let Some(sink) = state.sinks.iter().find(|s| path.starts_with(&s.decl.path)) {
        if parts.method == Method::POST {
            let bytes = match body.bytes(counter).await {
                Ok(bytes) => bytes,
                Err(response) => return (response, Outcome::Sink(sink.decl.name.clone())),
            };
            let (status, answer) = sink.accept(&parts.headers, &bytes);
            return (
                json_response(status, &answer),
                Outcome::Sink(sink.decl.name.clone()),
            );
        }
    }
    if path == "/" {
        if let Some(step) = state.scenario.next(time_seconds()) {
            body.note_size(counter);
            sleep_ms(step.delay_ms).await;
            let Some(status) = step.status else {
                return (Response::new(full(Bytes::new())), Outcome::NoAnswer);
            };
            let response = if state.scenario_errors_as_500 && status != StatusCode::OK {
                bare_500()
            } else {
                typed_text(status, step.body)
            };
            return (response, Outcome::Scenario);
        }
    }
    let lookup = {
        let view = RequestView {
            method: &parts.method,
            path,
            query,
            headers: &parts.headers,
        };
        match state.store.find(&view, None) {
            Lookup::NeedsBody => match body.bytes(counter).await {
                Ok(bytes) => state.store.find(&view, Some(&bytes)),
                Err(response) => return (response, Outcome::Unmatched),
            },
            found => found,
        }
    };
    let entry = match lookup {
        Lookup::Matched(entry) => entry,
        Lookup::NoMatch | Lookup::NeedsBody => {
            if let Some(flaky) = state.flaky.as_ref().filter(|f| f.settings.path == path) {
                body.note_size(counter);
                return match flaky.next() {
                    FlakyAnswer::Answer {
                        delay,
                        status,
                        body,
                    } => {
                        tokio::time::sleep(delay).await;
                        (typed_text(status, body), Outcome::Flaky)
                    }
                    FlakyAnswer::NoAnswer(wait) => {
                        tokio::time::sleep(wait).await;
                        (Response::new(full(Bytes::new())), Outcome::NoAnswer)
                    }
                };
            }
            return match state.routes.destination(path) {
                Some(destination) => (
                    proxy(destination, parts, body, peer, counter).await,
                    Outcome::Proxied(None),
                ),
                None => {
                    // The 404 says why each close expectation missed, its json_body included.
                    let read = if state.store.any_needs_body() {
                        match body.bytes(counter).await {
                            Ok(bytes) => Some(bytes),
                            Err(response) => return (response, Outcome::Unmatched),
                        }
                    } else {
                        body.note_size(counter);
                        None
                    };
                    (
                        not_matched(state, &parts, path, query, read.as_deref()),
                        Outcome::Unmatched,
                    )
                }
            };
        }
    };
    let expectation = &entry.expectation;
    let id = expectation.id.clone();
    sleep_ms(expectation.delay_ms).await;
    match &expectation.action {
        Action::Respond {
            status,
            headers,
            body: content,
        } => {
            body.note_size(counter);
            let mut response = Response::new(full(content.clone()));
            *response.status_mut() = *status;
            for (name, value) in headers {
                response.headers_mut().append(name.clone(), value.clone());
            }
            (response, Outcome::Expectation(id))
        }
        Action::Handler {
            file,
            timeout_ms,
            fresh,
        } => {
            let bytes = match body.bytes(counter).await {
                Ok(bytes) => bytes,
                Err(response) => return (response, Outcome::Expectation(id)),
            };
            let request = HandlerRequest {
                method: parts.method.as_str(),
                path,
                query,
                headers: &parts.headers,
                body: &bytes,
            };
            let called = state
                .handlers
                .call(file, Duration::from_millis(*timeout_ms), *fresh, &request)
                .await;
            let response = match called {
                Ok(answer) => {
                    let mut response = Response::new(full(answer.body));
                    *response.status_mut() = answer.status;
                    for (name, value) in answer.headers {
                        response.headers_mut().append(name, value);
                    }
                    response
                }
                Err(message) => json_response(
                    StatusCode::BAD_GATEWAY,
                    &json!({"error": message, "expectation": id}),
                ),
            };
            (response, Outcome::Expectation(id))
        }
        Action::Proxy => match state.routes.destination(path) {
            Some(destination) => (
                proxy(destination, parts, body, peer, counter).await,
                Outcome::Proxied(Some(id)),
            ),
            None => {
                body.note_size(counter);
                (
                    error(
                        StatusCode::BAD_GATEWAY,
                        format!("expectation {id} only delays proxied requests (it has no status_code), but the mock has no --upstream to proxy to"),
                    ),
                    Outcome::Expectation(id),
                )
            }
        },
    }
}

async fn proxy(
    destination: Destination<'_>,
    mut parts: http::request::Parts,
    body: RequestBody,
    peer: SocketAddr,
    counter: &Arc<AtomicU64>,
) -> Response<Body> {
    if let Some(path) = &destination.path {
        let path_and_query = match parts.uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path.clone(),
        };
        match path_and_query.parse::<http::Uri>() {
            Ok(uri) => parts.uri = uri,
            Err(e) => {
                return error(
                    StatusCode::BAD_GATEWAY,
                    format!("the rewritten path {path_and_query:?} is not a valid path: {e}"),
                )
            }
        }
    }
    let forwarded = body.into_forwarded(Arc::clone(counter));
    let upstream = &destination.upstream.url;
    match destination.upstream.forward(parts, forwarded, peer).await {
        Ok(mut response) => {
            let status = response.status();
            if status.is_server_error() {
                response.extensions_mut().insert(BackendError {
                    upstream: upstream.clone(),
                    kind: "status",
                    status: status.as_u16(),
                    message: format!("upstream {upstream} answered {status}"),
                });
            }
            response
        }
        Err(failure) => {
            let mut response = error(failure.status, failure.message.clone());
            if failure.kind.is_backend_error() {
                response.extensions_mut().insert(BackendError {
                    upstream: upstream.clone(),
                    kind: failure.kind.name(),
                    status: failure.status.as_u16(),
                    message: failure.message,
                });
            }
            response
        }
    }
}

fn not_matched(
    state: &MockState,
    parts: &http::request::Parts,
    path: &str,
    query: &[(String, String)],
    body: Option<&[u8]>,
) -> Response<Body> {
    let view = RequestView {
        method: &parts.method,
        path,
        query,
        headers: &parts.headers,
    };
    if state.routes.has_routes() {
        // The mockserver seed's answer for a path no route takes, word for word.
        return json_response(StatusCode::NOT_FOUND, &json!({"error": "Path not found."}));
    }
    let closest = state.store.closest(&view, body, CLOSEST_LISTED);
    let closest = serde_json::to_value(&closest).unwrap_or_default();
    let mut response = json_response(
        StatusCode::NOT_FOUND,
        &json!({
            "error": format!("no expectation matches {} {path} and the mock has no --upstream", parts.method),
            "request": {"method": parts.method.as_str(), "path": path, "query": parts.uri.query()},
            "closest": closest,
        }),
    );
    response
        .extensions_mut()
        .insert(ClosestExpectations(closest));
    response
}

// ---------------------------------------------------------------- helpers

async fn sleep_ms(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

fn time_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `GET /mocker/history`: the journal's calls plus what the sinks took, as the seed lists them.
fn history(state: &MockState) -> Value {
    let mut history = state.journal.history();
    for (key, kind) in [
        ("external_logger_events", "events"),
        ("external_logger_scriptlogs", "scriptlogs"),
        ("unauthenticated_external_logs", "unauthenticated"),
    ] {
        let records: Vec<Value> = state.sinks.iter().flat_map(|s| s.recent(kind)).collect();
        history[key] = Value::Array(records);
    }
    history
}

/// A body with the content type its text suggests (JSON or plain text).
fn typed_text(status: StatusCode, text: String) -> Response<Body> {
    let content_type = if super::expectation::looks_like_json(&text) {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut response = Response::new(full(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

/// The scenario seed's answer to every failure: aiohttp's bare 500 page.
fn bare_500() -> Response<Body> {
    typed_text(
        StatusCode::INTERNAL_SERVER_ERROR,
        super::flaky::BARE_500_BODY.to_string(),
    )
}

/// Query parameters, percent-decoded (`+` is a space), as forms encode them.
pub fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    query.map_or_else(Vec::new, |query| {
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    })
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn text_response(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json_response(status, &json!({"error": message.into()}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_decoded() {
        assert_eq!(
            parse_query(Some("a=1&b=x%20y&c=p+q&flag&d=%zz")),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), "p q".into()),
                ("flag".into(), "".into()),
                ("d".into(), "%zz".into()),
            ]
        );
        assert!(parse_query(None).is_empty());
        assert_eq!(parse_query(Some("a=%4")), vec![("a".into(), "%4".into())]);
    }

    #[test]
    fn admin_paths() {
        assert!(is_admin_path("/mocker/expectation"));
        assert!(is_admin_path("/setscenario"));
        assert!(is_admin_path("/requests"));
        assert!(!is_admin_path("/mockery"));
        assert!(!is_admin_path("/"));
    }
}
