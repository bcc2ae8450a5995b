//! The S3 part of a snapshot: every bucket's objects, each distinct content stored once under its
//! BLAKE3, with key, type and metadata in `objects.jsonl`.
//!
//! A save fetches only what it cannot prove it has: an object listed with the ETag, size and
//! modification time it had at an earlier save (`.inframock/snapshots/.objects-index.json`) is
//! linked from the snapshot that holds its content, without a request for it; an object listed
//! with the ETag and size of a stored content (written again with the same bytes, as a load after
//! a restart does) costs a HEAD for its type and metadata, and its content is linked too.
//!
//! A versioned bucket's older versions and delete markers are kept too (`versions.jsonl`), their
//! contents in the same store; a version never changes, so one an earlier save fetched is linked.
//! On an engine whose listing of versions is costly (moto), a history an earlier save's mark proves
//! unchanged is taken from that snapshot instead of listed (`snapshot::history`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, Context, Result};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::earlier::EarlierSnapshot;
use super::history;
use super::records::{
    content_path, BucketRecord, HistoryMark, ListedStamp, ObjectRecord, VersionRecord,
};
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

/// An object as listed: a key's current object, or an older version of it.
struct Listed {
    bucket: String,
    key: String,
    etag: String,
    size: u64,
    modified: String,
    version: Option<OlderVersion>,
}

/// Which older version of its key a listed object is.
#[derive(Clone)]
struct OlderVersion {
    id: String,
    position: u32,
}

/// What the S3 part saved.
pub struct SavedObjects {
    pub buckets: Vec<BucketRecord>,
    pub objects: Vec<ObjectRecord>,
    /// Older versions and delete markers of versioned buckets, by bucket, key and position.
    pub versions: Vec<VersionRecord>,
    /// Objects fetched from the endpoint (the others were proven unchanged and linked).
    pub fetched: u64,
    /// Versioned buckets whose history was proven unchanged since an earlier snapshot and taken
    /// from it instead of listed again.
    pub histories_unchanged: Vec<String>,
    pub notes: Vec<String>,
}

/// How the S3 part reads the endpoint.
#[derive(Clone, Copy)]
pub struct ObjectReading<'a> {
    /// This save's own bucket for table exports (`export::ExportBucket`), which is not the user's
    /// state and is left out.
    pub export_bucket: Option<&'a str>,
    /// On an engine whose histories are checked against marks (`BucketHistory::CheckedAgainstMark`):
    /// the earlier snapshots, newest first, whose history of a bucket an unchanged one reuses.
    /// `None`: every versioned bucket's history is listed.
    pub history_marks: Option<&'a [EarlierSnapshot]>,
}

