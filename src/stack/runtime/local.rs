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
use crate::config::{ServiceSettings, Settings};
use crate::stack::catalog::LocalCommand;
use crate::stack::ports::process_command;
use crate::stack::state::ServiceRecord;
use crate::stack::ServiceName;

/// Services as processes on this machine: `moto_server`, `redis-server`, and our own helpers.
#[derive(Debug, Clone, Copy)]
pub struct LocalRuntime;

impl Runtime for LocalRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Local
    }

    fn services(&self, settings: &Settings) -> Vec<ServiceName> {
        settings.runtime_services()
    }

    fn prepare<'a>(
        &'a self,
        settings: &'a Settings,
        service: ServiceName,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            find_program(&service, settings.service(&service), &settings.project_dir).map(|_| ())
        })
    }

    fn start<'a>(
        &'a self,
        settings: &'a Settings,
        service: ServiceName,
        port: u16,
    ) -> BoxFuture<'a, Result<Started>> {
        Box::pin(async move {
            let program =
                find_program(&service, settings.service(&service), &settings.project_dir)?;
            let process = spawn_service(&service, settings, &program, port)?;
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
        printer: super::LogPrinter<'a>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let log = record
                .log
                .clone()
                .unwrap_or_else(|| std::path::PathBuf::from(format!("{}.log", record.name)));
            print_log_file(&log, lines, follow, printer).await
        })
    }
}

/// Prints the last lines of a log file, then (with `follow`) what is appended, until Ctrl-C.
pub async fn print_log_file(
    path: &Path,
    lines: usize,
    follow: bool,
    printer: super::LogPrinter<'_>,
) -> Result<()> {
    let print = |line: &str| printer.print(line);
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

/// Finds the executable of a service's local command: the explicit setting (`--moto-server`,
/// `--redis-server`), then the project's `.venv/bin` (Python engines), then the kind's own folders,
/// then PATH. The error says how to install it.
pub fn find_program(
    service: &ServiceName,
    settings: &ServiceSettings,
    project_dir: &Path,
) -> Result<PathBuf> {
    if service.is_helper() {
        // Our helpers are this very binary (`inframock mock`, `faults`, `queue run`).
        return std::env::current_exe()
            .context("cannot find the inframock executable to start the mock server");
    }
    let command = local_command(service, settings)?;
    let flag = match service {
        ServiceName::Aws => "--moto-server / INFRAMOCK_MOTO_SERVER",
        ServiceName::Redis => "--redis-server / INFRAMOCK_REDIS_SERVER",
        _ => "`command` of the service",
    };
    let name = &command.program;
    let hint = &command.install_hint;
    if let Some(path) = &settings.program {
        if is_executable(path) {
            return Ok(path.clone());
        }
        anyhow::bail!(
            "{} ({flag}) is not an executable file; point it at {name}, or {hint}",
            path.display()
        );
    }
    locate(name, command, project_dir).with_context(|| {
        format!(
            "{name} ({} of {service}) was not found (looked in {}PATH); {hint}, or set {flag}",
            settings.kind.id,
            looked_in(command)
        )
    })
}

/// The local command of a service, or why it has none (an engine that runs only as a container).
fn local_command<'a>(
    service: &ServiceName,
    settings: &'a ServiceSettings,
) -> Result<&'a LocalCommand> {
    settings.kind.local.as_ref().with_context(|| {
        format!(
            "{service} ({}) has no local form, it runs as a container only: use --runtime docker{}",
            settings.kind.id,
            if *service == ServiceName::Aws {
                ", or choose a local engine with --engine moto or --engine ministack"
            } else {
                ", or give it a `command` in inframock.toml"
            }
        )
    })
}

/// `program` in the places its command names, then on PATH (`None`: nowhere).
fn locate(program: &str, command: &LocalCommand, project_dir: &Path) -> Option<PathBuf> {
    if program.contains('/') {
        let path = project_dir.join(program);
        return is_executable(&path).then_some(path);
    }
    let venv = command
        .in_venv
        .then(|| project_dir.join(".venv/bin"))
        .into_iter();
    venv.chain(command.search_dirs.iter().flat_map(|dir| expand_glob(dir)))
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .or_else(|| search_path(program))
}

fn looked_in(command: &LocalCommand) -> String {
    let mut places = Vec::new();
    if command.in_venv {
        places.push(".venv/bin".to_string());
    }
    places.extend(command.search_dirs.iter().cloned());
    places.iter().map(|p| format!("{p}, ")).collect()
}

