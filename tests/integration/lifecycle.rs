//! The lifecycle a test harness and a developer rely on, against real moto_server and
//! redis-server: one lock per project, every process recorded the moment it starts, `stop` that
//! finds exactly ours, `reset`, reloads that restore what a reset removed, whole-or-nothing files,
//! a foreground run stopped from another terminal, a broken stack file, a sub-folder, a frozen
//! endpoint, a FIFO in the data folder, `run --fresh`, and an external loopback endpoint.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{alive, clients, free_port, runtime, text, Clients, MotoProcess, Project};

const EXPERIMENT: &str = "e1";

/// A project whose data folder holds one experiment with `count` samples and one S3 source.
fn project_with_records(count: usize) -> Project {
    let project = Project::new();
    let records: Vec<Value> = (0..count)
        .map(|i| json!({"experimentId": format!("id-{i:03}"), "n": i}))
        .collect();
    project.write(
        &format!("data/{EXPERIMENT}/mock_samples.json"),
        json!({ "records": records }).to_string(),
    );
    project.write(
        &format!("data/{EXPERIMENT}/mock_experiment.json"),
        json!({"experimentId": EXPERIMENT, "name": "one"}).to_string(),
    );
    project.write(
        &format!("data/{EXPERIMENT}/mock_cell_sets.json"),
        json!({"cellSets": []}).to_string(),
    );
    project
}

fn item_count(rt: &tokio::runtime::Runtime, clients: &Clients, table: &str) -> i32 {
    rt.block_on(clients.dynamodb.scan().table_name(table).send())
        .unwrap_or_else(|e| panic!("scan {table}: {e:?}"))
        .count
}

/// Writes an object that is not from the data folder (a test's or an app's).
fn put_stray_object(rt: &tokio::runtime::Runtime, clients: &Clients, key: &str) {
    rt.block_on(
        clients
            .s3
            .put_object()
            .bucket("biomage-source-development")
            .key(key)
            .body(b"x".to_vec().into())
            .send(),
    )
    .expect("put");
}

/// The outcome of one data file in a load report.
fn file_outcome(report: &Value, file: &str) -> Value {
    report["files"]
        .as_array()
        .and_then(|files| files.iter().find(|f| f["file"] == file))
        .unwrap_or_else(|| panic!("{file} is in the report: {report}"))
        .clone()
}

/// PID of a recorded service.
fn pid_of(project: &Project, service: &str) -> u32 {
    project.state()["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == service))
        .and_then(|s| s["pid"].as_u64())
        .unwrap_or_else(|| panic!("{service} has a recorded pid")) as u32
}

/// Waits (bounded) for a condition; panics with `what` when it never holds.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(60) {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("never happened: {what}");
}

