//! `inframock bench` against the real mock server with a scenario set (the scenario seed's way):
//! the ramp and rate modes, the JSON, the offline HTML and SVG reports, `--compare`, and refusals.
//! Counts are asserted (requests per step, what the mock saw); timings never are.

use std::path::Path;
use std::process::Output;

use serde_json::{json, Value};

use crate::mock::{get, runtime, Mock};

fn bench(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_inframock"))
        .current_dir(dir)
        .arg("bench")
        .args(args)
        .output()
        .expect("inframock bench runs")
}

/// The `data` of `bench --json`, after checking the envelope.
fn report(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "bench failed: {}",
        crate::support::text(&output.stderr)
    );
    let document: Value = serde_json::from_slice(&output.stdout).expect("one JSON document");
    assert_eq!(document["schema"], 1);
    assert_eq!(document["command"], "bench");
    assert_eq!(document["ok"], true);
    document["data"].clone()
}

/// Every request of the run reached the mock's scenario (`GET /requests` lists one time each).
fn scenario_requests(mock: &Mock) -> usize {
    let rt = runtime();
    let client = crate::support::http::Client::new();
    let (status, body) = rt.block_on(get(&client, &mock.url("/requests")));
    assert_eq!(status, 200);
    serde_json::from_str::<Vec<f64>>(&body)
        .expect("times")
        .len()
}

