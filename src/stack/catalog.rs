//! What each kind of service is: the one place that says how a kind is started as a local process,
//! which image runs it as a container, how its readiness is probed, which URL and environment
//! variable clients use, how `inframock reset` wipes it and how its version is read. The runtimes,
//! the readiness wait, `env`, `status`, the banner and `reset` read these descriptions and never
//! match on a kind, so adding a kind (a preset) touches this file and nothing else.
//!
//! A declared service (`[services.<name>]` in `inframock.toml`) either names a preset
//! (`preset = "memcached"`) and may override any field, or describes a kind of its own with the
//! same fields (`command`, `image`, `container_port`, `probe`, `url`, `env_var`).

use std::path::Path;

/// How a kind of service runs and answers.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceKind {
    /// The kind's name (`moto`, `redis`, `memcached`, or `custom` for a full description).
    pub id: String,
    /// One line for the banner: what clients get from it.
    pub summary: String,
    /// How it runs as a process of the local runtime (`None`: it has no local form).
    pub local: Option<LocalCommand>,
    /// Default image of the docker runtime (`None`: it has no container form).
    pub image: Option<String>,
    /// Port it listens on inside its container.
    pub container_port: u16,
    /// Environment of its container.
    pub container_env: Vec<(String, String)>,
    /// Variables passed from inframock's environment to its container when set there
    /// (`LOCALSTACK_AUTH_TOKEN`).
    pub pass_env: Vec<String>,
    /// Port on 127.0.0.1 when none is set.
    pub default_port: u16,
    /// How readiness is asked.
    pub probe: ProbeSpec,
    /// The URL clients use, with `{port}` for the port clients connect to.
    pub url: String,
    /// The variable `inframock env` exports that URL as (`None`: not exported).
    pub env_var: Option<String>,
    /// What `inframock reset` does to it.
    pub reset: ResetSpec,
    /// How its version is read for `status`.
    pub version: VersionSpec,
    /// How a snapshot reads this engine's tables whole.
    pub table_reads: TableReads,
    /// How a snapshot learns a versioned bucket's history.
    pub bucket_history: BucketHistory,
}

/// How a snapshot reads a table whole, by engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableReads {
    /// `Scan` in parallel segments: an engine whose Scan gains from them (MiniStack, LocalStack,
    /// an external endpoint).
    ParallelScan,
    /// `ExportTableToPointInTime` into a bucket of a private account, `Scan` if the export fails:
    /// moto, whose Scan spends about 1 ms an item in its response serializer and walks the
    /// whole table for each segment (measured on 9,850 items: 20 s in 4 segments, 16.4 s in
    /// one), while its export writes the table in one pass (`snapshot::export`).
    Export,
}

/// How a snapshot learns a versioned bucket's history (its older versions and delete markers),
/// by engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketHistory {
    /// `ListObjectVersions` at every save: engines that list cheaply (MiniStack, LocalStack, an
    /// external endpoint).
    Listing,
    /// Checked against the mark of an earlier save (`snapshot::history`), listed only when it
    /// changed: moto, whose `ListObjectVersions` copies every version of the bucket, content
    /// included, before it pages (measured: 8.0 s for a bucket of 2 GiB, a `HEAD` 3.5 ms), and
    /// whose CloudWatch counts a bucket's key names, hidden ones included.
    CheckedAgainstMark,
}

/// A local command line: `program` looked up in the project's `.venv/bin` (when `in_venv`), then
/// in `search_dirs`, then on PATH. Arguments and environment values may hold `{port}` and
/// `{data_dir}` (a folder of its own under `.inframock/`).
#[derive(Debug, Clone, PartialEq)]
pub struct LocalCommand {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Look in the project's `.venv/bin` first (Python engines installed by `make setup`).
    pub in_venv: bool,
    /// Further folders to look in before PATH (globs allowed: `/usr/lib/postgresql/*/bin`).
    pub search_dirs: Vec<String>,
    /// Run once, before the first start, while `{data_dir}` is empty (e.g. `initdb`); the program
    /// is looked up beside `program`, then like it.
    pub init: Option<Vec<String>>,
    /// The program refuses to run as root: when inframock runs as root it runs as `nobody`, and
    /// `{data_dir}` is handed to that user.
    pub refuses_root: bool,
    /// How to install the program, for the error that says it is missing.
    pub install_hint: String,
}

