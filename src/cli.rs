//! Command-line types (clap derive). Every flag that has an environment variable says so with `env =`.

use std::path::PathBuf;

use std::collections::BTreeMap;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A local copy of your cloud stack: an AWS-compatible endpoint (S3, DynamoDB, SQS, SNS) and Redis,
/// created from `inframock.toml` and populated from a data folder.
#[derive(Debug, Parser)]
#[command(name = "inframock", version, about, long_about = None, after_help = ENV_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where each flag given a value got it: argument id → `flag --name` or `env NAME` (flags left
/// at their defaults are absent). `inframock config` and the banner say where settings came from.
pub fn value_sources(
    command: &clap::Command,
    matches: &clap::ArgMatches,
) -> BTreeMap<String, String> {
    let mut sources = BTreeMap::new();
    let mut current = Some(matches);
    while let Some(level) = current {
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            let source = match level.value_source(id) {
                Some(clap::parser::ValueSource::CommandLine) => arg
                    .get_long()
                    .map_or_else(|| format!("flag {id}"), |long| format!("flag --{long}")),
                Some(clap::parser::ValueSource::EnvVariable) => arg.get_env().map_or_else(
                    || format!("env ({id})"),
                    |env| format!("env {}", env.to_string_lossy()),
                ),
                _ => continue,
            };
            sources.insert(id.to_string(), source);
        }
        current = level.subcommand().map(|(_, sub)| sub);
    }
    sources
}

/// Variables read without a flag of their own (`POPULATE_MOCK`), besides those of the flags.
const OTHER_VARIABLES: [&str; 1] = ["POPULATE_MOCK"];

/// A variable set to the empty string counts as unset (`INFRAMOCK_AWS_PORT= inframock run` is the
/// default port, not an invalid one), as in docker compose and most tools: every variable of a
/// flag, and `POPULATE_MOCK`, is forgotten when empty. Called before any thread starts.
pub fn forget_empty_variables() {
    fn variables(command: &clap::Command, names: &mut Vec<std::ffi::OsString>) {
        for arg in command.get_arguments() {
            if let Some(name) = arg.get_env() {
                names.push(name.to_os_string());
            }
        }
        for sub in command.get_subcommands() {
            variables(sub, names);
        }
    }
    let mut names: Vec<std::ffi::OsString> = OTHER_VARIABLES.iter().map(Into::into).collect();
    // A command tree of its own: clap reads a flag's variable when the tree is built, so the tree
    // that parses must be built after the empty ones are gone.
    variables(&<Cli as clap::CommandFactory>::command(), &mut names);
    for name in names {
        if std::env::var_os(&name).is_some_and(|value| value.is_empty()) {
            std::env::remove_var(&name);
        }
    }
}

/// The value parser of a yes/no switch, which only its environment variable gives a value:
/// 1/0, true/false, yes/no, on/off (any case); anything else is an error naming the variable.
#[derive(Clone)]
struct Switch(&'static str);

impl clap::builder::TypedValueParser for Switch {
    type Value = bool;

    fn parse_ref(
        &self,
        command: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<bool, clap::Error> {
        match value.to_str().map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            Some("1" | "true" | "yes" | "on" | "y") => Ok(true),
            Some("0" | "false" | "no" | "off" | "n") => Ok(false),
            _ => Err(clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!(
                    "{}={value:?} is not a yes/no value; use 1/0, true/false, yes/no or on/off (or unset it)\n",
                    self.0
                ),
            )
            .with_cmd(command)),
        }
    }
}

/// Environment variables that are not tied to one flag, listed at the end of every `--help`.
pub const ENV_HELP: &str = "\
Environment variables (flags win over them, they win over inframock.toml; an empty one counts as
unset; yes/no switches take 1/0, true/false, yes/no, on/off):
  AWS_DEFAULT_REGION   region of the mocked stack (default eu-west-1)            [--region]
  CLUSTER_ENV          environment suffix of resource names (default development) [--cluster-env]
  BIOMAGE_DATA_PATH    data folder to load (default ./data)                       [--data]
  POPULATE_MOCK        load the data folder on `run` unless `false`               [--no-populate]
  INFRAMOCK_*          every other flag, e.g. INFRAMOCK_AWS_PORT, INFRAMOCK_RUNTIME
  LOCALSTACK_AUTH_TOKEN passed to the LocalStack container when set (docker runtime)
  DOCKER_HOST          the Docker engine to use (default /var/run/docker.sock)";

