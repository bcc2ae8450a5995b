//! The docker runtime against the real Docker engine, with the stand-in images built offline by
//! tests/docker/build-standin-images.sh (`make docker-images`): run, resources, data, status, logs,
//! reuse, --fresh, stop, a container that exits at start, a port already taken, and pulling (with
//! progress) from a local registry started by the test.
//!
//! Without a Docker engine these tests fail in CI (CI=true) and are skipped locally with a message.

use std::process::{Command, Stdio};

use crate::support::{clients, gzip, noise, object, runtime, text, Project};

const AWS_IMAGE: &str = "inframock-test/aws";
const REDIS_IMAGE: &str = "inframock-test/redis";

/// Whether the tests can run; panics in CI when the engine or the images are missing.
fn docker_ready() -> bool {
    let engine = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !engine {
        assert!(
            std::env::var_os("CI").is_none(),
            "no Docker engine answers (DOCKER_HOST or /var/run/docker.sock): the docker runtime tests need one in CI"
        );
        eprintln!("skipped: no Docker engine answers");
        return false;
    }
    for image in [
        AWS_IMAGE,
        REDIS_IMAGE,
        "inframock-test/crash",
        "inframock-test/memcached",
        "inframock-test/postgres",
    ] {
        let present = Command::new("docker")
            .args(["image", "inspect", image])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            present,
            "stand-in image {image} is missing: run `make docker-images` (tests/docker/build-standin-images.sh)"
        );
    }
    true
}

fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    text(&output.stdout)
}

/// Ids of containers labelled with a project.
fn containers_of(project: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("label=inframock.project={project}"),
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

fn project_name(project: &Project) -> String {
    project
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn docker_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--runtime",
        "docker",
        "--aws-image",
        AWS_IMAGE,
        "--redis-image",
        REDIS_IMAGE,
    ];
    args.extend_from_slice(extra);
    args
}

/// A fresh project for a docker test, its containers removed when the `Cleanup` drops; `None`
/// when the tests cannot run here (see `docker_ready`).
fn docker_project() -> Option<(Project, String, Cleanup)> {
    if !docker_ready() {
        return None;
    }
    let project = Project::new();
    let name = project_name(&project);
    let cleanup = Cleanup(name.clone());
    Some((project, name, cleanup))
}

/// Stops the project's containers even when a test failed half-way.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for id in containers_of(&self.0) {
            docker(&["rm", "-f", &id]);
        }
        docker(&["network", "rm", &network_of(&self.0)]);
    }
}

/// Whether the project's network exists.
fn network_exists(project: &str) -> bool {
    !docker(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("name=^{}$", network_of(project)),
    ])
    .trim()
    .is_empty()
}

#[test]
fn docker_runtime_runs_loads_reuses_and_stops() {
    let Some((project, name, _cleanup)) = docker_project() else {
        return;
    };
    let rds = noise(200_000, 11);
    project.write("data/e1/r.rds.gz", gzip(&rds));
    project.write(
        "data/e1/mock_experiment.json",
        r#"{"experimentId": "e1", "n": 1.50}"#,
    );

    let first = project.start(&docker_args(&[]));
    assert_eq!(first["runtime"], "docker");
    assert_eq!(first["resources"].as_array().unwrap().len(), 12);
    assert_eq!(first["data"]["total"]["objects"], 1, "{}", first["data"]);
    assert_eq!(first["data"]["total"]["items"], 1);
    let ids = containers_of(&name);
    assert_eq!(ids.len(), 2, "one container per service");
    for id in &ids {
        let labels = docker(&[
            "inspect",
            "--format",
            "{{index .Config.Labels \"inframock.managed\"}}",
            id,
        ]);
        assert_eq!(labels.trim(), "true");
        let host_ip = docker(&[
            "inspect",
            "--format",
            "{{range $p, $b := .NetworkSettings.Ports}}{{range $b}}{{.HostIp}}{{end}}{{end}}",
            id,
        ]);
        assert_eq!(
            host_ip.trim(),
            "127.0.0.1",
            "ports are published on loopback only"
        );
    }
    let network = docker(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("name={}", network_of(&name)),
    ]);
    assert!(!network.trim().is_empty(), "the project network exists");

    let rt = runtime();
    let aws = clients(&rt, &project.endpoint());
    assert_eq!(
        object(&rt, &aws, "biomage-source-development", "e1/r.rds"),
        rds
    );

    let status = project.run_json(&["status", "--json"]);
    assert_eq!(status["healthy"], true, "{status}");
    assert_eq!(status["runtime"], "docker");
    assert!(status["services"][0]["container"].is_string());

    let logs = project.run(&["logs", "aws", "-n", "50"]);
    assert!(logs.status.success(), "{}", text(&logs.stderr));
    assert!(
        text(&logs.stdout).contains("Running on"),
        "moto's startup line: {}",
        text(&logs.stdout)
    );

    let second = project.start(&docker_args(&[]));
    assert_eq!(second["reused"], serde_json::json!(["aws", "redis"]));
    let mut again = containers_of(&name);
    let mut before = ids.clone();
    again.sort();
    before.sort();
    assert_eq!(again, before, "no recreate");
    assert_eq!(
        second["data"]["total"]["unchanged"], 2,
        "data kept: nothing to load again"
    );
    assert_eq!(
        object(&rt, &aws, "biomage-source-development", "e1/r.rds"),
        rds
    );

    let fresh = project.start(&docker_args(&["--fresh"]));
    assert!(fresh["reused"].as_array().unwrap().is_empty());
    let recreated = containers_of(&name);
    assert_eq!(recreated.len(), 2);
    assert!(
        recreated.iter().all(|id| !ids.contains(id)),
        "--fresh recreates both"
    );
    assert_eq!(
        fresh["data"]["total"]["objects"], 1,
        "a fresh stack is loaded again"
    );

    let stop = project.run(&["stop"]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    assert!(
        containers_of(&name).is_empty(),
        "no container with our labels is left"
    );
    let network = docker(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("name={}", network_of(&name)),
    ]);
    assert!(network.trim().is_empty(), "network removed");
}

