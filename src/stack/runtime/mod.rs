//! Where services run: one [`Runtime`] trait and its three implementations — `local` (processes
//! on this machine), `docker` (labelled containers on a project network) and `external` (an
//! endpoint that already runs elsewhere). The lifecycle (`super::up`, `super::lifecycle`) only
//! speaks to this trait, so adding a runtime touches this folder and nothing else.

pub mod choice;
pub mod docker;
pub mod external;
pub mod local;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::future::BoxFuture;

use self::choice::RuntimeChoice;
use self::docker::{engine_address, DockerRuntime};
use self::external::ExternalRuntime;
use self::local::{LocalRuntime, StartedProcess};
use super::state::ServiceRecord;
use super::ServiceName;
use crate::cli::RuntimeKind;
use crate::config::Settings;
use crate::output::Reporter;

/// Grace period between TERM and KILL (or a container's stop timeout) when stopping a service.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// What stopping a recorded service found.
#[derive(Debug, PartialEq, Eq)]
pub enum StopOutcome {
    Stopped,
    AlreadyGone,
}

/// A service instance a runtime found for this project.
#[derive(Debug, Clone)]
pub struct Found {
    pub record: ServiceRecord,
    /// It runs (a container may exist stopped; a recorded process may be gone).
    pub running: bool,
}

/// Starts, finds, watches, stops and shows the logs of one service at a time.
pub trait Runtime: Send + Sync {
    /// Which runtime this is (recorded in the state file).
    fn kind(&self) -> RuntimeKind;

    /// The services this runtime provides for these settings (an external runtime has Redis only
    /// when a Redis URL is given).
    fn services(&self, settings: &Settings) -> Vec<ServiceName>;

