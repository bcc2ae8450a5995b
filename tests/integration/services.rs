//! Declared services beyond AWS and Redis, against the real servers: memcached (a small text
//! protocol client here) directly and through its fault proxy, PostgreSQL with `psql`, and a
//! service described in full in `inframock.toml`. Each is started, probed, recorded, exported by
//! `env`, reset and stopped like aws and redis.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{alive, text, Project};
use serde_json::Value;

/// A memcached text-protocol connection.
struct Memcached {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Memcached {
    fn connect(port: u16) -> std::io::Result<Memcached> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(Memcached {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    fn line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        Ok(line.trim_end().to_string())
    }

    fn command(&mut self, line: &str) -> std::io::Result<String> {
        self.writer.write_all(format!("{line}\r\n").as_bytes())?;
        self.line()
    }

    fn set(&mut self, key: &str, value: &str) -> std::io::Result<String> {
        self.writer
            .write_all(format!("set {key} 0 0 {}\r\n{value}\r\n", value.len()).as_bytes())?;
        self.line()
    }

    fn get(&mut self, key: &str) -> std::io::Result<Option<String>> {
        let header = self.command(&format!("get {key}"))?;
        if header == "END" {
            return Ok(None);
        }
        let length: usize = header
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not a VALUE line: {header:?}")))?;
        let mut data = vec![0; length + 2];
        self.reader.read_exact(&mut data)?;
        let end = self.line()?;
        if end != "END" {
            return Err(std::io::Error::other(format!("expected END, got {end:?}")));
        }
        Ok(Some(String::from_utf8_lossy(&data[..length]).into_owned()))
    }
}

fn port_of(state: &Value, list: &str, key: &str, name: &str) -> u16 {
    state[list]
        .as_array()
        .and_then(|l| l.iter().find(|e| e[key] == name))
        .and_then(|e| e["port"].as_u64())
        .unwrap_or_else(|| panic!("{name} in {list}: {state}")) as u16
}

fn succeed(project: &Project, args: &[&str]) -> String {
    let output = project.run(args);
    assert!(
        output.status.success(),
        "inframock {args:?}: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

#[test]
fn memcached_answers_directly_and_behind_its_fault_proxy_and_stops_cleanly() {
    let project = Project::new();
    project.write(
        "inframock.toml",
        "[services.cache]\npreset = \"memcached\"\nport = 0\nfaults = true\nfaults_port = 0\n",
    );
    project.start(&["--no-populate", "--faults-port", "0"]);
    let state = project.state();
    let cache = state["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "cache"))
        .cloned()
        .expect("cache recorded");
    assert_eq!(cache["kind"], "memcached", "{state}");
    let direct = port_of(&state, "services", "name", "cache");
    let proxied = port_of(&state, "fault_proxies", "service", "cache");
    assert_ne!(direct, proxied);

    let env = project.run_json(&["env", "--json"]);
    assert_eq!(
        env["MEMCACHED_URL"],
        format!("memcached://localhost:{proxied}"),
        "clients are pointed at the fault proxy: {env}"
    );
    let status = project.run_json(&["status", "--json"]);
    let row = status["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["service"] == "cache"))
        .cloned()
        .expect("cache in status");
    assert_eq!(row["kind"], "memcached");
    assert_eq!(row["health"], "healthy", "{row}");
    assert!(
        row["version"].as_str().is_some_and(|v| v.starts_with("1.")),
        "{row}"
    );

    let mut through = Memcached::connect(proxied).expect("connect through the proxy");
    assert_eq!(through.set("greeting", "hello world").unwrap(), "STORED");
    assert_eq!(
        through.get("greeting").unwrap().as_deref(),
        Some("hello world")
    );
    assert_eq!(through.set("counter", "10").unwrap(), "STORED");
    assert_eq!(through.command("incr counter 5").unwrap(), "15");

    // hiccup: the answer stalls after 3 bytes, then arrives whole.
    succeed(
        &project,
        &[
            "faults",
            "hiccup",
            "--msecs",
            "400",
            "--offset",
            "3",
            "--service",
            "cache",
        ],
    );
    let began = Instant::now();
    assert_eq!(
        through.get("greeting").unwrap().as_deref(),
        Some("hello world")
    );
    assert!(began.elapsed() >= Duration::from_millis(400));
    succeed(&project, &["faults", "reset"]);

    // truncate: the answer is cut and the connection closed.
    succeed(
        &project,
        &["faults", "truncate", "--limit", "4", "--service", "cache"],
    );
    let cut = through.get("greeting");
    assert!(cut.is_err(), "a cut answer is an error: {cut:?}");
    let mut through = Memcached::connect(proxied).expect("new connections work again");
    assert_eq!(through.command("incr counter 1").unwrap(), "16");

    // failover: open connections dropped, new ones refused, until respawn.
    succeed(&project, &["faults", "failover", "--service", "cache"]);
    assert!(
        through.get("greeting").is_err(),
        "the open connection was dropped"
    );
    let refused = Memcached::connect(proxied).and_then(|mut c| c.get("greeting"));
    assert!(refused.is_err(), "refused while failed over: {refused:?}");
    succeed(&project, &["faults", "respawn", "--service", "cache"]);
    let mut through = Memcached::connect(proxied).expect("respawned");
    assert_eq!(
        through.get("greeting").unwrap().as_deref(),
        Some("hello world"),
        "memcached behind the proxy kept its data"
    );

    // reset: flush_all, like FLUSHALL for redis.
    let reset = project.run_json(&["reset", "--no-data", "--json"]);
    assert_eq!(reset["wiped"]["cache"], "flush_all", "{reset}");
    let mut direct_connection = Memcached::connect(direct).expect("direct");
    assert_eq!(direct_connection.get("greeting").unwrap(), None);

    let pids = project.pids();
    succeed(&project, &["stop"]);
    for pid in pids {
        assert!(!alive(pid), "pid {pid} still runs after stop");
    }
    assert!(
        Memcached::connect(direct).is_err(),
        "nothing listens on the memcached port after stop"
    );
}

fn psql(url: &str, sql: &str) -> std::process::Output {
    Command::new("psql")
        .args([
            url,
            "--no-psqlrc",
            "--tuples-only",
            "--no-align",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .expect("psql runs (apt-get install postgresql-client)")
}

/// The `result` and `why` of one file in a load report.
fn file_outcome(report: &Value, file: &str) -> (String, String) {
    let entry = report["files"]
        .as_array()
        .and_then(|files| files.iter().find(|f| f["file"] == file))
        .unwrap_or_else(|| panic!("{file} in {report}"));
    (
        entry["result"].as_str().unwrap_or_default().to_string(),
        entry["why"].as_str().unwrap_or_default().to_string(),
    )
}

const POSTGRES_STACK: &str = r#"[services.db]
preset = "postgres"
port = 0
faults = true
faults_port = 0

[[data.rules]]
pattern = "*.sql"
service = "db"
"#;

#[test]
fn postgres_runs_the_data_folders_sql_once_per_database_and_answers_through_its_proxy() {
    let project = Project::new();
    project.write("inframock.toml", POSTGRES_STACK);
    project.write(
        "data/e1/schema.sql",
        "CREATE TABLE experiments (id text PRIMARY KEY, cells int);\nINSERT INTO experiments VALUES ('e1', 1200), ('e2', 34);\n",
    );
    let first = project.start(&["--faults-port", "0"]);
    assert_eq!(
        file_outcome(&first["data"], "schema.sql").0,
        "ran",
        "{}",
        first["data"]
    );
    let env = project.run_json(&["env", "--json"]);
    let url = env["DATABASE_URL"]
        .as_str()
        .expect("DATABASE_URL exported")
        .to_string();
    let state = project.state();
    let proxy = port_of(&state, "fault_proxies", "service", "db");
    assert!(
        url.contains(&format!(":{proxy}/")),
        "clients use the fault proxy: {url}"
    );
    let sum = psql(&url, "SELECT sum(cells) FROM experiments");
    assert_eq!(text(&sum.stdout).trim(), "1234", "{}", text(&sum.stderr));

    // Behind its fault proxy: failed over, then respawned.
    succeed(&project, &["faults", "failover", "--service", "db"]);
    assert!(
        !psql(&url, "SELECT 1").status.success(),
        "refused while failed over"
    );
    succeed(&project, &["faults", "respawn", "--service", "db"]);
    assert!(
        psql(&url, "SELECT 1").status.success(),
        "answers after respawn"
    );

    // Unchanged: skipped. Changed: run again. Broken: rolled back whole, reported.
    let again = project.run_json(&["reload-data", "--json"]);
    let (result, why) = file_outcome(&again, "schema.sql");
    assert_eq!(result, "unchanged", "{again}");
    assert!(why.contains("ran on this database"), "{why}");
    project.write(
        "data/e1/schema.sql",
        "CREATE TABLE IF NOT EXISTS experiments (id text PRIMARY KEY, cells int);\nINSERT INTO experiments VALUES ('e3', 1) ON CONFLICT DO NOTHING;\n",
    );
    project.write(
        "data/e1/broken.sql",
        "CREATE TABLE half (x int);\nINSERT INTO nowhere VALUES (1);\n",
    );
    let output = project.run(&["reload-data", "--json"]);
    assert!(!output.status.success(), "a failed file fails the load");
    let changed: Value = crate::support::data_of(&output.stdout);
    assert_eq!(file_outcome(&changed, "schema.sql").0, "ran", "{changed}");
    let (result, _) = file_outcome(&changed, "broken.sql");
    assert_eq!(result, "failed", "{changed}");
    let count = psql(&url, "SELECT count(*) FROM experiments");
    assert_eq!(text(&count.stdout).trim(), "3");
    let half = psql(&url, "SELECT count(*) FROM half");
    assert!(
        !half.status.success(),
        "the broken file's first statement was rolled back too"
    );
    std::fs::remove_file(project.path().join("data/e1/broken.sql")).unwrap();

    // `reset` keeps Postgres (said), `run --fresh` gives a new database: the SQL runs again.
    let reset = project.run(&["reset"]);
    assert!(reset.status.success(), "{}", text(&reset.stderr));
    assert!(
        text(&reset.stderr).contains("db (postgres) keeps its state"),
        "{}",
        text(&reset.stderr)
    );
    let fresh = project.start(&["--fresh", "--faults-port", "0"]);
    let (result, why) = file_outcome(&fresh["data"], "schema.sql");
    assert_eq!(result, "ran", "{}", fresh["data"]);
    assert!(why.contains("not run on this database"), "{why}");
    let url = project.run_json(&["env", "--json"])["DATABASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    let count = psql(&url, "SELECT count(*) FROM experiments");
    assert_eq!(
        text(&count.stdout).trim(),
        "1",
        "a new database holds only e3"
    );

    let pids = project.pids();
    succeed(&project, &["stop"]);
    for pid in pids {
        assert!(!alive(pid), "pid {pid} still runs after stop");
    }
    assert!(!psql(&url, "SELECT 1").status.success(), "stopped");
}

#[test]
fn a_service_described_in_full_is_started_probed_exported_and_stopped() {
    let project = Project::new();
    project.write("site/hello.txt", "hello from a declared service\n");
    project.write(
        "inframock.toml",
        r#"[services.site]
command = ["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1", "--directory", "site"]
port = 0
probe = "http /hello.txt"
url = "http://localhost:{port}"
env_var = "SITE_URL"
"#,
    );
    project.start(&["--no-populate"]);
    let env = project.run_json(&["env", "--json"]);
    let url = env["SITE_URL"]
        .as_str()
        .expect("SITE_URL exported")
        .to_string();
    let body = crate::support::http_get(&url, "/hello.txt");
    assert!(body.contains("hello from a declared service"), "{body}");
    let logs = succeed(&project, &["logs", "site"]);
    assert!(logs.contains("GET /hello.txt"), "its log is kept: {logs}");
    let pids = project.pids();
    succeed(&project, &["stop"]);
    for pid in pids {
        assert!(!alive(pid), "pid {pid} still runs after stop");
    }
}

#[test]
fn a_declared_service_that_is_neither_preset_nor_described_is_refused_with_the_fix() {
    let project = Project::new();
    project.write("inframock.toml", "[services.cahce]\nport = 1\n");
    let output = project.start_output(&["--no-populate"]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("[services.cahce]"), "{stderr}");
    assert!(stderr.contains("preset = \"memcached\""), "{stderr}");
    project.write(
        "inframock.toml",
        "[services.cache]\npreset = \"memcache\"\n",
    );
    let stderr = text(&project.start_output(&["--no-populate"]).stderr);
    assert!(
        stderr.contains("preset \"memcache\" is not one of memcached, postgres, redis"),
        "{stderr}"
    );
    assert!(
        !project.path().join(".inframock/state.json").exists(),
        "nothing was started"
    );
}
