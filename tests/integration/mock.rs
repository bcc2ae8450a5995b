//! The HTTP mock/proxy server over real HTTP: `inframock mock` is started as a process on a free
//! port of 127.0.0.1 and driven with reqwest; the proxy's upstream is a second server started by
//! the test. Delays are asserted as lower bounds and orderings, never as tight timings.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A running `inframock mock`, killed when dropped.
pub struct Mock {
    child: Child,
    url: String,
    pub dir: tempfile::TempDir,
}

impl Mock {
    /// Starts `inframock --mock-port 0 --json mock <args>` in a fresh folder prepared by `prepare`.
    pub fn start_in(prepare: impl FnOnce(&Path), args: &[&str]) -> Mock {
        let dir = tempfile::Builder::new()
            .prefix("inframock-mock-")
            .tempdir()
            .expect("temp dir");
        prepare(dir.path());
        let mut child = mock_command(dir.path(), args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("inframock starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("read banner");
        let banner: Value = match serde_json::from_str(&line) {
            Ok(banner) => banner,
            Err(e) => {
                let _ = child.kill();
                let output = child.wait_with_output().expect("output");
                panic!(
                    "no JSON banner ({e}): {line:?}; stderr: {}",
                    crate::support::text(&output.stderr)
                )
            }
        };
        assert_eq!(banner["ok"], true, "{banner}");
        let url = banner["data"]["url"].as_str().expect("url").to_string();
        Mock { child, url, dir }
    }

    pub fn start(args: &[&str]) -> Mock {
        Mock::start_in(|_| {}, args)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mock_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_inframock"));
    command
        .current_dir(dir)
        .env_remove("INFRAMOCK_MOCK_PORT")
        .env_remove("INFRAMOCK_MOCK_UPSTREAM")
        .env_remove("INFRAMOCK_MOCKS")
        .args(["--mock-port", "0", "--json", "mock"])
        .args(args);
    command
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn post(client: &crate::support::http::Client, url: &str, body: &Value) -> (u16, Value) {
    let response = client.post(url).json(body).send().await.expect("POST");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `POST /setscenario`, as the seed's sample code does: the answer is `OK`.
async fn set_scenario(client: &crate::support::http::Client, mock: &Mock, scenario: &Value) {
    let response = client
        .post(mock.url("/setscenario"))
        .body(scenario.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "OK");
}

pub async fn get(client: &crate::support::http::Client, url: &str) -> (u16, String) {
    let response = client.get(url).send().await.expect("GET");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

async fn expectations(client: &crate::support::http::Client, mock: &Mock) -> Vec<Value> {
    let (status, body) = get(client, &mock.url("/mocker/expectations?format=full")).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body)
        .expect("JSON")
        .as_array()
        .cloned()
        .expect("list")
}

#[test]
fn expectations_api_is_compatible_with_the_mockserver_seed() {
    let mock = Mock::start(&[]);
    let client = crate::support::http::Client::new();
    runtime().block_on(async {
        // The seed's example, as written there.
        let (status, created) = post(
            &client,
            &mock.url("/mocker/expectation"),
            &json!({"path": "/abc/test", "response_delay": 300, "status_code": 404,
                    "body": {"reason": "mocked"}, "headers": {"x-mocked": "yes"}, "repeat_count": 2}),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["message"], "Mock response set successfully.");
        assert_eq!(created["expectation"]["remaining"], 2);
        for _ in 0..2 {
            let began = Instant::now();
            let response = client.get(mock.url("/abc/test")).send().await.unwrap();
            assert!(began.elapsed() >= Duration::from_millis(300), "the delay is applied");
            assert_eq!(response.status(), 404);
            assert_eq!(response.headers()["x-mocked"], "yes");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body, json!({"reason": "mocked"}));
        }
        // Used up: forgotten, so the request is now unmatched (no upstream): the 404 explains.
        let (status, body) = get(&client, &mock.url("/abc/test")).await;
        assert_eq!(status, 404);
        let body: Value = serde_json::from_str(&body).unwrap();
        assert!(body["error"].as_str().unwrap().contains("no expectation matches GET /abc/test"));
        assert!(expectations(&client, &mock).await.is_empty());

        // List, delete by path, reset.
        for path in ["/one", "/two"] {
            let (status, _) = post(
                &client,
                &mock.url("/mocker/expectation"),
                &json!({"path": path, "status_code": 200, "body": path}),
            )
            .await;
            assert_eq!(status, 201);
        }
        let listed = expectations(&client, &mock).await;
        let paths: Vec<&str> = listed.iter().map(|e| e["path"].as_str().unwrap()).collect();
        assert_eq!(paths, ["/one", "/two"]);
        let response = client
            .delete(mock.url("/mocker/expectation"))
            .json(&json!({"path": "/one"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.json::<Value>().await.unwrap()["deleted"], 1);
        assert_eq!(get(&client, &mock.url("/one")).await.0, 404);
        assert_eq!(get(&client, &mock.url("/two")).await, (200, "/two".to_string()));
        let (status, _) = post(&client, &mock.url("/mocker/reset"), &json!({})).await;
        assert_eq!(status, 200);
        assert!(expectations(&client, &mock).await.is_empty());
        assert_eq!(get(&client, &mock.url("/two")).await.0, 404);
    });
}

#[test]
fn the_mockserver_seeds_clients_see_its_answers_word_for_word() {
    let (rt, _upstream, mock, client) = with_upstream("");
    rt.block_on(async {
        // The path is stored without its query: it answers /mds/q with any query or none.
        let (status, created) = post(
            &client,
            &mock.url("/mocker/expectation"),
            &json!({"path": "/mds/q?x=1", "status_code": 200, "body": {"first": true}}),
        )
        .await;
        assert_eq!(status, 201);
        assert_eq!(created["message"], "Mock response set successfully.");
        for path in ["/mds/q", "/mds/q?y=2", "/mds/q?x=1"] {
            let (status, body) = get(&client, &mock.url(path)).await;
            assert_eq!((status, body.as_str()), (200, r#"{"first":true}"#), "{path}");
        }
        // Posting the same path replaces it.
        post(
            &client,
            &mock.url("/mocker/expectation"),
            &json!({"path": "/mds/q", "status_code": 418, "repeat_count": 3, "response_delay": 1500}),
        )
        .await;
        assert_eq!(get(&client, &mock.url("/mds/q")).await.0, 418);

        // The listing is an object keyed by path, delays in seconds, answers left.
        let (status, listed) = get(&client, &mock.url("/mocker/expectations")).await;
        assert_eq!(status, 200);
        let listed: Value = serde_json::from_str(&listed).unwrap();
        assert_eq!(
            listed,
            json!({"/mds/q": {"status_code": 418, "headers": {}, "body": null, "repeat_count": 2, "response_delay": 1.5}})
        );

        // Deleting a path that has none: the seed's 404, word for word.
        let response = client
            .delete(mock.url("/mocker/expectation"))
            .json(&json!({"path": "/nothing/here"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({"error": "Mock response not found."})
        );

        // Delay-only (no status_code): delays and forwards every call, never expires, and its
        // repeat_count counts only mocked answers.
        post(
            &client,
            &mock.url("/mocker/expectation"),
            &json!({"path": "/dms/slow", "response_delay": 200, "repeat_count": 1}),
        )
        .await;
        for _ in 0..3 {
            let began = Instant::now();
            let (status, _) = get(&client, &mock.url("/dms/slow")).await;
            assert_eq!(status, 202, "forwarded to the upstream");
            assert!(began.elapsed() >= Duration::from_millis(200));
        }

        // History: every call, path without its leading slash, whether a mock answered.
        let (status, history) = get(&client, &mock.url("/mocker/history")).await;
        assert_eq!(status, 200);
        let history: Value = serde_json::from_str(&history).unwrap();
        let calls = history["api_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 7, "{history}");
        assert_eq!(calls[0], json!({"path": "mds/q", "status_code": 200, "is_mocked": true}));
        assert_eq!(calls[6], json!({"path": "dms/slow", "status_code": 202, "is_mocked": false}));
        for key in ["external_logger_events", "external_logger_scriptlogs", "unauthenticated_external_logs"] {
            assert_eq!(history[key], json!([]), "{key}");
        }
        post(&client, &mock.url("/mocker/reset"), &json!({})).await;
        let (_, history) = get(&client, &mock.url("/mocker/history")).await;
        let history: Value = serde_json::from_str(&history).unwrap();
        assert_eq!(history["api_calls"], json!([]), "reset clears the history");
    });
}

#[test]
fn routes_by_prefix_rewrite_and_fall_back_like_the_mockserver_seed() {
    let rt = runtime();
    let (mds, logger, catch_all) = rt.block_on(async {
        (
            start_upstream().await,
            start_upstream().await,
            start_upstream().await,
        )
    });
    let routes = [
        format!("/mds=http://{mds}"),
        format!("/logger=http://{logger}=/v2"),
    ];
    let client = crate::support::http::Client::new();
    let forwarded = |mock: &Mock, path: &str| {
        let client = client.clone();
        let url = mock.url(path);
        async move {
            let (status, body) = get(&client, &url).await;
            (
                status,
                serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
            )
        }
    };
    // Routes only: a path no route takes is the seed's 404.
    let mock = Mock::start(&["--route", &routes[0], "--route", &routes[1]]);
    rt.block_on(async {
        let (status, echo) = forwarded(&mock, "/mds/models/7?tag=a").await;
        assert_eq!(status, 202, "{echo}");
        assert_eq!(
            echo["path"], "/mds/models/7",
            "no rewrite: the path as it is"
        );
        assert_eq!(echo["query"], "tag=a");
        assert_eq!(echo["headers"]["host"], mds.to_string());
        let (status, echo) = forwarded(&mock, "/logger/events").await;
        assert_eq!(status, 202);
        assert_eq!(echo["path"], "/v2/events", "the prefix rewritten");
        assert_eq!(echo["headers"]["host"], logger.to_string());
        let (status, body) = get(&client, &mock.url("/elsewhere")).await;
        assert_eq!(status, 404);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"error": "Path not found."})
        );
    });
    drop(mock);
    // With --upstream: it is the catch-all.
    let mock = Mock::start(&[
        "--route",
        &routes[0],
        "--upstream",
        &format!("http://{catch_all}"),
    ]);
    rt.block_on(async {
        let (_, echo) = forwarded(&mock, "/elsewhere").await;
        assert_eq!(echo["headers"]["host"], catch_all.to_string());
        let (_, echo) = forwarded(&mock, "/mds/x").await;
        assert_eq!(
            echo["headers"]["host"],
            mds.to_string(),
            "a route wins over the catch-all"
        );
    });
    let dir = tempfile::tempdir().unwrap();
    let bad = mock_command(dir.path(), &["--route", "mds"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = crate::support::text(&bad.stderr);
    assert!(stderr.contains("PREFIX=URL[=REWRITE]"), "{stderr}");
}

#[test]
fn ingestion_and_logger_sinks_take_keyed_events_and_show_them_in_history() {
    std::env::set_var("INFRAMOCK_TEST_INGEST_KEY", "s3cret");
    let mock = Mock::start_in(
        |dir| {
            std::fs::write(
                dir.join("inframock.toml"),
                r#"[[services.mock.sinks]]
name = "ingestion"
kind = "ingestion"
path = "/v1/ingest"
api_key_env = "INFRAMOCK_TEST_INGEST_KEY"

[[services.mock.sinks]]
name = "logger"
kind = "logger"
path = "/v2"
api_key_env = "INFRAMOCK_TEST_INGEST_KEY"
"#,
            )
            .unwrap();
        },
        &[],
    );
    let client = crate::support::http::Client::new();
    let send = |path: &str, key: Option<&str>, body: &str| {
        let mut request = client.post(mock.url(path)).body(body.to_string());
        if let Some(key) = key {
            request = request.header("Secret-Key", key);
        }
        request.header("deviceID", "device-7")
    };
    runtime().block_on(async {
        let events = "EVENTS ::: 2026-11-26T10:00:00.000Z ::: session1 ::: click ::: {\"button\": \"ok\"}\nSCRIPTLOGS ::: 2026-11-26T10:00:01.000Z ::: deploy9 ::: info ::: {\"line\": 3}\n";
        let response = send("/v1/ingest", Some("s3cret"), events).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let logs = "METRICS::: 2026-11-26T10:00:02Z ::: latency ::: {\"ms\": 12}\n";
        assert_eq!(send("/v2", Some("s3cret"), logs).send().await.unwrap().status(), 200);
        let wrong = send("/v1/ingest", Some("guess"), events).send().await.unwrap();
        assert_eq!(wrong.status(), 401);
        let missing = send("/v1/ingest", None, events).send().await.unwrap();
        assert_eq!(missing.status(), 401);
        let malformed = send("/v1/ingest", Some("s3cret"), "EVENTS ::: yesterday ::: x").send().await.unwrap();
        assert_eq!(malformed.status(), 400);

        let (_, history) = get(&client, &mock.url("/mocker/history")).await;
        let history: Value = serde_json::from_str(&history).unwrap();
        let events = history["external_logger_events"].as_array().unwrap();
        assert_eq!(events.len(), 2, "ingestion EVENTS and the logger's line: {history}");
        assert_eq!(events[0]["sessionId"], "session1");
        assert_eq!(events[0]["event_json"]["button"], "ok");
        assert_eq!(events[0]["deviceID"], "device-7");
        assert_eq!(history["external_logger_scriptlogs"][0]["deploymentId"], "deploy9");
        assert_eq!(history["unauthenticated_external_logs"].as_array().unwrap().len(), 2);
        // The journal shows them too.
        let (_, journal) = get(&client, &mock.url("/mocker/requests?path=/v1/ingest")).await;
        let journal: Value = serde_json::from_str(&journal).unwrap();
        assert_eq!(journal["requests"].as_array().unwrap().len(), 4);
        assert_eq!(journal["requests"][0]["matched"], "sink");
    });
    let sinks = mock.dir.path().join(".inframock/sinks");
    let lines = |file: &str| {
        std::fs::read_to_string(sinks.join(file))
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(lines("ingestion.jsonl"), 2);
    assert_eq!(lines("logger.jsonl"), 1);
    assert_eq!(lines("ingestion.unauthenticated.jsonl"), 2);
    assert_eq!(lines("ingestion.dropped.jsonl"), 1);
    let key_in_files = std::fs::read_dir(&sinks).unwrap().flatten().any(|f| {
        std::fs::read_to_string(f.path())
            .unwrap_or_default()
            .contains("s3cret")
    });
    assert!(!key_in_files, "the key is never written down");
}

#[test]
fn matches_on_method_path_query_headers_and_json_body_newest_first() {
    let mock = Mock::start(&[]);
    let client = crate::support::http::Client::new();
    runtime().block_on(async {
        let add = |spec: Value| {
            let client = client.clone();
            let url = mock.url("/mocker/expectation");
            async move {
                let (status, body) = post(&client, &url, &spec).await;
                assert_eq!(status, 201, "{spec}: {body}");
            }
        };
        add(json!({"path": "/users/*", "path_match": "glob", "status_code": 200, "body": "any user"})).await;
        add(json!({"path": "^/users/\\d+$", "path_match": "regex", "method": "DELETE", "status_code": 204})).await;
        add(json!({"path": "/users/7", "query": {"fields": "name email"}, "status_code": 200, "body": "user 7 fields"})).await;
        add(json!({"path": "/users/7", "request_headers": {"Authorization": "Bearer t"}, "status_code": 200, "body": "user 7 authorised"})).await;
        add(json!({"path": "/orders", "method": "POST", "json_body": {"order": {"sku": "A1"}}, "status_code": 201, "body": {"created": "A1"}})).await;

        assert_eq!(get(&client, &mock.url("/users/3")).await, (200, "any user".into()));
        assert_eq!(get(&client, &mock.url("/users/3/x")).await.0, 404, "glob * stays in one segment");
        let deleted = client.delete(mock.url("/users/12")).send().await.unwrap();
        assert_eq!(deleted.status(), 204);
        assert_eq!(
            get(&client, &mock.url("/users/7?fields=name%20email&x=1")).await,
            (200, "user 7 fields".into())
        );
        let authorised = client
            .get(mock.url("/users/7"))
            .header("authorization", "Bearer t")
            .send()
            .await
            .unwrap();
        assert_eq!(authorised.text().await.unwrap(), "user 7 authorised");
        let created = client
            .post(mock.url("/orders"))
            .json(&json!({"order": {"sku": "A1", "qty": 2}, "note": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        assert_eq!(created.json::<Value>().await.unwrap(), json!({"created": "A1"}));
        let other = client
            .post(mock.url("/orders"))
            .json(&json!({"order": {"sku": "B2"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 404, "body predicate not met");
        let unmatched: Value = other.json().await.unwrap();
        assert_eq!(unmatched["closest"][0]["path"], "/orders", "{unmatched}");
        assert_eq!(
            unmatched["closest"][0]["mismatches"],
            json!(["json_body.order.sku: expected \"A1\", got \"B2\""]),
            "a near miss on the body says where the body differs"
        );

        // The newest matching expectation answers.
        add(json!({"path": "/users/*", "path_match": "glob", "method": "GET", "status_code": 200, "body": "newer"})).await;
        assert_eq!(get(&client, &mock.url("/users/3")).await, (200, "newer".into()));
    });
}

#[test]
fn bad_admin_input_is_a_400_with_the_reason_and_changes_nothing() {
    let mock = Mock::start(&[]);
    let client = crate::support::http::Client::new();
    runtime().block_on(async {
        let (status, _) = post(
            &client,
            &mock.url("/mocker/expectation"),
            &json!({"path": "/kept", "status_code": 200}),
        )
        .await;
        assert_eq!(status, 201);
        let before = expectations(&client, &mock).await;
        let cases: Vec<(String, &str)> = vec![
            ("{\"path\": ".into(), "not valid JSON"),
            (
                r#"{"path": "/x", "status": 200}"#.into(),
                "unknown field `status`",
            ),
            (
                r#"{"path": "/x", "response_delay": -5, "status_code": 200}"#.into(),
                "must not be negative",
            ),
            (
                r#"{"path": "([", "path_match": "regex", "status_code": 200}"#.into(),
                "invalid regex",
            ),
            (r#"{"status_code": 200}"#.into(), "missing field `path`"),
            (
                r#"[{"path": "/ok", "status_code": 200}, {"path": "/bad", "repeat_count": -1}]"#
                    .into(),
                "expectation 1",
            ),
        ];
        for (body, reason) in cases {
            let response = client
                .post(mock.url("/mocker/expectation"))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400, "{body}");
            let error: Value = response.json().await.unwrap();
            let message = error["error"].as_str().unwrap_or_default();
            assert!(message.contains(reason), "{body}: {message}");
            assert_eq!(
                expectations(&client, &mock).await,
                before,
                "{body} changed the state"
            );
        }
        let response = client
            .delete(mock.url("/mocker/expectation"))
            .json(&json!({"paht": "/kept"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let response = client
            .post(mock.url("/setscenario"))
            .body("[[\"a\", 200]]")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        assert!(response.text().await.unwrap().contains("step 0"));
        let response = client
            .get(mock.url("/mocker/requests?limit=-1"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let response = client.put(mock.url("/mocker/reset")).send().await.unwrap();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "POST");
        assert_eq!(expectations(&client, &mock).await, before);
    });
}

#[test]
fn the_scenario_seeds_backend_is_mimicked_status_0_and_bare_500s_included() {
    let mock = Mock::start(&[
        "--flaky",
        "/",
        "--flaky-seed",
        "3",
        "--scenario-errors-as-500",
    ]);
    let client = crate::support::http::Client::new();
    runtime().block_on(async {
        let scenario = json!([["quiet", 0, 50], ["busy", 503, 0], ["{\"time\":1}", 200, 0]]);
        set_scenario(&client, &mock, &scenario).await;
        // Status 0: no answer, the connection is closed.
        let silent = client.get(mock.url("/")).send().await;
        assert!(
            silent.is_err(),
            "no answer: {:?}",
            silent.as_ref().map(|r| r.status())
        );
        // Non-200 steps: the seed's bare 500.
        assert_eq!(
            get(&client, &mock.url("/")).await,
            (500, "500: Internal Server Error".into())
        );
        assert_eq!(
            get(&client, &mock.url("/")).await,
            (200, r#"{"time":1}"#.into())
        );
        // No step left: the mimicked backend, 100-600 ms then mostly {"time": ms}.
        let mut seen = Vec::new();
        for _ in 0..12 {
            let began = Instant::now();
            let answer =
                tokio::time::timeout(Duration::from_secs(3), client.get(mock.url("/")).send())
                    .await;
            let elapsed = began.elapsed();
            match answer {
                Ok(Ok(response)) => {
                    assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
                    let status = response.status().as_u16();
                    let body = response.text().await.unwrap();
                    if status == 200 {
                        if let Ok(value) = serde_json::from_str::<Value>(&body) {
                            let ms = value["time"].as_u64().expect("time");
                            assert!((100..=600).contains(&ms), "{body}");
                        }
                    } else {
                        assert_eq!((status, body.as_str()), (500, "500: Internal Server Error"));
                    }
                    seen.push(status);
                }
                Ok(Err(_)) => seen.push(0),
                Err(_) => seen.push(0), // the 10 s silence
            }
        }
        assert!(seen.contains(&200), "mostly 200: {seen:?}");
    });
    // The same seed gives the same sequence: a second server answers as the first did.
    let again = Mock::start(&["--flaky", "/", "--flaky-seed", "3"]);
    let other = Mock::start(&["--flaky", "/", "--flaky-seed", "3"]);
    runtime().block_on(async {
        for _ in 0..3 {
            let a =
                tokio::time::timeout(Duration::from_secs(2), get(&client, &again.url("/"))).await;
            let b =
                tokio::time::timeout(Duration::from_secs(2), get(&client, &other.url("/"))).await;
            assert_eq!(a.ok(), b.ok());
        }
    });
}

#[test]
fn scenario_api_serves_the_next_responses_of_root_and_lists_request_times() {
    let mock = Mock::start(&[]);
    let client = crate::support::http::Client::new();
    runtime().block_on(async {
        // As in the seed's sample code: POST the JSON list, expect `OK`.
        let scenario = json!([
            ["{\"time\":50}", 200, 300],
            ["busy", 503, 0],
            ["third", 200, 0]
        ]);
        set_scenario(&client, &mock, &scenario).await;
        let began = Instant::now();
        let first = client.get(mock.url("/")).send().await.unwrap();
        assert!(began.elapsed() >= Duration::from_millis(300));
        assert_eq!(first.status(), 200);
        assert_eq!(first.text().await.unwrap(), r#"{"time":50}"#);
        assert_eq!(get(&client, &mock.url("/")).await, (503, "busy".into()));
        assert_eq!(get(&client, &mock.url("/")).await, (200, "third".into()));
        assert_eq!(
            get(&client, &mock.url("/")).await.0,
            404,
            "scenario used up"
        );
        let (_, times) = get(&client, &mock.url("/requests")).await;
        let times: Vec<f64> = serde_json::from_str(&times).unwrap();
        assert_eq!(times.len(), 4);
        assert!(
            (0.0..0.3).contains(&times[0]),
            "seconds since the scenario was set, as the seed lists them: {times:?}"
        );
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        assert!(
            times[1] - times[0] >= 0.3,
            "second request came after the 300 ms delay"
        );
        let response = client
            .post(mock.url("/setscenario"))
            .body("[]")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(get(&client, &mock.url("/requests")).await.1, "[]");
    });
}

/// A runtime, an echoing upstream, a mock forwarding to it (under `prefix`) and a client.
fn with_upstream(
    prefix: &str,
) -> (
    tokio::runtime::Runtime,
    SocketAddr,
    Mock,
    crate::support::http::Client,
) {
    let rt = runtime();
    let upstream = rt.block_on(start_upstream());
    let mock = Mock::start(&["--upstream", &format!("http://{upstream}{prefix}")]);
    (rt, upstream, mock, crate::support::http::Client::new())
}

/// A second local server: echoes what it received as JSON, or streams `/big?bytes=N`.
async fn start_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(upstream_answer);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

type UpstreamBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

async fn upstream_answer(
    request: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<UpstreamBody>, hyper::Error> {
    if request.uri().path().ends_with("/big") {
        let bytes: usize = request
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("bytes="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let chunks = (0..bytes.div_ceil(65536)).map(move |i| {
            let size = 65536.min(bytes - i * 65536);
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![(i % 251) as u8; size])))
        });
        let body = StreamBody::new(futures::stream::iter(chunks)).boxed();
        return Ok(http::Response::new(body));
    }
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    let headers: serde_json::Map<String, Value> = request
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
        .collect();
    let body = request.into_body().collect().await?.to_bytes();
    let echo = json!({
        "method": method, "path": path, "query": query, "headers": headers,
        "body_len": body.len(), "body_sha256": hex::encode(Sha256::digest(&body)),
    });
    let mut response = http::Response::new(Full::new(Bytes::from(echo.to_string())).boxed());
    *response.status_mut() = http::StatusCode::ACCEPTED;
    response
        .headers_mut()
        .insert("x-upstream", "echo".parse().unwrap());
    Ok(response)
}

#[test]
fn proxies_unmatched_requests_to_the_upstream_streaming_both_ways() {
    let (rt, upstream, mock, client) = with_upstream("/base");
    rt.block_on(async {
        let payload: Vec<u8> = (0..20 * 1024 * 1024)
            .map(|i: u32| (i % 241) as u8)
            .collect();
        let digest = hex::encode(Sha256::digest(&payload));
        let response = client
            .put(mock.url("/items/9?x=1&y=two"))
            .header("x-custom", "kept")
            .header("connection", "keep-alive")
            .body(payload.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        assert_eq!(response.headers()["x-upstream"], "echo");
        let echo: Value = response.json().await.unwrap();
        assert_eq!(echo["method"], "PUT");
        assert_eq!(echo["path"], "/base/items/9");
        assert_eq!(echo["query"], "x=1&y=two");
        assert_eq!(echo["headers"]["x-custom"], "kept");
        assert_eq!(echo["headers"]["host"], upstream.to_string());
        assert_eq!(echo["headers"]["x-forwarded-for"], "127.0.0.1");
        assert_eq!(echo["body_len"], payload.len());
        assert_eq!(echo["body_sha256"], digest);

        // A large streamed answer arrives whole.
        let response = client
            .get(mock.url("/big?bytes=31457287"))
            .send()
            .await
            .unwrap();
        let mut stream = response.bytes_stream();
        let mut received = 0usize;
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            received += chunk.unwrap().len();
        }
        assert_eq!(received, 31_457_287);

        // An expectation without status_code only delays the proxied request.
        let (status, _) = post(
            &client,
            &mock.url("/mocker/expectation"),
            &json!({"path": "/slow", "response_delay": 300}),
        )
        .await;
        assert_eq!(status, 201);
        let began = Instant::now();
        let response = client.get(mock.url("/slow")).send().await.unwrap();
        assert!(began.elapsed() >= Duration::from_millis(300));
        assert_eq!(response.status(), 202, "answered by the upstream");

        // An expectation still wins over the upstream.
        post(
            &client,
            &mock.url("/mocker/expectation"),
            &json!({"path": "/items/9", "status_code": 200, "body": "mocked"}),
        )
        .await;
        assert_eq!(
            get(&client, &mock.url("/items/9")).await,
            (200, "mocked".into())
        );

        // The journal says what happened, with the streamed body's size.
        let (_, journal) = get(&client, &mock.url("/mocker/requests?method=PUT")).await;
        let journal: Value = serde_json::from_str(&journal).unwrap();
        let put = &journal["requests"][0];
        assert_eq!(put["matched"], "proxied");
        assert_eq!(put["status"], 202);
        assert_eq!(put["body_size"], payload.len());
        let (_, slow) = get(&client, &mock.url("/mocker/requests?path=/slow")).await;
        let slow: Value = serde_json::from_str(&slow).unwrap();
        assert_eq!(slow["requests"][0]["matched"], "proxied");
        assert!(slow["requests"][0]["expectation"].is_string());
        assert!(slow["requests"][0]["latency_ms"].as_f64().unwrap() >= 300.0);
    });
}

#[test]
fn an_upstream_that_does_not_answer_is_a_502_naming_it() {
    let port = crate::support::free_port();
    let mock = Mock::start(&["--upstream", &format!("http://127.0.0.1:{port}")]);
    let client = crate::support::http::Client::new();
    runtime().block_on(async {
        let (status, body) = get(&client, &mock.url("/anything")).await;
        assert_eq!(status, 502);
        assert!(
            body.contains(&format!("upstream http://127.0.0.1:{port} did not answer")),
            "{body}"
        );
        assert!(body.to_lowercase().contains("refused"), "{body}");
    });
}

const HANDLER: &str = r#"
import os
import time

def handler(body, headers):
    kind = (body or {}).get("kind") if isinstance(body, dict) else body
    if kind == "crash":
        raise RuntimeError("handler exploded on purpose")
    if kind == "hang":
        time.sleep(30)
    if kind == "escape":
        return 200, {}, open("/etc/hostname").read()
    if kind == "write-folder":
        open("calls.txt", "a").write("call\n")
    if kind == "noisy":
        import sys
        for _ in range(100):
            sys.stderr.write("n" * (1 << 20))
        raise RuntimeError("after 100 MiB on stderr")
    if kind == "dict":
        return {"echo": body, "agent": headers.get("x-agent")}
    with open(os.path.join(os.environ["HOME"], "calls.txt"), "a") as f:
        f.write("call\n")
    return 201, {"x-handled": "yes"}, {"got": body}
"#;

#[test]
fn python_handlers_answer_and_crashes_or_timeouts_are_502s() {
    let mock = Mock::start_in(
        |dir| {
            std::fs::create_dir_all(dir.join("mocks/handlers")).unwrap();
            std::fs::write(dir.join("mocks/handlers/api.py"), HANDLER).unwrap();
        },
        &[],
    );
    let client = crate::support::http::Client::new();
    runtime().block_on(async {
        let (status, body) = post(
            &client,
            &mock.url("/mocker/expectation"),
            &json!({"path": "/dyn", "handler": "handlers/api.py", "handler_timeout_ms": 1500}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let answer = client
            .post(mock.url("/dyn"))
            .json(&json!({"kind": "plain", "n": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201);
        assert_eq!(answer.headers()["x-handled"], "yes");
        assert_eq!(
            answer.json::<Value>().await.unwrap(),
            json!({"got": {"kind": "plain", "n": 1}})
        );
        let folder_write = client
            .post(mock.url("/dyn"))
            .json(&json!({"kind": "write-folder"}))
            .send()
            .await
            .unwrap();
        assert_eq!(folder_write.status(), 502, "its own folder is read-only");
        assert!(folder_write
            .text()
            .await
            .unwrap()
            .contains("Permission denied"));
        assert!(!mock.dir.path().join("mocks/handlers/calls.txt").exists());
        let answer = client
            .post(mock.url("/dyn"))
            .header("x-agent", "tests")
            .json(&json!({"kind": "dict"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.json::<Value>().await.unwrap()["agent"], "tests");

        let crash = client
            .post(mock.url("/dyn"))
            .json(&json!({"kind": "crash"}))
            .send()
            .await
            .unwrap();
        assert_eq!(crash.status(), 502);
        let text = crash.text().await.unwrap();
        assert!(text.contains("handler exploded on purpose"), "{text}");

        let began = Instant::now();
        let hang = client
            .post(mock.url("/dyn"))
            .json(&json!({"kind": "hang"}))
            .send()
            .await
            .unwrap();
        assert_eq!(hang.status(), 502);
        assert!(began.elapsed() >= Duration::from_millis(1500));
        assert!(
            began.elapsed() < Duration::from_secs(25),
            "the handler was killed, not awaited"
        );
        assert!(hang
            .text()
            .await
            .unwrap()
            .contains("timed out after 1500 ms"));

        let escape = client
            .post(mock.url("/dyn"))
            .json(&json!({"kind": "escape"}))
            .send()
            .await
            .unwrap();
        assert_eq!(escape.status(), 502);
        let text = escape.text().await.unwrap();
        assert!(
            text.contains("PermissionError") && text.contains("/etc/hostname"),
            "{text}"
        );

        // 100 MiB on stderr: only its end is kept for the answer.
        let noisy = client
            .post(mock.url("/dyn"))
            .json(&json!({"kind": "noisy"}))
            .send()
            .await
            .unwrap();
        assert_eq!(noisy.status(), 502);
        let text = noisy.text().await.unwrap();
        assert!(
            text.contains("after 100 MiB on stderr"),
            "{}",
            &text[..200.min(text.len())]
        );
        assert!(text.len() < 256 * 1024, "{} bytes", text.len());

        // A changed handler file is picked up by the next request.
        std::fs::write(
            mock.dir.path().join("mocks/handlers/api.py"),
            "def handler(body, headers):\n    return 202, {}, 'changed'\n",
        )
        .unwrap();
        let changed = client
            .post(mock.url("/dyn"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(changed.status(), 202);
        assert_eq!(changed.text().await.unwrap(), "changed");
        std::fs::write(mock.dir.path().join("mocks/handlers/api.py"), HANDLER).unwrap();

        // The server keeps serving after all of that.
        let again = client
            .post(mock.url("/dyn"))
            .json(&json!({"kind": "plain"}))
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 201);
        let (status, body) = post(
            &client,
            &mock.url("/mocker/expectation"),
            &json!({"path": "/x", "handler": "handlers/missing.py"}),
        )
        .await;
        assert_eq!(status, 400);
        assert!(body["error"].as_str().unwrap().contains("no such file"));
    });
}

#[test]
fn journal_is_bounded_filterable_and_printed_by_mock_requests() {
    let mock = Mock::start(&["--journal-size", "5"]);
    let client = crate::support::http::Client::new();
    runtime().block_on(async {
        post(
            &client,
            &mock.url("/mocker/expectation"),
            &json!({"path": "/a/1", "status_code": 200}),
        )
        .await;
        for i in 0..8 {
            client
                .post(mock.url(&format!("/a/{}", i % 3)))
                .body("abc")
                .send()
                .await
                .unwrap();
        }
        let (_, journal) = get(&client, &mock.url("/mocker/requests")).await;
        let journal: Value = serde_json::from_str(&journal).unwrap();
        assert_eq!(journal["capacity"], 5);
        assert_eq!(journal["total"], 5);
        assert_eq!(journal["dropped"], 3);
        let requests = journal["requests"].as_array().unwrap();
        let paths: Vec<&str> = requests
            .iter()
            .map(|r| r["path"].as_str().unwrap())
            .collect();
        assert_eq!(
            paths,
            ["/a/0", "/a/1", "/a/2", "/a/0", "/a/1"],
            "oldest dropped first"
        );
        let matched = &requests[1];
        assert_eq!(matched["matched"], "expectation");
        assert_eq!(matched["status"], 200);
        assert_eq!(matched["method"], "POST");
        assert_eq!(matched["body_size"], 3);
        assert!(matched["time"].as_str().unwrap().ends_with('Z'));
        assert!(matched["headers"]["content-length"].is_string());
        assert_eq!(requests[0]["matched"], "unmatched");
        let (_, filtered) = get(&client, &mock.url("/mocker/requests?path=/a/1")).await;
        let filtered: Value = serde_json::from_str(&filtered).unwrap();
        assert_eq!(filtered["requests"].as_array().unwrap().len(), 2);
    });
    // The CLI prints it: JSON lines for scripts, a line per request for people.
    let output = Command::new(env!("CARGO_BIN_EXE_inframock"))
        .args([
            "--json",
            "mock",
            "requests",
            "--url",
            &mock.url(""),
            "--path",
            "/a/*",
            "--limit",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        crate::support::text(&output.stderr)
    );
    let document: Value = serde_json::from_slice(&output.stdout).unwrap();
    let lines: Vec<Value> = document["data"]["requests"].as_array().cloned().unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["path"], "/a/1");
    let output = Command::new(env!("CARGO_BIN_EXE_inframock"))
        .args(["mock", "requests", "--url", &mock.url("")])
        .output()
        .unwrap();
    let human = crate::support::text(&output.stdout);
    assert_eq!(human.lines().count(), 5, "{human}");
    assert!(
        human.contains("POST") && human.contains("/a/1") && human.contains("expectation"),
        "{human}"
    );
    // No server there: one clear message, non-zero exit.
    let output = Command::new(env!("CARGO_BIN_EXE_inframock"))
        .args([
            "mock",
            "requests",
            "--url",
            &format!("http://127.0.0.1:{}", crate::support::free_port()),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(crate::support::text(&output.stderr).contains("no server answers at"));
}

#[test]
fn expectations_from_mock_files_survive_reset_and_bad_files_stop_the_start() {
    let mock = Mock::start_in(
        |dir| {
            std::fs::create_dir_all(dir.join("mocks")).unwrap();
            std::fs::write(
                dir.join("mocks/health.json"),
                r#"[{"id": "health", "path": "/health", "status_code": 200, "body": {"ok": true}},
                    {"path": "/once", "status_code": 200, "repeat_count": 1}]"#,
            )
            .unwrap();
        },
        &[],
    );
    let client = crate::support::http::Client::new();
    runtime().block_on(async {
        assert_eq!(
            get(&client, &mock.url("/health")).await,
            (200, r#"{"ok":true}"#.into())
        );
        assert_eq!(get(&client, &mock.url("/once")).await.0, 200);
        assert_eq!(get(&client, &mock.url("/once")).await.0, 404);
        post(
            &client,
            &mock.url("/mocker/expectation"),
            &json!({"path": "/api-added", "status_code": 200}),
        )
        .await;
        client
            .delete(mock.url("/mocker/expectation"))
            .json(&json!({"id": "health"}))
            .send()
            .await
            .unwrap();
        assert_eq!(get(&client, &mock.url("/health")).await.0, 404);
        post(&client, &mock.url("/mocker/reset"), &json!({})).await;
        let listed = expectations(&client, &mock).await;
        let paths: Vec<&str> = listed.iter().map(|e| e["path"].as_str().unwrap()).collect();
        assert_eq!(
            paths,
            ["/health", "/once"],
            "file expectations come back with fresh counts; API ones are gone"
        );
        assert!(listed[0]["source"]
            .as_str()
            .unwrap()
            .ends_with("mocks/health.json"));
        assert_eq!(get(&client, &mock.url("/once")).await.0, 200);
        let (_, journal) = get(&client, &mock.url("/mocker/requests")).await;
        assert_eq!(
            serde_json::from_str::<Value>(&journal).unwrap()["total"],
            1,
            "reset cleared the journal"
        );
    });

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("mocks")).unwrap();
    std::fs::write(
        dir.path().join("mocks/broken.json"),
        r#"{"path": "/x", "response_delay": -1}"#,
    )
    .unwrap();
    let output = mock_command(dir.path(), &[]).output().unwrap();
    assert!(!output.status.success());
    let stderr = crate::support::text(&output.stderr);
    assert!(
        stderr.contains("broken.json: expectation 0: `response_delay` must not be negative"),
        "{stderr}"
    );
}

#[test]
fn a_taken_port_is_refused_with_the_flag_and_holder() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_inframock"))
        .current_dir(dir.path())
        .args(["--mock-port", &port.to_string(), "mock"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = crate::support::text(&output.stderr);
    assert!(
        stderr.contains(&format!("port {port} (--mock-port) is already in use")),
        "{stderr}"
    );
}

#[test]
fn expectations_change_while_requests_are_served() {
    let mock = Mock::start(&[]);
    let client = crate::support::http::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    runtime().block_on(async {
        post(
            &client,
            &mock.url("/mocker/expectation"),
            &json!({"path": "/c", "status_code": 200, "body": "A"}),
        )
        .await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let client = client.clone();
            let url = mock.url("/mocker/expectation");
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut changes = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let body = if changes % 2 == 0 { "B" } else { "A" };
                    let (status, _) = post(
                        &client,
                        &url,
                        &json!({"path": "/c", "status_code": 200, "body": body}),
                    )
                    .await;
                    assert_eq!(status, 201);
                    post(
                        &client,
                        &url,
                        &json!({"path": format!("/other/{changes}"), "status_code": 200}),
                    )
                    .await;
                    changes += 1;
                }
                changes
            })
        };
        let readers: Vec<_> = (0..8)
            .map(|_| {
                let client = client.clone();
                let url = mock.url("/c");
                tokio::spawn(async move {
                    let mut seen = std::collections::BTreeSet::new();
                    for _ in 0..150 {
                        let (status, body) = get(&client, &url).await;
                        assert_eq!(
                            status, 200,
                            "a request failed while expectations changed: {body}"
                        );
                        assert!(body == "A" || body == "B", "{body}");
                        seen.insert(body);
                    }
                    seen
                })
            })
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for reader in readers {
            seen.extend(reader.await.unwrap());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let changes = writer.await.unwrap();
        assert!(
            changes > 1,
            "the writer changed the expectation while readers ran"
        );
        assert_eq!(seen.len(), 2, "both versions were served: {seen:?}");

        // repeat_count stays exact under concurrent requests.
        post(
            &client,
            &mock.url("/mocker/expectation"),
            &json!({"path": "/limited", "status_code": 200, "repeat_count": 50}),
        )
        .await;
        let requests: Vec<_> = (0..200)
            .map(|_| {
                let client = client.clone();
                let url = mock.url("/limited");
                tokio::spawn(async move { get(&client, &url).await.0 })
            })
            .collect();
        let mut ok = 0;
        for request in requests {
            if request.await.unwrap() == 200 {
                ok += 1;
            }
        }
        assert_eq!(ok, 50);
    });
}

#[test]
fn run_starts_the_mock_service_when_enabled_and_stop_stops_it() {
    let project = crate::support::Project::new();
    project.write("inframock.toml", "[services.mock]\nenabled = true\n");
    project.write(
        "mocks/ping.json",
        r#"{"path": "/ping", "status_code": 200, "body": "pong"}"#,
    );
    project.start(&["--mock-port", "0", "--no-populate"]);
    let mock = project.state()["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "mock")
        .cloned()
        .expect("mock service recorded");
    let url = mock["url"].as_str().unwrap().to_string();
    let pid = mock["pid"].as_u64().unwrap() as u32;
    assert!(url.starts_with("http://localhost:"), "{url}");
    let client = crate::support::http::Client::new();
    runtime().block_on(async {
        assert_eq!(
            get(&client, &format!("{url}/ping")).await,
            (200, "pong".into())
        );
    });
    let status = project.run_json(&["status", "--json"]);
    let row = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "mock")
        .cloned()
        .expect("mock in status");
    assert_eq!(row["health"], "healthy");
    // `mock requests` finds the stack's mock server by itself.
    let output = project.run(&["--json", "mock", "requests"]);
    assert!(
        output.status.success(),
        "{}",
        crate::support::text(&output.stderr)
    );
    assert!(crate::support::text(&output.stdout).contains("\"/ping\""));
    // A second run reuses it.
    project.start(&["--mock-port", "0", "--no-populate"]);
    assert!(
        project.pids().contains(&pid),
        "the running mock server is reused"
    );
    let stopped = project.run(&["stop"]);
    assert!(stopped.status.success());
    assert!(!crate::support::alive(pid), "stop stops the mock server");
}

/// Each attempt returns what happened; the handler never raises, so the answer lists them all.
const ESCAPES: &str = r#"
import os

def attempt(name, action, results):
    try:
        results[name] = "ESCAPED: " + repr(action())
    except BaseException as e:
        results[name] = "refused: " + type(e).__name__ + ": " + str(e)

def handler(body, headers):
    target = body["target"]
    port = body["port"]
    r = {}
    # An audit-hook sandbox trusted os.path.realpath: replace it, then open files outside.
    os.path.realpath = lambda p: os.path.join(os.getcwd(), "harmless.txt")
    attempt("read_passwd", lambda: open("/etc/passwd").read(12), r)
    attempt("write_outside", lambda: open(target, "w").write("pwned"), r)
    # subprocess forks and execs in C (_posixsubprocess.fork_exec), where no audit hook looks.
    import subprocess
    attempt("subprocess_sh", lambda: subprocess.run(["/bin/sh", "-c", "echo pwned > " + target]), r)
    attempt("os_fork", os.fork, r)
    attempt("os_execv_sh", lambda: os.execv("/bin/sh", ["/bin/sh", "-c", "echo pwned > " + target]), r)
    attempt("setsid", os.setsid, r)
    import socket
    def connect():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.connect(("127.0.0.1", port))
        return "connected"
    attempt("tcp_connect", connect, r)
    attempt("raw_socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP), r)
    attempt("unix_socket", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), r)
    import ctypes
    def ctypes_fork():
        libc = ctypes.CDLL(None, use_errno=True)
        pid = libc.fork()
        if pid == 0:
            libc._exit(0)
        if pid < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        return pid
    attempt("ctypes_fork", ctypes_fork, r)
    def ctypes_kill_parent():
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.kill(os.getppid(), 0) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        return "could signal the server"
    attempt("signal_the_server", ctypes_kill_parent, r)
    def proc_fd():
        fd = os.open(target, os.O_WRONLY | os.O_CREAT)
        return os.write(fd, b"pwned")
    attempt("open_outside_raw", proc_fd, r)
    def via_proc_self_fd():
        fd = os.open(os.path.dirname(target), os.O_RDONLY | os.O_DIRECTORY)
        return open(f"/proc/self/fd/{fd}/" + os.path.basename(target), "w").write("pwned")
    attempt("write_via_proc_self_fd", via_proc_self_fd, r)
    scratch = os.environ["HOME"]
    attempt("scratch_write_works", lambda: open(os.path.join(scratch, "ok"), "w").write("ok") and "ok", r)
    r["scratch_write_works"] = r["scratch_write_works"].replace("ESCAPED: ", "")
    return 200, {}, r
"#;

#[test]
fn handler_code_cannot_escape_the_kernel_sandbox_and_the_server_keeps_serving() {
    let outside = tempfile::tempdir().expect("temp dir");
    let target = outside.path().join("pwned.txt");
    let mock = Mock::start_in(
        |dir| {
            std::fs::create_dir_all(dir.join("mocks")).unwrap();
            std::fs::write(dir.join("mocks/escapes.py"), ESCAPES).unwrap();
            std::fs::write(dir.join("mocks/harmless.txt"), "x").unwrap();
        },
        &[],
    );
    let port = mock.url.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let client = crate::support::http::Client::new();
    runtime().block_on(async {
        let (status, body) = post(
            &client,
            &mock.url("/mocker/expectation"),
            &json!({"path": "/escape", "handler": "escapes.py", "handler_timeout_ms": 10000}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        for fresh in [false, true] {
            let (status, _) = post(
                &client,
                &mock.url("/mocker/expectation"),
                &json!({"path": "/escape", "handler": "escapes.py", "handler_timeout_ms": 10000, "fresh": fresh}),
            )
            .await;
            assert_eq!(status, 201);
            let answer = client
                .post(mock.url("/escape"))
                .json(&json!({"target": target, "port": port}))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200);
            let results: Value = answer.json().await.unwrap();
            let results = results.as_object().expect("one result per attempt");
            assert!(results.len() >= 14, "{results:?}");
            for (attempt, outcome) in results {
                let outcome = outcome.as_str().unwrap();
                if attempt == "scratch_write_works" {
                    assert_eq!(outcome, "'ok'", "the scratch folder is writable");
                } else {
                    assert!(
                        outcome.starts_with("refused: PermissionError")
                            || outcome.starts_with("refused: OSError"),
                        "{attempt}: {outcome}"
                    );
                }
            }
            assert!(!target.exists(), "nothing was written outside");
        }
        // The server keeps serving, handlers included.
        let (status, _) = get(&client, &mock.url("/mocker/expectations")).await;
        assert_eq!(status, 200);
    });
}

#[test]
fn handler_paths_outside_the_mocks_folder_are_refused() {
    let mock = Mock::start_in(
        |dir| {
            std::fs::create_dir_all(dir.join("mocks")).unwrap();
            std::fs::write(dir.join("elsewhere.py"), "def handler(b, h): return {}").unwrap();
            std::os::unix::fs::symlink(dir.join("elsewhere.py"), dir.join("mocks/link.py"))
                .unwrap();
        },
        &[],
    );
    let client = crate::support::http::Client::new();
    runtime().block_on(async {
        for handler in ["../elsewhere.py", "/etc/passwd.py", "link.py"] {
            let (status, body) = post(
                &client,
                &mock.url("/mocker/expectation"),
                &json!({"path": "/x", "handler": handler}),
            )
            .await;
            assert_eq!(status, 400, "{handler}: {body}");
            let error = body["error"].as_str().unwrap();
            assert!(
                error.contains("outside") || error.contains("no such file"),
                "{handler}: {error}"
            );
        }
    });
}

#[test]
fn framing_headers_slow_clients_and_hung_upstreams_are_handled_by_the_server() {
    // An upstream that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = format!("http://{}", silent.local_addr().unwrap());
    let mock = Mock::start_in(
        |dir| {
            std::fs::create_dir_all(dir.join("mocks")).unwrap();
            std::fs::write(
                dir.join("mocks/length.py"),
                "def handler(body, headers):\n    return 200, {'content-length': '3', 'transfer-encoding': 'chunked'}, 'hello world'\n",
            )
            .unwrap();
        },
        &[
            "--upstream",
            &upstream,
            "--upstream-timeout",
            "1",
            "--header-timeout",
            "1",
            "--bind",
            "::",
        ],
    );
    let port = mock.url.rsplit(':').next().unwrap().to_string();
    // Admin routes answer an IPv4-mapped loopback peer when bound to `::`.
    let ipv4 = format!("http://127.0.0.1:{port}");
    let client = crate::support::http::Client::new();
    runtime().block_on(async {
        for expectation in [
            json!({"path": "/fixed", "status_code": 200, "body": "hello world", "headers": {"content-length": "2"}}),
            json!({"path": "/dynamic", "handler": "length.py"}),
        ] {
            let (status, body) = post(&client, &format!("{ipv4}/mocker/expectation"), &expectation).await;
            assert_eq!(status, 201, "{body}");
        }
        // Many answers on one keep-alive connection: each whole, none garbled.
        for _ in 0..3 {
            for path in ["/fixed", "/dynamic"] {
                let (status, body) = get(&client, &format!("{ipv4}{path}")).await;
                assert_eq!((status, body.as_str()), (200, "hello world"), "{path}");
            }
        }
        let journal: Value = client
            .get(format!("{ipv4}/mocker/requests?path=/fixed&limit=1"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let note = journal.pointer("/requests/0/note").or_else(|| journal.pointer("/0/note"));
        assert!(
            note.and_then(Value::as_str).is_some_and(|n| n.contains("content-length")),
            "{journal}"
        );
        // A hung upstream is a 504 naming it, after the upstream timeout.
        let (status, body) = get(&client, &format!("{ipv4}/nothing-matches")).await;
        assert_eq!(status, 504, "{body}");
        assert!(body.contains(&upstream), "{body}");
    });
    // A client sending its headers one byte at a time is closed after the header timeout.
    use std::io::{Read, Write};
    let mut slow = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    slow.write_all(b"GET /fixed HTTP/1.1\r\nHo").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let _ = slow.write_all(b"s");
    let mut rest = Vec::new();
    let closed = slow.read_to_end(&mut rest);
    assert!(
        closed.is_ok()
            || closed
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the server closed the slow connection: {closed:?}"
    );
    assert!(
        !text_of(&rest).contains("hello world"),
        "it was never answered"
    );
    drop(silent);
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An upstream whose answers the test steers, counting requests per path: `/hang` answers after
/// a minute; `/held` waits until `release` is set; `/slow-first` keeps its first request 5 s and
/// answers later ones at once, each answer saying its number; `/fail` is a 500.
async fn start_steered_upstream(
    release: Arc<tokio::sync::watch::Sender<bool>>,
) -> (
    SocketAddr,
    Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>> = Arc::default();
    let counts = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (counts, release) = (Arc::clone(&counts), Arc::clone(&release));
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let (counts, mut released) = (Arc::clone(&counts), release.subscribe());
                        async move {
                            let path = request.uri().path().to_string();
                            let number = {
                                let mut counts = counts.lock().unwrap();
                                let count = counts.entry(path.clone()).or_default();
                                *count += 1;
                                *count
                            };
                            let status = match path.as_str() {
                                "/hang" => {
                                    tokio::time::sleep(Duration::from_secs(60)).await;
                                    200
                                }
                                "/held" => {
                                    let _ = released.wait_for(|r| *r).await;
                                    200
                                }
                                "/slow-first" if number == 1 => {
                                    tokio::time::sleep(Duration::from_secs(5)).await;
                                    200
                                }
                                "/fail" => 500,
                                _ => 200,
                            };
                            let mut response = http::Response::new(Full::new(Bytes::from(
                                format!("answer {number}"),
                            )));
                            *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

#[test]
fn routes_bound_their_upstream_time_and_load_log_its_failures_and_hedge_slow_answers() {
    let rt = runtime();
    let (release, _) = tokio::sync::watch::channel(false);
    let release = Arc::new(release);
    let (upstream, seen) = rt.block_on(start_steered_upstream(Arc::clone(&release)));
    let stack = format!(
        r#"
[[services.mock.routes]]
prefix = "/hang"
upstream = "http://{upstream}"
timeout_ms = 300

[[services.mock.routes]]
prefix = "/held"
upstream = "http://{upstream}"
limit = 1

[[services.mock.routes]]
prefix = "/slow-first"
upstream = "http://{upstream}"
hedge_after_ms = 100

[[services.mock.routes]]
prefix = "/fail"
upstream = "http://{upstream}"
"#
    );
    let mock = Mock::start_in(
        |dir| std::fs::write(dir.join("inframock.toml"), &stack).unwrap(),
        &[],
    );
    let client = crate::support::http::Client::new();
    rt.block_on(async {
        // timeout_ms: a 504 naming the upstream and the time it had.
        let (status, body) = get(&client, &mock.url("/hang")).await;
        assert_eq!(status, 504, "{body}");
        assert!(
            body.contains(&format!("http://{upstream}")) && body.contains("300 ms"),
            "{body}"
        );

        // limit = 1: while one request is in flight, the next is refused at once, not queued.
        let first = tokio::spawn({
            let (client, url) = (client.clone(), mock.url("/held"));
            async move { get(&client, &url).await }
        });
        while seen.lock().unwrap().get("/held").is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (status, body) = get(&client, &mock.url("/held")).await;
        assert_eq!(status, 503, "{body}");
        let refusal: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(refusal["error"], "too many requests in flight");
        assert_eq!(
            seen.lock().unwrap()["/held"],
            1,
            "the refused request never reached the upstream"
        );
        release.send_replace(true);
        assert_eq!(first.await.unwrap(), (200, "answer 1".to_string()));
        let (status, _) = get(&client, &mock.url("/held")).await;
        assert_eq!(
            status, 200,
            "the place is given back once the answer was passed on"
        );

        // hedge_after_ms: the first request is slow, the second (sent after 100 ms) wins.
        let response = client.get(mock.url("/slow-first")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-inframock-hedged"], "second");
        assert_eq!(response.text().await.unwrap(), "answer 2");

        // A 5xx of the upstream is passed on as it is, and logged.
        let (status, body) = get(&client, &mock.url("/fail")).await;
        assert_eq!((status, body.as_str()), (500, "answer 1"));

        // The journal counts the backend errors and says which request had one.
        let (_, journal) = get(&client, &mock.url("/mocker/requests")).await;
        let journal: Value = serde_json::from_str(&journal).unwrap();
        assert_eq!(journal["backend_errors"], 2, "{journal}");
        let hang = journal["requests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["path"] == "/hang")
            .unwrap();
        assert_eq!(hang["backend_error"]["kind"], "timeout");
    });
    // Backend errors (the timeout and the 500, not the refusal) as JSON lines.
    let log = mock.dir.path().join(".inframock/logs/backend-errors.jsonl");
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap_or_else(|e| panic!("{}: {e}", log.display()))
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let kinds: Vec<(&str, &str, u64)> = lines
        .iter()
        .map(|l| {
            (
                l["path"].as_str().unwrap(),
                l["kind"].as_str().unwrap(),
                l["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(kinds, [("/hang", "timeout", 504), ("/fail", "status", 500)]);

    // A policy that cannot work is refused at start, naming the route and the field.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("inframock.toml"),
        "[[services.mock.routes]]\nprefix = \"/a\"\nupstream = \"http://127.0.0.1:1\"\nlimit = 0\n",
    )
    .unwrap();
    let refused = mock_command(dir.path(), &[]).output().unwrap();
    assert!(!refused.status.success());
    let stderr = crate::support::text(&refused.stderr);
    assert!(stderr.contains("route /a: limit = 0"), "{stderr}");
}