/// How readiness is asked.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeSpec {
    /// One cheap list call each to S3, DynamoDB, SQS and SNS.
    Aws,
    /// Redis PING.
    Redis,
    /// A TCP connection is accepted.
    Tcp,
    /// `GET <url><path>` answers 2xx.
    Http(String),
    /// A command exits 0 (`{port}` expanded), e.g. `pg_isready`.
    Command(Vec<String>),
    /// Running is ready (a worker without a port).
    Alive,
}

/// What `inframock reset` does to a service.
#[derive(Debug, Clone, PartialEq)]
pub enum ResetSpec {
    /// POST to this path of its URL.
    HttpPost(String),
    /// Redis FLUSHALL.
    RedisFlushAll,
    /// Send this line over TCP and expect a line starting with `OK` (memcached `flush_all`).
    TcpLine(String),
    /// It keeps its state; `reset` says so (`run --fresh` starts it anew).
    Keeps,
}

/// How the version of a running service is read for `status`.
#[derive(Debug, Clone, PartialEq)]
pub enum VersionSpec {
    /// `GET <url><path>`, field `field` of the JSON answer.
    HttpJson { path: String, field: String },
    /// The Python package's version, asked of the interpreter beside the program (`.venv/bin`).
    PythonPackage(String),
    /// The first line the program prints with this flag (`--version`).
    ProgramFlag(String),
    /// Not known.
    Unknown,
}

/// The AWS engines `[services.aws] engine` and `--engine` accept, the default first.
pub const ENGINES: [&str; 4] = ["moto", "ministack", "localstack", "floci"];

/// The presets of declared services (`[services.<name>] preset = ...`).
pub const PRESETS: [&str; 3] = ["memcached", "postgres", "redis"];

/// The AWS engine of this name, or `None`.
pub fn engine(id: &str) -> Option<ServiceKind> {
    const AWS_SUMMARY: &str = "S3, DynamoDB, SQS, SNS";
    let aws = |id: &str, local: Option<LocalCommand>, image: &str, reset: ResetSpec, version| {
        ServiceKind {
            id: id.to_string(),
            summary: format!("{AWS_SUMMARY} ({id})"),
            local,
            image: Some(image.to_string()),
            container_port: 4566,
            // LocalStack's service list; moto's image listens on MOTO_PORT.
            container_env: pairs(&[("SERVICES", "s3,dynamodb,sqs,sns"), ("MOTO_PORT", "4566")]),
            pass_env: vec!["LOCALSTACK_AUTH_TOKEN".into()],
            default_port: crate::config::DEFAULT_AWS_PORT,
            probe: ProbeSpec::Aws,
            url: "http://localhost:{port}".into(),
            env_var: Some("AWS_ENDPOINT_URL".into()),
            reset,
            version,
            table_reads: if id == "moto" {
                TableReads::Export
            } else {
                TableReads::ParallelScan
            },
            bucket_history: if id == "moto" {
                BucketHistory::CheckedAgainstMark
            } else {
                BucketHistory::Listing
            },
        }
    };
    let python = |program: &str, args: &[&str], env: &[(&str, &str)], package: &str| LocalCommand {
        program: program.into(),
        args: strings(args),
        env: pairs(env),
        in_venv: true,
        search_dirs: Vec::new(),
        init: None,
        refuses_root: false,
        install_hint: format!(
            "run `make setup` (installs it into .venv) or `pip install '{package}'`"
        ),
    };
    match id {
        "moto" => Some(aws(
            "moto",
            Some(python(
                "moto_server",
                &["-H", "127.0.0.1", "-p", "{port}"],
                &[
                    ("MOTO_ACCOUNT_ID", crate::config::LOCAL_ACCOUNT_ID),
                    ("PYTHONUNBUFFERED", "1"),
                ],
                "moto[server]",
            )),
            "motoserver/moto:5.1.0",
            ResetSpec::HttpPost("/moto-api/reset".into()),
            VersionSpec::PythonPackage("moto".into()),
        )),
        "ministack" => Some(aws(
            "ministack",
            Some(python(
                "ministack",
                &[],
                &[
                    ("GATEWAY_PORT", "{port}"),
                    ("BIND_HOST", "127.0.0.1"),
                    ("PYTHONUNBUFFERED", "1"),
                ],
                "ministack",
            )),
            "ministackorg/ministack:latest",
            ResetSpec::HttpPost("/_ministack/reset".into()),
            VersionSpec::HttpJson {
                path: "/_ministack/health".into(),
                field: "version".into(),
            },
        )),
        "localstack" => Some(aws(
            "localstack",
            None,
            crate::config::DEFAULT_AWS_IMAGE,
            ResetSpec::HttpPost("/_localstack/state/reset".into()),
            VersionSpec::HttpJson {
                path: "/_localstack/health".into(),
                field: "version".into(),
            },
        )),
        "floci" => Some(aws(
            "floci",
            None,
            "floci/floci:latest",
            ResetSpec::Keeps,
            VersionSpec::Unknown,
        )),
        _ => None,
    }
}

