//! The DynamoDB part of a snapshot: each table's key schema and indexes, and its items as
//! DynamoDB-typed JSON (exact numbers, binary, sets), sorted by key and cut into files the data
//! loader reads like any data file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_dynamodb::types::TableDescription;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::Value;

use super::changes;
use super::earlier::EarlierSnapshot;
use super::export::{self, ExportBucket};
use super::manifest::{PartRecord, PartWriter};
use super::records::{IndexSchema, StreamMark, TableSchema};
use crate::aws::{describe_error, AwsClients};
use crate::data::discover::{Action, PlannedTarget};
use crate::data::dynamo_json::{item_to_typed, key_of, Item};

/// Items per file: files load in parallel, and a file is written whole or not at all. A file's
/// items are parsed whole into memory, and 16 files load at once: 200 items (~100 KB of typed JSON
/// here) keeps that near the data folder's files. 1,000 made a load of 10,000 items peak at 290 MiB.
pub const ITEMS_PER_FILE: usize = 200;
/// Scan segments read at once per table, where the engine gains from them
/// (`TableReads::ParallelScan`).
pub const PARALLEL_SEGMENTS: i32 = 4;
/// Tables read at once: the largest, and the others one after another beside it. On moto, whose
/// export of the largest table leaves it idle between requests, a second save of the benchmark's
/// state took 0.66-0.89 s this way against 0.85-1.11 s one table at a time (6 alternated pairs).
/// Two tables' items may be in memory at once.
const TABLES_AT_ONCE: usize = 2;

/// What the DynamoDB part saved: the tables and their item files (path → size and hash).
pub struct SavedTables {
    pub tables: Vec<TableSchema>,
    pub parts: BTreeMap<String, PartRecord>,
    /// Tables whose stream or export proved them unchanged since an earlier snapshot, whose files
    /// were linked from it instead of read (or parsed) again.
    pub unchanged: Vec<String>,
    /// Tables read through the engine's export instead of `Scan`.
    pub exported: Vec<String>,
    /// Tables that had no stream to prove them unchanged (none enabled, or it could not be read),
    /// on an engine whose streams a save uses: they are read whole at every save.
    pub without_stream: Vec<String>,
    /// What the manifest should say: why a table was scanned after all.
    pub notes: Vec<String>,
}

/// How the tables are read.
pub struct TableReading<'a> {
    /// Scan segments per table (`PARALLEL_SEGMENTS` where the engine gains from them).
    pub segments: i32,
    /// Where tables are exported to, on an engine whose export is faster than its Scan
    /// (`TableReads::Export`); a table whose export fails is scanned.
    pub export: Option<&'a ExportBucket>,
    /// Whether a table's stream can prove it unchanged: on an engine this stack runs, not on an
    /// external endpoint, where an empty stream page does not mean the stream's end.
    pub use_streams: bool,
    /// Earlier snapshots, newest first, whose files a table proven unchanged reuses.
    pub earlier: &'a [EarlierSnapshot],
}

