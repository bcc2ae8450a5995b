//! The `docker` runtime, through the Docker Engine API (bollard): one network per project, one
//! container per service (LocalStack and Redis by default; any image through settings), every one
//! labelled `inframock.managed=true` and `inframock.project=<name>`, ports published on 127.0.0.1.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    ListNetworksOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use futures::future::BoxFuture;

use super::{Found, Runtime, Started, StopOutcome};
use crate::cli::RuntimeKind;
use crate::config::{ContainerSettings, Settings};
use crate::output::Reporter;
use crate::stack::state::ServiceRecord;
use crate::stack::ServiceName;

/// Label marking everything inframock created.
pub const LABEL_MANAGED: &str = "inframock.managed";
/// Label holding the project name.
pub const LABEL_PROJECT: &str = "inframock.project";
/// Label holding the service name.
pub const LABEL_SERVICE: &str = "inframock.service";
/// Exit code of LocalStack images after 4.14.0 started without `LOCALSTACK_AUTH_TOKEN`.
pub const LOCALSTACK_AUTH_EXIT: i64 = 55;

/// A connection to the Docker engine for one project.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: Docker,
    project: String,
}

/// Names usable in container and network names: `[a-zA-Z0-9_.-]`, lowercase.
pub fn sanitize(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches(|c| c == '-' || c == '.' || c == '_');
    if trimmed.is_empty() {
        "project".to_string()
    } else {
        trimmed.to_string()
    }
}

/// Where the engine is looked for, for messages.
pub fn engine_address() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string())
}

impl DockerRuntime {
    /// Connects to the engine (DOCKER_HOST, else the default socket) and checks it answers.
    pub async fn connect(project: &str) -> Result<DockerRuntime, String> {
        let docker = Docker::connect_with_defaults().map_err(|e| e.to_string())?;
        let docker = tokio::time::timeout(Duration::from_secs(3), docker.negotiate_version())
            .await
            .map_err(|_| "the engine did not answer within 3 s".to_string())?
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(Duration::from_secs(3), docker.ping())
            .await
            .map_err(|_| "the engine did not answer within 3 s".to_string())?
            .map_err(|e| e.to_string())?;
        Ok(DockerRuntime {
            docker,
            project: project.to_string(),
        })
    }

    /// `inframock-<project>`
    pub fn network_name(&self) -> String {
        format!("inframock-{}", sanitize(&self.project))
    }

    /// `inframock-<project>-<service>`
    pub fn container_name(&self, service: &ServiceName) -> String {
        format!("inframock-{}-{service}", sanitize(&self.project))
    }

    fn labels(&self, service: Option<&ServiceName>) -> HashMap<String, String> {
        let mut labels = HashMap::from([
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (LABEL_PROJECT.to_string(), self.project.clone()),
        ]);
        if let Some(service) = service {
            labels.insert(LABEL_SERVICE.to_string(), service.to_string());
        }
        labels
    }

    /// Whether an image is present locally.
    pub async fn image_present(&self, image: &str) -> bool {
        self.docker.inspect_image(image).await.is_ok()
    }

    /// Pulls an image, with a progress bar per layer on a TTY (one line per layer otherwise).
    pub async fn pull(&self, image: &str, interactive: bool) -> Result<()> {
        let (repository, tag) = split_image(image);
        let options = CreateImageOptionsBuilder::new()
            .from_image(repository)
            .tag(tag)
            .build();
        let mut stream = self.docker.create_image(Some(options), None, None);
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template(
            "{prefix:<14} {bar:30.cyan/blue} {bytes}/{total_bytes} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let mut bars: HashMap<String, ProgressBar> = HashMap::new();
        let mut announced: std::collections::HashSet<String> = Default::default();
        // Until the registry answers there is no layer to show: a spinner with the time waited so
        // far says the pull is under way (a slow registry otherwise looks like a hung terminal).
        let overall = interactive.then(|| {
            let spinner = multi.add(ProgressBar::new_spinner());
            spinner.set_style(
                ProgressStyle::with_template("{spinner:.cyan} pulling {msg} {elapsed:.dim}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            spinner.set_message(image.to_string());
            spinner.enable_steady_tick(Duration::from_millis(100));
            spinner
        });
        if !interactive {
            eprintln!("pulling {image} ...");
        }
        while let Some(event) = stream.next().await {
            let info = event.map_err(|e| anyhow!("pulling {image}: {}", engine_error(&e)))?;
            if let Some(detail) = info.error_detail.as_ref().and_then(|d| d.message.clone()) {
                return Err(anyhow!("pulling {image}: {detail}"));
            }
            let (Some(layer), Some(status)) = (info.id.clone(), info.status.clone()) else {
                continue;
            };
            if interactive {
                let bar = bars.entry(layer.clone()).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new(0));
                    bar.set_style(style.clone());
                    bar.set_prefix(layer.clone());
                    bar
                });
                if let Some(progress) = &info.progress_detail {
                    if let (Some(current), Some(total)) = (progress.current, progress.total) {
                        bar.set_length(total.max(0) as u64);
                        bar.set_position(current.max(0) as u64);
                    }
                }
                bar.set_message(status.clone());
                if status.starts_with("Pull complete") || status.starts_with("Already exists") {
                    bar.finish();
                }
            } else if (status.starts_with("Pull complete") || status.starts_with("Already exists"))
                && announced.insert(layer.clone())
            {
                eprintln!("  layer {layer}: {status}");
            }
        }
        for bar in bars.values() {
            bar.finish();
        }
        if let Some(spinner) = overall {
            spinner.finish_and_clear();
        }
        if !self.image_present(image).await {
            return Err(anyhow!(
                "pulling {image} finished but the image is not present"
            ));
        }
        Ok(())
    }

