//! The control port of the fault proxies: HTTP (`GET /mock/<command>?param=value`) and JSON lines
//! (`{"command": "hiccup", "payload": {"msecs": 200}}` -> `{"status": "ok"}`) on the same port; the
//! first byte of a connection tells which.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::line_reader::{BoundedLines, MAX_COMMAND_LINE};
use tokio::net::{TcpListener, TcpStream};

use super::command::apply;
use super::{proxy, Faults};
use crate::stack::ports::{find_listener, PortInUse};

/// A proxy to start: `name` listens on `listen` (0 = a free port) and forwards to `target`.
#[derive(Debug, Clone)]
pub struct ProxySpec {
    pub name: String,
    pub listen: u16,
    pub target: SocketAddr,
}

/// Running proxies and their control port.
pub struct FaultServer {
    /// Where the control port listens.
    pub control: SocketAddr,
    /// Each proxy's name and the port it listens on.
    pub proxies: Vec<(String, u16)>,
}

impl FaultServer {
    /// Binds every proxy and the control port (all on 127.0.0.1), then serves in the background.
    pub async fn start(specs: Vec<ProxySpec>, control_port: u16) -> Result<FaultServer> {
        let faults = Faults::new(specs.iter().map(|s| s.name.clone()));
        let mut proxies = Vec::new();
        for spec in &specs {
            let listener = bind(spec.listen, "the fault proxy port").await?;
            let port = listener.local_addr()?.port();
            let service = faults
                .service(&spec.name)
                .context("internal: proxy without fault state")?;
            tokio::spawn(proxy::serve(listener, spec.target, service));
            proxies.push((spec.name.clone(), port));
        }
        let control_listener = bind(control_port, "--control-port").await?;
        let control = control_listener.local_addr()?;
        tokio::spawn(serve_control(control_listener, faults.clone()));
        Ok(FaultServer { control, proxies })
    }
}

async fn bind(port: u16, flag: &'static str) -> Result<TcpListener> {
    match TcpListener::bind((IpAddr::V4(Ipv4Addr::LOCALHOST), port)).await {
        Ok(listener) => Ok(listener),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(PortInUse {
            port,
            flag: flag.to_string(),
            holder: find_listener(port),
        }
        .into()),
        Err(e) => Err(e).with_context(|| format!("cannot listen on 127.0.0.1:{port} ({flag})")),
    }
}

async fn serve_control(listener: TcpListener, faults: Faults) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let faults = faults.clone();
        tokio::spawn(async move {
            let mut first = [0u8; 1];
            match stream.peek(&mut first).await {
                Ok(1) if first[0] == b'{' => json_lines(stream, &faults).await,
                Ok(_) => http(stream, faults).await,
                Err(_) => {}
            }
        });
    }
}

/// Answers JSON-line commands on a connection until it closes.
pub async fn json_lines(stream: TcpStream, faults: &Faults) {
    let (read, mut write) = stream.into_split();
    let mut lines = BoundedLines::new(read, MAX_COMMAND_LINE);
    while let Ok(Some(line)) = lines.next().await {
        let answer = match line.text(MAX_COMMAND_LINE) {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => answer_json_line(faults, &line),
            Err(error) => json!({"status": "fail", "error": error}),
        };
        if write
            .write_all(format!("{answer}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// One JSON-line command and its answer, as CouchbaseMock answers: `{"status": "ok"}`, with a
/// `payload` for the commands that report something (`status`: the faults; `help`: the commands),
/// or `{"status": "fail", "error": ...}`.
pub fn answer_json_line(faults: &Faults, line: &str) -> Value {
    let parsed = parse_json_line(line).and_then(|(command, payload)| {
        apply(faults, &command, &payload).map(|answer| (command.to_ascii_lowercase(), answer))
    });
    match parsed {
        Ok((command, answer)) if command == "status" => {
            json!({"status": "ok", "payload": answer["faults"]})
        }
        Ok((command, answer)) if command == "help" => {
            json!({"status": "ok", "payload": answer["commands"]})
        }
        Ok(_) => json!({"status": "ok"}),
        Err(error) => json!({"status": "fail", "error": error}),
    }
}

/// `{"command": ..., "payload": {...}}` -> the command and its parameters.
pub fn parse_json_line(line: &str) -> Result<(String, BTreeMap<String, Value>), String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
    let command = value["command"]
        .as_str()
        .ok_or("expected {\"command\": \"...\", \"payload\": {...}}")?
        .to_string();
    if let Some(key) = value
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "command" && *k != "payload"))
    {
        return Err(format!(
            "unknown key `{key}`; a command has `command` and `payload`"
        ));
    }
    let payload = match &value["payload"] {
        Value::Null => BTreeMap::new(),
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        other => return Err(format!("`payload` must be an object, got {other}")),
    };
    Ok((command, payload))
}

async fn http(stream: TcpStream, faults: Faults) {
    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
        let faults = faults.clone();
        async move { Ok::<_, Infallible>(answer_http(&faults, &request)) }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

fn answer_http<B>(faults: &Faults, request: &http::Request<B>) -> http::Response<Full<Bytes>> {
    let path = request.uri().path();
    let (status, body) = match path.strip_prefix("/mock/") {
        Some("health") => (http::StatusCode::OK, json!({"status": "ok"})),
        Some(command) => {
            let params: BTreeMap<String, Value> =
                crate::mock::server::parse_query(request.uri().query())
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect();
            match apply(faults, command, &params) {
                Ok(answer) => (http::StatusCode::OK, answer),
                Err(error) => (
                    http::StatusCode::BAD_REQUEST,
                    json!({"status": "fail", "error": error}),
                ),
            }
        }
        None => (
            http::StatusCode::NOT_FOUND,
            json!({"status": "fail", "error": format!("{path} is not a control route; use /mock/<command>?param=value")}),
        ),
    };
    let mut response = http::Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_parsed_and_answered() {
        let faults = Faults::new(["redis".to_string()]);
        let ok = answer_json_line(&faults, r#"{"command": "latency", "payload": {"ms": 5}}"#);
        assert_eq!(ok, json!({"status": "ok"}));
        let status = answer_json_line(&faults, r#"{"command": "STATUS"}"#);
        assert_eq!(status["status"], "ok");
        assert_eq!(status["payload"]["redis"]["latency"]["ms"], 5, "{status}");
        let help = answer_json_line(&faults, r#"{"command": "help"}"#);
        assert!(help["payload"]["hiccup"]["does"].is_string(), "{help}");
        let bad = answer_json_line(&faults, r#"{"command": "latency", "payload": {"ms": "x"}}"#);
        assert_eq!(bad["status"], "fail");
        assert!(parse_json_line("[1]").is_err());
        assert!(parse_json_line(r#"{"command": "reset", "extra": 1}"#)
            .unwrap_err()
            .contains("unknown key"));
        assert!(parse_json_line("not json")
            .unwrap_err()
            .contains("not a JSON object"));
    }
}
