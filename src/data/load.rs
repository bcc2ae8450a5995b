//! Applying a `LoadPlan`: JSON files become DynamoDB items (BatchWriteItem, 25 at a time, retrying
//! unprocessed items), other files become S3 objects (streamed; skipped when the fingerprint stored
//! on the object matches the source). Files load concurrently; one bad file never stops the others.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use futures::stream::{self, StreamExt};
use serde::Serialize;

use super::discover::{Action, LoadPlan, PlannedTarget};
use super::dynamo_json::{key_as_typed_json, key_of, parse_items, Item, JsonFormat};
use super::fingerprint::{FingerprintCache, LoadedFiles, LoadedRecord, METADATA_KEY};
use super::partitions::NewPartitions;
use super::presence::{self, Candidate};
use super::s3_upload::{upload, UploadLimits, UploadRequest};
use super::validate::{validate_items, ScalarType, TableKey};
use crate::aws::{describe_error, error_code, AwsClients};

/// Items per BatchWriteItem call (the DynamoDB maximum).
pub const BATCH_SIZE: usize = 25;
/// Files loaded at once.
pub const FILES_AT_ONCE: usize = 16;
/// Batches of one file written at once.
const BATCHES_AT_ONCE: usize = 4;
/// Attempts to write unprocessed items before giving up.
const BATCH_ATTEMPTS: u32 = 10;

/// Options of one load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Write everything, even what is proven to be there already.
    pub force: bool,
    /// Tables created by this command: their files are written whatever the record says.
    pub created_tables: BTreeSet<String>,
    /// The running declared services, name → URL (targets of SQL rules).
    pub services: BTreeMap<String, String>,
    /// `--dry-run`: decide every file as the load would (read-only questions to the endpoint,
    /// local validation) and write nothing, locally or remotely.
    pub dry_run: bool,
}

/// What a load would do with a file it would write (`--dry-run`).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Never loaded there: the object or the table (or the table itself) is not there yet.
    New,
    /// Loaded before from other content.
    Changed,
    /// Loaded from this content, but its items are gone from the table (reset, deleted).
    Missing,
    /// `--force`.
    Forced,
}

impl Verdict {
    /// The word of the dry-run listing.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::New => "new",
            Verdict::Changed => "changed",
            Verdict::Missing => "missing",
            Verdict::Forced => "forced",
        }
    }
}

/// Why a table cannot take a file.
#[derive(Debug, Clone)]
pub struct TableProblem {
    /// The table does not exist (the run or reset would create it first).
    pub missing: bool,
    pub message: String,
}

/// What loading one file did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum FileResult {
    /// Items stored in a table (distinct keys: a key repeated in the file is stored once, the last).
    Items { count: usize, format: JsonFormat },
    /// An object written (bytes sent).
    Uploaded { bytes: u64 },
    /// The object already holds this source, or the SQL already ran on this database: nothing sent.
    Unchanged,
    /// An SQL file ran, whole, in one transaction.
    Ran,
    /// The file could not be loaded; nothing of it was written.
    Failed { error: String },
    /// `--dry-run`: the load would write this file.
    WouldWrite { verdict: Verdict },
    /// `--dry-run`: the load would refuse this file (it does not validate, cannot be read).
    WouldFail { error: String },
}

/// One file's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct FileOutcome {
    pub experiment: String,
    pub file: String,
    pub target: String,
    #[serde(flatten)]
    pub result: FileResult,
    /// Why the file was written or skipped.
    pub why: String,
}

/// Receives each file's outcome as it finishes (progress bars, plain lines).
pub trait LoadObserver: Sync {
    fn file_done(&self, outcome: &FileOutcome);
}