#[test]
fn ramp_and_rate_runs_against_the_mock_write_json_html_and_svg() {
    let mock = Mock::start(&[]);
    let work = mock.dir.path();
    let steps: Vec<Value> = (0..2000).map(|_| json!(["{\"time\":1}", 200, 1])).collect();
    std::fs::write(work.join("scenario.json"), Value::Array(steps).to_string()).unwrap();
    let url = mock.url("/");

    // The closed-loop ramp 1, 2, 4 with 150 requests a step, the scenario posted first.
    let closed = bench(
        work,
        &[
            &url,
            "--scenario",
            "scenario.json",
            "--ramp",
            "1..4",
            "--requests",
            "150",
            "--out",
            "ramp.html",
            "--json",
        ],
    );
    let ramp = report(&closed);
    std::fs::write(work.join("ramp.json"), &closed.stdout).unwrap();
    assert_eq!(ramp["mode"], "closed");
    let loads: Vec<&Value> = ramp["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["load"])
        .collect();
    assert_eq!(
        loads,
        [
            &json!({"concurrency": 1}),
            &json!({"concurrency": 2}),
            &json!({"concurrency": 4})
        ]
    );
    for step in ramp["steps"].as_array().unwrap() {
        assert_eq!(step["requests"], 150, "{step}");
        assert_eq!(
            step["statuses"],
            json!({"200": 150}),
            "the scenario answered every one"
        );
        let latency = &step["latency_ms"];
        assert!(
            latency["p50"].as_f64().unwrap() >= 1.0,
            "the scenario's 1 ms delay: {latency}"
        );
        assert!(latency["p50"].as_f64() <= latency["p99"].as_f64());
        let corrected = &step["corrected_latency_ms"];
        assert!(
            corrected["p99"].as_f64() >= latency["p99"].as_f64(),
            "wrk's correction only adds: {step}"
        );
    }
    assert_eq!(
        scenario_requests(&mock),
        450,
        "the scenario was set by bench and served every request"
    );
    let html = std::fs::read_to_string(work.join("ramp.html")).expect("the HTML report");
    for label in ["c=1", "c=2", "c=4"] {
        assert!(
            html.contains(&format!("<tr data-step=\"{label}\">")),
            "{label} in the table"
        );
    }
    assert!(
        html.contains("<svg") && (html.contains("<polyline") || html.contains("<path")),
        "the plot is inline"
    );
    assert!(
        !html.contains("<script") && !html.contains("https://"),
        "nothing to fetch: it opens offline"
    );

    // The open loop at 100 and 200 requests/s for a second each: every scheduled request is sent
    // (late ones are counted from when they were due), so the counts follow the schedule.
    let open = bench(
        work,
        &[
            &url,
            "--scenario",
            "scenario.json",
            "--rate",
            "100,200",
            "--duration",
            "1s",
            "--out",
            "rate.svg",
            "--json",
        ],
    );
    let rate = report(&open);
    assert_eq!(rate["mode"], "open");
    let steps = rate["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    for (step, scheduled) in steps.iter().zip([100_u64, 200]) {
        let sent = step["requests"].as_u64().unwrap();
        assert!(
            (scheduled - 1..=scheduled + 1).contains(&sent),
            "{sent} of {scheduled}: {step}"
        );
        let corrected = &step["corrected_latency_ms"];
        assert!(
            corrected["p99"].as_f64().is_some(),
            "open-loop steps carry corrected latency"
        );
    }
    let svg = std::fs::read_to_string(work.join("rate.svg")).expect("the SVG report");
    assert!(
        svg.starts_with("<svg") && svg.contains("scheduled"),
        "{}",
        &svg[..200.min(svg.len())]
    );

    // --compare draws an earlier run under this one; a run of the other kind is refused.
    let compared = bench(
        work,
        &[
            &url,
            "--ramp",
            "1..2",
            "--requests",
            "20",
            "--compare",
            "ramp.json",
            "--out",
            "cmp.svg",
        ],
    );
    assert!(
        compared.status.success(),
        "{}",
        crate::support::text(&compared.stderr)
    );
    let table = crate::support::text(&compared.stdout);
    assert!(
        table.contains("answers/s") && table.contains("c=2"),
        "{table}"
    );
    assert!(std::fs::read_to_string(work.join("cmp.svg"))
        .unwrap()
        .contains("earlier run"));
    std::fs::write(work.join("rate.json"), &open.stdout).unwrap();
    let mixed = bench(work, &[&url, "--ramp", "1..2", "--compare", "rate.json"]);
    assert!(!mixed.status.success());
    assert!(crate::support::text(&mixed.stderr).contains("like with like"));
}

#[test]
fn bench_refuses_what_it_cannot_measure_before_sending_anything() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::free_port();
    std::fs::write(dir.path().join("scenario.json"), "fast, 200, 0").unwrap();
    std::fs::write(dir.path().join("object.json"), r#"{"fast": 200}"#).unwrap();
    std::fs::create_dir(dir.path().join("plots.html")).unwrap();
    let cases: [(&[&str], &str); 9] = [
        (
            &[&format!("http://127.0.0.1:{port}/")],
            "nothing answers at",
        ),
        // A typo in --out or --scenario is found before the run, not after it.
        (
            &["http://127.0.0.1:1/", "--out", "missing/report.html"],
            "folder missing does not exist",
        ),
        (
            &["http://127.0.0.1:1/", "--out", "plots.html"],
            "that is a folder",
        ),
        (
            &["http://127.0.0.1:1/", "--scenario", "scenario.json"],
            "scenario.json: the scenario is not valid JSON",
        ),
        (
            &["http://127.0.0.1:1/", "--scenario", "object.json"],
            "object.json: the scenario must be a JSON list",
        ),
        (&["http://192.0.2.10/"], "not this machine"),
        (&["http://127.0.0.1:1/", "--ramp", "8..2"], "FROM is larger"),
        (&["http://127.0.0.1:1/", "--out", "report.png"], ".html"),
        (
            &["http://127.0.0.1:1/", "--rate", "10", "--concurrency", "2"],
            "one of",
        ),
    ];
    for (args, expected) in cases {
        let output = bench(dir.path(), args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = crate::support::text(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert!(
        !dir.path().join("missing").exists() && !dir.path().join("report.png").exists(),
        "a refused run leaves no file behind"
    );
}

/// A hostile server on a free port: every connection gets `answer` to its first request (nothing
/// when `None`: the connection is held open). It stops, closing every connection, when the
/// returned sender is dropped.
fn hostile_server(answer: Option<&'static [u8]>) -> (String, std::sync::mpsc::Sender<()>) {
    use std::io::{Read, Write};
    use std::sync::mpsc::TryRecvError;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Err(TryRecvError::Empty) = stopped.try_recv() {
            let Ok((mut stream, _)) = listener.accept() else {
                std::thread::sleep(std::time::Duration::from_millis(5));
                continue;
            };
            let _ = stream.set_nonblocking(false);
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            match answer {
                Some(bytes) => {
                    let _ = stream.write_all(bytes);
                }
                None => held.push(stream),
            }
        }
    });
    (url, stop)
}

#[test]
fn answers_that_are_not_http_and_answers_that_never_come_are_counted_not_hung_on() {
    let dir = tempfile::tempdir().unwrap();
    let (garbage, _stop_garbage) = hostile_server(Some(b"HELLO WORLD\r\n\r\n"));
    let step = &report(&bench(
        dir.path(),
        &[&garbage, "--concurrency", "2", "--requests", "6", "--json"],
    ))["steps"][0];
    assert_eq!(step["requests"], 0, "{step}");
    assert_eq!(step["errors"], json!({"malformed answer": 6}), "{step}");

    let (silent, _stop_silent) = hostile_server(None);
    let step = &report(&bench(
        dir.path(),
        &[
            &silent,
            "--concurrency",
            "1",
            "--requests",
            "2",
            "--timeout",
            "200ms",
            "--json",
        ],
    ))["steps"][0];
    assert_eq!(step["timeouts"], 2, "{step}");
    assert_eq!(step["requests"], 0, "{step}");
}

/// moto_server on a free port whose authentication can be switched on (`/moto-api/reset-auth`):
/// then it checks every request's SigV4 signature against its IAM keys. Stopped when dropped.
struct VerifyingMoto {
    _process: crate::support::MotoProcess,
    url: String,
}

impl VerifyingMoto {
    fn start() -> VerifyingMoto {
        let port = crate::support::free_port();
        VerifyingMoto {
            _process: crate::support::MotoProcess::start(port, &[]),
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Creates an IAM user allowed everything, a bucket with one object and a table with one
    /// item (with moto's own keys, in eu-west-1: the region of a project with the built-in stack),
    /// then switches authentication on; the user's key and secret.
    fn prepare_and_verify_from_now_on(&self) -> (String, String) {
        let script = r#"
import sys, boto3
url = sys.argv[1]
kw = dict(endpoint_url=url, region_name="eu-west-1", aws_access_key_id="test", aws_secret_access_key="test")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="bench")
iam.put_user_policy(UserName="bench", PolicyName="all",
    PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}')
key = iam.create_access_key(UserName="bench")["AccessKey"]
s3 = boto3.client("s3", **kw)
s3.create_bucket(Bucket="files", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
s3.put_object(Bucket="files", Key="dir/a b.txt", Body=b"hello")
ddb = boto3.client("dynamodb", **kw)
ddb.create_table(TableName="things", BillingMode="PAY_PER_REQUEST",
    KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}, {"AttributeName": "n", "KeyType": "RANGE"}],
    AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}, {"AttributeName": "n", "AttributeType": "N"}])
ddb.put_item(TableName="things", Item={"id": {"S": "a"}, "n": {"N": "2"}, "v": {"S": "x"}})
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;
        let output = std::process::Command::new("python3")
            .args(["-c", script, &self.url])
            .output()
            .expect("python3 (make setup puts boto3 in .venv)");
        assert!(
            output.status.success(),
            "{}",
            crate::support::text(&output.stderr)
        );
        let printed = crate::support::text(&output.stdout);
        let (key, secret) = printed.trim().split_once(' ').expect("key and secret");
        let rt = runtime();
        let client = crate::support::http::Client::new();
        let switched = rt.block_on(async {
            let response = client
                .post(format!("{}/moto-api/reset-auth", self.url))
                .body("0")
                .send()
                .await
                .expect("reset-auth");
            response.status()
        });
        assert_eq!(switched, 200, "authentication switched on");
        (key.to_string(), secret.to_string())
    }
}

