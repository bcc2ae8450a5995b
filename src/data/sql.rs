//! SQL files of the data folder run against a declared PostgreSQL service (`[[data.rules]]` with
//! `service = "db"`), through `psql`: each file in one transaction, so it applies whole or not at
//! all. A file runs once per database: the record holds its fingerprint and the database's system
//! identifier (new with every `initdb`), so it runs again when its content changes or the database
//! is new (`run --fresh`, a new container), and is skipped otherwise.

use std::sync::Arc;
use std::time::Duration;

use super::discover::Action;
use super::fingerprint::{FingerprintCache, LoadedFiles, LoadedRecord};
use super::load::{source_fingerprint, FileResult, LoadOptions};

/// The longest one SQL file may run.
const SQL_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `action`'s SQL file on the service at `url` unless it already ran there from this content.
pub async fn run_unless_ran(
    action: &Action,
    service: &str,
    url: &str,
    cache: &Arc<FingerprintCache>,
    loaded: &LoadedFiles,
    options: &LoadOptions,
) -> Result<(FileResult, String), String> {
    let fingerprint = source_fingerprint(cache, action, "sql").await?;
    let database = psql(
        url,
        &[
            "--command",
            "SELECT system_identifier FROM pg_control_system()",
        ],
    )
    .await
    .map_err(|e| format!("service {service} at {url}: {e}"))?;
    let endpoint = format!("{url}#{}", database.trim());
    if !options.force
        && loaded
            .matching(&endpoint, service, &action.path, &fingerprint)
            .is_some()
    {
        return Ok((
            FileResult::Unchanged,
            "skipped: it ran on this database from this content".to_string(),
        ));
    }
    if options.dry_run {
        let verdict = if options.force {
            super::load::Verdict::Forced
        } else if loaded.knows(&endpoint, service, &action.path) {
            super::load::Verdict::Changed
        } else {
            super::load::Verdict::New
        };
        return Ok((
            FileResult::WouldWrite { verdict },
            "would run: it did not run on this database from this content".to_string(),
        ));
    }
    loaded.forget(&endpoint, service, &action.path);
    let file = action.path.to_string_lossy().into_owned();
    psql(url, &["--single-transaction", "--file", &file])
        .await
        .map_err(|e| format!("the SQL failed and was rolled back: {e}"))?;
    loaded.mark_loaded(
        &endpoint,
        service,
        &action.path,
        LoadedRecord {
            fingerprint,
            first_key: serde_json::Value::Null,
            last_key: serde_json::Value::Null,
        },
    );
    let why = if options.force {
        "written: --force"
    } else {
        "written: not run on this database from this content before"
    };
    Ok((FileResult::Ran, why.to_string()))
}

/// Runs `psql` against `url` (stops at the first error); its output, or its error text.
async fn psql(url: &str, args: &[&str]) -> Result<String, String> {
    let mut command = tokio::process::Command::new("psql");
    command
        .arg(url)
        .args([
            "--no-psqlrc",
            "--quiet",
            "--tuples-only",
            "--no-align",
            "--set",
            "ON_ERROR_STOP=1",
        ])
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(SQL_TIMEOUT, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            return Err(format!(
                "cannot run psql ({e}); install it with `sudo apt-get install postgresql-client`"
            ))
        }
        Err(_) => return Err(format!("psql took longer than {} s", SQL_TIMEOUT.as_secs())),
    };
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}