/// Each table's key (attributes and declared types), or why the table cannot be used.
pub async fn table_keys(
    clients: &AwsClients,
    tables: &[String],
) -> HashMap<String, Result<TableKey, TableProblem>> {
    let lookups = tables.iter().map(|table| async move {
        let described = clients.dynamodb.describe_table().table_name(table).send().await;
        let keys = match described {
            Ok(output) => {
                let table_description = output.table.unwrap_or_else(|| {
                    aws_sdk_dynamodb::types::TableDescription::builder().build()
                });
                let types: HashMap<String, ScalarType> = table_description
                    .attribute_definitions()
                    .iter()
                    .filter_map(|d| {
                        Some((
                            d.attribute_name().to_string(),
                            ScalarType::parse(d.attribute_type().as_str())?,
                        ))
                    })
                    .collect();
                let mut schema = table_description.key_schema().to_vec();
                // HASH first, then RANGE.
                schema.sort_by_key(|k| k.key_type.as_str() != "HASH");
                schema
                    .iter()
                    .map(|k| {
                        let name = k.attribute_name().to_string();
                        let declared = types.get(&name).copied().ok_or_else(|| {
                            format!("table {table}: key attribute `{name}` has no declared type")
                        })?;
                        Ok((name, declared))
                    })
                    .collect::<Result<Vec<_>, String>>()
                    .map(|attributes| TableKey { attributes })
                    .map_err(|message| TableProblem { missing: false, message })
            }
            Err(e) if error_code(&e).as_deref() == Some("ResourceNotFoundException") => Err(TableProblem {
                missing: true,
                message: format!(
                    "table {table} does not exist; declare it under [[tables]] in inframock.toml (`inframock run` creates it)"
                ),
            }),
            Err(e) => Err(TableProblem {
                missing: false,
                message: format!("table {table} (DescribeTable at {}): {}", clients.url, describe_error(&e)),
            }),
        };
        (table.clone(), keys)
    });
    futures::future::join_all(lookups)
        .await
        .into_iter()
        .collect()
}