#[test]
fn a_container_that_exits_at_start_shows_its_code_and_logs() {
    let Some((project, name, _cleanup)) = docker_project() else {
        return;
    };
    let output = project.start_output(&[
        "--no-populate",
        "--runtime",
        "docker",
        "--aws-image",
        "inframock-test/crash",
        "--redis-image",
        REDIS_IMAGE,
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("aws container exited while starting (exit code 55)"),
        "{stderr}"
    );
    assert!(stderr.contains("LOCALSTACK_AUTH_TOKEN"), "{stderr}");
    assert!(
        stderr.contains("boom: this stand-in refuses to start"),
        "{stderr}"
    );
    assert!(
        containers_of(&name).is_empty(),
        "nothing half-started is left"
    );
    assert!(!network_exists(&name), "no network left behind");
}

#[test]
fn a_taken_port_is_refused_before_any_container_starts() {
    let Some((project, name, _cleanup)) = docker_project() else {
        return;
    };
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = project.run(&docker_args(&[
        "run",
        "--detach",
        "--aws-port",
        "0",
        "--redis-port",
        &port,
    ]));
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("port {port} (--redis-port) is already in use")),
        "{stderr}"
    );
    assert!(containers_of(&name).is_empty());
    assert!(!network_exists(&name), "no network left behind");
}

