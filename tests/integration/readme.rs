//! The README's examples, run: every ```bash block of README.md, in order, against a stack started
//! from the repository's own `inframock.toml` and `data/` (plus the mock server) on free ports, so no
//! example can rot unnoticed. The README's ports (4566, 8080, 8474, 8088) are replaced by the stack's.
//!
//! Conventions the README follows (said in its Development section):
//! - ```bash blocks are run; ```console blocks show commands that do not end by themselves (`make
//!   run`, `queue tail`) and are not; every other fence is a file format (toml, json, python).
//! - A line ending in `# -> TEXT` promises TEXT in the block's output: the test checks it.
//! - A ```python block whose first line is `# PATH` is that file: it is written into the project
//!   before the shell blocks run.

use std::path::Path;
use std::process::Command;

use crate::support::{self, text};

/// A fenced block of the README.
struct Block {
    /// The fence's info string (`bash`, `toml`, ...).
    language: String,
    /// The line of the README the block starts on (1-based), for failure messages.
    line: usize,
    body: String,
}

/// The fenced blocks of a Markdown text, in order.
fn fenced_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (index, line) in markdown.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    language: info.trim().to_string(),
                    line: index + 1,
                    body: String::new(),
                })
            }
            (Some(_), Some("")) => blocks.extend(open.take()),
            (Some(block), _) => {
                block.body.push_str(line);
                block.body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "README.md ends inside a fenced block");
    blocks
}

/// The texts a block promises in its output (`# -> TEXT` at the end of a line).
fn promised_outputs(body: &str) -> Vec<&str> {
    body.lines()
        .filter_map(|line| {
            line.split_once("# -> ")
                .map(|(_, promised)| promised.trim())
        })
        .collect()
}

#[test]
fn fenced_blocks_are_found_with_their_language_and_promises() {
    let markdown = "text\n```bash\necho hi   # -> hi\n```\n\n```toml\n[a]\n```\n";
    let blocks = fenced_blocks(markdown);
    assert_eq!(blocks.len(), 2);
    assert_eq!((blocks[0].language.as_str(), blocks[0].line), ("bash", 2));
    assert_eq!(promised_outputs(&blocks[0].body), ["hi"]);
    assert_eq!(blocks[1].body, "[a]\n");
}

#[test]
fn every_bash_block_of_the_readme_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let blocks = fenced_blocks(&readme);
    for block in &blocks {
        assert!(
            ["bash", "console", "toml", "json", "python"].contains(&block.language.as_str()),
            "README.md:{}: a ```{} block: use ```bash for a shell example the tests run, ```console for one they cannot (it does not end by itself)",
            block.line,
            block.language
        );
    }
    let runnable: Vec<&Block> = blocks.iter().filter(|b| b.language == "bash").collect();
    assert!(
        runnable.len() >= 4,
        "README.md has {} ```bash blocks; the quick start, the mock, bench and faults examples are expected",
        runnable.len()
    );

    // The repository's stack and data, with the mock server, Redis's fault proxy and the dashboard.
    let project = support::repository_project("");
    for block in blocks.iter().filter(|b| b.language == "python") {
        let first = block.body.lines().next().unwrap_or_default();
        if let Some(file) = first.strip_prefix("# ").filter(|f| f.ends_with(".py")) {
            project.write(file, &block.body);
        }
    }
    // `./target/release/inframock`, as the README calls it from the repository.
    std::fs::create_dir_all(project.path().join("target/release")).expect("mkdir");
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_inframock"),
        project.path().join("target/release/inframock"),
    )
    .expect("symlink");

    let faults_port = project.start_repository_stack();
    let ports = [
        ("4566", project.port_of("aws")),
        ("8080", project.port_of("mock")),
        ("8474", faults_port),
        ("8088", project.port_of("dashboard")),
    ];

    let binary_folder = Path::new(env!("CARGO_BIN_EXE_inframock"))
        .parent()
        .expect("the binary's folder")
        .to_path_buf();
    let path = std::env::join_paths([binary_folder, root.join(".venv/bin")].into_iter().chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");
    for block in runnable {
        let mut script = block.body.clone();
        for (documented, real) in &ports {
            for host in ["localhost:", "127.0.0.1:"] {
                script = script.replace(&format!("{host}{documented}"), &format!("{host}{real}"));
            }
        }
        let project_command = project.command(&[]);
        let mut command = Command::new("timeout");
        command
            .args(["180", "bash", "-euo", "pipefail", "-c", &script])
            .current_dir(project.path())
            .env("PATH", &path);
        for (key, value) in project_command.get_envs() {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        let output = command.output().expect("bash runs");
        let stdout = text(&output.stdout);
        assert!(
            output.status.success(),
            "README.md:{} failed ({}):\n{script}\nstdout: {stdout}\nstderr: {}",
            block.line,
            output.status,
            text(&output.stderr)
        );
        for promised in promised_outputs(&block.body) {
            assert!(
                stdout.contains(promised),
                "README.md:{} promises `{promised}` in its output:\n{stdout}",
                block.line
            );
        }
    }
}
