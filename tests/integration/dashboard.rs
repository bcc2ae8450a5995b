//! The dashboard service against a real stack (moto, redis-server): started by `run` with
//! `[services.dashboard] enabled = true`, its readiness URL (503 while the data loads and when it
//! failed, 200 once loaded), its Stack page and live events, and its refusals (a foreign `Host`,
//! a method other than GET).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::browser::Browser;
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
    let port = project.port_of("dashboard");
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
    assert_eq!(
        ready["steps"]["data"]["detail"],
        "1 items, 0 objects written; 0 files unchanged"
    );

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
    write!(events, "GET /events/ HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("request");
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
    assert!(joined.contains("event: live"), "{joined}");
    assert!(joined.contains("<h2>Stack"), "{joined}");

    // Refusals: another Host (DNS rebinding), another method.
    let (status, body) = exchange(port, "GET", "/health/ready", "evil.example");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("localhost only"), "{body}");
    let (status, _) = exchange(port, "PUT", "/", "localhost");
    assert_eq!(status, 405);
    // A form larger than 1 MiB is refused with 413 before any of it is used.
    let mut huge = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    huge.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let body = format!("json={}", "x".repeat(2 * 1024 * 1024));
    let _ = write!(
        huge,
        "POST /mocks/create HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut answer = String::new();
    let _ = huge.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "{}",
        &answer[..answer.len().min(200)]
    );

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

/// Saves a screenshot for the README when `INFRAMOCK_SCREENSHOTS` names a folder; checks it is a PNG.
fn screenshot(browser: &mut Browser, name: &str) {
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    if let Some(folder) = std::env::var_os("INFRAMOCK_SCREENSHOTS") {
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            std::path::Path::new(&folder).join(format!("{name}.png")),
            png,
        )
        .unwrap();
    }
}