/// Flags shared by every subcommand: listed after a command's own options, under their own heading.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Project folder holding inframock.toml, data/ and .inframock/ state.
    #[arg(long, global = true, env = "INFRAMOCK_PROJECT_DIR", value_name = "DIR")]
    pub project_dir: Option<PathBuf>,
    /// Stack file (default: <project-dir>/inframock.toml, built-in defaults when absent).
    #[arg(long, global = true, env = "INFRAMOCK_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON instead of human output.
    #[arg(long, global = true, env = "INFRAMOCK_JSON", value_parser = Switch("INFRAMOCK_JSON"))]
    pub json: bool,
    /// Where services run: auto (default), local (processes), docker, external (existing endpoint).
    #[arg(long, global = true, env = "INFRAMOCK_RUNTIME", value_enum)]
    pub runtime: Option<RuntimeKind>,
    /// AWS edge port on 127.0.0.1 (default 4566; 0 picks a free port).
    #[arg(long, global = true, env = "INFRAMOCK_AWS_PORT", value_name = "PORT")]
    pub aws_port: Option<u16>,
    /// Redis port on 127.0.0.1 (default 6379; 0 picks a free port).
    #[arg(long, global = true, env = "INFRAMOCK_REDIS_PORT", value_name = "PORT")]
    pub redis_port: Option<u16>,
    /// Port of the HTTP mock server on 127.0.0.1 (default 8080; 0 picks a free port).
    #[arg(long, global = true, env = "INFRAMOCK_MOCK_PORT", value_name = "PORT")]
    pub mock_port: Option<u16>,
    /// Port of the dashboard and readiness URL on 127.0.0.1 (default 8088; 0 picks a free port).
    #[arg(
        long,
        global = true,
        env = "INFRAMOCK_DASHBOARD_PORT",
        value_name = "PORT"
    )]
    pub dashboard_port: Option<u16>,
    /// Control port of the fault proxies on 127.0.0.1 (default 8474; 0 picks a free port).
    #[arg(
        long,
        global = true,
        env = "INFRAMOCK_FAULTS_PORT",
        value_name = "PORT"
    )]
    pub faults_port: Option<u16>,
    /// Region of the mocked stack.
    #[arg(long, global = true, env = "AWS_DEFAULT_REGION", value_name = "REGION")]
    pub region: Option<String>,
    /// Environment suffix used in resource names (`experiments-<env>`).
    #[arg(long, global = true, env = "CLUSTER_ENV", value_name = "ENV")]
    pub cluster_env: Option<String>,
    /// Data folder holding one sub-folder per experiment.
    #[arg(
        long = "data",
        global = true,
        env = "BIOMAGE_DATA_PATH",
        value_name = "DIR"
    )]
    pub data_path: Option<PathBuf>,
    /// AWS endpoint of runtime `external` (a shared LocalStack, moto, or real AWS).
    #[arg(
        long,
        global = true,
        env = "INFRAMOCK_ENDPOINT_URL",
        value_name = "URL"
    )]
    pub endpoint_url: Option<String>,
    /// Redis URL of runtime `external`.
    #[arg(long, global = true, env = "INFRAMOCK_REDIS_URL", value_name = "URL")]
    pub redis_url: Option<String>,
    /// AWS engine: moto (default), ministack or localstack (docker runtime only).
    #[arg(long, global = true, env = "INFRAMOCK_ENGINE", value_name = "ENGINE")]
    pub engine: Option<String>,
    /// Executable of the AWS engine on the local runtime (default: the engine's program in .venv/bin,
    /// then PATH: moto_server, ministack).
    #[arg(
        long,
        global = true,
        env = "INFRAMOCK_MOTO_SERVER",
        value_name = "PATH"
    )]
    pub moto_server: Option<PathBuf>,
    /// redis-server executable of the local runtime (default: PATH).
    #[arg(
        long,
        global = true,
        env = "INFRAMOCK_REDIS_SERVER",
        value_name = "PATH"
    )]
    pub redis_server: Option<PathBuf>,
    /// Container image of the aws service (docker runtime).
    #[arg(long, global = true, env = "INFRAMOCK_AWS_IMAGE", value_name = "IMAGE")]
    pub aws_image: Option<String>,
    /// Container image of the redis service (docker runtime).
    #[arg(
        long,
        global = true,
        env = "INFRAMOCK_REDIS_IMAGE",
        value_name = "IMAGE"
    )]
    pub redis_image: Option<String>,
    /// Seconds to wait for services to answer before giving up.
    #[arg(
        long,
        global = true,
        env = "INFRAMOCK_READY_TIMEOUT",
        value_name = "SECONDS"
    )]
    pub ready_timeout: Option<u64>,
    /// Seconds one AWS operation (all its retries) may take before it fails naming the endpoint
    /// (default 30).
    #[arg(
        long,
        global = true,
        env = "INFRAMOCK_OPERATION_TIMEOUT",
        value_name = "SECONDS"
    )]
    pub operation_timeout: Option<u64>,
    /// Run Python handlers and mappers even where the kernel cannot confine them (no Landlock
    /// ABI ≥ 4 or seccomp): their code then runs with your rights. Warns on every start.
    #[arg(long, global = true, env = "INFRAMOCK_UNSAFE_HANDLERS", value_parser = Switch("INFRAMOCK_UNSAFE_HANDLERS"))]
    pub unsafe_handlers: bool,
}

