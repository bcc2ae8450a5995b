//! The stack's lifecycle: the only code that brings the stack to its declared state or takes it
//! down. `run`, `stop`, `reset`, the harakiri monitor and Ctrl-C all go through here, each while
//! holding the project lock (see [`super::lock`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use super::catalog::{self, ResetSpec, ServiceKind};
use super::helpers::ensure_queue_worker;
use super::readiness::{self, Step, StepState};
use super::runtime::docker::{engine_address, DockerRuntime};
use super::runtime::{self, describe, Runtime, StopOutcome};
use super::state::{self, ServiceRecord, StackState};
use super::up::RunningStack;
use super::ServiceName;
use crate::aws::{AwsClients, Endpoint};
use crate::cli::RuntimeKind;
use crate::config::Settings;
use crate::output::Reporter;
use crate::resources::{ensure_all, Ensured};

/// What `down` did.
#[derive(Debug, Default, Serialize)]
pub struct Down {
    /// Services (processes) and containers stopped.
    pub stopped: Vec<String>,
    /// Recorded services that had already exited.
    pub already_gone: Vec<String>,
    /// The recorded stack was an external endpoint: nothing of it was started here.
    #[serde(skip)]
    pub external: bool,
    /// Nothing was recorded and nothing of this project was found.
    #[serde(skip)]
    pub nothing: bool,
}

/// Stops exactly what this project started: the recorded services (a process only when its PID
/// and start time still match), and every container labelled with this project (even without a
/// record). Works from the recorded state alone, so a broken `inframock.toml` never prevents it.
pub async fn down(settings: &Settings, reporter: &Reporter) -> Result<Down> {
    let state_dir = settings.state_dir();
    let recorded = state::read(&state_dir)?;
    // Containers carry the project name of the run that made them.
    let project = recorded
        .as_ref()
        .map(|s| s.project.clone())
        .unwrap_or_else(|| settings.project_name.clone());
    let mut down = Down::default();
    let kind = recorded.as_ref().map(|s| s.runtime);
    down.external = kind == Some(RuntimeKind::External);
    // Helpers first (they point at the services), then the services, in reverse start order.
    for record in recorded.iter().flat_map(|s| s.services.iter().rev()) {
        let runtime = runtime::of_recorded(record.runtime, &project).await?;
        let outcome = runtime.stop(record).await;
        if record.runtime == RuntimeKind::External {
            continue;
        }
        let what = format!("{} ({})", record.name, describe(record));
        match outcome {
            StopOutcome::Stopped => {
                reporter.info(format!("stopped {what}"));
                down.stopped.push(record.name.to_string());
            }
            StopOutcome::AlreadyGone => {
                reporter.info(format!(
                    "{what} had already exited; its record is cleaned up"
                ));
                down.already_gone.push(record.name.to_string());
            }
        }
    }
    // Containers of this project that no record names (a run killed while creating them).
    let labelled = match kind {
        Some(RuntimeKind::Docker) => Some(
            DockerRuntime::connect(&project)
                .await
                .map_err(|e| anyhow!("cannot stop the containers: no Docker engine answers at {} ({e}); start Docker and run `inframock stop` again", engine_address()))?,
        ),
        None => DockerRuntime::connect(&project).await.ok(),
        Some(_) => None,
    };
    if let Some(docker) = labelled {
        for (id, _) in docker.list_ours(None).await? {
            docker.remove(&id).await;
            reporter.info(format!("removed container {}", &id[..12.min(id.len())]));
            down.stopped.push(id);
        }
        docker.tidy().await;
    }
    down.nothing = recorded.is_none() && down.stopped.is_empty();
    state::remove(&state_dir)?;
    Ok(down)
}

/// Everything after the services answer: declared resources, then the queue tails and bridges
/// (whose queues need the resources). Returns what was ensured; on failure the caller stops what
/// it started.
pub async fn ensure_declared(
    settings: &Settings,
    reporter: &Reporter,
    clients: &AwsClients,
    stack: &mut RunningStack,
) -> Result<Vec<Ensured>> {
    let state_dir = settings.state_dir();
    readiness::mark(&state_dir, Step::Resources, StepState::Running, None);
    let result = ensure_resources_and_queues(settings, reporter, clients, stack).await;
    match &result {
        Ok(ensured) => readiness::mark(
            &state_dir,
            Step::Resources,
            StepState::Done,
            Some(crate::resources::summary(ensured)),
        ),
        Err(e) => readiness::mark(
            &state_dir,
            Step::Resources,
            StepState::Failed,
            Some(format!("{e:#}")),
        ),
    }
    result
}