/// Saves every table of the endpoint into `into`.
pub async fn save(
    clients: &AwsClients,
    into: &Path,
    reading: TableReading<'_>,
) -> Result<SavedTables> {
    let mut names = Vec::new();
    let mut pages = clients.dynamodb.list_tables().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            anyhow!(
                "listing tables (ListTables at {}): {}",
                clients.url,
                describe_error(&e)
            )
        })?;
        names.extend(page.table_names().iter().cloned());
    }
    let mut saved = SavedTables {
        tables: Vec::new(),
        parts: BTreeMap::new(),
        unchanged: Vec::new(),
        exported: Vec::new(),
        without_stream: Vec::new(),
        notes: Vec::new(),
    };
    let mut described = Vec::new();
    for name in names {
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            bail!("table `{name}`: its name is not one DynamoDB allows; it cannot be saved");
        }
        let description = clients
            .dynamodb
            .describe_table()
            .table_name(&name)
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "table {name} (DescribeTable at {}): {}",
                    clients.url,
                    describe_error(&e)
                )
            })?
            .table
            .ok_or_else(|| anyhow!("table {name}: DescribeTable returned no description"))?;
        described.push((name, description));
    }
    // The largest table first, the others one at a time beside it: its read is the longest, and
    // the engine answers the others while it exports.
    let mut order: Vec<usize> = (0..described.len()).collect();
    order.sort_by_key(|&at| std::cmp::Reverse(described[at].1.item_count().unwrap_or(0)));
    let reading = &reading;
    // Every table's read runs to its end, even after another failed: a read stopped halfway would
    // leave its table with point-in-time recovery switched on for its export.
    let mut read: Vec<(usize, Result<SavedTable>)> = stream::iter(order)
        .map(|at| {
            let (name, description) = &described[at];
            async move {
                (
                    at,
                    save_table(clients, into, reading, name, description).await,
                )
            }
        })
        .buffer_unordered(TABLES_AT_ONCE)
        .collect()
        .await;
    read.sort_by_key(|(at, _)| *at);
    for (_, table) in read {
        let table = table?;
        if reading.use_streams && table.schema.stream_mark.is_none() {
            saved.without_stream.push(table.schema.name.clone());
        }
        saved.add(table);
    }
    Ok(saved)
}

/// One table as a save wrote it.
struct SavedTable {
    schema: TableSchema,
    parts: BTreeMap<String, PartRecord>,
    /// Proven unchanged since an earlier snapshot: its files were linked from there.
    unchanged: bool,
    /// Read through the engine's export.
    exported: bool,
    /// Why it was scanned after all.
    note: Option<String>,
}

impl SavedTables {
    fn add(&mut self, table: SavedTable) {
        self.parts.extend(table.parts);
        if table.unchanged {
            self.unchanged.push(table.schema.name.clone());
        }
        if table.exported {
            self.exported.push(table.schema.name.clone());
        }
        self.notes.extend(table.note);
        self.tables.push(table.schema);
    }
}

/// Saves one table into `into`: linked from an earlier snapshot when its stream, or its export's
/// text, proves it unchanged since; otherwise read (exported, or scanned) and written.
async fn save_table(
    clients: &AwsClients,
    into: &Path,
    reading: &TableReading<'_>,
    name: &str,
    description: &TableDescription,
) -> Result<SavedTable> {
    let mut schema = schema_of(name, description)?;
    if let Some(stream_arn) = enabled_stream(description).filter(|_| reading.use_streams) {
        let (mark, same_as) =
            by_stream(clients, reading.earlier, name, description, stream_arn).await;
        schema.stream_mark = mark;
        if let Some(table) = reused(same_as, schema.clone(), into, false).await {
            return Ok(table);
        }
    }
    let key_names: Vec<String> = schema.key().into_iter().map(|(name, _)| name).collect();
    let mut note = None;
    let export = match (reading.export, description.table_arn()) {
        // A failed export (a table written during it, say) costs only the time it took: the table
        // is then scanned, as on any engine.
        (Some(bucket), Some(arn)) => scanned_if_failed(
            export::export_table(clients, bucket, name, arn).await,
            &mut note,
        ),
        _ => None,
    };
    if let Some(export) = &export {
        schema.export_hash = Some(export.hash.clone());
        let same_as = by_export(reading.earlier, name, export);
        if let Some(table) = reused(same_as, schema.clone(), into, true).await {
            return Ok(table);
        }
    }
    let parsed = match export {
        Some(export) => scanned_if_failed(export.items(&key_names).await, &mut note),
        None => None,
    };
    let exported = parsed.is_some();
    let items = match parsed {
        Some(items) => items,
        None => {
            schema.export_hash = None;
            scan(clients, name, &key_names, reading.segments.max(1)).await?
        }
    };
    let parts = write_items(into, &mut schema, items)?;
    Ok(SavedTable {
        schema,
        parts,
        unchanged: false,
        exported,
        note,
    })
}