/// Where the stack's services run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// docker when an engine answers and the docker runtime is usable, otherwise local.
    Auto,
    /// moto_server and redis-server processes on this machine.
    Local,
    /// LocalStack and Redis containers through the Docker engine.
    Docker,
    /// An endpoint that already runs elsewhere: only create resources and load data.
    External,
}

impl std::fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            RuntimeKind::Auto => "auto",
            RuntimeKind::Local => "local",
            RuntimeKind::Docker => "docker",
            RuntimeKind::External => "external",
        };
        f.write_str(name)
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the stack, create every declared resource, load the data folder; stay up until Ctrl-C.
    #[command(after_help = ENV_HELP)]
    Run(RunArgs),
    /// Load the data folder again into the running stack (only what changed is uploaded).
    #[command(after_help = ENV_HELP)]
    ReloadData(ReloadArgs),
    /// Stop what this project started: its processes, or its labelled containers and network
    /// (with `[stack] persist = true`, after saving the stack's state as snapshot `persist`).
    #[command(after_help = ENV_HELP)]
    Stop(StopArgs),
    /// Back to the declared state without restarting: wipe the engine's state, flush Redis, create
    /// every declared resource and load the data folder again (what tests do between cases).
    #[command(after_help = ENV_HELP)]
    Reset(ResetArgs),
    /// Show each service: runtime, port, PID and health.
    #[command(after_help = ENV_HELP)]
    Status,
    /// Print `export` lines for the running stack: `eval "$(inframock env)"`.
    #[command(after_help = ENV_HELP)]
    Env,
    /// Print the log of a service of the stack, or of all of them.
    #[command(after_help = ENV_HELP)]
    Logs(LogsArgs),
    /// Run the HTTP mock/proxy server in the foreground, or ask a running one for its journal.
    #[command(after_help = MOCK_HELP)]
    Mock(MockArgs),
    /// Disturb the stack's fault proxies (hiccup, truncate, failover, respawn, latency, reset), or
    /// run fault proxies in the foreground (`faults serve`).
    #[command(after_help = FAULTS_HELP)]
    Faults(FaultsArgs),
    /// Queue mocks: tail a queue or topic, list recorded messages, bridge two queues/topics.
    Queue(QueueArgs),
    /// Save the running stack's state (S3 objects, DynamoDB items, SQS messages, Redis keys) and
    /// load it back, here or into another engine on another machine.
    #[command(after_help = SNAPSHOT_HELP)]
    Snapshot(SnapshotArgs),
    /// Load a server on this machine step by step and measure it: a ramp of concurrency (closed
    /// loop) or of scheduled rates (open loop, latency from when each request was due).
    #[command(after_help = BENCH_HELP)]
    Bench(BenchArgs),
    /// Return once the stack is ready: it answers, every declared resource exists and the data of
    /// the last run, reset or reload is loaded (exit 4 with what is missing when --timeout runs
    /// out, or at once when loading failed); for scripts after `run --detach` or a compose `up`.
    Wait(WaitArgs),
    /// Serve the dashboard in the foreground on 127.0.0.1:8088 (--dashboard-port): the stack's
    /// services and, at /health/ready, whether it is ready (503 until data is loaded).
    Dashboard(DashboardArgs),
    /// Every declared resource with its live counts (items, objects and bytes, messages,
    /// subscriptions) and how it differs from inframock.toml.
    Resources,
    /// Every resolved setting and where it came from: flag, environment variable, inframock.toml
    /// or default.
    Config,
    /// Write a new project's files: a commented inframock.toml, data/ with an example, mocks/ with
    /// an example expectation, and .inframock/ in .gitignore (nothing existing is overwritten).
    Init(InitArgs),
    /// Print the shell completion script: `inframock completions bash > ~/.local/share/bash-completion/completions/inframock`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// `inframock dashboard`.
