//! Test support: a throw-away project folder, the inframock binary run inside it against real
//! moto_server and redis-server processes on free ports, and AWS SDK clients to check the result.
//! Every stack a test starts is stopped when its `Project` is dropped (by the PIDs in state.json).

#![allow(dead_code)]

pub mod browser;
pub mod http;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;

/// The AWS engine the suite runs against: `INFRAMOCK_TEST_ENGINE` (`make test` runs the
/// conformance modules once more with `ministack`), else moto.
pub fn engine() -> String {
    std::env::var("INFRAMOCK_TEST_ENGINE")
        .ok()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "moto".to_string())
}

/// The program of the engine under test (`moto_server`, `ministack`).
pub fn engine_program() -> &'static str {
    match engine().as_str() {
        "ministack" => "ministack",
        _ => "moto_server",
    }
}

/// The route that wipes the engine under test (what `inframock reset` calls, and what test suites
/// call behind inframock's back).
pub fn engine_reset_path() -> &'static str {
    match engine().as_str() {
        "ministack" => "/_ministack/reset",
        _ => "/moto-api/reset",
    }
}

/// Whether process `pid` is an engine serving `port`: moto takes the port as an argument,
/// MiniStack as `GATEWAY_PORT` in its environment.
pub fn serves_port(pid: u32, port: u16) -> bool {
    let has = |file: &str, needle: &str| {
        std::fs::read(format!("/proc/{pid}/{file}"))
            .map(|c| text(&c).contains(needle))
            .unwrap_or(false)
    };
    match engine().as_str() {
        "ministack" => {
            has("environ", &format!("GATEWAY_PORT={port}\0")) && has("cmdline", "ministack")
        }
        _ => has("cmdline", &format!("\0{port}")),
    }
}

/// Fails the test (never skips it) when a server binary is missing, with the install hint.
pub fn require_servers() {
    let has = |name: &str| {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
            .unwrap_or(false)
    };
    let program = engine_program();
    let aws = std::env::var_os("INFRAMOCK_MOTO_SERVER").is_some() || has(program);
    assert!(
        aws,
        "{program} is required by the integration tests: run `make setup` (installs the engines into .venv) and put .venv/bin on PATH, or set INFRAMOCK_MOTO_SERVER"
    );
    assert!(
        has("redis-server"),
        "redis-server is required by the integration tests: `apt-get install redis-server`"
    );
}

/// A temporary project folder.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    /// An empty project (built-in stack file, no data folder).
    pub fn new() -> Project {
        require_servers();
        Project {
            dir: tempfile::Builder::new()
                .prefix("inframock-test-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file (creating folders) relative to the project.
    pub fn write(&self, relative: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, contents).expect("write");
        path
    }

    /// The inframock command, run in the project with a clean environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_inframock"));
        command.current_dir(self.path()).args(args);
        for (key, _) in std::env::vars() {
            let inherited_setting = key.starts_with("INFRAMOCK_") && key != "INFRAMOCK_MOTO_SERVER";
            if inherited_setting
                || key.starts_with("AWS_")
                || [
                    "CLUSTER_ENV",
                    "BIOMAGE_DATA_PATH",
                    "POPULATE_MOCK",
                    "REDIS_URL",
                ]
                .contains(&key.as_str())
            {
                command.env_remove(key);
            }
        }
        command.env("INFRAMOCK_ENGINE", engine());
        command
    }

    /// Runs inframock and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("inframock runs")
    }

    /// Runs inframock, asserts success, parses stdout as JSON.
    pub fn run_json(&self, args: &[&str]) -> serde_json::Value {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "inframock {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            output.status,
            text(&output.stdout),
            text(&output.stderr)
        );
        let document = envelope(&output.stdout);
        assert_eq!(document["ok"], true, "inframock {args:?}: {document}");
        document["data"].clone()
    }

    /// `run --detach --json` on free ports plus `extra`; returns the raw output (any exit code).
    pub fn start_output(&self, extra: &[&str]) -> Output {
        self.run(&start_args(extra))
    }

    /// `run --detach --json` on free ports plus `extra`; asserts success and returns the report.
    pub fn start(&self, extra: &[&str]) -> serde_json::Value {
        self.run_json(&start_args(extra))
    }

    /// The recorded state.
    pub fn state(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path().join(".inframock/state.json"))
            .expect("state.json exists");
        serde_json::from_str(&text).expect("state.json is JSON")
    }

    /// The record of a service of the running stack.
    pub fn service(&self, name: &str) -> serde_json::Value {
        let state = self.state();
        state["services"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} is recorded in {state}"))
    }

    /// The port of a service of the running stack.
    pub fn port_of(&self, name: &str) -> u16 {
        let record = self.service(name);
        record["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("a port in {record}"))
    }

    /// The AWS endpoint of the running stack.
    pub fn endpoint(&self) -> String {
        self.service("aws")["url"]
            .as_str()
            .expect("aws service recorded")
            .to_string()
    }

    /// PIDs recorded in the state file.
    pub fn pids(&self) -> Vec<u32> {
        self.state()["services"]
            .as_array()
            .expect("services")
            .iter()
            .filter_map(|s| s["pid"].as_u64().map(|p| p as u32))
            .collect()
    }
}

