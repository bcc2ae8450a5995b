//! Resolved settings: flags > environment variables > `inframock.toml` > defaults, built once and
//! passed down to every command.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cli::{GlobalArgs, RuntimeKind};
use crate::stack::{catalog, ServiceName};
use crate::stack_file::{NameVars, StackFile};

/// Default AWS edge port, as LocalStack's.
pub const DEFAULT_AWS_PORT: u16 = 4566;
/// Default Redis port.
pub const DEFAULT_REDIS_PORT: u16 = 6379;
/// Default region of the original tool.
pub const DEFAULT_REGION: &str = "eu-west-1";
/// Default environment suffix of the original tool.
pub const DEFAULT_CLUSTER_ENV: &str = "development";
/// Account id every local endpoint uses (LocalStack's; moto is told with MOTO_ACCOUNT_ID).
pub const LOCAL_ACCOUNT_ID: &str = "000000000000";
/// Default readiness deadline.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Folder, inside the project, holding state, logs and recorded data.
pub const STATE_DIR_NAME: &str = ".inframock";

/// Default time one AWS operation may take (all its attempts) before it fails naming the endpoint.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a command needs to know, resolved once.
#[derive(Debug, Clone)]
pub struct Settings {
    pub project_dir: PathBuf,
    pub project_name: String,
    pub stack: StackFile,
    /// Where the stack file came from (a path, or "built-in inframock.toml").
    pub stack_origin: String,
    /// Why the project's stack file could not be used (only for the commands that work from the
    /// recorded state alone: `stop`, `status`, `env`, `logs`); `None` when it parsed.
    pub stack_error: Option<String>,
    pub runtime: RuntimeKind,
    /// How each service is set up: one entry for every [`ServiceName`].
    pub services: BTreeMap<ServiceName, ServiceSettings>,
    /// The aws service of the docker runtime when no engine is named: LocalStack, the docker
    /// runtime's engine before engines could be chosen (the local runtime's default is moto).
    pub docker_default_aws: Option<ServiceSettings>,
    pub region: String,
    pub cluster_env: String,
    pub account: String,
    pub data_path: PathBuf,
    /// Whether the data folder was named (--data, BIOMAGE_DATA_PATH): then it must exist; the
    /// default `data/` may be absent (nothing to load).
    pub data_named: bool,
    pub populate: bool,
    pub endpoint_url: Option<String>,
    pub redis_url: Option<String>,
    pub ready_timeout: Duration,
    /// Longest time one AWS operation (all retries) may take.
    pub operation_timeout: Duration,
    /// Run Python helpers unconfined where the kernel cannot confine them (`--unsafe-handlers`).
    pub unsafe_handlers: bool,
    pub json: bool,
    /// The mock server's own settings (`[services.mock]`, `--mock-port`).
    pub mock: MockSettings,
    /// `run` starts the dashboard (`[services.dashboard] enabled`).
    pub dashboard_enabled: bool,
    /// Where the dashboard listens (`[services.dashboard] bind`, default 127.0.0.1).
    pub dashboard_bind: std::net::IpAddr,
    /// Where each flag given a value got it (`cli::value_sources`): `flag --x` or `env NAME`.
    pub sources: BTreeMap<String, String>,
}

/// How one service of the stack is set up.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSettings {
    /// Port on 127.0.0.1 (0 = a free one; for docker, the engine picks).
    pub port: u16,
    /// The flag (or stack file field) that sets `port`, named in errors about it.
    pub port_flag: String,
    /// Executable of the local runtime (`--moto-server`, `--redis-server`); `None` = look it up.
    pub program: Option<PathBuf>,
    /// Environment of its local process (a declared service's `env`).
    pub env: Vec<(String, String)>,
    /// What kind of service it is: how it starts, answers, resets (`stack::catalog`).
    pub kind: catalog::ServiceKind,
    /// How it runs as a container (docker runtime).
    pub container: ContainerSettings,
    /// Port of its fault proxy when `faults = true` (0 = a free one).
    pub fault_proxy: Option<u16>,
}

/// Default control port of the fault proxies (Toxiproxy's API port).
pub const DEFAULT_FAULTS_PORT: u16 = 8474;

/// The port of a service's fault proxy: `faults_port`, else the service port + 10000 (0 stays 0).
fn fault_proxy_port(faults: bool, faults_port: Option<u16>, service_port: u16) -> Option<u16> {
    if !faults {
        return None;
    }
    Some(faults_port.unwrap_or(if service_port == 0 {
        0
    } else {
        service_port.saturating_add(10_000)
    }))
}