#[derive(Debug, Args, Clone)]
pub struct DashboardArgs {
    /// Address to listen on (default: `[services.dashboard] bind`, else 127.0.0.1). Any address
    /// other than loopback needs --token: peers on the network then present it.
    #[arg(long, env = "INFRAMOCK_DASHBOARD_BIND", value_name = "ADDR")]
    pub bind: Option<std::net::IpAddr>,
    /// The token a peer not on this machine presents: `Authorization: Bearer TOKEN`, or in a
    /// browser `/?token=TOKEN` once (kept in a cookie). Loopback peers need none.
    #[arg(
        long,
        env = "INFRAMOCK_DASHBOARD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// Examples at the end of `bench --help`.
pub const BENCH_HELP: &str = "\
Examples:
  inframock bench http://127.0.0.1:8080/ --scenario scenario.json --ramp 1..64 --out report.html
  inframock bench http://127.0.0.1:8080/api --rate-ramp 500..8000 --duration 10s --json > run.json
  inframock bench http://127.0.0.1:8080/api --ramp 1..64 --compare run.json --out compare.svg

Closed loop (--concurrency, --ramp; the default is --ramp 1..64): N workers, each sends its next
request when the previous answer arrived. Open loop (--rate, --rate-ramp): requests go out on a
schedule; latency counts from when each was due, so a server that stalls shows it (coordinated
omission corrected, as wrk2 -R does); `p99 from send` is the uncorrected figure.
Exit codes: 0 done (whatever the server answered), 1 bad flags or the URL does not answer at all.";

/// `inframock wait`
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Seconds to wait at most.
    #[arg(long, default_value_t = 60, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub timeout: u64,
}

/// `inframock init`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The stack file to start from: a minimal one (a table, a bucket, a queue, two data rules)
    /// or the Biomage stack built into the binary.
    #[arg(long, value_enum, default_value_t = InitExample::Minimal)]
    pub example: InitExample,
    /// Overwrite files that exist (inframock.toml, the examples); .gitignore is only appended to.
    #[arg(long)]
    pub force: bool,
}

/// The stack files `init` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitExample {
    /// A table, a bucket, a queue and two data rules, every setting commented.
    Minimal,
    /// The original Biomage development stack (the one used when a project has no inframock.toml).
    Biomage,
}

/// `inframock bench URL ...`
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// URL to load: http:// on 127.0.0.1, ::1 or localhost; or, on the running stack's AWS
    /// endpoint, s3://BUCKET/KEY (a signed GetObject) or dynamodb://TABLE?KEY=VALUE[&SORTKEY=VALUE]
    /// (a signed GetItem).
    pub url: String,
    /// HTTP method of every request.
    #[arg(long, short = 'm', default_value = "GET")]
    pub method: String,
    /// A request header, NAME:VALUE (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME:VALUE")]
    pub headers: Vec<String>,
    /// Request body: the text itself, or @FILE to send a file's bytes.
    #[arg(long, short = 'd', value_name = "TEXT|@FILE")]
    pub body: Option<String>,
    /// Concurrency steps, comma-separated (closed loop), e.g. 1,10,100.
    #[arg(long, value_name = "N,N,...")]
    pub concurrency: Option<String>,
    /// Concurrency ramp FROM..TO, doubling each step (closed loop; the default, 1..64).
    #[arg(long, value_name = "FROM..TO")]
    pub ramp: Option<String>,
    /// Scheduled rates in requests per second, comma-separated (open loop), e.g. 500,1000.
    #[arg(long, value_name = "R,R,...")]
    pub rate: Option<String>,
    /// Rate ramp FROM..TO requests per second, doubling each step (open loop).
    #[arg(long, value_name = "FROM..TO")]
    pub rate_ramp: Option<String>,
    /// Length of each step: 5s, 500ms, 1m (default 5s; with --requests, whichever ends first).
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Requests per step (the step ends when they were sent and answered).
    #[arg(long, value_name = "N")]
    pub requests: Option<u64>,
    /// Open loop: connections the schedule is spread over (the most requests in flight).
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub connections: u32,
    /// Longest wait for one answer; a later one counts as a timeout.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub timeout: String,
    /// Load threads, each an event loop over its share of the connections (default: the number
    /// of cores, as wrk -t).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
    /// Write the report: .html (plot and table in one file that opens offline) or .svg (the plot).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// An earlier run (its `--json` output), drawn dashed in the plot under this one.
    #[arg(long, value_name = "FILE")]
    pub compare: Option<PathBuf>,
    /// A scenario file posted to the URL's /setscenario before the run (the scenario seed's
    /// `[["BODY", STATUS, DELAY_MS], ...]`).
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
}

/// `inframock stop`
#[derive(Debug, Args, Clone, Default)]
pub struct StopArgs {
    /// With `[stack] persist = true`: stop without saving the stack's state (snapshot `persist`
    /// keeps the last save).
    #[arg(long)]
    pub no_save: bool,
}

/// Examples at the end of `snapshot --help`.
pub const SNAPSHOT_HELP: &str = "\
Examples:
  inframock snapshot save before-migration
  inframock snapshot load before-migration --replace
  inframock snapshot diff before-migration after-migration
  inframock snapshot export before-migration state.tar.zst     (then, on another machine:)
  inframock snapshot import state.tar.zst && inframock snapshot load before-migration

