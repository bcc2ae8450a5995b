//! Bringing the stack's services up through one [`Runtime`]: reuse what of ours still answers,
//! start the rest (each recorded in `.inframock/state.json` the moment it is spawned), wait until
//! every one answers, then start our own helpers. On any failure, what this call started is
//! stopped again: nothing is left half-started.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use futures::future::join_all;

use super::catalog::ProbeSpec;
use super::helpers::ensure_helpers;
use super::ports;
use super::ready::{wait_until_ready, Probe};
use super::runtime::{self, describe, Runtime, Started};
use super::state::{self, ServiceRecord, StackState};
use super::ServiceName;
use crate::cli::RuntimeKind;
use crate::config::Settings;
use crate::output::Reporter;

/// A stack that answers, and what this invocation started of it.
pub struct RunningStack {
    pub state: StackState,
    /// The runtime of the stack's services.
    pub runtime: Arc<dyn Runtime>,
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
        let started: Vec<ServiceName> = self
            .started
            .iter()
            .map(|s| s.record().name.clone())
            .collect();
        for item in self.started.drain(..).rev() {
            item.stop().await;
        }
        self.state.services.retain(|s| !started.contains(&s.name));
        if self.state.services.is_empty() {
            self.runtime.tidy().await;
            state::remove(state_dir)
        } else {
            state::write(state_dir, &self.state)
        }
    }
}

/// Brings the stack up according to `settings`; `fresh` starts new processes or containers
/// instead of reusing running ones.
pub async fn bring_up(
    settings: &Settings,
    reporter: &Reporter,
    fresh: bool,
) -> Result<RunningStack> {
    let began = Instant::now();
    let runtime = runtime::choose(settings, reporter).await?;
    let settings = &*settings.for_runtime(runtime.kind());
    let state_dir = settings.ensure_state_dir()?;
    let previous = state::read(&state_dir)?;
    refuse_runtime_switch(previous.as_ref(), runtime.as_ref()).await?;
    let mut stack =
        match start_services(settings, reporter, previous.as_ref(), &runtime, fresh).await {
            Ok(stack) => stack,
            Err(e) => {
                runtime.tidy().await;
                return Err(e);
            }
        };
    if let Err(e) = ensure_helpers(settings, reporter, previous, &mut stack).await {
        stack.stop_started(&state_dir).await?;
        return Err(e);
    }
    stack.ready_after = began.elapsed();
    Ok(stack)
}

/// A project runs one stack on one runtime: switching needs a `stop` first.
async fn refuse_runtime_switch(previous: Option<&StackState>, runtime: &dyn Runtime) -> Result<()> {
    let Some(previous) = previous else {
        return Ok(());
    };
    if previous.runtime == runtime.kind() || previous.runtime == RuntimeKind::External {
        return Ok(());
    }
    let mut running = false;
    for record in previous
        .services
        .iter()
        .filter(|r| r.runtime == previous.runtime)
    {
        running |= runtime::is_running(record, &previous.project).await;
    }
    if running {
        bail!(
            "this project's stack runs on the {} runtime; run `inframock stop` first to switch to {}",
            previous.runtime,
            runtime.kind()
        );
    }
    Ok(())
}

/// Reuses, or starts and waits for, each service of the runtime.
async fn start_services(
    settings: &Settings,
    reporter: &Reporter,
    previous: Option<&StackState>,
    runtime: &Arc<dyn Runtime>,
    fresh: bool,
) -> Result<RunningStack> {
    let began = Instant::now();
    let kind = runtime.kind();
    let mut records = Vec::new();
    let mut reused = Vec::new();
    let mut to_start = Vec::new();
    for service in runtime.services(settings) {
        let recorded = previous
            .filter(|p| p.runtime == kind)
            .and_then(|p| p.service(&service));
        let wanted_kind = &settings.service(&service).kind.id;
        match runtime.find(settings, service.clone(), recorded).await? {
            Some(found)
                if found.running
                    && found.record.kind.as_ref().is_some_and(|k| k != wanted_kind) =>
            {
                reporter.info(format!(
                    "{service}: the running {} is {}, inframock.toml now says {wanted_kind}; starting {wanted_kind} instead",
                    describe(&found.record),
                    found.record.kind.as_deref().unwrap_or("?")
                ));
                runtime.stop(&found.record).await;
                to_start.push(service);
            }
            Some(found) if found.running && !fresh => {
                reuse_if_healthy(settings, reporter, &found.record, &mut records, &mut reused)
                    .await?;
            }
            Some(found) => {
                if found.running {
                    reporter.info(format!(
                        "{service}: stopping the running {} (--fresh); starting a new one",
                        describe(&found.record)
                    ));
                } else {
                    reporter.info(format!(
                        "{service}: the {} recorded earlier is not running; starting a new one",
                        describe(&found.record)
                    ));
                }
                runtime.stop(&found.record).await;
                to_start.push(service);
            }
            None => to_start.push(service),
        }
    }
    // Pre-flight everything before starting anything: programs or images, and ports.
    let mut plans = Vec::new();
    for service in to_start {
        if fresh && kind == RuntimeKind::Local {
            // `--fresh` means empty: a declared service's data folder (Postgres) starts anew too.
            let data_dir = runtime::local::data_dir(&settings.state_dir(), &service);
            if data_dir.is_dir() {
                std::fs::remove_dir_all(&data_dir).map_err(|e| {
                    anyhow::anyhow!("--fresh: cannot empty {}: {e}", data_dir.display())
                })?;
            }
        }
        runtime.prepare(settings, service.clone()).await?;
        let port = claim_port(settings, &service, kind == RuntimeKind::Local)?;
        plans.push((service, port));
    }
    let mut started = Vec::new();
    for (service, port) in plans {
        let spawned = match runtime.start(settings, service.clone(), port).await {
            Ok(mut item) => {
                item.record.kind = Some(settings.service(&service).kind.id.clone());
                let recorded = record_spawned(settings, kind, item.record());
                started.push(item);
                recorded
            }
            Err(e) => Err(e),
        };
        if let Err(e) = spawned {
            stop_all(settings, started).await;
            return Err(e);
        }
    }
    if let Err(e) = wait_for_started(settings, reporter, &mut started).await {
        stop_all(settings, started).await;
        return Err(e);
    }
    records.extend(started.iter().map(|s| s.record().clone()));
    records.sort_by(|a, b| a.name.cmp(&b.name));
    let state = StackState {
        project: settings.project_name.clone(),
        runtime: kind,
        started_at: previous
            .filter(|p| !reused.is_empty() && p.runtime == kind)
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
        runtime: runtime.clone(),
        started,
        reused,
        ready_after: began.elapsed(),
    })
}