/// How the HTTP mock server runs (the `mock` command's flags override these).
#[derive(Debug, Clone, PartialEq)]
pub struct MockSettings {
    /// Started by `run`.
    pub enabled: bool,
    pub upstream: Option<String>,
    pub mocks_dir: PathBuf,
    /// Whether `mocks_dir` was named explicitly (then it must exist).
    pub mocks_named: bool,
    pub journal_size: usize,
    pub python: Option<PathBuf>,
    /// `[[services.mock.routes]]`.
    pub routes: Vec<crate::mock::routes::RouteDecl>,
    /// Timeout, limit and hedge of the catch-all upstream (`upstream_*` of `[services.mock]`).
    pub upstream_policy: crate::mock::proxy::ProxyPolicy,
    /// `[services.mock.flaky]`.
    pub flaky: Option<crate::mock::flaky::FlakySettings>,
    /// `scenario_errors_as_500` of `[services.mock]`.
    pub scenario_errors_as_500: bool,
    /// `[[services.mock.sinks]]`.
    pub sinks: Vec<crate::mock::sinks::SinkDecl>,
}

/// Whether a command can work without a usable `inframock.toml` (from the recorded state alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackFileUse {
    /// The command needs the stack file: an error in it stops the command.
    Required,
    /// The command reads the recorded state (`stop`, `status`, `env`, `logs`): an error in the
    /// stack file is a warning, so a running stack can always be inspected and stopped.
    Tolerated,
}

/// The project folder: the nearest folder, from `current_dir` upward, holding `inframock.toml`
/// or `.inframock/` (as git and cargo find theirs); `current_dir` itself when none does.
pub fn find_project_dir(current_dir: &Path) -> PathBuf {
    current_dir
        .ancestors()
        .find(|dir| dir.join("inframock.toml").is_file() || dir.join(STATE_DIR_NAME).is_dir())
        .unwrap_or(current_dir)
        .to_path_buf()
}

/// `stack_origin` when the project has no inframock.toml and runs the built-in stack.
pub const BUILT_IN_ORIGIN: &str = "built-in inframock.toml";

/// Default image of the aws service: the last LocalStack tag that runs without an auth token.
pub const DEFAULT_AWS_IMAGE: &str = "localstack/localstack:4.14.0";
/// Default image of the redis service.
pub const DEFAULT_REDIS_IMAGE: &str = "redis:7-alpine";

/// How a service runs as a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSettings {
    pub image: String,
    pub container_port: u16,
    pub env: Vec<(String, String)>,
}