Snapshots live in .inframock/snapshots/NAME/: objects stored once per distinct content, items as
DynamoDB-typed JSON, messages, Redis DUMP payloads, and a manifest with the hash of every part.
A load checks every part first: a damaged snapshot is refused, naming the part, before anything
is written. `[stack] persist = true` in inframock.toml saves one named `persist` at `stop` and
loads it at the next `run`.
Exit codes: 0 done, 1 refused or failed (nothing written when refused), 3 some files failed to
load (everything else loaded).";

/// `inframock snapshot ...`
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub action: SnapshotAction,
}

/// What to do with snapshots.
#[derive(Debug, Subcommand)]
pub enum SnapshotAction {
    /// Save the running stack's state as NAME (replacing a snapshot of that name once the new one
    /// is complete). Messages are read without being consumed.
    Save {
        /// The snapshot's name (letters, digits, `.`, `_`, `-`).
        name: String,
        /// Only these services, comma-separated: s3, dynamodb, sqs, redis (default: all).
        #[arg(long, value_name = "LIST")]
        services: Option<String>,
    },
    /// Load snapshot NAME into the running stack, creating missing buckets, tables and queues.
    Load {
        /// The snapshot to load (`snapshot list` shows them).
        name: String,
        /// Each bucket, table, queue and the Redis database the snapshot holds ends up holding
        /// exactly what it holds (the default, --merge, writes the snapshot over what is there,
        /// and adds its messages to the queues).
        #[arg(long, conflicts_with = "merge")]
        replace: bool,
        /// Write the snapshot over what is there and keep the rest (the default).
        #[arg(long)]
        merge: bool,
        /// Only these services, comma-separated: s3, dynamodb, sqs, redis (default: all the
        /// snapshot holds).
        #[arg(long, value_name = "LIST")]
        services: Option<String>,
    },
    /// List the snapshots with what they hold.
    List,
    /// Remove snapshot NAME.
    Rm {
        /// The snapshot to remove.
        name: String,
    },
    /// What changed from snapshot A to snapshot B: objects, items, messages, Redis keys.
    Diff {
        /// The earlier snapshot.
        from: String,
        /// The later snapshot.
        to: String,
    },
    /// Write snapshot NAME to one file (a zstd-compressed tar) to carry it elsewhere.
    Export {
        /// The snapshot to write.
        name: String,
        /// The file to write, e.g. state.tar.zst.
        file: PathBuf,
    },
    /// The persist keeper that `run` starts with `[stack] persist_every`: saves snapshot `persist`
    /// every N seconds until the stack is gone.
    #[command(hide = true)]
    Keep {
        /// Seconds between two saves.
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
        every: u64,
    },
    /// Add a snapshot from a file `snapshot export` wrote (verified before it is added).
    Import {
        /// The file `snapshot export` wrote.
        file: PathBuf,
        /// Name it this instead of the name it was exported with.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Replace a snapshot of that name.
        #[arg(long)]
        force: bool,
    },
}

/// `inframock queue ...`
#[derive(Debug, Args)]
pub struct QueueArgs {
    #[command(subcommand)]
    pub action: QueueAction,
}

/// What to do with queues.
#[derive(Debug, Subcommand)]
pub enum QueueAction {
    /// Print every message arriving on a queue or topic of the running stack until Ctrl-C.
    /// A topic is read through a queue of its own (other subscribers still get everything); a
    /// queue's messages are consumed, unless --peek.
    Tail {
        /// Queue or topic name (or queue URL, topic ARN).
        name: String,
        /// Queue tails: read without deleting, so other consumers still get the messages (sees the
        /// messages that are visible when it polls).
        #[arg(long)]
        peek: bool,
        /// Also append the messages to .inframock/messages/NAME.jsonl.
        #[arg(long, value_name = "NAME")]
        record: Option<String>,
    },
    /// Print the messages a tail recorded (.inframock/messages/NAME.jsonl).
    Messages {
        /// The tail's name ([[tails]] name, or `tail --record NAME`).
        name: String,
    },
    /// Move every message of IN through `map(message)` of a Python file to OUT, deleting it from IN
    /// only once OUT accepted it.
    Bridge {
        /// IN: a queue or topic.
        #[arg(long)]
        from: String,
        /// OUT: a queue or topic.
        #[arg(long)]
        to: String,
        /// Python file defining map(message): returns the new body, or None to drop the message.
        #[arg(long, value_name = "FILE")]
        mapper: PathBuf,
        /// Time limit of one map() call, in milliseconds.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
        /// Seconds until a message that could not be delivered is tried again.
        #[arg(long, default_value_t = 5)]
        retry_after: i32,
        /// Attempts before a failing message goes to --dead-letter (or is given up, staying in IN).
        #[arg(long, default_value_t = crate::queues::bridge::DEFAULT_MAX_ATTEMPTS,
              value_parser = clap::value_parser!(u32).range(1..=1000))]
        max_attempts: u32,
        /// A queue that takes the messages that failed --max-attempts times, with the error.
        #[arg(long, value_name = "QUEUE")]
        dead_letter: Option<String>,
        /// Python interpreter (default: <project-dir>/.venv/bin/python3, then python3).
        #[arg(long, env = "INFRAMOCK_PYTHON", value_name = "PATH")]
        python: Option<PathBuf>,
    },
    /// Run the tails and bridges declared in inframock.toml (what `run` starts) in the foreground.
    Run,
}

