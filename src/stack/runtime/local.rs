//! The `local` runtime: `moto_server` and `redis-server` as processes on 127.0.0.1, each in its own
//! session (so Ctrl-C in the terminal reaches only inframock, which then stops them in order) and
//! logging to `.inframock/logs/<service>.log`.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use futures::future::BoxFuture;

use super::{Found, Runtime, Started, StopOutcome};
use crate::cli::RuntimeKind;
use crate::config::Settings;
use crate::stack::ports::process_command;
use crate::stack::state::ServiceRecord;
use crate::stack::{local_url, ServiceName};

/// Services as processes on this machine: `moto_server`, `redis-server`, and our own helpers.
#[derive(Debug, Clone, Copy)]
pub struct LocalRuntime;

impl Runtime for LocalRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Local
    }

    fn services(&self, _settings: &Settings) -> Vec<ServiceName> {
        ServiceName::ALL.to_vec()
    }

    fn prepare<'a>(
        &'a self,
        settings: &'a Settings,
        service: ServiceName,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let explicit = settings.service(service).program.as_deref();
            find_program(service, explicit, &settings.project_dir).map(|_| ())
        })
    }

    fn start<'a>(
        &'a self,
        settings: &'a Settings,
        service: ServiceName,
        port: u16,
    ) -> BoxFuture<'a, Result<Started>> {
        Box::pin(async move {
            let explicit = settings.service(service).program.as_deref();
            let program = find_program(service, explicit, &settings.project_dir)?;
            let process = spawn(service, &program, port, &settings.state_dir(), &[])?;
            Ok(Started::new(
                process.record.clone(),
                std::sync::Arc::new(LocalRuntime),
                Some(process),
            ))
        })
    }

    fn find<'a>(
        &'a self,
        _settings: &'a Settings,
        _service: ServiceName,
        recorded: Option<&'a ServiceRecord>,
    ) -> BoxFuture<'a, Result<Option<Found>>> {
        Box::pin(async move {
            Ok(recorded
                .filter(|r| r.runtime == RuntimeKind::Local)
                .map(|record| Found {
                    running: is_running(record),
                    record: record.clone(),
                }))
        })
    }

    fn is_alive<'a>(&'a self, record: &'a ServiceRecord) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if is_running(record) {
                Ok(())
            } else {
                Err(exited_message(
                    record,
                    "it was started by an earlier command, so its exit status is unknown",
                ))
            }
        })
    }

    fn stop<'a>(&'a self, record: &'a ServiceRecord) -> BoxFuture<'a, StopOutcome> {
        Box::pin(async move {
            let record = record.clone();
            tokio::task::spawn_blocking(move || stop_recorded(&record, super::STOP_GRACE))
                .await
                .unwrap_or(StopOutcome::AlreadyGone)
        })
    }

    fn logs<'a>(
        &'a self,
        record: &'a ServiceRecord,
        lines: usize,
        follow: bool,
        prefix: Option<&'a str>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let log = record
                .log
                .clone()
                .unwrap_or_else(|| std::path::PathBuf::from(format!("{}.log", record.name)));
            print_log_file(&log, lines, follow, prefix).await
        })
    }
}