impl Settings {
    /// Resolves settings from parsed flags (which already include their env vars), the value of
    /// `POPULATE_MOCK`, and the stack file found in the project folder.
    pub fn resolve(
        args: &GlobalArgs,
        populate_mock: Option<&str>,
        no_populate_flag: bool,
        current_dir: &Path,
        stack_file_use: StackFileUse,
    ) -> Result<Settings> {
        let project_dir = match &args.project_dir {
            Some(dir) => absolute(current_dir, dir),
            None => find_project_dir(current_dir),
        };
        let loaded = match &args.config {
            Some(path) => {
                let path = absolute(current_dir, path);
                StackFile::load(&path).map(|stack| (stack, path.display().to_string()))
            }
            None => {
                let path = project_dir.join("inframock.toml");
                if path.is_file() {
                    StackFile::load(&path).map(|stack| (stack, path.display().to_string()))
                } else {
                    Ok((StackFile::built_in(), BUILT_IN_ORIGIN.to_string()))
                }
            }
        };
        let (stack, stack_origin, stack_error) = match (loaded, stack_file_use) {
            (Ok((stack, origin)), _) => (stack, origin, None),
            (Err(e), StackFileUse::Required) => return Err(e.into()),
            (Err(e), StackFileUse::Tolerated) => (
                StackFile::default(),
                "unreadable inframock.toml".to_string(),
                Some(e.to_string()),
            ),
        };
        let project_name = stack
            .project
            .name
            .clone()
            .or_else(|| {
                project_dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "inframock".to_string());
        let populate = !no_populate_flag && populate_mock.is_none_or(parse_populate);
        let data_path = match &args.data_path {
            Some(dir) => absolute(current_dir, dir),
            None => project_dir.join("data"),
        };
        let region = non_empty(args.region.clone()).unwrap_or_else(|| DEFAULT_REGION.to_string());
        let cluster_env =
            non_empty(args.cluster_env.clone()).unwrap_or_else(|| DEFAULT_CLUSTER_ENV.to_string());
        let runtime = args.runtime.unwrap_or(RuntimeKind::Auto);
        if runtime == RuntimeKind::External && args.endpoint_url.is_none() {
            anyhow::bail!(
                "--runtime external needs --endpoint-url URL (or INFRAMOCK_ENDPOINT_URL) naming the AWS endpoint to use"
            );
        }
        let (services, docker_default_aws) = resolve_services(args, &stack, current_dir)?;
        let mock_section = &stack.services.mock;
        let mock = MockSettings {
            enabled: mock_section.enabled,
            upstream: non_empty(mock_section.upstream.clone()),
            mocks_dir: mock_section
                .mocks
                .as_ref()
                .map(|dir| absolute(&project_dir, dir))
                .unwrap_or_else(|| project_dir.join("mocks")),
            mocks_named: mock_section.mocks.is_some(),
            journal_size: mock_section
                .journal_size
                .unwrap_or(crate::mock::journal::DEFAULT_CAPACITY),
            python: mock_section
                .python
                .as_ref()
                .map(|p| absolute(&project_dir, p)),
            routes: mock_section.routes.clone(),
            upstream_policy: crate::mock::routes::policy(
                "[services.mock] upstream",
                mock_section.upstream_timeout_ms,
                mock_section.upstream_limit,
                mock_section.upstream_hedge_after_ms,
            )
            .map_err(anyhow::Error::msg)?,
            flaky: mock_section.flaky.clone(),
            scenario_errors_as_500: mock_section.scenario_errors_as_500,
            sinks: mock_section.sinks.clone(),
        };
        Ok(Settings {
            services,
            docker_default_aws,
            mock,
            dashboard_enabled: stack.services.dashboard.enabled,
            dashboard_bind: stack
                .services
                .dashboard
                .bind
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
            sources: BTreeMap::new(),
            ready_timeout: args
                .ready_timeout
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_READY_TIMEOUT),
            operation_timeout: args
                .operation_timeout
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_OPERATION_TIMEOUT),
            unsafe_handlers: args.unsafe_handlers,
            endpoint_url: args.endpoint_url.clone(),
            redis_url: args.redis_url.clone(),
            account: LOCAL_ACCOUNT_ID.to_string(),
            json: args.json,
            project_dir,
            project_name,
            stack,
            stack_origin,
            stack_error,
            runtime,
            region,
            cluster_env,
            data_named: args.data_path.is_some(),
            data_path,
            populate,
        })
    }

    /// How one service is set up: the built-in ones always; a declared one when the stack file
    /// declares it. A recorded service the stack file no longer declares gets the queue worker's
    /// settings (no port, no probe); `lifecycle::kind_of` takes its kind from the record instead.
    pub fn service(&self, name: &ServiceName) -> &ServiceSettings {
        self.services
            .get(name)
            .unwrap_or_else(|| &self.services[&ServiceName::Queues])
    }

    /// Where the region came from, and a warning when an inherited `AWS_DEFAULT_REGION` moves
    /// the stack away from its default region.
    pub fn region_note(&self) -> (String, Option<String>) {
        let from = self
            .sources
            .get("region")
            .cloned()
            .unwrap_or_else(|| "default".to_string());
        let warning = (from == "env AWS_DEFAULT_REGION" && self.region != DEFAULT_REGION).then(|| {
            format!(
                "the region is {} because AWS_DEFAULT_REGION is set in your environment (the stack's default is {DEFAULT_REGION}): every resource, URL and ARN uses it; unset it, or pass --region to choose",
                self.region
            )
        });
        (from, warning)
    }

    /// The settings as `runtime` uses them: with no engine named, the docker runtime runs
    /// LocalStack (its engine before engines could be chosen), the local runtime moto.
    pub fn for_runtime(&self, runtime: RuntimeKind) -> std::borrow::Cow<'_, Settings> {
        match (&self.docker_default_aws, runtime) {
            (Some(aws), RuntimeKind::Docker) => {
                let mut settings = self.clone();
                settings.services.insert(ServiceName::Aws, aws.clone());
                std::borrow::Cow::Owned(settings)
            }
            _ => std::borrow::Cow::Borrowed(self),
        }
    }

    /// The services a runtime starts (processes or containers), in start order: aws, redis, then
    /// the declared ones.
    pub fn runtime_services(&self) -> Vec<ServiceName> {
        self.services
            .keys()
            .filter(|name| !name.is_helper())
            .cloned()
            .collect()
    }

    /// Variables used to expand declared names.
    pub fn name_vars(&self) -> NameVars<'_> {
        NameVars {
            env: &self.cluster_env,
            region: &self.region,
            account: &self.account,
            experiment: None,
            host: None,
        }
    }

    /// The variables of declared resources for a stack on `runtime`: `${host}` is how the AWS
    /// engine reaches this machine (an SNS HTTP subscription to a local API): `localhost` from a
    /// local process, `host.docker.internal` from a container (the docker runtime maps it to the
    /// host's gateway; an external endpoint is taken to be a container too, e.g. compose's).
    pub fn resource_vars(&self, runtime: RuntimeKind) -> NameVars<'_> {
        NameVars {
            host: Some(match runtime {
                RuntimeKind::Local | RuntimeKind::Auto => "localhost",
                RuntimeKind::Docker | RuntimeKind::External => "host.docker.internal",
            }),
            ..self.name_vars()
        }
    }

    /// The sandbox of Python handlers and mappers (`python` overrides the configured interpreter).
    pub fn sandbox(&self, python: Option<&Path>) -> Result<crate::python::Sandbox> {
        let python =
            crate::python::find_python(python.or(self.mock.python.as_deref()), &self.project_dir);
        crate::python::Sandbox::new(python, self.unsafe_handlers).map_err(anyhow::Error::msg)
    }

    /// `<project>/.inframock`
    pub fn state_dir(&self) -> PathBuf {
        self.project_dir.join(STATE_DIR_NAME)
    }

    /// Creates the state folder (and its logs folder) if missing.
    pub fn ensure_state_dir(&self) -> Result<PathBuf> {
        let dir = self.state_dir();
        std::fs::create_dir_all(dir.join("logs"))
            .with_context(|| format!("cannot create {}", dir.join("logs").display()))?;
        Ok(dir)
    }
}