/// Saves every bucket's objects into `into` (a staging folder); `stored` are the contents earlier
/// snapshots hold (hash → file); `reading` says which bucket to leave out and whether a versioned
/// bucket's history may be checked against an earlier save's mark instead of listed.
pub async fn save(
    clients: &AwsClients,
    snapshots_root: &Path,
    into: &Path,
    stored: &HashMap<String, PathBuf>,
    reading: ObjectReading<'_>,
) -> Result<SavedObjects> {
    let ObjectReading {
        export_bucket,
        history_marks,
    } = reading;
    let index_path = snapshots_root.join(INDEX_FILE);
    let index: Index = read_record(&index_path);
    let buckets = clients.s3.list_buckets().send().await.map_err(|e| {
        anyhow!(
            "listing buckets (ListBuckets at {}): {}",
            clients.url,
            describe_error(&e)
        )
    })?;
    let names: Vec<(String, Option<String>)> = buckets
        .buckets()
        .iter()
        .filter_map(|b| {
            Some((
                b.name()?.to_string(),
                b.creation_date().map(|t| t.to_string()),
            ))
        })
        .filter(|(name, _)| Some(name.as_str()) != export_bucket)
        .collect();
    let mut bucket_records = Vec::new();
    let mut listed = Vec::new();
    let mut history_records = Vec::new();
    let mut histories_unchanged = Vec::new();
    let mut notes = Vec::new();
    for (name, created) in names {
        let versioned = match crate::inventory::versioning_enabled(clients, &name).await {
            Ok(versioned) => versioned,
            Err(why) => {
                notes.push(format!(
                    "bucket {name}: whether it keeps versions could not be read ({why}); only the current version of each key is saved"
                ));
                false
            }
        };
        // Counted before anything is read: a key name added after the count raises the next one.
        let taken = match (versioned, history_marks) {
            (true, Some(_)) => history::Taken::now(clients, &name).await,
            _ => None,
        };
        let current = list_current(clients, &name).await?;
        let mut history_mark = None;
        if versioned {
            let reading = HistoryReading {
                created,
                taken,
                history_marks,
                current: &current,
            };
            let history = read_history(clients, &name, reading, stored, into).await?;
            listed.extend(history.older);
            history_records.extend(history.records);
            if history.reused {
                histories_unchanged.push(name.clone());
            }
            history_mark = history.mark;
        }
        bucket_records.push(BucketRecord {
            name: name.clone(),
            versioned,
            history_mark,
        });
        listed.extend(current);
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
    let mut versions = Vec::new();
    let mut objects: Vec<ObjectRecord> = stream::iter(listed)
        .map(|object| {
            let (index, learnt, fetched, temporary, by_etag) =
                (&index, &learnt, &fetched, &temporary, &by_etag);
            async move {
                // A version's content never changes: its id names it in the index for good.
                let key = match &object.version {
                    Some(version) => index_key(
                        &clients.url,
                        &object.bucket,
                        &format!("{}\0{}", object.key, version.id),
                    ),
                    None => index_key(&clients.url, &object.bucket, &object.key),
                };
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
                Ok::<_, anyhow::Error>((
                    object.version.as_ref().map(|v| v.position),
                    record(&object, &found),
                ))
            }
        })
        .buffer_unordered(FETCHES_AT_ONCE)
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .filter_map(|(position, record)| match position {
            None => Some(record),
            Some(position) => {
                versions.push(VersionRecord {
                    position,
                    delete_marker: false,
                    object: record,
                });
                None
            }
        })
        .collect();
    versions.extend(history_records);
    objects.sort_by(|a, b| (&a.bucket, &a.key).cmp(&(&b.bucket, &b.key)));
    versions.sort_by(|a, b| {
        (&a.object.bucket, &a.object.key, a.position).cmp(&(
            &b.object.bucket,
            &b.object.key,
            b.position,
        ))
    });
    // The index keeps what this save saw (objects since deleted are forgotten); the versions of a
    // history proven unchanged were not listed, so what the index knew of them stays.
    let mut learnt = learnt.into_inner().unwrap_or_default();
    for bucket in &histories_unchanged {
        let prefix = index_key(&clients.url, bucket, "");
        learnt.extend(
            index
                .iter()
                .filter(|(key, _)| key.starts_with(&prefix) && key.contains('\0'))
                .map(|(key, known)| (key.clone(), known.clone())),
        );
    }
    write_record(&index_path, &learnt);
    Ok(SavedObjects {
        buckets: bucket_records,
        objects,
        versions,
        fetched: fetched.into_inner(),
        histories_unchanged,
        notes,
    })
}

/// A versioned bucket's history as this save reads it.
struct ReadHistory {
    /// Older versions listed, to fetch or link.
    older: Vec<Listed>,
    /// Delete markers listed, or the whole history taken from an earlier snapshot.
    records: Vec<VersionRecord>,
    /// The mark a later save checks the history against.
    mark: Option<HistoryMark>,
    /// Taken from an earlier snapshot whose mark proved it unchanged.
    reused: bool,
}

/// The current objects of `bucket`, as `ListObjectsV2` lists them.
async fn list_current(clients: &AwsClients, bucket: &str) -> Result<Vec<Listed>> {
    let mut listed = Vec::new();
    let mut pages = clients
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            anyhow!(
                "listing bucket {bucket} (ListObjectsV2 at {}): {}",
                clients.url,
                describe_error(&e)
            )
        })?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            listed.push(Listed {
                bucket: bucket.to_string(),
                key: key.to_string(),
                etag: object.e_tag().unwrap_or_default().to_string(),
                size: u64::try_from(object.size().unwrap_or(0)).unwrap_or(0),
                modified: object
                    .last_modified()
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                version: None,
            });
        }
    }
    Ok(listed)
}

/// What reading a versioned bucket's history goes by.
struct HistoryReading<'a> {
    /// When the bucket was created (`ListBuckets`).
    created: Option<String>,
    /// The engine's count of key names and the time, read before anything was listed (`None` on an
    /// engine that does not count, or when histories are not checked against marks).
    taken: Option<history::Taken>,
    /// The earlier snapshots whose marks a history may be checked against.
    history_marks: Option<&'a [EarlierSnapshot]>,
    /// The bucket's current objects, listed after the count.
    current: &'a [Listed],
}

