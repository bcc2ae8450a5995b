//! Snapshots against the real engines and redis-server: state written by clients survives
//! `stop`/`run` with `persist = true`, a snapshot saved from one engine loads into the other with
//! an identical dump, a second save fetches nothing again, and a damaged snapshot is refused
//! with nothing written.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::MessageAttributeValue;
use serde_json::Value;

use crate::support::{clients, noise, object, runtime, text, Clients, Project};

/// A table keyed by a string and a number, a bucket, a standard and a FIFO queue.
const STACK: &str = r#"
[[tables]]
name = "things"
hash_key = "id"
range_key = "n"
attributes = { n = "N" }

[[buckets]]
name = "files"

[[buckets]]
name = "history"
versioning = true

[[queues]]
name = "jobs"

[[queues]]
name = "orders.fifo"
fifo = true
"#;

/// The big object's size: more than one 8 MiB upload part.
const BIG: usize = 9 * 1024 * 1024 + 17;

fn project(extra: &str) -> Project {
    let project = Project::new();
    project.write("inframock.toml", format!("{STACK}{extra}"));
    project
}

/// `run --detach` of `project` on `engine`, whichever engine the suite tests.
fn start_on(project: &Project, engine: &str) {
    let started = project
        .command(&crate::support::start_args(&["--no-populate"]))
        .env("INFRAMOCK_ENGINE", engine)
        .output()
        .expect("run");
    assert!(started.status.success(), "{}", text(&started.stderr));
}

fn redis(project: &Project) -> redis::Connection {
    let port = project.port_of("redis");
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
        .expect("redis connection")
}

fn queue_url(rt: &tokio::runtime::Runtime, clients: &Clients, name: &str) -> String {
    rt.block_on(clients.sqs.get_queue_url().queue_name(name).send())
        .expect("queue url")
        .queue_url()
        .expect("url")
        .to_string()
}

/// What an application would have written: items (an exact decimal, binary, a set), objects
/// (a large one with type and metadata), messages (with an attribute, FIFO with a group) and
/// Redis keys (a string with a time to live, a list).
fn write_state(project: &Project) {
    let rt = runtime();
    let clients = clients(&rt, &project.endpoint());
    rt.block_on(async {
        clients
            .dynamodb
            .put_item()
            .table_name("things")
            .item("id", AttributeValue::S("a".into()))
            .item("n", AttributeValue::N("2.50".into()))
            .item("blob", AttributeValue::B(vec![0u8, 1, 255].into()))
            .item("tags", AttributeValue::Ss(vec!["y".into(), "x".into()]))
            .item(
                "nested",
                AttributeValue::M(
                    [
                        ("bytes".to_string(), AttributeValue::B(vec![9u8, 0].into())),
                        (
                            "sizes".to_string(),
                            AttributeValue::Ns(vec!["10".into(), "-0.125".into()]),
                        ),
                        (
                            "list".to_string(),
                            AttributeValue::L(vec![
                                AttributeValue::Null(true),
                                AttributeValue::Bs(vec![vec![1u8].into(), vec![2u8].into()]),
                            ]),
                        ),
                    ]
                    .into(),
                ),
            )
            .send()
            .await
            .expect("put item a");
        clients
            .dynamodb
            .put_item()
            .table_name("things")
            .item("id", AttributeValue::S("b".into()))
            .item("n", AttributeValue::N("7".into()))
            .send()
            .await
            .expect("put item b");
        clients
            .s3
            .put_object()
            .bucket("files")
            .key("generated/big.bin")
            .content_type("application/x-test")
            .metadata("owner", "me")
            .body(noise(BIG, 7).into())
            .send()
            .await
            .expect("put big object");
        clients
            .s3
            .put_object()
            .bucket("files")
            .key("generated/same.txt")
            .body(b"same".to_vec().into())
            .send()
            .await
            .expect("put object");
        clients
            .s3
            .put_object()
            .bucket("files")
            .key("copy/same.txt")
            .body(b"same".to_vec().into())
            .send()
            .await
            .expect("put object");
    });
    let jobs = queue_url(&rt, &clients, "jobs");
    let orders = queue_url(&rt, &clients, "orders.fifo");
    rt.block_on(async {
        clients
            .sqs
            .send_message()
            .queue_url(&jobs)
            .message_body("job-1")
            .message_attributes(
                "kind",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("import")
                    .build()
                    .expect("attribute"),
            )
            .send()
            .await
            .expect("send job-1");
        clients
            .sqs
            .send_message()
            .queue_url(&jobs)
            .message_body("job-2")
            .send()
            .await
            .expect("send job-2");
        for (body, dedup) in [("order-1", "d1"), ("order-2", "d2")] {
            clients
                .sqs
                .send_message()
                .queue_url(&orders)
                .message_body(body)
                .message_group_id("customer-1")
                .message_deduplication_id(dedup)
                .send()
                .await
                .expect("send order");
        }
    });
    let mut connection = redis(project);
    let _: () = redis::cmd("SET")
        .arg("session")
        .arg("s-1")
        .arg("EX")
        .arg(3600)
        .query(&mut connection)
        .expect("SET");
    let _: () = redis::cmd("RPUSH")
        .arg("recent")
        .arg("a")
        .arg("b")
        .query(&mut connection)
        .expect("RPUSH");
}