/// A registry on 127.0.0.1 (Debian's docker-registry), stopped by PID on drop.
struct Registry {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let binary = ["/usr/bin/docker-registry", "/usr/bin/registry"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("the pull test needs a local registry: apt-get install docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("storage").display()
            ),
        )
        .unwrap();
        let child = Command::new(binary)
            .args(["serve", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        crate::support::wait_for_listener(port, std::time::Duration::from_secs(20), "the registry");
        Registry {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn missing_images_are_pulled_with_per_layer_progress() {
    if !docker_ready() {
        return;
    }
    let registry = Registry::start();
    let image = format!("127.0.0.1:{}/inframock-test/redis:pulltest", registry.port);
    // An image of one small layer of its own, so the pull transfers it (shared layers say "Already
    // exists"): redis-server and the libraries it links, taken from the stand-in image. Pushing
    // an image built on the stand-in's 800 MB base took most of this test's 40 s.
    let made = Command::new("bash")
        .args([
            "-c",
            &format!(
                "set -o pipefail; docker run --rm {REDIS_IMAGE} sh -c 'tar -ch $(ldd /usr/bin/redis-server | grep -o \"/[^ ]*\") /usr/bin/redis-server 2>/dev/null' \
                 | docker import --change 'CMD [\"/usr/bin/redis-server\", \"--bind\", \"0.0.0.0\", \"--protected-mode\", \"no\", \"--save\", \"\"]' - {image}"
            ),
        ])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    let push = Command::new("docker")
        .args(["push", &image])
        .output()
        .unwrap();
    assert!(
        push.status.success(),
        "push to the local registry: {}",
        text(&push.stderr)
    );
    docker(&["rmi", &image]);

    let project = Project::new();
    let name = project_name(&project);
    let _cleanup = Cleanup(name.clone());
    let output = project.start_output(&[
        "--no-populate",
        "--runtime",
        "docker",
        "--aws-image",
        AWS_IMAGE,
        "--redis-image",
        &image,
    ]);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("pulling {image}")), "{stderr}");
    assert!(
        stderr.contains("Pull complete"),
        "per-layer progress: {stderr}"
    );
    let project_stop = project.run(&["stop"]);
    assert!(project_stop.status.success());
    docker(&["rmi", &image]);
}

/// The project's network name (sanitized: lowercase).
fn network_of(project: &str) -> String {
    format!("inframock-{}", project.to_lowercase())
}

#[test]
fn foreground_run_removes_its_containers_on_interrupt() {
    let Some((project, name, _cleanup)) = docker_project() else {
        return;
    };
    let mut args = docker_args(&[
        "run",
        "--no-populate",
        "--aws-port",
        "0",
        "--redis-port",
        "0",
    ]);
    args.push("--json");
    let mut child = project
        .command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The JSON report is printed once the stack is ready and the resources exist.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let report = crate::support::data_of(line.as_bytes());
    assert_eq!(report["runtime"], "docker");
    assert_eq!(containers_of(&name).len(), 2);
    // SAFETY: interrupting the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(child.wait().unwrap().success());
    assert!(
        containers_of(&name).is_empty(),
        "Ctrl-C removes what run started"
    );
    assert!(!network_exists(&name), "and its network");
    assert!(!project.path().join(".inframock/state.json").exists());
}

#[test]
fn mock_server_and_fault_proxy_run_beside_the_containers_and_stop_with_them() {
    let Some((project, name, _cleanup)) = docker_project() else {
        return;
    };
    project.write(
        "inframock.toml",
        "[services.mock]\nenabled = true\n\n[services.redis]\nfaults = true\n",
    );
    project.write(
        "mocks/ping.json",
        r#"{"path": "/ping", "status_code": 200, "body": "pong"}"#,
    );
    project.start(&docker_args(&[
        "--mock-port",
        "0",
        "--faults-port",
        "0",
        "--no-populate",
    ]));
    assert_eq!(containers_of(&name).len(), 2);
    let state = project.state();
    let services = state["services"].as_array().unwrap();
    let record = |service: &str| {
        services
            .iter()
            .find(|s| s["name"] == service)
            .cloned()
            .unwrap_or_else(|| panic!("{service} recorded: {state}"))
    };
    let mock = record("mock");
    let faults = record("faults");
    assert_eq!(mock["runtime"], "local", "our helpers are processes");
    let response = crate::support::http_get(mock["url"].as_str().unwrap(), "/ping");
    assert!(response.ends_with("pong"), "{response}");
    // Redis in its container, through the proxy.
    let proxy = state["fault_proxies"][0]["port"].as_u64().unwrap();
    let client = redis::Client::open(format!("redis://127.0.0.1:{proxy}/")).unwrap();
    let mut connection = client.get_connection().expect("redis through the proxy");
    let pong: String = redis::cmd("PING").query(&mut connection).unwrap();
    assert_eq!(pong, "PONG");
    let logs = project.run(&["logs", "mock", "-n", "5"]);
    assert!(
        crate::support::text(&logs.stdout).contains("mock server listening"),
        "{}",
        crate::support::text(&logs.stderr)
    );
    let stop = project.run(&["stop"]);
    assert!(
        stop.status.success(),
        "{}",
        crate::support::text(&stop.stderr)
    );
    assert!(containers_of(&name).is_empty());
    for helper in [mock, faults] {
        let pid = helper["pid"].as_u64().unwrap() as u32;
        assert!(!crate::support::alive(pid), "{} still runs", helper["name"]);
    }
}

#[test]
fn declared_services_run_as_containers_behind_fault_proxies_and_stop() {
    let Some((project, name, _cleanup)) = docker_project() else {
        return;
    };
    project.write(
        "inframock.toml",
        r#"[services.cache]
preset = "memcached"
image = "inframock-test/memcached"
port = 0
faults = true
faults_port = 0

[services.db]
preset = "postgres"
image = "inframock-test/postgres"
port = 0
faults = true
faults_port = 0
"#,
    );
    // No engine named (the harness names one for every other command): the docker runtime keeps
    // the engine it ran before engines could be chosen, LocalStack (here its stand-in image).
    let start = crate::support::start_args(&docker_args(&["--no-populate", "--faults-port", "0"]));
    let started = project
        .command(&start)
        .env_remove("INFRAMOCK_ENGINE")
        .output()
        .expect("inframock runs");
    assert!(started.status.success(), "{}", text(&started.stderr));
    assert_eq!(containers_of(&name).len(), 4, "aws, redis, cache, db");
    let env = project.run_json(&["env", "--json"]);
    let memcached = env["MEMCACHED_URL"]
        .as_str()
        .expect("MEMCACHED_URL")
        .to_string();
    let proxy_port: u16 = memcached.rsplit(':').next().unwrap().parse().unwrap();
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", proxy_port)).expect("through the proxy");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    use std::io::{BufRead, Write};
    stream
        .write_all(b"set k 0 0 2\r\nhi\r\nincr n 1\r\n")
        .unwrap();
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "STORED");
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim(),
        "NOT_FOUND",
        "memcached answers incr of a missing key"
    );

