//! Fault proxies and the harakiri monitor against the real stack (moto_server, redis-server started
//! by `inframock run`): each fault is observed with a real Redis client and an AWS SDK client.
//! Delays are asserted as lower bounds only.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::Project;
use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use serde_json::Value;

const FAULTY_STACK: &str = "[services.aws]\nfaults = true\n\n[services.redis]\nfaults = true\n";

/// A project whose aws and redis run behind fault proxies, all on free ports.
fn faulty_project() -> Project {
    let project = Project::new();
    project.write("inframock.toml", FAULTY_STACK);
    project.start(&["--no-populate", "--faults-port", "0"]);
    project
}

/// The port recorded for `name` in a list of state.json: `fault_proxies` (by `service`) or
/// `services` (by `name`).
fn recorded_port(project: &Project, list: &str, key: &str, name: &str) -> u16 {
    project.state()[list]
        .as_array()
        .unwrap_or_else(|| panic!("{list} recorded"))
        .iter()
        .find(|entry| entry[key] == name)
        .and_then(|entry| entry["port"].as_u64())
        .unwrap_or_else(|| panic!("{name} in {list}")) as u16
}

/// The port clients use: the service's fault proxy.
fn proxy_port(project: &Project, service: &str) -> u16 {
    recorded_port(project, "fault_proxies", "service", service)
}

/// The port a service of the stack listens on (its own, not its proxy's).
fn service_port(project: &Project, service: &str) -> u16 {
    recorded_port(project, "services", "name", service)
}

fn faults(project: &Project, args: &[&str]) {
    let mut all = vec!["faults"];
    all.extend_from_slice(args);
    let output = project.run(&all);
    assert!(
        output.status.success(),
        "inframock {all:?}: {}",
        crate::support::text(&output.stderr)
    );
}

fn redis_connection(port: u16) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    client.get_connection_with_timeout(Duration::from_secs(5))
}

fn redis_get(connection: &mut redis::Connection) -> redis::RedisResult<String> {
    redis::cmd("GET").arg("greeting").query(connection)
}

#[test]
fn redis_through_the_proxy_sees_each_fault() {
    let project = faulty_project();
    let port = proxy_port(&project, "redis");
    let mut connection = redis_connection(port).expect("connect through the proxy");
    redis::cmd("SET")
        .arg("greeting")
        .arg("hello world")
        .query::<()>(&mut connection)
        .unwrap();
    assert_eq!(redis_get(&mut connection).unwrap(), "hello world");

    // hiccup: the answer stalls after `offset` bytes.
    faults(
        &project,
        &[
            "hiccup",
            "--msecs",
            "400",
            "--offset",
            "3",
            "--service",
            "redis",
        ],
    );
    let began = Instant::now();
    assert_eq!(redis_get(&mut connection).unwrap(), "hello world");
    assert!(began.elapsed() >= Duration::from_millis(400));

    // latency: every answer waits.
    faults(&project, &["reset"]);
    faults(&project, &["latency", "--ms", "300", "--service", "redis"]);
    let began = Instant::now();
    assert_eq!(redis_get(&mut connection).unwrap(), "hello world");
    assert!(began.elapsed() >= Duration::from_millis(300));
    faults(&project, &["latency", "--ms", "0"]);

    // truncate: the next answer is cut and the connection closed -> the client sees an error.
    faults(
        &project,
        &["truncate", "--limit", "4", "--service", "redis"],
    );
    let error = redis_get(&mut connection).expect_err("a cut answer is an error");
    assert!(
        !format!("{error}").contains("hello world"),
        "not the whole answer: {error}"
    );
    let mut connection = redis_connection(port).expect("new connections work again");
    assert_eq!(redis_get(&mut connection).unwrap(), "hello world");

    // failover: open connections are dropped, new ones refused, until respawn.
    faults(&project, &["failover", "--service", "redis"]);
    assert!(
        redis_get(&mut connection).is_err(),
        "the open connection was dropped"
    );
    let refused = redis_connection(port).and_then(|mut c| redis_get(&mut c));
    assert!(
        refused.is_err(),
        "new connections are refused while failed over"
    );
    faults(&project, &["respawn", "--service", "redis"]);
    let mut connection = redis_connection(port).expect("respawn: connections work again");
    assert_eq!(redis_get(&mut connection).unwrap(), "hello world");
    // The service behind the proxy never lost its data.
    let direct = service_port(&project, "redis");
    assert_ne!(direct, port);
    assert_eq!(
        redis_get(&mut redis_connection(direct).unwrap()).unwrap(),
        "hello world"
    );
}

