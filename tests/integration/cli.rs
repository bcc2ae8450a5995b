//! The command line as a contract with scripts: a closed stdout ends a command quietly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    // 20,000 recorded messages: far more than a pipe holds, so printing them meets the closed pipe.
    let project = tempfile::tempdir().unwrap();
    let messages = project.path().join(".inframock/messages");
    std::fs::create_dir_all(&messages).unwrap();
    let line =
        r#"{"time":"2026-11-26T00:00:00Z","source":"queue q","message_id":"m","body":"{\"a\":1}"}"#;
    std::fs::write(messages.join("q.jsonl"), format!("{line}\n").repeat(20_000)).unwrap();
    // As `inframock queue messages q | head -1` does: read one line, then close the pipe.
    let mut child = Command::new(env!("CARGO_BIN_EXE_inframock"))
        .args(["--project-dir"])
        .arg(project.path())
        .args(["queue", "messages", "q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("queue q"), "{first}");
    let output = child.wait_with_output().unwrap();
    let stderr = crate::support::text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains("panicked") && stderr.trim().is_empty(),
        "{stderr}"
    );
}

#[test]
fn switch_variables_take_the_usual_spellings_and_empty_ones_count_as_unset() {
    let project = tempfile::tempdir().unwrap();
    let status = |variables: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_inframock"));
        command
            .arg("--project-dir")
            .arg(project.path())
            .arg("status");
        for name in ["INFRAMOCK_JSON", "INFRAMOCK_AWS_PORT"] {
            command.env_remove(name);
        }
        command.envs(variables.iter().copied());
        command.output().unwrap()
    };
    for yes in ["1", "yes", "ON", "true"] {
        let output = status(&[("INFRAMOCK_JSON", yes)]);
        let json = crate::support::envelope(&output.stdout);
        assert_eq!(json["data"]["running"], false, "INFRAMOCK_JSON={yes}");
        assert_eq!(
            json["error"]["code"], "not_running",
            "exit 4 comes with its code"
        );
    }
    for no in ["0", "no", "off", ""] {
        let output = status(&[("INFRAMOCK_JSON", no)]);
        assert!(
            crate::support::text(&output.stdout).contains("no stack is running"),
            "INFRAMOCK_JSON={no:?} is text"
        );
    }
    let wrong = status(&[("INFRAMOCK_JSON", "maybe")]);
    assert_eq!(wrong.status.code(), Some(2));
    let stderr = crate::support::text(&wrong.stderr);
    assert!(stderr.contains("INFRAMOCK_JSON=\"maybe\""), "{stderr}");
    // An empty port variable is the default port, not an invalid number.
    let empty = status(&[("INFRAMOCK_AWS_PORT", "")]);
    assert_eq!(
        empty.status.code(),
        Some(4),
        "not running, and no usage error"
    );
    let stderr = crate::support::text(&empty.stderr);
    assert!(
        !stderr.contains("INFRAMOCK_AWS_PORT") && !stderr.contains("invalid"),
        "{stderr}"
    );
}

#[test]
fn completion_scripts_know_every_command_and_bash_accepts_them() {
    let bin = env!("CARGO_BIN_EXE_inframock");
    let output = Command::new(bin)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let script = crate::support::text(&output.stdout);
    for word in [
        "reload-data",
        "bench",
        "completions",
        "--aws-port",
        "--rate-ramp",
    ] {
        assert!(script.contains(word), "{word} is completed");
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &script).unwrap();
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "{}",
        crate::support::text(&syntax.stderr)
    );
    let wrong = Command::new(bin)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        crate::support::text(&wrong.stderr).contains("zsh"),
        "the shells are listed"
    );
}