    /// Checks, before anything starts, that `service` can be started (its program is installed,
    /// its image is present), so a stack never starts half-way.
    fn prepare<'a>(
        &'a self,
        settings: &'a Settings,
        service: ServiceName,
    ) -> BoxFuture<'a, Result<()>>;

    /// Starts `service` on `port` of 127.0.0.1 (0: any free port). The caller records it at once,
    /// before it is ready.
    fn start<'a>(
        &'a self,
        settings: &'a Settings,
        service: ServiceName,
        port: u16,
    ) -> BoxFuture<'a, Result<Started>>;

    /// This project's instance of `service`, if one exists (`recorded` is what the state file says).
    fn find<'a>(
        &'a self,
        settings: &'a Settings,
        service: ServiceName,
        recorded: Option<&'a ServiceRecord>,
    ) -> BoxFuture<'a, Result<Option<Found>>>;

    /// `Ok` while the recorded service runs; otherwise why not (exit status, last log lines).
    fn is_alive<'a>(&'a self, record: &'a ServiceRecord) -> BoxFuture<'a, Result<(), String>>;

    /// Stops a recorded service (and removes its container).
    fn stop<'a>(&'a self, record: &'a ServiceRecord) -> BoxFuture<'a, StopOutcome>;

    /// Prints the last `lines` lines of a service's log through `printer`; with `follow`, keeps
    /// printing until Ctrl-C.
    fn logs<'a>(
        &'a self,
        record: &'a ServiceRecord,
        lines: usize,
        follow: bool,
        printer: LogPrinter<'a>,
    ) -> BoxFuture<'a, Result<()>>;

    /// Removes what the runtime keeps for the whole stack (the docker network) once none of this
    /// project's services runs in it.
    fn tidy(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// A service this invocation started: stopped again on failure or Ctrl-C, or left running.
pub struct Started {
    pub record: ServiceRecord,
    runtime: Arc<dyn Runtime>,
    /// The child process (local runtime): watched for its exit status while we wait, and stopped
    /// if this value is dropped before it was settled.
    process: Option<StartedProcess>,
}

impl Started {
    /// A started service and the runtime that started it.
    pub fn new(
        record: ServiceRecord,
        runtime: Arc<dyn Runtime>,
        process: Option<StartedProcess>,
    ) -> Started {
        Started {
            record,
            runtime,
            process,
        }
    }

    /// The service's record.
    pub fn record(&self) -> &ServiceRecord {
        &self.record
    }

    /// `Ok` while it runs; otherwise why not.
    pub async fn check_alive(&mut self) -> Result<(), String> {
        match &mut self.process {
            Some(process) => process.check_alive(),
            None => self.runtime.is_alive(&self.record).await,
        }
    }

    /// Lets it run on after this invocation ends (`run --detach`).
    pub fn keep_running(self) {
        if let Some(process) = self.process {
            process.keep_running();
        }
    }

    /// Stops it (and removes a container).
    pub async fn stop(self) {
        match self.process {
            Some(process) => process.stop(STOP_GRACE),
            None => {
                self.runtime.stop(&self.record).await;
            }
        }
    }
}

/// The runtime of a new `run`: the chosen one, or for `auto` docker when an engine answers and the
/// images are present or can be pulled, otherwise local, saying why in one line. An explicit
/// `docker` never falls back.
pub async fn choose(settings: &Settings, reporter: &Reporter) -> Result<Arc<dyn Runtime>> {
    match settings.runtime {
        RuntimeKind::Local => Ok(Arc::new(LocalRuntime)),
        RuntimeKind::External => Ok(Arc::new(ExternalRuntime)),
        RuntimeKind::Docker => {
            let docker = connect_docker(&settings.project_name).await?;
            let settings = settings.for_runtime(RuntimeKind::Docker);
            docker.pull_missing_images(&settings, reporter).await?;
            Ok(Arc::new(docker))
        }
        RuntimeKind::Auto => choose_auto(settings, reporter).await,
    }
}

/// `--runtime auto`: the runtime of this project's stack when it runs (nothing is pulled to reuse
/// it); else docker when an engine answers and the images are present or can be pulled; else
/// local, saying why. The choice is remembered (`choice.rs`), so an image that could not be pulled
/// is not waited for again on every run.
async fn choose_auto(settings: &Settings, reporter: &Reporter) -> Result<Arc<dyn Runtime>> {
    let state_dir = settings.state_dir();
    if let Some(running) = running_stack_runtime(&state_dir).await {
        reporter.info(format!(
            "runtime auto: this project's stack runs on the {running} runtime; reusing it"
        ));
        return match running {
            RuntimeKind::Docker => Ok(Arc::new(connect_docker(&settings.project_name).await?)),
            _ => Ok(Arc::new(LocalRuntime)),
        };
    }
    let docker_settings = settings.for_runtime(RuntimeKind::Docker);
    let images: Vec<String> = docker_settings
        .runtime_services()
        .iter()
        .map(|service| docker_settings.service(service).container.image.clone())
        .filter(|image| !image.is_empty())
        .collect();
    let now = super::up::now_seconds();
    let remember = |runtime: RuntimeKind, reason: String, unpullable: Option<String>| {
        choice::write(
            &state_dir,
            &RuntimeChoice {
                runtime,
                reason,
                images: images.clone(),
                unpullable,
                chosen_at: now,
            },
        )
    };
    let docker = match DockerRuntime::connect(&settings.project_name).await {
        Ok(docker) => docker,
        Err(e) => {
            let reason = format!("no Docker engine answers at {} ({e})", engine_address());
            reporter.info(format!("runtime auto: {reason}; using local processes"));
            remember(RuntimeKind::Local, reason, None);
            return Ok(Arc::new(LocalRuntime));
        }
    };
    if let Some(last) = choice::read(&state_dir) {
        if let Some(image) = last.still_unpullable(&images, now) {
            if !docker.image_present(image).await {
                reporter.info(format!(
                    "runtime auto: using local processes, as on the last run {}: image {image} could not be pulled then (`--runtime docker` tries again now; auto tries again after {})",
                    crate::output::human_age(now.saturating_sub(last.chosen_at)),
                    crate::output::human_duration(choice::RETRY_PULL_AFTER),
                ));
                return Ok(Arc::new(LocalRuntime));
            }
        }
    }
    match docker.images_available(&docker_settings, reporter).await {
        Ok(()) => {
            reporter.info("runtime auto: using Docker containers");
            remember(RuntimeKind::Docker, "the images are present".into(), None);
            Ok(Arc::new(docker))
        }
        Err(missing) => {
            let reason = format!(
                "image {} is not present and could not be pulled ({})",
                missing.image, missing.reason
            );
            reporter.info(format!(
                "runtime auto: the Docker engine answers but {reason}; using local processes"
            ));
            remember(RuntimeKind::Local, reason, Some(missing.image));
            Ok(Arc::new(LocalRuntime))
        }
    }
}

/// The runtime of this project's recorded stack when one of its services still runs.
async fn running_stack_runtime(state_dir: &std::path::Path) -> Option<RuntimeKind> {
    let stack = super::state::read(state_dir).ok()??;
    if !matches!(stack.runtime, RuntimeKind::Docker | RuntimeKind::Local) {
        return None;
    }
    for record in stack.services.iter().filter(|r| r.runtime == stack.runtime) {
        if is_running(record, &stack.project).await {
            return Some(stack.runtime);
        }
    }
    None
}

/// The runtime that started a recorded stack (for `stop`, `status`, `logs`).
pub async fn of_recorded(kind: RuntimeKind, project: &str) -> Result<Arc<dyn Runtime>> {
    match kind {
        RuntimeKind::Docker => Ok(Arc::new(connect_docker(project).await?)),
        RuntimeKind::External => Ok(Arc::new(ExternalRuntime)),
        RuntimeKind::Local | RuntimeKind::Auto => Ok(Arc::new(LocalRuntime)),
    }
}

/// Whether a recorded service still runs, asked of the runtime that runs it (our own helpers are
/// local processes in every runtime); a runtime that cannot be reached counts as not running.
pub async fn is_running(record: &ServiceRecord, project: &str) -> bool {
    match of_recorded(record.runtime, project).await {
        Ok(runtime) => runtime.is_alive(record).await.is_ok(),
        Err(_) => false,
    }
}

async fn connect_docker(project: &str) -> Result<DockerRuntime> {
    DockerRuntime::connect(project).await.map_err(|e| {
        anyhow::anyhow!(
            "no Docker engine answers at {} ({e}); start Docker (or set DOCKER_HOST), or use --runtime local",
            engine_address()
        )
    })
}

/// The port in a URL (`http://host:4566/x` → 4566).
pub fn port_of(url: &str) -> Option<u16> {
    let rest = url.split("://").nth(1)?;
    let host_port = rest.split('/').next()?;
    host_port.rsplit(':').next()?.parse().ok()
}

/// How a service instance is named in messages: "pid N", "container ID" or "external".
pub fn describe(record: &ServiceRecord) -> String {
    match (&record.pid, &record.container) {
        (Some(pid), _) => format!("pid {pid}"),
        (None, Some(id)) => format!("container {}", &id[..12.min(id.len())]),
        _ => "external".to_string(),
    }
}

/// The error for a service a runtime cannot provide.
fn unsupported(runtime: RuntimeKind, service: &ServiceName) -> anyhow::Error {
    anyhow::anyhow!("the {runtime} runtime does not start {service}")
}

/// The URL of a service of an external stack, from the settings.
pub fn external_url(settings: &Settings, service: &ServiceName) -> Result<String> {
    match service {
        ServiceName::Aws => settings
            .endpoint_url
            .clone()
            .context("--runtime external needs --endpoint-url URL (or INFRAMOCK_ENDPOINT_URL)"),
        ServiceName::Redis => settings
            .redis_url
            .clone()
            .context("--runtime external has Redis only with --redis-url URL"),
        other => Err(unsupported(RuntimeKind::External, other)),
    }
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

/// How `inframock logs` prints a line: as it is, after `service |` when several services are
/// shown, or with `--json` as a JSON line `{"service", "line"}` (a stream: one document a line).
#[derive(Debug, Clone, Copy)]
pub struct LogPrinter<'a> {
    pub service: &'a str,
    /// Prefix lines with the service (several services are shown).
    pub prefix: bool,
    pub json: bool,
}

impl LogPrinter<'_> {
    /// Prints one line (without its line ending).
    pub fn print(&self, line: &str) {
        if self.json {
            outln!(
                "{}",
                serde_json::json!({"service": self.service, "line": line})
            );
        } else if self.prefix {
            outln!("{:<5} | {line}", self.service);
        } else {
            outln!("{line}");
        }
    }
}
