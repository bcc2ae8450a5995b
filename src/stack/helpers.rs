//! Our own helpers, processes of this same binary in every runtime: the mock server
//! (`inframock mock`), the fault proxies (`inframock faults serve`), the dashboard
//! (`inframock dashboard`) and the queue worker (`inframock queue run`). Started, reused or stopped according to the settings, recorded like
//! the services.

use std::sync::Arc;

use anyhow::Result;

use super::ports;
use super::runtime::local::{
    find_program, fresh_log, is_running, spawn, stop_recorded, LocalRuntime,
};
use super::runtime::{Started, STOP_GRACE};
use super::state::{self, FaultProxyRecord, ServiceRecord, StackState};
use super::up::{
    claim_port, record_spawned, reuse_if_healthy, stop_all, wait_for_started, RunningStack,
};
use super::ServiceName;
use crate::cli::RuntimeKind;
use crate::config::Settings;
use crate::output::Reporter;

/// Starts, reuses or stops the mock server and the fault proxies (the queue worker is started
/// later, by [`ensure_queue_worker`], once the resources exist). `previous` is the state recorded
/// before this `run`.
pub async fn ensure_helpers(
    settings: &Settings,
    reporter: &Reporter,
    previous: Option<StackState>,
    stack: &mut RunningStack,
) -> Result<()> {
    let previous_proxies = previous
        .as_ref()
        .map(|p| p.fault_proxies.clone())
        .unwrap_or_default();
    let previous: Vec<ServiceRecord> = previous
        .map(|p| p.services)
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.name.is_helper())
        .collect();
    let recorded = |name: ServiceName| previous.iter().find(|r| r.name == name).cloned();
    // Fault proxies point at the services' ports: decide before anything else is started.
    let services_restarted = !stack.started.is_empty();
    let mock = settings.mock.enabled.then(|| mock_command_line(settings));
    ensure_helper(
        settings,
        reporter,
        ServiceName::Mock,
        mock,
        recorded(ServiceName::Mock),
        false,
        stack,
    )
    .await?;
    let mut faults_record = recorded(ServiceName::Faults).filter(is_running);
    let wanted = wanted_fault_proxies(settings, stack);
    let reusable = !services_restarted
        && faults_record.is_some()
        && !wanted.is_empty()
        && wanted.len() == previous_proxies.len()
        && wanted.iter().all(|(service, _, target)| {
            previous_proxies
                .iter()
                .any(|p| p.service == *service && p.target_port == *target)
        });
    let proxies = if reusable {
        previous_proxies
    } else {
        // The old process may hold the ports the new one wants: stop it first.
        if let Some(record) = faults_record.take() {
            stop_recorded(&record, STOP_GRACE);
        }
        let mut proxies = Vec::new();
        for (service, wanted_port, target_port) in wanted {
            let flag = format!("`faults_port` of [services.{service}] in inframock.toml");
            proxies.push(FaultProxyRecord {
                service,
                port: ports::claim(wanted_port, &flag)?,
                target_port,
            });
        }
        proxies
    };
    let faults_line = (!proxies.is_empty()).then(|| faults_command_line(settings, &proxies));
    ensure_helper(
        settings,
        reporter,
        ServiceName::Faults,
        faults_line,
        faults_record,
        false,
        stack,
    )
    .await?;
    stack.state.fault_proxies = proxies;
    if settings.dashboard_enabled {
        // Refused here, before anything starts, rather than as a helper that exits at once.
        let token = std::env::var("INFRAMOCK_DASHBOARD_TOKEN")
            .ok()
            .filter(|t| !t.is_empty());
        crate::dashboard::Access::new(settings.dashboard_bind, token)?;
    }
    let dashboard = settings.dashboard_enabled.then(|| {
        // The dashboard reloads the data folder this run loads (`--data` may name another).
        let mut base = base_command_line(settings);
        base.extend(["--data".into(), settings.data_path.clone().into_os_string()]);
        port_flag_command_line(base, "--dashboard-port", &["dashboard"])
    });
    ensure_helper(
        settings,
        reporter,
        ServiceName::Dashboard,
        dashboard,
        recorded(ServiceName::Dashboard),
        false,
        stack,
    )
    .await?;
    // The queue worker starts after the resources exist (`ensure_queue_worker`); until then the
    // one of an earlier run stays recorded, so it is found and restarted or stopped.
    // So does the persist keeper (`ensure_persist_keeper`, once the kept state is loaded).
    for later in [ServiceName::Queues, ServiceName::Persist] {
        if let Some(worker) = recorded(later.clone()).filter(is_running) {
            stack.state.services.retain(|r| r.name != later);
            stack.state.services.push(worker);
            stack.state.services.sort_by(|a, b| a.name.cmp(&b.name));
        }
    }
    state::write(&settings.state_dir(), &stack.state)
}

