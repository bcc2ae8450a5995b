//! Bringing the stack up: choose the runtime, reuse services of ours that are still healthy, start
//! the rest, wait until every one answers, and record them in `.inframock/state.json`.
//! On any failure, what this call started is stopped again: nothing is left half-started.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use futures::future::join_all;

use super::docker::{engine_address, DockerRuntime};
use super::local::{self, StartedProcess};
use super::ports;
use super::ready::{wait_until_ready, Probe};
use super::state::{self, FaultProxyRecord, ServiceRecord, StackState};
use super::ServiceName;
use crate::cli::RuntimeKind;
use crate::config::Settings;
use crate::output::Reporter;

/// Grace period between TERM and KILL when stopping a process.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Something this invocation started.
pub enum Started {
    Process(StartedProcess),
    /// A container; its id is in `record.container`.
    Container {
        docker: DockerRuntime,
        record: ServiceRecord,
    },
}

impl Started {
    /// The service's record.
    pub fn record(&self) -> &ServiceRecord {
        match self {
            Started::Process(process) => &process.record,
            Started::Container { record, .. } => record,
        }
    }

    /// `Ok` while it runs; otherwise why not (exit status and last log lines).
    pub async fn check_alive(&mut self) -> Result<(), String> {
        match self {
            Started::Process(process) => process.check_alive(),
            Started::Container { docker, record } => {
                let id = record.container.as_deref().unwrap_or_default();
                docker.check_alive(id, record.name).await
            }
        }
    }

    /// Lets it run on after this invocation ends (`run --detach`).
    pub fn keep_running(self) {
        if let Started::Process(process) = self {
            process.keep_running();
        }
    }

    /// Stops it (and removes a container).
    pub async fn stop(self) {
        match self {
            Started::Process(process) => process.stop(STOP_GRACE),
            Started::Container { docker, record } => {
                docker
                    .remove(record.container.as_deref().unwrap_or_default())
                    .await
            }
        }
    }
}

/// A stack that answers, and what this invocation started of it.
pub struct RunningStack {
    pub state: StackState,
    /// What this call started: the caller stops it on Ctrl-C or failure.
    pub started: Vec<Started>,
    /// Services that were already running and healthy and were reused as they are.
    pub reused: Vec<ServiceName>,
    /// Time from the start of `bring_up` until every service answered.
    pub ready_after: Duration,
}

impl RunningStack {
    /// Stops what this call started and forgets it in the state file.
    pub async fn stop_started(&mut self, state_dir: &std::path::Path) -> Result<()> {
        let started: Vec<ServiceName> = self.started.iter().map(|s| s.record().name).collect();
        let docker = self.started.iter().find_map(|s| match s {
            Started::Container { docker, .. } => Some(docker.clone()),
            Started::Process(_) => None,
        });
        for item in self.started.drain(..).rev() {
            item.stop().await;
        }
        self.state.services.retain(|s| !started.contains(&s.name));
        if self.state.services.is_empty() {
            if let Some(docker) = docker {
                docker.remove_network().await;
            }
            state::remove(state_dir)
        } else {
            state::write(state_dir, &self.state)
        }
    }
}

/// The runtime chosen for this run.
pub enum Runtime {
    Local,
    Docker(DockerRuntime),
    External,
}