/// Prints the last lines of a log file, then (with `follow`) what is appended, until Ctrl-C.
pub async fn print_log_file(
    path: &Path,
    lines: usize,
    follow: bool,
    prefix: Option<&str>,
) -> Result<()> {
    let print = |line: &str| match prefix {
        Some(p) => println!("{p:<5} | {line}"),
        None => println!("{line}"),
    };
    if !path.is_file() {
        anyhow::bail!(
            "no log at {} (the local runtime writes one per service once `inframock run` started it)",
            path.display()
        );
    }
    for line in last_lines(path, lines) {
        print(&line);
    }
    if !follow {
        return Ok(());
    }
    let mut offset = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    loop {
        if let Ok(mut file) = std::fs::File::open(path) {
            let length = file.metadata().map(|m| m.len()).unwrap_or(0);
            if length < offset {
                offset = 0; // the log was recreated by a new `run`
            }
            if length > offset && file.seek(SeekFrom::Start(offset)).is_ok() {
                let mut chunk = String::new();
                if file.read_to_string(&mut chunk).is_ok() {
                    chunk.lines().for_each(print);
                    offset = length;
                }
            }
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A process we started in this invocation (its `Child`, to see its exit status).
#[derive(Debug)]
pub struct StartedProcess {
    pub record: ServiceRecord,
    child: Child,
    /// Set once the process is meant to outlive this value (`--detach`) or was stopped already;
    /// otherwise dropping it (e.g. Ctrl-C while the stack starts) stops the process.
    settled: bool,
}

impl StartedProcess {
    /// `Ok` while the process runs; otherwise its exit status and last log lines.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(exited_message(&self.record, &status.to_string())),
            Err(e) => Err(format!("cannot watch {}: {e}", self.record.name)),
        }
    }

    /// Stops the process (TERM to its group, KILL after `grace`) and reaps it.
    pub fn stop(mut self, grace: Duration) {
        self.terminate(grace);
    }

    /// Lets the process run on after this value is gone (`run --detach`).
    pub fn keep_running(mut self) {
        self.settled = true;
    }

    fn terminate(&mut self, grace: Duration) {
        self.settled = true;
        if let Some(pid) = self.record.pid {
            let child = &mut self.child;
            terminate_group(pid, grace, || matches!(child.try_wait(), Ok(Some(_))));
        }
        let _ = self.child.wait();
    }
}

impl Drop for StartedProcess {
    fn drop(&mut self) {
        if !self.settled {
            self.terminate(Duration::from_secs(2));
        }
    }
}

/// The message for a service that exited: status plus the last log lines.
fn exited_message(record: &ServiceRecord, status: &str) -> String {
    let mut message = format!("{} exited while starting ({status})", record.name);
    if let Some(log) = &record.log {
        let tail = last_lines(log, 20);
        if tail.is_empty() {
            message.push_str(&format!("; its log {} is empty", log.display()));
        } else {
            message.push_str(&format!(
                "; last lines of {}:\n{}",
                log.display(),
                indent(&tail)
            ));
        }
    }
    message
}

fn indent(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Finds the executable of a service: the explicit setting, then (moto) the project's `.venv`,
/// then PATH. The error says how to install it.
pub fn find_program(
    service: ServiceName,
    explicit: Option<&Path>,
    project_dir: &Path,
) -> Result<PathBuf> {
    let (name, flag, hint) = match service {
        ServiceName::Mock | ServiceName::Faults | ServiceName::Queues => {
            // The mock server is this very binary (`inframock mock`).
            return std::env::current_exe()
                .context("cannot find the inframock executable to start the mock server");
        }
        ServiceName::Aws => (
            "moto_server",
            "--moto-server",
            "run `make setup` (creates .venv with moto[server]) or `pip install 'moto[server]'`",
        ),
        ServiceName::Redis => (
            "redis-server",
            "--redis-server",
            "install it with `sudo apt-get install redis-server` (Debian/Ubuntu) or `brew install redis`",
        ),
    };
    if let Some(path) = explicit {
        if is_executable(path) {
            return Ok(path.to_path_buf());
        }
        anyhow::bail!(
            "{} ({flag}) is not an executable file; point {flag} at {name}, or {hint}",
            path.display()
        );
    }
    if service == ServiceName::Aws {
        let venv = project_dir.join(".venv/bin/moto_server");
        if is_executable(&venv) {
            return Ok(venv);
        }
    }
    if let Some(found) = search_path(name) {
        return Ok(found);
    }
    anyhow::bail!(
        "{name} was not found (looked in {}PATH); {hint}, or set {flag} / INFRAMOCK_{}",
        if service == ServiceName::Aws {
            ".venv/bin and "
        } else {
            ""
        },
        flag.trim_start_matches("--")
            .replace('-', "_")
            .to_uppercase()
    )
}

fn search_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Starts a service's process on 127.0.0.1:`port`, logging to `log_dir/<service>.log`.
/// `extra_args` is the command line of our own helpers (mock, faults); the other services ignore it.
pub fn spawn(
    service: ServiceName,
    program: &Path,
    port: u16,
    state_dir: &Path,
    extra_args: &[std::ffi::OsString],
) -> Result<StartedProcess> {
    let log = state_dir.join("logs").join(format!("{service}.log"));
    let log_file = std::fs::File::create(&log)
        .with_context(|| format!("cannot create log file {}", log.display()))?;
    let log_err = log_file
        .try_clone()
        .with_context(|| format!("cannot open log file {}", log.display()))?;
    let mut command = Command::new(program);
    match service {
        ServiceName::Aws => {
            command
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("MOTO_ACCOUNT_ID", crate::config::LOCAL_ACCOUNT_ID)
                .env("PYTHONUNBUFFERED", "1");
        }
        ServiceName::Redis => {
            let data_dir = state_dir.join("redis");
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("cannot create {}", data_dir.display()))?;
            command.args(["--bind", "127.0.0.1", "--port", &port.to_string()]);
            command.args(["--save", "", "--appendonly", "no", "--daemonize", "no"]);
            command.arg("--dir").arg(&data_dir);
        }
        ServiceName::Mock | ServiceName::Faults | ServiceName::Queues => {
            // Our own binary: the caller gives the whole command line (port included).
            command.args(extra_args);
        }
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_file))
        .stderr(Stdio::from(log_err));
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    let program_name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    Ok(StartedProcess {
        record: ServiceRecord {
            name: service,
            runtime: RuntimeKind::Local,
            port,
            url: local_url(service, port),
            pid: Some(child.id()),
            started: process_start_time(child.id()),
            program: program_name,
            log: Some(log),
            container: None,
        },
        child,
        settled: false,
    })
}