#[test]
fn init_writes_a_project_that_runs_and_a_missing_default_data_folder_is_only_a_note() {
    let project = crate::support::Project::new();
    project.write(".gitignore", "target/\n");
    let first = project.run_json(&["init", "--json"]);
    let done: Vec<(String, String)> = first["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let path = f["path"].as_str().unwrap();
            let name = path
                .strip_prefix(&format!("{}/", project.path().display()))
                .unwrap_or(path);
            (name.to_string(), f["done"].as_str().unwrap().to_string())
        })
        .collect();
    let expected = [
        ("inframock.toml", "wrote"),
        ("data/example/item.json", "wrote"),
        ("mocks/hello.json", "wrote"),
        (".gitignore", "appended"),
    ];
    assert_eq!(
        done,
        expected.map(|(p, d)| (p.to_string(), d.to_string())),
        "{first}"
    );
    // Again: nothing is overwritten, .gitignore keeps one entry.
    let again = crate::support::text(&project.run(&["init"]).stdout);
    assert!(
        again.contains("kept") && !again.contains("wrote"),
        "{again}"
    );
    let gitignore = std::fs::read_to_string(project.path().join(".gitignore")).unwrap();
    assert_eq!(gitignore, "target/\n.inframock/\n");

    // The written stack runs and loads its example.
    let report = project.start(&[]);
    assert_eq!(report["data"]["total"]["items"], 1, "{report}");
    // `run --json` gives the exports as `env --json` does: one object.
    let env = project.run_json(&["env", "--json"]);
    assert_eq!(report["exports"], env, "{report}");
    assert!(env["AWS_ENDPOINT_URL"]
        .as_str()
        .unwrap()
        .starts_with("http://"));
    // `logs --json` is a stream of JSON lines, one per log line.
    let logs = project.run(&["logs", "--json", "-n", "5"]);
    let lines: Vec<serde_json::Value> = crate::support::text(&logs.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|l| l["line"].is_string()), "{lines:?}");
    assert!(lines.iter().any(|l| l["service"] == "aws"), "{lines:?}");
    // Without the default data folder there is nothing to load: a note, exit 0.
    std::fs::remove_dir_all(project.path().join("data")).unwrap();
    let reload = project.run(&["reload-data"]);
    let stderr = crate::support::text(&reload.stderr);
    assert_eq!(reload.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("no data folder at"), "{stderr}");
    // A named one that is missing stays an error.
    let named = project.run(&["reload-data", "--data", "elsewhere"]);
    assert_eq!(named.status.code(), Some(1));
}

#[test]
fn run_without_a_stack_file_says_it_runs_the_built_in_example() {
    let project = crate::support::Project::new();
    let output = project.start_output(&["--no-populate"]);
    let stderr = crate::support::text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("running the built-in example stack") && stderr.contains("inframock init"),
        "{stderr}"
    );
}

#[test]
fn config_says_where_each_setting_came_from_and_warns_of_an_inherited_region() {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("inframock.toml"),
        "[services.aws]\nport = 4999\n[services.redis]\nport = 6999\n",
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_inframock"));
    for (name, _) in std::env::vars() {
        if name.starts_with("INFRAMOCK_") || name.starts_with("AWS_") || name == "CLUSTER_ENV" {
            command.env_remove(name);
        }
    }
    let output = command
        .current_dir(project.path())
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("INFRAMOCK_REDIS_PORT", "7001")
        .args(["--json", "--cluster-env", "staging", "config"])
        .output()
        .unwrap();
    let stderr = crate::support::text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let json = crate::support::data_of(&output.stdout);
    let setting = |name: &str| {
        let entry = json["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {json}"));
        (
            entry["value"].as_str().unwrap().to_string(),
            entry["from"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(
        setting("region"),
        ("us-east-1".into(), "env AWS_DEFAULT_REGION".into())
    );
    assert_eq!(
        setting("cluster env"),
        ("staging".into(), "flag --cluster-env".into())
    );
    assert_eq!(
        setting("redis port"),
        ("7001".into(), "env INFRAMOCK_REDIS_PORT".into())
    );
    let (port, from) = setting("aws port");
    assert_eq!(port, "4999");
    assert!(
        from.ends_with("inframock.toml: [services.aws] port"),
        "{from}"
    );
    assert_eq!(setting("runtime").1, "default");
    // Text output warns that the inherited region moves the stack.
    let text = Command::new(env!("CARGO_BIN_EXE_inframock"))
        .current_dir(project.path())
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env_remove("INFRAMOCK_JSON")
        .arg("config")
        .output()
        .unwrap();
    let warning = crate::support::text(&text.stderr);
    assert!(
        warning.contains("AWS_DEFAULT_REGION") && warning.contains("eu-west-1"),
        "{warning}"
    );
}

#[test]
fn a_failing_command_with_json_still_prints_its_document_with_the_error_code() {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("inframock.toml"),
        "[[tables]]\nname = 3\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_inframock"))
        .current_dir(project.path())
        .env_remove("INFRAMOCK_JSON")
        .args(["--json", "reload-data"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let document = crate::support::envelope(&output.stdout);
    assert_eq!(document["ok"], false);
    assert_eq!(document["command"], "reload-data");
    assert_eq!(document["error"]["code"], "stack_file", "{document}");
    assert!(
        document["error"]["message"]
            .as_str()
            .unwrap()
            .contains("inframock.toml"),
        "{document}"
    );
    assert!(document["error"]["hint"].is_string());
}