/// Control API summary printed after `inframock faults --help`.
pub const FAULTS_HELP: &str = "\
The same commands over HTTP on the control port (default 8474) and as JSON lines:
  curl 'localhost:8474/mock/hiccup?msecs=500&offset=10&service=redis'
  echo '{\"command\": \"failover\", \"payload\": {\"service\": \"aws\"}}' | nc localhost 8474
Enable proxies per service in inframock.toml: [services.redis] faults = true (faults_port = 16379).";

/// `inframock faults ...`
#[derive(Debug, Args)]
pub struct FaultsArgs {
    #[command(subcommand)]
    pub action: FaultsAction,
}

/// A fault command, or `serve`.
#[derive(Debug, Subcommand)]
pub enum FaultsAction {
    /// Stall every chunk a service sends for MSECS after OFFSET bytes (msecs 0 clears).
    Hiccup {
        /// Milliseconds each stall lasts (0 clears the hiccup).
        #[arg(long)]
        msecs: u64,
        /// Bytes of each chunk that pass before the stall.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        #[command(flatten)]
        target: FaultsTarget,
    },
    /// Cut the next chunk a service sends to LIMIT bytes, then close that connection (0 clears).
    Truncate {
        /// Bytes of the next chunk that still reach the client (0: no truncation).
        #[arg(long)]
        limit: u64,
        #[command(flatten)]
        target: FaultsTarget,
    },
    /// Drop every open connection and refuse new ones until `respawn`.
    Failover {
        #[command(flatten)]
        target: FaultsTarget,
    },
    /// Accept connections again after `failover`.
    Respawn {
        #[command(flatten)]
        target: FaultsTarget,
    },
    /// Delay every chunk a service sends by MS plus up to JITTER ms (0 clears).
    Latency {
        /// Milliseconds added to every chunk (0 with jitter 0 clears).
        #[arg(long)]
        ms: u64,
        /// Up to this many more milliseconds, random per chunk.
        #[arg(long, default_value_t = 0)]
        jitter: u64,
        #[command(flatten)]
        target: FaultsTarget,
    },
    /// Fail the next COUNT connections (CouchbaseMock's opfail): answered with HTTP CODE when it
    /// is 100-599, else closed at once. COUNT < 0: every connection until reset; 0: restore.
    Opfail {
        /// Connections to fail (negative: all until reset; 0: restore).
        #[arg(long, allow_hyphen_values = true)]
        count: i64,
        /// HTTP status answered to each failed connection (default: close it without an answer).
        #[arg(long)]
        code: Option<u16>,
        #[command(flatten)]
        target: FaultsTarget,
    },
    /// Clear every fault.
    Reset {
        #[command(flatten)]
        target: FaultsTarget,
    },
    /// Show the faults in force and the connections forwarded.
    Status {
        #[command(flatten)]
        target: FaultsTarget,
    },
    /// Run fault proxies in the foreground (what `run` starts for services with `faults = true`).
    Serve(FaultsServeArgs),
}

/// Which proxies a fault command addresses.
#[derive(Debug, Args, Clone)]
pub struct FaultsTarget {
    /// Only this service's proxy (aws, redis or a declared service; default: every proxied one).
    #[arg(long)]
    pub service: Option<String>,
    /// Control URL (default: the stack's, else http://127.0.0.1:<faults-port>).
    #[arg(long, env = "INFRAMOCK_FAULTS_URL", value_name = "URL")]
    pub url: Option<String>,
}

/// Flags of `faults serve`.
#[derive(Debug, Args, Clone)]
pub struct FaultsServeArgs {
    /// A proxy: NAME=LISTEN_PORT:TARGET_HOST:TARGET_PORT (listen port 0 picks a free one). Repeatable.
    #[arg(long = "proxy", value_name = "SPEC", required = true)]
    pub proxies: Vec<String>,
}