/// Checks the state `write_state` wrote is there, each message exactly once.
fn assert_state(project: &Project) {
    let rt = runtime();
    let clients = clients(&rt, &project.endpoint());
    let items = rt
        .block_on(clients.dynamodb.scan().table_name("things").send())
        .expect("scan")
        .items
        .unwrap_or_default();
    assert_eq!(items.len(), 2, "{items:?}");
    let a = items
        .iter()
        .find(|i| i.get("id") == Some(&AttributeValue::S("a".into())))
        .expect("item a");
    assert_eq!(a["blob"], AttributeValue::B(vec![0u8, 1, 255].into()));
    let AttributeValue::N(number) = &a["n"] else {
        panic!("n is a number: {a:?}")
    };
    assert!(["2.50", "2.5"].contains(&number.as_str()), "{number}");
    let AttributeValue::Ss(tags) = &a["tags"] else {
        panic!("tags is a string set: {a:?}")
    };
    assert_eq!(
        tags.iter().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from(["x".to_string(), "y".to_string()])
    );
    let AttributeValue::M(nested) = &a["nested"] else {
        panic!("nested is a map: {a:?}")
    };
    assert_eq!(nested["bytes"], AttributeValue::B(vec![9u8, 0].into()));
    let AttributeValue::L(list) = &nested["list"] else {
        panic!("nested.list is a list: {nested:?}")
    };
    let AttributeValue::Bs(bytes) = &list[1] else {
        panic!("nested.list[1] is a binary set: {list:?}")
    };
    assert_eq!(
        bytes
            .iter()
            .map(|b| b.as_ref().to_vec())
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([vec![1u8], vec![2u8]])
    );
    assert_eq!(
        object(&rt, &clients, "files", "generated/big.bin"),
        noise(BIG, 7)
    );
    assert_eq!(object(&rt, &clients, "files", "copy/same.txt"), b"same");
    let head = rt
        .block_on(
            clients
                .s3
                .head_object()
                .bucket("files")
                .key("generated/big.bin")
                .send(),
        )
        .expect("head");
    assert_eq!(head.content_type(), Some("application/x-test"));
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get("owner"))
            .map(String::as_str),
        Some("me")
    );
    let receive_all = |queue: &str| {
        let url = queue_url(&rt, &clients, queue);
        let mut bodies = Vec::new();
        loop {
            let output = rt
                .block_on(
                    clients
                        .sqs
                        .receive_message()
                        .queue_url(&url)
                        .max_number_of_messages(10)
                        .visibility_timeout(60)
                        .message_attribute_names("All")
                        .message_system_attribute_names(
                            aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId,
                        )
                        .send(),
                )
                .expect("receive");
            let messages = output.messages.unwrap_or_default();
            if messages.is_empty() {
                return bodies;
            }
            for message in messages {
                let attribute = message
                    .message_attributes()
                    .and_then(|a| a.get("kind"))
                    .and_then(|v| v.string_value())
                    .map(str::to_string);
                let group = message
                    .attributes()
                    .and_then(|a| {
                        a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
                    })
                    .cloned();
                bodies.push((
                    message.body().unwrap_or_default().to_string(),
                    attribute,
                    group,
                ));
            }
        }
    };
    let mut jobs = receive_all("jobs");
    jobs.sort();
    assert_eq!(
        jobs,
        [
            ("job-1".to_string(), Some("import".to_string()), None),
            ("job-2".to_string(), None, None)
        ]
    );
    let orders: Vec<(String, Option<String>)> = receive_all("orders.fifo")
        .into_iter()
        .map(|(body, _, group)| (body, group))
        .collect();
    let group = Some("customer-1".to_string());
    assert_eq!(
        orders,
        [
            ("order-1".to_string(), group.clone()),
            ("order-2".to_string(), group)
        ],
        "FIFO order and group kept"
    );
    let mut connection = redis(project);
    let session: String = redis::cmd("GET")
        .arg("session")
        .query(&mut connection)
        .expect("GET");
    assert_eq!(session, "s-1");
    let ttl: i64 = redis::cmd("TTL")
        .arg("session")
        .query(&mut connection)
        .expect("TTL");
    assert!(ttl > 0 && ttl <= 3600, "the time to live is kept: {ttl}");
    let recent: Vec<String> = redis::cmd("LRANGE")
        .arg("recent")
        .arg(0)
        .arg(-1)
        .query(&mut connection)
        .expect("LRANGE");
    assert_eq!(recent, ["a", "b"]);
}