/// A versioned bucket's history: taken from the earlier snapshot whose mark proves it unchanged
/// (`history_marks`, on an engine that can check one), with its contents linked; else listed.
async fn read_history(
    clients: &AwsClients,
    bucket: &str,
    reading: HistoryReading<'_>,
    stored: &HashMap<String, PathBuf>,
    into: &Path,
) -> Result<ReadHistory> {
    let HistoryReading {
        created,
        taken,
        history_marks,
        current,
    } = reading;
    let earlier = history_marks
        .and_then(|earlier| history::earlier_mark(earlier, bucket, created.as_deref()))
        .filter(|(_, mark)| history::checking_is_cheaper(mark));
    if let (Some(taken), Some((snapshot, mark))) = (taken, earlier) {
        let current: HashMap<String, ListedStamp> = current
            .iter()
            .map(|object| {
                let stamp = ListedStamp {
                    etag: object.etag.clone(),
                    size: object.size,
                    modified: object.modified.clone(),
                };
                (object.key.clone(), stamp)
            })
            .collect();
        if history::unchanged_since(clients, bucket, mark, taken.key_names, &current).await {
            if let Some(records) = history::earlier_history(snapshot, bucket) {
                let mut linked = true;
                for older in super::records::older_objects(&records) {
                    linked = linked && link_stored(stored, into, &older.hash)?;
                }
                if linked {
                    return Ok(ReadHistory {
                        older: Vec::new(),
                        records,
                        mark: Some(mark.clone()),
                        reused: true,
                    });
                }
            }
        }
    }
    let listing = list_versions(clients, bucket).await?.unwrap_or_default();
    let mark = taken.map(|taken| history::mark_of(created, taken, &listing));
    let (older, records) = history_of_listing(bucket, listing);
    Ok(ReadHistory {
        older,
        records,
        mark,
        reused: false,
    })
}

