//! The dashboard: an HTTP server on 127.0.0.1 (default port 8088) with the whole local stack at a
//! glance, its mocks, queues and faults editable, and the stack's readiness URL.
//!
//! Pages (server-rendered; each keeps its live part current by server-sent events):
//! `/` the stack (`overview.rs`), `/resources` tables, buckets, queues and topics
//! (`resources.rs`), `/data` the last load and a reload button (`data.rs`), `/mocks`
//! expectations and the request journal (`mocks.rs`), `/queues` tails and bridges (`queues.rs`),
//! `/faults` the fault proxies (`faults.rs`). Also `/health/ready` (200 when the stack is ready,
//! else 503, `stack::readiness`), `/health/live`, `/api/stack`.
//!
//! Security: it binds 127.0.0.1; it answers only requests whose `Host` is a loopback name (no DNS
//! rebinding); a request that changes something must be a POST from the dashboard's own pages
//! (`Origin` and `Sec-Fetch-Site` checked: no cross-site request forgery from another page open
//! in the browser). Everything it serves is in the binary: no CDN, no npm step.

mod data;
mod faults;
mod layout;
mod mocks;
mod overview;
mod queues;
mod resources;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::aws::{AwsClients, Endpoint};
use crate::config::Settings;
use crate::stack::{readiness, state, ServiceName};
use layout::Page;

/// The dashboard's port when none is set.
pub const DEFAULT_PORT: u16 = 8088;

/// Connections served at once (a browser holds a few, each open page one more for its events).
const MAX_CONNECTIONS: usize = 64;

/// Time a client has to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest form a page sends (an expectation pasted as JSON, a message to send).
const FORM_LIMIT: usize = 1024 * 1024;

/// How often a page's events ask the stack again.
const EVENT_INTERVAL: Duration = Duration::from_secs(2);

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What every page handler may use: the settings and the AWS clients of the running stack.
pub struct Context {
    pub settings: Settings,
    /// Clients of the last endpoint asked (rebuilt when the stack's endpoint changes).
    clients: tokio::sync::Mutex<Option<AwsClients>>,
    access: Access,
}

impl Context {
    /// The AWS clients of the project's running stack.
    pub async fn clients(&self) -> Result<AwsClients> {
        let recorded = state::read(&self.settings.state_dir())?;
        let endpoint = Endpoint::resolve(&self.settings, recorded.as_ref())?;
        let mut cached = self.clients.lock().await;
        if let Some(clients) = cached.as_ref().filter(|c| c.url == endpoint.url) {
            return Ok(clients.clone());
        }
        let clients = endpoint.clients().await;
        *cached = Some(clients.clone());
        Ok(clients)
    }

    /// The URL of one of the stack's own helpers (mock server, fault control), when it runs.
    pub fn helper_url(&self, service: &ServiceName) -> Option<String> {
        let recorded = state::read(&self.settings.state_dir()).ok().flatten()?;
        recorded
            .service(service)
            .map(|record| format!("http://127.0.0.1:{}", record.port))
    }
}

/// What a handler answers.
pub enum Reply {
    /// A page in the shell.
    Page(Page),
    /// JSON with a status.
    Json(StatusCode, serde_json::Value),
    /// After a form: back to a page (303), with a one-time message.
    Redirect { to: String, flash: String },
    /// A file to save (an S3 object).
    Download {
        name: String,
        content_type: String,
        body: Bytes,
    },
    /// Something the user asked for is not there or not valid: said in a page.
    Problem(StatusCode, String),
}

/// Who may use the dashboard: peers on this machine always; others, when it listens beyond
/// loopback, only with its token.
#[derive(Debug, Clone)]
pub struct Access {
    bind: std::net::IpAddr,
    token: Option<String>,
}

/// The shortest token a dashboard open to the network takes.
const MIN_TOKEN: usize = 16;

/// The cookie that keeps a browser's token after `/?token=`.
const TOKEN_COOKIE: &str = "inframock_dashboard";

