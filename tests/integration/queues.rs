//! Queue tails and bridges against the real stack (moto_server started by `inframock run`):
//! messages sent with the AWS SDK and fanned out by SNS are recorded; bridges map and forward,
//! and lose nothing when the mapper raises or OUT does not exist.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Clients, Project};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

const STACK: &str = r#"
[[queues]]
name = "app-${env}"

[[queues]]
name = "orders"

[[queues]]
name = "in"

[[queues]]
name = "out"

[[topics]]
name = "events-${env}"

[[topics.subscriptions]]
protocol = "sqs"
queue = "app-${env}"

[[tails]]
name = "events"
topic = "events-${env}"

[[tails]]
name = "orders"
queue = "orders"

[[tails]]
name = "out"
queue = "out"

[[bridges]]
from = "in"
to = "out"
mapper = "mappers/upper.py"
retry_after = 1
max_attempts = 1000

[[queues]]
name = "in-dl"

[[queues]]
name = "out-dl"

[[queues]]
name = "dead"

[[bridges]]
from = "in-dl"
to = "out-dl"
mapper = "mappers/upper.py"
retry_after = 1
max_attempts = 3
dead_letter = "dead"
"#;

const MAPPER: &str = r#"
def map(message):
    if isinstance(message, dict):
        message["mapped"] = True
        return message
    if message == "drop me":
        return None
    if message == "poison":
        raise ValueError("cannot map poison")
    if message == "crash":
        import os
        os._exit(7)
    return message.upper()
"#;

fn stack() -> (Project, tokio::runtime::Runtime, Clients) {
    let project = Project::new();
    project.write("inframock.toml", STACK);
    project.write("mappers/upper.py", MAPPER);
    project.start(&["--no-populate"]);
    let runtime = crate::support::runtime();
    let clients = crate::support::clients(&runtime, &project.endpoint());
    (project, runtime, clients)
}

fn queue_url(runtime: &tokio::runtime::Runtime, clients: &Clients, name: &str) -> String {
    runtime
        .block_on(clients.sqs.get_queue_url().queue_name(name).send())
        .expect("queue exists")
        .queue_url
        .expect("url")
}

fn send(runtime: &tokio::runtime::Runtime, clients: &Clients, queue: &str, body: &str) {
    let url = queue_url(runtime, clients, queue);
    runtime
        .block_on(
            clients
                .sqs
                .send_message()
                .queue_url(url)
                .message_body(body)
                .send(),
        )
        .expect("send");
}

fn topic_arn(project: &Project) -> String {
    let _ = project;
    "arn:aws:sns:eu-west-1:000000000000:events-development".to_string()
}