/// Waits for a child with a watchdog, so a hang fails the test instead of blocking it.
fn wait_bounded(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let began = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if began.elapsed() > limit {
            let _ = child.kill();
            panic!(
                "the command still ran after {} s: it hangs",
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn reset_and_deleted_tables_are_restored_by_the_next_reload() {
    let project = project_with_records(30);
    project.start(&[]);
    let rt = runtime();
    let endpoint = project.endpoint();
    let clients = clients(&rt, &endpoint);
    assert_eq!(item_count(&rt, &clients, "samples-development"), 30);

    // Nothing changed: every JSON file is skipped, with the reason.
    let report = project.run_json(&["reload-data", "--json"]);
    let samples = file_outcome(&report, "mock_samples.json");
    assert_eq!(samples["result"], "unchanged", "{samples}");
    assert!(
        samples["why"]
            .as_str()
            .unwrap()
            .contains("first and last items"),
        "{samples}"
    );

    // The engine reset behind our back (what test suites do between cases).
    let answer = crate::support::http_post(&endpoint, crate::support::engine_reset_path());
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    let report = project.run_json(&["reload-data", "--json"]);
    assert_eq!(report["total"]["failed"], 0, "{report}");
    assert_eq!(item_count(&rt, &clients, "samples-development"), 30);
    assert_eq!(item_count(&rt, &clients, "experiments-development"), 1);
    let samples = file_outcome(&report, "mock_samples.json");
    assert_eq!(samples["result"], "items");
    assert!(
        samples["why"].as_str().unwrap().contains("just created"),
        "{samples}"
    );

    // Items deleted from an existing table: found missing by the key check, written again.
    rt.block_on(
        clients
            .dynamodb
            .delete_item()
            .table_name("samples-development")
            .key(
                "experimentId",
                aws_sdk_dynamodb::types::AttributeValue::S("id-029".into()),
            )
            .send(),
    )
    .expect("delete item");
    let report = project.run_json(&["reload-data", "--json"]);
    let samples = file_outcome(&report, "mock_samples.json");
    assert!(
        samples["why"].as_str().unwrap().contains("missing"),
        "{samples}"
    );
    assert_eq!(item_count(&rt, &clients, "samples-development"), 30);

    // A deleted table.
    rt.block_on(
        clients
            .dynamodb
            .delete_table()
            .table_name("samples-development")
            .send(),
    )
    .expect("delete table");
    project.run_json(&["reload-data", "--json"]);
    assert_eq!(item_count(&rt, &clients, "samples-development"), 30);
}

#[test]
fn reset_wipes_and_restores_the_declared_state_without_restarting() {
    let project = project_with_records(5);
    project.start(&[]);
    let pids = project.pids();
    let rt = runtime();
    let clients = clients(&rt, &project.endpoint());
    put_stray_object(&rt, &clients, "written-by-a-test");
    rt.block_on(
        clients
            .dynamodb
            .put_item()
            .table_name("samples-development")
            .item(
                "experimentId",
                aws_sdk_dynamodb::types::AttributeValue::S("extra".into()),
            )
            .send(),
    )
    .expect("put item");
    let redis_url = project.state()["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "redis")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let redis = redis::Client::open(redis_url.as_str()).unwrap();
    let mut connection = redis.get_connection().unwrap();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut connection)
        .unwrap();

    let report = project.run_json(&["reset", "--json"]);
    assert_eq!(
        report["wiped"]["aws"],
        crate::support::engine_reset_path().trim_start_matches('/'),
        "{report}"
    );
    assert_eq!(report["wiped"]["redis"], "FLUSHALL");
    assert_eq!(project.pids(), pids, "nothing was restarted");
    assert_eq!(
        item_count(&rt, &clients, "samples-development"),
        5,
        "data loaded again, test item gone"
    );
    let listed = rt
        .block_on(
            clients
                .s3
                .list_objects_v2()
                .bucket("biomage-source-development")
                .send(),
        )
        .expect("list");
    assert_eq!(listed.key_count(), Some(0), "the test's object is gone");
    let value: Option<String> = redis::cmd("GET").arg("k").query(&mut connection).unwrap();
    assert_eq!(value, None, "redis flushed");

    project.run_json(&["reset", "--no-data", "--json"]);
    assert_eq!(item_count(&rt, &clients, "samples-development"), 0);
    assert!(
        rt.block_on(
            clients
                .dynamodb
                .describe_table()
                .table_name("samples-development")
                .send()
        )
        .is_ok(),
        "declared tables exist after reset --no-data"
    );
}

#[test]
fn a_file_with_one_invalid_item_writes_nothing() {
    let project = project_with_records(0);
    let mut records: Vec<Value> = (0..30)
        .map(|i| json!({"experimentId": format!("id-{i:03}")}))
        .collect();
    records[27] = json!({"experimentId": ""});
    project.write(
        &format!("data/{EXPERIMENT}/mock_samples.json"),
        json!({ "records": records }).to_string(),
    );
    let output = project.start_output(&[]);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("mock_samples.json")
            && stderr.contains("item 27")
            && stderr.contains("empty"),
        "{stderr}"
    );
    let rt = runtime();
    let clients = clients(&rt, &project.endpoint());
    assert_eq!(item_count(&rt, &clients, "samples-development"), 0);

    // A number where the key is declared a string: also nothing written.
    records[27] = json!({"experimentId": 28});
    project.write(
        &format!("data/{EXPERIMENT}/mock_samples.json"),
        json!({ "records": records }).to_string(),
    );
    let output = project.run(&["reload-data"]);
    assert_eq!(output.status.code(), Some(3));
    assert!(text(&output.stderr).contains("must be a string (S)"));
    assert_eq!(item_count(&rt, &clients, "samples-development"), 0);

    // Fixed, with one key twice: the summary counts stored items.
    records[27] = json!({"experimentId": "id-000", "second": true});
    project.write(
        &format!("data/{EXPERIMENT}/mock_samples.json"),
        json!({ "records": records }).to_string(),
    );
    let report = project.run_json(&["reload-data", "--json"]);
    assert_eq!(item_count(&rt, &clients, "samples-development"), 29);
    let samples = file_outcome(&report, "mock_samples.json");
    assert_eq!(samples["count"], 29, "{samples}");
}

#[test]
fn kill_9_while_waiting_for_readiness_leaves_everything_findable() {
    let project = project_with_records(1);
    // moto that takes a while to start: run is killed while it waits.
    let slow = project.write(
        "slow_moto.sh",
        format!(
            "#!/bin/sh\nsleep 2\nexec {} \"$@\"\n",
            crate::support::engine_program()
        ),
    );
    let mut permissions = std::fs::metadata(&slow).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&slow, permissions).unwrap();
    let mut run = project
        .command(&[
            "run",
            "--detach",
            "--aws-port",
            "0",
            "--redis-port",
            "0",
            "--moto-server",
            slow.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn run");
    let state_file = project.path().join(".inframock/state.json");
    eventually("both services recorded before they are ready", || {
        std::fs::read_to_string(&state_file)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|s| s["services"].as_array().is_some_and(|a| a.len() == 2))
    });
    run.kill().expect("kill -9");
    let _ = run.wait();
    let pids = project.pids();
    assert_eq!(pids.len(), 2);
    assert!(
        pids.iter().all(|p| alive(*p)),
        "the services outlive the killed run"
    );
    let status = project.run(&["status", "--json"]);
    let status: Value = crate::support::data_of(&status.stdout);
    assert_eq!(status["running"], true, "{status}");
    let output = project.run(&["stop"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    for pid in pids {
        eventually("every recorded process is gone", || !alive(pid));
    }
}

#[test]
fn two_runs_at_once_give_one_stack() {
    let project = project_with_records(1);
    let (aws, redis) = (free_port().to_string(), free_port().to_string());
    let args = [
        "run",
        "--detach",
        "--json",
        "--aws-port",
        &aws,
        "--redis-port",
        &redis,
    ];
    let spawn = || {
        project
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (first, second) = (spawn(), spawn());
    let reports: Vec<Value> = [first, second]
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().expect("wait");
            assert!(output.status.success(), "{}", text(&output.stderr));
            crate::support::data_of(&output.stdout)
        })
        .collect();
    let aws_pid = |report: &Value| {
        report["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "aws")
            .unwrap()["pid"]
            .clone()
    };
    assert_eq!(
        aws_pid(&reports[0]),
        aws_pid(&reports[1]),
        "one moto_server"
    );
    let reused: Vec<usize> = reports
        .iter()
        .map(|r| r["reused"].as_array().map_or(0, Vec::len))
        .collect();
    assert!(
        reused.contains(&2),
        "one of them reused both services: {reused:?}"
    );
    let ours = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| crate::support::serves_port(*pid, aws.parse().expect("a port")))
        .count();
    assert_eq!(ours, 1, "exactly one process serves port {aws}");
}

#[test]
fn stop_never_kills_a_process_that_merely_reuses_a_recorded_pid() {
    let project = Project::new();
    // Someone else's redis-server, recorded with the right PID and program but another start time.
    let port = free_port();
    let mut theirs = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server");
    let state = json!({
        "project": "p", "runtime": "local", "started_at": 0, "region": "eu-west-1",
        "cluster_env": "development",
        "services": [{"name": "redis", "runtime": "local", "port": port,
                      "url": format!("redis://localhost:{port}"), "pid": theirs.id(),
                      "started": 1, "program": "redis-server", "log": null}]
    });
    project.write(".inframock/state.json", state.to_string());
    let output = project.run(&["stop"]);
    assert!(output.status.success());
    assert!(
        text(&output.stderr).contains("had already exited"),
        "{}",
        text(&output.stderr)
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(theirs.id()), "the other redis-server still runs");
    let _ = theirs.kill();
    let _ = theirs.wait();
}

#[test]
fn a_foreground_run_stopped_from_another_terminal_exits_0() {
    let project = project_with_records(1);
    let mut foreground = project
        .command(&["run", "--aws-port", "0", "--redis-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn run");
    eventually("the stack answers", || {
        project.run(&["status"]).status.success()
    });
    let stop = project.run(&["stop"]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    let status = wait_bounded(&mut foreground, Duration::from_secs(60));
    let mut stderr = String::new();
    std::io::Read::read_to_string(foreground.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stopped by `inframock stop`"), "{stderr}");
    assert!(!stderr.contains("exited unexpectedly"), "{stderr}");
}

#[test]
fn a_broken_stack_file_or_a_sub_folder_still_finds_and_stops_the_stack() {
    let project = project_with_records(1);
    project.start(&[]);
    let pids = project.pids();
    let sub = project.path().join("src/deep");
    std::fs::create_dir_all(&sub).unwrap();
    let status = project
        .command(&["status", "--json"])
        .current_dir(&sub)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", text(&status.stderr));
    let status: Value = crate::support::data_of(&status.stdout);
    assert_eq!(status["running"], true, "found from a sub-folder: {status}");

    project.write("inframock.toml", "[services.aws]\nprot = 1\n");
    let status = project.run(&["status"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(
        text(&status.stderr).contains("prot"),
        "the warning names the problem"
    );
    let env = project.run(&["env"]);
    assert!(text(&env.stdout).contains("AWS_ENDPOINT_URL"));
    let run = project.run(&["run", "--detach"]);
    assert!(!run.status.success(), "run needs a valid file");
    assert!(text(&run.stderr).contains("inframock.toml"));
    let stop = project
        .command(&["stop"])
        .current_dir(&sub)
        .output()
        .unwrap();
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    for pid in pids {
        eventually("stopped", || !alive(pid));
    }
    std::fs::remove_file(project.path().join("inframock.toml")).unwrap();
}

#[test]
fn a_frozen_endpoint_fails_within_the_operation_timeout_and_a_fifo_is_skipped() {
    let project = project_with_records(2);
    project.start(&[]);
    let fifo = project
        .path()
        .join(format!("data/{EXPERIMENT}/mock_projects.json"));
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
    let mut reload = project
        .command(&["reload-data", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_bounded(&mut reload, Duration::from_secs(60)).success());
    let mut stdout = String::new();
    std::io::Read::read_to_string(reload.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(stdout.contains("not a regular file"), "{stdout}");

    let moto = pid_of(&project, "aws");
    // SAFETY: stopping (then continuing) the test's own moto_server.
    unsafe { libc::kill(moto as i32, libc::SIGSTOP) };
    let mut frozen = project
        .command(&["reload-data", "--operation-timeout", "2"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut frozen, Duration::from_secs(60));
    unsafe { libc::kill(moto as i32, libc::SIGCONT) };
    let mut stderr = String::new();
    std::io::Read::read_to_string(frozen.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains(&project.endpoint()),
        "names the endpoint: {stderr}"
    );
    assert!(stderr.contains("operation timeout"), "{stderr}");
}

#[test]
fn run_fresh_on_the_local_runtime_starts_new_processes() {
    let project = project_with_records(1);
    project.start(&[]);
    let before = project.pids();
    let rt = runtime();
    let clients = clients(&rt, &project.endpoint());
    put_stray_object(&rt, &clients, "left-over");
    let report = project.start(&["--fresh"]);
    let after = project.pids();
    assert!(
        before.iter().all(|p| !after.contains(p)),
        "{before:?} vs {after:?}"
    );
    assert_eq!(report["reused"].as_array().map_or(0, Vec::len), 0);
    let clients = crate::support::clients(&rt, &project.endpoint());
    let left = rt.block_on(
        clients
            .s3
            .head_object()
            .bucket("biomage-source-development")
            .key("left-over")
            .send(),
    );
    assert!(left.is_err(), "a fresh engine holds only the data folder");
    assert_eq!(item_count(&rt, &clients, "samples-development"), 1);
}

/// `run --detach --json` of `project` into the already running `endpoint` (the external runtime),
/// with `home` as `HOME` so that no credentials of the machine's user are found.
fn external_run(project: &Project, endpoint: &str, ready_timeout: &str, home: &Path) -> Command {
    let mut command = crate::support::external_run(project, endpoint);
    command
        .args(["--ready-timeout", ready_timeout])
        .env("HOME", home);
    command
}

#[test]
fn an_external_loopback_endpoint_without_credentials_uses_test_keys() {
    let engine = project_with_records(1);
    engine.start(&["--no-populate"]);
    let endpoint = engine.endpoint();
    let project = project_with_records(3);
    let home = tempfile::tempdir().unwrap();
    let report = external_run(&project, &endpoint, "20", home.path())
        .output()
        .unwrap();
    assert!(report.status.success(), "{}", text(&report.stderr));
    let env = project
        .command(&["env"])
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(
        text(&env.stdout).contains("AWS_ACCESS_KEY_ID=test"),
        "{}",
        text(&env.stdout)
    );
    let rt = runtime();
    let clients = clients(&rt, &endpoint);
    assert_eq!(item_count(&rt, &clients, "samples-development"), 3);
    let stop = project.run(&["stop"]);
    assert!(stop.status.success());
    assert!(
        engine.pids().iter().all(|p| alive(*p)),
        "stopping the external project leaves the engine running"
    );
}

/// A certificate authority and a certificate for `localhost` and 127.0.0.1 signed by it, made
/// with the openssl command: `(ca.pem, server.pem, server.key)` in `dir`.
fn tls_certificates(dir: &Path) -> (String, String, String) {
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            text(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let (ca, ca_key) = (path("ca.pem"), path("ca.key"));
    let (cert, key, request) = (path("server.pem"), path("server.key"), path("server.csr"));
    openssl(
        &[
            &[
                "req",
                "-x509",
                "-days",
                "2",
                "-subj",
                "/CN=inframock test CA",
            ][..],
            &ec,
            &["-keyout", &ca_key, "-out", &ca],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
            &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req", "-subj", "/CN=localhost"][..],
            &ec,
            &["-keyout", &key, "-out", &request],
        ]
        .concat(),
    );
    let extensions = path("server.ext");
    std::fs::write(
        &extensions,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        &request,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &cert,
        "-extfile",
        &extensions,
    ]);
    (ca, cert, key)
}

#[test]
fn an_external_https_endpoint_is_trusted_through_ssl_cert_file_refused_without_it_and_never_proxied(
) {
    let certificates = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_certificates(certificates.path());
    let port = free_port();
    // moto serving HTTPS with the test's certificate.
    let _engine = MotoProcess::start(port, &["-c", &cert, "-k", &key]);
    let endpoint = format!("https://localhost:{port}");
    let project = project_with_records(4);
    let home = tempfile::tempdir().unwrap();
    let run = |trust: Option<&str>| {
        let mut command = external_run(&project, &endpoint, "10", home.path());
        // A proxy that cannot be reached: a loopback endpoint must not go through it.
        command
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env_remove("NO_PROXY")
            .env_remove("SSL_CERT_FILE");
        if let Some(ca) = trust {
            command.env("SSL_CERT_FILE", ca);
        }
        command.output().unwrap()
    };

    // A certificate no authority of this machine signed: refused, and the error says so.
    let refused = run(None);
    assert!(!refused.status.success(), "{}", text(&refused.stdout));
    let error = format!("{}{}", text(&refused.stdout), text(&refused.stderr));
    assert!(error.contains(&endpoint), "{error}");
    assert!(error.contains("invalid peer certificate"), "{error}");
    assert!(
        error.contains("SSL_CERT_FILE"),
        "says how to trust it: {error}"
    );
    assert!(
        !error.contains("did not answer within"),
        "refused at once, not after the ready timeout: {error}"
    );

    // Trusted through SSL_CERT_FILE: the data folder is loaded over TLS, past the dead proxy.
    let started = run(Some(&ca));
    assert!(started.status.success(), "{}", text(&started.stderr));
    let reload = project
        .command(&["reload-data", "--json"])
        .env("HOME", home.path())
        .env("SSL_CERT_FILE", &ca)
        .output()
        .unwrap();
    assert!(reload.status.success(), "{}", text(&reload.stderr));
    let report = crate::support::data_of(&reload.stdout);
    let samples = file_outcome(&report, "mock_samples.json");
    assert_eq!(samples["result"], "unchanged", "{samples}");
    assert!(project.run(&["stop"]).status.success());
}