/// API summary printed after `inframock mock --help`.
pub const MOCK_HELP: &str = "\
Admin API (answers only to 127.0.0.1 unless --admin-any-host):
  POST   /mocker/expectation   {path, path_match, method, query, request_headers, json_body,
                                response_delay, status_code, body, headers, repeat_count, handler}
                               -> 201 {\"message\": \"Mock response set successfully.\", ...}
  DELETE /mocker/expectation   {path} or {id} (404 {\"error\": \"Mock response not found.\"})
  GET    /mocker/expectations  the expectations in force, keyed by path (?format=full: every field)
  POST   /mocker/reset         back to the expectations of the mocks folder; clears journal and scenario
  GET    /mocker/requests      the journal (?path=/x or a glob, &method=GET, &limit=N)
  GET    /mocker/history       the calls as the mockserver seed lists them (api_calls, is_mocked)
  POST   /setscenario          [[\"BODY\", STATUS, DELAY_MS], ...] = the next responses of /
  GET    /requests             arrival times of the requests to / since the scenario was set";

/// One `--route` of the mock server.
#[derive(Debug, Clone)]
pub struct RouteArg {
    pub prefix: String,
    pub upstream: String,
    pub rewrite: Option<String>,
}

/// Parses `PREFIX=URL[=REWRITE]` (the URL holds no `=`; a query is not allowed in it anyway).
fn parse_route(text: &str) -> Result<RouteArg, String> {
    let mut parts = text.splitn(3, '=');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(prefix), Some(upstream), rewrite) if !prefix.is_empty() && !upstream.is_empty() => {
            Ok(RouteArg {
                prefix: prefix.to_string(),
                upstream: upstream.to_string(),
                rewrite: rewrite.map(str::to_string),
            })
        }
        _ => Err(format!(
            "{text:?} is not PREFIX=URL[=REWRITE], e.g. /mds=http://localhost:9000 or /logger=http://localhost:8082=/v2"
        )),
    }
}

/// `inframock mock`: serve (no subcommand) or query a running server.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MockArgs {
    #[command(subcommand)]
    pub action: Option<MockAction>,
    #[command(flatten)]
    pub serve: MockServeArgs,
}

/// Flags of the mock server (they override `[services.mock]` of inframock.toml).
#[derive(Debug, Args, Clone, Default)]
pub struct MockServeArgs {
    /// Forward requests without a matching expectation to this http:// URL (the catch-all of the
    /// routes).
    #[arg(long, env = "INFRAMOCK_MOCK_UPSTREAM", value_name = "URL")]
    pub upstream: Option<String>,
    /// A route: requests under PREFIX go to URL, PREFIX replaced by REWRITE when given
    /// (`/logger=http://localhost:8082=/v2`). Repeatable; before those of inframock.toml.
    #[arg(long = "route", value_name = "PREFIX=URL[=REWRITE]", value_parser = parse_route)]
    pub routes: Vec<RouteArg>,
    /// Answer PATH, when no scenario step is left, as the scenario seed's mimicked backend did:
    /// 100-600 ms, then mostly 200 {"time": ms}, sometimes invalid JSON, a 500 or no answer
    /// for 10 s (probabilities: [services.mock.flaky] in inframock.toml).
    #[arg(long, value_name = "PATH")]
    pub flaky: Option<String>,
    /// Seed of the flaky responder's choices (the same seed, the same sequence).
    #[arg(long, value_name = "N")]
    pub flaky_seed: Option<u64>,
    /// Answer scenario steps whose status is not 200 with a bare 500, as the scenario seed did.
    #[arg(long)]
    pub scenario_errors_as_500: bool,
    /// Folder of *.json expectations loaded at start (default <project-dir>/mocks).
    #[arg(long, env = "INFRAMOCK_MOCKS", value_name = "DIR")]
    pub mocks: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1).
    #[arg(long, env = "INFRAMOCK_MOCK_BIND", value_name = "ADDR")]
    pub bind: Option<std::net::IpAddr>,
    /// Answer admin routes from any address, not only 127.0.0.1.
    #[arg(long)]
    pub admin_any_host: bool,
    /// Requests kept in the journal (default 10000).
    #[arg(long, env = "INFRAMOCK_MOCK_JOURNAL_SIZE", value_name = "N")]
    pub journal_size: Option<usize>,
    /// Python interpreter of handlers (default: <project-dir>/.venv/bin/python3, then python3).
    #[arg(long, env = "INFRAMOCK_PYTHON", value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Seconds to connect to the upstream, and again to wait for its answer, then 504 (default
    /// 30, or upstream_timeout_ms of [services.mock]).
    #[arg(long, env = "INFRAMOCK_UPSTREAM_TIMEOUT", value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub upstream_timeout: Option<u64>,
    /// Most requests in flight to the upstream; beyond it a 503 at once, never queued.
    #[arg(long, env = "INFRAMOCK_UPSTREAM_LIMIT", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub upstream_limit: Option<u64>,
    /// Milliseconds after which a second identical request goes to the upstream when the first
    /// has not answered; the first good answer wins.
    #[arg(long, env = "INFRAMOCK_UPSTREAM_HEDGE_AFTER_MS", value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub upstream_hedge_after_ms: Option<u64>,
    /// Seconds a client may take to send a request's headers before the connection is closed.
    #[arg(long, env = "INFRAMOCK_HEADER_TIMEOUT", value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,
    /// Connections served at once; more are closed at once (so slow clients cannot starve it).
    #[arg(long, env = "INFRAMOCK_MAX_CONNECTIONS", value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub max_connections: u64,
}

/// Questions to a running mock server.
#[derive(Debug, Subcommand)]
pub enum MockAction {
    /// Print the request journal.
    Requests(MockRequestsArgs),
    /// Print the expectations in force.
    Expectations(MockUrlArgs),
}

/// Which mock server to ask.
#[derive(Debug, Args, Clone)]
pub struct MockUrlArgs {
    /// Base URL of the mock server (default: the stack's mock service, else http://127.0.0.1:<mock-port>).
    #[arg(long, env = "INFRAMOCK_MOCK_URL", value_name = "URL")]
    pub url: Option<String>,
}

/// Flags of `mock requests`.
#[derive(Debug, Args, Clone)]
pub struct MockRequestsArgs {
    #[command(flatten)]
    pub target: MockUrlArgs,
    /// Only requests to this path (a glob when it holds `*`).
    #[arg(long)]
    pub path: Option<String>,
    /// Only requests with this method.
    #[arg(long)]
    pub method: Option<String>,
    /// Only the last N requests.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

/// Flags of `run`.
#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    /// Return once the stack is ready; the services keep running (stop them with `inframock stop`).
    #[arg(short, long, env = "INFRAMOCK_DETACH", value_parser = Switch("INFRAMOCK_DETACH"))]
    pub detach: bool,
    /// Do not load the data folder (same as POPULATE_MOCK=false).
    #[arg(long)]
    pub no_populate: bool,
    /// Start new processes or containers instead of reusing running ones (drops their data).
    #[arg(long, env = "INFRAMOCK_FRESH", value_parser = Switch("INFRAMOCK_FRESH"))]
    pub fresh: bool,
    /// Connect to a test harness at HOST:PORT, send it the AWS edge port (ASCII, then NUL), take
    /// fault commands as JSON lines from it, and stop the stack when it closes the connection.
    #[arg(
        long,
        env = "INFRAMOCK_HARAKIRI_MONITOR",
        value_name = "HOST:PORT",
        conflicts_with = "detach"
    )]
    pub harakiri_monitor: Option<String>,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// Flags of `reset`.