    /// Makes sure the project's network exists.
    pub async fn ensure_network(&self) -> Result<String> {
        let name = self.network_name();
        let filters = HashMap::from([("name".to_string(), vec![name.clone()])]);
        let existing = self
            .docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .context("listing Docker networks")?;
        if existing
            .iter()
            .any(|n| n.name.as_deref() == Some(name.as_str()))
        {
            return Ok(name);
        }
        self.docker
            .create_network(NetworkCreateRequest {
                name: name.clone(),
                labels: Some(self.labels(None)),
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating Docker network {name}"))?;
        Ok(name)
    }

    /// Removes the project's network (when no container uses it any more).
    pub async fn remove_network(&self) {
        let _ = self.docker.remove_network(&self.network_name()).await;
    }

    /// Our container of a service, if one exists: (id, running).
    pub async fn find_container(&self, service: &ServiceName) -> Result<Option<(String, bool)>> {
        let containers = self.list_ours(Some(service)).await?;
        Ok(containers.into_iter().next())
    }

    /// Ids and running state of this project's containers (of one service, or all).
    pub async fn list_ours(&self, service: Option<&ServiceName>) -> Result<Vec<(String, bool)>> {
        let mut label_filters = vec![
            format!("{LABEL_MANAGED}=true"),
            format!("{LABEL_PROJECT}={}", self.project),
        ];
        if let Some(service) = service {
            label_filters.push(format!("{LABEL_SERVICE}={service}"));
        }
        let filters = HashMap::from([("label".to_string(), label_filters)]);
        let containers = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .context("listing Docker containers")?;
        Ok(containers
            .into_iter()
            .filter_map(|c| {
                let running = c.state.as_ref().is_some_and(|s| s.to_string() == "running");
                c.id.map(|id| (id, running))
            })
            .collect())
    }

    /// Creates and starts a service's container; returns its record (host port read back).
    pub async fn start_container(
        &self,
        service: &ServiceName,
        container: &ContainerSettings,
        kind: &crate::stack::catalog::ServiceKind,
        host_port: u16,
        network: &str,
    ) -> Result<ServiceRecord> {
        let name = self.container_name(service);
        let port_key = format!("{}/tcp", container.container_port);
        let env: Vec<String> = container
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let bindings = HashMap::from([(
            port_key.clone(),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".to_string()),
                host_port: Some(if host_port == 0 {
                    String::new()
                } else {
                    host_port.to_string()
                }),
            }]),
        )]);
        let body = ContainerCreateBody {
            image: Some(container.image.clone()),
            env: Some(env),
            labels: Some(self.labels(Some(service))),
            exposed_ports: Some(vec![port_key.clone()]),
            host_config: Some(HostConfig {
                port_bindings: Some(bindings),
                network_mode: Some(network.to_string()),
                // `${host}` in declared resources (an SNS HTTP subscription to an API on this
                // machine) resolves from inside the container, on Linux too.
                extra_hosts: Some(vec!["host.docker.internal:host-gateway".to_string()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                body,
            )
            .await
            .map_err(|e| {
                anyhow!(
                    "creating container {name} from {}: {}",
                    container.image,
                    engine_error(&e)
                )
            })?;
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            self.remove(&created.id).await;
            return Err(anyhow!("starting container {name}: {}", engine_error(&e)));
        }
        let port = match self.published_port(&created.id, &port_key).await {
            Ok(port) => port,
            Err(e) => {
                // A container that exits at once has no published port any more: say why it exited.
                let reason = match self.check_alive(&created.id, service).await {
                    Err(exited) => exited,
                    Ok(()) => format!("{e:#}"),
                };
                self.remove(&created.id).await;
                return Err(anyhow!(reason));
            }
        };
        Ok(container_record(
            service,
            kind.url_at(port),
            port,
            &container.image,
            created.id,
        ))
    }

    /// The host port a container's port is published on (from inspect).
    pub async fn published_port(&self, id: &str, port_key: &str) -> Result<u16> {
        let inspected = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| anyhow!("inspecting container {id}: {}", engine_error(&e)))?;
        inspected
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|ports| ports.get(port_key).cloned().flatten())
            .and_then(|bindings| {
                bindings
                    .into_iter()
                    .find_map(|b| b.host_port.and_then(|p| p.parse::<u16>().ok()))
            })
            .ok_or_else(|| anyhow!("container {id} publishes no host port for {port_key}"))
    }