#[test]
fn s3_and_dynamodb_targets_send_the_signed_requests_an_engine_that_checks_signatures_accepts() {
    let moto = VerifyingMoto::start();
    let (key, secret) = moto.prepare_and_verify_from_now_on();
    let project = crate::support::Project::new();
    let bench_with = |secret: &str, target: &str| {
        project
            .command(&[
                "--json",
                "--runtime",
                "external",
                "--endpoint-url",
                &moto.url,
                "bench",
                target,
                "--concurrency",
                "2",
                "--requests",
                "40",
            ])
            .env("AWS_ACCESS_KEY_ID", &key)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .output()
            .expect("inframock bench runs")
    };
    for target in ["s3://files/dir/a%20b.txt", "dynamodb://things?id=a&n=2"] {
        let data = report(&bench_with(&secret, target));
        assert_eq!(data["url"], target);
        let step = &data["steps"][0];
        assert_eq!(step["requests"], 40, "{target}: {step}");
        assert_eq!(step["statuses"], json!({"200": 40}), "{target}: {step}");
        assert_eq!(step["errors"], json!({}), "{target}: {step}");
    }
    // The same with a wrong secret: the engine refuses the signature, before any load is sent.
    let refused = bench_with("not-the-secret", "s3://files/dir/a%20b.txt");
    assert_eq!(refused.status.code(), Some(1));
    let stderr = crate::support::text(&refused.stderr);
    assert!(
        stderr.contains("s3://files/dir/a%20b.txt: cannot read it"),
        "{stderr}"
    );
    // Refusals that name what to fix.
    let cases = [
        ("dynamodb://things?id=a&n=3", "has no item with that key"),
        (
            "dynamodb://things?id=a",
            "needs n too (dynamodb://things?id=VALUE&n=VALUE)",
        ),
        ("dynamodb://things?id=a&n=two", "n is a number"),
        ("dynamodb://things?id=&n=2", "id has no value"),
        ("dynamodb://things?v=x&id=a&n=2", "v is not a key attribute"),
        ("s3://files/missing", "no such object"),
        ("s3://files", "s3://BUCKET/KEY"),
    ];
    for (target, expected) in cases {
        let output = bench_with(&secret, target);
        assert_eq!(output.status.code(), Some(1), "{target}");
        let stderr = crate::support::text(&output.stderr);
        assert!(stderr.contains(expected), "{target}: {stderr}");
    }
}
