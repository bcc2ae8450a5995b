//! Warm Python workers: a confined, long-lived interpreter that loaded a helper file once and
//! answers one JSON line per JSON line over its pipes. A [`WorkerPool`] keeps a few per handler
//! file; a worker that crashes, times out or answers garbage is killed (with its whole process
//! group) and replaced by the next call; a changed file retires the idle workers.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Semaphore;

use super::Sandbox;
use crate::line_reader::BoundedLines;

/// The most of a worker's stderr kept (its last bytes): tracebacks for error answers.
pub const STDERR_KEPT: usize = 64 * 1024;
/// The longest answer line a worker may send.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// What a worker runs: a program (sandbox + main loop) applied to a helper file.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub sandbox: Sandbox,
    /// The Python program text (`python -c`), which loads `file` and serves JSON lines.
    pub program: &'static str,
    pub file: PathBuf,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Start(String),
    #[error("timed out after {0} ms and was killed")]
    TimedOut(u128),
    #[error("crashed: {0}")]
    Crashed(String),
}

/// One running worker.
pub struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BoundedLines<ChildStdout>,
    stderr: Arc<Mutex<VecDeque<u8>>>,
    /// When the file it loaded was last modified (a newer one retires it).
    loaded: Option<SystemTime>,
    _scratch: Scratch,
}

/// A per-worker scratch folder, removed when the worker goes.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn modified(file: &Path) -> Option<SystemTime> {
    std::fs::metadata(file).and_then(|m| m.modified()).ok()
}

impl Worker {
    /// Starts a confined worker for `spec`.
    pub fn start(spec: &WorkerSpec) -> Result<Worker, String> {
        let scratch = Scratch(scratch_folder()?);
        let loaded = modified(&spec.file);
        let mut command = spec.sandbox.command(spec.program, &spec.file, &scratch.0)?;
        let mut child = command.spawn().map_err(|e| {
            format!(
                "cannot start {} for {}: {e}; install Python 3 or point --python (INFRAMOCK_PYTHON) at it",
                spec.sandbox.python.display(),
                spec.file.display()
            )
        })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("internal: the worker has no pipes".to_string());
        };
        let kept = Arc::new(Mutex::new(VecDeque::new()));
        tokio::spawn(keep_tail(stderr, kept.clone()));
        Ok(Worker {
            child,
            stdin,
            stdout: BoundedLines::new(stdout, MAX_ANSWER_BYTES),
            stderr: kept,
            loaded,
            _scratch: scratch,
        })
    }

    /// Sends one request line and reads one answer line, within `timeout`.
    pub async fn call(&mut self, request: &Value, timeout: Duration) -> Result<Value, CallError> {
        let mut line = request.to_string();
        line.push('\n');
        let exchange = async {
            self.stdin.write_all(line.as_bytes()).await?;
            self.stdin.flush().await?;
            self.stdout.next().await
        };
        match tokio::time::timeout(timeout, exchange).await {
            Err(_) => Err(CallError::TimedOut(timeout.as_millis())),
            Ok(Ok(Some(answer))) => {
                let answer = answer
                    .text(MAX_ANSWER_BYTES)
                    .map_err(|e| CallError::Crashed(format!("answered {e}")))?;
                serde_json::from_str(&answer).map_err(|e| {
                    CallError::Crashed(format!("answered something that is not JSON ({e})"))
                })
            }
            Ok(Ok(None)) | Ok(Err(_)) => Err(CallError::Crashed(self.exit_reason().await)),
        }
    }

    /// Why the worker went away: its exit status and the end of its stderr.
    async fn exit_reason(&mut self) -> String {
        let status = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        // Let the stderr reader catch up with what the process wrote last.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let how = match status {
            Ok(Ok(status)) => match status.code() {
                Some(code) => format!("exited with code {code}"),
                None => "was killed by a signal (memory or CPU limit?)".to_string(),
            },
            _ => "stopped answering".to_string(),
        };
        format!("{how}: {}", self.stderr_tail(4096))
    }

    /// The last `keep` bytes of what the worker wrote on stderr.
    pub fn stderr_tail(&self, keep: usize) -> String {
        let bytes: Vec<u8> = self
            .stderr
            .lock()
            .map(|kept| kept.iter().copied().collect())
            .unwrap_or_default();
        super::stderr_tail(&bytes, keep)
    }

    /// Whether the file changed since this worker loaded it.
    pub fn is_stale(&self, file: &Path) -> bool {
        modified(file) != self.loaded
    }

    /// Kills the worker and everything it started (its process group).
    pub fn kill(mut self) {
        super::kill_group(self.child.id());
        let _ = self.child.start_kill();
    }
}

/// Drains a worker's stderr, keeping its last [`STDERR_KEPT`] bytes.
async fn keep_tail(mut stderr: tokio::process::ChildStderr, kept: Arc<Mutex<VecDeque<u8>>>) {
    let mut buffer = vec![0u8; 8192];
    while let Ok(read) = stderr.read(&mut buffer).await {
        if read == 0 {
            break;
        }
        if let Ok(mut kept) = kept.lock() {
            kept.extend(&buffer[..read]);
            let excess = kept.len().saturating_sub(STDERR_KEPT);
            kept.drain(..excess);
        }
    }
}

fn scratch_folder() -> Result<PathBuf, String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "inframock-worker-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&path)
        .map_err(|e| format!("cannot create the scratch folder {}: {e}", path.display()))?;
    Ok(path)
}

/// Warm workers for one helper file: at most `size` at once, reused between calls.
pub struct WorkerPool {
    spec: WorkerSpec,
    idle: Mutex<Vec<Worker>>,
    permits: Semaphore,
}

impl WorkerPool {
    /// A pool of at most `size` workers (started on demand).
    pub fn new(spec: WorkerSpec, size: usize) -> WorkerPool {
        WorkerPool {
            spec,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size.max(1)),
        }
    }

    /// One call on a warm worker (started if none is idle). A failed worker is killed and not
    /// reused; the error says why (with the end of its stderr).
    pub async fn call(&self, request: &Value, timeout: Duration) -> Result<Value, CallError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| CallError::Start("the worker pool is closed".to_string()))?;
        let mut worker = match self.take_idle() {
            Some(worker) => worker,
            None => Worker::start(&self.spec).map_err(CallError::Start)?,
        };
        match worker.call(request, timeout).await {
            Ok(answer) => {
                if let Ok(mut idle) = self.idle.lock() {
                    idle.push(worker);
                }
                Ok(answer)
            }
            Err(e) => {
                worker.kill();
                Err(e)
            }
        }
    }

    /// An idle worker that loaded the current file; stale ones are killed.
    fn take_idle(&self) -> Option<Worker> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(worker) = idle.pop() {
            if worker.is_stale(&self.spec.file) {
                worker.kill();
            } else {
                return Some(worker);
            }
        }
        None
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        if let Ok(mut idle) = self.idle.lock() {
            for worker in idle.drain(..) {
                worker.kill();
            }
        }
    }
}