/// The preset of this name, or `None`.
pub fn preset(id: &str) -> Option<ServiceKind> {
    let debian = |program: &str, args: &[&str], package: &str| {
        LocalCommand {
        program: program.into(),
        args: strings(args),
        env: Vec::new(),
        in_venv: false,
        search_dirs: Vec::new(),
        init: None,
        refuses_root: false,
        install_hint: format!(
            "install it with `sudo apt-get install {package}` (Debian/Ubuntu) or `brew install {package}`"
        ),
    }
    };
    match id {
        "redis" => Some(ServiceKind {
            id: "redis".into(),
            summary: "Redis".into(),
            local: Some(debian(
                "redis-server",
                &[
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    "{port}",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--dir",
                    "{data_dir}",
                ],
                "redis-server",
            )),
            image: Some(crate::config::DEFAULT_REDIS_IMAGE.into()),
            container_port: 6379,
            container_env: Vec::new(),
            pass_env: Vec::new(),
            default_port: crate::config::DEFAULT_REDIS_PORT,
            probe: ProbeSpec::Redis,
            url: "redis://localhost:{port}".into(),
            env_var: Some("REDIS_URL".into()),
            reset: ResetSpec::RedisFlushAll,
            version: VersionSpec::ProgramFlag("--version".into()),
            table_reads: TableReads::ParallelScan,
            bucket_history: BucketHistory::Listing,
        }),
        "memcached" => Some(ServiceKind {
            id: "memcached".into(),
            summary: "memcached (text and binary protocol)".into(),
            local: Some(debian(
                "memcached",
                &["-l", "127.0.0.1", "-p", "{port}", "-U", "0", "-u", "nobody"],
                "memcached",
            )),
            image: Some("memcached:1.6-alpine".into()),
            container_port: 11211,
            container_env: Vec::new(),
            pass_env: Vec::new(),
            default_port: 11211,
            probe: ProbeSpec::Tcp,
            url: "memcached://localhost:{port}".into(),
            env_var: Some("MEMCACHED_URL".into()),
            reset: ResetSpec::TcpLine("flush_all".into()),
            version: VersionSpec::ProgramFlag("-V".into()),
            table_reads: TableReads::ParallelScan,
            bucket_history: BucketHistory::Listing,
        }),
        "postgres" => Some(ServiceKind {
            id: "postgres".into(),
            summary: "PostgreSQL (user postgres, database postgres, no password)".into(),
            local: Some(LocalCommand {
                search_dirs: vec!["/usr/lib/postgresql/*/bin".into()],
                init: Some(strings(&[
                    "initdb",
                    "--pgdata",
                    "{data_dir}",
                    "--username",
                    "postgres",
                    "--auth",
                    "trust",
                    "--encoding",
                    "UTF8",
                    "--no-sync",
                ])),
                refuses_root: true,
                ..debian(
                    "postgres",
                    &[
                        "-D",
                        "{data_dir}",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        "{port}",
                        "-k",
                        "{data_dir}",
                        "-c",
                        "fsync=off",
                    ],
                    "postgresql",
                )
            }),
            image: Some("postgres:16-alpine".into()),
            container_port: 5432,
            container_env: pairs(&[("POSTGRES_HOST_AUTH_METHOD", "trust")]),
            pass_env: Vec::new(),
            default_port: 5432,
            probe: ProbeSpec::Command(strings(&[
                "pg_isready",
                "--host",
                "127.0.0.1",
                "--port",
                "{port}",
                "--username",
                "postgres",
            ])),
            url: "postgres://postgres@localhost:{port}/postgres".into(),
            env_var: Some("DATABASE_URL".into()),
            reset: ResetSpec::Keeps,
            version: VersionSpec::ProgramFlag("--version".into()),
            table_reads: TableReads::ParallelScan,
            bucket_history: BucketHistory::Listing,
        }),
        _ => None,
    }
}

