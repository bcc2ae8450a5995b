//! The S3 part of a snapshot: every bucket's objects, each distinct content stored once under its
//! BLAKE3, with key, type and metadata in `objects.jsonl`.
//!
//! A save fetches only what it cannot prove it has: an object listed with the ETag, size and
//! modification time it had at an earlier save (`.inframock/snapshots/.objects-index.json`) is
//! linked from the snapshot that holds its content, without a request for it; an object listed
//! with the ETag and size of a stored content (written again with the same bytes, as a load after
//! a restart does) costs a HEAD for its type and metadata, and its content is linked too.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, Context, Result};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::records::{content_path, BucketRecord, ObjectRecord};
use super::store::link_or_copy;
use crate::aws::{describe_error, AwsClients};
use crate::data::discover::{Action, ObjectAttributes, PlannedTarget};
use crate::data::fingerprint::{read_record, write_record, METADATA_KEY};

/// The index of contents fetched by earlier saves, inside `.inframock/snapshots/`.
const INDEX_FILE: &str = ".objects-index.json";
/// Objects fetched at once.
const FETCHES_AT_ONCE: usize = 8;

/// What an earlier save learnt about an object as listed (ETag, size, modification time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Indexed {
    etag: String,
    size: u64,
    modified: String,
    hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    metadata: BTreeMap<String, String>,
}

/// Index entries by endpoint, bucket and key.
type Index = HashMap<String, Indexed>;

fn index_key(endpoint: &str, bucket: &str, key: &str) -> String {
    format!("{endpoint}\n{bucket}\n{key}")
}

/// An object as listed.
struct Listed {
    bucket: String,
    key: String,
    etag: String,
    size: u64,
    modified: String,
}

/// What the S3 part saved.
pub struct SavedObjects {
    pub buckets: Vec<BucketRecord>,
    pub objects: Vec<ObjectRecord>,
    /// Objects fetched from the endpoint (the others were proven unchanged and linked).
    pub fetched: u64,
    pub notes: Vec<String>,
}

/// Saves every bucket's objects into `into` (a staging folder); `stored` are the contents earlier
/// snapshots hold (hash → file).
pub async fn save(
    clients: &AwsClients,
    snapshots_root: &Path,
    into: &Path,
    stored: &HashMap<String, PathBuf>,
) -> Result<SavedObjects> {
    let index_path = snapshots_root.join(INDEX_FILE);
    let index: Index = read_record(&index_path);
    let buckets = clients.s3.list_buckets().send().await.map_err(|e| {
        anyhow!(
            "listing buckets (ListBuckets at {}): {}",
            clients.url,
            describe_error(&e)
        )
    })?;
    let names: Vec<String> = buckets
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_string))
        .collect();
    let mut bucket_records = Vec::new();
    let mut listed = Vec::new();
    let mut notes = Vec::new();
    for name in names {
        let versioned = match crate::inventory::versioning_enabled(clients, &name).await {
            Ok(versioned) => versioned,
            Err(why) => {
                notes.push(format!(
                    "bucket {name}: whether it keeps versions could not be read ({why}); only the current version of each key is saved"
                ));
                false
            }
        };
        if versioned {
            notes.push(format!(
                "bucket {name} has versioning enabled: only the current version of each key is saved"
            ));
        }
        bucket_records.push(BucketRecord {
            name: name.clone(),
            versioned,
        });
        let mut pages = clients
            .s3
            .list_objects_v2()
            .bucket(&name)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                anyhow!(
                    "listing bucket {name} (ListObjectsV2 at {}): {}",
                    clients.url,
                    describe_error(&e)
                )
            })?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                listed.push(Listed {
                    bucket: name.clone(),
                    key: key.to_string(),
                    etag: object.e_tag().unwrap_or_default().to_string(),
                    size: u64::try_from(object.size().unwrap_or(0)).unwrap_or(0),
                    modified: object
                        .last_modified()
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                });
            }
        }
    }
    // The same content under another listing (the object was written again with the same bytes,
    // e.g. by a load after a restart): its ETag and size name it.
    let by_etag: HashMap<(&str, u64), &str> = index
        .values()
        .filter(|i| !i.etag.is_empty() && stored.contains_key(&i.hash))
        .map(|i| ((i.etag.as_str(), i.size), i.hash.as_str()))
        .collect();
    let learnt: Mutex<Index> = Mutex::new(HashMap::new());
    let fetched = std::sync::atomic::AtomicU64::new(0);
    let temporary = std::sync::atomic::AtomicU64::new(0);
    let mut objects: Vec<ObjectRecord> = stream::iter(listed)
        .map(|object| {
            let (index, learnt, fetched, temporary, by_etag) =
                (&index, &learnt, &fetched, &temporary, &by_etag);
            async move {
                let key = index_key(&clients.url, &object.bucket, &object.key);
                let unchanged = match index.get(&key) {
                    Some(known)
                        if known.etag == object.etag
                            && known.size == object.size
                            && known.modified == object.modified
                            && link_stored(stored, into, &known.hash)? =>
                    {
                        Some(known.clone())
                    }
                    _ => None,
                };
                let found = match (unchanged, by_etag.get(&(object.etag.as_str(), object.size))) {
                    (Some(known), _) => known,
                    (None, Some(hash)) => {
                        let found = head_only(clients, &object, hash).await?;
                        link_stored(stored, into, hash)?;
                        found
                    }
                    (None, None) => {
                        let number = temporary.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let found = fetch(clients, &object, into, stored, number).await?;
                        fetched.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        found
                    }
                };
                if let Ok(mut learnt) = learnt.lock() {
                    learnt.insert(key, found.clone());
                }
                Ok::<ObjectRecord, anyhow::Error>(record(&object, &found))
            }
        })
        .buffer_unordered(FETCHES_AT_ONCE)
        .try_collect()
        .await?;
    objects.sort_by(|a, b| (&a.bucket, &a.key).cmp(&(&b.bucket, &b.key)));
    // The index keeps what this save saw (objects since deleted are forgotten).
    write_record(&index_path, &learnt.into_inner().unwrap_or_default());
    Ok(SavedObjects {
        buckets: bucket_records,
        objects,
        fetched: fetched.into_inner(),
        notes,
    })
}