/// A command's `--json` output: checks it is the one document every command prints
/// (`{"schema": 1, "command", "ok", "data", "warnings", "error"}`) and returns it whole.
pub fn envelope(stdout: &[u8]) -> serde_json::Value {
    let document: serde_json::Value = serde_json::from_slice(stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", text(stdout)));
    assert_eq!(document["schema"], 1, "{document}");
    for key in ["command", "ok", "data", "warnings", "error"] {
        assert!(document.get(key).is_some(), "no `{key}` in {document}");
    }
    assert_eq!(
        document["ok"] == true,
        document["error"].is_null(),
        "an error exactly when not ok: {document}"
    );
    document
}

/// The `data` of a command's `--json` document.
pub fn data_of(stdout: &[u8]) -> serde_json::Value {
    envelope(stdout)["data"].clone()
}

/// `run --detach --json` on free ports plus `extra`.
pub fn start_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "--detach",
        "--json",
        "--aws-port",
        "0",
        "--redis-port",
        "0",
    ];
    args.extend_from_slice(extra);
    args
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`; fails the test with
/// "`what` did not listen on `port`" after `within`.
pub fn wait_for_listener(port: u16, within: std::time::Duration, what: &str) {
    let deadline = std::time::Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not listen on {port} within {within:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `run --detach --json` of `project` into the already running `endpoint` (the external runtime).
pub fn external_run(project: &Project, endpoint: &str) -> Command {
    project.command(&[
        "run",
        "--detach",
        "--json",
        "--runtime",
        "external",
        "--endpoint-url",
        endpoint,
    ])
}

/// The repository's own `inframock.toml` and `data/` in a new project, with the mock server, a
/// fault proxy in front of Redis and the dashboard on, plus `extra` lines of stack file.
pub fn repository_project(extra: &str) -> Project {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let project = Project::new();
    let stack = std::fs::read_to_string(root.join("inframock.toml")).expect("inframock.toml");
    let redis = "[services.redis]\nport = 6379\n";
    assert!(stack.contains(redis), "inframock.toml declares {redis:?}");
    let stack = stack.replace(redis, "[services.redis]\nport = 6379\nfaults = true\n")
        + "\n[services.mock]\nenabled = true\n\n[services.dashboard]\nenabled = true\n"
        + extra;
    project.write("inframock.toml", stack);
    copy_tree(&root.join("data"), &project.path().join("data"));
    project
}

impl Project {
    /// `run --detach` of a [`repository_project`] on free ports (the mock's, the dashboard's and
    /// the fault control's too); returns the fault control port.
    pub fn start_repository_stack(&self) -> u16 {
        let faults_port = free_port();
        self.start(&[
            "--mock-port",
            "0",
            "--dashboard-port",
            "0",
            "--faults-port",
            &faults_port.to_string(),
        ]);
        faults_port
    }
}

/// Copies a folder tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if self.path().join(".inframock/state.json").exists() {
            let _ = self.run(&["stop"]);
        }
    }
}

/// A moto_server of a test's own on 127.0.0.1:`port` (`extra` arguments, e.g. TLS files), once it
/// listens; stopped when dropped.
pub struct MotoProcess(std::process::Child);

impl MotoProcess {
    pub fn start(port: u16, extra: &[&str]) -> MotoProcess {
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto_server (make setup puts it in .venv)");
        let moto = MotoProcess(child);
        wait_for_listener(port, std::time::Duration::from_secs(30), "moto_server");
        moto
    }
}

impl Drop for MotoProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nothing listens on (the kernel's pick, released at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Lossy UTF-8.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether a process runs (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next()),
            Some("Z") | Some("X")
        ),
        Err(_) => false,
    }
}

/// SDK clients for a local endpoint.
pub struct Clients {
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
}

/// Builds SDK clients for `endpoint` (region eu-west-1, dummy credentials, path-style S3).
pub fn clients(runtime: &tokio::runtime::Runtime, endpoint: &str) -> Clients {
    let shared = runtime.block_on(
        aws_config::defaults(BehaviorVersion::latest())
            .http_client(sdk_http_client())
            .region(aws_config::Region::new("eu-west-1"))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
            .load(),
    );
    let s3 = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(true)
        .build();
    Clients {
        s3: aws_sdk_s3::Client::from_conf(s3),
        dynamodb: aws_sdk_dynamodb::Client::new(&shared),
        sqs: aws_sdk_sqs::Client::new(&shared),
        sns: aws_sdk_sns::Client::new(&shared),
    }
}

/// The SDK's HTTP(S) client on rustls over *ring*, the one crypto provider the crate builds (the
/// SDK's default client needs AWS-LC, which inframock leaves out).
pub fn sdk_http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// A runtime for SDK calls in a synchronous test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Gzips bytes.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// Gzips each part as its own gzip member, concatenated (as `cat a.gz b.gz` makes).
pub fn gzip_members(parts: &[&[u8]]) -> Vec<u8> {
    parts.iter().flat_map(|part| gzip(part)).collect()
}

/// Deterministic pseudo-random bytes (xorshift), so tests need no RNG crate.
pub fn noise(length: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.max(1);
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The body of an S3 object.
pub fn object(
    runtime: &tokio::runtime::Runtime,
    clients: &Clients,
    bucket: &str,
    key: &str,
) -> Vec<u8> {
    runtime.block_on(async {
        let output = clients
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get s3://{bucket}/{key}: {e:?}"));
        output
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .to_vec()
    })
}

/// A plain HTTP/1.0 GET against a local endpoint (moto does not check signatures), for the few
/// S3 answers whose XML the Rust SDK cannot decode from moto (GetBucketVersioning).
pub fn http_get(endpoint: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let address = endpoint
        .trim_start_matches("http://")
        .replace("localhost", "127.0.0.1");
    let mut stream = std::net::TcpStream::connect(&address).expect("connect");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

/// A plain HTTP/1.0 POST with an empty body (moto's `/moto-api/reset`); the whole answer.
pub fn http_post(endpoint: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let address = endpoint
        .trim_start_matches("http://")
        .replace("localhost", "127.0.0.1");
    let mut stream = std::net::TcpStream::connect(&address).expect("connect");
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: {address}\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}
