//! What a snapshot holds, line by line: the records of `resources.json`, `objects.jsonl`,
//! `queues.jsonl` and `redis.jsonl` (pure data, shared by save, load and diff).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stack_file::{IndexDecl, KeyType, Projection, TableDecl};

/// The parts of a snapshot folder, each read and written by the name here (items are in
/// `tables/<table>/NNNNN.json`, contents in `objects/<hh>/<hash>`).
pub const RESOURCES_FILE: &str = "resources.json";
/// The object records (`ObjectRecord`, one per line).
pub const OBJECTS_FILE: &str = "objects.jsonl";
/// The messages (`MessageRecord`, one per line).
pub const QUEUES_FILE: &str = "queues.jsonl";
/// The older versions of objects in versioned buckets (`VersionRecord`, one per line).
pub const VERSIONS_FILE: &str = "versions.jsonl";
/// The Redis keys (`RedisRecord`, one per line).
pub const REDIS_FILE: &str = "redis.jsonl";

/// `resources.json`: what must exist before the contents can be loaded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default)]
    pub buckets: Vec<BucketRecord>,
    #[serde(default)]
    pub tables: Vec<TableSchema>,
    #[serde(default)]
    pub queues: Vec<QueueRecord>,
}

/// A bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub name: String,
    /// Versioning was enabled: its older versions and delete markers are in `versions.jsonl`.
    #[serde(default)]
    pub versioned: bool,
    /// What the save knew of the bucket's history before it read it, on an engine that can prove
    /// a history unchanged without listing it (moto): a later save that finds the same reuses
    /// this snapshot's history of the bucket instead of listing every version again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_mark: Option<HistoryMark>,
}

/// A versioned bucket's history as a later save can check it cheaply, one `HEAD` per entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryMark {
    /// When the bucket was created (`ListBuckets`): a bucket deleted and created again under the
    /// same name is another bucket.
    pub bucket_created: Option<String>,
    /// How many key names the bucket held, hidden ones (whose newest entry is a delete marker)
    /// included, counted by the engine before the history was listed.
    pub key_names: u64,
    /// The bytes of every version listed (current ones included): what the engine's listing
    /// copies, which decides whether checking the mark is the cheaper way.
    #[serde(default)]
    pub bytes: u64,
    /// Each key's version and delete-marker ids: its newest first, then the others in id order.
    pub keys: BTreeMap<String, Vec<String>>,
    /// Keys whose one entry is an object written in a second at least two before the mark was
    /// taken, as listed then. Any later write or delete of such a key changes what `ListObjectsV2`
    /// shows of it (its modification time, or its presence), so a listing that shows it the same
    /// proves it unchanged without a `HEAD` (`history::entries_to_check`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settled: BTreeMap<String, ListedStamp>,
}

/// An object as a listing shows it: what a write of the key changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedStamp {
    pub etag: String,
    pub size: u64,
    /// The modification time as the listing gives it (whole seconds on moto).
    pub modified: String,
}

/// A table's key schema and global secondary indexes, as the engine described them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    pub name: String,
    pub hash_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_key: Option<String>,
    /// The type (`S`, `N`, `B`) of every key attribute of the table and its indexes.
    pub attributes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<IndexSchema>,
    /// Items saved.
    pub items: u64,
    /// The item files under `tables/<name>/`, in order.
    pub files: Vec<String>,
    /// Where the table's change stream stood before its items were read, when it has one: a later
    /// save that finds no stream record after this mark reuses these files instead of reading the
    /// table again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_mark: Option<StreamMark>,
    /// The BLAKE3 hash of the table's export as the engine wrote it (the export's text, unzipped),
    /// when it was read through one: a later save whose export has the same text holds the same
    /// items, and reuses these files instead of parsing them again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_hash: Option<String>,
}