/// Puts a content an earlier snapshot stores into the snapshot being written (a hard link);
/// whether the snapshot now holds it (linked, or placed already by another object of this save).
fn link_stored(stored: &HashMap<String, PathBuf>, into: &Path, hash: &str) -> Result<bool> {
    let target = into.join(content_path(hash));
    if let Some(from) = stored.get(hash) {
        link_or_copy(from, &target).with_context(|| format!("linking {}", target.display()))?;
    }
    Ok(target.exists())
}

fn record(object: &Listed, known: &Indexed) -> ObjectRecord {
    ObjectRecord {
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        hash: known.hash.clone(),
        size: object.size,
        etag: Some(object.etag.clone()).filter(|e| !e.is_empty()),
        content_type: known.content_type.clone(),
        metadata: known.metadata.clone(),
    }
}

/// An object whose content a snapshot holds already (same ETag and size): only its type and
/// metadata are asked (HEAD).
async fn head_only(clients: &AwsClients, object: &Listed, hash: &str) -> Result<Indexed> {
    let what = format!("s3://{}/{}", object.bucket, object.key);
    let head = clients
        .s3
        .head_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "reading {what} (HeadObject at {}): {}",
                clients.url,
                describe_error(&e)
            )
        })?;
    Ok(Indexed {
        etag: object.etag.clone(),
        size: object.size,
        modified: object.modified.clone(),
        hash: hash.to_string(),
        content_type: head.content_type().map(str::to_string),
        metadata: user_metadata(head.metadata()),
    })
}