/// The settings of every service: flags > `[services.<name>]` of the stack file > the kind's
/// defaults (`stack::catalog`). The built-in services come first, then the declared ones by name.
#[allow(clippy::type_complexity)]
fn resolve_services(
    args: &GlobalArgs,
    stack: &StackFile,
    current_dir: &Path,
) -> Result<(
    BTreeMap<ServiceName, ServiceSettings>,
    Option<ServiceSettings>,
)> {
    let sections = &stack.services;
    if sections.redis.engine.is_some() {
        anyhow::bail!(
            "`engine` of [services.redis] in inframock.toml: only [services.aws] has an engine ({}); remove it",
            catalog::ENGINES.join(", ")
        );
    }
    let named_engine = non_empty(args.engine.clone()).or(sections.aws.engine.clone());
    let engine_id = named_engine
        .clone()
        .unwrap_or_else(|| catalog::ENGINES[0].to_string());
    let engine = catalog::engine(&engine_id).with_context(|| {
        format!(
            "AWS engine {engine_id:?} (--engine, INFRAMOCK_ENGINE or `engine` of [services.aws]) is not one of {}",
            catalog::ENGINES.join(", ")
        )
    })?;
    let mut services = BTreeMap::new();
    let built_in = |kind: catalog::ServiceKind,
                    section: &crate::stack_file::ServiceSection,
                    port_flag: Option<u16>,
                    flag: &str,
                    program: &Option<PathBuf>,
                    image: &Option<String>| {
        let port = port_flag.or(section.port).unwrap_or(kind.default_port);
        ServiceSettings {
            port,
            port_flag: flag.to_string(),
            program: program.as_ref().map(|p| absolute(current_dir, p)),
            container: container_settings(
                &kind,
                image.as_ref().or(section.image.as_ref()),
                section.container_port,
                &section.env,
            ),
            fault_proxy: fault_proxy_port(section.faults, section.faults_port, port),
            // The section's variables reach the engine whichever way it runs: as a local
            // process (after the kind's own, so they can override them) or in its container.
            env: section.env.clone().into_iter().collect(),
            kind,
        }
    };
    let aws = |kind| {
        built_in(
            kind,
            &sections.aws,
            args.aws_port,
            "--aws-port",
            &args.moto_server,
            &args.aws_image,
        )
    };
    let docker_default_aws = match named_engine {
        Some(_) => None,
        None => Some(aws(
            catalog::engine("localstack").context("the localstack engine is described")?
        )),
    };
    services.insert(ServiceName::Aws, aws(engine));
    let redis = catalog::preset("redis").context("the redis preset is described")?;
    services.insert(
        ServiceName::Redis,
        built_in(
            redis,
            &sections.redis,
            args.redis_port,
            "--redis-port",
            &args.redis_server,
            &args.redis_image,
        ),
    );
    let helper = |id: &str, port: u16, flag: &str| ServiceSettings {
        port,
        port_flag: flag.to_string(),
        program: None,
        container: ContainerSettings {
            image: String::new(),
            container_port: port,
            env: Vec::new(),
        },
        fault_proxy: None,
        env: Vec::new(),
        kind: catalog::helper(id),
    };
    let mock_port = args
        .mock_port
        .or(sections.mock.port)
        .unwrap_or(crate::mock::DEFAULT_PORT);
    services.insert(ServiceName::Mock, helper("mock", mock_port, "--mock-port"));
    let faults_port = args
        .faults_port
        .or(sections.faults.port)
        .unwrap_or(DEFAULT_FAULTS_PORT);
    services.insert(
        ServiceName::Faults,
        helper("faults", faults_port, "--faults-port"),
    );
    services.insert(ServiceName::Queues, helper("queues", 0, ""));
    services.insert(ServiceName::Persist, helper("persist", 0, ""));
    let dashboard_port = args
        .dashboard_port
        .or(sections.dashboard.port)
        .unwrap_or(crate::dashboard::DEFAULT_PORT);
    services.insert(
        ServiceName::Dashboard,
        helper("dashboard", dashboard_port, "--dashboard-port"),
    );
    let mut exported: BTreeMap<String, String> = BTreeMap::new();
    for (name, section) in &sections.declared {
        let settings = declared_service(name, section)?;
        if let Some(var) = &settings.kind.env_var {
            if let Some(other) = exported.insert(var.clone(), name.clone()) {
                anyhow::bail!(
                    "[services.{other}] and [services.{name}] in inframock.toml both export {var}; set `env_var` of one of them"
                );
            }
        }
        services.insert(ServiceName::Declared(name.as_str().into()), settings);
    }
    Ok((services, docker_default_aws))
}