    let database = env["DATABASE_URL"]
        .as_str()
        .expect("DATABASE_URL")
        .to_string();
    let db_proxy = project.state()["fault_proxies"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["service"] == "db"))
        .and_then(|p| p["port"].as_u64())
        .expect("db behind a fault proxy");
    assert!(database.contains(&format!(":{db_proxy}/")), "{database}");
    let output = Command::new("psql")
        .args([database.as_str(), "-tAc", "SELECT 40 + 2"])
        .output()
        .expect("psql");
    assert_eq!(
        text(&output.stdout).trim(),
        "42",
        "{}",
        text(&output.stderr)
    );

    let status = project.run_json(&["status", "--json"]);
    let kinds: Vec<(String, String)> = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap().to_string(),
                s["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("cache".into(), "memcached".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("aws".into(), "localstack".into())),
        "no engine named: the docker runtime runs LocalStack, as before engines: {kinds:?}"
    );
    assert!(
        kinds.contains(&("db".into(), "postgres".into())),
        "{kinds:?}"
    );
    assert!(status["healthy"].as_bool().unwrap_or(false), "{status}");
    let stop = project.run(&["stop"]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    assert!(
        containers_of(&name).is_empty(),
        "stop removes every container"
    );
}

#[test]
fn auto_reuses_a_running_docker_stack_and_remembers_an_image_it_could_not_pull() {
    let Some((project, _name, _cleanup)) = docker_project() else {
        return;
    };
    // Nothing listens there: the pull fails at once, auto falls back to local and remembers why.
    let unpullable = format!(
        "127.0.0.1:{}/inframock-test/missing:1",
        crate::support::free_port()
    );
    let auto = ["--no-populate", "--aws-image", AWS_IMAGE, "--redis-image"];
    let mut first_args = auto.to_vec();
    first_args.push(&unpullable);
    let first = project.start_output(&first_args);
    let stderr = text(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("pulling {unpullable}"))
            && stderr.contains("could not be pulled")
            && stderr.contains("using local processes"),
        "{stderr}"
    );
    let memory: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.path().join(".inframock/runtime.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(memory["runtime"], "local", "{memory}");
    assert_eq!(memory["unpullable"], unpullable.as_str(), "{memory}");
    assert!(project.run(&["stop"]).status.success());

    // The next run does not wait for the registry again: it says why it goes local at once.
    let second = project.start_output(&first_args);
    let stderr = text(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert!(
        stderr.contains("as on the last run") && !stderr.contains("pulling"),
        "{stderr}"
    );
    assert_eq!(project.state()["runtime"], "local");
    assert!(project.run(&["stop"]).status.success());

    // A stack running on docker is reused by auto before any image is looked at.
    project.start(&docker_args(&["--no-populate"]));
    let mut reuse_args = auto.to_vec();
    reuse_args.push(REDIS_IMAGE);
    let reused = project.start_output(&reuse_args);
    let stderr = text(&reused.stderr);
    assert!(reused.status.success(), "{stderr}");
    assert!(
        stderr.contains("runs on the docker runtime; reusing it") && !stderr.contains("pulling"),
        "{stderr}"
    );
    assert_eq!(project.state()["runtime"], "docker");
    assert!(project.run(&["stop"]).status.success());
}