/// The kinds of our own helpers (this very binary): their probe and URL.
pub fn helper(id: &str) -> ServiceKind {
    let (summary, probe) = match id {
        "mock" => (
            "HTTP mock/proxy (admin: /mocker/)",
            ProbeSpec::Http("/mocker/health".into()),
        ),
        "faults" => (
            "fault proxies' control (/mock/<command>)",
            ProbeSpec::Http("/mock/health".into()),
        ),
        "dashboard" => (
            "dashboard (readiness: /health/ready)",
            ProbeSpec::Http("/health/live".into()),
        ),
        "persist" => (
            "saves the stack's state every [stack] persist_every seconds",
            ProbeSpec::Alive,
        ),
        _ => (
            "queue tails and bridges of inframock.toml",
            ProbeSpec::Alive,
        ),
    };
    let url = if id == "queues" || id == "persist" {
        ""
    } else {
        "http://localhost:{port}"
    };
    ServiceKind::bare(id, summary, probe, url)
}

impl ServiceKind {
    /// A kind with nothing but a summary, a probe and a URL: no local form, no image, not
    /// exported, kept by `reset` (our helpers; the start of a declared service's own kind).
    pub fn bare(id: &str, summary: &str, probe: ProbeSpec, url: &str) -> ServiceKind {
        ServiceKind {
            id: id.to_string(),
            summary: summary.to_string(),
            local: None,
            image: None,
            container_port: 0,
            container_env: Vec::new(),
            pass_env: Vec::new(),
            default_port: 0,
            probe,
            url: url.to_string(),
            env_var: None,
            reset: ResetSpec::Keeps,
            version: VersionSpec::Unknown,
            table_reads: TableReads::ParallelScan,
            bucket_history: BucketHistory::Listing,
        }
    }

    /// The URL clients use when it listens on `port` of this machine.
    pub fn url_at(&self, port: u16) -> String {
        self.url.replace("{port}", &port.to_string())
    }
}

/// `{port}` and `{data_dir}` filled in.
pub fn expand(template: &str, port: u16, data_dir: &Path) -> String {
    template
        .replace("{port}", &port.to_string())
        .replace("{data_dir}", &data_dir.to_string_lossy())
}

/// Parses a probe as written in `inframock.toml`: `tcp`, `http /path`, `redis`, `aws`,
/// `command <argv...>` (split on spaces), `none`.
pub fn parse_probe(text: &str) -> Result<ProbeSpec, String> {
    let text = text.trim();
    let (word, rest) = text.split_once(' ').unwrap_or((text, ""));
    let rest = rest.trim();
    match (word, rest.is_empty()) {
        ("tcp", true) => Ok(ProbeSpec::Tcp),
        ("redis", true) => Ok(ProbeSpec::Redis),
        ("aws", true) => Ok(ProbeSpec::Aws),
        ("none", true) => Ok(ProbeSpec::Alive),
        ("http", false) if rest.starts_with('/') => Ok(ProbeSpec::Http(rest.to_string())),
        ("command", false) => Ok(ProbeSpec::Command(
            rest.split_whitespace().map(str::to_string).collect(),
        )),
        _ => Err(format!(
            "probe {text:?} is not one of `tcp`, `http /path`, `command <program> <args>`, `redis`, `aws`, `none`"
        )),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_and_preset_is_described() {
        for id in ENGINES {
            let kind = engine(id).expect(id);
            assert_eq!(kind.id, id);
            assert_eq!(kind.probe, ProbeSpec::Aws);
        }
        for id in PRESETS {
            let kind = preset(id).expect(id);
            assert!(kind.local.is_some() && kind.image.is_some(), "{id}");
            assert!(kind.env_var.is_some(), "{id}");
        }
        assert!(engine("localstack").unwrap().local.is_none());
        assert!(preset("mysql").is_none() && engine("aws").is_none());
    }

    #[test]
    fn templates_are_filled_in() {
        let memcached = preset("memcached").unwrap();
        assert_eq!(memcached.url_at(11311), "memcached://localhost:11311");
        assert_eq!(
            expand("-D {data_dir} -p {port}", 5433, Path::new("/x/pg")),
            "-D /x/pg -p 5433"
        );
    }

    #[test]
    fn probes_parse_or_say_what_is_accepted() {
        assert_eq!(parse_probe("tcp"), Ok(ProbeSpec::Tcp));
        assert_eq!(
            parse_probe("http /health"),
            Ok(ProbeSpec::Http("/health".into()))
        );
        assert_eq!(
            parse_probe("command pg_isready -p {port}"),
            Ok(ProbeSpec::Command(strings(&["pg_isready", "-p", "{port}"])))
        );
        let err = parse_probe("http health").unwrap_err();
        assert!(err.contains("`http /path`"), "{err}");
        assert!(parse_probe("ping").is_err());
    }
}