#[test]
fn with_persist_what_clients_wrote_survives_stop_and_run() {
    let project = project("\n[stack]\npersist = true\n");
    project.start(&["--no-populate"]);
    write_state(&project);
    let stopped = project.run(&["stop"]);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    assert!(
        text(&stopped.stderr).contains("saved the stack's state as snapshot `persist`"),
        "{}",
        text(&stopped.stderr)
    );
    let readiness_before: Value = project.start(&["--no-populate"]);
    assert!(readiness_before.is_object());
    let steps: Value = serde_json::from_str(
        &std::fs::read_to_string(project.path().join(".inframock/readiness.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(steps["snapshot"]["state"], "done", "{steps}");
    // The objects were written again with the same bytes: a save finds their contents by ETag and
    // size, asks only their type and metadata, and fetches none.
    let saved = project.run_json(&["snapshot", "save", "after-restart", "--json"]);
    assert_eq!(saved["objects_fetched"], 0, "{saved}");
    assert_eq!(saved["manifest"]["counts"]["objects"], 3, "{saved}");
    // A second run while the stack runs does not load the state again (no doubled messages).
    project.start(&["--no-populate"]);
    assert_state(&project);
    // `stop --no-save` keeps the last save: the messages consumed above come back next run.
    let stopped = project.run(&["stop", "--no-save"]);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    project.start(&["--no-populate"]);
    assert_state(&project);
}

/// On moto a save reads tables through an export, which leaves no trace: its bucket is gone and
/// point-in-time recovery is off again. Elsewhere tables are scanned.
fn check_how_tables_were_read(project: &Project, saved: &Value) {
    let exported = &saved["tables_exported"];
    if project.service("aws")["kind"] != "moto" {
        assert_eq!(exported, &serde_json::json!([]), "{saved}");
        return;
    }
    assert_eq!(exported, &serde_json::json!(["things"]), "{saved}");
    let rt = runtime();
    let clients = clients(&rt, &project.endpoint());
    assert_only_declared_buckets(&rt, &clients, &saved.to_string());
    assert_eq!(
        recovery_status(&rt, &clients, "things"),
        "DISABLED",
        "recovery is off again"
    );
}

#[test]
fn a_snapshot_loads_into_the_other_engine_with_an_identical_dump() {
    let other = match crate::support::engine().as_str() {
        "ministack" => "moto",
        _ => "ministack",
    };
    let source = project("");
    source.start(&["--no-populate"]);
    write_state(&source);
    let saved = source.run_json(&["snapshot", "save", "state", "--json"]);
    check_how_tables_were_read(&source, &saved);
    assert_eq!(saved["manifest"]["counts"]["objects"], 3, "{saved}");
    assert_eq!(
        saved["manifest"]["counts"]["contents"], 2,
        "the same bytes are stored once: {saved}"
    );
    assert_eq!(saved["manifest"]["counts"]["messages"], 4, "{saved}");
    let archive = source.path().join("state.tar.zst");
    source.run_json(&[
        "snapshot",
        "export",
        "state",
        archive.to_str().unwrap(),
        "--json",
    ]);

    let target = project("");
    start_on(&target, other);
    assert_eq!(target.service("aws")["kind"], other);
    target.run_json(&["snapshot", "import", archive.to_str().unwrap(), "--json"]);
    let loaded = target.run_json(&["snapshot", "load", "state", "--json"]);
    assert_eq!(loaded["messages"], 4, "{loaded}");
    assert_eq!(loaded["redis_keys"], 2, "{loaded}");
    assert_eq!(loaded["failed"], serde_json::json!([]), "{loaded}");
    let saved_back = target.run_json(&["snapshot", "save", "back", "--json"]);
    check_how_tables_were_read(&target, &saved_back);
    let diff = target.run_json(&["snapshot", "diff", "state", "back", "--json"]);
    assert_eq!(diff["same"], true, "{diff}");
    assert_state(&target);
}

#[test]
fn a_second_save_fetches_nothing_and_replace_leaves_exactly_the_snapshot() {
    let project = project("");
    project.start(&["--no-populate"]);
    write_state(&project);
    let first = project.run_json(&["snapshot", "save", "one", "--json"]);
    assert_eq!(first["objects_fetched"], 3, "{first}");
    // The versioned bucket is read for its history (moto's versioning answer is read as text: the
    // SDK refuses it); it has none here.
    assert_eq!(first["manifest"]["counts"]["versions"], 0, "{first}");
    assert!(
        first["manifest"]["notes"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{first}"
    );
    let second = project.run_json(&["snapshot", "save", "two", "--json"]);
    assert_eq!(second["objects_fetched"], 0, "{second}");
    // Without `persist` the declared table has no stream: every save reads it whole.
    assert_eq!(
        second["tables_without_stream"],
        serde_json::json!(["things"]),
        "{second}"
    );
    let diff = project.run_json(&["snapshot", "diff", "one", "two", "--json"]);
    assert_eq!(diff["same"], true, "{diff}");
    // The content is linked, not written again.
    let content = |name: &str| {
        let hash = saved_hash(project.path(), name, "generated/big.bin");
        std::fs::metadata(project.path().join(format!(
            ".inframock/snapshots/{name}/objects/{}/{hash}",
            &hash[..2]
        )))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .expect("content file")
    };
    assert_eq!(content("one"), content("two"));

    // Changes since: an object, an item, a key, a message.
    let rt = runtime();
    let clients = clients(&rt, &project.endpoint());
    rt.block_on(
        clients
            .s3
            .put_object()
            .bucket("files")
            .key("generated/same.txt")
            .body(b"changed".to_vec().into())
            .send(),
    )
    .expect("put");
    rt.block_on(
        clients
            .dynamodb
            .put_item()
            .table_name("things")
            .item("id", AttributeValue::S("c".into()))
            .item("n", AttributeValue::N("1".into()))
            .send(),
    )
    .expect("put item");
    let _: () = redis::cmd("SET")
        .arg("extra")
        .arg("1")
        .query(&mut redis(&project))
        .expect("SET");
    let jobs = queue_url(&rt, &clients, "jobs");
    rt.block_on(
        clients
            .sqs
            .send_message()
            .queue_url(&jobs)
            .message_body("job-3")
            .send(),
    )
    .expect("send");
    let third = project.run_json(&["snapshot", "save", "three", "--json"]);
    assert_eq!(third["objects_fetched"], 1, "{third}");
    let diff = project.run_json(&["snapshot", "diff", "one", "three", "--json"]);
    assert_eq!(diff["same"], false);
    assert_eq!(
        diff["diff"]["objects"]["changed"],
        serde_json::json!(["files/generated/same.txt"])
    );
    assert_eq!(
        diff["diff"]["items"]["things"]["added"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(diff["diff"]["redis"]["added"], serde_json::json!(["extra"]));
    assert_eq!(
        diff["diff"]["messages"]["jobs"]["added"],
        serde_json::json!(["job-3"])
    );

    // --replace: the stack holds exactly snapshot one again.
    let loaded = project.run_json(&["snapshot", "load", "one", "--replace", "--json"]);
    assert_eq!(loaded["failed"], serde_json::json!([]), "{loaded}");
    assert_eq!(
        (&loaded["objects_written"], &loaded["objects_unchanged"]),
        (&serde_json::json!(1), &serde_json::json!(2)),
        "only the changed object is sent again: {loaded}"
    );
    project.run_json(&["snapshot", "save", "after", "--json"]);
    let diff = project.run_json(&["snapshot", "diff", "one", "after", "--json"]);
    assert_eq!(diff["same"], true, "{diff}");

    let listed = project.run_json(&["snapshot", "list", "--json"]);
    let names: Vec<&str> = listed["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["after", "one", "three", "two"]);
    project.run_json(&["snapshot", "rm", "two", "--json"]);
    assert!(!project.path().join(".inframock/snapshots/two").exists());

    // Saved without --json, the save says what `persist` would spare it.
    let said = project.run(&["snapshot", "save", "five"]);
    let stdout = String::from_utf8_lossy(&said.stdout);
    assert!(said.status.success(), "{stdout}");
    assert!(
        stdout.contains("hint: table things had no stream")
            && stdout.contains("`[stack] persist = true`"),
        "{stdout}"
    );
}

/// The content hash a snapshot recorded for an object of bucket `files`.
fn saved_hash(project: &std::path::Path, snapshot: &str, key: &str) -> String {
    let lines = std::fs::read_to_string(
        project.join(format!(".inframock/snapshots/{snapshot}/objects.jsonl")),
    )
    .expect("objects.jsonl");
    lines
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|o| o["key"] == key)
        .and_then(|o| o["hash"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("{key} in {lines}"))
}

#[test]
fn a_damaged_snapshot_or_one_that_does_not_fit_is_refused_with_nothing_written() {
    let project = project("");
    project.start(&["--no-populate"]);
    write_state(&project);
    project.run_json(&["snapshot", "save", "s", "--json"]);
    let _: () = redis::cmd("SET")
        .arg("marker")
        .arg("kept")
        .query(&mut redis(&project))
        .expect("SET");
    let refused = |args: &[&str], names: &str| {
        let output = project.run(args);
        assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
        let stderr = text(&output.stderr);
        assert!(stderr.contains(names), "names {names}: {stderr}");
        assert!(stderr.contains("nothing was"), "{stderr}");
        let marker: Option<String> = redis::cmd("GET")
            .arg("marker")
            .query(&mut redis(&project))
            .expect("GET");
        assert_eq!(marker.as_deref(), Some("kept"), "--replace emptied nothing");
    };
    let snapshot = project.path().join(".inframock/snapshots/s");

    // One flipped byte in an object's content.
    let hash = saved_hash(project.path(), "s", "generated/big.bin");
    let content = snapshot.join(format!("objects/{}/{hash}", &hash[..2]));
    let original = std::fs::read(&content).unwrap();
    let mut damaged = original.clone();
    damaged[BIG / 2] ^= 1;
    std::fs::write(&content, &damaged).unwrap();
    refused(
        &["snapshot", "load", "s", "--replace"],
        "s3://files/generated/big.bin",
    );
    std::fs::write(&content, &original).unwrap();

    // A truncated item file.
    let items = snapshot.join("tables/things/00001.json");
    let text_before = std::fs::read(&items).unwrap();
    std::fs::write(&items, &text_before[..text_before.len() - 4]).unwrap();
    refused(
        &["snapshot", "load", "s", "--replace"],
        "tables/things/00001.json: holds",
    );
    std::fs::write(&items, &text_before).unwrap();

    // A stack file that declares the table with another key.
    project.write(
        "inframock.toml",
        STACK.replace("attributes = { n = \"N\" }", "attributes = { n = \"S\" }"),
    );
    refused(
        &["snapshot", "load", "s", "--replace"],
        "table things: inframock.toml declares the key hash id (S), range n (S), the snapshot's items have hash id (S), range n (N)",
    );
    project.write("inframock.toml", STACK);

    // Intact again: it loads.
    project.run_json(&["snapshot", "load", "s", "--json"]);
}

#[test]
fn with_persist_every_a_killed_engine_loses_nothing_saved_before_it_died() {
    let project = project("\n[stack]\npersist = true\npersist_every = 1\n");
    project.start(&["--no-populate"]);
    let keeper = project.service("persist");
    assert!(keeper["pid"].as_u64().is_some(), "{keeper}");
    write_state(&project);
    // The keeper saves every second; wait (bounded) until a save holds everything written.
    let manifest = project
        .path()
        .join(".inframock/snapshots/persist/manifest.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let counts = std::fs::read_to_string(&manifest)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .map(|m| m["counts"].clone());
        if counts.as_ref().is_some_and(|c| {
            c["items"] == 2 && c["objects"] == 3 && c["messages"] == 4 && c["redis_keys"] == 2
        }) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no periodic save holds the state: {counts:?}; keeper log: {}",
            std::fs::read_to_string(project.path().join(".inframock/logs/persist.log"))
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The engine dies (kill -9): `stop` cannot save it, says so, and stops the rest.
    let engine = project.service("aws")["pid"].as_u64().expect("aws pid") as i32;
    // SAFETY: a plain kill(2) of the engine process this test's stack started.
    unsafe {
        libc::kill(engine, libc::SIGKILL);
    }
    let stopped = project.run(&["stop"]);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    assert!(
        text(&stopped.stderr).contains("could not be saved"),
        "{}",
        text(&stopped.stderr)
    );
    project.start(&["--no-populate"]);
    assert_state(&project);
}

/// Changes item `b` of `things` in place: the table keeps its count and nearly its size.
fn set_colour(rt: &tokio::runtime::Runtime, clients: &Clients, value: &str) {
    rt.block_on(
        clients
            .dynamodb
            .update_item()
            .table_name("things")
            .key("id", AttributeValue::S("b".into()))
            .key("n", AttributeValue::N("7".into()))
            .update_expression("SET colour = :c")
            .expression_attribute_values(":c", AttributeValue::S(value.into()))
            .send(),
    )
    .expect("update item");
}

/// The tables a save proved unchanged since an earlier save (their files linked, not read).
fn unchanged_tables(saved: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = saved["tables_unchanged"]
        .as_array()
        .unwrap_or_else(|| panic!("no tables_unchanged: {saved}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    names.sort_unstable();
    names
}

#[test]
fn with_persist_a_save_reads_again_only_the_tables_written_since_the_last() {
    let project =
        project("\n[stack]\npersist = true\n\n[[tables]]\nname = \"quiet\"\nhash_key = \"id\"\n");
    project.start(&["--no-populate"]);
    write_state(&project);
    let rt = runtime();
    let clients = clients(&rt, &project.endpoint());
    let described = rt
        .block_on(
            clients
                .dynamodb
                .describe_table()
                .table_name("things")
                .send(),
        )
        .expect("describe");
    let stream = described.table().and_then(|t| t.stream_specification());
    assert_eq!(
        stream
            .and_then(|s| s.stream_view_type())
            .map(|v| v.as_str()),
        Some("KEYS_ONLY"),
        "persist gives declared tables a stream: {described:?}"
    );
    rt.block_on(
        clients
            .dynamodb
            .put_item()
            .table_name("quiet")
            .item("id", AttributeValue::S("q".into()))
            .send(),
    )
    .expect("put quiet");

    let first = project.run_json(&["snapshot", "save", "one", "--json"]);
    assert_eq!(unchanged_tables(&first), Vec::<&str>::new(), "{first}");
    assert_eq!(
        first["tables_without_stream"],
        serde_json::json!([]),
        "{first}"
    );
    let second = project.run_json(&["snapshot", "save", "two", "--json"]);
    assert_eq!(unchanged_tables(&second), ["quiet", "things"], "{second}");
    let diff = project.run_json(&["snapshot", "diff", "one", "two", "--json"]);
    assert_eq!(diff["same"], true, "{diff}");

    // An item changed in place (the table's size and count stay the same) is seen.
    set_colour(&rt, &clients, "red");
    let third = project.run_json(&["snapshot", "save", "three", "--json"]);
    assert_eq!(unchanged_tables(&third), ["quiet"], "{third}");
    let diff = project.run_json(&["snapshot", "diff", "two", "three", "--json"]);
    assert_eq!(
        diff["diff"]["items"]["things"]["changed"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{diff}"
    );

    // Saving again under the same name keeps the linked files whole.
    rt.block_on(
        clients
            .dynamodb
            .delete_item()
            .table_name("quiet")
            .key("id", AttributeValue::S("q".into()))
            .send(),
    )
    .expect("delete item");
    let again = project.run_json(&["snapshot", "save", "three", "--json"]);
    assert_eq!(unchanged_tables(&again), ["things"], "{again}");
    assert_eq!(again["manifest"]["counts"]["items"], 2, "{again}");
    // A table deleted and created again under its name is another table: its stream proves
    // nothing, so it is read again. On moto it is read through an export, whose text (no items)
    // is the text of the empty table saved above, so that save's files (none) are reused.
    rt.block_on(clients.dynamodb.delete_table().table_name("quiet").send())
        .expect("delete table");
    project.start(&["--no-populate"]);
    let after = project.run_json(&["snapshot", "save", "four", "--json"]);
    if project.service("aws")["kind"] == "moto" {
        assert_eq!(unchanged_tables(&after), ["quiet", "things"], "{after}");
        assert_eq!(
            after["tables_exported"],
            serde_json::json!(["quiet"]),
            "{after}"
        );
    } else {
        assert_eq!(unchanged_tables(&after), ["things"], "{after}");
    }
    assert_eq!(after["manifest"]["counts"]["items"], 2, "{after}");
    // Every snapshot that shares linked files still loads (a load verifies every part first).
    for name in ["one", "two", "three", "four"] {
        let loaded =
            project.run_json(&["snapshot", "load", name, "--json", "--services", "dynamodb"]);
        assert_eq!(loaded["failed"], serde_json::json!([]), "{name}: {loaded}");
    }
}

#[test]
fn turning_persist_on_gives_an_existing_table_a_stream() {
    let project = project("");
    project.start(&["--no-populate"]);
    let rt = runtime();
    let clients = clients(&rt, &project.endpoint());
    let view = |clients: &Clients| {
        rt.block_on(
            clients
                .dynamodb
                .describe_table()
                .table_name("things")
                .send(),
        )
        .expect("describe")
        .table()
        .and_then(|t| t.stream_specification())
        .filter(|s| s.stream_enabled())
        .and_then(|s| s.stream_view_type())
        .map(|v| v.as_str().to_string())
    };
    assert_eq!(view(&clients), None, "no stream without persist");
    project.write(
        "inframock.toml",
        format!("{STACK}\n[stack]\npersist = true\n"),
    );
    project.start(&["--no-populate"]);
    assert_eq!(view(&clients).as_deref(), Some("KEYS_ONLY"));
    project.run_json(&["snapshot", "save", "one", "--json"]);
    let second = project.run_json(&["snapshot", "save", "two", "--json"]);
    assert_eq!(unchanged_tables(&second), ["things"], "{second}");
}

#[test]
fn without_a_stream_moto_proves_a_table_unchanged_by_its_exports_text() {
    let project = project("");
    project.start(&["--no-populate"]);
    write_state(&project);
    let rt = runtime();
    let clients = clients(&rt, &project.endpoint());
    let colour = |value: &str| set_colour(&rt, &clients, value);
    colour("blue");
    let on_moto = project.service("aws")["kind"] == "moto";
    // Elsewhere tables are scanned: nothing proves them unchanged without a stream.
    let reused = |names: &[&'static str]| if on_moto { names.to_vec() } else { Vec::new() };
    let one = project.run_json(&["snapshot", "save", "one", "--json"]);
    assert_eq!(unchanged_tables(&one), Vec::<&str>::new(), "{one}");
    let two = project.run_json(&["snapshot", "save", "two", "--json"]);
    assert_eq!(unchanged_tables(&two), reused(&["things"]), "{two}");
    // An item changed in place (the same count, the same size) is read again.
    colour("pink");
    let three = project.run_json(&["snapshot", "save", "three", "--json"]);
    assert_eq!(unchanged_tables(&three), Vec::<&str>::new(), "{three}");
    let diff = project.run_json(&["snapshot", "diff", "two", "three", "--json"]);
    assert_eq!(diff["same"], false, "{diff}");
    // Changed back, the table holds what `one` held: its files are taken from there.
    colour("blue");
    let four = project.run_json(&["snapshot", "save", "four", "--json"]);
    assert_eq!(unchanged_tables(&four), reused(&["things"]), "{four}");
    for (a, b) in [("one", "four"), ("one", "two")] {
        let diff = project.run_json(&["snapshot", "diff", a, b, "--json"]);
        assert_eq!(diff["same"], true, "{a} and {b}: {diff}");
    }
    // A reused table loads like any other (a load verifies every part first).
    let loaded = project.run_json(&["snapshot", "load", "four", "--replace", "--json"]);
    assert_eq!(loaded["failed"], serde_json::json!([]), "{loaded}");
    assert_state(&project);
}

/// Each version of `key` in bucket `history`, oldest first: its body, or `None` for a delete marker.
fn history_of(rt: &tokio::runtime::Runtime, clients: &Clients, key: &str) -> Vec<Option<String>> {
    let listed = rt
        .block_on(
            clients
                .s3
                .list_object_versions()
                .bucket("history")
                .prefix(key)
                .send(),
        )
        .expect("list versions");
    let mut entries: Vec<(aws_smithy_types::DateTime, bool, usize, Option<String>)> = Vec::new();
    for version in listed.versions() {
        let id = version.version_id().expect("version id").to_string();
        let body = rt.block_on(async {
            let object = clients
                .s3
                .get_object()
                .bucket("history")
                .key(key)
                .version_id(&id)
                .send()
                .await
                .expect("get version");
            object.body.collect().await.expect("body").into_bytes()
        });
        entries.push((
            *version.last_modified().expect("time"),
            version.is_latest().unwrap_or(false),
            entries.len(),
            Some(String::from_utf8_lossy(&body).into_owned()),
        ));
    }
    for marker in listed.delete_markers() {
        entries.push((
            *marker.last_modified().expect("time"),
            marker.is_latest().unwrap_or(false),
            entries.len(),
            None,
        ));
    }
    // By time (moto lists whole seconds), the latest last; listed newest first, so among equal
    // times the one listed later is older.
    entries.sort_by(|a, b| {
        (a.0.secs(), a.0.subsec_nanos(), a.1)
            .cmp(&(b.0.secs(), b.0.subsec_nanos(), b.1))
            .then(b.2.cmp(&a.2))
    });
    entries.into_iter().map(|(_, _, _, body)| body).collect()
}

/// Writes `body` under `key` in the versioned bucket `history`; the id of the version written.
fn put_history(
    rt: &tokio::runtime::Runtime,
    clients: &Clients,
    key: &str,
    body: Vec<u8>,
) -> String {
    rt.block_on(
        clients
            .s3
            .put_object()
            .bucket("history")
            .key(key)
            .body(body.into())
            .send(),
    )
    .expect("put")
    .version_id()
    .expect("a versioned bucket names each version")
    .to_string()
}

#[test]
fn a_versioned_buckets_history_survives_save_and_load() {
    let project = project("");
    project.start(&["--no-populate"]);
    let rt = runtime();
    // Versions written within one second must still come back in their order.
    let put = |clients: &Clients, key: &str, body: &str| {
        put_history(&rt, clients, key, body.as_bytes().to_vec());
    };
    let clients = clients(&rt, &project.endpoint());
    for body in ["one", "two", "three"] {
        put(&clients, "doc.txt", body);
    }
    put(&clients, "gone.txt", "x");
    rt.block_on(
        clients
            .s3
            .delete_object()
            .bucket("history")
            .key("gone.txt")
            .send(),
    )
    .expect("delete");
    let doc = vec![
        Some("one".to_string()),
        Some("two".into()),
        Some("three".into()),
    ];
    let gone = vec![Some("x".to_string()), None];
    assert_eq!(history_of(&rt, &clients, "doc.txt"), doc);
    assert_eq!(history_of(&rt, &clients, "gone.txt"), gone);

    let saved = project.run_json(&["snapshot", "save", "h", "--json"]);
    assert_eq!(saved["manifest"]["counts"]["versions"], 4, "{saved}");

    // Into a fresh engine: the history comes back in order, the current object last.
    let stopped = project.run(&["stop", "--no-save"]);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    project.start(&["--no-populate"]);
    let clients = crate::support::clients(&rt, &project.endpoint());
    let loaded = project.run_json(&["snapshot", "load", "h", "--json"]);
    assert_eq!(loaded["failed"], serde_json::json!([]), "{loaded}");
    assert_eq!(loaded["versions_written"], 4, "{loaded}");
    assert_eq!(history_of(&rt, &clients, "doc.txt"), doc);
    assert_eq!(history_of(&rt, &clients, "gone.txt"), gone);

    // --merge never writes a key's history twice.
    let again = project.run_json(&["snapshot", "load", "h", "--json"]);
    assert_eq!(
        (&again["versions_written"], &again["histories_kept"]),
        (&serde_json::json!(0), &serde_json::json!(2)),
        "{again}"
    );
    assert_eq!(history_of(&rt, &clients, "doc.txt"), doc);

    // --replace: the bucket's own history goes, the snapshot's comes back.
    put(&clients, "doc.txt", "four");
    let replaced = project.run_json(&["snapshot", "load", "h", "--replace", "--json"]);
    assert_eq!(replaced["versions_written"], 4, "{replaced}");
    assert_eq!(history_of(&rt, &clients, "doc.txt"), doc);
    assert_eq!(history_of(&rt, &clients, "gone.txt"), gone);
    let resaved = project.run_json(&["snapshot", "save", "h2", "--json"]);
    let diff = project.run_json(&["snapshot", "diff", "h", "h2", "--json"]);
    assert_eq!(diff["same"], true, "{resaved} {diff}");
}

/// Buckets whose history a save took from an earlier snapshot instead of listing it.
fn unchanged_histories(saved: &Value) -> Vec<&str> {
    saved["histories_unchanged"]
        .as_array()
        .unwrap_or_else(|| panic!("no histories_unchanged: {saved}"))
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

#[test]
fn a_versioned_buckets_history_is_listed_again_only_when_it_changed() {
    let project = project("");
    project.start(&["--no-populate"]);
    // moto checks a history against the earlier save's mark where that costs less than listing
    // it (objects of megabytes, as here); the other engines list it every time.
    let checked = project.service("aws")["kind"] == "moto";
    let rt = runtime();
    let clients = clients(&rt, &project.endpoint());
    let put =
        |key: &str, label: &str| put_history(&rt, &clients, key, large_body(label).into_bytes());
    let delete = |key: &str, version: Option<&str>| -> String {
        rt.block_on(
            clients
                .s3
                .delete_object()
                .bucket("history")
                .key(key)
                .set_version_id(version.map(str::to_string))
                .send(),
        )
        .expect("delete")
        .version_id()
        .unwrap_or_default()
        .to_string()
    };
    let first_doc = put("doc.txt", "one");
    put("doc.txt", "two");
    put("hidden.txt", "h");
    let marker = delete("hidden.txt", None);

    let mut number = 0;
    let mut save = |expect_reused: bool, what: &str| -> Value {
        number += 1;
        let name = format!("s{number}");
        let saved = project.run_json(&["snapshot", "save", &name, "--json"]);
        let reused = checked && expect_reused;
        assert_eq!(
            unchanged_histories(&saved),
            if reused { vec!["history"] } else { vec![] },
            "{what}: {saved}"
        );
        // Reused or listed, the snapshot holds the history the engine lists now.
        assert_eq!(
            saved["manifest"]["counts"]["versions"],
            versions_now(&rt, &clients),
            "{what}: {saved}"
        );
        saved
    };
    save(false, "a first save lists the history");
    save(true, "nothing changed");

    // A key written and deleted since: only the count of key names shows it.
    put("brief.txt", "b");
    delete("brief.txt", None);
    save(false, "a key written and deleted");
    save(true, "nothing changed since");

    // An older version deleted for good: the key's newest entry is the same.
    delete("doc.txt", Some(&first_doc));
    save(false, "an older version deleted");

    // A delete marker removed: the hidden key is back.
    delete("hidden.txt", Some(&marker));
    save(false, "a delete marker removed");

    // A new version of a key.
    put("doc.txt", "three");
    let last = save(false, "a new version");
    let again = save(true, "nothing changed since");
    let name = |saved: &Value| saved["name"].as_str().expect("name").to_string();
    let diff = project.run_json(&["snapshot", "diff", &name(&last), &name(&again), "--json"]);
    assert_eq!(diff["same"], true, "{diff}");
    assert_eq!(
        history_of(&rt, &clients, "doc.txt"),
        [Some(large_body("two")), Some(large_body("three"))]
    );
}

#[test]
fn a_settled_key_is_proven_unchanged_by_its_listing_and_a_rewrite_with_the_same_bytes_is_seen() {
    let project = project("");
    project.start(&["--no-populate"]);
    let checked = project.service("aws")["kind"] == "moto";
    let rt = runtime();
    let clients = clients(&rt, &project.endpoint());
    let put = |key: &str| put_history(&rt, &clients, key, large_body("same").into_bytes());
    put("same.txt");
    put("twice.txt");
    put("twice.txt");
    // Settled: written in a second at least two before the save's mark.
    std::thread::sleep(std::time::Duration::from_millis(3_100));
    let engine_log = project.path().join(".inframock/logs/aws.log");
    let heads_of = |key: &str| {
        std::fs::read_to_string(&engine_log)
            .map(|log| log.matches(&format!("\"HEAD /history/{key}")).count())
            .unwrap_or(0)
    };
    let save = |name: &str| project.run_json(&["snapshot", "save", name, "--json"]);
    save("s1");
    let heads_before = (heads_of("same.txt"), heads_of("twice.txt"));
    let again = save("s2");
    assert_eq!(
        unchanged_histories(&again),
        if checked { vec!["history"] } else { vec![] },
        "{again}"
    );
    if checked {
        // The key with one entry is proven by the listing; the one with an older version by HEADs.
        assert_eq!(heads_of("same.txt"), heads_before.0, "{again}");
        assert!(heads_of("twice.txt") > heads_before.1, "{again}");
    }

    // The same bytes again: the same ETag and size, a new version and a later time.
    put("same.txt");
    let rewritten = save("s3");
    assert_eq!(
        unchanged_histories(&rewritten),
        Vec::<&str>::new(),
        "{rewritten}"
    );
    assert_eq!(
        rewritten["manifest"]["counts"]["versions"], 2,
        "{rewritten}"
    );
    assert_eq!(
        rewritten["manifest"]["counts"]["versions"],
        versions_now(&rt, &clients),
        "{rewritten}"
    );
}

/// A body of 4 MiB that starts with `label`.
fn large_body(label: &str) -> String {
    format!("{label}\n{}", "x".repeat(4 << 20))
}

/// How many older versions and delete markers the bucket `history` holds (each key's newest
/// object is not history).
fn versions_now(rt: &tokio::runtime::Runtime, clients: &Clients) -> Value {
    let listed = rt
        .block_on(clients.s3.list_object_versions().bucket("history").send())
        .expect("list versions");
    let older = listed
        .versions()
        .iter()
        .filter(|v| v.is_latest() != Some(true))
        .count();
    serde_json::json!(older + listed.delete_markers().len())
}

/// Debian's libfaketime (`.ci/run` installs it).
fn libfaketime() -> String {
    let found = std::fs::read_dir("/usr/lib")
        .expect("/usr/lib")
        .flatten()
        .map(|dir| dir.path().join("faketime/libfaketime.so.1"))
        .find(|library| library.exists());
    found
        .unwrap_or_else(|| panic!("libfaketime is missing: apt-get install libfaketime"))
        .display()
        .to_string()
}

/// A stream that dropped records since the last save proves nothing, even when no write
/// followed: the table is read whole again. DynamoDB and MiniStack drop a stream's records after
/// 24 hours; MiniStack's clock is moved two days on with libfaketime (moto never trims, so this
/// runs on MiniStack whichever engine the suite tests).
#[test]
fn a_stream_that_dropped_records_since_the_last_save_proves_nothing() {
    let project = Project::new();
    let clock = project.path().join("engine-clock");
    std::fs::write(&clock, "+0\n").expect("clock file");
    project.write(
        "inframock.toml",
        format!(
            "{STACK}\n[stack]\npersist = true\n\n[services.aws]\nenv = {{ LD_PRELOAD = {:?}, FAKETIME_TIMESTAMP_FILE = {:?}, FAKETIME_NO_CACHE = \"1\" }}\n",
            libfaketime(),
            clock.display().to_string()
        ),
    );
    start_on(&project, "ministack");
    let rt = runtime();
    let clients = clients(&rt, &project.endpoint());
    rt.block_on(
        clients
            .dynamodb
            .put_item()
            .table_name("things")
            .item("id", AttributeValue::S("kept".into()))
            .item("n", AttributeValue::N("1".into()))
            .send(),
    )
    .expect("put item");
    project.run_json(&["snapshot", "save", "one", "--json"]);
    let two = project.run_json(&["snapshot", "save", "two", "--json"]);
    assert_eq!(
        unchanged_tables(&two),
        ["things"],
        "with the stream intact, no write since the last save is proof: {two}"
    );

    std::fs::write(&clock, "+2d\n").expect("move the engine's clock");
    let three = project.run_json(&["snapshot", "save", "three", "--json"]);
    assert_eq!(
        unchanged_tables(&three),
        Vec::<&str>::new(),
        "the mark's record was trimmed: the table is read whole: {three}"
    );
    assert_eq!(three["manifest"]["counts"]["items"], 1, "{three}");
    let diff = project.run_json(&["snapshot", "diff", "two", "three", "--json"]);
    assert_eq!(diff["same"], true, "{diff}");
}

/// On moto a table whose export fails is read by Scan instead, with the reason in the manifest,
/// and holds what an export gives. The failure is real moto behind `inframock mock`, which answers
/// the one `ExportTableToPointInTime` with the error DynamoDB gives for a conflicting export and
/// forwards every other request to moto. The export's bucket and recovery setting are undone.
#[test]
fn a_table_whose_export_fails_is_scanned_with_the_reason_in_the_manifest() {
    let engine = project("");
    start_on(&engine, "moto");
    write_state(&engine);
    let conflict = serde_json::json!({
        "path": "/",
        "method": "POST",
        "request_headers": {"X-Amz-Target": "DynamoDB_20120810.ExportTableToPointInTime"},
        "status_code": 400,
        "headers": {"Content-Type": "application/x-amz-json-1.0"},
        "body": {"__type": "com.amazonaws.dynamodb.v20120810#ExportConflictException",
                 "message": "another export of this table is in progress"},
        "repeat_count": 1
    });
    let (_mock, project) = behind_mock(&engine, "", &[conflict]);
    assert_eq!(project.service("aws")["kind"], "moto");

    let scanned = project.run_json(&[
        "snapshot",
        "save",
        "scanned",
        "--services",
        "dynamodb",
        "--json",
    ]);
    assert_eq!(
        scanned["tables_exported"],
        serde_json::json!([]),
        "{scanned}"
    );
    let notes = scanned["manifest"]["notes"].to_string();
    assert!(
        notes.contains("table things")
            && notes.contains("ExportConflictException")
            && notes.contains("another export of this table is in progress")
            && notes.contains("read by Scan instead"),
        "the reason is recorded: {scanned}"
    );
    assert_eq!(scanned["manifest"]["counts"]["items"], 2, "{scanned}");

    // The expectation was used up: this save exports, and leaves no trace either.
    let exported = project.run_json(&[
        "snapshot",
        "save",
        "exported",
        "--services",
        "dynamodb",
        "--json",
    ]);
    check_how_tables_were_read(&project, &exported);
    let diff = project.run_json(&["snapshot", "diff", "scanned", "exported", "--json"]);
    assert_eq!(diff["same"], true, "{diff}");
}

#[test]
fn a_table_that_cannot_be_read_fails_the_save_and_every_other_table_is_left_as_it_was() {
    let broken_table = "\n[[tables]]\nname = \"broken\"\nhash_key = \"id\"\n";
    let engine = project(broken_table);
    start_on(&engine, "moto");
    let rt = runtime();
    let direct = clients(&rt, &engine.endpoint());
    // `things` is the largest table: its read starts first, and its export is still under way
    // when `broken` fails beside it.
    fill_things(&rt, &direct, 3_000);
    let broken_arn = rt.block_on(async {
        direct
            .dynamodb
            .put_item()
            .table_name("broken")
            .item("id", AttributeValue::S("only".into()))
            .send()
            .await
            .expect("put item");
        direct
            .dynamodb
            .describe_table()
            .table_name("broken")
            .send()
            .await
            .expect("DescribeTable")
            .table()
            .and_then(|t| t.table_arn())
            .expect("an ARN")
            .to_string()
    });
    let refusals = [
        serde_json::json!({
            "path": "/",
            "method": "POST",
            "request_headers": {"X-Amz-Target": "DynamoDB_20120810.ExportTableToPointInTime"},
            "json_body": {"TableArn": broken_arn},
            "status_code": 400,
            "headers": {"Content-Type": "application/x-amz-json-1.0"},
            "body": {"__type": "com.amazonaws.dynamodb.v20120810#ExportConflictException",
                     "message": "another export of this table is in progress"}
        }),
        serde_json::json!({
            "path": "/",
            "method": "POST",
            "request_headers": {"X-Amz-Target": "DynamoDB_20120810.Scan"},
            "json_body": {"TableName": "broken"},
            "status_code": 400,
            "headers": {"Content-Type": "application/x-amz-json-1.0"},
            "body": {"__type": "com.amazon.coral.validate#ValidationException",
                     "message": "this table cannot be scanned"}
        }),
    ];
    let (_mock, project) = behind_mock(&engine, broken_table, &refusals);

    let failed = project
        .command(&["snapshot", "save", "s", "--services", "dynamodb"])
        .output()
        .expect("snapshot save");
    let said = format!("{}{}", text(&failed.stdout), text(&failed.stderr));
    assert!(!failed.status.success(), "{said}");
    assert!(
        said.contains("table broken") && said.contains("this table cannot be scanned"),
        "the error names the table and the engine's reason: {said}"
    );
    let listed = project.run_json(&["snapshot", "list", "--json"]);
    assert!(
        !listed.to_string().contains("\"s\""),
        "no snapshot written: {listed}"
    );
    for table in ["things", "broken"] {
        assert_eq!(
            recovery_status(&rt, &direct, table),
            "DISABLED",
            "table {table}: recovery is off again"
        );
    }
    assert_only_declared_buckets(&rt, &direct, &said);
}

#[test]
fn an_interrupted_save_writes_nothing_and_leaves_the_engine_as_it_found_it() {
    use aws_sdk_sqs::types::QueueAttributeName;
    let project = project("");
    // Tables are exported (point-in-time recovery switched on for it) on moto.
    start_on(&project, "moto");
    let rt = runtime();
    let direct = clients(&rt, &project.endpoint());
    let jobs = queue_url(&rt, &direct, "jobs");
    rt.block_on(async {
        for batch in 0..100 {
            let entries = (0..10).map(|n| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(n.to_string())
                    .message_body(format!("job {batch}-{n}"))
                    .build()
                    .expect("entry")
            });
            direct
                .sqs
                .send_message_batch()
                .queue_url(&jobs)
                .set_entries(Some(entries.collect()))
                .send()
                .await
                .expect("SendMessageBatch");
        }
    });
    fill_things(&rt, &direct, 10_000);
    let queue_counts = || -> (u64, u64) {
        let attributes = rt
            .block_on(
                direct
                    .sqs
                    .get_queue_attributes()
                    .queue_url(&jobs)
                    .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                    .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                    .send(),
            )
            .expect("GetQueueAttributes")
            .attributes
            .unwrap_or_default();
        let count = |name| {
            attributes
                .get(&name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (
            count(QueueAttributeName::ApproximateNumberOfMessages),
            count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    };
    let recovery = || recovery_status(&rt, &direct, "things");
    // A save of `services`, interrupted (SIGINT, as Ctrl-C sends) once `under_way` holds.
    let interrupted_save = |services: &str, under_way: &dyn Fn() -> bool| -> String {
        let mut child = project
            .command(&["snapshot", "save", "s", "--services", services])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("snapshot save");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !under_way() {
            assert!(
                child.try_wait().expect("try_wait").is_none(),
                "the save ended before it could be interrupted"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "the save never got under way"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // SAFETY: sends SIGINT to our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let output = child.wait_with_output().expect("wait");
        let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert_eq!(output.status.code(), Some(1), "{said}");
        assert!(said.contains("interrupted"), "{said}");
        said
    };

    // While the queue's messages are held invisible.
    let said = interrupted_save("sqs", &|| queue_counts().1 > 0);
    assert_eq!(
        queue_counts(),
        (1_000, 0),
        "every message visible again: {said}"
    );

    // While the table is exported, its point-in-time recovery switched on for it.
    let said = interrupted_save("dynamodb", &|| recovery() == "ENABLED");
    assert_eq!(recovery(), "DISABLED", "recovery off again: {said}");
    assert_only_declared_buckets(&rt, &direct, &said);

    let snapshots = project.path().join(".inframock/snapshots");
    let left: Vec<String> = std::fs::read_dir(&snapshots)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with(".objects-index"))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        left,
        Vec::<String>::new(),
        "nothing written, nothing staged"
    );
}

/// Writes `count` items into table `things` (each with 200 bytes of text), 25 at a time.
fn fill_things(rt: &tokio::runtime::Runtime, clients: &Clients, count: u32) {
    rt.block_on(async {
        for chunk in (0..count).collect::<Vec<u32>>().chunks(25) {
            let writes = chunk.iter().map(|n| {
                let item = aws_sdk_dynamodb::types::PutRequest::builder()
                    .item("id", AttributeValue::S(format!("item-{n}")))
                    .item("n", AttributeValue::N(n.to_string()))
                    .item("text", AttributeValue::S("x".repeat(200)))
                    .build()
                    .expect("put request");
                aws_sdk_dynamodb::types::WriteRequest::builder()
                    .put_request(item)
                    .build()
            });
            clients
                .dynamodb
                .batch_write_item()
                .request_items("things", writes.collect())
                .send()
                .await
                .expect("BatchWriteItem");
        }
    });
}

/// A table's point-in-time recovery status (`ENABLED`, `DISABLED`), as the engine reports it.
fn recovery_status(rt: &tokio::runtime::Runtime, clients: &Clients, table: &str) -> String {
    rt.block_on(
        clients
            .dynamodb
            .describe_continuous_backups()
            .table_name(table)
            .send(),
    )
    .expect("DescribeContinuousBackups")
    .continuous_backups_description()
    .and_then(|d| d.point_in_time_recovery_description())
    .and_then(|d| d.point_in_time_recovery_status())
    .map(|s| s.as_str().to_string())
    .unwrap_or_default()
}

/// Asserts the engine holds only the stack's declared buckets (a save's export bucket is gone).
fn assert_only_declared_buckets(rt: &tokio::runtime::Runtime, clients: &Clients, what: &str) {
    let buckets = rt
        .block_on(clients.s3.list_buckets().send())
        .expect("ListBuckets");
    let names: BTreeSet<&str> = buckets.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["files", "history"]),
        "the save's export bucket is gone: {what}"
    );
}

/// A project run `--runtime external` on engine moto through `inframock mock --upstream` in front
/// of `engine`'s AWS endpoint (and on `engine`'s Redis), the mock holding `expectations` (every
/// other request is forwarded); the mock is stopped when dropped.
fn behind_mock(
    engine: &Project,
    stack_extra: &str,
    expectations: &[Value],
) -> (crate::mock::Mock, Project) {
    let upstream = format!("http://127.0.0.1:{}", engine.port_of("aws"));
    let mock = crate::mock::Mock::start(&["--upstream", &upstream]);
    let added = crate::support::http::Client::new();
    runtime().block_on(async {
        for expectation in expectations {
            let response = added
                .post(mock.url("/mocker/expectation"))
                .json(expectation)
                .send()
                .await
                .expect("POST /mocker/expectation");
            assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        }
    });
    let project = project(stack_extra);
    let started = crate::support::external_run(&project, &mock.url(""))
        .args([
            "--redis-url",
            &format!("redis://127.0.0.1:{}/", engine.port_of("redis")),
        ])
        .env("INFRAMOCK_ENGINE", "moto")
        .output()
        .expect("run");
    assert!(started.status.success(), "{}", text(&started.stderr));
    assert_eq!(project.service("aws")["kind"], "moto");
    (mock, project)
}
