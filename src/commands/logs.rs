//! `inframock logs [service] [-f]`: each service's log, through the runtime that runs it (a process's
//! log file, a container's output).

use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::cli::LogsArgs;
use crate::config::Settings;
use crate::stack::runtime::{self, local::print_log_file, LogPrinter};
use crate::stack::{state, ServiceName};

/// Prints the last lines of each chosen service's log; with `--follow`, keeps printing.
pub async fn execute(settings: &Settings, args: &LogsArgs) -> Result<ExitCode> {
    let known: Vec<ServiceName> = settings.services.keys().cloned().collect();
    let services: Vec<ServiceName> = match &args.service {
        Some(name) => vec![known
            .iter()
            .find(|s| s.as_str() == name)
            .cloned()
            .with_context(|| {
                format!(
                    "unknown service `{name}`; choose one of: {}",
                    known
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?],
        None => known,
    };
    let prefix = services.len() > 1;
    let Some(stack) = state::read(&settings.state_dir())? else {
        // No stack runs: the log files of the last one are still there.
        return print_files(settings, &services, args, prefix).await;
    };
    let mut streams = Vec::new();
    for service in &services {
        let Some(record) = stack.service(service).cloned() else {
            continue;
        };
        let runtime = runtime::of_recorded(record.runtime, &stack.project).await?;
        let printer = LogPrinter {
            service: service.as_str(),
            prefix,
            json: settings.json,
        };
        streams.push(async move {
            runtime
                .logs(&record, args.lines, args.follow, printer)
                .await
        });
    }
    if streams.is_empty() {
        return print_files(settings, &services, args, prefix).await;
    }
    print_until_ctrl_c(streams).await
}

/// Runs the printers together until they end (or Ctrl-C while following); the first error wins.
async fn print_until_ctrl_c(
    printers: impl IntoIterator<Item = impl std::future::Future<Output = Result<()>>>,
) -> Result<ExitCode> {
    let outcomes = tokio::select! {
        outcomes = futures::future::join_all(printers) => outcomes,
        _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
    };
    for outcome in outcomes {
        outcome?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The log files left in `.inframock/logs/` (no stack recorded).
async fn print_files(
    settings: &Settings,
    services: &[ServiceName],
    args: &LogsArgs,
    prefix: bool,
) -> Result<ExitCode> {
    let log_dir = settings.state_dir().join("logs");
    let paths: Vec<_> = services
        .iter()
        .map(|s| (s, log_dir.join(format!("{s}.log"))))
        .filter(|(_, p)| p.is_file())
        .collect();
    if paths.is_empty() {
        bail!(
            "no log found in {} (the local runtime writes one per service once `inframock run` started it)",
            log_dir.display()
        );
    }
    print_until_ctrl_c(paths.iter().map(|(service, path)| {
        let printer = LogPrinter {
            service: service.as_str(),
            prefix,
            json: settings.json,
        };
        print_log_file(path, args.lines, args.follow, printer)
    }))
    .await
}
