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
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "INFRAMOCK_JSON={yes}: {e}: {}",
                crate::support::text(&output.stdout)
            )
        });
        assert_eq!(json["running"], false);
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