#[derive(Debug, Args, Clone, Default)]
pub struct ResetArgs {
    /// Leave the tables and buckets empty: do not load the data folder.
    #[arg(long)]
    pub no_data: bool,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// Flags of `reload-data`.
#[derive(Debug, Args, Clone, Default)]
pub struct ReloadArgs {
    #[command(flatten)]
    pub load: LoadArgs,
}

/// Flags shared by every command that loads data.
#[derive(Debug, Args, Clone, Default)]
pub struct LoadArgs {
    /// Load only this experiment (a folder name under the data folder). Repeatable.
    #[arg(long = "experiment", value_name = "ID")]
    pub experiments: Vec<String>,
    /// Decide every file as the load would (new, changed, missing, unchanged, would fail) and
    /// write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write every file, even those proven to be loaded already.
    #[arg(long)]
    pub force: bool,
}

/// Flags of `logs`.
#[derive(Debug, Args, Clone)]
pub struct LogsArgs {
    /// The service whose log to print: aws, redis, mock, faults, queues or a declared one
    /// (default: every service of the stack, each line after its name).
    pub service: Option<String>,
    /// Keep printing new lines as they are written.
    #[arg(short, long)]
    pub follow: bool,
    /// Number of last lines to print first.
    #[arg(short = 'n', long, default_value_t = 50)]
    pub lines: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command and every argument of every command says what it is for in `--help`.
    #[test]
    fn every_command_and_argument_is_described() {
        fn visit(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", command.get_name());
            if command.get_about().is_none() && path != " inframock" {
                missing.push(path.clone());
            }
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                visit(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        visit(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "without a description: {missing:?}");
    }

    /// A command's own options come first; the flags every command shares follow under their
    /// own heading.
    #[test]
    fn help_lists_the_commands_options_before_the_global_ones() {
        let mut command = Cli::command();
        command.build();
        let help = command
            .find_subcommand_mut("reload-data")
            .expect("reload-data")
            .render_help()
            .to_string();
        let own = help.find("--dry-run").expect("own option");
        let heading = help.find("Global options:").expect("global heading");
        let global = help.find("--aws-port").expect("global option");
        assert!(own < heading && heading < global, "{help}");
    }
}