/// Loads every action of the plan; returns one outcome per file, in plan order.
pub async fn apply(
    clients: &AwsClients,
    plan: &LoadPlan,
    cache: Arc<FingerprintCache>,
    loaded: &LoadedFiles,
    options: &LoadOptions,
    observer: &dyn LoadObserver,
) -> Vec<FileOutcome> {
    let tables: Vec<String> = plan
        .experiments
        .iter()
        .flat_map(|e| &e.actions)
        .filter_map(|a| match &a.target {
            PlannedTarget::Table { table } => Some(table.clone()),
            PlannedTarget::Object { .. } | PlannedTarget::Sql { .. } => None,
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let keys = table_keys(clients, &tables).await;
    let candidates = skip_candidates(plan, &keys, &cache, loaded, options, &clients.url).await;
    let proven = presence::prove(clients, &candidates).await;
    let limits = UploadLimits::default();
    let partitions = NewPartitions::default();
    let work = plan.experiments.iter().flat_map(|experiment| {
        experiment
            .actions
            .iter()
            .map(move |action| (experiment.id.as_str(), action))
    });
    let mut indexed: Vec<(usize, FileOutcome)> = stream::iter(work.enumerate())
        .map(|(index, (experiment, action))| {
            let keys = &keys;
            let cache = cache.clone();
            let limits = &limits;
            let proven = &proven;
            let partitions = &partitions;
            async move {
                let (result, why) = load_file(
                    clients, action, keys, &cache, loaded, proven, limits, partitions, options,
                )
                .await;
                let outcome = FileOutcome {
                    experiment: experiment.to_string(),
                    file: action.file.clone(),
                    target: describe_target(&action.target),
                    result,
                    why,
                };
                observer.file_done(&outcome);
                (index, outcome)
            }
        })
        .buffer_unordered(FILES_AT_ONCE)
        .collect()
        .await;
    indexed.sort_by_key(|(index, _)| *index);
    if !options.dry_run {
        cache.save();
        loaded.save();
    }
    indexed.into_iter().map(|(_, outcome)| outcome).collect()
}

/// "table experiments-development" or "s3://bucket/key".
pub fn describe_target(target: &PlannedTarget) -> String {
    match target {
        PlannedTarget::Table { table } => format!("table {table}"),
        PlannedTarget::Object { bucket, key, .. } => format!("s3://{bucket}/{key}"),
        PlannedTarget::Sql { service } => format!("service {service} (SQL)"),
    }
}

/// The JSON files a record says were loaded from their current content into tables this command
/// did not create: skipped if [`presence::prove`] finds their keys.
async fn skip_candidates(
    plan: &LoadPlan,
    keys: &HashMap<String, Result<TableKey, TableProblem>>,
    cache: &Arc<FingerprintCache>,
    loaded: &LoadedFiles,
    options: &LoadOptions,
    endpoint: &str,
) -> Vec<Candidate> {
    if options.force {
        return Vec::new();
    }
    let tables =
        plan.experiments
            .iter()
            .flat_map(|e| &e.actions)
            .filter_map(|action| match &action.target {
                PlannedTarget::Table { table }
                    if matches!(keys.get(table), Some(Ok(_)))
                        && !options.created_tables.contains(table) =>
                {
                    Some((action, table))
                }
                _ => None,
            });
    stream::iter(tables)
        .map(|(action, table)| async move {
            let fingerprint = source_fingerprint(cache, action, "items").await.ok()?;
            let record = loaded.matching(endpoint, table, &action.path, &fingerprint)?;
            Some(Candidate {
                path: action.path.clone(),
                table: table.clone(),
                record,
            })
        })
        .buffer_unordered(FILES_AT_ONCE)
        .filter_map(|candidate| async move { candidate })
        .collect()
        .await
}

/// Loads one file: its result and why it was written or skipped.
#[allow(clippy::too_many_arguments)]
async fn load_file(
    clients: &AwsClients,
    action: &Action,
    keys: &HashMap<String, Result<TableKey, TableProblem>>,
    cache: &Arc<FingerprintCache>,
    loaded: &LoadedFiles,
    proven: &HashSet<std::path::PathBuf>,
    limits: &UploadLimits,
    partitions: &NewPartitions,
    options: &LoadOptions,
) -> (FileResult, String) {
    let outcome = match &action.target {
        PlannedTarget::Table { table } => match keys.get(table) {
            Some(Ok(key)) => {
                load_items_unless_present(
                    clients, action, table, key, cache, loaded, proven, partitions, options,
                )
                .await
            }
            Some(Err(problem)) if problem.missing && options.dry_run => Ok((
                FileResult::WouldWrite {
                    verdict: Verdict::New,
                },
                format!("would write: table {table} does not exist yet; the load creates it, then writes the file"),
            )),
            Some(Err(problem)) => Err(problem.message.clone()),
            None => Err(format!("table {table} was not looked up")),
        },
        PlannedTarget::Object {
            bucket,
            key,
            gunzip,
        } => {
            load_object(
                clients, action, bucket, key, *gunzip, cache, limits, options,
            )
            .await
        }
        PlannedTarget::Sql { service } => match options.services.get(service) {
            Some(url) => super::sql::run_unless_ran(action, service, url, cache, loaded, options).await,
            None => Err(format!(
                "service {service} is not running; declare it as [services.{service}] preset = \"postgres\" in inframock.toml and `inframock run`"
            )),
        },
    };
    match outcome {
        Ok(done) => done,
        Err(error) if options.dry_run => (
            FileResult::WouldFail { error },
            "the load would refuse it and write nothing of it".to_string(),
        ),
        Err(error) => (
            FileResult::Failed { error },
            "nothing of it was written; the next load writes it whole".to_string(),
        ),
    }
}

/// `--dry-run`: what the load would do with a file it does not skip.
fn would_write(verdict: Verdict, why: &str) -> (FileResult, String) {
    (
        FileResult::WouldWrite { verdict },
        why.replacen("written", "would write", 1),
    )
}

/// Why a JSON file must be written (pure): `None` means the record allows a skip, provided the
/// recorded keys are found in the table.
pub fn reason_to_write(
    force: bool,
    table_created: bool,
    record: Option<&LoadedRecord>,
) -> Option<&'static str> {
    if force {
        Some("written: --force")
    } else if table_created {
        Some("written: the table was just created (empty)")
    } else if record.is_none() {
        Some("written: not loaded before from this content")
    } else {
        None
    }
}

#[allow(clippy::too_many_arguments)]
async fn load_items_unless_present(
    clients: &AwsClients,
    action: &Action,
    table: &str,
    key: &TableKey,
    cache: &Arc<FingerprintCache>,
    loaded: &LoadedFiles,
    proven: &HashSet<std::path::PathBuf>,
    partitions: &NewPartitions,
    options: &LoadOptions,
) -> Result<(FileResult, String), String> {
    // `skip_candidates` already matched the fingerprint against the record (never for --force or a
    // table just created) and `presence::prove` found the keys.
    if proven.contains(&action.path) {
        return Ok((
            FileResult::Unchanged,
            "skipped: content unchanged since it was loaded, and its first and last items are in the table".to_string(),
        ));
    }
    let fingerprint = source_fingerprint(cache, action, "items").await?;
    let record = loaded.matching(&clients.url, table, &action.path, &fingerprint);
    let created = options.created_tables.contains(table);
    let why = reason_to_write(options.force, created, record.as_ref())
        .unwrap_or("written: its items are missing from the table (reset, deleted or restarted)");
    if options.dry_run {
        read_items(&action.path, key).await?;
        let verdict = if options.force {
            Verdict::Forced
        } else if record.is_some() {
            Verdict::Missing
        } else if !created && loaded.knows(&clients.url, table, &action.path) {
            Verdict::Changed
        } else {
            Verdict::New
        };
        return Ok(would_write(verdict, why));
    }
    // Whatever happens next, this file is not proven loaded until it is written whole.
    loaded.forget(&clients.url, table, &action.path);
    let (result, first_key, last_key) =
        load_items(clients, &action.path, table, key, partitions).await?;
    // An empty file (`{"records": []}`) records null keys: nothing of it has to be found.
    loaded.mark_loaded(
        &clients.url,
        table,
        &action.path,
        LoadedRecord {
            fingerprint,
            first_key: first_key.unwrap_or_default(),
            last_key: last_key.unwrap_or_default(),
        },
    );
    Ok((result, why.to_string()))
}

/// The fingerprint of an action's source file under `transform`, hashed off the async threads.
pub(super) async fn source_fingerprint(
    cache: &Arc<FingerprintCache>,
    action: &Action,
    transform: &'static str,
) -> Result<String, String> {
    let hashing = cache.clone();
    let source = action.path.clone();
    tokio::task::spawn_blocking(move || hashing.fingerprint(&source, transform))
        .await
        .map_err(|e| format!("internal: {e}"))?
        .map_err(|e| format!("cannot read: {e}"))
}

/// Parses and validates every item, then writes them; returns the result and the keys of the
/// first and last stored items (`None` for an empty file). Nothing is written when any item is
/// invalid. A batch that creates a partition key runs alone among the batches of that key
/// (`NewPartitions`).
async fn load_items(
    clients: &AwsClients,
    path: &Path,
    table: &str,
    key: &TableKey,
    partitions: &NewPartitions,
) -> Result<
    (
        FileResult,
        Option<serde_json::Value>,
        Option<serde_json::Value>,
    ),
    String,
> {
    let (format, items) = read_items(path, key).await?;
    let names = key.names();
    let items = last_item_per_key(items, &names);
    let count = items.len();
    let first_key = items.first().map(|i| key_as_typed_json(i, &names));
    let last_key = items.last().map(|i| key_as_typed_json(i, &names));
    // Moved into the batches, not copied: a file's items are in memory once.
    let mut batches: Vec<Vec<Item>> = Vec::with_capacity(count.div_ceil(BATCH_SIZE));
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        batches.push(items.by_ref().take(BATCH_SIZE).collect());
    }
    let partition_key = &names[..names.len().min(1)];
    let results: Vec<Result<(), String>> = stream::iter(batches)
        .map(|batch| {
            let keys = batch
                .iter()
                .map(|item| key_of(item, partition_key))
                .collect();
            partitions.write(table, keys, write_batch(clients, table, batch))
        })
        .buffer_unordered(BATCHES_AT_ONCE)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, String>>()?;
    Ok((FileResult::Items { count, format }, first_key, last_key))
}

