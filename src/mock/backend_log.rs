//! `.inframock/logs/backend-errors.jsonl`: one JSON line per failure of an upstream (it could not
//! be reached, it did not answer in time, it answered 5xx), as the scenario seed's smart proxy
//! wrote `backend_errors.log`. The file is bounded: past `MAX_BYTES` it moves to `.1` and starts
//! again, so a failing upstream under load cannot fill the disk.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::json;

/// Size at which the log is moved aside to `<name>.1`.
const MAX_BYTES: u64 = 64 << 20;

/// A failure of an upstream, carried on the answer (as a response extension) to the journal and
/// the log.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendError {
    /// The upstream URL.
    pub upstream: String,
    /// `connect`, `timeout` or `status`.
    pub kind: &'static str,
    /// What the client was answered.
    pub status: u16,
    pub message: String,
}

/// The append-only log of backend errors.
pub struct BackendErrorLog {
    path: PathBuf,
    file: Mutex<Option<(File, u64)>>,
}

impl BackendErrorLog {
    /// A log at `path`, created on the first error.
    pub fn new(path: PathBuf) -> BackendErrorLog {
        BackendErrorLog {
            path,
            file: Mutex::new(None),
        }
    }

    /// Appends one line; a failure to write is said once on stderr (the mock's log), and the
    /// request is answered regardless.
    pub fn append(&self, time: &str, method: &str, path: &str, error: &BackendError) {
        let line = json!({
            "time": time,
            "method": method,
            "path": path,
            "upstream": error.upstream,
            "kind": error.kind,
            "status": error.status,
            "message": error.message,
        })
        .to_string()
            + "\n";
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.write(&mut guard, line.as_bytes()) {
            *guard = None;
            eprintln!(
                "warning: cannot append to {}: {e} (the backend error was: {})",
                self.path.display(),
                error.message
            );
        }
    }

    fn write(&self, open: &mut Option<(File, u64)>, line: &[u8]) -> std::io::Result<()> {
        if open.as_ref().is_some_and(|(_, size)| *size >= MAX_BYTES) {
            *open = None;
            let mut aside = self.path.clone().into_os_string();
            aside.push(".1");
            std::fs::rename(&self.path, aside)?;
        }
        if open.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            let size = file.metadata()?.len();
            *open = Some((file, size));
        }
        if let Some((file, size)) = open {
            file.write_all(line)?;
            *size += line.len() as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_appended_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs").join("backend-errors.jsonl");
        let log = BackendErrorLog::new(path.clone());
        let error = BackendError {
            upstream: "http://127.0.0.1:9".into(),
            kind: "timeout",
            status: 504,
            message: "upstream http://127.0.0.1:9 did not answer within 200 ms".into(),
        };
        log.append("2026-11-26T00:00:00Z", "GET", "/api", &error);
        log.append("2026-11-26T00:00:01Z", "POST", "/api", &error);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["method"], "POST");
        assert_eq!(lines[0]["kind"], "timeout");
        assert_eq!(lines[0]["status"], 504);
    }
}