async fn ensure_resources_and_queues(
    settings: &Settings,
    reporter: &Reporter,
    clients: &AwsClients,
    stack: &mut RunningStack,
) -> Result<Vec<Ensured>> {
    let step = reporter.step("creating declared resources");
    let vars = settings.resource_vars(stack.state.runtime);
    let ensured = match ensure_all(clients, &settings.stack, &vars).await {
        Ok(ensured) => {
            step.done(crate::resources::summary(&ensured));
            ensured
        }
        Err(e) => {
            step.fail("resources could not be created");
            return Err(e.context(format!("at the AWS endpoint {}", clients.url)));
        }
    };
    let wants_queues = crate::queues::worker::any_declared(settings);
    if wants_queues {
        let step = reporter.step("preparing queue tails and bridges");
        match crate::queues::worker::prepare(settings, clients).await {
            Ok((tails, bridges)) => step.done(format!(
                "{} tail(s), {} bridge(s) ready",
                tails.len(),
                bridges.len()
            )),
            Err(e) => {
                step.fail("queue tails and bridges could not be prepared");
                return Err(e);
            }
        }
    }
    ensure_queue_worker(settings, reporter, wants_queues, stack).await?;
    Ok(ensured)
}

/// Tables that `ensure_all` created in this call: their items must be written whatever a record
/// says, since a new table is empty.
pub fn created_tables(ensured: &[Ensured]) -> BTreeSet<String> {
    ensured
        .iter()
        .filter(|e| e.kind == "table" && e.created)
        .map(|e| e.name.clone())
        .collect()
}

/// What `reset` wiped.
#[derive(Debug, Serialize)]
pub struct Wiped {
    /// How each service's state was wiped (`aws`: `moto-api/reset`; `redis`: `FLUSHALL`; ...).
    #[serde(flatten)]
    pub services: BTreeMap<String, String>,
    /// Services whose kind keeps its state through `reset`, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<String>,
    /// The mock server's expectations, journal and scenario went back to its mocks folder.
    pub mock: bool,
    /// Every fault was cleared.
    pub faults: bool,
}

/// Wipes the running stack's state without restarting anything: each service as its kind says
/// (the AWS engine's reset call, Redis FLUSHALL, memcached flush_all), the mock server and the
/// faults. The caller then ensures the declared resources and loads the data again. Never done to
/// an external endpoint.
pub async fn wipe(settings: &Settings, recorded: &StackState) -> Result<Wiped> {
    if recorded.runtime == RuntimeKind::External {
        bail!(
            "reset wipes the engine's state and this stack is an external endpoint (shared, or real AWS): nothing was wiped; reset it by its own means, then `inframock reload-data`"
        );
    }
    if recorded.service(&ServiceName::Aws).is_none() {
        bail!("the recorded stack has no aws service; run `inframock run` again");
    }
    let timeout = Duration::from_secs(30);
    let mut wiped = Wiped {
        services: BTreeMap::new(),
        kept: Vec::new(),
        mock: false,
        faults: false,
    };
    for record in recorded.services.iter().filter(|r| !r.name.is_helper()) {
        let kind = kind_of(settings, record);
        let how = match &kind.reset {
            ResetSpec::HttpPost(path) => {
                let url = format!("{}{path}", record.url);
                match crate::http_client::post_empty(&url, timeout).await? {
                    Some(status) if status.is_success() => path.trim_start_matches('/').to_string(),
                    Some(status) => bail!(
                        "{} ({}) answered {status} to POST {path}: its state was not wiped; use `inframock run --fresh` to start it anew",
                        record.name,
                        kind.id
                    ),
                    None => bail!(
                        "{} ({}) at {} did not answer POST {path} within {} s; is it running? (`inframock status`)",
                        record.name,
                        kind.id,
                        record.url,
                        timeout.as_secs()
                    ),
                }
            }
            ResetSpec::RedisFlushAll => {
                flush_redis(&record.url).await?;
                "FLUSHALL".to_string()
            }
            ResetSpec::TcpLine(line) => {
                tcp_line(&record.name, record.port, line, timeout).await?;
                line.clone()
            }
            ResetSpec::Keeps => {
                if record.name == ServiceName::Aws {
                    bail!(
                        "the AWS engine {} has no reset call; use `inframock run --fresh` to start it anew",
                        kind.id
                    );
                }
                wiped.kept.push(format!(
                    "{} ({}) keeps its state through reset; `inframock run --fresh` starts it anew",
                    record.name, kind.id
                ));
                continue;
            }
        };
        wiped.services.insert(record.name.to_string(), how);
    }
    if let Some(record) = recorded.service(&ServiceName::Mock) {
        let url = format!("{}/mocker/reset", record.url);
        wiped.mock = matches!(crate::http_client::post_empty(&url, timeout).await?, Some(s) if s.is_success());
    }
    if let Some(record) = recorded.service(&ServiceName::Faults) {
        let reset = crate::http_client::get_json(&record.url, "", "/mock/reset").await;
        wiped.faults = reset.is_ok();
    }
    Ok(wiped)
}