/// Starts the persist keeper (`inframock snapshot keep --every N`) when `[stack] persist` and
/// `persist_every` ask for it, replacing the one of an earlier run; stops it otherwise. Called once
/// the kept state is loaded, so a periodic save never catches a stack half loaded.
pub async fn ensure_persist_keeper(
    settings: &Settings,
    reporter: &Reporter,
    stack: &mut RunningStack,
) -> Result<()> {
    let every = settings
        .stack
        .stack
        .persist_every
        .filter(|seconds| settings.stack.stack.persist && *seconds > 0)
        .filter(|_| stack.state.runtime != RuntimeKind::External);
    let arguments = every.map(|seconds| {
        vec![
            "snapshot".into(),
            "keep".into(),
            "--every".into(),
            seconds.to_string().into(),
        ]
    });
    ensure_worker(settings, reporter, ServiceName::Persist, arguments, stack).await
}

/// Starts the queue worker (`inframock queue run`) when tails or bridges are declared, replacing
/// the one of an earlier run so it picks up the current inframock.toml; stops it when none are.
pub async fn ensure_queue_worker(
    settings: &Settings,
    reporter: &Reporter,
    wanted: bool,
    stack: &mut RunningStack,
) -> Result<()> {
    let arguments = wanted.then(|| vec!["queue".into(), "run".into()]);
    ensure_worker(settings, reporter, ServiceName::Queues, arguments, stack).await
}

/// A helper without a port (`queues`, `persist`): this binary with `arguments` after the global
/// flags, replacing the one of an earlier run; `None` stops it and forgets its record.
async fn ensure_worker(
    settings: &Settings,
    reporter: &Reporter,
    service: ServiceName,
    arguments: Option<Vec<std::ffi::OsString>>,
    stack: &mut RunningStack,
) -> Result<()> {
    let previous = stack.state.service(&service).cloned();
    if arguments.is_none() {
        stack.state.services.retain(|r| r.name != service);
    }
    let line: Option<Box<dyn Fn(u16) -> Vec<std::ffi::OsString>>> = arguments.map(|arguments| {
        let mut command = base_command_line(settings);
        command.extend(arguments);
        let boxed: Box<dyn Fn(u16) -> Vec<std::ffi::OsString>> =
            Box::new(move |_port| command.clone());
        boxed
    });
    ensure_helper(settings, reporter, service, line, previous, true, stack).await?;
    state::write(&settings.state_dir(), &stack.state)
}

/// (service, wanted proxy port, service port) for each service with `faults = true`.
fn wanted_fault_proxies(settings: &Settings, stack: &RunningStack) -> Vec<(ServiceName, u16, u16)> {
    settings
        .runtime_services()
        .into_iter()
        .filter_map(|service| {
            let wanted = settings.service(&service).fault_proxy?;
            let record = stack.state.service(&service)?;
            (record.runtime != RuntimeKind::External).then_some((service, wanted, record.port))
        })
        .collect()
}