fn s3_without_retries(runtime: &tokio::runtime::Runtime, port: u16) -> aws_sdk_s3::Client {
    let shared = runtime.block_on(
        aws_config::defaults(BehaviorVersion::latest())
            .http_client(crate::support::sdk_http_client())
            .region(aws_config::Region::new("eu-west-1"))
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .load(),
    );
    let config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

#[test]
fn the_aws_sdk_through_the_proxy_sees_each_fault() {
    let project = faulty_project();
    let port = proxy_port(&project, "aws");
    let runtime = crate::support::runtime();
    let s3 = s3_without_retries(&runtime, port);
    let list = || runtime.block_on(s3.list_buckets().send()).map_err(Box::new);
    runtime
        .block_on(
            s3.create_bucket()
                .bucket("through-the-proxy")
                .create_bucket_configuration(
                    aws_sdk_s3::types::CreateBucketConfiguration::builder()
                        .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest1)
                        .build(),
                )
                .send(),
        )
        .expect("S3 through the proxy");
    let listed = list().expect("list through the proxy");
    assert_eq!(listed.buckets()[0].name(), Some("through-the-proxy"));

    faults(&project, &["latency", "--ms", "300", "--service", "aws"]);
    let began = Instant::now();
    list().expect("slow but fine");
    assert!(began.elapsed() >= Duration::from_millis(300));
    faults(&project, &["reset", "--service", "aws"]);

    faults(&project, &["truncate", "--limit", "20", "--service", "aws"]);
    let error = list().expect_err("a cut HTTP answer is an error for the SDK");
    let text = format!(
        "{}",
        aws_smithy_types::error::display::DisplayErrorContext(&error)
    );
    assert!(!text.is_empty());
    list().expect("the next request works");

    faults(&project, &["failover", "--service", "aws"]);
    assert!(list().is_err(), "refused while failed over");
    faults(&project, &["respawn", "--service", "aws"]);
    list().expect("respawn: works again");

    // Control as JSON lines on the same port: {"command", "payload"} -> {"status": "ok"}.
    let control = service_port(&project, "faults");
    let mut stream = TcpStream::connect(("127.0.0.1", control)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut send = |bytes: &[u8]| -> Value {
        stream.write_all(bytes).unwrap();
        stream.write_all(b"\n").unwrap();
        let mut answer = String::new();
        reader.read_line(&mut answer).unwrap();
        serde_json::from_str(&answer).unwrap()
    };
    assert_eq!(
        send(r#"{"command": "failover", "payload": {"service": "aws"}}"#.as_bytes()),
        serde_json::json!({"status": "ok"})
    );
    assert!(list().is_err());
    assert_eq!(
        send(r#"{"command": "respawn", "payload": {}}"#.as_bytes())["status"],
        "ok"
    );
    list().expect("back");
    let bad = send(r#"{"command": "hiccup", "payload": {"msecs": "soon"}}"#.as_bytes());
    assert_eq!(bad["status"], "fail");
    assert!(bad["error"].as_str().unwrap().contains("msecs"));
    // Bounded input: a 2 MiB line, a non-UTF-8 line and an overflowing jitter are each a fail
    // answer, and the connection keeps working.
    let huge = format!(
        r#"{{"command": "reset", "payload": {{"pad": "{}"}}}}"#,
        "x".repeat(2 << 20)
    );
    let too_long = send(huge.as_bytes());
    assert_eq!(too_long["status"], "fail");
    assert!(
        too_long["error"].as_str().unwrap().contains("at most"),
        "{too_long}"
    );
    let binary = send(&[0xff, 0xfe, b'{']);
    assert_eq!(binary["status"], "fail");
    assert!(
        binary["error"].as_str().unwrap().contains("UTF-8"),
        "{binary}"
    );
    let overflow = send(
        format!(
            r#"{{"command": "latency", "payload": {{"ms": 1, "jitter": {}}}}}"#,
            u64::MAX
        )
        .as_bytes(),
    );
    assert_eq!(overflow["status"], "fail", "{overflow}");
    assert_eq!(
        send(r#"{"command": "reset", "payload": {}}"#.as_bytes())["status"],
        "ok"
    );
    list().expect("the proxies still forward after all of that");
    // And over HTTP, with the reason on bad input.
    let answer = crate::support::http_get(
        &format!("http://127.0.0.1:{control}"),
        "/mock/latency?ms=abc",
    );
    assert!(answer.contains("non-negative"), "{answer}");
}

/// One JSON-lines connection to the control port, as libcouchbase's test harness holds it.
struct ControlLines {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl ControlLines {
    fn connect(port: u16) -> ControlLines {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("control port");
        let reader = BufReader::new(stream.try_clone().unwrap());
        ControlLines { stream, reader }
    }

    fn send(&mut self, line: &str) -> Value {
        self.stream.write_all(line.as_bytes()).unwrap();
        self.stream.write_all(b"\n").unwrap();
        let mut answer = String::new();
        self.reader.read_line(&mut answer).unwrap();
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{answer:?}: {e}"))
    }
}

#[test]
fn couchbasemock_control_lines_work_as_libcouchbase_sends_them() {
    let project = faulty_project();
    let mut control = ControlLines::connect(service_port(&project, "faults"));
    let redis_port = proxy_port(&project, "redis");
    let mut connection = redis_connection(redis_port).expect("through the proxy");
    redis::cmd("SET")
        .arg("greeting")
        .arg("hello world")
        .query::<()>(&mut connection)
        .unwrap();

    // Upper-case names; `idx` is the proxied service's index in declared order (aws 0, redis 1);
    // `bucket` is accepted and ignored.
    let failover =
        control.send(r#"{"command": "FAILOVER", "payload": {"idx": 1, "bucket": "default"}}"#);
    assert_eq!(failover, serde_json::json!({"status": "ok"}));
    assert!(
        redis_get(&mut connection).is_err(),
        "redis (idx 1) failed over"
    );
    let status = control.send(r#"{"command": "status"}"#);
    assert_eq!(status["payload"]["redis"]["down"], true, "{status}");
    assert_eq!(status["payload"]["aws"]["down"], false, "{status}");
    control.send(r#"{"command": "RESPAWN", "payload": {"idx": 1}}"#);
    let mut connection = redis_connection(redis_port).expect("respawned");
    assert_eq!(redis_get(&mut connection).unwrap(), "hello world");

    // truncate with limit 0 disables truncation.
    control.send(r#"{"command": "TRUNCATE", "payload": {"limit": 4, "service": "redis"}}"#);
    control.send(r#"{"command": "truncate", "payload": {"limit": 0, "service": "redis"}}"#);
    assert_eq!(redis_get(&mut connection).unwrap(), "hello world");

    let help = control.send(r#"{"command": "help"}"#);
    for command in [
        "hiccup", "truncate", "failover", "respawn", "opfail", "status",
    ] {
        assert!(
            help["payload"][command]["does"].is_string(),
            "{command}: {help}"
        );
    }

    // opfail: the next 2 connections fail, the third works; count < 0 until reset.
    control.send(r#"{"command": "OPFAIL", "payload": {"count": 2, "service": "redis"}}"#);
    for attempt in 1..=2 {
        let failed = redis_connection(redis_port).and_then(|mut c| redis_get(&mut c));
        assert!(failed.is_err(), "connection {attempt} fails: {failed:?}");
    }
    let mut third = redis_connection(redis_port).expect("the third connection works");
    assert_eq!(redis_get(&mut third).unwrap(), "hello world");
    assert_eq!(
        redis_get(&mut connection).unwrap(),
        "hello world",
        "open connections are untouched"
    );

    // With an HTTP code, the AWS SDK sees that status.
    let runtime = crate::support::runtime();
    let s3 = s3_without_retries(&runtime, proxy_port(&project, "aws"));
    control
        .send(r#"{"command": "opfail", "payload": {"count": -1, "code": 503, "service": "aws"}}"#);
    for _ in 0..3 {
        let error = runtime
            .block_on(s3.list_buckets().send())
            .expect_err("every request fails until reset");
        let raw = error.raw_response().map(|r| r.status().as_u16());
        assert_eq!(raw, Some(503), "{error:?}");
    }
    assert_eq!(
        control.send(r#"{"command": "opfail", "payload": {"count": 0}}"#)["status"],
        "ok"
    );
    runtime
        .block_on(s3.list_buckets().send())
        .expect("count 0 restores");

    // The CLI has it too.
    faults(&project, &["opfail", "--count", "1", "--service", "redis"]);
    assert!(redis_connection(redis_port)
        .and_then(|mut c| redis_get(&mut c))
        .is_err());
    assert!(redis_connection(redis_port)
        .and_then(|mut c| redis_get(&mut c))
        .is_ok());
}

#[test]
fn harakiri_monitor_gets_the_port_sends_commands_and_owns_the_lifetime() {
    let project = Project::new();
    project.write("inframock.toml", FAULTY_STACK);
    let harness = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = harness.local_addr().unwrap().to_string();
    let mut child = project
        .command(&[
            "run",
            "--no-populate",
            "--aws-port",
            "0",
            "--redis-port",
            "0",
            "--faults-port",
            "0",
            "--harakiri-monitor",
            &address,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    harness.set_nonblocking(false).unwrap();
    let (mut connection, _) = harness.accept().expect("inframock connects to the harness");
    connection
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    // The AWS edge port as ASCII, then NUL.
    let mut port_text = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        connection.read_exact(&mut byte).unwrap();
        if byte[0] == 0 {
            break;
        }
        port_text.push(byte[0]);
    }
    let port: u16 = String::from_utf8(port_text)
        .unwrap()
        .parse()
        .expect("a port number");
    assert_eq!(
        port,
        proxy_port(&project, "aws"),
        "the edge port clients should use"
    );
    let runtime = crate::support::runtime();
    let s3 = s3_without_retries(&runtime, port);
    runtime
        .block_on(s3.list_buckets().send())
        .expect("the stack answers on that port");

    // Fault commands on the same connection.
    let mut reader = BufReader::new(connection.try_clone().unwrap());
    connection
        .write_all(b"{\"command\": \"failover\", \"payload\": {\"service\": \"aws\"}}\n")
        .unwrap();
    let mut answer = String::new();
    reader.read_line(&mut answer).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap()["status"],
        "ok"
    );
    assert!(runtime.block_on(s3.list_buckets().send()).is_err());
    connection
        .write_all(b"{\"command\": \"respawn\"}\n")
        .unwrap();
    answer.clear();
    reader.read_line(&mut answer).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap()["status"],
        "ok"
    );
    runtime
        .block_on(s3.list_buckets().send())
        .expect("back after respawn");
    connection.write_all(b"not json\n").unwrap();
    answer.clear();
    reader.read_line(&mut answer).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap()["status"],
        "fail"
    );
    // A non-UTF-8 line and a 2 MiB line are fail answers, not the end of the stack.
    for line in [
        vec![0xff, 0xfe, b'\n'],
        [vec![b'x'; 2 << 20], vec![b'\n']].concat(),
    ] {
        connection.write_all(&line).unwrap();
        answer.clear();
        reader.read_line(&mut answer).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&answer).unwrap()["status"],
            "fail",
            "{answer}"
        );
    }
    assert!(child.try_wait().unwrap().is_none(), "the stack still runs");

    // Closing the connection stops the whole stack.
    let pids = project.pids();
    assert_eq!(pids.len(), 3, "aws, redis, faults");
    drop(reader);
    drop(connection);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "run did not stop after the monitor closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("harakiri monitor"), "{stderr}");
    for pid in pids {
        assert!(!crate::support::alive(pid), "pid {pid} still runs");
    }
    assert!(!project.path().join(".inframock/state.json").exists());
}

#[test]
fn a_harakiri_monitor_that_does_not_listen_is_a_clear_error() {
    let project = Project::new();
    let port = crate::support::free_port();
    let output = project.run(&[
        "run",
        "--no-populate",
        "--aws-port",
        "0",
        "--redis-port",
        "0",
        "--harakiri-monitor",
        &format!("127.0.0.1:{port}"),
    ]);
    assert!(!output.status.success());
    let stderr = crate::support::text(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "--harakiri-monitor 127.0.0.1:{port}: cannot connect"
        )),
        "{stderr}"
    );
    assert!(
        !project.path().join(".inframock/state.json").exists(),
        "what it started is stopped"
    );
}