/// A declared service: its preset (or a kind of its own) with the section's fields over it.
fn declared_service(
    name: &str,
    section: &crate::stack_file::DeclaredSection,
) -> Result<ServiceSettings> {
    let place = format!("[services.{name}] of inframock.toml");
    let valid_name = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid_name {
        anyhow::bail!("{place}: a service name is 1-32 of a-z, 0-9, '-' and '_'; rename it");
    }
    let mut kind = match &section.preset {
        Some(preset) => catalog::preset(preset).with_context(|| {
            format!(
                "{place}: preset {preset:?} is not one of {}",
                catalog::PRESETS.join(", ")
            )
        })?,
        None => {
            if section.command.is_none() && section.image.is_none() {
                anyhow::bail!(
                    "{place}: `{name}` is not a built-in service (aws, redis, mock, faults), so it needs `preset = \"{}\"` or a `command` (local runtime) and/or an `image` (docker runtime)",
                    catalog::PRESETS.join("\" | \"")
                );
            }
            catalog::ServiceKind {
                env_var: Some(format!(
                    "{}_URL",
                    name.to_ascii_uppercase().replace('-', "_")
                )),
                ..catalog::ServiceKind::bare(
                    "custom",
                    &format!("{name} (declared)"),
                    catalog::ProbeSpec::Tcp,
                    "tcp://localhost:{port}",
                )
            }
        }
    };
    if let Some(command) = &section.command {
        let (program, args) = command.split_first().with_context(|| {
            format!("{place}: `command` is empty; give the program and its arguments")
        })?;
        kind.local = Some(catalog::LocalCommand {
            program: program.clone(),
            args: args.to_vec(),
            env: Vec::new(),
            in_venv: false,
            search_dirs: Vec::new(),
            init: None,
            refuses_root: false,
            install_hint: format!("check `command` of {place}"),
        });
    }
    if let Some(port) = section.container_port {
        kind.container_port = port;
    }
    if (kind.image.is_some() || section.image.is_some()) && kind.container_port == 0 {
        anyhow::bail!(
            "{place}: `image` needs `container_port`, the port it listens on inside the container"
        );
    }
    if let Some(probe) = &section.probe {
        kind.probe = catalog::parse_probe(probe).map_err(|e| anyhow::anyhow!("{place}: {e}"))?;
    }
    if let Some(url) = &section.url {
        if !url.contains("{port}") {
            anyhow::bail!("{place}: `url` {url:?} has no {{port}}; write it as e.g. \"tcp://localhost:{{port}}\"");
        }
        kind.url = url.clone();
    }
    if let Some(var) = &section.env_var {
        kind.env_var = non_empty(Some(var.clone()));
    }
    let port = section.port.unwrap_or(kind.default_port);
    let env: Vec<(String, String)> = section.env.clone().into_iter().collect();
    Ok(ServiceSettings {
        port,
        port_flag: format!("`port` of {place}"),
        program: None,
        container: container_settings(
            &kind,
            section.image.as_ref(),
            section.container_port,
            &section.env,
        ),
        fault_proxy: fault_proxy_port(section.faults, section.faults_port, port),
        env,
        kind,
    })
}