#[test]
fn every_dashboard_page_works_in_a_real_browser() {
    // The repository's stack and data, with a tail of the results topic.
    let project = crate::support::repository_project(
        "\n[[tails]]\nname = \"results\"\ntopic = \"work-results-${env}-default\"\n",
    );
    project.start_repository_stack();
    let port = project.port_of("dashboard");
    let base = format!("http://localhost:{port}");
    let mut browser = Browser::start();
    const EXPERIMENT: &str = "30344d9eeb4a4a6e0e5edd79911d444c";

    // Stack: every service healthy, the stack ready.
    browser.open(&format!("{base}/"));
    let services = browser.text("#services");
    for service in ["aws", "redis", "mock", "faults", "queues", "dashboard"] {
        assert!(services.contains(service), "{service} in {services}");
    }
    assert!(!services.contains("unhealthy"), "{services}");
    assert_eq!(browser.text("#readiness"), "ready");
    screenshot(&mut browser, "dashboard-stack");

    // Resources: counts, a table's items, a bucket's objects.
    browser.open(&format!("{base}/resources"));
    let resources = browser.text("#resources");
    assert!(resources.contains("experiments-development"), "{resources}");
    assert!(resources.contains("items 1"), "{resources}");
    screenshot(&mut browser, "dashboard-resources");
    browser.eval(
        "document.querySelector('a[href*=\"table?name=experiments-development\"]').click();true",
    );
    browser.wait_for("document.querySelector('#items')", "the table's items");
    assert!(browser.text("#items").contains(EXPERIMENT));
    assert_eq!(browser.text("#count"), "1");
    browser.open(&format!(
        "{base}/resources/bucket?name=biomage-source-development&prefix={EXPERIMENT}/"
    ));
    assert!(browser
        .text("#objects")
        .contains(&format!("{EXPERIMENT}/r.rds")));

    // Data: the load of `run`, per experiment; the reload button runs reload-data.
    browser.open(&format!("{base}/data"));
    assert!(browser.text("#experiments").contains(EXPERIMENT));
    assert_eq!(browser.text("#data-state"), "loaded");
    browser.submit("#reload", &[]);
    assert!(browser.text("#flash").contains("reload started"));
    browser.wait_for(
        "document.querySelector('#files') && document.querySelector('#data-state').innerText === 'loaded' && document.querySelector('#files').innerText.includes('unchanged')",
        "the reload's result",
    );
    screenshot(&mut browser, "dashboard-data");

    // Mocks: an expectation made with the form answers over HTTP.
    browser.open(&format!("{base}/mocks"));
    browser.submit(
        "#create-fields",
        &[
            ("method", "GET"),
            ("path", "/from-the-browser"),
            ("status_code", "201"),
            ("body", "{\"made\": \"in a browser\"}"),
        ],
    );
    assert!(
        browser.text("#flash").contains("saved the expectation"),
        "{}",
        browser.text("#flash")
    );
    assert!(browser.text("#expectations").contains("/from-the-browser"));
    let mock_port = project.port_of("mock");
    let (status, body) = exchange(mock_port, "GET", "/from-the-browser", "localhost");
    assert_eq!(status, 201);
    assert!(body.contains("in a browser"), "{body}");
    // An unmatched request shows in the journal with why the close expectation missed.
    exchange(mock_port, "GET", "/from-the-browsers", "localhost");
    browser.wait_for(
        "document.querySelector('#journal').innerText.includes('/from-the-browsers')",
        "the unmatched request in the journal",
    );
    assert!(browser
        .text("#journal")
        .contains("why no expectation matched"));
    screenshot(&mut browser, "dashboard-mocks");

    // A page of another site (the mock, another port) cannot change the stack through the
    // dashboard: its form is refused, nothing is created.
    let attack = format!(
        "<form id=\"f\" method=\"post\" action=\"{base}/mocks/create\"><input name=\"path\" value=\"/forged\"></form>"
    );
    let expectation = serde_json::json!({
        "path": "/attack", "status_code": 200, "body": attack, "headers": {"content-type": "text/html"}
    });
    let mut request = TcpStream::connect(("127.0.0.1", mock_port)).unwrap();
    let body = expectation.to_string();
    write!(
        request,
        "POST /mocker/expectation HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    request.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    browser.open(&format!("http://localhost:{mock_port}/attack"));
    browser.eval("window.__leaving=true;document.getElementById('f').submit();true");
    browser.wait_for(
        "!window.__leaving && document.readyState === 'complete'",
        "the forged form's answer",
    );
    assert!(
        browser.text("body").contains("refused"),
        "{}",
        browser.text("body")
    );
    browser.open(&format!("{base}/mocks"));
    assert!(!browser.text("#expectations").contains("/forged"));

    // Queues: a message published to the topic appears in the open tail view (live update).
    browser.open(&format!("{base}/queues"));
    assert!(browser.text("#live").contains("Tail results"));
    let rt = crate::support::runtime();
    let aws = crate::support::clients(&rt, &project.endpoint());
    rt.block_on(async {
        let topics = aws.sns.list_topics().send().await.unwrap();
        let arn = topics
            .topics()
            .iter()
            .filter_map(|t| t.topic_arn())
            .find(|a| a.ends_with(":work-results-development-default"))
            .unwrap()
            .to_string();
        aws.sns
            .publish()
            .topic_arn(arn)
            .message("{\"seen\": \"in the tail view\"}")
            .send()
            .await
            .unwrap();
    });
    browser.wait_for(
        "document.querySelector('#tail-results').innerText.includes('in the tail view')",
        "the published message in the tail view",
    );
    screenshot(&mut browser, "dashboard-queues");

    // Faults: latency on Redis from its form, in force, then reset.
    browser.open(&format!("{base}/faults"));
    browser.submit("#fault-latency", &[("ms", "100"), ("service", "redis")]);
    assert!(browser.text("#flash").contains("latency: done"));
    assert!(
        browser.text("#faults").contains("latency"),
        "{}",
        browser.text("#faults")
    );
    let status = project.run_json(&["faults", "status", "--json"]);
    assert!(!status["faults"]["redis"]["latency"].is_null(), "{status}");
    screenshot(&mut browser, "dashboard-faults");
    browser.submit("#fault-reset", &[]);
    let status = project.run_json(&["faults", "status", "--json"]);
    assert!(status["faults"]["redis"]["latency"].is_null(), "{status}");

    // The whole page set is small.
    let mut total = 0;
    for path in [
        "/",
        "/resources",
        "/resources/table?name=experiments-development",
        "/data",
        "/mocks",
        "/queues",
        "/faults",
    ] {
        let (status, body) = get(port, path);
        assert_eq!(status, 200, "{path}");
        total += body.len();
    }
    assert!(total < 200 * 1024, "the pages weigh {total} bytes");
}

#[test]
fn a_dashboard_beyond_loopback_is_refused_without_a_long_token() {
    // Nothing is bound: both are refused before listening.
    let project = Project::new();
    let bare = project.run(&["dashboard", "--dashboard-port", "0", "--bind", "0.0.0.0"]);
    assert_eq!(bare.status.code(), Some(1));
    let stderr = text(&bare.stderr);
    assert!(stderr.contains("INFRAMOCK_DASHBOARD_TOKEN"), "{stderr}");
    let short = project
        .command(&["dashboard", "--dashboard-port", "0", "--bind", "0.0.0.0"])
        .env("INFRAMOCK_DASHBOARD_TOKEN", "short")
        .output()
        .unwrap();
    assert_eq!(short.status.code(), Some(1));
    assert!(
        text(&short.stderr).contains("at least 16"),
        "{}",
        text(&short.stderr)
    );
    // The same from inframock.toml: `run` refuses before starting anything.
    project.write(
        "inframock.toml",
        "[services.dashboard]\nenabled = true\nbind = \"0.0.0.0\"\n",
    );
    let run = project.start_output(&["--dashboard-port", "0"]);
    assert_eq!(run.status.code(), Some(1));
    let document = crate::support::envelope(&run.stdout);
    assert!(
        document["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("INFRAMOCK_DASHBOARD_TOKEN")),
        "{document}"
    );
    let state =
        std::fs::read_to_string(project.path().join(".inframock/state.json")).unwrap_or_default();
    assert!(
        !state.contains("\"dashboard\""),
        "no dashboard started: {state}"
    );
}
