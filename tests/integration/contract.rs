//! The CLI as a contract, pinned by snapshots under `tests/snapshots/`: every command's `--help`
//! text, and the shape of every command's `--json` document (its keys and the type of each value,
//! on success and on failure). A change to either fails here until the snapshot is renewed on
//! purpose: `INFRAMOCK_UPDATE_SNAPSHOTS=1 cargo test --release --test integration contract::`,
//! then the diff of `tests/snapshots/` shows what scripts and users will see change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::support::{envelope, text, Project};

/// Where the snapshots live.
fn snapshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots")
}

/// Compares `actual` with the snapshot file (or writes it when `INFRAMOCK_UPDATE_SNAPSHOTS` is set).
/// Returns a description of the difference, if any, so one test can report every changed file.
fn compare_snapshot(relative: &str, actual: &str) -> Option<String> {
    let path = snapshots().join(relative);
    if std::env::var_os("INFRAMOCK_UPDATE_SNAPSHOTS").is_some_and(|v| !v.is_empty()) {
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("mkdir");
        std::fs::write(&path, actual).expect("write snapshot");
        return None;
    }
    let Ok(expected) = std::fs::read_to_string(&path) else {
        return Some(format!("{relative}: no snapshot yet:\n{actual}"));
    };
    if expected == actual {
        return None;
    }
    let expected_lines: Vec<&str> = expected.lines().collect();
    let actual_lines: Vec<&str> = actual.lines().collect();
    let first = (0..expected_lines.len().max(actual_lines.len()))
        .find(|&i| expected_lines.get(i) != actual_lines.get(i))
        .unwrap_or(0);
    Some(format!(
        "{relative}: differs from line {}:\n  snapshot: {:?}\n  now:      {:?}",
        first + 1,
        expected_lines.get(first).unwrap_or(&"<end>"),
        actual_lines.get(first).unwrap_or(&"<end>")
    ))
}

/// Fails with every difference found, and how to accept them.
fn assert_no_differences(differences: Vec<String>) {
    assert!(
        differences.is_empty(),
        "{}\n\nIf the change is meant, renew the snapshots: INFRAMOCK_UPDATE_SNAPSHOTS=1 cargo test --release --test integration contract::",
        differences.join("\n\n")
    );
}

/// `inframock ARGS` with an environment that holds nothing of the user's (clap prints the values of
/// variables in help texts).
fn bare_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_inframock"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    command
}

/// The subcommand names listed under `Commands:` of a help text (`help` left out).
fn listed_subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_command_help_matches_its_snapshot() {
    let mut pending = vec![Vec::<String>::new()];
    let mut differences = Vec::new();
    let mut seen = 0;
    while let Some(path) = pending.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let output = bare_command(&args).output().expect("inframock runs");
        assert!(output.status.success(), "inframock {args:?}");
        let help = text(&output.stdout);
        for name in listed_subcommands(&help) {
            let mut child = path.clone();
            child.push(name);
            pending.push(child);
        }
        let name = std::iter::once("inframock")
            .chain(path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("-");
        differences.extend(compare_snapshot(&format!("help/{name}.txt"), &help));
        seen += 1;
    }
    assert!(seen >= 20, "only {seen} commands found in the help texts");
    assert_no_differences(differences);
}

/// The shape of a JSON value: objects keep their keys (sorted), every other value becomes the
/// name of its type; an array becomes the merged shape of its elements.
fn shape(value: &Value) -> Value {
    match value {
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
        Value::Array(items) => {
            let merged = items.iter().map(shape).reduce(merge_shapes);
            Value::Array(merged.into_iter().collect())
        }
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, value)| (key.clone(), shape(value)))
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect(),
        ),
    }
}

/// One shape standing for both: objects merge key by key, differing types become `a|b`.
fn merge_shapes(a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Object(mut left), Value::Object(right)) => {
            for (key, value) in right {
                let merged = match left.remove(&key) {
                    Some(existing) => merge_shapes(existing, value),
                    None => value,
                };
                left.insert(key, merged);
            }
            let sorted: BTreeMap<_, _> = left.into_iter().collect();
            Value::Object(sorted.into_iter().collect())
        }
        (Value::Array(left), Value::Array(right)) => Value::Array(
            left.into_iter()
                .chain(right)
                .reduce(merge_shapes)
                .into_iter()
                .collect(),
        ),
        (a, b) if a == b => a,
        (a, b) => {
            let mut names: Vec<String> = [a, b]
                .iter()
                .flat_map(|s| {
                    s.as_str()
                        .map(|s| s.split('|').map(str::to_string).collect())
                        .unwrap_or_else(|| vec![s.to_string()])
                })
                .collect();
            names.sort();
            names.dedup();
            json!(names.join("|"))
        }
    }
}