/// The global flags a process of this binary needs to resolve the same settings as this one
/// (project, stack file, and the values names in inframock.toml expand with).
pub fn base_command_line(settings: &Settings) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec![
        "--project-dir".into(),
        settings.project_dir.clone().into_os_string(),
    ];
    if std::path::Path::new(&settings.stack_origin).is_file() {
        args.push("--config".into());
        args.push(settings.stack_origin.clone().into());
    }
    // Names in inframock.toml expand with these: the helper must see the same values.
    args.extend([
        "--cluster-env".into(),
        settings.cluster_env.clone().into(),
        "--region".into(),
        settings.region.clone().into(),
    ]);
    if settings.unsafe_handlers {
        args.push("--unsafe-handlers".into());
    }
    args
}

fn mock_command_line(settings: &Settings) -> Box<dyn Fn(u16) -> Vec<std::ffi::OsString>> {
    port_flag_command_line(base_command_line(settings), "--mock-port", &["mock"])
}

/// `inframock <base> <port flag> PORT <command...>`: a helper told its port by a global flag.
fn port_flag_command_line(
    base: Vec<std::ffi::OsString>,
    port_flag: &'static str,
    command: &'static [&'static str],
) -> Box<dyn Fn(u16) -> Vec<std::ffi::OsString>> {
    Box::new(move |port| {
        let mut args = base.clone();
        args.extend([port_flag.into(), port.to_string().into()]);
        args.extend(command.iter().map(std::ffi::OsString::from));
        args
    })
}

fn faults_command_line(
    settings: &Settings,
    proxies: &[FaultProxyRecord],
) -> Box<dyn Fn(u16) -> Vec<std::ffi::OsString>> {
    let base = base_command_line(settings);
    let specs: Vec<String> = proxies
        .iter()
        .map(|p| format!("{}={}:127.0.0.1:{}", p.service, p.port, p.target_port))
        .collect();
    Box::new(move |port| {
        let mut args = base.clone();
        args.extend([
            "--faults-port".into(),
            port.to_string().into(),
            "faults".into(),
            "serve".into(),
        ]);
        for spec in &specs {
            args.extend(["--proxy".into(), spec.into()]);
        }
        args
    })
}

/// Starts, reuses or stops one helper. `command_line` is `None` when it is not wanted.
async fn ensure_helper(
    settings: &Settings,
    reporter: &Reporter,
    service: ServiceName,
    command_line: Option<Box<dyn Fn(u16) -> Vec<std::ffi::OsString>>>,
    previous: Option<ServiceRecord>,
    restart: bool,
    stack: &mut RunningStack,
) -> Result<()> {
    let running = previous.filter(is_running);
    let Some(command_line) = command_line else {
        if let Some(record) = running {
            stop_recorded(&record, STOP_GRACE);
            reporter.info(format!(
                "{service}: stopped the process of an earlier run (pid {}): it is no longer enabled in inframock.toml",
                record.pid.unwrap_or(0)
            ));
        }
        return Ok(());
    };
    let mut records = Vec::new();
    match running {
        Some(record) if !restart => {
            reuse_if_healthy(settings, reporter, &record, &mut records, &mut stack.reused).await?;
        }
        other => {
            if let Some(record) = other {
                stop_recorded(&record, STOP_GRACE);
            }
            let program =
                find_program(&service, settings.service(&service), &settings.project_dir)?;
            let port = claim_port(settings, &service, true)?;
            let mut command = std::process::Command::new(&program);
            command.args(command_line(port));
            let process = spawn(
                &service,
                command,
                &program,
                port,
                settings.service(&service).kind.url_at(port),
                &fresh_log(&settings.state_dir(), &service)?,
            )?;
            let recorded = record_spawned(settings, RuntimeKind::Local, &process.record);
            let mut started = vec![Started::new(
                process.record.clone(),
                Arc::new(LocalRuntime),
                Some(process),
            )];
            let ready = match recorded {
                Ok(()) => wait_for_started(settings, reporter, &mut started).await,
                Err(e) => Err(e),
            };
            if let Err(e) = ready {
                stop_all(settings, started).await;
                return Err(e);
            }
            records.extend(started.iter().map(|s| s.record().clone()));
            stack.started.extend(started);
        }
    }
    stack.state.services.retain(|r| r.name != service);
    stack.state.services.extend(records);
    stack.state.services.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(())
}