/// What an export step gave; on failure `None`, with why the table is scanned instead in `note`.
fn scanned_if_failed<T>(result: Result<T>, note: &mut Option<String>) -> Option<T> {
    result
        .map_err(|e| *note = Some(format!("{e:#}; the table was read by Scan instead")))
        .ok()
}

/// Reads the table's stream from the mark of the earlier save of the same stream that is furthest
/// along: where the stream ends now (`None` when it cannot be read: the table is then read whole,
/// as if it had none), and that earlier save when no record follows its mark.
async fn by_stream<'e>(
    clients: &AwsClients,
    earlier: &'e [EarlierSnapshot],
    name: &str,
    description: &TableDescription,
    stream_arn: &str,
) -> (
    Option<StreamMark>,
    Option<(&'e EarlierSnapshot, &'e TableSchema)>,
) {
    let created = description
        .creation_date_time()
        .and_then(|t| t.to_millis().ok());
    // Saves within one second are not ordered by their time: the mark furthest along decides.
    let furthest = earlier
        .iter()
        .filter_map(|e| {
            let table = e.resources.tables.iter().find(|t| t.name == name)?;
            let mark = table.stream_mark.as_ref()?;
            (mark.stream_arn == stream_arn && mark.table_created_ms == created).then_some((
                e,
                table,
                changes::progress(mark),
            ))
        })
        .max_by(|a, b| a.2.cmp(&b.2))
        .map(|(e, table, _)| (e, table));
    let since = furthest.and_then(|(_, t)| t.stream_mark.as_ref());
    match changes::read(clients, stream_arn, created, since).await {
        Ok(read) => (Some(read.mark), furthest.filter(|_| read.unchanged_since)),
        Err(_) => (None, None),
    }
}

/// The newest earlier save of the table whose export had this export's text: the same text is
/// the same items, and that save's files hold them, parsed and sorted.
fn by_export<'e>(
    earlier: &'e [EarlierSnapshot],
    name: &str,
    export: &export::Export,
) -> Option<(&'e EarlierSnapshot, &'e TableSchema)> {
    earlier.iter().find_map(|e| {
        let table = e.resources.tables.iter().find(|t| {
            t.name == name
                && t.items == export.reported
                && t.export_hash.as_deref() == Some(export.hash.as_str())
        })?;
        Some((e, table))
    })
}

/// The table as this save records it when `same_as` proves it unchanged, with its files linked
/// from that earlier snapshot; `None` when there is none or its files cannot be linked (then the
/// table is read).
async fn reused(
    same_as: Option<(&EarlierSnapshot, &TableSchema)>,
    now: TableSchema,
    into: &Path,
    exported: bool,
) -> Option<SavedTable> {
    let (snapshot, table) = same_as?;
    let parts = link_files(snapshot, table, &now, into).await?;
    let schema = TableSchema {
        items: table.items,
        files: table.files.clone(),
        ..now
    };
    Some(SavedTable {
        schema,
        parts,
        unchanged: true,
        exported,
        note: None,
    })
}

/// Writes a table's items, sorted by key, into files of `ITEMS_PER_FILE`; records their count and
/// files in `schema`.
fn write_items(
    into: &Path,
    schema: &mut TableSchema,
    items: Vec<(String, Value)>,
) -> Result<BTreeMap<String, PartRecord>> {
    let items = sorted_by_key(items);
    schema.items = items.len() as u64;
    let mut parts = BTreeMap::new();
    for (number, chunk) in items.chunks(ITEMS_PER_FILE).enumerate() {
        let file = format!("tables/{}/{:05}.json", schema.name, number + 1);
        let mut part =
            PartWriter::create(&into.join(&file)).with_context(|| format!("creating {file}"))?;
        let document = serde_json::json!({ "records": chunk });
        serde_json::to_writer(&mut part, &document)?;
        parts.insert(file.clone(), part.finish()?);
        schema.files.push(file);
    }
    Ok(parts)
}

