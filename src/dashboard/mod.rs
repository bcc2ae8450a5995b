//! The dashboard: an HTTP server on 127.0.0.1 (default port 8088) with the stack at a glance and
//! the stack's readiness URL.
//!
//! Routes (GET only; nothing here changes the stack yet):
//! - `/` the Stack page: each service with kind, version, runtime, URL, PID or container, health,
//!   and the readiness steps; kept current by server-sent events (`/events/stack`).
//! - `/health/ready`: 200 when the stack is ready (`stack::readiness`), else 503, with each step's
//!   state and what is missing, as JSON.
//! - `/health/live`: 200 while the dashboard runs (its own probe).
//! - `/api/stack`: what the Stack page shows, as JSON.
//!
//! Only loopback peers reach it (it binds 127.0.0.1), and only requests whose `Host` is a
//! loopback name are answered, so a web page elsewhere cannot read it through DNS rebinding.
//! Everything it serves is in the binary: no CDN, no npm step.

mod pages;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::stack::{health, readiness, state};

/// The dashboard's port when none is set.
pub const DEFAULT_PORT: u16 = 8088;

/// Connections served at once (a browser holds a few, each open page one more for its events).
const MAX_CONNECTIONS: usize = 64;

/// Time a client has to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the Stack page's events ask the stack again.
const EVENT_INTERVAL: Duration = Duration::from_secs(2);

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Serves the dashboard on 127.0.0.1:`port` until the process is stopped.
pub async fn serve(settings: Settings, port: u16) -> Result<()> {
    let listener = match TcpListener::bind(("127.0.0.1", port)).await {
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
            return Err(e).with_context(|| format!("cannot listen on 127.0.0.1:{port}"));
        }
    };
    let address = listener.local_addr()?;
    eprintln!("dashboard on http://{address}/ (readiness: http://{address}/health/ready)");
    let settings = Arc::new(settings);
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _peer) = match listener.accept().await {
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
        let settings = Arc::clone(&settings);
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(Arc::clone(&settings), request));
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

/// One request.
async fn answer(
    settings: Arc<Settings>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Infallible> {
    if let Some(host) = foreign_host(&request) {
        return Ok(text(
            StatusCode::FORBIDDEN,
            format!("the dashboard answers requests for localhost only, not for Host {host}\n"),
        ));
    }
    if request.method() != Method::GET {
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "the dashboard only answers GET\n".into(),
        ));
    }
    let response = match request.uri().path() {
        "/" => html(
            StatusCode::OK,
            pages::stack_page(&overview(&settings).await),
        ),
        "/health/live" => json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
        "/health/ready" => {
            let readiness = readiness::check(&settings).await;
            let status = if readiness.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(status, &readiness)
        }
        "/api/stack" => json(StatusCode::OK, &overview(&settings).await),
        "/events/stack" => stack_events(settings),
        path => text(
            StatusCode::NOT_FOUND,
            format!("no page {path}; try / or /health/ready\n"),
        ),
    };
    Ok(response)
}

/// The `Host` of a request when it is not a loopback name (`localhost`, `127.0.0.1`, `[::1]`).
fn foreign_host<B>(request: &Request<B>) -> Option<String> {
    let host = request
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    let loopback = matches!(name, "localhost" | "127.0.0.1" | "::1")
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then(|| host.to_string())
}

/// What the Stack page shows.
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

async fn overview(settings: &Settings) -> Overview {
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
    Overview {
        project: settings.project_name.clone(),
        stack,
        readiness: readiness::check(settings).await,
    }
}

/// Server-sent events: the Stack page's live part, sent again whenever it changes.
fn stack_events(settings: Arc<Settings>) -> Response<Body> {
    let events =
        futures::stream::unfold((settings, String::new()), |(settings, last)| async move {
            loop {
                let fragment = pages::stack_fragment(&overview(&settings).await);
                if fragment != last {
                    // One event, one `data:` line: the fragment holds no line breaks.
                    let event = format!("event: stack\ndata: {fragment}\n\n");
                    let frame: Result<Frame<Bytes>, Infallible> =
                        Ok(Frame::data(Bytes::from(event)));
                    return Some((frame, (settings, fragment)));
                }
                tokio::time::sleep(EVENT_INTERVAL).await;
            }
        });
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
    response
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    full(status, "application/json", Bytes::from(body))
}

fn html(status: StatusCode, page: String) -> Response<Body> {
    full(status, "text/html; charset=utf-8", Bytes::from(page))
}

fn text(status: StatusCode, message: String) -> Response<Body> {
    full(status, "text/plain; charset=utf-8", Bytes::from(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_host(host: &str) -> Request<()> {
        Request::builder()
            .header(hyper::header::HOST, host)
            .body(())
            .expect("request")
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
            assert_eq!(foreign_host(&with_host(host)), None, "{host}");
        }
        for host in [
            "evil.example:8088",
            "10.0.0.1:8088",
            "localhost.evil.example",
            "",
        ] {
            assert!(foreign_host(&with_host(host)).is_some(), "{host:?}");
        }
    }
}
