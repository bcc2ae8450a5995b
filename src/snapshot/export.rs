//! Reading a whole table through `ExportTableToPointInTime`, on moto (`TableReads::Export`).
//!
//! moto's `Scan` spends about 1 ms an item in its response serializer: 10,000 items took 22 s,
//! longer than loading them. Its export writes the table as one gzip file of DynamoDB JSON in one
//! pass (measured: 2,001 items exported and read in 0.3 s, scanned in 2.3 s).
//!
//! The export needs a bucket, and moto serves every request as the one account inframock gives it
//! (`MOTO_ACCOUNT_ID`), so the bucket is the user's for the time of the save: one bucket per save,
//! named `inframock-export-<pid>-<nanos>`, created at the save's first export, left out of the
//! snapshot by its exact name and removed when the tables are read. Point-in-time recovery, which
//! an export needs, is switched on for the export and off again if it was off. What an export
//! gives is checked against the item count it reports; anything amiss is an error, and the table
//! is then scanned.
//!
//! An export's text, unzipped, is hashed before it is parsed: a table whose export has the same
//! hash as an earlier save's holds the same items, and that save's files are reused (parsing,
//! sorting and writing 10,000 items cost about 0.5 s of the 1.5 s an export took).

use std::collections::BTreeSet;
use std::io::Read;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_dynamodb::types::PointInTimeRecoveryStatus;
use aws_sdk_dynamodb::types::{ExportFormat, ExportStatus, PointInTimeRecoverySpecification};
use serde_json::Value;

use super::tables::keyed_item;
use crate::aws::{describe_error, error_code, AwsClients};
use crate::data::dynamo_json::{typed_to_attribute, Item};

/// The longest wait for one export (moto exports in a thread of its own).
const EXPORT_DEADLINE: Duration = Duration::from_secs(300);
/// Times the export bucket is emptied and deleted while an export still writes into it (200 ms
/// apart).
const BUCKET_DELETE_ATTEMPTS: usize = 25;

/// The bucket a save's exports are written to, named when the save starts (so the S3 part can
/// leave it out) and created when the first table is exported: a save that exports nothing, as a
/// save under `persist` whose tables are all proven unchanged, creates no bucket.
pub struct ExportBucket {
    pub name: String,
    /// Whether it was created (the reason when it could not be), once asked.
    created: tokio::sync::OnceCell<Result<(), String>>,
    /// Tables whose point-in-time recovery this save switched on for an export and has not
    /// switched off again yet: [`ExportBucket::remove`] switches it off on a save stopped halfway.
    recovery_switched_on: std::sync::Mutex<BTreeSet<String>>,
}

impl ExportBucket {
    /// This save's export bucket, not created yet.
    pub fn for_this_save() -> ExportBucket {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        ExportBucket {
            name: format!("inframock-export-{}-{nanos}", std::process::id()),
            created: tokio::sync::OnceCell::new(),
            recovery_switched_on: std::sync::Mutex::new(BTreeSet::new()),
        }
    }

    /// Records whether `table`'s recovery is switched on by this save (before it is switched on,
    /// after it is switched off again).
    fn note_recovery(&self, table: &str, switched_on: bool) {
        if let Ok(mut tables) = self.recovery_switched_on.lock() {
            if switched_on {
                tables.insert(table.to_string());
            } else {
                tables.remove(table);
            }
        }
    }

    /// Creates the bucket the first time it is needed; every later call gives the same answer.
    async fn ensure(&self, clients: &AwsClients) -> Result<()> {
        let created = self
            .created
            .get_or_init(|| async {
                crate::resources::create_bucket_request(clients, &self.name, clients.region())
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        format!(
                            "creating export bucket {}: {}",
                            self.name,
                            describe_error(&e)
                        )
                    })
            })
            .await;
        created.clone().map_err(|why| anyhow!(why))
    }

    /// Puts back what the exports changed: recovery off again on the tables a save stopped halfway
    /// left it on for, then the bucket deleted with whatever is in it. An export the engine is
    /// still writing can put a file in the bucket while it is emptied: it is emptied again. Best
    /// effort: a bucket left behind by a failed deletion is the user's to see, never data lost.
    pub async fn remove(self, clients: &AwsClients) {
        let tables = self
            .recovery_switched_on
            .lock()
            .map(|mut tables| std::mem::take(&mut *tables))
            .unwrap_or_default();
        for table in tables {
            let _ = set_recovery(clients, &table, false).await;
        }
        if self.created.get().is_some_and(Result::is_ok) {
            for _ in 0..BUCKET_DELETE_ATTEMPTS {
                delete_keys(clients, &self.name, "").await;
                match clients.s3.delete_bucket().bucket(&self.name).send().await {
                    Err(e) if error_code(&e).as_deref() == Some("BucketNotEmpty") => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    _ => break,
                }
            }
        }
    }
}

