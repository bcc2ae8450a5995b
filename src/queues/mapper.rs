//! A bridge's mapper: `map(message)` of a Python file, in one long-lived confined process (see
//! `python.rs`) fed one message per line. A mapper that raises answers an error for that message;
//! one that crashes or exceeds its time limit is killed and started again for the next message.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// The Python program that loads a mapper file and maps messages read from stdin.
const RUNNER: &str = concat!(
    include_str!("../python/sandbox.py"),
    include_str!("../python/mapper_main.py")
);
/// Most of the mapper's stderr kept for error messages.
const STDERR_KEPT: usize = 2048;

/// What the mapper made of a message.
#[derive(Debug, PartialEq)]
pub enum Mapped {
    /// `map` returned None: the message is dropped (deleted from IN, nothing sent).
    Drop,
    /// The body to send to OUT.
    Body(String),
}

#[derive(Deserialize)]
struct Answer {
    ok: bool,
    #[serde(default)]
    drop: bool,
    body: Option<String>,
    error: Option<String>,
}

struct Process {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

/// A mapper file and its running process.
pub struct Mapper {
    python: PathBuf,
    file: PathBuf,
    timeout: Duration,
    process: Option<Process>,
}

impl Mapper {
    /// A mapper; the process starts with the first message.
    pub fn new(python: PathBuf, file: PathBuf, timeout: Duration) -> Mapper {
        Mapper {
            python,
            file,
            timeout,
            process: None,
        }
    }

    /// The mapper file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Maps one message body. The error says why (traceback, crash, timeout).
    pub async fn map(&mut self, body: &str) -> Result<Mapped, String> {
        if self.process.is_none() {
            self.process = Some(self.start()?);
        }
        let Some(process) = self.process.as_mut() else {
            return Err("internal: no mapper process".into());
        };
        let message =
            serde_json::from_str::<Value>(body).unwrap_or_else(|_| Value::String(body.to_string()));
        let line = format!("{}\n", json!({"body": message}));
        let exchange = async {
            process.stdin.write_all(line.as_bytes()).await?;
            process.stdin.flush().await?;
            process.stdout.next_line().await
        };
        let answer = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(Some(answer))) => answer,
            Ok(Ok(None)) | Ok(Err(_)) => {
                let why = self.stop_process().await;
                return Err(format!("mapper {} crashed: {why}", self.file.display()));
            }
            Err(_) => {
                self.stop_process().await;
                return Err(format!(
                    "mapper {} took longer than {} ms and was killed",
                    self.file.display(),
                    self.timeout.as_millis()
                ));
            }
        };
        let answer: Answer = serde_json::from_str(&answer)
            .map_err(|e| format!("mapper {}: unreadable answer ({e})", self.file.display()))?;
        match (answer.ok, answer.drop, answer.body) {
            (true, true, _) => Ok(Mapped::Drop),
            (true, false, Some(body)) => Ok(Mapped::Body(body)),
            (true, false, None) => Err("mapper answered no body".into()),
            (false, _, _) => Err(format!(
                "mapper {} raised: {}",
                self.file.display(),
                answer.error.unwrap_or_default().trim()
            )),
        }
    }

    fn start(&self) -> Result<Process, String> {
        let mut command = crate::python::confined_command(&self.python, RUNNER, &self.file);
        let mut child = command.spawn().map_err(|e| {
            format!(
                "cannot start {} for mapper {}: {e}; install Python 3 or point --python (INFRAMOCK_PYTHON) at it",
                self.python.display(),
                self.file.display()
            )
        })?;
        let stdin = child.stdin.take().ok_or("mapper: no stdin")?;
        let stdout = child.stdout.take().ok_or("mapper: no stdout")?;
        let mut stderr_pipe = child.stderr.take().ok_or("mapper: no stderr")?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        tokio::spawn(async move {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                let mut kept = sink.lock().unwrap_or_else(|p| p.into_inner());
                kept.extend_from_slice(&chunk[..n]);
                let excess = kept.len().saturating_sub(STDERR_KEPT * 4);
                kept.drain(..excess);
            }
        });
        Ok(Process {
            child,
            stdin,
            stdout: BufReader::new(stdout).lines(),
            stderr,
        })
    }

    /// Kills the process; returns the end of its stderr.
    async fn stop_process(&mut self) -> String {
        let Some(mut process) = self.process.take() else {
            return String::new();
        };
        crate::python::kill_group(process.child.id());
        let _ = process.child.wait().await;
        // Let the stderr reader catch the last bytes.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let err = process
            .stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        crate::python::stderr_tail(&err, STDERR_KEPT)
    }
}

impl Drop for Mapper {
    fn drop(&mut self) {
        if let Some(process) = &self.process {
            crate::python::kill_group(process.child.id());
        }
    }
}