/// Resolves `auto`: docker when an engine answers and the images are present or can be pulled,
/// otherwise local, saying why in one line. An explicit `docker` never falls back.
pub async fn choose_runtime(settings: &Settings, reporter: &Reporter) -> Result<Runtime> {
    match settings.runtime {
        RuntimeKind::Local => Ok(Runtime::Local),
        RuntimeKind::External => Ok(Runtime::External),
        RuntimeKind::Docker => {
            let docker = DockerRuntime::connect(&settings.project_name).await.map_err(|e| {
                anyhow::anyhow!(
                    "--runtime docker: no Docker engine answers at {} ({e}); start Docker (or set DOCKER_HOST), or use --runtime local",
                    engine_address()
                )
            })?;
            for service in ServiceName::ALL {
                let image = &settings.service(service).container.image;
                if !docker.image_present(image).await {
                    docker.pull(image, reporter.interactive).await.with_context(|| {
                        format!("image {image} of {service} is not present and could not be pulled; pull or build it, or choose another with --{service}-image")
                    })?;
                }
            }
            Ok(Runtime::Docker(docker))
        }
        RuntimeKind::Auto => {
            let docker = match DockerRuntime::connect(&settings.project_name).await {
                Ok(docker) => docker,
                Err(e) => {
                    reporter.info(format!(
                        "runtime auto: no Docker engine answers at {} ({e}); using local processes (moto_server, redis-server)",
                        engine_address()
                    ));
                    return Ok(Runtime::Local);
                }
            };
            for service in ServiceName::ALL {
                let image = &settings.service(service).container.image;
                if docker.image_present(image).await {
                    continue;
                }
                let pulled = tokio::time::timeout(
                    Duration::from_secs(600),
                    docker.pull(image, reporter.interactive),
                )
                .await;
                let reason = match pulled {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(_) => "the pull took longer than 10 minutes".to_string(),
                };
                reporter.info(format!(
                    "runtime auto: the Docker engine answers but image {image} is not present and could not be pulled ({reason}); using local processes (moto_server, redis-server)"
                ));
                return Ok(Runtime::Local);
            }
            reporter.info("runtime auto: using Docker containers");
            Ok(Runtime::Docker(docker))
        }
    }
}

