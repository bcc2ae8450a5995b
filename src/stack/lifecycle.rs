//! The stack's lifecycle: the only code that brings the stack to its declared state or takes it
//! down. `run`, `stop`, `reset`, the harakiri monitor and Ctrl-C all go through here, each while
//! holding the project lock (see [`super::lock`]).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use super::helpers::ensure_queue_worker;
use super::runtime::docker::{engine_address, DockerRuntime};
use super::runtime::{self, describe, Runtime, StopOutcome};
use super::state::{self, StackState};
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
    let step = reporter.step("creating declared resources");
    let ensured = match ensure_all(clients, &settings.stack, &settings.name_vars()).await {
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
    /// How the engine's state was wiped (`moto-api/reset`, `_localstack/state/reset`).
    pub aws: String,
    /// Redis was flushed.
    pub redis: bool,
    /// The mock server's expectations, journal and scenario went back to its mocks folder.
    pub mock: bool,
    /// Every fault was cleared.
    pub faults: bool,
}

/// Wipes the running stack's state without restarting anything: the engine's state (its own
/// reset call), Redis (FLUSHALL), the mock server and the faults. The caller then ensures the
/// declared resources and loads the data again. Never done to an external endpoint.
pub async fn wipe(recorded: &StackState) -> Result<Wiped> {
    if recorded.runtime == RuntimeKind::External {
        bail!(
            "reset wipes the engine's state and this stack is an external endpoint (shared, or real AWS): nothing was wiped; reset it by its own means, then `inframock reload-data`"
        );
    }
    let aws = recorded
        .service(ServiceName::Aws)
        .context("the recorded stack has no aws service; run `inframock run` again")?;
    let timeout = Duration::from_secs(30);
    let mut how = None;
    for path in ["/moto-api/reset", "/_localstack/state/reset"] {
        let status = crate::http_client::post_empty(&format!("{}{path}", aws.url), timeout).await?;
        match status {
            Some(status) if status.is_success() => {
                how = Some(path.trim_start_matches('/').to_string());
                break;
            }
            Some(_) => continue,
            None => bail!(
                "the AWS endpoint {} did not answer {path} within {} s; is it running? (`inframock status`)",
                aws.url,
                timeout.as_secs()
            ),
        }
    }
    let aws_how = how.with_context(|| {
        format!(
            "the AWS engine at {} has no reset call (neither moto's /moto-api/reset nor LocalStack's /_localstack/state/reset answered); use `inframock run --fresh` to start it anew",
            aws.url
        )
    })?;
    let redis = match recorded.service(ServiceName::Redis) {
        Some(redis) => {
            flush_redis(&redis.url).await?;
            true
        }
        None => false,
    };
    let mut mock = false;
    if let Some(record) = recorded.service(ServiceName::Mock) {
        let url = format!("{}/mocker/reset", record.url);
        mock = matches!(crate::http_client::post_empty(&url, timeout).await?, Some(s) if s.is_success());
    }
    let mut faults = false;
    if let Some(record) = recorded.service(ServiceName::Faults) {
        let reset = crate::http_client::get_json(&record.url, "", "/mock/reset").await;
        faults = reset.is_ok();
    }
    Ok(Wiped {
        aws: aws_how,
        redis,
        mock,
        faults,
    })
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
    let reused = recorded.services.iter().map(|r| r.name).collect();
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