/// A table's export, downloaded and unzipped but not parsed yet: its hash can show that the table
/// holds what an earlier save already parsed.
pub struct Export {
    table: String,
    /// Each data file's text, in the order of the files' keys.
    texts: Vec<(String, Vec<u8>)>,
    /// The number of items the engine reported exporting.
    pub reported: u64,
    /// The BLAKE3 hash of the texts, in order: the same items in the same order give the same
    /// hash whatever the gzip header says (moto's holds the time of the export).
    pub hash: String,
}

impl Export {
    /// Every exported item as its key and typed JSON (unsorted); an error when the files do not
    /// hold the number of items the engine reported.
    pub async fn items(self, key_names: &[String]) -> Result<Vec<(String, Value)>> {
        let names = key_names.to_vec();
        let table = self.table.clone();
        super::blocking(move || {
            let mut items = Vec::new();
            for (key, text) in self.texts {
                let parsed = parse_export_text(&text, &names)
                    .with_context(|| format!("table {table}: export file {key}"))?;
                items.extend(parsed);
            }
            if items.len() as u64 != self.reported {
                bail!(
                    "table {table}: the export reported {} items and holds {}",
                    self.reported,
                    items.len()
                );
            }
            Ok(items)
        })
        .await
    }
}

/// Exports `table` into `bucket` and downloads the export; the export's files are removed from
/// the bucket whatever happens.
pub async fn export_table(
    clients: &AwsClients,
    bucket: &ExportBucket,
    table: &str,
    table_arn: &str,
) -> Result<Export> {
    bucket.ensure(clients).await?;
    let recovery_was_on = recovery_on(clients, table).await?;
    if !recovery_was_on {
        bucket.note_recovery(table, true);
        set_recovery(clients, table, true).await?;
    }
    let prefix = format!("tables/{table}");
    let read = export_and_download(clients, table, table_arn, &bucket.name, &prefix).await;
    delete_keys(clients, &bucket.name, &prefix).await;
    // Best effort: the items are read whatever the table's recovery setting ends as.
    if !recovery_was_on && set_recovery(clients, table, false).await.is_ok() {
        bucket.note_recovery(table, false);
    }
    read
}

async fn export_and_download(
    clients: &AwsClients,
    table: &str,
    table_arn: &str,
    bucket: &str,
    prefix: &str,
) -> Result<Export> {
    let started = clients
        .dynamodb
        .export_table_to_point_in_time()
        .table_arn(table_arn)
        .s3_bucket(bucket)
        .s3_prefix(prefix)
        .export_format(ExportFormat::DynamodbJson)
        .send()
        .await
        .map_err(|e| anyhow!("table {table}: exporting: {}", describe_error(&e)))?;
    let export_arn = started
        .export_description()
        .and_then(|d| d.export_arn())
        .ok_or_else(|| anyhow!("table {table}: the export has no ARN"))?
        .to_string();
    let reported = finished_export(clients, table, &export_arn).await?;
    let mut keys = all_keys(clients, bucket, prefix).await?;
    keys.sort();
    let mut zipped = Vec::new();
    // moto writes one data file; DynamoDB several, beside manifests.
    let data_files = keys
        .into_iter()
        .filter(|key| key.contains("/data/") && key.ends_with(".gz"));
    for key in data_files {
        let body = clients
            .s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "table {table}: reading export file {key}: {}",
                    describe_error(&e)
                )
            })?
            .body
            .collect()
            .await
            .with_context(|| format!("table {table}: reading export file {key}"))?
            .into_bytes();
        zipped.push((key, body));
    }
    let table = table.to_string();
    super::blocking(move || {
        let mut hasher = blake3::Hasher::new();
        let mut texts = Vec::new();
        for (key, body) in zipped {
            let text = unzip(&body).with_context(|| format!("table {table}: export file {key}"))?;
            hasher.update(&text);
            texts.push((key, text));
        }
        Ok(Export {
            table,
            texts,
            reported,
            hash: hasher.finalize().to_hex().to_string(),
        })
    })
    .await
}