/// Brings the stack up according to `settings`; `fresh` recreates containers.
pub async fn bring_up(
    settings: &Settings,
    reporter: &Reporter,
    fresh: bool,
) -> Result<RunningStack> {
    let began = Instant::now();
    let runtime = choose_runtime(settings, reporter).await?;
    let state_dir = settings.ensure_state_dir()?;
    let previous = state::read(&state_dir)?;
    let previous_proxies = previous
        .as_ref()
        .map(|p| p.fault_proxies.clone())
        .unwrap_or_default();
    let previous_helpers: Vec<ServiceRecord> = previous
        .as_ref()
        .map(|p| {
            p.services
                .iter()
                .filter(|s| {
                    matches!(
                        s.name,
                        ServiceName::Mock | ServiceName::Faults | ServiceName::Queues
                    )
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let mut stack = match runtime {
        Runtime::External => bring_up_external(settings, reporter, began).await,
        Runtime::Local => {
            if let Some(p) = previous
                .as_ref()
                .filter(|p| p.runtime == RuntimeKind::Docker)
            {
                bail!(
                    "this project's stack runs on the docker runtime (since {}); run `inframock stop` first to switch to local",
                    p.started_at
                );
            }
            bring_up_local(settings, reporter, began, previous, fresh).await
        }
        Runtime::Docker(docker) => {
            if let Some(p) = previous
                .as_ref()
                .filter(|p| p.runtime == RuntimeKind::Local)
            {
                if p.services.iter().any(local::is_running) {
                    bail!("this project's stack runs on the local runtime; run `inframock stop` first to switch to docker");
                }
            }
            bring_up_docker(settings, reporter, began, previous, docker, fresh).await
        }
    }?;
    if let Err(e) = ensure_helpers(
        settings,
        reporter,
        previous_helpers,
        previous_proxies,
        &mut stack,
    )
    .await
    {
        stack.stop_started(&state_dir).await?;
        return Err(e);
    }
    stack.ready_after = began.elapsed();
    Ok(stack)
}

/// Our own helpers (mock server, fault proxies) run as processes of this binary in every runtime.
async fn ensure_helpers(
    settings: &Settings,
    reporter: &Reporter,
    previous: Vec<ServiceRecord>,
    previous_proxies: Vec<FaultProxyRecord>,
    stack: &mut RunningStack,
) -> Result<()> {
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
    let mut faults_record = recorded(ServiceName::Faults).filter(local::is_running);
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
            local::stop_recorded(&record, STOP_GRACE);
        }
        let mut proxies = Vec::new();
        for (service, wanted_port, target_port) in wanted {
            let flag = match service {
                ServiceName::Aws => "faults_port of [services.aws]",
                _ => "faults_port of [services.redis]",
            };
            proxies.push(FaultProxyRecord {
                service,
                port: ports::claim(wanted_port, flag)?,
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
    // The queue worker starts after the resources exist (`ensure_queue_worker`); until then the
    // one of an earlier run stays recorded, so it is found and restarted or stopped.
    if let Some(worker) = recorded(ServiceName::Queues).filter(local::is_running) {
        stack
            .state
            .services
            .retain(|r| r.name != ServiceName::Queues);
        stack.state.services.push(worker);
        stack.state.services.sort_by_key(|r| r.name);
    }
    state::write(&settings.state_dir(), &stack.state)
}

/// Starts the queue worker (`inframock queue run`) when tails or bridges are declared, replacing
/// the one of an earlier run so it picks up the current inframock.toml; stops it when none are.
pub async fn ensure_queue_worker(
    settings: &Settings,
    reporter: &Reporter,
    wanted: bool,
    stack: &mut RunningStack,
) -> Result<()> {
    let previous = stack.state.service(ServiceName::Queues).cloned();
    let line: Option<Box<dyn Fn(u16) -> Vec<std::ffi::OsString>>> = wanted.then(|| {
        let base = base_command_line(settings);
        let boxed: Box<dyn Fn(u16) -> Vec<std::ffi::OsString>> = Box::new(move |_port| {
            let mut args = base.clone();
            args.extend(["queue".into(), "run".into()]);
            args
        });
        boxed
    });
    if !wanted {
        stack
            .state
            .services
            .retain(|r| r.name != ServiceName::Queues);
    }
    ensure_helper(
        settings,
        reporter,
        ServiceName::Queues,
        line,
        previous,
        true,
        stack,
    )
    .await?;
    state::write(&settings.state_dir(), &stack.state)
}

/// (service, wanted proxy port, service port) for each service with `faults = true`.
fn wanted_fault_proxies(settings: &Settings, stack: &RunningStack) -> Vec<(ServiceName, u16, u16)> {
    ServiceName::ALL
        .into_iter()
        .filter_map(|service| {
            let wanted = settings.service(service).fault_proxy?;
            let record = stack.state.service(service)?;
            (record.runtime != RuntimeKind::External).then_some((service, wanted, record.port))
        })
        .collect()
}

fn base_command_line(settings: &Settings) -> Vec<std::ffi::OsString> {
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
    args
}

fn mock_command_line(settings: &Settings) -> Box<dyn Fn(u16) -> Vec<std::ffi::OsString>> {
    let base = base_command_line(settings);
    Box::new(move |port| {
        let mut args = base.clone();
        args.extend(["--mock-port".into(), port.to_string().into(), "mock".into()]);
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
    let running = previous.filter(local::is_running);
    let Some(command_line) = command_line else {
        if let Some(record) = running {
            local::stop_recorded(&record, STOP_GRACE);
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
            reuse_if_healthy(
                settings,
                reporter,
                &record,
                "process",
                &mut records,
                &mut stack.reused,
            )
            .await?;
        }
        other => {
            if let Some(record) = other {
                local::stop_recorded(&record, STOP_GRACE);
            }
            let program = local::find_program(service, None, &settings.project_dir)?;
            let port = claim_port(settings, service, true)?;
            let process = local::spawn(
                service,
                &program,
                port,
                &settings.state_dir(),
                &command_line(port),
            )?;
            let recorded = record_spawned(settings, RuntimeKind::Local, &process.record);
            let mut started = vec![Started::Process(process)];
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
    stack.state.services.sort_by_key(|r| r.name);
    Ok(())
}

async fn bring_up_local(
    settings: &Settings,
    reporter: &Reporter,
    began: Instant,
    previous: Option<StackState>,
    fresh: bool,
) -> Result<RunningStack> {
    let state_dir = settings.state_dir();
    let mut records: Vec<ServiceRecord> = Vec::new();
    let mut reused = Vec::new();
    let mut to_start = Vec::new();
    for service in ServiceName::ALL {
        let recorded = previous
            .as_ref()
            .filter(|p| p.runtime == RuntimeKind::Local)
            .and_then(|p| p.service(service));
        match recorded {
            Some(record) if local::is_running(record) && fresh => {
                local::stop_recorded(record, STOP_GRACE);
                reporter.info(format!(
                    "{service}: stopped the running process (pid {}, --fresh); starting a new one",
                    record.pid.unwrap_or(0)
                ));
                to_start.push(service);
            }
            Some(record) if local::is_running(record) => {
                reuse_if_healthy(
                    settings,
                    reporter,
                    record,
                    "process",
                    &mut records,
                    &mut reused,
                )
                .await?;
            }
            Some(record) => {
                reporter.info(format!(
                    "{service}: the process recorded earlier (pid {}) is gone; starting a new one",
                    record.pid.unwrap_or(0)
                ));
                to_start.push(service);
            }
            None => to_start.push(service),
        }
    }
    // Pre-flight everything before starting anything: programs and ports.
    let mut plans = Vec::new();
    for service in &to_start {
        let explicit = settings.service(*service).program.as_deref();
        let program = local::find_program(*service, explicit, &settings.project_dir)?;
        let port = claim_port(settings, *service, true)?;
        plans.push((*service, program, port));
    }
    let mut started = Vec::new();
    for (service, program, port) in plans {
        let spawned = local::spawn(service, &program, port, &state_dir, &[]).and_then(|process| {
            let recorded = record_spawned(settings, RuntimeKind::Local, &process.record);
            started.push(Started::Process(process));
            recorded
        });
        if let Err(e) = spawned {
            stop_all(settings, started).await;
            return Err(e);
        }
    }
    finish_bring_up(
        settings,
        reporter,
        began,
        previous,
        RuntimeKind::Local,
        records,
        reused,
        started,
    )
    .await
}

async fn bring_up_docker(
    settings: &Settings,
    reporter: &Reporter,
    began: Instant,
    previous: Option<StackState>,
    docker: DockerRuntime,
    fresh: bool,
) -> Result<RunningStack> {
    let outcome =
        start_containers(settings, reporter, began, previous, docker.clone(), fresh).await;
    if outcome.is_err() && docker.list_ours(None).await.is_ok_and(|c| c.is_empty()) {
        // Nothing of ours runs: do not leave the network behind (engines have few address pools).
        docker.remove_network().await;
    }
    outcome
}

async fn start_containers(
    settings: &Settings,
    reporter: &Reporter,
    began: Instant,
    previous: Option<StackState>,
    docker: DockerRuntime,
    fresh: bool,
) -> Result<RunningStack> {
    let network = docker.ensure_network().await?;
    let mut records = Vec::new();
    let mut reused = Vec::new();
    let mut to_start = Vec::new();
    for service in ServiceName::ALL {
        match docker.find(service).await? {
            Some((id, true)) if !fresh => {
                let port_key =
                    format!("{}/tcp", settings.service(service).container.container_port);
                let port = docker.published_port(&id, &port_key).await?;
                let record = ServiceRecord {
                    name: service,
                    runtime: RuntimeKind::Docker,
                    port,
                    url: super::local_url(service, port),
                    pid: None,
                    started: None,
                    program: Some(settings.service(service).container.image.clone()),
                    log: None,
                    container: Some(id),
                };
                reuse_if_healthy(
                    settings,
                    reporter,
                    &record,
                    "container",
                    &mut records,
                    &mut reused,
                )
                .await?;
            }
            Some((id, running)) => {
                reporter.info(format!(
                    "{service}: removing the {} container {}",
                    if running {
                        "running (--fresh)"
                    } else {
                        "stopped"
                    },
                    &id[..12.min(id.len())]
                ));
                docker.remove(&id).await;
                to_start.push(service);
            }
            None => to_start.push(service),
        }
    }
    let mut plans = Vec::new();
    for service in &to_start {
        plans.push((*service, claim_port(settings, *service, false)?));
    }
    let mut started = Vec::new();
    for (service, port) in plans {
        let container = docker
            .start(
                service,
                &settings.service(service).container,
                port,
                &network,
            )
            .await
            .and_then(|record| {
                let recorded = record_spawned(settings, RuntimeKind::Docker, &record);
                started.push(Started::Container {
                    docker: docker.clone(),
                    record,
                });
                recorded
            });
        if let Err(e) = container {
            stop_all(settings, started).await;
            return Err(e);
        }
    }
    finish_bring_up(
        settings,
        reporter,
        began,
        previous,
        RuntimeKind::Docker,
        records,
        reused,
        started,
    )
    .await
}

/// Reuses a running service once it answers (one still starting, e.g. left by a `run` that was
/// killed while it waited, is waited for); one that never answers is an error.
async fn reuse_if_healthy(
    settings: &Settings,
    reporter: &Reporter,
    record: &ServiceRecord,
    what: &str,
    records: &mut Vec<ServiceRecord>,
    reused: &mut Vec<ServiceName>,
) -> Result<()> {
    let service = record.name;
    let probe = probe_for(settings, record.runtime, service, &record.url);
    let answered = wait_until_ready(service.as_str(), &probe, settings.ready_timeout, "", || {
        std::future::ready(Ok(()))
    })
    .await;
    match answered {
        Ok(_) => {
            reporter.info(format!(
                "{service}: reusing the running {what} ({}, port {})",
                identity(record),
                record.port
            ));
            records.push(record.clone());
            reused.push(service);
            Ok(())
        }
        Err(reason) => bail!(
            "{service} ({}, port {}) from an earlier `run` is running but does not answer ({reason}); run `inframock stop` (or `run --fresh`) and start again",
            identity(record),
            record.port
        ),
    }
}

fn identity(record: &ServiceRecord) -> String {
    match (&record.pid, &record.container) {
        (Some(pid), _) => format!("pid {pid}"),
        (None, Some(id)) => format!("container {}", &id[..12.min(id.len())]),
        _ => "external".to_string(),
    }
}

/// The port a service should use: 0 stays 0 for docker (the engine picks), a free one for local.
fn claim_port(settings: &Settings, service: ServiceName, pick_free: bool) -> Result<u16> {
    if service == ServiceName::Queues {
        return Ok(0);
    }
    let wanted = settings.service(service).port;
    let flag = settings.service(service).port_flag;
    if wanted == 0 && !pick_free {
        return Ok(0);
    }
    Ok(ports::claim(wanted, flag)?)
}

/// Waits until everything in `started` answers (each with its probe, all at once, one deadline);
/// the error names each one that did not, with where to look. The caller stops them on failure.
async fn wait_for_started(
    settings: &Settings,
    reporter: &Reporter,
    started: &mut [Started],
) -> Result<()> {
    if started.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = started
        .iter()
        .map(|s| format!("{} on port {}", s.record().name, s.record().port))
        .collect();
    let step = reporter.step(format!("waiting for {}", names.join(", ")));
    let deadline = settings.ready_timeout;
    let waits = started.iter_mut().map(|item| {
        let service = item.record().name;
        let probe = probe_for(settings, item.record().runtime, service, &item.record().url);
        let hint = match &item.record().log {
            Some(log) => format!(
                "raise --ready-timeout (INFRAMOCK_READY_TIMEOUT) or read {}",
                log.display()
            ),
            None => format!(
                "raise --ready-timeout (INFRAMOCK_READY_TIMEOUT) or see `inframock logs {service}`"
            ),
        };
        async move {
            let cell = tokio::sync::Mutex::new(item);
            wait_until_ready(service.as_str(), &probe, deadline, &hint, || async {
                cell.lock().await.check_alive().await
            })
            .await
        }
    });
    let failures: Vec<String> = join_all(waits)
        .await
        .into_iter()
        .filter_map(|o| o.err().map(|e| e.to_string()))
        .collect();
    if !failures.is_empty() {
        step.fail(format!("{} did not become ready", names.join(", ")));
        bail!("{}", failures.join("\n"));
    }
    step.done(format!("ready: {}", names.join(", ")));
    Ok(())
}

/// Waits for what was started, then records the stack. Stops everything started on failure.
#[allow(clippy::too_many_arguments)]
async fn finish_bring_up(
    settings: &Settings,
    reporter: &Reporter,
    began: Instant,
    previous: Option<StackState>,
    runtime: RuntimeKind,
    mut records: Vec<ServiceRecord>,
    reused: Vec<ServiceName>,
    mut started: Vec<Started>,
) -> Result<RunningStack> {
    if let Err(e) = wait_for_started(settings, reporter, &mut started).await {
        stop_all(settings, started).await;
        return Err(e);
    }
    records.extend(started.iter().map(|s| s.record().clone()));
    records.sort_by_key(|r| r.name);
    let state = StackState {
        project: settings.project_name.clone(),
        runtime,
        started_at: previous
            .filter(|p| !reused.is_empty() && p.runtime == runtime)
            .map(|p| p.started_at)
            .unwrap_or_else(now_seconds),
        region: settings.region.clone(),
        cluster_env: settings.cluster_env.clone(),
        services: records,
        fault_proxies: Vec::new(),
    };
    if let Err(e) = state::write(&settings.state_dir(), &state) {
        stop_all(settings, started).await;
        return Err(e);
    }
    Ok(RunningStack {
        state,
        started,
        reused,
        ready_after: began.elapsed(),
    })
}

async fn bring_up_external(
    settings: &Settings,
    reporter: &Reporter,
    began: Instant,
) -> Result<RunningStack> {
    let endpoint = settings
        .endpoint_url
        .clone()
        .context("--runtime external needs --endpoint-url")?;
    let mut services = vec![(ServiceName::Aws, endpoint)];
    if let Some(redis) = &settings.redis_url {
        services.push((ServiceName::Redis, redis.clone()));
    }
    let mut records = Vec::new();
    for (service, url) in services {
        let step = reporter.step(format!("checking {service} at {url}"));
        let probe = probe_for(settings, RuntimeKind::External, service, &url);
        let hint = format!("check that {url} is reachable");
        match wait_until_ready(
            service.as_str(),
            &probe,
            settings.ready_timeout,
            &hint,
            || std::future::ready(Ok(())),
        )
        .await
        {
            Ok(_) => step.done(format!("{service} answers at {url}")),
            Err(e) => {
                step.fail(format!("{service} at {url} does not answer"));
                return Err(e.into());
            }
        }
        records.push(ServiceRecord {
            name: service,
            runtime: RuntimeKind::External,
            port: port_of(&url).unwrap_or(0),
            url,
            pid: None,
            started: None,
            program: None,
            log: None,
            container: None,
        });
    }
    let state = StackState {
        project: settings.project_name.clone(),
        runtime: RuntimeKind::External,
        started_at: now_seconds(),
        region: settings.region.clone(),
        cluster_env: settings.cluster_env.clone(),
        services: records,
        fault_proxies: Vec::new(),
    };
    state::write(&settings.state_dir(), &state)?;
    Ok(RunningStack {
        state,
        started: Vec::new(),
        reused: Vec::new(),
        ready_after: began.elapsed(),
    })
}

/// The readiness probe of a service at a URL, run by `runtime`.
pub fn probe_for(
    settings: &Settings,
    runtime: RuntimeKind,
    service: ServiceName,
    url: &str,
) -> Probe {
    match service {
        ServiceName::Aws => Probe::Aws(crate::aws::Endpoint::new(
            url.to_string(),
            settings.region.clone(),
            runtime == RuntimeKind::External,
            settings.operation_timeout,
        )),
        ServiceName::Redis => Probe::Redis {
            url: url.to_string(),
        },
        ServiceName::Mock => Probe::Http {
            url: format!("{url}/mocker/health"),
        },
        ServiceName::Faults => Probe::Http {
            url: format!("{url}/mock/health"),
        },
        ServiceName::Queues => Probe::Alive,
    }
}

/// Stops what this call started and forgets it in the state file.
async fn stop_all(settings: &Settings, started: Vec<Started>) {
    let records: Vec<ServiceRecord> = started.iter().map(|s| s.record().clone()).collect();
    for item in started.into_iter().rev() {
        item.stop().await;
    }
    if let Err(e) = state::forget(&settings.state_dir(), &records) {
        eprintln!("warning: {e:#}");
    }
}

/// Records a service the moment it was spawned, before it is ready: if this command dies while
/// waiting (even by `kill -9`), `status` shows it and `stop` stops it.
fn record_spawned(settings: &Settings, runtime: RuntimeKind, record: &ServiceRecord) -> Result<()> {
    let state_dir = settings.state_dir();
    let mut recorded = state::read(&state_dir)?.unwrap_or_else(|| StackState {
        project: settings.project_name.clone(),
        runtime,
        started_at: now_seconds(),
        region: settings.region.clone(),
        cluster_env: settings.cluster_env.clone(),
        services: Vec::new(),
        fault_proxies: Vec::new(),
    });
    recorded.services.retain(|r| r.name != record.name);
    recorded.services.push(record.clone());
    recorded.services.sort_by_key(|r| r.name);
    state::write(&state_dir, &recorded)
}

fn port_of(url: &str) -> Option<u16> {
    let rest = url.split("://").nth(1)?;
    let host_port = rest.split('/').next()?;
    host_port.rsplit(':').next()?.parse().ok()
}

/// Seconds since the Unix epoch.
pub fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::port_of;

    #[test]
    fn port_is_read_from_urls() {
        assert_eq!(port_of("http://localhost:4566"), Some(4566));
        assert_eq!(port_of("redis://127.0.0.1:6380/0"), Some(6380));
        assert_eq!(port_of("https://s3.amazonaws.com"), None);
    }
}