/// Reads, parses and validates a JSON file's items against the table's key, off the async threads:
/// everything DynamoDB would refuse is found before anything is written.
async fn read_items(path: &Path, key: &TableKey) -> Result<(JsonFormat, Vec<Item>), String> {
    let path = path.to_path_buf();
    let key = key.clone();
    tokio::task::spawn_blocking(move || -> Result<(JsonFormat, Vec<Item>), String> {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read: {e}"))?;
        let (format, items) = parse_items(&text).map_err(|e| e.to_string())?;
        validate_items(&items, &key).map_err(|e| e.to_string())?;
        Ok((format, items))
    })
    .await
    .map_err(|e| format!("internal: {e}"))?
}

/// Keeps the last item of each key (what sequential puts would leave), in first-seen order;
/// DynamoDB rejects a batch holding one key twice.
fn last_item_per_key(items: Vec<Item>, key_names: &[String]) -> Vec<Item> {
    let mut position: HashMap<String, usize> = HashMap::new();
    let mut unique: Vec<Item> = Vec::with_capacity(items.len());
    for item in items {
        let key = key_of(&item, key_names);
        match position.get(&key) {
            Some(&at) => unique[at] = item,
            None => {
                position.insert(key, unique.len());
                unique.push(item);
            }
        }
    }
    unique
}