/// Waits for the export to end; the number of items it reports when it completed.
async fn finished_export(clients: &AwsClients, table: &str, export_arn: &str) -> Result<u64> {
    let deadline = tokio::time::Instant::now() + EXPORT_DEADLINE;
    let mut pause = Duration::from_millis(5);
    loop {
        let described = clients
            .dynamodb
            .describe_export()
            .export_arn(export_arn)
            .send()
            .await
            .map_err(|e| anyhow!("table {table}: DescribeExport: {}", describe_error(&e)))?;
        let description = described
            .export_description()
            .ok_or_else(|| anyhow!("table {table}: DescribeExport returned no description"))?;
        match description.export_status() {
            Some(ExportStatus::Completed) => {
                return u64::try_from(description.item_count().unwrap_or(-1))
                    .map_err(|_| anyhow!("table {table}: the export reports no item count"));
            }
            Some(ExportStatus::InProgress) => {}
            other => bail!(
                "table {table}: the export ended {:?}: {}",
                other,
                description.failure_message().unwrap_or("no reason given")
            ),
        }
        if tokio::time::Instant::now() + pause > deadline {
            bail!(
                "table {table}: the export did not finish within {} s",
                EXPORT_DEADLINE.as_secs()
            );
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// An export file's gzip unzipped.
fn unzip(gzipped: &[u8]) -> Result<Vec<u8>> {
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(gzipped)
        .read_to_end(&mut text)
        .context("not gzip, or cut short")?;
    Ok(text)
}

/// One export file's text (one `{"Item": {...}}` per line) as keyed items.
fn parse_export_text(text: &[u8], key_names: &[String]) -> Result<Vec<(String, Value)>> {
    let mut items = Vec::new();
    for (number, line) in text.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record: Value = serde_json::from_slice(line)
            .with_context(|| format!("line {}: not JSON", number + 1))?;
        let Some(Value::Object(attributes)) = record.get("Item") else {
            bail!("line {}: no \"Item\" object", number + 1);
        };
        let item = attributes
            .iter()
            .map(|(name, value)| {
                typed_to_attribute(value)
                    .map(|attribute| (name.clone(), attribute))
                    .map_err(|(path, message)| {
                        anyhow!("line {}, attribute {name}{path}: {message}", number + 1)
                    })
            })
            .collect::<Result<Item>>()?;
        items.push(keyed_item(&item, key_names));
    }
    Ok(items)
}

async fn all_keys(clients: &AwsClients, bucket: &str, prefix: &str) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut pages = clients
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| anyhow!("listing export bucket {bucket}: {}", describe_error(&e)))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(String::from)),
        );
    }
    Ok(keys)
}

/// Deletes the keys under `prefix` (best effort).
async fn delete_keys(clients: &AwsClients, bucket: &str, prefix: &str) {
    for key in all_keys(clients, bucket, prefix).await.unwrap_or_default() {
        let _ = clients
            .s3
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await;
    }
}

async fn recovery_on(clients: &AwsClients, table: &str) -> Result<bool> {
    let described = clients
        .dynamodb
        .describe_continuous_backups()
        .table_name(table)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "table {table}: DescribeContinuousBackups: {}",
                describe_error(&e)
            )
        })?;
    Ok(described
        .continuous_backups_description()
        .and_then(|d| d.point_in_time_recovery_description())
        .and_then(|d| d.point_in_time_recovery_status())
        == Some(&PointInTimeRecoveryStatus::Enabled))
}

async fn set_recovery(clients: &AwsClients, table: &str, enabled: bool) -> Result<()> {
    let specification = PointInTimeRecoverySpecification::builder()
        .point_in_time_recovery_enabled(enabled)
        .build()?;
    clients
        .dynamodb
        .update_continuous_backups()
        .table_name(table)
        .point_in_time_recovery_specification(specification)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            anyhow!(
                "table {table}: UpdateContinuousBackups: {}",
                describe_error(&e)
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn parse_export_file(gzipped: &[u8], key_names: &[String]) -> Result<Vec<(String, Value)>> {
        parse_export_text(&unzip(gzipped)?, key_names)
    }

    fn gzip(text: &str) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(text.as_bytes()).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn an_export_line_becomes_the_item_a_scan_gives() {
        let file = gzip(concat!(
            r#"{"Item": {"pk": {"S": "a"}, "b": {"B": "AP8="}, "ss": {"SS": ["z", "y"]}, "n": {"N": "2.50"}}}"#,
            "\n",
            r#"{"Item": {"pk": {"S": "b"}, "m": {"M": {"l": {"L": [{"NULL": true}]}}}}}"#,
            "\n"
        ));
        let items = parse_export_file(&file, &["pk".to_string()]).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[0].1,
            serde_json::json!({"b": {"B": "AP8="}, "n": {"N": "2.50"}, "pk": {"S": "a"}, "ss": {"SS": ["y", "z"]}})
        );
        assert_eq!(items[0].0, key_of_s("a"));
        assert_eq!(
            items[1].1,
            serde_json::json!({"m": {"M": {"l": {"L": [{"NULL": true}]}}}, "pk": {"S": "b"}})
        );
    }

    fn key_of_s(value: &str) -> String {
        let item: Item = [(
            "pk".to_string(),
            aws_sdk_dynamodb::types::AttributeValue::S(value.into()),
        )]
        .into();
        crate::data::dynamo_json::key_of(&item, &["pk".to_string()])
    }

    #[test]
    fn a_damaged_export_file_is_an_error_naming_the_line() {
        let not_typed =
            gzip("{\"Item\": {\"pk\": {\"S\": \"a\"}}}\n{\"Item\": {\"pk\": {\"X\": 1}}}\n");
        let error = parse_export_file(&not_typed, &["pk".into()]).unwrap_err();
        assert!(
            format!("{error:#}").contains("line 2, attribute pk"),
            "{error:#}"
        );
        let truncated = &gzip("{\"Item\": {\"pk\": {\"S\": \"a\"}}}\n")[..20];
        assert!(parse_export_file(truncated, &["pk".into()]).is_err());
        let no_item = gzip("{\"Items\": {}}\n");
        let error = parse_export_file(&no_item, &["pk".into()]).unwrap_err();
        assert!(
            format!("{error:#}").contains("line 1: no \"Item\""),
            "{error:#}"
        );
    }
}