impl Access {
    /// Listening beyond loopback needs a token of at least 16 characters.
    pub fn new(bind: std::net::IpAddr, token: Option<String>) -> Result<Access> {
        if !bind.is_loopback() {
            match &token {
                None => anyhow::bail!(
                    "the dashboard on {bind} would let anyone who reaches this machine change the stack: set a token with --token or INFRAMOCK_DASHBOARD_TOKEN (at least {MIN_TOKEN} characters), or keep the default bind 127.0.0.1"
                ),
                Some(token) if token.chars().count() < MIN_TOKEN => anyhow::bail!(
                    "the dashboard's token (--token / INFRAMOCK_DASHBOARD_TOKEN) has {} characters; one that guards a dashboard on the network needs at least {MIN_TOKEN}",
                    token.chars().count()
                ),
                Some(_) => {}
            }
        }
        Ok(Access { bind, token })
    }
}

/// What a peer's request says about the token.
#[derive(Debug, PartialEq, Eq)]
enum Presented {
    /// The right token, in `Authorization: Bearer` or the cookie.
    Valid,
    /// The right token in `?token=`: keep it in a cookie and go on without it in the address.
    Login,
    Missing,
    Wrong,
}

/// Compares without stopping at the first difference (no timing hint of how much was right).
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn presented<B>(request: &Request<B>, query: &Query, token: &str) -> Presented {
    let headers = request.headers();
    let bearer = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(&format!("{TOKEN_COOKIE}=")))
        .next_back();
    let login = query.get("token").map(String::as_str);
    match (bearer.or(cookie), login) {
        (_, Some(given)) if same_secret(given, token) => Presented::Login,
        (_, Some(_)) => Presented::Wrong,
        (Some(given), None) if same_secret(given, token) => Presented::Valid,
        (Some(_), None) => Presented::Wrong,
        (None, None) => Presented::Missing,
    }
}

