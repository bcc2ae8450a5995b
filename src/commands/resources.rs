//! `inframock resources`: every declared resource with its live counts and how it differs from
//! inframock.toml (read-only).

use std::process::ExitCode;

use anyhow::Result;

use crate::aws::Endpoint;
use crate::config::Settings;
use crate::inventory::{inspect_all, Counting, Inventory};
use crate::output::{column_width, human_bytes};
use crate::stack::state;

/// Prints the inventory of the running stack (or of `--runtime external`'s endpoint).
pub async fn execute(settings: &Settings) -> Result<ExitCode> {
    let recorded = state::read(&settings.state_dir())?;
    let endpoint = Endpoint::resolve(settings, recorded.as_ref())?;
    endpoint.check_credentials().await?;
    let clients = endpoint.clients().await;
    let runtime = recorded.as_ref().map_or(settings.runtime, |r| r.runtime);
    let inventory = inspect_all(
        &clients,
        &settings.stack,
        &settings.resource_vars(runtime),
        Counting::Exact,
    )
    .await;
    let drifted = inventory.iter().filter(|i| !i.drift.is_empty()).count();
    if settings.json {
        crate::output::print_json(
            serde_json::json!({"endpoint": clients.url, "resources": inventory, "drifted": drifted}),
        );
        return Ok(ExitCode::SUCCESS);
    }
    let counts: Vec<String> = inventory.iter().map(counts_text).collect();
    let kind_width = column_width(inventory.iter().map(|i| i.kind), 4);
    let name_width = column_width(inventory.iter().map(|i| i.name.as_str()), 4);
    let counts_width = column_width(counts.iter().map(String::as_str), 6);
    outln!(
        "{:<kind_width$}  {:<name_width$}  {:<counts_width$}  STATE",
        "KIND",
        "NAME",
        "COUNTS"
    );
    for (item, counts) in inventory.iter().zip(&counts) {
        let state = match (&item.error, item.drift.is_empty()) {
            (Some(error), _) => format!("cannot inspect: {error}"),
            (None, true) => "as declared".to_string(),
            (None, false) => item.drift.join("; "),
        };
        outln!(
            "{:<kind_width$}  {:<name_width$}  {:<counts_width$}  {state}",
            item.kind,
            item.name,
            counts
        );
    }
    if drifted > 0 {
        outln!();
        outln!(
            "{drifted} resource(s) differ from {}",
            settings.stack_origin
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `12 items`, `3 objects, 1.2 MiB`, `4 visible, 1 in flight`, `2 subscriptions`; `-` when the
/// resource is missing.
fn counts_text(item: &Inventory) -> String {
    if !item.exists {
        return "-".to_string();
    }
    let count = |name: &str| item.counts.get(name).copied().unwrap_or(0);
    match item.kind {
        "table" => format!("{} items", count("items")),
        "bucket" => format!(
            "{} objects, {}",
            count("objects"),
            human_bytes(count("bytes"))
        ),
        "queue" => format!(
            "{} visible, {} in flight",
            count("visible"),
            count("in_flight")
        ),
        "topic" => format!("{} subscriptions", count("subscriptions")),
        _ => String::new(),
    }
}
