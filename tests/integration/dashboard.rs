//! The dashboard service against a real stack (moto, redis-server): started by `run` with
//! `[services.dashboard] enabled = true`, its readiness URL (503 while the data loads and when it
//! failed, 200 once loaded), its Stack page and live events, and its refusals (a foreign `Host`,
//! a method other than GET).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{gzip, noise, text, Project};

/// One HTTP/1.1 exchange on a new connection: (status, body).
fn exchange(port: u16, method: &str, path: &str, host: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("dashboard answers");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn get(port: u16, path: &str) -> (u16, String) {
    exchange(port, "GET", path, &format!("localhost:{port}"))
}

fn dashboard_port(project: &Project) -> u16 {
    let state = project.state();
    state["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "dashboard"))
        .and_then(|s| s["port"].as_u64())
        .unwrap_or_else(|| panic!("dashboard recorded: {state}")) as u16
}

const STACK: &str = r#"
[[tables]]
name = "items"
hash_key = "id"

[[buckets]]
name = "files"

[[data.rules]]
pattern = "*.json"
table = "items"

[[data.rules]]
pattern = "*.gz"
bucket = "files"
key = "${experiment}/blob"
gunzip = true

[services.dashboard]
enabled = true
"#;

#[test]
fn the_dashboard_shows_the_stack_and_is_ready_only_once_the_data_is_loaded() {
    let project = Project::new();
    project.write("inframock.toml", STACK);
    project.write("data/e1/item.json", r#"{"id": "a", "n": 1}"#);
    let report = project.start(&["--dashboard-port", "0"]);
    let port = dashboard_port(&project);
    assert!(
        report["exports"]["INFRAMOCK_DASHBOARD_URL"]
            .as_str()
            .is_some_and(|url| url.ends_with(&format!(":{port}"))),
        "{report}"
    );

    // Ready: every step done, every service answers, every resource exists.
    let (status, body) = get(port, "/health/ready");
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(ready["ready"], true, "{ready}");
    for step in ["services", "resources", "data"] {
        assert_eq!(ready["steps"][step]["state"], "done", "{ready}");
    }
    assert_eq!(ready["steps"]["data"]["detail"], "1 items, 0 objects");

    // The Stack page: every service with its health, the readiness steps; no outside resource.
    let (status, page) = get(port, "/");
    assert_eq!(status, 200);
    for service in ["aws", "redis", "dashboard"] {
        assert!(
            page.contains(&format!(
                "<tr data-service=\"{service}\"><td>{service}</td>"
            )),
            "{service} in {page}"
        );
    }
    assert!(page.contains("id=\"readiness\">ready<"), "{page}");
    assert!(
        !page.contains("<script src") && !page.contains("<link") && !page.contains("https://"),
        "everything inline, no CDN: {page}"
    );
    let (_, api) = get(port, "/api/stack");
    let api: serde_json::Value = serde_json::from_str(&api).expect("JSON");
    assert!(
        api["stack"]["services"]
            .as_array()
            .is_some_and(|s| s.iter().all(|s| s["health"] == "healthy")),
        "{api}"
    );

    // Live: the page's events start with the current fragment.
    let mut events = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    events
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        events,
        "GET /events/stack HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .expect("request");
    let mut reader = BufReader::new(events);
    let mut seen = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("an event");
        if line.starts_with("data: ") {
            seen.push(line);
            break;
        }
        seen.push(line);
    }
    let joined = seen.concat();
    assert!(joined.contains("text/event-stream"), "{joined}");
    assert!(joined.contains("event: stack"), "{joined}");
    assert!(joined.contains("<h2>Stack"), "{joined}");

    // Refusals: another Host (DNS rebinding), another method.
    let (status, body) = exchange(port, "GET", "/health/ready", "evil.example");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("localhost only"), "{body}");
    let (status, _) = exchange(port, "POST", "/", "localhost");
    assert_eq!(status, 405);

    // While a reload loads a large object the stack is not ready: seen by polling until the
    // reload ends (no timing asserted).
    project.write("data/e1/big.gz", gzip(&noise(96 * 1024 * 1024, 7)));
    let mut reload = project
        .command(&["reload-data"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("reload starts");
    let mut while_loading = None;
    while reload.try_wait().expect("reload").is_none() {
        let (status, body) = get(port, "/health/ready");
        if status == 503 && body.contains("loading the data folder still running") {
            while_loading = Some(body);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        while_loading.is_some(),
        "readiness said 503 while the data loaded"
    );
    assert_eq!(get(port, "/health/ready").0, 200);

    // A data file that fails keeps it not ready, and `wait` says so at once (exit 4).
    project.write("data/e1/bad.json", r#"{"n": 1}"#);
    let failed = project.run(&["reload-data"]);
    assert_eq!(failed.status.code(), Some(3), "{}", text(&failed.stderr));
    let (status, body) = get(port, "/health/ready");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("loading the data folder failed"), "{body}");
    let wait = project.run(&["wait", "--timeout", "120", "--json"]);
    assert_eq!(wait.status.code(), Some(4));
    let document = crate::support::envelope(&wait.stdout);
    assert_eq!(document["error"]["code"], "not_running", "{document}");
    assert!(
        document["data"]["waited_s"]
            .as_f64()
            .is_some_and(|s| s < 120.0),
        "{document}"
    );

    // `status` knows the dashboard; `stop` stops it.
    let status = project.run_json(&["status", "--json"]);
    assert!(
        status["services"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["service"] == "dashboard")),
        "{status}"
    );
    assert!(project.run(&["stop"]).status.success());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}