    /// `Ok` while the container runs; otherwise its exit code and last 20 log lines.
    pub async fn check_alive(&self, id: &str, service: &ServiceName) -> Result<(), String> {
        let inspected = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| format!("{service} container {id} is gone: {}", engine_error(&e)))?;
        let state = inspected.state.unwrap_or_default();
        if state.running == Some(true) {
            return Ok(());
        }
        let code = state.exit_code.unwrap_or(-1);
        let tail = self.log_tail(id, 20).await;
        let mut message = format!("{service} container exited while starting (exit code {code})");
        if code == LOCALSTACK_AUTH_EXIT {
            message.push_str(
                ": LocalStack images after 4.14.0 need an account; set LOCALSTACK_AUTH_TOKEN, or pin --aws-image localstack/localstack:4.14.0",
            );
        }
        if !tail.is_empty() {
            message.push_str("; last log lines:\n");
            message.push_str(
                &tail
                    .iter()
                    .map(|l| format!("    {l}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
        Err(message)
    }

    /// The last `lines` lines of a container's output.
    pub async fn log_tail(&self, id: &str, lines: usize) -> Vec<String> {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let mut stream = self.docker.logs(id, Some(options));
        let mut text = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        text.lines().map(str::to_string).collect()
    }

    /// Streams a container's output to stdout (following it with `follow`), each line prefixed.
    pub async fn print_logs(
        &self,
        id: &str,
        lines: usize,
        follow: bool,
        printer: super::LogPrinter<'_>,
    ) -> Result<()> {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .follow(follow)
            .tail(&lines.to_string())
            .build();
        let mut stream = self.docker.logs(id, Some(options));
        let mut pending = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| anyhow!("reading logs of {id}: {}", engine_error(&e)))?;
            pending.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            while let Some(end) = pending.find('\n') {
                let line: String = pending.drain(..=end).collect();
                printer.print(line.trim_end());
            }
        }
        if !pending.is_empty() {
            printer.print(&pending);
        }
        Ok(())
    }

    /// Stops (10 s grace) and removes a container.
    pub async fn remove(&self, id: &str) {
        let _ = self
            .docker
            .stop_container(id, Some(StopContainerOptionsBuilder::new().t(10).build()))
            .await;
        let _ = self
            .docker
            .remove_container(
                id,
                Some(
                    RemoveContainerOptionsBuilder::new()
                        .force(true)
                        .v(true)
                        .build(),
                ),
            )
            .await;
    }
}

impl Runtime for DockerRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Docker
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
            let image = &settings.service(&service).container.image;
            if image.is_empty() {
                return Err(anyhow!("{service} has no container image: set `image` of [services.{service}] in inframock.toml, or use --runtime local"));
            }
            if self.image_present(image).await {
                Ok(())
            } else {
                Err(anyhow!(
                    "image {image} of {service} is not present; pull or build it, or {}",
                    choose_image_hint(&service)
                ))
            }
        })
    }

    fn start<'a>(
        &'a self,
        settings: &'a Settings,
        service: ServiceName,
        port: u16,
    ) -> BoxFuture<'a, Result<Started>> {
        Box::pin(async move {
            let network = self.ensure_network().await?;
            let service_settings = settings.service(&service);
            let record = self
                .start_container(
                    &service,
                    &service_settings.container,
                    &service_settings.kind,
                    port,
                    &network,
                )
                .await?;
            Ok(Started::new(
                record,
                std::sync::Arc::new(self.clone()),
                None,
            ))
        })
    }

    fn find<'a>(
        &'a self,
        settings: &'a Settings,
        service: ServiceName,
        _recorded: Option<&'a ServiceRecord>,
    ) -> BoxFuture<'a, Result<Option<Found>>> {
        Box::pin(async move {
            // By label: also finds a container whose record was lost (a run killed while creating it).
            let Some((id, running)) = self.find_container(&service).await? else {
                return Ok(None);
            };
            let service_settings = settings.service(&service);
            let container = &service_settings.container;
            let port = if running {
                let port_key = format!("{}/tcp", container.container_port);
                self.published_port(&id, &port_key).await?
            } else {
                0
            };
            Ok(Some(Found {
                running,
                record: container_record(
                    &service,
                    service_settings.kind.url_at(port),
                    port,
                    &container.image,
                    id,
                ),
            }))
        })
    }

    fn is_alive<'a>(&'a self, record: &'a ServiceRecord) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let id = record.container.as_deref().unwrap_or_default();
            self.check_alive(id, &record.name).await
        })
    }

    fn stop<'a>(&'a self, record: &'a ServiceRecord) -> BoxFuture<'a, StopOutcome> {
        Box::pin(async move {
            let Some(id) = record.container.as_deref() else {
                return StopOutcome::AlreadyGone;
            };
            let existed = self.docker.inspect_container(id, None).await.is_ok();
            self.remove(id).await;
            if existed {
                StopOutcome::Stopped
            } else {
                StopOutcome::AlreadyGone
            }
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
            let id = record
                .container
                .as_deref()
                .ok_or_else(|| anyhow!("{} has no container recorded", record.name))?;
            self.print_logs(id, lines, follow, printer).await
        })
    }

    fn tidy(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // Engines have few address pools: never leave the network behind unused.
            if self.list_ours(None).await.is_ok_and(|c| c.is_empty()) {
                self.remove_network().await;
            }
        })
    }
}