/// Reuses a running service once it answers (one still starting, e.g. left by a `run` that was
/// killed while it waited, is waited for); one that never answers is an error.
pub async fn reuse_if_healthy(
    settings: &Settings,
    reporter: &Reporter,
    record: &ServiceRecord,
    records: &mut Vec<ServiceRecord>,
    reused: &mut Vec<ServiceName>,
) -> Result<()> {
    let service = record.name.clone();
    let probe = probe_for(settings, record);
    let hint = format!("see `inframock logs {service}`");
    let answered = wait_until_ready(
        service.as_str(),
        &probe,
        settings.ready_timeout,
        &hint,
        || std::future::ready(Ok(())),
    )
    .await;
    match answered {
        Ok(_) => {
            reporter.info(format!(
                "{service}: reusing the running {} (port {})",
                describe(record),
                record.port
            ));
            records.push(record.clone());
            reused.push(service);
            Ok(())
        }
        Err(reason) => bail!(
            "{service} ({}, port {}) from an earlier `run` is running but does not answer ({reason}); run `inframock stop` (or `run --fresh`) and start again",
            describe(record),
            record.port
        ),
    }
}

/// The port a service should use: 0 stays 0 for docker (the engine picks), a free one for local.
pub fn claim_port(settings: &Settings, service: &ServiceName, pick_free: bool) -> Result<u16> {
    if matches!(service, ServiceName::Queues | ServiceName::Persist) {
        return Ok(0);
    }
    let wanted = settings.service(service).port;
    if wanted == 0 && !pick_free {
        return Ok(0);
    }
    Ok(ports::claim(wanted, &settings.service(service).port_flag)?)
}

/// Waits until everything in `started` answers (each with its probe, all at once, one deadline);
/// the error names each one that did not, with where to look. The caller stops them on failure.
pub async fn wait_for_started(
    settings: &Settings,
    reporter: &Reporter,
    started: &mut [Started],
) -> Result<()> {
    if started.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = started
        .iter()
        .map(|s| match s.record().runtime {
            RuntimeKind::External => format!("{} at {}", s.record().name, s.record().url),
            _ => format!("{} on port {}", s.record().name, s.record().port),
        })
        .collect();
    let step = reporter.step(format!("waiting for {}", names.join(", ")));
    let deadline = settings.ready_timeout;
    let waits = started.iter_mut().map(|item| {
        let service = item.record().name.clone();
        let probe = probe_for(settings, item.record());
        let hint = match (&item.record().log, item.record().runtime) {
            (_, RuntimeKind::External) => format!("check that {} is reachable", item.record().url),
            (Some(log), _) => format!(
                "raise --ready-timeout (INFRAMOCK_READY_TIMEOUT) or read {}",
                log.display()
            ),
            (None, _) => format!(
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

/// The readiness probe of a recorded service, as its kind (the recorded one: see
/// [`super::lifecycle::kind_of`]) describes it.
pub fn probe_for(settings: &Settings, record: &ServiceRecord) -> Probe {
    let url = record.url.as_str();
    let runtime = record.runtime;
    match &super::lifecycle::kind_of(settings, record).probe {
        ProbeSpec::Aws => Probe::Aws(crate::aws::Endpoint::new(
            url.to_string(),
            settings.region.clone(),
            runtime == RuntimeKind::External,
            settings.operation_timeout,
        )),
        ProbeSpec::Redis => Probe::Redis {
            url: url.to_string(),
        },
        ProbeSpec::Http(path) => Probe::Http {
            url: format!("{url}{path}"),
        },
        ProbeSpec::Tcp => Probe::Tcp {
            address: host_port_of(url),
        },
        ProbeSpec::Command(argv) => {
            let port = runtime::port_of(url).unwrap_or(0);
            Probe::Command {
                argv: argv
                    .iter()
                    .map(|a| a.replace("{port}", &port.to_string()))
                    .collect(),
            }
        }
        ProbeSpec::Alive => Probe::Alive,
    }
}

/// `host:port` of a URL (`memcached://localhost:11211` → `localhost:11211`).
fn host_port_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_string()
}

/// Stops what this call started and forgets it in the state file.
pub async fn stop_all(settings: &Settings, started: Vec<Started>) {
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
pub fn record_spawned(
    settings: &Settings,
    runtime: RuntimeKind,
    record: &ServiceRecord,
) -> Result<()> {
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
    recorded.services.sort_by(|a, b| a.name.cmp(&b.name));
    state::write(&state_dir, &recorded)
}

/// Seconds since the Unix epoch.
pub fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
