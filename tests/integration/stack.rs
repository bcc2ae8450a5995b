//! The core issue end to end: `run --detach` against real moto_server and redis-server, every
//! declared resource checked through the AWS SDK, idempotent second run, status, env, stop, and
//! the error paths (port in use, missing program, a service that dies at start, bad stack file).

use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use crate::support::{alive, clients, data_of, engine_program, runtime, text, Project};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

#[test]
fn run_creates_every_declared_resource_and_a_second_run_reuses_the_stack() {
    let project = Project::new();
    let first = project.start(&["--no-populate"]);
    assert_eq!(first["runtime"], "local");
    let created: Vec<_> = first["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["created"] == true)
        .collect();
    assert_eq!(
        created.len(),
        12,
        "4 tables, 6 buckets, 1 queue, 1 topic: {}",
        first["resources"]
    );

    let rt = runtime();
    let aws = clients(&rt, &project.endpoint());
    rt.block_on(async {
        let mut tables = aws
            .dynamodb
            .list_tables()
            .send()
            .await
            .unwrap()
            .table_names
            .unwrap();
        tables.sort();
        assert_eq!(
            tables,
            [
                "experiments-development",
                "plots-tables-development",
                "projects-development",
                "samples-development"
            ]
        );
        let samples = aws
            .dynamodb
            .describe_table()
            .table_name("samples-development")
            .send()
            .await
            .unwrap();
        let samples = samples.table.unwrap();
        let gsi = &samples.global_secondary_indexes.unwrap()[0];
        assert_eq!(
            gsi.index_name.as_deref(),
            Some("gsiByProjectAndExperimentID")
        );
        assert_eq!(
            gsi.projection.as_ref().unwrap().non_key_attributes(),
            ["samples"]
        );
        let plots = aws
            .dynamodb
            .describe_table()
            .table_name("plots-tables-development")
            .send()
            .await
            .unwrap();
        let keys: Vec<_> = plots
            .table
            .unwrap()
            .key_schema
            .unwrap()
            .iter()
            .map(|k| k.attribute_name.clone())
            .collect();
        assert_eq!(keys, ["experimentId", "plotUuid"]);

        let mut buckets: Vec<String> = aws
            .s3
            .list_buckets()
            .send()
            .await
            .unwrap()
            .buckets
            .unwrap()
            .into_iter()
            .filter_map(|b| b.name)
            .collect();
        buckets.sort();
        assert_eq!(
            buckets,
            [
                "biomage-originals-development",
                "biomage-source-development",
                "cell-sets-development",
                "plots-tables-development",
                "processed-matrix-development",
                "worker-results-development"
            ]
        );
        let versioning = crate::support::http_get(
            &project.endpoint(),
            "/biomage-source-development?versioning",
        );
        assert!(
            versioning.contains("<Status>Enabled</Status>"),
            "{versioning}"
        );
        let cors = aws
            .s3
            .get_bucket_cors()
            .bucket("biomage-originals-development")
            .send()
            .await
            .unwrap();
        let rule = &cors.cors_rules.unwrap()[0];
        assert!(rule.expose_headers().contains(&"ETag".to_string()));

        let topics = aws.sns.list_topics().send().await.unwrap().topics.unwrap();
        assert!(
            topics.iter().any(|t| t.topic_arn.as_deref()
                == Some("arn:aws:sns:eu-west-1:000000000000:work-results-development-default")),
            "{topics:?}"
        );
        let url = aws
            .sqs
            .get_queue_url()
            .queue_name("development-queue.fifo")
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let attributes = aws
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(
            attributes
                .get(&QueueAttributeName::FifoQueue)
                .map(String::as_str),
            Some("true")
        );
        assert_eq!(
            attributes
                .get(&QueueAttributeName::ContentBasedDeduplication)
                .map(String::as_str),
            Some("true")
        );
        // Something the user created must survive a second run.
        aws.s3
            .put_object()
            .bucket("worker-results-development")
            .key("generated")
            .body(b"keep".to_vec().into())
            .send()
            .await
            .unwrap();
    });

    let pids = project.pids();
    let second = project.start(&["--no-populate"]);
    assert_eq!(second["reused"], serde_json::json!(["aws", "redis"]));
    assert!(
        second["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["created"] == false),
        "{}",
        second["resources"]
    );
    assert_eq!(project.pids(), pids, "the same processes are reused");
    assert_eq!(
        crate::support::object(&rt, &aws, "worker-results-development", "generated"),
        b"keep"
    );

    let status = project.run_json(&["status", "--json"]);
    assert_eq!(status["healthy"], true);
    let services = status["services"].as_array().unwrap();
    assert_eq!(services.len(), 2);
    for service in services {
        assert_eq!(service["health"], "healthy");
        assert_eq!(service["runtime"], "local");
        assert!(pids.contains(&(service["pid"].as_u64().unwrap() as u32)));
    }

    let env = project.run(&["env"]);
    let exports = text(&env.stdout);
    assert!(
        exports.contains(&format!("export AWS_ENDPOINT_URL={}", project.endpoint())),
        "{exports}"
    );
    assert!(exports.contains("export AWS_DEFAULT_REGION=eu-west-1"));
    assert!(exports.contains("export AWS_ACCESS_KEY_ID=test"));
    assert!(exports.contains("export REDIS_URL=redis://localhost:"));

    let stop = project.run(&["stop"]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    for pid in pids {
        assert!(!alive(pid), "pid {pid} still runs after stop");
    }
    assert!(!project.path().join(".inframock/state.json").exists());
    let status = project.run(&["status"]);
    assert_eq!(
        status.status.code(),
        Some(4),
        "status exits 4 when nothing runs"
    );
}

#[test]
fn redis_answers_at_the_exported_url() {
    let project = Project::new();
    project.start(&["--no-populate"]);
    let url = project.state()["services"][1]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let client = redis::Client::open(url.as_str()).unwrap();
    let rt = runtime();
    let reply: String = rt.block_on(async {
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query_async::<()>(&mut connection)
            .await
            .unwrap();
        redis::cmd("GET")
            .arg("k")
            .query_async(&mut connection)
            .await
            .unwrap()
    });
    assert_eq!(reply, "v");
}

#[test]
fn a_port_in_use_is_named_with_its_holder_and_nothing_starts() {
    let project = Project::new();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = project.run(&[
        "run",
        "--detach",
        "--aws-port",
        &port.to_string(),
        "--redis-port",
        &free.to_string(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "port {port} (--aws-port) is already in use by pid {}",
            std::process::id()
        )),
        "{stderr}"
    );
    assert!(!project.path().join(".inframock/state.json").exists());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", free)).is_err(),
        "redis must not have been started"
    );
}

#[test]
fn a_service_that_exits_at_start_shows_its_log_and_the_other_is_stopped() {
    let project = Project::new();
    let fake = project.write(
        "fake_moto",
        "#!/bin/sh\necho 'fatal: cannot bind, config broken'\nexit 7\n",
    );
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let redis_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = project.run(&[
        "run",
        "--detach",
        "--aws-port",
        "0",
        "--redis-port",
        &redis_port.to_string(),
        "--moto-server",
        fake.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("aws exited while starting (exit status: 7)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("fatal: cannot bind, config broken"),
        "{stderr}"
    );
    assert!(!project.path().join(".inframock/state.json").exists());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", redis_port)).is_err(),
        "redis was stopped again"
    );
}

#[test]
fn a_missing_program_and_a_malformed_stack_file_say_what_to_do() {
    let project = Project::new();
    let output = project.run(&[
        "run",
        "--detach",
        "--aws-port",
        "0",
        "--redis-port",
        "0",
        "--redis-server",
        "/nonexistent/redis-server",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("--redis-server") && stderr.contains("apt-get install redis-server"),
        "{stderr}"
    );

    project.write(
        "inframock.toml",
        "[services.aws]\nport = 4566\n[[tables]]\nname = \"t\"\nhash_kye = \"id\"\n",
    );
    let output = project.run(&["run", "--detach"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("inframock.toml is not a valid stack file: line 5"),
        "{stderr}"
    );
    assert!(stderr.contains("hash_kye"), "{stderr}");
}

#[test]
fn stop_cleans_up_a_stale_record_with_a_message() {
    let project = Project::new();
    project.start(&["--no-populate"]);
    let pids = project.pids();
    // SAFETY: killing a process this test started.
    unsafe { libc::kill(pids[0] as i32, libc::SIGKILL) };
    while alive(pids[0]) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = project.run(&["status", "--json"]);
    assert_eq!(status.status.code(), Some(4));
    let output = project.run(&["stop"]);
    assert!(output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "aws (pid {}) had already exited; its record is cleaned up",
            pids[0]
        )),
        "{stderr}"
    );
    assert!(!alive(pids[1]), "redis stopped");
    assert!(!project.path().join(".inframock/state.json").exists());
}

#[test]
fn foreground_run_stops_both_processes_on_interrupt() {
    let project = Project::new();
    let mut child = project
        .command(&[
            "run",
            "--aws-port",
            "0",
            "--redis-port",
            "0",
            "--no-populate",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let state = project.path().join(".inframock/state.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Ready once the state file is written and the banner printed; wait for the state first.
    while !state.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "run never became ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pids = project.pids();
    // The banner comes after resources; wait until status reports healthy.
    loop {
        if project.run(&["status"]).status.success() {
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    // SAFETY: interrupting the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(status.success(), "run exits 0 after Ctrl-C");
    for pid in pids {
        assert!(!alive(pid), "pid {pid} still runs after Ctrl-C");
    }
    assert!(!state.exists());
}

#[test]
fn interrupting_a_run_while_it_starts_stops_what_was_starting() {
    let project = Project::new();
    // An aws "server" that never answers, so the run is still waiting when interrupted.
    let fake = project.write("slow_moto", "#!/bin/sh\nexec sleep 300\n");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let redis_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = project
        .command(&[
            "run",
            "--runtime",
            "local",
            "--aws-port",
            "0",
            "--redis-port",
            &redis_port.to_string(),
            "--moto-server",
            fake.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until redis answers (it starts alongside the never-ready aws).
    crate::support::wait_for_listener(redis_port, std::time::Duration::from_secs(30), "redis");
    // SAFETY: interrupting the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130));
    assert!(
        text(&output.stderr).contains("interrupted while starting"),
        "{}",
        text(&output.stderr)
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", redis_port)).is_err(),
        "redis was stopped, not orphaned"
    );
    let sleepers = std::process::Command::new("pgrep")
        .args(["-f", "sleep 300"])
        .output()
        .unwrap();
    let still: Vec<u32> = text(&sleepers.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|pid| alive(*pid))
        .collect();
    let ours: Vec<u32> = still
        .into_iter()
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd"))
                .is_ok_and(|cwd| cwd.starts_with(project.path()))
        })
        .collect();
    assert!(
        ours.is_empty(),
        "the never-ready aws process was stopped: {ours:?}"
    );
    assert!(!project.path().join(".inframock/state.json").exists());
}

/// A small HTTP server standing in for the API on this machine: records each POST (path, SNS
/// `Type`, `Message`; for a subscription confirmation its topic and token, which the test confirms
/// with ConfirmSubscription as the API does).
struct Subscriber {
    port: u16,
    received: std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>,
}

impl Subscriber {
    fn start() -> Subscriber {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = std::sync::Arc::clone(&received);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut length = 0;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let mut stream = stream;
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                let Ok(message) = serde_json::from_slice::<serde_json::Value>(&body) else {
                    continue;
                };
                let kind = message["Type"].as_str().unwrap_or("").to_string();
                let text = if kind == "SubscriptionConfirmation" {
                    // Kept for the test to confirm with ConfirmSubscription.
                    format!(
                        "{} {}",
                        message["TopicArn"].as_str().unwrap_or(""),
                        message["Token"].as_str().unwrap_or("")
                    )
                } else {
                    message["Message"].as_str().unwrap_or("").to_string()
                };
                record.lock().unwrap().push((path, kind, text));
            }
        });
        Subscriber { port, received }
    }

    /// The (topic ARN, token) of each subscription confirmation received so far.
    fn confirmations(&self) -> Vec<(String, String)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, kind, _)| kind == "SubscriptionConfirmation")
            .filter_map(|(_, _, text)| text.split_once(' '))
            .map(|(topic, token)| (topic.to_string(), token.to_string()))
            .collect()
    }

    /// The notifications received at `path` (their messages), waiting up to 10 s for `count`.
    fn notifications(&self, path: &str, count: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let found: Vec<String> = self
                .received
                .lock()
                .unwrap()
                .iter()
                .filter(|(p, kind, _)| p == path && kind == "Notification")
                .map(|(_, _, message)| message.clone())
                .collect();
            if found.len() >= count || std::time::Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

#[test]
fn the_original_stacks_http_subscriptions_deliver_results_to_a_local_api() {
    let api = Subscriber::start();
    let project = Project::new();
    // The built-in stack's subscriptions, on the free port of this test's stand-in API.
    let built_in = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/default_stack.toml"),
    )
    .unwrap();
    assert!(built_in.contains("endpoint = \"http://${host}:3000/v1/workResults\""));
    assert!(built_in.contains("endpoint = \"http://${host}:3000/v1/pipelineResults\""));
    project.write(
        "inframock.toml",
        built_in.replace("${host}:3000", &format!("${{host}}:{}", api.port)),
    );
    project.start(&["--no-populate"]);
    let runtime = crate::support::runtime();
    let aws = crate::support::clients(&runtime, &project.endpoint());
    let topic = runtime
        .block_on(
            aws.sns
                .create_topic()
                .name("work-results-development-default")
                .send(),
        )
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_string();
    let publish = |message: &str, kind: &str| {
        runtime
            .block_on(
                aws.sns
                    .publish()
                    .topic_arn(&topic)
                    .message(message)
                    .message_attributes(
                        "type",
                        aws_sdk_sns::types::MessageAttributeValue::builder()
                            .data_type("String")
                            .string_value(kind)
                            .build()
                            .unwrap(),
                    )
                    .send(),
            )
            .expect("publish");
    };
    // Engine difference: MiniStack (like AWS and LocalStack) sends a SubscriptionConfirmation and
    // delivers once the API confirms it (ConfirmSubscription; its SubscribeURL answers 404 to a
    // GET); moto confirms by itself and delivers at once.
    std::thread::sleep(std::time::Duration::from_millis(500));
    for (topic_arn, token) in api.confirmations() {
        runtime
            .block_on(
                aws.sns
                    .confirm_subscription()
                    .topic_arn(topic_arn)
                    .token(token)
                    .send(),
            )
            .expect("ConfirmSubscription");
    }
    if crate::support::engine() == "ministack" {
        assert_eq!(
            api.confirmations().len(),
            2,
            "one confirmation per HTTP subscription"
        );
    }
    publish("work done", "WorkResponse");
    publish("pipeline done", "PipelineResponse");
    publish("nobody's", "SomethingElse");
    assert_eq!(api.notifications("/v1/workResults", 1), ["work done"]);
    assert_eq!(
        api.notifications("/v1/pipelineResults", 1),
        ["pipeline done"]
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let all: usize = ["/v1/workResults", "/v1/pipelineResults"]
        .iter()
        .map(|p| api.notifications(p, 0).len())
        .sum();
    assert_eq!(all, 2, "the filter policies keep the other message out");
}

#[test]
fn resources_shows_live_counts_and_a_table_whose_key_differs_until_reset() {
    let project = Project::new();
    project.write(
        "inframock.toml",
        r#"
[[tables]]
name = "things-${env}"
hash_key = "id"

[[buckets]]
name = "blobs-${env}"
versioning = true

[[queues]]
name = "jobs-${env}"

[[topics]]
name = "news-${env}"

[[topics.subscriptions]]
protocol = "sqs"
queue = "jobs-${env}"

[[data.rules]]
pattern = "*.json"
table = "things-${env}"

[[data.rules]]
pattern = "*.bin"
bucket = "blobs-${env}"
"#,
    );
    project.write(
        "data/e1/things.json",
        r#"{"records": [{"id": "a"}, {"id": "b"}, {"id": "c"}]}"#,
    );
    project.write("data/e1/blob.bin", vec![7u8; 1000]);
    project.start(&[]);
    let resources = |project: &Project| {
        let report = project.run_json(&["resources", "--json"]);
        report["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["name"].as_str().unwrap().to_string(), r.clone()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let found = resources(&project);
    assert_eq!(
        found["things-development"]["counts"]["items"], 3,
        "{found:?}"
    );
    assert_eq!(found["blobs-development"]["counts"]["objects"], 1);
    assert_eq!(found["blobs-development"]["counts"]["bytes"], 1000);
    assert_eq!(found["news-development"]["counts"]["subscriptions"], 1);
    assert!(
        found.values().all(|r| r["drift"] == serde_json::json!([])),
        "{found:?}"
    );

    // Someone recreates the table with another key: `resources` says so, with the fix.
    let rt = crate::support::runtime();
    let aws = crate::support::clients(&rt, &project.endpoint());
    rt.block_on(async {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        };
        aws.dynamodb
            .delete_table()
            .table_name("things-development")
            .send()
            .await
            .unwrap();
        aws.dynamodb
            .create_table()
            .table_name("things-development")
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("other")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("other")
                    .attribute_type(ScalarAttributeType::N)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    });
    let text = crate::support::text(&project.run(&["resources"]).stdout);
    assert!(
        text.contains("differs: key id (HASH, S) declared, other (HASH, N) found: recreate it with `inframock reset`"),
        "{text}"
    );
    assert!(text.contains("1 resource(s) differ"), "{text}");
    // The fix it names works.
    project.run_json(&["reset", "--json"]);
    let found = resources(&project);
    assert_eq!(found["things-development"]["drift"], serde_json::json!([]));
    assert_eq!(
        found["things-development"]["counts"]["items"], 3,
        "reset loads the data again"
    );
}

#[test]
fn wait_returns_once_an_external_stack_answers_and_its_resources_exist() {
    // A compose-style engine: started elsewhere, nothing declared in it yet.
    let engine = Project::new();
    engine.write("inframock.toml", "[project]\nname = \"engine\"\n");
    engine.start(&["--no-populate"]);
    let endpoint = engine.endpoint();
    let project = Project::new();
    project.write(
        "inframock.toml",
        "[[tables]]\nname = \"waited-${env}\"\nhash_key = \"id\"\n",
    );
    let external = ["--runtime", "external", "--endpoint-url", endpoint.as_str()];
    let mut waiting = project
        .command(&[&["--json", "wait", "--timeout", "120"][..], &external[..]].concat())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "the table does not exist yet: still waiting"
    );
    let run = project.run(&[&["run", "--detach", "--no-populate"][..], &external[..]].concat());
    assert!(run.status.success(), "{}", text(&run.stderr));
    let output = waiting.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: Value = crate::support::data_of(&output.stdout);
    assert_eq!(report["ready"], true, "{report}");

    // Nothing running: exit 4 once the time is up, saying what is missing.
    let idle = Project::new();
    let output = idle.run(&["--json", "wait", "--timeout", "1"]);
    assert_eq!(output.status.code(), Some(4));
    let report: Value = crate::support::data_of(&output.stdout);
    assert_eq!(report["ready"], false);
    assert!(
        report["missing"][0]
            .as_str()
            .unwrap()
            .contains("no stack recorded"),
        "{report}"
    );
}

#[test]
fn status_reports_the_version_the_running_engine_runs_whatever_path_says_now() {
    use std::os::unix::fs::PermissionsExt;
    let project = Project::new();
    project.start(&["--no-populate"]);
    let real = project.run_json(&["status", "--json"])["services"][0]["version"].clone();
    // Another installation of the engine, found first after the stack started: its interpreter
    // names a version no engine has.
    let other = project.path().join("other-install");
    std::fs::create_dir_all(&other).expect("mkdir");
    for name in [engine_program(), "python3"] {
        let path = other.join(name);
        std::fs::write(&path, "#!/bin/sh\necho 0.0.1\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let path = format!(
        "{}:{}",
        other.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let status = project
        .command(&["status", "--json"])
        .env("PATH", &path)
        .env("INFRAMOCK_MOTO_SERVER", other.join(engine_program()))
        .output()
        .expect("status runs");
    let aws = data_of(&status.stdout)["services"][0].clone();
    assert_eq!(aws["service"], "aws", "{aws}");
    assert!(
        real.as_str()
            .is_some_and(|v| v.contains('.') && v != "0.0.1"),
        "{real}"
    );
    assert_eq!(aws["version"], real, "{aws}");
}