/// The ARN of the table's stream, when it has one that is enabled.
fn enabled_stream(description: &TableDescription) -> Option<&str> {
    let enabled = description
        .stream_specification()
        .is_some_and(|s| s.stream_enabled());
    enabled.then(|| description.latest_stream_arn()).flatten()
}

/// Links an unchanged table's files from the earlier snapshot into `into`, each checked against
/// the size and hash that snapshot's manifest records; `None` (read the table again) when the
/// earlier table had another shape or a file is missing or damaged.
async fn link_files(
    snapshot: &EarlierSnapshot,
    table: &TableSchema,
    now: &TableSchema,
    into: &Path,
) -> Option<BTreeMap<String, PartRecord>> {
    let same_shape = TableSchema {
        items: table.items,
        files: table.files.clone(),
        stream_mark: table.stream_mark.clone(),
        export_hash: table.export_hash.clone(),
        ..now.clone()
    } == *table;
    if !same_shape {
        return None;
    }
    let files: Vec<(PathBuf, PathBuf, String, PartRecord)> = table
        .files
        .iter()
        .map(|file| {
            let record = snapshot.manifest.parts.get(file)?.clone();
            Some((
                snapshot.dir.join(file),
                into.join(file),
                file.clone(),
                record,
            ))
        })
        .collect::<Option<_>>()?;
    super::blocking(move || {
        for (from, _, _, record) in &files {
            super::manifest::check_part(from, record)
                .map_err(|problem| anyhow!("{}: {problem}", from.display()))?;
        }
        let mut parts = BTreeMap::new();
        for (from, to, file, record) in &files {
            if let Err(e) = super::store::link_or_copy(from, to) {
                for (_, linked, _, _) in &files {
                    let _ = std::fs::remove_file(linked);
                }
                return Err(e.into());
            }
            parts.insert(file.clone(), record.clone());
        }
        Ok(parts)
    })
    .await
    .ok()
}

/// A table's schema from its description.
fn schema_of(name: &str, description: &TableDescription) -> Result<TableSchema> {
    let key = |elements: &[aws_sdk_dynamodb::types::KeySchemaElement]| {
        let mut hash = None;
        let mut range = None;
        for element in elements {
            match element.key_type().as_str() {
                "HASH" => hash = Some(element.attribute_name().to_string()),
                _ => range = Some(element.attribute_name().to_string()),
            }
        }
        hash.map(|hash| (hash, range))
    };
    let (hash_key, range_key) = key(description.key_schema())
        .ok_or_else(|| anyhow!("table {name}: its description has no hash key"))?;
    let indexes = description
        .global_secondary_indexes()
        .iter()
        .filter_map(|index| {
            let (hash_key, range_key) = key(index.key_schema())?;
            let projection = index.projection();
            Some(IndexSchema {
                name: index.index_name()?.to_string(),
                hash_key,
                range_key,
                projection: projection
                    .and_then(|p| p.projection_type())
                    .map_or("ALL".to_string(), |p| p.as_str().to_string()),
                non_key_attributes: projection
                    .map(|p| p.non_key_attributes().to_vec())
                    .unwrap_or_default(),
            })
        })
        .collect();
    Ok(TableSchema {
        name: name.to_string(),
        hash_key,
        range_key,
        attributes: description
            .attribute_definitions()
            .iter()
            .map(|d| {
                (
                    d.attribute_name().to_string(),
                    d.attribute_type().as_str().to_string(),
                )
            })
            .collect(),
        indexes,
        items: 0,
        files: Vec::new(),
        stream_mark: None,
        export_hash: None,
    })
}