/// The recorded messages of a tail, waiting until `count` are there.
fn recorded(project: &Project, name: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = project.run(&["--json", "queue", "messages", name]);
        let lines: Vec<Value> = serde_json::from_slice::<Value>(&output.stdout)
            .ok()
            .and_then(|document| document["data"]["messages"].as_array().cloned())
            .unwrap_or_default();
        if lines.len() >= count || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Up to 10 messages of a queue (waiting up to 5 s for the first).
fn receive(
    runtime: &tokio::runtime::Runtime,
    clients: &Clients,
    url: &str,
) -> Vec<aws_sdk_sqs::types::Message> {
    runtime
        .block_on(
            clients
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(5)
                .send(),
        )
        .expect("receive")
        .messages
        .unwrap_or_default()
}

/// Visible + in-flight messages of a queue.
fn pending(runtime: &tokio::runtime::Runtime, clients: &Clients, queue: &str) -> u64 {
    let url = queue_url(runtime, clients, queue);
    let attributes = runtime
        .block_on(
            clients
                .sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .send(),
        )
        .expect("attributes")
        .attributes
        .unwrap_or_default();
    [
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .filter_map(|k| attributes.get(k)?.parse::<u64>().ok())
    .sum()
}

#[test]
fn declared_tails_record_sdk_messages_and_sns_fan_out_without_stealing() {
    let (project, runtime, clients) = stack();
    send(&runtime, &clients, "orders", r#"{"order": 1}"#);
    send(&runtime, &clients, "orders", "plain text order");
    runtime
        .block_on(
            clients
                .sns
                .publish()
                .topic_arn(topic_arn(&project))
                .message(r#"{"event": "created"}"#)
                .subject("created")
                .message_attributes(
                    "kind",
                    aws_sdk_sns::types::MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value("audit")
                        .build()
                        .unwrap(),
                )
                .send(),
        )
        .expect("publish");

    let orders = recorded(&project, "orders", 2);
    let bodies: Vec<&str> = orders.iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, [r#"{"order": 1}"#, "plain text order"]);
    assert_eq!(orders[0]["json"]["order"], 1);
    assert_eq!(orders[0]["source"], "queue orders");

    let events = recorded(&project, "events", 1);
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["body"], r#"{"event": "created"}"#,
        "the SNS envelope is unwrapped"
    );
    assert_eq!(events[0]["subject"], "created");
    assert_eq!(events[0]["attributes"]["kind"], "audit");
    assert!(project
        .path()
        .join(".inframock/messages/events.jsonl")
        .is_file());

    // The topic's own subscriber still got the message: the tail did not take it.
    let app = queue_url(&runtime, &clients, "app-development");
    let received = receive(&runtime, &clients, &app);
    assert_eq!(received.len(), 1);
    assert!(received[0].body().unwrap().contains("created"));

    // Human output, and a clear message for an unknown tail.
    let human = crate::support::text(&project.run(&["queue", "messages", "orders"]).stdout);
    assert!(human.contains("queue orders  plain text order"), "{human}");
    let unknown = project.run(&["queue", "messages", "nope"]);
    assert!(!unknown.status.success());
    assert!(crate::support::text(&unknown.stderr).contains("no messages recorded for `nope`"));
}

#[test]
fn declared_bridge_maps_forwards_and_keeps_what_it_cannot_deliver() {
    let (project, runtime, clients) = stack();
    for body in ["hello", r#"{"k": 2}"#, "drop me", "poison"] {
        send(&runtime, &clients, "in", body);
    }
    let out = recorded(&project, "out", 2);
    // A mapper process that dies is started again for the next message; the message it died on
    // stays in IN.
    send(&runtime, &clients, "in", "crash");
    std::thread::sleep(Duration::from_millis(500));
    send(&runtime, &clients, "in", "after the crash");
    let after = recorded(&project, "out", 3);
    assert!(
        after.iter().any(|m| m["body"] == "AFTER THE CRASH"),
        "{after:?}"
    );
    let bodies: Vec<&str> = out.iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert!(bodies.contains(&"HELLO"), "{bodies:?}");
    assert!(
        out.iter()
            .any(|m| m["json"] == serde_json::json!({"k": 2, "mapped": true})),
        "{bodies:?}"
    );
    // The poison message stays in IN (retried), the dropped one is gone.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        pending(&runtime, &clients, "in"),
        2,
        "the messages the mapper cannot map stay in IN"
    );
    // Read at once (waiting for a fourth message would only time out): what reached OUT in the
    // same 2 s in which the poison message was retried.
    assert_eq!(
        recorded(&project, "out", 0).len(),
        3,
        "nothing else reached OUT"
    );
    let log = std::fs::read_to_string(project.path().join(".inframock/logs/queues.log")).unwrap();
    assert!(log.contains("cannot map poison"), "{log}");
    assert!(log.contains("\"event\":\"dropped\""), "{log}");
    assert!(log.contains("crashed"), "{log}");
}

fn spawn_json(
    project: &Project,
    args: &[&str],
) -> (
    Child,
    std::sync::mpsc::Receiver<String>,
    std::sync::mpsc::Receiver<String>,
) {
    let mut child = project
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (out_tx, out_rx) = std::sync::mpsc::channel();
    let (err_tx, err_rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = out_tx.send(line);
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = err_tx.send(line);
        }
    });
    (child, out_rx, err_rx)
}

/// `inframock --json queue bridge --from IN --to OUT --mapper mappers/upper.py [extra]`, started
/// once it announced itself.
fn start_bridge(project: &Project, from: &str, to: &str, extra: &[&str]) -> Spawned {
    let mut args = vec![
        "--json",
        "queue",
        "bridge",
        "--from",
        from,
        "--to",
        to,
        "--mapper",
        "mappers/upper.py",
    ];
    args.extend_from_slice(extra);
    let spawned = spawn_json(project, &args);
    wait_for(&spawned.2, &format!("bridge {from}-to-{to}"));
    spawned
}

type Spawned = (
    Child,
    std::sync::mpsc::Receiver<String>,
    std::sync::mpsc::Receiver<String>,
);

fn wait_for(lines: &std::sync::mpsc::Receiver<String>, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            if line.contains(what) {
                return line;
            }
        }
    }
    panic!("no line containing {what:?}");
}

fn interrupt(child: &mut Child) {
    // SAFETY: sends SIGINT to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn tail_command_prints_json_lines_and_cleans_up_its_topic_queue() {
    let (project, runtime, clients) = stack();
    let (mut child, out, err) =
        spawn_json(&project, &["--json", "queue", "tail", "events-development"]);
    wait_for(&err, "tailing topic events-development");
    runtime
        .block_on(
            clients
                .sns
                .publish()
                .topic_arn(topic_arn(&project))
                .message("ping")
                .send(),
        )
        .expect("publish");
    let line: Value = serde_json::from_str(&wait_for(&out, "ping")).unwrap();
    assert_eq!(line["body"], "ping");
    assert_eq!(line["source"], "topic events-development");
    let pid = child.id();
    interrupt(&mut child);
    let queues = runtime
        .block_on(clients.sqs.list_queues().send())
        .unwrap()
        .queue_urls
        .unwrap_or_default();
    assert!(
        !queues
            .iter()
            .any(|q| q.ends_with(&format!("inframock-tail-{pid}"))),
        "the tail's own queue is removed: {queues:?}"
    );

    // Peeking at a queue leaves the message for its consumer.
    let (mut child, out, err) = spawn_json(
        &project,
        &["--json", "queue", "tail", "--peek", "app-development"],
    );
    wait_for(&err, "peeking");
    send(&runtime, &clients, "app-development", "for the app");
    wait_for(&out, "for the app");
    interrupt(&mut child);
    let app = queue_url(&runtime, &clients, "app-development");
    let received = receive(&runtime, &clients, &app);
    assert!(
        received.iter().any(|m| m.body() == Some("for the app")),
        "{received:?}"
    );

    let missing = project.run(&["queue", "tail", "no-such-queue"]);
    assert!(!missing.status.success());
    assert!(
        crate::support::text(&missing.stderr).contains("no queue or topic named `no-such-queue`")
    );
}