/// A versioned bucket's history from its listing: its older versions (to fetch) and its delete
/// markers, each placed in its key's history (oldest first). A key's current object is not in it.
fn history_of_listing(
    bucket: &str,
    listing: Vec<ListedVersion>,
) -> (Vec<Listed>, Vec<VersionRecord>) {
    struct Entry {
        key: String,
        modified: Option<aws_smithy_types::DateTime>,
        latest: bool,
        listed_at: usize,
        older: Option<Listed>,
    }
    let mut entries = Vec::new();
    for (listed_at, version) in listing.into_iter().enumerate() {
        // A key's current object is saved as an object, not as history.
        if version.latest && !version.delete_marker {
            continue;
        }
        let older = (!version.delete_marker).then(|| Listed {
            bucket: bucket.to_string(),
            key: version.key.clone(),
            etag: version.etag.clone(),
            size: version.size,
            modified: version.modified.map(|t| t.to_string()).unwrap_or_default(),
            version: Some(OlderVersion {
                id: version.version_id.clone().unwrap_or_else(|| "null".into()),
                position: 0,
            }),
        });
        entries.push(Entry {
            key: version.key,
            modified: version.modified,
            latest: version.latest,
            listed_at,
            older,
        });
    }
    // Oldest first, by time; among equal times (engines that list whole seconds) the latest goes
    // last, and of two entries of one list the one listed later is older (a listing gives each
    // key's versions, and its delete markers, newest first). A version and a delete marker of the
    // same second, neither the latest, cannot be ordered from the listing: the version goes first.
    entries.sort_by(|a, b| {
        (
            &a.key,
            a.modified.map(|t| (t.secs(), t.subsec_nanos())),
            a.latest,
            a.older.is_none(),
        )
            .cmp(&(
                &b.key,
                b.modified.map(|t| (t.secs(), t.subsec_nanos())),
                b.latest,
                b.older.is_none(),
            ))
            .then(b.listed_at.cmp(&a.listed_at))
    });
    let mut older = Vec::new();
    let mut markers = Vec::new();
    let mut position = 0u32;
    let mut previous_key: Option<String> = None;
    for entry in entries {
        if previous_key.as_deref() != Some(entry.key.as_str()) {
            position = 0;
            previous_key = Some(entry.key.clone());
        }
        match entry.older {
            Some(mut listed) => {
                if let Some(version) = listed.version.as_mut() {
                    version.position = position;
                }
                older.push(listed);
            }
            None => markers.push(VersionRecord {
                position,
                delete_marker: true,
                object: ObjectRecord {
                    bucket: bucket.to_string(),
                    key: entry.key,
                    hash: String::new(),
                    size: 0,
                    etag: None,
                    content_type: None,
                    metadata: BTreeMap::new(),
                },
            }),
        }
        position += 1;
    }
    (older, markers)
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
        .set_version_id(object.version.as_ref().map(|v| v.id.clone()))
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
        .set_version_id(object.version.as_ref().map(|v| v.id.clone()))
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

/// One entry of a versioned bucket's listing: a version or a delete marker.
pub struct ListedVersion {
    pub key: String,
    pub version_id: Option<String>,
    pub delete_marker: bool,
    /// The key's newest entry.
    pub latest: bool,
    pub etag: String,
    pub size: u64,
    pub modified: Option<aws_smithy_types::DateTime>,
}

/// Every version and delete marker of `bucket`, page by page as listed (each page's versions,
/// then its delete markers; each key's newest first); `None` when the bucket does not exist.
pub async fn list_versions(
    clients: &AwsClients,
    bucket: &str,
) -> Result<Option<Vec<ListedVersion>>> {
    let mut listed = Vec::new();
    let mut markers: (Option<String>, Option<String>) = (None, None);
    loop {
        let page = match clients
            .s3
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(markers.0.clone())
            .set_version_id_marker(markers.1.clone())
            .send()
            .await
        {
            Ok(page) => page,
            Err(e) if crate::aws::error_code(&e).as_deref() == Some("NoSuchBucket") => {
                return Ok(None)
            }
            Err(e) => {
                return Err(anyhow!(
                    "listing the versions of bucket {bucket} (ListObjectVersions at {}): {}",
                    clients.url,
                    describe_error(&e)
                ))
            }
        };
        for version in page.versions() {
            let Some(key) = version.key() else { continue };
            listed.push(ListedVersion {
                key: key.to_string(),
                version_id: version.version_id().map(str::to_string),
                delete_marker: false,
                latest: version.is_latest().unwrap_or(false),
                etag: version.e_tag().unwrap_or_default().to_string(),
                size: u64::try_from(version.size().unwrap_or(0)).unwrap_or(0),
                modified: version.last_modified().copied(),
            });
        }
        for marker in page.delete_markers() {
            let Some(key) = marker.key() else { continue };
            listed.push(ListedVersion {
                key: key.to_string(),
                version_id: marker.version_id().map(str::to_string),
                delete_marker: true,
                latest: marker.is_latest().unwrap_or(false),
                etag: String::new(),
                size: 0,
                modified: marker.last_modified().copied(),
            });
        }
        markers = (
            page.next_key_marker().map(str::to_string),
            page.next_version_id_marker().map(str::to_string),
        );
        if page.is_truncated() != Some(true) || markers == (None, None) {
            return Ok(Some(listed));
        }
    }
}

/// Every key of `bucket` that has any version or delete marker (a missing bucket has none).
pub async fn keys_with_versions(
    clients: &AwsClients,
    bucket: &str,
) -> Result<std::collections::BTreeSet<String>> {
    let listed = list_versions(clients, bucket).await?.unwrap_or_default();
    Ok(listed.into_iter().map(|version| version.key).collect())
}

/// Writes the history of each key in `versions` back (its older versions and delete markers in
/// their order; keys in parallel), before the key's current object is written; how many were
/// written.
pub async fn replay_history(
    clients: &AwsClients,
    dir: &Path,
    versions: &[VersionRecord],
) -> Result<u64> {
    let mut by_key: BTreeMap<(&str, &str), Vec<&VersionRecord>> = BTreeMap::new();
    for version in versions {
        by_key
            .entry((&version.object.bucket, &version.object.key))
            .or_default()
            .push(version);
    }
    let limits = crate::data::s3_upload::UploadLimits::default();
    stream::iter(by_key.into_values())
        .map(|mut history| {
            let limits = &limits;
            async move {
                history.sort_by_key(|v| v.position);
                for version in &history {
                    let object = &version.object;
                    let what = format!(
                        "s3://{}/{} (place {} of its history)",
                        object.bucket, object.key, version.position
                    );
                    if version.delete_marker {
                        clients
                            .s3
                            .delete_object()
                            .bucket(&object.bucket)
                            .key(&object.key)
                            .send()
                            .await
                            .map_err(|e| {
                                anyhow!("deleting {what} (a delete marker): {}", describe_error(&e))
                            })?;
                        continue;
                    }
                    let request = crate::data::s3_upload::UploadRequest {
                        bucket: &object.bucket,
                        key: &object.key,
                        source: &dir.join(object.content_path()),
                        gunzip: false,
                        content_type: object
                            .content_type
                            .as_deref()
                            .unwrap_or("application/octet-stream"),
                        metadata: object.metadata.clone().into_iter().collect(),
                    };
                    crate::data::s3_upload::upload(&clients.s3, &request, limits)
                        .await
                        .map_err(|e| anyhow!("writing {what}: {e}"))?;
                }
                Ok::<u64, anyhow::Error>(history.len() as u64)
            }
        })
        .buffer_unordered(FETCHES_AT_ONCE)
        .try_fold(0, |total, written| async move { Ok(total + written) })
        .await
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

/// The loader's actions that write the snapshot's objects back (pure). An object of a key in
/// `after_history` is written even when the bucket holds it: its older versions were written just
/// before, and it must be the key's latest again.
pub fn load_actions(
    dir: &Path,
    objects: &[ObjectRecord],
    after_history: &std::collections::BTreeSet<(String, String)>,
) -> Vec<Action> {
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
                    always: after_history.contains(&(object.bucket.clone(), object.key.clone())),
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
            &Default::default(),
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