impl DockerRuntime {
    /// Pulls the images of the stack's services that are not present (explicit `--runtime docker`).
    pub async fn pull_missing_images(
        &self,
        settings: &Settings,
        reporter: &Reporter,
    ) -> Result<()> {
        for service in settings.runtime_services() {
            let image = &settings.service(&service).container.image;
            if !image.is_empty() && !self.image_present(image).await {
                self.pull(image, reporter.interactive).await.with_context(|| {
                    format!("image {image} of {service} is not present and could not be pulled; pull or build it, or {}", choose_image_hint(&service))
                })?;
            }
        }
        Ok(())
    }

    /// For `auto`: `Ok` when every image is present or was pulled (each pull at most 10 minutes);
    /// otherwise the image that is missing and why it could not be pulled.
    pub async fn images_available(
        &self,
        settings: &Settings,
        reporter: &Reporter,
    ) -> std::result::Result<(), MissingImage> {
        for service in settings.runtime_services() {
            let image = &settings.service(&service).container.image;
            if image.is_empty() || self.image_present(image).await {
                continue;
            }
            let pulled = tokio::time::timeout(
                Duration::from_secs(600),
                self.pull(image, reporter.interactive),
            )
            .await;
            let reason = match pulled {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => format!("{e:#}"),
                Err(_) => "the pull took longer than 10 minutes".to_string(),
            };
            return Err(MissingImage {
                image: image.clone(),
                reason,
            });
        }
        Ok(())
    }
}

/// An image the docker runtime needs that is not present and could not be pulled.
#[derive(Debug)]
pub struct MissingImage {
    pub image: String,
    /// Why the pull failed.
    pub reason: String,
}

/// The record of a service's container published on `port` of 127.0.0.1.
fn container_record(
    service: &ServiceName,
    url: String,
    port: u16,
    image: &str,
    id: String,
) -> ServiceRecord {
    ServiceRecord {
        name: service.clone(),
        runtime: RuntimeKind::Docker,
        port,
        url,
        pid: None,
        started: None,
        program: Some(image.to_string()),
        log: None,
        container: Some(id),
        kind: None,
    }
}

/// How to name another image for a service: its flag, or `image` of its section.
fn choose_image_hint(service: &ServiceName) -> String {
    match service {
        ServiceName::Aws | ServiceName::Redis => format!("choose another with --{service}-image"),
        other => format!("set `image` of [services.{other}] in inframock.toml"),
    }
}

/// `repo:tag` (tag default `latest`; a registry port is not a tag).
pub fn split_image(image: &str) -> (&str, &str) {
    let last_segment_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_segment_start..].rfind(':') {
        Some(colon) => {
            let at = last_segment_start + colon;
            (&image[..at], &image[at + 1..])
        }
        None => (image, "latest"),
    }
}

fn engine_error(error: &bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_split_into_repository_and_tag() {
        assert_eq!(split_image("redis:7-alpine"), ("redis", "7-alpine"));
        assert_eq!(
            split_image("localstack/localstack:4.14.0"),
            ("localstack/localstack", "4.14.0")
        );
        assert_eq!(split_image("redis"), ("redis", "latest"));
        assert_eq!(
            split_image("127.0.0.1:5000/x/redis:t"),
            ("127.0.0.1:5000/x/redis", "t")
        );
        assert_eq!(
            split_image("127.0.0.1:5000/x/redis"),
            ("127.0.0.1:5000/x/redis", "latest")
        );
    }

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize("My Project"), "my-project");
        assert_eq!(sanitize("inframock-test-AbC"), "inframock-test-abc");
        assert_eq!(sanitize("..."), "project");
    }
}