#[test]
fn bridge_command_waits_for_a_missing_out_and_then_delivers() {
    let (project, runtime, clients) = stack();
    runtime
        .block_on(clients.sqs.create_queue().queue_name("in2").send())
        .expect("create in2");
    let (mut child, out, _err) = start_bridge(&project, "in2", "later", &["--retry-after", "1"]);
    send(&runtime, &clients, "in2", "keep me");
    let failed: Value = serde_json::from_str(&wait_for(&out, "\"failed\"")).unwrap();
    assert_eq!(failed["stage"], "OUT");
    assert!(failed["error"].as_str().unwrap().contains("later"));
    assert_eq!(
        pending(&runtime, &clients, "in2"),
        1,
        "the message stays in IN while OUT is missing"
    );
    let later = runtime
        .block_on(clients.sqs.create_queue().queue_name("later").send())
        .expect("create later")
        .queue_url
        .unwrap();
    wait_for(&out, "\"forwarded\"");
    let received = receive(&runtime, &clients, &later);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body(), Some("KEEP ME"));
    assert_eq!(
        pending(&runtime, &clients, "in2"),
        0,
        "deleted from IN once OUT accepted it"
    );
    interrupt(&mut child);
}

#[test]
fn bridge_to_a_topic_publishes_to_its_subscribers() {
    let (project, runtime, clients) = stack();
    runtime
        .block_on(clients.sqs.create_queue().queue_name("in3").send())
        .expect("create in3");
    let (mut child, out, _err) = start_bridge(&project, "in3", "events-development", &[]);
    send(&runtime, &clients, "in3", "fan out");
    let forwarded: Value = serde_json::from_str(&wait_for(&out, "\"forwarded\"")).unwrap();
    assert_eq!(forwarded["to"], "topic events-development");
    let events = recorded(&project, "events", 1);
    assert_eq!(events[0]["body"], "FAN OUT");
    interrupt(&mut child);
}

#[test]
fn a_message_that_keeps_failing_goes_to_the_dead_letter_queue_with_its_error() {
    let (project, runtime, clients) = stack();
    send(&runtime, &clients, "in-dl", "poison");
    send(&runtime, &clients, "in-dl", "fine");
    let dead_url = queue_url(&runtime, &clients, "dead");
    let deadline = Instant::now() + Duration::from_secs(60);
    let dead = loop {
        let received = runtime
            .block_on(
                clients
                    .sqs
                    .receive_message()
                    .queue_url(&dead_url)
                    .message_attribute_names("All")
                    .wait_time_seconds(2)
                    .send(),
            )
            .expect("receive")
            .messages
            .unwrap_or_default();
        if let Some(message) = received.into_iter().next() {
            break message;
        }
        assert!(
            Instant::now() < deadline,
            "nothing reached the dead-letter queue"
        );
    };
    assert_eq!(dead.body(), Some("poison"), "the body as IN had it");
    let attribute = |name: &str| {
        dead.message_attributes()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value())
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        attribute("inframock-error").contains("cannot map poison"),
        "{dead:?}"
    );
    assert_eq!(attribute("inframock-attempts"), "3");
    assert_eq!(attribute("inframock-stage"), "mapper");
    assert_eq!(
        pending(&runtime, &clients, "in-dl"),
        0,
        "it left IN only once dead-lettered"
    );
    // The log has the error whole once, then short lines, then the move. The move is logged just
    // after the message reached the dead-letter queue, so a loaded machine may show it a moment later.
    let log_deadline = Instant::now() + Duration::from_secs(10);
    let events: Vec<Value> = loop {
        let log =
            std::fs::read_to_string(project.path().join(".inframock/logs/queues.log")).unwrap();
        let events: Vec<Value> = log
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| event["bridge"] == "in-dl-to-out-dl" && event["event"] != "forwarded")
            .collect();
        if events.len() >= 3 || Instant::now() >= log_deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap_or(""),
                e["error"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert!(
        kinds[0].0 == "failed" && kinds[0].1.contains("cannot map poison"),
        "{kinds:?}"
    );
    assert_eq!(kinds[1], ("failed", "still failing"));
    assert_eq!(kinds[2].0, "dead_lettered");
    assert_eq!(events[1]["attempt"], 2);
}
