//! A bridge's mapper: `map(message)` of a Python file, in one warm, kernel-confined worker (see
//! `python::worker`) fed one message per line. A mapper that raises answers an error for that
//! message; one that crashes or exceeds its time limit is killed and started again for the next.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::python::worker::{Worker, WorkerSpec};
use crate::python::Sandbox;

/// The Python program that loads a mapper file and maps messages read from stdin.
const RUNNER: &str = concat!(
    include_str!("../python/sandbox.py"),
    include_str!("../python/mapper_main.py")
);

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

/// A mapper file and its running worker.
pub struct Mapper {
    spec: WorkerSpec,
    timeout: Duration,
    worker: Option<Worker>,
}

impl Mapper {
    /// A mapper; the worker starts with the first message.
    pub fn new(sandbox: Sandbox, file: PathBuf, timeout: Duration) -> Mapper {
        Mapper {
            spec: WorkerSpec {
                sandbox,
                program: RUNNER,
                file,
            },
            timeout,
            worker: None,
        }
    }

    /// The mapper file.
    pub fn file(&self) -> &Path {
        &self.spec.file
    }

    /// Maps one message body. The error says why (traceback, crash, timeout).
    pub async fn map(&mut self, body: &str) -> Result<Mapped, String> {
        let name = self.spec.file.display().to_string();
        let stale = self
            .worker
            .as_ref()
            .is_some_and(|w| w.is_stale(&self.spec.file));
        if stale {
            if let Some(worker) = self.worker.take() {
                worker.kill();
            }
        }
        let mut worker = match self.worker.take() {
            Some(worker) => worker,
            None => Worker::start(&self.spec)?,
        };
        let message =
            serde_json::from_str::<Value>(body).unwrap_or_else(|_| Value::String(body.to_string()));
        let answer = match worker.call(&json!({ "body": message }), self.timeout).await {
            Ok(answer) => {
                self.worker = Some(worker);
                answer
            }
            Err(e) => {
                worker.kill();
                return Err(format!("mapper {name} {e}"));
            }
        };
        let answer: Answer = serde_json::from_value(answer)
            .map_err(|e| format!("mapper {name}: unreadable answer ({e})"))?;
        match (answer.ok, answer.drop, answer.body) {
            (true, true, _) => Ok(Mapped::Drop),
            (true, false, Some(body)) => Ok(Mapped::Body(body)),
            (true, false, None) => Err("mapper answered no body".into()),
            (false, _, _) => Err(format!(
                "mapper {name} raised: {}",
                answer.error.unwrap_or_default().trim()
            )),
        }
    }
}

impl Drop for Mapper {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.kill();
        }
    }
}