async fn write_batch(clients: &AwsClients, table: &str, batch: Vec<Item>) -> Result<(), String> {
    let mut requests: Vec<WriteRequest> = batch
        .into_iter()
        .map(|item| {
            PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map(|put| WriteRequest::builder().put_request(put).build())
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    let mut pause = Duration::from_millis(50);
    for attempt in 1..=BATCH_ATTEMPTS {
        let output = clients
            .dynamodb
            .batch_write_item()
            .request_items(table, requests.clone())
            .send()
            .await
            .map_err(|e| {
                format!(
                    "writing to table {table} (BatchWriteItem at {}): {}",
                    clients.url,
                    describe_error(&e)
                )
            })?;
        requests = output
            .unprocessed_items
            .and_then(|mut left| left.remove(table))
            .unwrap_or_default();
        if requests.is_empty() {
            return Ok(());
        }
        if attempt < BATCH_ATTEMPTS {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
    Err(format!(
        "table {table}: {} item(s) still unprocessed after {BATCH_ATTEMPTS} attempts",
        requests.len()
    ))
}

#[allow(clippy::too_many_arguments)]
async fn load_object(
    clients: &AwsClients,
    action: &Action,
    bucket: &str,
    key: &str,
    gunzip: bool,
    cache: &Arc<FingerprintCache>,
    limits: &UploadLimits,
    options: &LoadOptions,
) -> Result<(FileResult, String), String> {
    let fingerprint = match &action.restore {
        Some(restore) => restore.fingerprint.clone(),
        None => {
            let transform = if gunzip { "gunzip" } else { "copy" };
            source_fingerprint(cache, action, transform).await?
        }
    };
    let mut exists = false;
    let always = action.restore.as_ref().is_some_and(|r| r.always);
    if !options.force && !always {
        let head = clients
            .s3
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await;
        if let Ok(head) = head {
            exists = true;
            let stored = head
                .metadata
                .as_ref()
                .and_then(|m| m.get(METADATA_KEY))
                .map(String::as_str);
            if stored == Some(fingerprint.as_str()) {
                return Ok((
                    FileResult::Unchanged,
                    "skipped: the object holds this source (fingerprint in its metadata)"
                        .to_string(),
                ));
            }
            let no_metadata = HashMap::new();
            if action.restore.as_ref().is_some_and(|restore| {
                restore.held_by(
                    head.e_tag(),
                    head.content_length(),
                    head.content_type(),
                    head.metadata.as_ref().unwrap_or(&no_metadata),
                )
            }) {
                return Ok((
                    FileResult::Unchanged,
                    "skipped: the object holds the saved content (same ETag, size, type and metadata)"
                        .to_string(),
                ));
            }
        }
    }
    if options.dry_run {
        return Ok(match (options.force, exists) {
            (true, _) => would_write(Verdict::Forced, "written: --force"),
            (false, true) => {
                would_write(Verdict::Changed, "written: the object holds another source")
            }
            (false, false) => would_write(Verdict::New, "written: the object is missing"),
        });
    }
    let content_type = match &action.restore {
        Some(restore) => restore
            .content_type
            .as_deref()
            .unwrap_or("application/octet-stream"),
        None if action.file.ends_with(".json") => "application/json",
        None => "application/octet-stream",
    };
    let mut metadata: HashMap<String, String> = action
        .restore
        .iter()
        .flat_map(|r| r.metadata.clone())
        .collect();
    metadata.insert(METADATA_KEY.to_string(), fingerprint);
    let request = UploadRequest {
        bucket,
        key,
        source: &action.path,
        gunzip,
        content_type,
        metadata,
    };
    let bytes = upload(&clients.s3, &request, limits)
        .await
        .map_err(|e| e.to_string())?;
    let why = if options.force {
        "written: --force"
    } else {
        "written: the object is missing or holds another source"
    };
    Ok((FileResult::Uploaded { bytes }, why.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;

    #[test]
    fn duplicate_keys_keep_the_last_item_in_first_seen_order() {
        let keys = vec!["id".to_string()];
        let item = |id: &str, v: &str| {
            Item::from([
                ("id".to_string(), AttributeValue::S(id.into())),
                ("v".to_string(), AttributeValue::S(v.into())),
            ])
        };
        let unique = last_item_per_key(vec![item("a", "1"), item("b", "1"), item("a", "2")], &keys);
        assert_eq!(unique.len(), 2);
        assert_eq!(unique[0]["v"], AttributeValue::S("2".into()));
        assert_eq!(unique[1]["id"], AttributeValue::S("b".into()));
    }
}
