//! The version of a running service, for `status`: read the way its kind says (a health route,
//! the Python package beside its program, the program's `--version`), or the image tag of its
//! container.

use std::time::Duration;

use super::catalog::{ServiceKind, VersionSpec};
use super::runtime::docker::split_image;
use super::runtime::local::find_program;
use super::state::ServiceRecord;
use crate::cli::RuntimeKind;
use crate::config::Settings;

/// The version of `record`'s service, or `None` when it cannot be told (never an error: `status`
/// shows what it knows).
pub async fn of_service(
    settings: &Settings,
    record: &ServiceRecord,
    kind: &ServiceKind,
) -> Option<String> {
    if let (RuntimeKind::Docker, Some(image)) = (record.runtime, &record.program) {
        if !matches!(kind.version, VersionSpec::HttpJson { .. }) {
            return Some(format!("image {}", split_image(image).1));
        }
    }
    match &kind.version {
        VersionSpec::HttpJson { path, field } => {
            let answer = crate::http_client::get_json(&record.url, "", path)
                .await
                .ok()?;
            answer.get(field)?.as_str().map(str::to_string)
        }
        VersionSpec::PythonPackage(package) => {
            let program = find_program(
                &record.name,
                settings.service(&record.name),
                &settings.project_dir,
            )
            .ok()?;
            let python = program.parent()?.join("python3");
            let code = format!("import importlib.metadata as m; print(m.version({package:?}))");
            first_line(&python, &["-c", &code]).await
        }
        VersionSpec::ProgramFlag(flag) => {
            let program = find_program(
                &record.name,
                settings.service(&record.name),
                &settings.project_dir,
            )
            .ok()?;
            first_line(&program, &[flag.as_str()]).await
        }
        VersionSpec::Unknown => None,
    }
}

/// The first line a command prints (stdout, else stderr) within 5 s.
async fn first_line(program: &std::path::Path, args: &[&str]) -> Option<String> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(5), command.output())
        .await
        .ok()?
        .ok()?;
    let text = if output.stdout.is_empty() {
        output.stderr
    } else {
        output.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
}