/// How a service runs as a container: the image named (flag, then section), else the kind's;
/// the kind's environment, the variables it passes through, then the section's.
fn container_settings(
    kind: &catalog::ServiceKind,
    image: Option<&String>,
    container_port: Option<u16>,
    section_env: &BTreeMap<String, String>,
) -> ContainerSettings {
    let mut env = kind.container_env.clone();
    for name in &kind.pass_env {
        if let Ok(value) = std::env::var(name) {
            env.push((name.clone(), value));
        }
    }
    env.extend(section_env.clone());
    ContainerSettings {
        image: non_empty(image.cloned())
            .or(kind.image.clone())
            .unwrap_or_default(),
        container_port: container_port.unwrap_or(kind.container_port),
        env,
    }
}

/// `POPULATE_MOCK`: anything but false/0/no/off (any case) means load.
pub fn parse_populate(value: &str) -> bool {
    !matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "false" | "0" | "no" | "off"
    )
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

fn absolute(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(args: GlobalArgs, dir: &Path) -> Settings {
        Settings::resolve(&args, None, false, dir, StackFileUse::Required).expect("resolves")
    }

    #[test]
    fn defaults_without_stack_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = resolve(GlobalArgs::default(), dir.path());
        assert_eq!(s.service(&ServiceName::Aws).port, 4566);
        assert_eq!(s.service(&ServiceName::Redis).port, 6379);
        assert_eq!(s.operation_timeout, Duration::from_secs(30));
        assert_eq!(s.region, "eu-west-1");
        assert_eq!(s.cluster_env, "development");
        assert_eq!(s.data_path, dir.path().join("data"));
        assert_eq!(s.runtime, RuntimeKind::Auto);
        assert_eq!(s.ready_timeout, Duration::from_secs(60));
        assert!(s.populate);
        assert_eq!(s.stack_origin, "built-in inframock.toml");
        assert_eq!(s.stack.tables.len(), 4);
        let name = dir.path().file_name().unwrap().to_string_lossy();
        assert_eq!(s.project_name, name);
    }

    #[test]
    fn flags_win_over_stack_file_which_wins_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("inframock.toml"),
            "[project]\nname='demo'\n[services.aws]\nport=5000\n[services.redis]\nport=7000\n",
        )
        .unwrap();
        let from_file = resolve(GlobalArgs::default(), dir.path());
        assert_eq!(
            (
                from_file.service(&ServiceName::Aws).port,
                from_file.service(&ServiceName::Redis).port
            ),
            (5000, 7000)
        );
        assert_eq!(from_file.project_name, "demo");
        assert!(
            from_file.stack.tables.is_empty(),
            "a project file replaces the built-in stack"
        );
        let flags = GlobalArgs {
            aws_port: Some(0),
            redis_port: Some(7001),
            region: Some("us-east-1".into()),
            cluster_env: Some("staging".into()),
            data_path: Some("elsewhere".into()),
            ready_timeout: Some(5),
            ..GlobalArgs::default()
        };
        let s = resolve(flags, dir.path());
        assert_eq!(
            (
                s.service(&ServiceName::Aws).port,
                s.service(&ServiceName::Redis).port
            ),
            (0, 7001)
        );
        assert_eq!(s.region, "us-east-1");
        assert_eq!(s.cluster_env, "staging");
        assert_eq!(s.data_path, dir.path().join("elsewhere"));
        assert_eq!(s.ready_timeout, Duration::from_secs(5));
    }

    #[test]
    fn container_settings_come_from_flags_then_the_stack_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = resolve(GlobalArgs::default(), dir.path());
        assert_eq!(
            s.service(&ServiceName::Aws).container.image,
            "motoserver/moto:5.1.0",
            "the default engine's image"
        );
        let docker = s.for_runtime(RuntimeKind::Docker);
        assert_eq!(
            (
                docker.service(&ServiceName::Aws).kind.id.as_str(),
                docker.service(&ServiceName::Aws).container.image.as_str()
            ),
            ("localstack", "localstack/localstack:4.14.0"),
            "no engine named: the docker runtime runs LocalStack, as before"
        );
        let named = resolve(
            GlobalArgs {
                engine: Some("moto".into()),
                ..GlobalArgs::default()
            },
            dir.path(),
        );
        assert_eq!(
            named
                .for_runtime(RuntimeKind::Docker)
                .service(&ServiceName::Aws)
                .kind
                .id,
            "moto",
            "a named engine is the engine on every runtime"
        );
        assert_eq!(
            s.service(&ServiceName::Redis).container.image,
            "redis:7-alpine"
        );
        assert_eq!(
            (
                s.service(&ServiceName::Aws).container.container_port,
                s.service(&ServiceName::Redis).container.container_port
            ),
            (4566, 6379)
        );
        std::fs::write(
            dir.path().join("inframock.toml"),
            "[services.aws]\nimage='my/aws:1'\ncontainer_port=5000\nenv={DEBUG='1'}\n",
        )
        .unwrap();
        let s = resolve(GlobalArgs::default(), dir.path());
        assert_eq!(s.service(&ServiceName::Aws).container.image, "my/aws:1");
        assert_eq!(s.service(&ServiceName::Aws).container.container_port, 5000);
        assert_eq!(
            s.service(&ServiceName::Aws).container.env.last(),
            Some(&("DEBUG".to_string(), "1".to_string())),
            "the section's environment comes after the engine's"
        );
        assert_eq!(
            s.service(&ServiceName::Aws).env,
            [("DEBUG".to_string(), "1".to_string())],
            "and reaches the engine's local process"
        );
        let s = resolve(
            GlobalArgs {
                aws_image: Some("flag/aws:2".into()),
                ..GlobalArgs::default()
            },
            dir.path(),
        );
        assert_eq!(s.service(&ServiceName::Aws).container.image, "flag/aws:2");
    }

    #[test]
    fn empty_env_values_fall_back_to_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let s = resolve(
            GlobalArgs {
                region: Some(String::new()),
                cluster_env: Some(" ".into()),
                ..GlobalArgs::default()
            },
            dir.path(),
        );
        assert_eq!(s.region, "eu-west-1");
        assert_eq!(s.cluster_env, "development");
    }

    #[test]
    fn populate_mock_values() {
        assert!(parse_populate("true"));
        assert!(parse_populate("TRUE"));
        assert!(parse_populate("1"));
        assert!(!parse_populate("false"));
        assert!(!parse_populate("False"));
        assert!(!parse_populate("0"));
        assert!(!parse_populate("no"));
        let dir = tempfile::tempdir().unwrap();
        let off = Settings::resolve(
            &GlobalArgs::default(),
            Some("false"),
            false,
            dir.path(),
            StackFileUse::Required,
        )
        .unwrap();
        assert!(!off.populate);
        let flag = Settings::resolve(
            &GlobalArgs::default(),
            Some("true"),
            true,
            dir.path(),
            StackFileUse::Required,
        )
        .unwrap();
        assert!(!flag.populate, "--no-populate wins over POPULATE_MOCK=true");
    }

    #[test]
    fn malformed_project_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("inframock.toml"), "[[tables]\n").unwrap();
        let err = Settings::resolve(
            &GlobalArgs::default(),
            None,
            false,
            dir.path(),
            StackFileUse::Required,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("inframock.toml"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn external_runtime_needs_an_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let args = GlobalArgs {
            runtime: Some(RuntimeKind::External),
            ..GlobalArgs::default()
        };
        let err =
            Settings::resolve(&args, None, false, dir.path(), StackFileUse::Required).unwrap_err();
        assert!(err.to_string().contains("--endpoint-url"), "{err}");
    }
}