/// Serves the dashboard on `access`'s address and `port` until the process is stopped.
pub async fn serve(settings: Settings, port: u16, access: Access) -> Result<()> {
    let listener = match TcpListener::bind((access.bind, port)).await {
        Ok(listener) => listener,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            return Err(crate::stack::ports::PortInUse {
                port,
                flag: "--dashboard-port".into(),
                holder: crate::stack::ports::find_listener(port),
            }
            .into())
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot listen on {}:{port}", access.bind));
        }
    };
    let address = listener.local_addr()?;
    eprintln!("dashboard on http://{address}/ (readiness: http://{address}/health/ready)");
    let context = Arc::new(Context {
        settings,
        clients: tokio::sync::Mutex::new(None),
        access,
    });
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                eprintln!("dashboard: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let context = Arc::clone(&context);
        tokio::spawn(async move {
            let service =
                service_fn(move |request| answer(Arc::clone(&context), peer.ip(), request));
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

/// One request: checks, then the route.
async fn answer(
    context: Arc<Context>,
    peer: std::net::IpAddr,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_string();
    let mut query = parse_pairs(request.uri().query().unwrap_or("").as_bytes());
    let on_this_machine = match peer {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
    };
    match (&context.access.token, on_this_machine) {
        // A peer elsewhere (only possible with a token): the token decides.
        (Some(token), false) => match presented(&request, &query, token) {
            Presented::Valid => {}
            Presented::Login => {
                query.remove("token");
                let rest: String = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(query.iter())
                    .finish();
                let to = if rest.is_empty() { path } else { format!("{path}?{rest}") };
                let mut response = full(StatusCode::SEE_OTHER, "text/plain", Bytes::new());
                let cookie = format!("{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
                for (name, value) in [(hyper::header::LOCATION, to), (hyper::header::SET_COOKIE, cookie)] {
                    if let Ok(value) = hyper::header::HeaderValue::from_str(&value) {
                        response.headers_mut().insert(name, value);
                    }
                }
                return Ok(response);
            }
            Presented::Missing | Presented::Wrong => {
                return Ok(text(
                    StatusCode::UNAUTHORIZED,
                    "this dashboard needs its token: `Authorization: Bearer TOKEN`, or open /?token=TOKEN once in the browser\n".into(),
                ))
            }
        },
        (None, false) => {
            return Ok(text(
                StatusCode::FORBIDDEN,
                "the dashboard answers this machine only\n".into(),
            ))
        }
        // On this machine: only loopback host names (no DNS rebinding).
        (_, true) => {
            if let Some(host) = foreign_host(&request) {
                return Ok(text(
                    StatusCode::FORBIDDEN,
                    format!(
                        "the dashboard answers requests for localhost only, not for Host {host}\n"
                    ),
                ));
            }
        }
    }
    let method = request.method().clone();
    if method == Method::POST {
        if let Some(why) = cross_site(&request) {
            return Ok(text(StatusCode::FORBIDDEN, format!("{why}\n")));
        }
        let form = match Limited::new(request.into_body(), FORM_LIMIT)
            .collect()
            .await
        {
            Ok(body) => parse_pairs(&body.to_bytes()),
            Err(_) => {
                return Ok(text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("a form may hold at most {} KiB\n", FORM_LIMIT / 1024),
                ))
            }
        };
        return Ok(render(&context, post(&context, &path, &form).await, &query));
    }
    if method != Method::GET {
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "the dashboard answers GET, and POST from its own forms\n".into(),
        ));
    }
    if let Some(page_path) = path.strip_prefix("/events") {
        let page_path = if page_path.is_empty() { "/" } else { page_path };
        return Ok(live_events(context, page_path.to_string(), query));
    }
    let reply = get(&context, &path, &query).await;
    Ok(render(&context, reply, &query))
}

/// The GET routes.
async fn get(context: &Context, path: &str, query: &Query) -> Reply {
    match path {
        "/" => overview::page(context).await,
        "/health/live" => Reply::Json(StatusCode::OK, serde_json::json!({"status": "ok"})),
        "/health/ready" => {
            let readiness = readiness::check(&context.settings).await;
            let status = if readiness.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            Reply::Json(status, serde_json::to_value(&readiness).unwrap_or_default())
        }
        "/api/stack" => Reply::Json(
            StatusCode::OK,
            serde_json::to_value(overview::overview(&context.settings).await).unwrap_or_default(),
        ),
        "/resources" => settled(resources::overview(context).await),
        "/resources/table" => settled(resources::table(context, query).await),
        "/resources/bucket" => settled(resources::bucket(context, query).await),
        "/resources/object" => settled(resources::object(context, query).await),
        "/resources/queue" => settled(resources::queue(context, query).await),
        "/resources/topic" => settled(resources::topic(context, query).await),
        "/data" => data::page(context).await,
        "/mocks" => mocks::page(context, query).await,
        "/queues" => queues::page(context).await,
        "/faults" => faults::page(context).await,
        other => Reply::Problem(
            StatusCode::NOT_FOUND,
            format!("no page {other}; the pages are listed at the top"),
        ),
    }
}

/// A handler's answer: the page, or the problem that stopped it.
fn settled(answer: Result<Reply, Reply>) -> Reply {
    answer.unwrap_or_else(|problem| problem)
}

/// The POST routes (the dashboard's forms).
async fn post(context: &Context, path: &str, form: &Query) -> Reply {
    match path {
        "/resources/queue/send" => settled(resources::send_message(context, form).await),
        "/resources/topic/publish" => settled(resources::publish(context, form).await),
        "/data/reload" => data::reload(context).await,
        "/mocks/create" => mocks::create(context, form).await,
        "/mocks/delete" => mocks::delete(context, form).await,
        "/mocks/reset" => mocks::reset(context).await,
        "/faults/command" => faults::command(context, form).await,
        other => Reply::Problem(StatusCode::NOT_FOUND, format!("no form posts to {other}")),
    }
}

/// Query or form pairs (the last value of a repeated name wins).
pub type Query = BTreeMap<String, String>;

fn parse_pairs(bytes: &[u8]) -> Query {
    form_urlencoded::parse(bytes).into_owned().collect()
}

/// A reply as an HTTP response.
fn render(context: &Context, reply: Reply, query: &Query) -> Response<Body> {
    match reply {
        Reply::Page(page) => {
            let flash = query.get("flash").map(String::as_str);
            let html = layout::document(&context.settings.project_name, &page, flash);
            full(
                StatusCode::OK,
                "text/html; charset=utf-8",
                Bytes::from(html),
            )
        }
        Reply::Json(status, value) => {
            let body = serde_json::to_vec_pretty(&value).unwrap_or_default();
            full(status, "application/json", Bytes::from(body))
        }
        Reply::Redirect { to, flash } => {
            let separator = if to.contains('?') { '&' } else { '?' };
            let location = format!("{to}{separator}flash={}", layout::encode(&flash));
            let mut response = full(StatusCode::SEE_OTHER, "text/plain", Bytes::new());
            if let Ok(value) = hyper::header::HeaderValue::from_str(&location) {
                response
                    .headers_mut()
                    .insert(hyper::header::LOCATION, value);
            }
            response
        }
        Reply::Download {
            name,
            content_type,
            body,
        } => {
            let mut response = full(StatusCode::OK, "application/octet-stream", body);
            let headers = response.headers_mut();
            if let Ok(value) = hyper::header::HeaderValue::from_str(&content_type) {
                headers.insert(hyper::header::CONTENT_TYPE, value);
            }
            let safe: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_graphic() && c != '"' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if let Ok(value) =
                hyper::header::HeaderValue::from_str(&format!("attachment; filename=\"{safe}\""))
            {
                headers.insert(hyper::header::CONTENT_DISPOSITION, value);
            }
            response
        }
        Reply::Problem(status, message) => {
            let page = Page {
                section: "",
                title: status.to_string(),
                live: format!(
                    "<h2>{}</h2><p id=\"problem\">{}</p>",
                    status,
                    layout::escape(&message)
                ),
                controls: String::new(),
            };
            let html = layout::document(&context.settings.project_name, &page, None);
            full(status, "text/html; charset=utf-8", Bytes::from(html))
        }
    }
}

/// The `Host` of a request when it is not a loopback name (`localhost`, `127.0.0.1`, `[::1]`).
fn foreign_host<B>(request: &Request<B>) -> Option<String> {
    let host = request
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    (!is_loopback_authority(host)).then(|| host.to_string())
}

fn is_loopback_authority(authority: &str) -> bool {
    let name = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    matches!(name, "localhost" | "127.0.0.1" | "::1")
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why a POST is refused as cross-site, if it is: a browser names the page that sent it in
/// `Origin` (and says `Sec-Fetch-Site`); only the dashboard's own pages may change anything.
/// Clients that are not browsers send neither and are not a forgery risk.
fn cross_site<B>(request: &Request<B>) -> Option<String> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let host = header("host").unwrap_or_default();
    if let Some(origin) = header("origin") {
        let authority = origin
            .strip_prefix("http://")
            .unwrap_or("")
            .trim_end_matches('/');
        if authority != host {
            return Some(format!(
                "refused: this form was sent by {origin}, not by the dashboard (http://{host}); only the dashboard's own pages may change the stack"
            ));
        }
    }
    match header("sec-fetch-site").as_deref() {
        Some("cross-site" | "same-site") => {
            Some("refused: a form from another site may not change the stack".to_string())
        }
        _ => None,
    }
}

/// Server-sent events: the live part of the page at `path`, sent again whenever it changes.
fn live_events(context: Arc<Context>, path: String, query: Query) -> Response<Body> {
    let events = futures::stream::unfold(
        (context, path, query, String::new()),
        |(context, path, query, last)| async move {
            loop {
                let live = match get(&context, &path, &query).await {
                    Reply::Page(page) => layout::one_line(&page.live),
                    _ => return None,
                };
                if live != last {
                    let event = format!("event: live\ndata: {live}\n\n");
                    let frame: Result<Frame<Bytes>, Infallible> =
                        Ok(Frame::data(Bytes::from(event)));
                    return Some((frame, (context, path, query, live)));
                }
                tokio::time::sleep(EVENT_INTERVAL).await;
            }
        },
    );
    let mut response = Response::new(StreamBody::new(events).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    response
}

fn full(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body).boxed_unsync());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    headers.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    // Pages may only run their own inline script and load nothing from elsewhere.
    headers.insert(
        hyper::header::CONTENT_SECURITY_POLICY,
        hyper::header::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; img-src 'self'",
        ),
    );
    headers.insert(
        hyper::header::X_FRAME_OPTIONS,
        hyper::header::HeaderValue::from_static("DENY"),
    );
    response
}