/// The kind a recorded service runs: the recorded one (the stack file may have changed since),
/// else the settings'.
pub fn kind_of(settings: &Settings, record: &ServiceRecord) -> ServiceKind {
    let configured = &settings.service(&record.name).kind;
    if record.kind.as_ref().is_none_or(|id| *id == configured.id) {
        return configured.clone();
    }
    let recorded = record.kind.as_deref().and_then(|id| {
        if record.name == ServiceName::Aws {
            catalog::engine(id)
        } else {
            catalog::preset(id)
        }
    });
    recorded.unwrap_or_else(|| configured.clone())
}

/// Sends one line over TCP to 127.0.0.1:`port` and expects an answer starting with `OK`.
async fn tcp_line(service: &ServiceName, port: u16, line: &str, timeout: Duration) -> Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(format!("{line}\r\n").as_bytes()).await?;
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer).await?;
        Ok::<String, std::io::Error>(answer)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(answer)) if answer.starts_with("OK") => Ok(()),
        Ok(Ok(answer)) => bail!("{service} answered {:?} to {line}", answer.trim()),
        Ok(Err(e)) => bail!("{service} on port {port}: {line} failed: {e}"),
        Err(_) => bail!(
            "{service} on port {port} did not answer {line} within {} s",
            timeout.as_secs()
        ),
    }
}

async fn flush_redis(url: &str) -> Result<()> {
    let client = redis::Client::open(url).with_context(|| format!("bad Redis URL {url}"))?;
    let flush = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("FLUSHALL")
            .query_async::<String>(&mut connection)
            .await
    };
    match tokio::time::timeout(Duration::from_secs(30), flush).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => bail!("FLUSHALL on Redis at {url} failed: {e}"),
        Err(_) => bail!("Redis at {url} did not answer FLUSHALL within 30 s"),
    }
}

/// The running stack as recorded, for commands that act on it without starting anything.
pub async fn running_stack(settings: &Settings) -> Result<RunningStack> {
    let recorded = state::read(&settings.state_dir())?.with_context(|| {
        format!(
            "no stack is running for this project ({}); start it with `inframock run --detach`",
            settings.project_dir.display()
        )
    })?;
    let runtime = runtime::of_recorded(recorded.runtime, &recorded.project).await?;
    let mut dead = Vec::new();
    for record in &recorded.services {
        if !runtime::is_running(record, &recorded.project).await {
            dead.push(record.name.to_string());
        }
    }
    if !dead.is_empty() {
        bail!(
            "the recorded stack is not running ({} exited); run `inframock stop` then `inframock run`",
            dead.join(", ")
        );
    }
    let reused = recorded.services.iter().map(|r| r.name.clone()).collect();
    Ok(RunningStack {
        state: recorded,
        runtime,
        started: Vec::new(),
        reused,
        ready_after: Duration::ZERO,
    })
}

/// The AWS endpoint of a running stack.
pub fn endpoint_of(settings: &Settings, stack: &RunningStack) -> Result<Endpoint> {
    Endpoint::resolve(settings, Some(&stack.state))
}