/// A position in a table's DynamoDB stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMark {
    /// The stream (its ARN names the table and the stream's creation).
    pub stream_arn: String,
    /// When the table was created (epoch milliseconds, as the engine described it): a table
    /// deleted and created again under the same name is another table.
    pub table_created_ms: Option<i64>,
    /// Each shard's last record's sequence number; `None`: the shard held no record yet.
    pub shards: BTreeMap<String, Option<String>>,
}

/// A global secondary index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexSchema {
    pub name: String,
    pub hash_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_key: Option<String>,
    /// `ALL`, `KEYS_ONLY` or `INCLUDE`.
    pub projection: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_key_attributes: Vec<String>,
}

impl TableSchema {
    /// The key attributes, hash first, with their types.
    pub fn key(&self) -> Vec<(String, String)> {
        let typed = |name: &String| {
            (
                name.clone(),
                self.attributes
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| "S".into()),
            )
        };
        std::iter::once(&self.hash_key)
            .chain(self.range_key.as_ref())
            .map(typed)
            .collect()
    }

    /// The table as a declaration, to create it with the code that creates declared tables.
    pub fn as_declaration(&self) -> TableDecl {
        TableDecl {
            name: self.name.clone(),
            hash_key: self.hash_key.clone(),
            range_key: self.range_key.clone(),
            attributes: self
                .attributes
                .iter()
                .filter_map(|(name, kind)| Some((name.clone(), key_type(kind)?)))
                .collect(),
            global_secondary_indexes: self
                .indexes
                .iter()
                .map(|index| IndexDecl {
                    name: index.name.clone(),
                    hash_key: index.hash_key.clone(),
                    range_key: index.range_key.clone(),
                    projection: match index.projection.as_str() {
                        "KEYS_ONLY" => Projection::KeysOnly,
                        "INCLUDE" => Projection::Include,
                        _ => Projection::All,
                    },
                    non_key_attributes: index.non_key_attributes.clone(),
                })
                .collect(),
        }
    }
}

fn key_type(text: &str) -> Option<KeyType> {
    match text {
        "S" => Some(KeyType::S),
        "N" => Some(KeyType::N),
        "B" => Some(KeyType::B),
        _ => None,
    }
}

/// How a declared table differs from the snapshot's (pure): empty when the snapshot's items fit.
/// Only the table's own key matters: items are written by that key.
pub fn key_difference(declared: &TableDecl, saved: &TableSchema) -> Vec<String> {
    let type_of = |decl: &TableDecl, name: &str| match decl.attributes.get(name) {
        Some(KeyType::N) => "N",
        Some(KeyType::B) => "B",
        _ => "S",
    };
    let declared_key: Vec<(String, String)> = std::iter::once(&declared.hash_key)
        .chain(declared.range_key.as_ref())
        .map(|name| (name.clone(), type_of(declared, name).to_string()))
        .collect();
    let saved_key = saved.key();
    let mut differences = Vec::new();
    let show = |key: &[(String, String)]| {
        key.iter()
            .zip(["hash", "range"])
            .map(|((name, kind), role)| format!("{role} {name} ({kind})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if declared_key != saved_key {
        differences.push(format!(
            "inframock.toml declares the key {}, the snapshot's items have {}",
            show(&declared_key),
            show(&saved_key)
        ));
    }
    differences
}

/// A queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRecord {
    pub name: String,
    #[serde(default)]
    pub fifo: bool,
    #[serde(default)]
    pub content_based_deduplication: bool,
    /// Messages saved.
    pub messages: u64,
    /// Messages that were in flight (received by a consumer, not yet deleted) and so not saved.
    #[serde(default)]
    pub in_flight_not_saved: u64,
}

/// One S3 object (`objects.jsonl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub bucket: String,
    pub key: String,
    /// BLAKE3 of the content: the file `objects/<hh>/<hash>`.
    pub hash: String,
    pub size: u64,
    /// The ETag the engine gave it (a hash of the content): a load skips an object that still
    /// has it (with the same size, type and metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-*`), including inframock's own source fingerprint.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// What a key of a versioned bucket held before its current object (`versions.jsonl`): an older
/// version, or a delete marker. A key's records are in the order they were written; its current
/// object (in `objects.jsonl`, none when the key's latest is a delete marker) comes after them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// Place in the key's history, 0 the oldest.
    pub position: u32,
    /// A delete marker: the key was deleted here (the record's content is empty).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_marker: bool,
    #[serde(flatten)]
    pub object: ObjectRecord,
}