fn text(status: StatusCode, message: String) -> Response<Body> {
    full(status, "text/plain; charset=utf-8", Bytes::from(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_headers(headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder();
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("request")
    }

    #[test]
    fn only_loopback_host_names_are_answered() {
        for host in [
            "localhost:8088",
            "127.0.0.1:8088",
            "[::1]:8088",
            "127.0.0.2",
            "app.localhost:1",
        ] {
            assert_eq!(
                foreign_host(&with_headers(&[("host", host)])),
                None,
                "{host}"
            );
        }
        for host in [
            "evil.example:8088",
            "10.0.0.1:8088",
            "localhost.evil.example",
            "",
        ] {
            assert!(
                foreign_host(&with_headers(&[("host", host)])).is_some(),
                "{host:?}"
            );
        }
    }

    #[test]
    fn a_dashboard_on_the_network_needs_a_long_token_and_peers_present_it() {
        let anywhere: std::net::IpAddr = "0.0.0.0".parse().expect("address");
        assert!(Access::new(anywhere, None)
            .is_err_and(|e| e.to_string().contains("INFRAMOCK_DASHBOARD_TOKEN")));
        assert!(Access::new(anywhere, Some("short".into()))
            .is_err_and(|e| e.to_string().contains("at least 16")));
        assert!(Access::new(anywhere, Some("a-token-of-20-chars!".into())).is_ok());
        let loopback: std::net::IpAddr = "127.0.0.1".parse().expect("address");
        assert!(Access::new(loopback, None).is_ok());

        let token = "a-token-of-20-chars!";
        let none = Query::new();
        let login: Query = [("token".to_string(), token.to_string())].into();
        let wrong_login: Query = [("token".to_string(), "nope".to_string())].into();
        let bearer = with_headers(&[("authorization", "Bearer a-token-of-20-chars!")]);
        let cookie = with_headers(&[("cookie", "a=b; inframock_dashboard=a-token-of-20-chars!")]);
        let wrong = with_headers(&[("authorization", "Bearer a-token-of-20-chars?")]);
        let bare = with_headers(&[]);
        assert_eq!(presented(&bearer, &none, token), Presented::Valid);
        assert_eq!(presented(&cookie, &none, token), Presented::Valid);
        assert_eq!(presented(&bare, &login, token), Presented::Login);
        assert_eq!(presented(&bare, &wrong_login, token), Presented::Wrong);
        assert_eq!(presented(&wrong, &none, token), Presented::Wrong);
        assert_eq!(presented(&bare, &none, token), Presented::Missing);
    }

    #[test]
    fn a_form_from_another_page_is_refused_and_one_from_the_dashboard_is_not() {
        let own = with_headers(&[
            ("host", "localhost:8088"),
            ("origin", "http://localhost:8088"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert_eq!(cross_site(&own), None);
        let curl = with_headers(&[("host", "localhost:8088")]);
        assert_eq!(cross_site(&curl), None);
        let other = with_headers(&[
            ("host", "localhost:8088"),
            ("origin", "http://evil.example"),
        ]);
        assert!(cross_site(&other).is_some_and(|why| why.contains("evil.example")));
        let other_port = with_headers(&[
            ("host", "localhost:8088"),
            ("origin", "http://localhost:3000"),
        ]);
        assert!(cross_site(&other_port).is_some());
        let fetch = with_headers(&[("host", "localhost:8088"), ("sec-fetch-site", "cross-site")]);
        assert!(cross_site(&fetch).is_some());
    }
}
