//! Bringing the stack up: choose the runtime, reuse services of ours that are still healthy, start
//! the rest, wait until every one answers, and record them in `.inframock/state.json`.
//! On any failure, what this call started is stopped again: nothing is left half-started.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use futures::future::join_all;

use super::local::{self, StartedProcess};
use super::ports;
use super::ready::{wait_until_ready, Probe};
use super::state::{self, ServiceRecord, StackState};
use super::ServiceName;
use crate::cli::RuntimeKind;
use crate::config::Settings;
use crate::output::Reporter;

/// Grace period between TERM and KILL when stopping a process.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// A stack that answers, and what this invocation started of it.
pub struct RunningStack {
    pub state: StackState,
    /// Processes started by this call: the caller stops them on Ctrl-C or failure.
    pub started: Vec<StartedProcess>,
    /// Services that were already running and healthy and were reused as they are.
    pub reused: Vec<ServiceName>,
    /// Time from the start of `bring_up` until every service answered.
    pub ready_after: Duration,
}

impl RunningStack {
    /// Stops what this call started and forgets it in the state file.
    pub fn stop_started(&mut self, state_dir: &std::path::Path) -> Result<()> {
        let started: Vec<ServiceName> = self.started.iter().map(|p| p.record.name).collect();
        for process in self.started.drain(..).rev() {
            process.stop(STOP_GRACE);
        }
        self.state.services.retain(|s| !started.contains(&s.name));
        if self.state.services.is_empty() {
            state::remove(state_dir)
        } else {
            state::write(state_dir, &self.state)
        }
    }
}

/// Which runtime `auto` means here, with the line that says why.
pub fn choose_runtime(settings: &Settings) -> Result<(RuntimeKind, Option<String>)> {
    match settings.runtime {
        RuntimeKind::Local => Ok((RuntimeKind::Local, None)),
        RuntimeKind::External => Ok((RuntimeKind::External, None)),
        RuntimeKind::Docker => bail!(
            "--runtime docker is not available in this version of inframock yet; use --runtime local (moto_server + redis-server) or --runtime external --endpoint-url URL"
        ),
        RuntimeKind::Auto => Ok((
            RuntimeKind::Local,
            Some("runtime auto: using local processes (moto_server, redis-server)".to_string()),
        )),
    }
}

/// Brings the stack up according to `settings`.
pub async fn bring_up(settings: &Settings, reporter: &Reporter) -> Result<RunningStack> {
    let began = Instant::now();
    let (runtime, why) = choose_runtime(settings)?;
    if let Some(why) = why {
        reporter.info(why);
    }
    let state_dir = settings.ensure_state_dir()?;
    if runtime == RuntimeKind::External {
        return bring_up_external(settings, reporter, began).await;
    }
    let previous = state::read(&state_dir)?;
    let mut records: Vec<ServiceRecord> = Vec::new();
    let mut reused = Vec::new();
    let mut to_start = Vec::new();
    for service in ServiceName::ALL {
        let recorded = previous
            .as_ref()
            .filter(|p| p.runtime == RuntimeKind::Local)
            .and_then(|p| p.service(service));
        match recorded {
            Some(record) if local::is_running(record) => {
                match probe_for(settings, service, &record.url).check().await {
                    Ok(()) => {
                        reporter.info(format!(
                            "{service}: reusing the running process (pid {}, port {})",
                            record.pid.unwrap_or(0),
                            record.port
                        ));
                        records.push(record.clone());
                        reused.push(service);
                    }
                    Err(reason) => bail!(
                        "{service} (pid {}, port {}) from an earlier `run` is alive but does not answer ({reason}); run `inframock stop` and start again",
                        record.pid.unwrap_or(0),
                        record.port
                    ),
                }
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
        let (explicit, wanted, flag) = match service {
            ServiceName::Aws => (
                settings.moto_server.as_deref(),
                settings.aws_port,
                "--aws-port",
            ),
            ServiceName::Redis => (
                settings.redis_server.as_deref(),
                settings.redis_port,
                "--redis-port",
            ),
        };
        let program = local::find_program(*service, explicit, &settings.project_dir)?;
        let port = ports::claim(wanted, flag)?;
        plans.push((*service, program, port));
    }
    let mut started = Vec::new();
    for (service, program, port) in plans {
        match local::spawn(service, &program, port, &state_dir) {
            Ok(process) => started.push(process),
            Err(e) => {
                stop_all(started);
                return Err(e);
            }
        }
    }
    if !started.is_empty() {
        let names: Vec<String> = started
            .iter()
            .map(|p| format!("{} on port {}", p.record.name, p.record.port))
            .collect();
        let step = reporter.step(format!("waiting for {}", names.join(", ")));
        let deadline = settings.ready_timeout;
        let waits = started.iter_mut().map(|process| {
            let service = process.record.name;
            let probe = probe_for(settings, service, &process.record.url);
            let hint = format!(
                "raise --ready-timeout (INFRAMOCK_READY_TIMEOUT) or read {}",
                process
                    .record
                    .log
                    .as_ref()
                    .map(|l| l.display().to_string())
                    .unwrap_or_default()
            );
            async move {
                wait_until_ready(service.as_str(), &probe, deadline, &hint, || {
                    process.check_alive()
                })
                .await
            }
        });
        let outcomes = join_all(waits).await;
        let failures: Vec<String> = outcomes
            .into_iter()
            .filter_map(|o| o.err().map(|e| e.to_string()))
            .collect();
        if !failures.is_empty() {
            step.fail("the stack did not become ready");
            stop_all(started);
            bail!("{}", failures.join("\n"));
        }
        step.done(format!("ready: {}", names.join(", ")));
    }
    records.extend(started.iter().map(|p| p.record.clone()));
    records.sort_by_key(|r| r.name);
    let state = StackState {
        project: settings.project_name.clone(),
        runtime: RuntimeKind::Local,
        started_at: previous
            .filter(|_| !reused.is_empty())
            .map(|p| p.started_at)
            .unwrap_or_else(now_seconds),
        region: settings.region.clone(),
        cluster_env: settings.cluster_env.clone(),
        services: records,
    };
    if let Err(e) = state::write(&state_dir, &state) {
        stop_all(started);
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
        let probe = probe_for(settings, service, &url);
        let hint = format!("check that {url} is reachable");
        match wait_until_ready(
            service.as_str(),
            &probe,
            settings.ready_timeout,
            &hint,
            || Ok(()),
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
            program: None,
            log: None,
        });
    }
    let state = StackState {
        project: settings.project_name.clone(),
        runtime: RuntimeKind::External,
        started_at: now_seconds(),
        region: settings.region.clone(),
        cluster_env: settings.cluster_env.clone(),
        services: records,
    };
    state::write(&settings.state_dir(), &state)?;
    Ok(RunningStack {
        state,
        started: Vec::new(),
        reused: Vec::new(),
        ready_after: began.elapsed(),
    })
}

/// The readiness probe of a service at a URL.
pub fn probe_for(settings: &Settings, service: ServiceName, url: &str) -> Probe {
    match service {
        ServiceName::Aws => Probe::Aws {
            endpoint: url.to_string(),
            region: settings.region.clone(),
            test_credentials: settings.runtime != RuntimeKind::External,
        },
        ServiceName::Redis => Probe::Redis {
            url: url.to_string(),
        },
    }
}

fn stop_all(started: Vec<StartedProcess>) {
    for process in started.into_iter().rev() {
        process.stop(STOP_GRACE);
    }
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
