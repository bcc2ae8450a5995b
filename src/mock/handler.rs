//! Dynamic responses: an expectation's Python `handler(body, headers)` runs on a warm worker
//! (a kernel-confined interpreter that loaded the file once), with a time limit and resource
//! limits, so a crash, a hang or a runaway handler costs the caller a 502 and never the server.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::python::worker::{Worker, WorkerPool, WorkerSpec};
use crate::python::Sandbox;

/// The Python program that loads a handler file, calls it and prints its response.
const RUNNER: &str = concat!(
    include_str!("../python/sandbox.py"),
    include_str!("../python/handler_main.py")
);

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

/// Calls handlers on warm, confined workers: one pool per handler file.
pub struct HandlerRunner {
    /// The sandbox, or why handlers are refused on this machine.
    sandbox: Result<Sandbox, String>,
    pools: Mutex<HashMap<PathBuf, Arc<WorkerPool>>>,
    /// Workers per handler file.
    pool_size: usize,
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
    /// A runner with this sandbox (or the reason handlers are refused), `pool_size` warm workers
    /// per handler file.
    pub fn new(sandbox: Result<Sandbox, String>, pool_size: usize) -> Self {
        HandlerRunner {
            sandbox,
            pools: Mutex::new(HashMap::new()),
            pool_size: pool_size.max(1),
        }
    }

    /// Calls `handler` of `file` on a warm worker (`fresh`: on a worker of its own, killed after
    /// the call). The error is the message for the 502 body.
    pub async fn call(
        &self,
        file: &Path,
        timeout: Duration,
        fresh: bool,
        request: &HandlerRequest<'_>,
    ) -> Result<HandlerResponse, String> {
        let name = file.display();
        let sandbox = self.sandbox.as_ref().map_err(Clone::clone)?;
        let spec = WorkerSpec {
            sandbox: sandbox.clone(),
            program: RUNNER,
            file: file.to_path_buf(),
        };
        let input = request_json(request);
        let answer = if fresh {
            let mut worker = Worker::start(&spec).map_err(|e| format!("handler {name}: {e}"))?;
            let answer = worker.call(&input, timeout).await;
            worker.kill();
            answer
        } else {
            self.pool(spec).call(&input, timeout).await
        };
        let answer = answer.map_err(|e| format!("handler {name} {e}"))?;
        if let Some(error) = answer.get("error").and_then(|e| e.as_str()) {
            return Err(format!("handler {name} failed: {}", error.trim()));
        }
        let output: RunnerOutput = serde_json::from_value(answer)
            .map_err(|e| format!("handler {name} answered no response ({e})"))?;
        to_response(output).map_err(|e| format!("handler {name}: {e}"))
    }

    fn pool(&self, spec: WorkerSpec) -> Arc<WorkerPool> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools
            .entry(spec.file.clone())
            .or_insert_with(|| Arc::new(WorkerPool::new(spec, self.pool_size)))
            .clone()
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