/// The older versions among `versions`, as the objects whose contents the snapshot stores (a
/// delete marker has none).
pub fn older_objects(versions: &[VersionRecord]) -> impl Iterator<Item = &ObjectRecord> {
    versions
        .iter()
        .filter(|v| !v.delete_marker)
        .map(|v| &v.object)
}

impl ObjectRecord {
    /// Where the content lives inside the snapshot folder.
    pub fn content_path(&self) -> String {
        content_path(&self.hash)
    }
}

/// `objects/<hh>/<hash>`.
pub fn content_path(hash: &str) -> String {
    format!("objects/{}/{hash}", hash.get(..2).unwrap_or("00"))
}

/// One SQS message (`queues.jsonl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub queue: String,
    pub body: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, MessageAttribute>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deduplication_id: Option<String>,
}

/// A message attribute (`String`, `Number` or `Binary`, with an optional `.suffix`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageAttribute {
    pub data_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
    /// Base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_value: Option<String>,
}

/// One Redis key (`redis.jsonl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisRecord {
    /// The key's bytes, base64.
    pub key: String,
    /// Milliseconds left to live at the save; `None`: no expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// The `DUMP` payload, base64 (Redis' own serialization, checked by `RESTORE`).
    pub dump: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(hash: &str, range: Option<&str>, types: &[(&str, &str)]) -> TableSchema {
        TableSchema {
            name: "t".into(),
            hash_key: hash.into(),
            range_key: range.map(Into::into),
            attributes: types
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
            indexes: vec![],
            items: 0,
            files: vec![],
            stream_mark: None,
            export_hash: None,
        }
    }

    #[test]
    fn a_table_declared_with_another_key_is_a_difference_naming_both() {
        let declared: TableDecl = toml::from_str(
            "name = \"t\"\nhash_key = \"id\"\nrange_key = \"at\"\nattributes = { at = \"N\" }",
        )
        .unwrap();
        assert!(key_difference(
            &declared,
            &schema("id", Some("at"), &[("id", "S"), ("at", "N")])
        )
        .is_empty());
        let wrong = key_difference(
            &declared,
            &schema("id", Some("at"), &[("id", "S"), ("at", "S")]),
        );
        assert_eq!(
            wrong,
            vec!["inframock.toml declares the key hash id (S), range at (N), the snapshot's items have hash id (S), range at (S)".to_string()]
        );
        assert_eq!(key_difference(&declared, &schema("pk", None, &[])).len(), 1);
    }

    #[test]
    fn a_schema_becomes_the_declaration_that_creates_it() {
        let mut saved = schema("id", Some("n"), &[("id", "S"), ("n", "N"), ("g", "S")]);
        saved.indexes.push(IndexSchema {
            name: "by-g".into(),
            hash_key: "g".into(),
            range_key: None,
            projection: "KEYS_ONLY".into(),
            non_key_attributes: vec![],
        });
        let declaration = saved.as_declaration();
        assert_eq!(declaration.attributes.get("n"), Some(&KeyType::N));
        assert_eq!(
            declaration.global_secondary_indexes[0].projection,
            Projection::KeysOnly
        );
        assert!(crate::resources::table_definition(&declaration).is_ok());
    }

    #[test]
    fn contents_live_under_the_first_two_characters_of_their_hash() {
        assert_eq!(content_path("abcdef"), "objects/ab/abcdef");
    }
}