#[cfg(test)]
mod service_tests {
    use super::*;

    fn with_stack(toml: &str, args: GlobalArgs) -> Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("inframock.toml"), toml).unwrap();
        Settings::resolve(&args, None, false, dir.path(), StackFileUse::Required)
    }

    #[test]
    fn the_engine_comes_from_the_flag_then_the_stack_file_then_moto() {
        let aws = |s: &Settings| s.service(&ServiceName::Aws).kind.id.clone();
        assert_eq!(aws(&with_stack("", GlobalArgs::default()).unwrap()), "moto");
        let file = with_stack(
            "[services.aws]\nengine = 'ministack'\n",
            GlobalArgs::default(),
        )
        .unwrap();
        assert_eq!(aws(&file), "ministack");
        assert_eq!(
            file.service(&ServiceName::Aws).container.image,
            "ministackorg/ministack:latest",
            "the engine picks the image"
        );
        let flag = GlobalArgs {
            engine: Some("localstack".into()),
            ..GlobalArgs::default()
        };
        let flagged = with_stack("[services.aws]\nengine = 'ministack'\n", flag).unwrap();
        assert_eq!(aws(&flagged), "localstack");
        assert_eq!(
            flagged.service(&ServiceName::Aws).container.image,
            DEFAULT_AWS_IMAGE
        );
        let err = with_stack("[services.aws]\nengine = 'motto'\n", GlobalArgs::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"motto\"") && err.contains("moto, ministack, localstack"),
            "{err}"
        );
    }

    #[test]
    fn declared_services_take_their_preset_and_the_sections_overrides() {
        let s = with_stack(
            "[services.cache]\npreset = 'memcached'\nport = 11311\nfaults = true\n[services.db]\npreset = 'postgres'\nenv_var = 'MAIN_DB'\n",
            GlobalArgs::default(),
        )
        .unwrap();
        assert_eq!(
            s.runtime_services(),
            [
                ServiceName::Aws,
                ServiceName::Redis,
                ServiceName::named("cache"),
                ServiceName::named("db")
            ]
        );
        let cache = s.service(&ServiceName::named("cache"));
        assert_eq!((cache.port, cache.fault_proxy), (11311, Some(21311)));
        assert_eq!(cache.kind.env_var.as_deref(), Some("MEMCACHED_URL"));
        assert_eq!(cache.container.image, "memcached:1.6-alpine");
        let db = s.service(&ServiceName::named("db"));
        assert_eq!(db.port, 5432);
        assert_eq!(db.kind.env_var.as_deref(), Some("MAIN_DB"));
        assert_eq!(db.container.container_port, 5432);
    }

    #[test]
    fn a_declared_service_must_be_a_preset_or_described_and_export_its_own_variable() {
        let err = |toml: &str| {
            with_stack(toml, GlobalArgs::default())
                .unwrap_err()
                .to_string()
        };
        let typo = err("[services.cahce]\nport = 1\n");
        assert!(
            typo.contains("[services.cahce]") && typo.contains("preset = "),
            "{typo}"
        );
        let twice = err("[services.a]\npreset = 'memcached'\n[services.b]\npreset = 'memcached'\n");
        assert!(twice.contains("both export MEMCACHED_URL"), "{twice}");
        let image = err("[services.x]\nimage = 'my/x'\n");
        assert!(image.contains("container_port"), "{image}");
        let probe = err("[services.x]\ncommand = ['x']\nprobe = 'ping'\n");
        assert!(probe.contains("probe \"ping\""), "{probe}");
        let name = err("[services.Big]\ncommand = ['x']\n");
        assert!(name.contains("a-z"), "{name}");
        let custom = with_stack(
            "[services.site-2]\ncommand = ['srv', '{port}']\nprobe = 'http /up'\n",
            GlobalArgs::default(),
        )
        .unwrap();
        let site = custom.service(&ServiceName::named("site-2"));
        assert_eq!(site.kind.env_var.as_deref(), Some("SITE_2_URL"));
        assert_eq!(site.kind.probe, catalog::ProbeSpec::Http("/up".into()));
        assert_eq!(site.kind.local.as_ref().unwrap().program, "srv");
    }
}

