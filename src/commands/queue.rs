//! `inframock queue tail|messages|bridge|run`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::aws::{AwsClients, Endpoint};
use crate::cli::{QueueAction, QueueArgs};
use crate::config::Settings;
use crate::output::Reporter;
use crate::queues::bridge::Bridge;
use crate::queues::mapper::Mapper;
use crate::queues::record::{self, messages_file, Recorder};
use crate::queues::tail::{self, Mode};
use crate::queues::target::Target;
use crate::queues::worker;
use crate::stack::state;

/// Runs `inframock queue ...`.
pub async fn execute(
    settings: &Settings,
    args: &QueueArgs,
    reporter: &Reporter,
) -> Result<ExitCode> {
    if let QueueAction::Messages { name } = &args.action {
        return print_messages(settings, name);
    }
    let clients = clients(settings).await?;
    match &args.action {
        QueueAction::Tail { name, peek, record } => {
            tail_command(settings, &clients, name, *peek, record.as_deref(), reporter).await
        }
        QueueAction::Bridge {
            from,
            to,
            mapper,
            timeout_ms,
            retry_after,
            max_attempts,
            dead_letter,
            python,
        } => {
            let mapper_file = std::env::current_dir()?.join(mapper);
            if !mapper_file.is_file() {
                bail!("--mapper {}: no such file", mapper.display());
            }
            let source_target = Target::resolve(&clients, from).await.context("--from")?;
            let name = worker::bridge_name(from, to);
            let source =
                tail::prepare(&clients, source_target, &format!("inframock-bridge-{name}")).await?;
            let sandbox = settings.sandbox(python.as_deref())?;
            let mut bridge = Bridge {
                name,
                source,
                to: to.clone(),
                mapper: Mapper::new(sandbox, mapper_file, Duration::from_millis(*timeout_ms)),
                retry_after: *retry_after,
                max_attempts: *max_attempts,
                dead_letter: dead_letter.clone(),
                json: settings.json,
            };
            reporter.info(format!(
                "bridge {}: {} -> {to} through {}; Ctrl-C stops",
                bridge.name,
                bridge.source.target.label(),
                mapper.display()
            ));
            tokio::select! {
                outcome = bridge.run(&clients, None) => { outcome?; }
                _ = crate::signals::stop_requested() => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        QueueAction::Run => {
            if !worker::any_declared(settings) {
                bail!(
                    "{} declares no [[tails]] or [[bridges]]",
                    settings.stack_origin
                );
            }
            worker::run(settings, clients).await?;
            Ok(ExitCode::SUCCESS)
        }
        QueueAction::Messages { .. } => Ok(ExitCode::SUCCESS),
    }
}

/// SDK clients for the running stack's aws service (or --endpoint-url).
async fn clients(settings: &Settings) -> Result<AwsClients> {
    let recorded = state::read(&settings.state_dir())?;
    let endpoint = Endpoint::resolve(settings, recorded.as_ref())?;
    endpoint.check_credentials().await?;
    Ok(endpoint.clients().await)
}

async fn tail_command(
    settings: &Settings,
    clients: &AwsClients,
    name: &str,
    peek: bool,
    record: Option<&str>,
    reporter: &Reporter,
) -> Result<ExitCode> {
    let target = Target::resolve(clients, name).await?;
    if peek && matches!(target, Target::Topic { .. }) {
        bail!("--peek applies to queues; a topic tail never takes messages from the topic's subscribers");
    }
    let mode = if peek { Mode::Peek } else { Mode::Consume };
    let queue_name = format!("inframock-tail-{}", std::process::id());
    let source = tail::prepare(clients, target, &queue_name).await?;
    let file = record.map(|n| messages_file(&settings.state_dir(), n));
    let mut recorder = Recorder::new(file.clone(), settings.json, true)?;
    let how = match (&source.target, mode) {
        (Target::Topic { .. }, _) => "through a queue subscribed to it",
        (_, Mode::Peek) => "peeking (messages are left for other consumers)",
        (_, Mode::Consume) => "consuming (use --peek to leave messages for other consumers)",
    };
    reporter.info(format!(
        "tailing {} {how}{}; Ctrl-C stops",
        source.target.label(),
        file.map(|f| format!(", recording to {}", f.display()))
            .unwrap_or_default()
    ));
    let outcome = tokio::select! {
        outcome = tail::run(clients, &source, &mut recorder, mode) => outcome,
        _ = crate::signals::stop_requested() => Ok(()),
    };
    tail::remove(clients, &source).await;
    outcome?;
    Ok(ExitCode::SUCCESS)
}

fn print_messages(settings: &Settings, name: &str) -> Result<ExitCode> {
    let path = messages_file(&settings.state_dir(), name);
    if !path.is_file() {
        let known: Vec<String> = std::fs::read_dir(record::messages_dir(&settings.state_dir()))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()?
                            .strip_suffix(".jsonl")
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        bail!(
            "no messages recorded for `{name}` ({} does not exist); recorded: {}",
            path.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    }
    let messages = record::read_file(&path)?;
    if settings.json {
        crate::output::print_json(serde_json::json!({"messages": messages}));
    } else {
        for message in &messages {
            outln!("{}", record::human_line(message));
        }
    }
    Ok(ExitCode::SUCCESS)
}