#[test]
fn shapes_keep_keys_and_types_and_merge_array_elements() {
    let value = json!({"b": [{"x": 1}, {"y": "s"}, {"x": null}], "a": true, "c": []});
    assert_eq!(
        shape(&value),
        json!({"a": "bool", "b": [{"x": "null|number", "y": "string"}], "c": []})
    );
}

#[test]
fn every_command_json_document_keeps_its_shape() {
    let project = Project::new();
    let mut shapes = BTreeMap::new();
    let mut record = |label: &str, args: &[&str], exit: i32| {
        let output = project.run(args);
        assert_eq!(
            output.status.code(),
            Some(exit),
            "inframock {args:?}: stderr {}",
            text(&output.stderr)
        );
        shapes.insert(label.to_string(), shape(&envelope(&output.stdout)));
    };
    record("init", &["init", "--json"], 0);
    // The example project, with the mock server and a fault proxy in front of Redis.
    let stack = std::fs::read_to_string(project.path().join("inframock.toml")).expect("toml");
    let redis = "[services.redis]\n";
    assert!(stack.contains(redis), "{stack}");
    project.write(
        "inframock.toml",
        stack.replace(redis, "[services.redis]\nfaults = true\n")
            + "\n[services.mock]\nenabled = true\n",
    );
    record("config", &["config", "--json"], 0);
    record("status (nothing runs)", &["status", "--json"], 4);
    let faults_port = crate::support::free_port().to_string();
    let mut start = crate::support::start_args(&["--mock-port", "0", "--faults-port"]);
    start.push(&faults_port);
    record("run --detach", &start, 0);
    record("status", &["status", "--json"], 0);
    record("wait", &["wait", "--json", "--timeout", "30"], 0);
    record("env", &["env", "--json"], 0);
    record("resources", &["resources", "--json"], 0);
    record(
        "reload-data --dry-run",
        &["reload-data", "--dry-run", "--json"],
        0,
    );
    record("reload-data", &["reload-data", "--json"], 0);
    record(
        "reload-data (missing experiment)",
        &["reload-data", "--json", "--experiment", "nope"],
        1,
    );
    record("mock expectations", &["mock", "expectations", "--json"], 0);
    record("mock requests", &["mock", "requests", "--json"], 0);
    record("faults status", &["faults", "status", "--json"], 0);
    record(
        "faults hiccup",
        &["faults", "hiccup", "--msecs", "0", "--json"],
        0,
    );
    let mock_url = project.service("mock")["url"]
        .as_str()
        .expect("mock URL")
        .to_string();
    record(
        "bench",
        &[
            "bench",
            &format!("{mock_url}/mocker/expectations"),
            "--concurrency",
            "1",
            "--requests",
            "20",
            "--json",
        ],
        0,
    );
    record("snapshot save", &["snapshot", "save", "one", "--json"], 0);
    record("snapshot list", &["snapshot", "list", "--json"], 0);
    record(
        "snapshot diff",
        &["snapshot", "diff", "one", "one", "--json"],
        0,
    );
    record("snapshot load", &["snapshot", "load", "one", "--json"], 0);
    record(
        "snapshot load (no such snapshot)",
        &["snapshot", "load", "nope", "--json"],
        1,
    );
    let archive = project.path().join("one.tar.zst");
    let archive = archive.to_str().expect("UTF-8 path");
    record(
        "snapshot export",
        &["snapshot", "export", "one", archive, "--json"],
        0,
    );
    record(
        "snapshot import",
        &["snapshot", "import", archive, "--name", "two", "--json"],
        0,
    );
    record("snapshot rm", &["snapshot", "rm", "two", "--json"], 0);
    record("reset", &["reset", "--no-data", "--json"], 0);
    record("stop", &["stop", "--json"], 0);
    project.write("inframock.toml", "[[tables]]\nname = 1\n");
    record("run (invalid stack file)", &["run", "--json"], 1);

    let document = serde_json::to_string_pretty(&shapes).expect("JSON") + "\n";
    assert_no_differences(
        compare_snapshot("json-shapes.json", &document)
            .into_iter()
            .collect(),
    );
}
