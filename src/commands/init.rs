//! `inframock init`: the files of a new project — a commented `inframock.toml` (a minimal example,
//! or the Biomage stack built into the binary), `data/` with an example experiment, `mocks/` with an
//! example expectation, and `.inframock/` in `.gitignore`. Nothing that exists is overwritten
//! unless `--force` (and `.gitignore` is only ever appended to).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::{InitArgs, InitExample};

/// The minimal example stack file.
const MINIMAL: &str = include_str!("../examples/minimal.toml");
/// The minimal example's data: one item for its table.
const EXAMPLE_ITEM: &str = "{\"id\": \"1\", \"name\": \"an example item\"}\n";
/// An example expectation for the mock server.
const EXAMPLE_EXPECTATION: &str =
    "{\"path\": \"/hello\", \"status_code\": 200, \"body\": {\"hello\": \"world\"}}\n";

/// What `init` did with one file.
#[derive(Debug, Serialize)]
struct Step {
    path: PathBuf,
    /// `wrote`, `kept` (it exists) or `appended`.
    done: &'static str,
}

/// Writes the project files into `project_dir`.
pub fn execute(project_dir: &Path, args: &InitArgs, json: bool) -> Result<ExitCode> {
    std::fs::create_dir_all(project_dir)
        .with_context(|| format!("cannot create the project folder {}", project_dir.display()))?;
    let stack = match args.example {
        InitExample::Minimal => MINIMAL,
        InitExample::Biomage => crate::stack_file::BUILT_IN,
    };
    let mut steps = vec![write(
        &project_dir.join("inframock.toml"),
        stack,
        args.force,
    )?];
    let data = project_dir.join("data");
    match args.example {
        InitExample::Minimal => steps.push(write(
            &data.join("example").join("item.json"),
            EXAMPLE_ITEM,
            args.force,
        )?),
        InitExample::Biomage => steps.push(folder(&data)?),
    }
    steps.push(write(
        &project_dir.join("mocks").join("hello.json"),
        EXAMPLE_EXPECTATION,
        args.force,
    )?);
    steps.push(ignore_state(&project_dir.join(".gitignore"))?);
    if json {
        crate::output::print_json(serde_json::json!({"project": project_dir, "files": steps}));
    } else {
        for step in &steps {
            outln!("{:<8} {}", step.done, step.path.display());
        }
        outln!();
        outln!("Next: `inframock run` starts the stack and loads data/; edit inframock.toml to declare yours.");
    }
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, contents: &str, force: bool) -> Result<Step> {
    if path.exists() && !force {
        return Ok(Step {
            path: path.to_path_buf(),
            done: "kept",
        });
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Step {
        path: path.to_path_buf(),
        done: "wrote",
    })
}

fn folder(path: &Path) -> Result<Step> {
    let existed = path.is_dir();
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(Step {
        path: path.to_path_buf(),
        done: if existed { "kept" } else { "wrote" },
    })
}

/// Adds `.inframock/` (the project's state: PIDs, logs, records) to `.gitignore` unless a line
/// already ignores it.
fn ignore_state(path: &Path) -> Result<Step> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let ignored = existing.lines().map(str::trim).any(|line| {
        matches!(
            line,
            ".inframock" | ".inframock/" | "/.inframock" | "/.inframock/"
        )
    });
    if ignored {
        return Ok(Step {
            path: path.to_path_buf(),
            done: "kept",
        });
    }
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(".inframock/\n");
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Step {
        path: path.to_path_buf(),
        done: "appended",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimal_example_is_a_valid_stack_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inframock.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        let stack = crate::stack_file::StackFile::load(&path).unwrap();
        assert_eq!(stack.tables.len(), 1);
        assert_eq!(stack.data.rules.len(), 2);
    }

    #[test]
    fn gitignore_gets_the_state_folder_once_and_keeps_its_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".gitignore");
        std::fs::write(&path, "target").unwrap();
        assert_eq!(ignore_state(&path).unwrap().done, "appended");
        assert_eq!(ignore_state(&path).unwrap().done, "kept");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "target\n.inframock/\n"
        );
    }
}
