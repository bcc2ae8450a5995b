//! The tails and bridges declared in inframock.toml, run together: what `inframock run` starts as
//! its `queues` process (`inframock queue run`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::bridge::{Bridge, DEFAULT_MAPPER_TIMEOUT, DEFAULT_RETRY_AFTER};
use super::mapper::Mapper;
use super::record::{messages_file, Recorder};
use super::tail::{self, Mode, TailSource};
use super::target::Target;
use crate::aws::AwsClients;
use crate::config::Settings;

/// A declared tail, ready to read.
pub struct PreparedTail {
    pub name: String,
    pub source: TailSource,
    pub mode: Mode,
}

/// Whether the stack file declares tails or bridges.
pub fn any_declared(settings: &Settings) -> bool {
    !settings.stack.tails.is_empty() || !settings.stack.bridges.is_empty()
}

/// Resolves every declared tail and bridge source and creates the queues/subscriptions topics need
/// (idempotent), so messages published from now on are kept even before the worker reads them.
pub async fn prepare(
    settings: &Settings,
    clients: &AwsClients,
) -> Result<(Vec<PreparedTail>, Vec<Bridge>)> {
    let vars = settings.name_vars();
    let mut tails = Vec::new();
    for decl in &settings.stack.tails {
        let (name, mode) = match (&decl.queue, &decl.topic) {
            (Some(queue), None) => (
                vars.expand(queue),
                if decl.peek { Mode::Peek } else { Mode::Consume },
            ),
            (None, Some(topic)) => (vars.expand(topic), Mode::Consume),
            _ => bail!(
                "[[tails]] {}: give exactly one of `queue` or `topic`",
                decl.name
            ),
        };
        let target = Target::resolve(clients, &name)
            .await
            .with_context(|| format!("[[tails]] {}", decl.name))?;
        let source =
            tail::prepare(clients, target, &format!("inframock-tail-{}", decl.name)).await?;
        tails.push(PreparedTail {
            name: decl.name.clone(),
            source,
            mode,
        });
    }
    let mut bridges = Vec::new();
    for decl in &settings.stack.bridges {
        let from = vars.expand(&decl.from);
        let to = vars.expand(&decl.to);
        let name = decl.name.clone().unwrap_or_else(|| bridge_name(&from, &to));
        let mapper_file = crate::python::file_inside(
            &settings.project_dir,
            &decl.mapper.to_string_lossy(),
            &format!("[[bridges]] {name}: mapper"),
        )
        .map_err(anyhow::Error::msg)?;
        let target = Target::resolve(clients, &from)
            .await
            .with_context(|| format!("[[bridges]] {name}: `from`"))?;
        let source = tail::prepare(clients, target, &format!("inframock-bridge-{name}")).await?;
        let sandbox = settings.sandbox(None)?;
        let timeout = decl
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_MAPPER_TIMEOUT);
        bridges.push(Bridge {
            name,
            source,
            to,
            mapper: Mapper::new(sandbox, mapper_file, timeout),
            retry_after: decl.retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
            max_attempts: decl
                .max_attempts
                .unwrap_or(super::bridge::DEFAULT_MAX_ATTEMPTS)
                .max(1),
            dead_letter: decl.dead_letter.as_ref().map(|q| vars.expand(q)),
            json: true,
        });
    }
    Ok((tails, bridges))
}

/// A bridge's default name: `<from>-to-<to>` with only name-safe characters.
pub fn bridge_name(from: &str, to: &str) -> String {
    format!("{from}-to-{to}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Runs every declared tail and bridge until the process is stopped. A failing one is reported
/// and started again after a pause; the others go on.
pub async fn run(settings: &Settings, clients: AwsClients) -> Result<()> {
    let (tails, bridges) = prepare(settings, &clients).await?;
    let state_dir = settings.state_dir();
    let mut tasks = Vec::new();
    for tail in tails {
        let clients = clients.clone();
        let file: PathBuf = messages_file(&state_dir, &tail.name);
        eprintln!(
            "tail {}: recording {} to {}",
            tail.name,
            tail.source.target.label(),
            file.display()
        );
        let mut recorder = Recorder::new(Some(file), true, false)?;
        tasks.push(tokio::spawn(async move {
            loop {
                if let Err(e) = tail::run(&clients, &tail.source, &mut recorder, tail.mode).await {
                    eprintln!("tail {}: {e:#}; trying again in 1 s", tail.name);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }));
    }
    for mut bridge in bridges {
        let clients = clients.clone();
        eprintln!(
            "bridge {}: {} -> {} through {}",
            bridge.name,
            bridge.source.target.label(),
            bridge.to,
            bridge.mapper.file().display()
        );
        tasks.push(tokio::spawn(async move {
            loop {
                if let Err(e) = bridge.run(&clients, None).await {
                    eprintln!("bridge {}: {e:#}; trying again in 1 s", bridge.name);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }));
    }
    crate::signals::stop_requested().await;
    for task in tasks {
        task.abort();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn bridge_names_are_name_safe() {
        assert_eq!(
            super::bridge_name("in.fifo", "out topic"),
            "in-fifo-to-out-topic"
        );
    }
}