#[cfg(test)]
mod project_tests {
    use super::*;

    #[test]
    fn the_project_is_found_upward_from_a_sub_folder() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("src/a/b");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(
            find_project_dir(&deep),
            deep,
            "no marker: the current folder"
        );
        std::fs::write(dir.path().join("inframock.toml"), "").unwrap();
        assert_eq!(find_project_dir(&deep), dir.path());
        std::fs::create_dir_all(dir.path().join("src/.inframock")).unwrap();
        assert_eq!(
            find_project_dir(&deep),
            dir.path().join("src"),
            "the nearest marker wins"
        );
        let s = Settings::resolve(
            &GlobalArgs::default(),
            None,
            false,
            &deep,
            StackFileUse::Required,
        )
        .unwrap();
        assert_eq!(s.project_dir, dir.path().join("src"));
        assert_eq!(s.data_path, dir.path().join("src/data"));
    }

    #[test]
    fn a_broken_stack_file_is_tolerated_only_where_asked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("inframock.toml"),
            "[services.aws]
prot = 1
",
        )
        .unwrap();
        let args = GlobalArgs::default();
        assert!(Settings::resolve(&args, None, false, dir.path(), StackFileUse::Required).is_err());
        let s = Settings::resolve(&args, None, false, dir.path(), StackFileUse::Tolerated)
            .expect("tolerated");
        let why = s.stack_error.expect("the error is kept for a warning");
        assert!(why.contains("inframock.toml"), "{why}");
        assert!(why.contains("prot"), "{why}");
    }
}