/// Whether the recorded process still runs and is still ours: the PID is alive and started at the
/// recorded time, so a PID reused later, even by another project's process of the same program,
/// is never mistaken for it.
pub fn is_running(record: &ServiceRecord) -> bool {
    let Some(pid) = record.pid else {
        return false;
    };
    if !pid_alive(pid) {
        return false;
    }
    if let Some(recorded) = record.started {
        // PID + start time identify the process even after it exec'd another program (a wrapper
        // script given as --moto-server).
        return process_start_time(pid) == Some(recorded);
    }
    // A record without a start time (written by an older inframock): compare the program.
    match (&record.program, process_command(pid)) {
        (Some(program), Some(command)) => command.contains(program.as_str()),
        (None, Some(_)) => true,
        (_, None) => false,
    }
}

/// When a process started, in clock ticks since boot (field 22 of `/proc/<pid>/stat`): with the
/// PID, an identity no later process can share.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    let after_name = stat.rsplit_once(')')?.1;
    after_name.split_whitespace().nth(19)?.parse().ok()
}

fn pid_alive(pid: u32) -> bool {
    // A zombie still answers kill(0); /proc tells it apart.
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        if let Some(state) = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
        {
            return state != "Z" && state != "X";
        }
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// Stops a process recorded in the state file (not started by this invocation).
pub fn stop_recorded(record: &ServiceRecord, grace: Duration) -> StopOutcome {
    match record.pid {
        Some(pid) if is_running(record) => {
            terminate_group(pid, grace, || !pid_alive(pid));
            StopOutcome::Stopped
        }
        _ => StopOutcome::AlreadyGone,
    }
}

/// TERM to the process group led by `pid`, then KILL if `gone` is still false after `grace`.
fn terminate_group(pid: u32, grace: Duration, mut gone: impl FnMut() -> bool) {
    let group = -(pid as libc::pid_t);
    // SAFETY: sending a signal has no memory effects; the group is one we created with setsid.
    unsafe {
        libc::kill(group, libc::SIGTERM);
    }
    let started = Instant::now();
    while started.elapsed() < grace {
        if gone() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    // SAFETY: as above.
    unsafe {
        libc::kill(group, libc::SIGKILL);
    }
    let started = Instant::now();
    while !gone() && started.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The last `count` lines of a file, reading at most its last 64 KiB.
pub fn last_lines(path: &Path, count: usize) -> Vec<String> {
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let window = 64 * 1024;
    if length > window && file.seek(SeekFrom::Start(length - window)).is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[lines.len().saturating_sub(count)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_returns_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, text).unwrap();
        let tail = last_lines(&path, 3);
        assert_eq!(tail, ["line 28", "line 29", "line 30"]);
        assert!(last_lines(&dir.path().join("missing"), 3).is_empty());
    }

    #[test]
    fn missing_program_error_says_how_to_install() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_program(
            ServiceName::Redis,
            Some(&dir.path().join("nope")),
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("--redis-server"), "{err}");
        assert!(err.contains("apt-get install redis-server"), "{err}");
    }

    #[test]
    fn a_reused_pid_is_not_ours() {
        let record = ServiceRecord {
            name: ServiceName::Aws,
            runtime: RuntimeKind::Local,
            port: 1,
            url: String::new(),
            pid: Some(std::process::id()),
            started: process_start_time(std::process::id()),
            program: Some("moto_server_that_is_not_this_test".into()),
            log: None,
            container: None,
        };
        assert!(
            is_running(&record),
            "PID and start time match: ours, whatever program it runs now"
        );
        let gone = ServiceRecord {
            pid: Some(u32::MAX / 2),
            ..record.clone()
        };
        assert!(!is_running(&gone));
        let this_test = ServiceRecord {
            program: None,
            ..record.clone()
        };
        assert!(is_running(&this_test), "our own PID with its start time");
        let without_start_time = ServiceRecord {
            started: None,
            ..record.clone()
        };
        assert!(
            !is_running(&without_start_time),
            "an old record falls back to comparing the program"
        );
        let same_pid_other_start = ServiceRecord {
            started: this_test.started.map(|t| t + 1),
            ..this_test
        };
        assert!(
            !is_running(&same_pid_other_start),
            "same PID, another start time: a reused PID"
        );
        assert_eq!(
            stop_recorded(&gone, Duration::from_millis(10)),
            StopOutcome::AlreadyGone
        );
    }
}
