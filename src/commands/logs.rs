//! `inframock logs [service] [-f]`: the log files of the local runtime's processes.

use std::io::{Read, Seek, SeekFrom, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cli::LogsArgs;
use crate::config::Settings;
use crate::stack::local::last_lines;
use crate::stack::ServiceName;

/// Prints the last lines of each chosen service's log; with `--follow`, keeps printing.
pub async fn execute(settings: &Settings, args: &LogsArgs) -> Result<ExitCode> {
    let services: Vec<ServiceName> = match &args.service {
        Some(name) => vec![ServiceName::parse(name).with_context(|| {
            format!("unknown service `{name}`; choose one of: aws, redis, mock, faults")
        })?],
        None => ServiceName::EVERY.to_vec(),
    };
    if let Some(stack) = crate::stack::state::read(&settings.state_dir())? {
        // Containers print through the engine; our own helpers (mock, faults, queues) are
        // processes with log files in every runtime.
        let in_containers = services
            .iter()
            .any(|s| stack.service(*s).is_some_and(|r| r.container.is_some()));
        if stack.runtime == crate::cli::RuntimeKind::Docker && in_containers {
            return docker_logs(&stack, &services, args).await;
        }
    }
    let log_dir = settings.state_dir().join("logs");
    let paths: Vec<_> = services
        .iter()
        .map(|s| (*s, log_dir.join(format!("{s}.log"))))
        .filter(|(_, p)| p.is_file())
        .collect();
    if paths.is_empty() {
        bail!(
            "no log found in {} (the local runtime writes one per service once `inframock run` started it)",
            log_dir.display()
        );
    }
    let prefix = paths.len() > 1;
    let mut offsets = Vec::new();
    for (service, path) in &paths {
        for line in last_lines(path, args.lines) {
            print_line(prefix, *service, &line);
        }
        offsets.push(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0));
    }
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        for ((service, path), offset) in paths.iter().zip(offsets.iter_mut()) {
            let Ok(mut file) = std::fs::File::open(path) else {
                continue;
            };
            let length = file.metadata().map(|m| m.len()).unwrap_or(0);
            if length < *offset {
                *offset = 0; // the log was recreated by a new `run`
            }
            if length > *offset && file.seek(SeekFrom::Start(*offset)).is_ok() {
                let mut chunk = String::new();
                if file.read_to_string(&mut chunk).is_ok() {
                    for line in chunk.lines() {
                        print_line(prefix, *service, line);
                    }
                    *offset = length;
                }
            }
        }
        let _ = std::io::stdout().flush();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

fn print_line(prefix: bool, service: ServiceName, line: &str) {
    if prefix {
        println!("{:<5} | {line}", service.as_str());
    } else {
        println!("{line}");
    }
}

/// Logs of the docker runtime's containers (followed together with `-f`).
async fn docker_logs(
    stack: &crate::stack::state::StackState,
    services: &[ServiceName],
    args: &LogsArgs,
) -> Result<ExitCode> {
    let docker = crate::stack::docker::DockerRuntime::connect(&stack.project)
        .await
        .map_err(|e| anyhow::anyhow!("no Docker engine answers ({e}); start Docker"))?;
    let prefix = services.len() > 1;
    let streams = services.iter().filter_map(|service| {
        let id = stack.service(*service)?.container.clone()?;
        let docker = docker.clone();
        let label = prefix.then(|| service.as_str());
        Some(async move { docker.print_logs(&id, args.lines, args.follow, label).await })
    });
    let outcomes = tokio::select! {
        outcomes = futures::future::join_all(streams) => outcomes,
        _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
    };
    for outcome in outcomes {
        outcome?;
    }
    Ok(ExitCode::SUCCESS)
}