/// Every item of a table as its key (`key_of`) and its typed JSON, read by `Scan` in `segments`.
async fn scan(
    clients: &AwsClients,
    table: &str,
    key_names: &[String],
    segments: i32,
) -> Result<Vec<(String, Value)>> {
    let read: Vec<Vec<(String, Value)>> = stream::iter(0..segments)
        .map(|segment| async move {
            let mut pages = clients
                .dynamodb
                .scan()
                .table_name(table)
                .set_segment((segments > 1).then_some(segment))
                .set_total_segments((segments > 1).then_some(segments))
                .into_paginator()
                .send();
            let mut items = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    anyhow!(
                        "reading table {table} (Scan at {}): {}",
                        clients.url,
                        describe_error(&e)
                    )
                })?;
                items.extend(page.items().iter().map(|item| keyed_item(item, key_names)));
            }
            Ok::<_, anyhow::Error>(items)
        })
        .buffer_unordered(segments as usize)
        .try_collect()
        .await?;
    Ok(read.into_iter().flatten().collect())
}

/// An item as its key (`key_of`) and its typed JSON with sets in canonical order: what a table's
/// files hold, however the item was read.
pub fn keyed_item(item: &Item, key_names: &[String]) -> (String, Value) {
    let mut typed = item_to_typed(item);
    canonical_sets(&mut typed);
    (key_of(item, key_names), typed)
}

/// Items sorted by key, each key once (the same table gives the same files on any engine and
/// however it was read; a parallel scan gives its items in no particular order).
fn sorted_by_key(mut items: Vec<(String, Value)>) -> Vec<Value> {
    items.sort_by(|a, b| a.0.cmp(&b.0));
    items.dedup_by(|a, b| a.0 == b.0);
    items.into_iter().map(|(_, item)| item).collect()
}

/// Sorts the members of every set (`SS`, `NS`, `BS`) in typed JSON: sets have no order, and
/// engines return them in different ones.
pub fn canonical_sets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (tag, inner) in map.iter_mut() {
                if let ("SS" | "NS" | "BS", Value::Array(members)) = (tag.as_str(), &mut *inner) {
                    members.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
                } else {
                    canonical_sets(inner);
                }
            }
        }
        Value::Array(values) => values.iter_mut().for_each(canonical_sets),
        _ => {}
    }
}

/// Writes every number (`N`, `NS`) in its one canonical form, so numbers equal in value compare
/// equal: DynamoDB compares numbers by value, and engines differ in how they write them back
/// (`2.50` stays `2.50` in moto and becomes `2.5` in MiniStack and DynamoDB).
pub fn canonical_numbers(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (tag, inner) in map.iter_mut() {
                match (tag.as_str(), &mut *inner) {
                    ("N", Value::String(number)) => *number = canonical_number(number),
                    ("NS", Value::Array(members)) => {
                        for member in members.iter_mut() {
                            if let Value::String(number) = member {
                                *number = canonical_number(number);
                            }
                        }
                    }
                    _ => canonical_numbers(inner),
                }
            }
        }
        Value::Array(values) => values.iter_mut().for_each(canonical_numbers),
        _ => {}
    }
}

/// A decimal number's canonical text (pure): `2.5` for `2.50`, `25e-1` or `+02.5`; `100` for
/// `1e2`; `0` for any zero; very large or small numbers as digits and a power of ten (`1e40`).
/// Text that is not a number is returned as it is.
pub fn canonical_number(text: &str) -> String {
    let trimmed = text.trim();
    let (negative, rest) = match trimmed.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, trimmed.strip_prefix('+').unwrap_or(trimmed)),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, "0"),
    };
    let Ok(mut exponent) = exponent.parse::<i64>() else {
        return text.to_string();
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .chars()
            .chain(fraction.chars())
            .all(|c| c.is_ascii_digit())
    {
        return text.to_string();
    }
    let mut digits: String = format!("{whole}{fraction}");
    exponent -= fraction.len() as i64;
    let significant = digits.trim_start_matches('0').len();
    digits = digits[digits.len() - significant..].to_string();
    if digits.is_empty() {
        return "0".to_string();
    }
    let kept = digits.trim_end_matches('0').len();
    exponent += (digits.len() - kept) as i64;
    digits.truncate(kept);
    let sign = if negative { "-" } else { "" };
    let length = digits.len() as i64;
    match exponent {
        0..=20 => format!("{sign}{digits}{}", "0".repeat(exponent as usize)),
        -20..=-1 if -exponent < length => {
            let point = (length + exponent) as usize;
            format!("{sign}{}.{}", &digits[..point], &digits[point..])
        }
        -20..=-1 => format!(
            "{sign}0.{}{digits}",
            "0".repeat((-exponent - length) as usize)
        ),
        _ => format!("{sign}{digits}e{exponent}"),
    }
}