/// An object's user metadata, sorted.
fn user_metadata(metadata: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
    metadata
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// Fetches one object into the staging folder, hashing it as it streams; the content is stored
/// once (a content another object or snapshot has is not kept twice).
async fn fetch(
    clients: &AwsClients,
    object: &Listed,
    into: &Path,
    stored: &HashMap<String, PathBuf>,
    number: u64,
) -> Result<Indexed> {
    let what = format!("s3://{}/{}", object.bucket, object.key);
    let output = clients
        .s3
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "fetching {what} (GetObject at {}): {}",
                clients.url,
                describe_error(&e)
            )
        })?;
    let content_type = output.content_type().map(str::to_string);
    let metadata = user_metadata(output.metadata());
    let objects_dir = into.join("objects");
    tokio::fs::create_dir_all(&objects_dir).await?;
    let temporary = objects_dir.join(format!(".fetching-{number}"));
    let mut file = tokio::fs::File::create(&temporary)
        .await
        .with_context(|| format!("creating {}", temporary.display()))?;
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    let mut body = output.body;
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| anyhow!("fetching {what}: the body broke off ({e})"))?
    {
        hasher.update(&chunk);
        size += chunk.len() as u64;
        file.write_all(&chunk)
            .await
            .with_context(|| format!("writing {}", temporary.display()))?;
    }
    file.sync_all().await?;
    drop(file);
    let hash = hasher.finalize().to_hex().to_string();
    let target = into.join(content_path(&hash));
    if link_stored(stored, into, &hash)? {
        tokio::fs::remove_file(&temporary).await?;
    } else {
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::rename(&temporary, &target).await?;
    }
    Ok(Indexed {
        etag: object.etag.clone(),
        size,
        modified: object.modified.clone(),
        hash,
        content_type,
        metadata,
    })
}

/// The fingerprint an object written from a snapshot carries: the data folder's own, when the
/// object came from there (so a reload of the data folder still sees it as unchanged), else the
/// fingerprint of a plain copy of its content.
pub fn fingerprint_of(object: &ObjectRecord) -> String {
    object
        .metadata
        .get(METADATA_KEY)
        .cloned()
        .unwrap_or_else(|| format!("v1-copy-{}", object.hash))
}

/// The loader's actions that write the snapshot's objects back (pure).
pub fn load_actions(dir: &Path, objects: &[ObjectRecord]) -> Vec<Action> {
    objects
        .iter()
        .map(|object| {
            let mut metadata = object.metadata.clone();
            metadata.remove(METADATA_KEY);
            Action {
                file: format!("{}/{}", object.bucket, object.key),
                path: dir.join(object.content_path()),
                size: object.size,
                target: PlannedTarget::Object {
                    bucket: object.bucket.clone(),
                    key: object.key.clone(),
                    gunzip: false,
                },
                restore: Some(ObjectAttributes {
                    content_type: object.content_type.clone(),
                    metadata,
                    fingerprint: fingerprint_of(object),
                    etag: object.etag.clone(),
                    size: object.size,
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(metadata: &[(&str, &str)]) -> ObjectRecord {
        ObjectRecord {
            bucket: "b".into(),
            key: "k/x.json".into(),
            hash: "ab".repeat(32),
            size: 3,
            etag: Some("\"e\"".into()),
            content_type: Some("application/json".into()),
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn an_object_from_the_data_folder_keeps_its_fingerprint_and_others_get_their_contents() {
        assert_eq!(
            fingerprint_of(&object(&[(METADATA_KEY, "v1-gunzip-123")])),
            "v1-gunzip-123"
        );
        assert_eq!(
            fingerprint_of(&object(&[])),
            format!("v1-copy-{}", "ab".repeat(32))
        );
    }

    #[test]
    fn load_actions_write_each_object_from_its_content_with_its_type_and_metadata() {
        let actions = load_actions(
            Path::new("/s"),
            &[object(&[("owner", "me"), (METADATA_KEY, "f")])],
        );
        let action = &actions[0];
        assert_eq!(
            action.path,
            Path::new("/s/objects/ab").join("ab".repeat(32))
        );
        assert_eq!(
            action.target,
            PlannedTarget::Object {
                bucket: "b".into(),
                key: "k/x.json".into(),
                gunzip: false
            }
        );
        let restore = action.restore.as_ref().unwrap();
        assert_eq!(restore.fingerprint, "f");
        let metadata = HashMap::from([("owner".to_string(), "me".to_string())]);
        assert!(restore.held_by(Some("\"e\""), Some(3), Some("application/json"), &metadata));
        assert!(!restore.held_by(Some("\"x\""), Some(3), Some("application/json"), &metadata));
        assert!(!restore.held_by(Some("\"e\""), Some(3), Some("text/plain"), &metadata));
        assert!(!restore.held_by(
            Some("\"e\""),
            Some(3),
            Some("application/json"),
            &HashMap::new()
        ));
        assert_eq!(
            restore.metadata.len(),
            1,
            "the fingerprint is not kept twice"
        );
        assert_eq!(restore.content_type.as_deref(), Some("application/json"));
    }
}
