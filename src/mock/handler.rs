//! Dynamic responses: an expectation's Python `handler(body, headers)` runs in a process of its own,
//! in its own folder, with a time limit and resource limits, so a crash, a hang or a runaway
//! handler costs the caller a 502 and never the server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The Python program that loads a handler file, calls it and prints its response.
const RUNNER: &str = concat!(
    include_str!("../python/sandbox.py"),
    include_str!("../python/handler_main.py")
);

/// Most of the handler's stderr kept for the 502 body.
const STDERR_KEPT: usize = 4096;

/// What a handler answered.
#[derive(Debug)]
pub struct HandlerResponse {
    pub status: http::StatusCode,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub body: bytes::Bytes,
}

#[derive(Deserialize)]
struct RunnerOutput {
    status: u16,
    headers: std::collections::BTreeMap<String, String>,
    body_b64: String,
}

/// Starts handler processes with one Python interpreter.
#[derive(Debug, Clone)]
pub struct HandlerRunner {
    python: PathBuf,
}

/// The request as the handler sees it.
pub struct HandlerRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
}

impl HandlerRunner {
    /// A runner using this Python interpreter.
    pub fn new(python: PathBuf) -> Self {
        HandlerRunner { python }
    }

    /// Calls `handler` of `file`. The error is the message for the 502 body.
    pub async fn call(
        &self,
        file: &Path,
        timeout: Duration,
        request: &HandlerRequest<'_>,
    ) -> Result<HandlerResponse, String> {
        let name = file.display();
        let input = request_json(request).to_string();
        let mut command = crate::python::confined_command(&self.python, RUNNER, file);
        let mut child = command.spawn().map_err(|e| {
            format!(
                "cannot start {} for handler {name}: {e}; install Python 3 or point --python (INFRAMOCK_PYTHON) at it",
                self.python.display()
            )
        })?;
        let pid = child.id();
        let mut stdin = child.stdin.take();
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let run = async {
            let write = async {
                if let Some(mut pipe) = stdin.take() {
                    // A handler that exits early closes the pipe: its exit status tells why.
                    let _ = pipe.write_all(input.as_bytes()).await;
                }
            };
            let read_out = async {
                let mut out = Vec::new();
                if let Some(pipe) = stdout.as_mut() {
                    let _ = pipe.read_to_end(&mut out).await;
                }
                out
            };
            let read_err = async {
                let mut err = Vec::new();
                if let Some(pipe) = stderr.as_mut() {
                    let _ = pipe.read_to_end(&mut err).await;
                }
                err
            };
            let ((), out, err) = tokio::join!(write, read_out, read_err);
            let status = child.wait().await;
            (status, out, err)
        };
        let (status, out, err) = match tokio::time::timeout(timeout, run).await {
            Ok(finished) => finished,
            Err(_) => {
                crate::python::kill_group(pid);
                return Err(format!(
                    "handler {name} timed out after {} ms and was killed",
                    timeout.as_millis()
                ));
            }
        };
        let status = status.map_err(|e| format!("handler {name}: cannot wait for it: {e}"))?;
        if !status.success() {
            let tail = stderr_tail(&err);
            let how = match status.code() {
                Some(code) => format!("exited with code {code}"),
                None => "was killed by a signal (memory limit?)".to_string(),
            };
            return Err(format!("handler {name} failed ({how}): {tail}"));
        }
        let output: RunnerOutput = serde_json::from_slice(&out).map_err(|e| {
            format!(
                "handler {name} printed no response ({e}): {}",
                stderr_tail(&err)
            )
        })?;
        to_response(output).map_err(|e| format!("handler {name}: {e}"))
    }
}

fn request_json(request: &HandlerRequest<'_>) -> Value {
    let body = if request.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice::<Value>(request.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(request.body).into_owned()))
    };
    let mut headers = serde_json::Map::new();
    for (name, value) in request.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_string(), Value::String(value));
            }
        }
    }
    let query: serde_json::Map<String, Value> = request
        .query
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    json!({
        "method": request.method,
        "path": request.path,
        "query": query,
        "headers": headers,
        "body": body,
    })
}

fn to_response(output: RunnerOutput) -> Result<HandlerResponse, String> {
    let status = http::StatusCode::from_u16(output.status)
        .map_err(|_| format!("status {} is not an HTTP status", output.status))?;
    let mut headers = Vec::new();
    for (name, value) in output.headers {
        let header = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("returned header name {name:?} is not valid"))?;
        let value = http::HeaderValue::from_str(&value)
            .map_err(|_| format!("returned header {name:?} has an invalid value"))?;
        headers.push((header, value));
    }
    let body = base64::engine::general_purpose::STANDARD
        .decode(output.body_b64)
        .map_err(|e| format!("returned body is not base64: {e}"))?;
    Ok(HandlerResponse {
        status,
        headers,
        body: body.into(),
    })
}

fn stderr_tail(err: &[u8]) -> String {
    crate::python::stderr_tail(err, STDERR_KEPT)
}