/// The folders a pattern with one `*` component names (`/usr/lib/postgresql/*/bin`), newest
/// (highest name) first.
fn expand_glob(pattern: &str) -> Vec<PathBuf> {
    let Some((before, after)) = pattern.split_once('*') else {
        return vec![PathBuf::from(pattern)];
    };
    let Ok(entries) = std::fs::read_dir(before) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort_by(|a, b| b.cmp(a));
    names
        .into_iter()
        .map(|name| PathBuf::from(format!("{before}{name}{after}")))
        .collect()
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

/// The user a program that refuses root runs as when inframock runs as root.
const UNPRIVILEGED_USER: (u32, u32) = (65534, 65534);

/// The folder of a service's own data on the local runtime: `.inframock/<service>/`.
pub fn data_dir(state_dir: &Path, service: &ServiceName) -> PathBuf {
    state_dir.join(service.as_str())
}

/// Starts a service's local command on 127.0.0.1:`port` (its data in [`data_dir`]), logging to
/// `.inframock/logs/<service>.log`. A command with an `init` step (initdb) runs it first while
/// its data folder is empty.
pub fn spawn_service(
    service: &ServiceName,
    stack_settings: &Settings,
    program: &Path,
    port: u16,
) -> Result<StartedProcess> {
    let settings = stack_settings.service(service);
    let command = local_command(service, settings)?;
    let state_dir = stack_settings.state_dir();
    let data_dir = data_dir(&state_dir, service);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let as_user =
        (command.refuses_root && unsafe { libc::geteuid() } == 0).then_some(UNPRIVILEGED_USER);
    if let Some((uid, gid)) = as_user {
        std::os::unix::fs::chown(&data_dir, Some(uid), Some(gid))
            .with_context(|| format!("cannot hand {} to uid {uid}", data_dir.display()))?;
    }
    let fill = |template: &String| super::super::catalog::expand(template, port, &data_dir);
    let log = fresh_log(&state_dir, service)?;
    if let Some(init) = &command.init {
        let empty = std::fs::read_dir(&data_dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if empty {
            if let Some((name, args)) = init.split_first() {
                let init_program =
                    init_program(name, program, command, &stack_settings.project_dir)?;
                run_init(&init_program, args, &data_dir, port, as_user, &log)?;
            }
        }
    }
    let mut process = Command::new(program);
    process.args(command.args.iter().map(fill));
    process.envs(command.env.iter().map(|(k, v)| (k, fill(v))));
    process.envs(settings.env.iter().map(|(k, v)| (k, fill(v))));
    if let Some((uid, gid)) = as_user {
        process.uid(uid).gid(gid);
    }
    let url = settings.kind.url_at(port);
    spawn(service, process, program, port, url, &log)
}

/// The program of a kind's `init` step (`initdb`): beside the service's program, else where the
/// service's command is looked up.
fn init_program(
    name: &str,
    beside: &Path,
    command: &LocalCommand,
    project_dir: &Path,
) -> Result<PathBuf> {
    beside
        .parent()
        .map(|dir| dir.join(name))
        .filter(|p| is_executable(p))
        .or_else(|| locate(name, command, project_dir))
        .with_context(|| {
            format!(
                "{name} (the init step of {}) was not found; {}",
                command.program, command.install_hint
            )
        })
}

/// Runs a kind's `init` step for `data_dir`; fails with its output when it fails (and empties
/// `data_dir`, so the next start tries again).
fn run_init(
    init_program: &Path,
    args: &[String],
    data_dir: &Path,
    port: u16,
    as_user: Option<(u32, u32)>,
    log: &Path,
) -> Result<()> {
    let mut init_command = Command::new(init_program);
    init_command.args(
        args.iter()
            .map(|a| super::super::catalog::expand(a, port, data_dir)),
    );
    if let Some((uid, gid)) = as_user {
        init_command.uid(uid).gid(gid).current_dir(data_dir);
    }
    let output = init_command
        .output()
        .with_context(|| format!("cannot run {}", init_program.display()))?;
    if let Ok(mut file) = std::fs::OpenOptions::new().append(true).open(log) {
        use std::io::Write;
        let _ = file.write_all(&[output.stdout.as_slice(), output.stderr.as_slice()].concat());
    }
    if !output.status.success() {
        let _ = std::fs::remove_dir_all(data_dir);
        anyhow::bail!(
            "{} failed ({}): {}",
            init_program.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// `.inframock/logs/<service>.log`, emptied for a new start.
pub fn fresh_log(state_dir: &Path, service: &ServiceName) -> Result<PathBuf> {
    let log = state_dir.join("logs").join(format!("{service}.log"));
    std::fs::File::create(&log)
        .with_context(|| format!("cannot create log file {}", log.display()))?;
    Ok(log)
}

/// Starts a prepared command in its own session, its output appended to `log`, and records it.
pub fn spawn(
    service: &ServiceName,
    mut command: Command,
    program: &Path,
    port: u16,
    url: String,
    log: &Path,
) -> Result<StartedProcess> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot create log file {}", log.display()))?;
    let log_err = log_file
        .try_clone()
        .with_context(|| format!("cannot open log file {}", log.display()))?;
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
            name: service.clone(),
            runtime: RuntimeKind::Local,
            port,
            url,
            pid: Some(child.id()),
            started: process_start_time(child.id()),
            program: program_name,
            log: Some(log.to_path_buf()),
            container: None,
            kind: None,
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
        let settings = crate::config::Settings::resolve(
            &crate::cli::GlobalArgs {
                redis_server: Some(dir.path().join("nope")),
                ..Default::default()
            },
            None,
            false,
            dir.path(),
            crate::config::StackFileUse::Required,
        )
        .unwrap();
        let redis = settings.service(&ServiceName::Redis);
        let err = find_program(&ServiceName::Redis, redis, dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("--redis-server"), "{err}");
        assert!(err.contains("apt-get install redis-server"), "{err}");
    }

    #[test]
    fn globbed_folders_are_searched_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        for version in ["13", "15"] {
            std::fs::create_dir_all(dir.path().join(version).join("bin")).unwrap();
        }
        let pattern = format!("{}/*/bin", dir.path().display());
        assert_eq!(
            expand_glob(&pattern),
            [dir.path().join("15/bin"), dir.path().join("13/bin")]
        );
        assert!(expand_glob("/nonexistent-inframock/*/bin").is_empty());
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
            kind: None,
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