/// The loader's actions that write the snapshot's items back (pure).
pub fn load_actions(
    dir: &Path,
    tables: &[TableSchema],
    sizes: &BTreeMap<String, PartRecord>,
) -> Vec<Action> {
    tables
        .iter()
        .flat_map(|table| {
            table.files.iter().map(move |file| Action {
                file: file.clone(),
                path: dir.join(file),
                size: sizes.get(file).map_or(0, |p| p.bytes),
                target: PlannedTarget::Table {
                    table: table.name.clone(),
                },
                restore: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_sorted_at_any_depth_and_lists_keep_their_order() {
        let mut item = serde_json::json!({
            "tags": {"SS": ["b", "a"]},
            "nested": {"M": {"n": {"NS": ["3", "1"]}}},
            "list": {"L": [{"S": "z"}, {"S": "y"}]}
        });
        canonical_sets(&mut item);
        assert_eq!(item["tags"]["SS"], serde_json::json!(["a", "b"]));
        assert_eq!(
            item["nested"]["M"]["n"]["NS"],
            serde_json::json!(["1", "3"])
        );
        assert_eq!(item["list"]["L"][0]["S"], "z");
    }

    #[test]
    fn numbers_equal_in_value_have_one_canonical_text() {
        for same in ["2.5", "2.50", "+2.5", "02.5", "25e-1", "0.25E1"] {
            assert_eq!(canonical_number(same), "2.5", "{same}");
        }
        assert_eq!(canonical_number("1e2"), "100");
        assert_eq!(canonical_number("-0.000"), "0");
        assert_eq!(canonical_number("-7.0"), "-7");
        assert_eq!(canonical_number("0.0025"), "0.0025");
        assert_eq!(canonical_number("1e40"), "1e40");
        assert_eq!(canonical_number("12e-30"), "12e-30");
        assert_ne!(canonical_number("2.5"), canonical_number("2.05"));
        assert_eq!(canonical_number("abc"), "abc");
        let mut item = serde_json::json!({"n": {"N": "1.0"}, "s": {"NS": ["2.00"]}, "m": {"M": {"x": {"N": "10"}}}});
        canonical_numbers(&mut item);
        assert_eq!(
            item,
            serde_json::json!({"n": {"N": "1"}, "s": {"NS": ["2"]}, "m": {"M": {"x": {"N": "10"}}}})
        );
    }

    #[test]
    fn each_item_file_becomes_an_action_on_its_table() {
        let table = TableSchema {
            name: "t".into(),
            hash_key: "id".into(),
            range_key: None,
            attributes: Default::default(),
            indexes: vec![],
            items: 2,
            files: vec!["tables/t/00001.json".into(), "tables/t/00002.json".into()],
            stream_mark: None,
            export_hash: None,
        };
        let sizes = BTreeMap::from([(
            "tables/t/00001.json".to_string(),
            PartRecord {
                bytes: 9,
                blake3: String::new(),
            },
        )]);
        let actions = load_actions(Path::new("/s"), &[table], &sizes);
        assert_eq!(actions.len(), 2);
        assert_eq!(actions[0].path, Path::new("/s/tables/t/00001.json"));
        assert_eq!(actions[0].size, 9);
        assert_eq!(
            actions[1].target,
            PlannedTarget::Table { table: "t".into() }
        );
    }
}
