//! `.inframock/state.json`: what this project started (runtime, ports, PIDs), so `status` and `stop`
//! find exactly ours and nothing else.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::ServiceName;
use crate::cli::RuntimeKind;

/// File name of the state record inside `.inframock/`.
pub const STATE_FILE: &str = "state.json";

/// The stack this project started.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StackState {
    pub project: String,
    pub runtime: RuntimeKind,
    /// Seconds since the Unix epoch when the stack became ready.
    pub started_at: u64,
    pub region: String,
    pub cluster_env: String,
    pub services: Vec<ServiceRecord>,
    /// Fault proxies in front of services (`faults = true`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fault_proxies: Vec<FaultProxyRecord>,
}

/// A fault proxy: clients connect to `port`, which forwards to the service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultProxyRecord {
    pub service: ServiceName,
    pub port: u16,
    /// The service's own port it forwards to.
    pub target_port: u16,
}

/// One running service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceRecord {
    pub name: ServiceName,
    pub runtime: RuntimeKind,
    pub port: u16,
    pub url: String,
    /// Process id (local runtime).
    pub pid: Option<u32>,
    /// Start time of that process (clock ticks since boot): PID + start time survive PID reuse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
    /// Executable the process runs, used to tell our process from a reused PID.
    pub program: Option<String>,
    /// Log file of the process.
    pub log: Option<PathBuf>,
    /// Container id (docker runtime).
    #[serde(default)]
    pub container: Option<String>,
    /// Its kind (`moto`, `ministack`, `memcached`, ...; `stack::catalog`): a stack file that now
    /// names another kind (engine) gets a new one instead of this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl StackState {
    /// The URL applications should use for a service: its fault proxy's when it has one.
    pub fn client_url(&self, name: &ServiceName) -> Option<String> {
        let record = self.service(name)?;
        match self.fault_proxies.iter().find(|p| p.service == *name) {
            Some(proxy) => Some(record.url.replacen(
                &format!(":{}", record.port),
                &format!(":{}", proxy.port),
                1,
            )),
            None => Some(record.url.clone()),
        }
    }

    /// The record of one service, if it was started.
    pub fn service(&self, name: &ServiceName) -> Option<&ServiceRecord> {
        self.services.iter().find(|s| s.name == *name)
    }
}

/// The base URL of one of our helper services (mock, faults): `explicit` (a `--url` flag), else the
/// running stack's record, else 127.0.0.1 on the configured port.
pub fn helper_url(
    state_dir: &Path,
    explicit: Option<&str>,
    service: ServiceName,
    port: u16,
) -> Result<String> {
    if let Some(url) = explicit {
        return Ok(url.trim_end_matches('/').to_string());
    }
    if let Some(record) = read(state_dir)?.and_then(|s| s.service(&service).cloned()) {
        return Ok(record.url);
    }
    Ok(format!("http://127.0.0.1:{port}"))
}

/// Path of the state file for a state folder.
pub fn state_path(state_dir: &Path) -> PathBuf {
    state_dir.join(STATE_FILE)
}

/// Reads the state file; `None` when there is none. A corrupt file is reported, not ignored.
pub fn read(state_dir: &Path) -> Result<Option<StackState>> {
    let path = state_path(state_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let state = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is corrupt; stop any inframock processes by hand and delete the file",
            path.display()
        )
    })?;
    Ok(Some(state))
}

/// Writes the state file atomically (temporary file, then rename).
pub fn write(state_dir: &Path, state: &StackState) -> Result<()> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    let path = state_path(state_dir);
    let temporary = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(state)?;
    std::fs::write(&temporary, text)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, &path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Forgets these services (matched by name and PID/container) in the state file, deleting the
/// file when nothing is left in it.
pub fn forget(state_dir: &Path, records: &[ServiceRecord]) -> Result<()> {
    let Some(mut state) = read(state_dir)? else {
        return Ok(());
    };
    let before = state.services.len();
    state.services.retain(|kept| {
        !records.iter().any(|gone| {
            gone.name == kept.name && gone.pid == kept.pid && gone.container == kept.container
        })
    });
    if state.services.len() == before {
        return Ok(());
    }
    if state.services.is_empty() {
        remove(state_dir)
    } else {
        write(state_dir, &state)
    }
}

/// Forgets the recorded local processes that no longer run (after an interrupted start).
pub fn forget_gone(state_dir: &Path) -> Result<()> {
    let Some(state) = read(state_dir)? else {
        return Ok(());
    };
    let gone: Vec<ServiceRecord> = state
        .services
        .iter()
        .filter(|r| r.runtime == RuntimeKind::Local && !super::runtime::local::is_running(r))
        .cloned()
        .collect();
    forget(state_dir, &gone)
}

/// Deletes the state file (nothing to do when absent).
pub fn remove(state_dir: &Path) -> Result<()> {
    let path = state_path(state_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot delete {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_missing_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_none());
        let state = StackState {
            project: "p".into(),
            runtime: RuntimeKind::Local,
            started_at: 1,
            region: "eu-west-1".into(),
            cluster_env: "development".into(),
            services: vec![ServiceRecord {
                name: ServiceName::Redis,
                runtime: RuntimeKind::Local,
                port: 6379,
                url: "redis://localhost:6379".into(),
                pid: Some(42),
                started: Some(7),
                program: Some("redis-server".into()),
                log: None,
                container: None,
                kind: None,
            }],
            fault_proxies: Vec::new(),
        };
        write(dir.path(), &state).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(state.clone()));
        assert!(state.service(&ServiceName::Redis).is_some());
        assert!(state.service(&ServiceName::Aws).is_none());
        remove(dir.path()).unwrap();
        assert!(read(dir.path()).unwrap().is_none());
        remove(dir.path()).unwrap();
    }

    #[test]
    fn corrupt_state_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), "{not json").unwrap();
        let err = format!("{:#}", read(dir.path()).unwrap_err());
        assert!(err.contains("state.json is corrupt"), "{err}");
    }
}
