//! Dynamic responses: an expectation's Python `handler(body, headers)` runs in a process of its own,
//! in its own folder, with a time limit and resource limits, so a crash, a hang or a runaway
//! handler costs the caller a 502 and never the server.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The Python program that loads a handler file, calls it and prints its response.
const RUNNER: &str = include_str!("handler_runner.py");

/// Address space a handler process may use.
const MEMORY_LIMIT: u64 = 1 << 30;
/// Largest file a handler may write (inside its folder).
const FILE_SIZE_LIMIT: u64 = 64 << 20;
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

    /// The interpreter: `explicit`, else the project's `.venv`, else `python3` on PATH.
    pub fn find_python(explicit: Option<&Path>, project_dir: &Path) -> PathBuf {
        if let Some(path) = explicit {
            return path.to_path_buf();
        }
        let venv = project_dir.join(".venv/bin/python3");
        if venv.is_file() {
            return venv;
        }
        PathBuf::from("python3")
    }

    /// Calls `handler` of `file`. The error is the message for the 502 body.
    pub async fn call(
        &self,
        file: &Path,
        timeout: Duration,
        request: &HandlerRequest<'_>,
    ) -> Result<HandlerResponse, String> {
        let name = file.display();
        let folder = file.parent().unwrap_or(Path::new("/"));
        let input = request_json(request).to_string();
        let mut command = tokio::process::Command::new(&self.python);
        command
            .arg("-I")
            .arg("-c")
            .arg(RUNNER)
            .arg(file)
            .current_dir(folder)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", folder)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONIOENCODING", "utf-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // SAFETY: only async-signal-safe calls (setsid, setrlimit) between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::setsid();
                limit(libc::RLIMIT_AS, MEMORY_LIMIT);
                limit(libc::RLIMIT_FSIZE, FILE_SIZE_LIMIT);
                limit(libc::RLIMIT_CORE, 0);
                limit(libc::RLIMIT_NOFILE, 64);
                Ok(())
            });
        }
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
                if let Some(pid) = pid {
                    // SAFETY: kills the handler's own process group (it called setsid).
                    unsafe {
                        libc::kill(-(pid as i32), libc::SIGKILL);
                    }
                }
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

fn limit(resource: libc::__rlimit_resource_t, value: u64) {
    let bound = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit with a valid pointer; failure only leaves the limit as it was.
    unsafe {
        libc::setrlimit(resource, &bound);
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

/// The last lines of a handler's stderr (its traceback), cut to a readable size.
fn stderr_tail(err: &[u8]) -> String {
    let text = String::from_utf8_lossy(err);
    let text = text.trim();
    if text.is_empty() {
        return "no output on stderr".to_string();
    }
    let start = text.len().saturating_sub(STDERR_KEPT);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].to_string()
}
