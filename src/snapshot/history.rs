//! Whether a versioned bucket's history (its older versions and delete markers) changed since an
//! earlier save, without listing it: on moto, `ListObjectVersions` copies every version of the
//! bucket, content included, before it pages (8 s for the benchmark's 2 GiB bucket), while a
//! `HEAD` costs a few milliseconds.
//!
//! Before it lists a history, a save asks the engine how many key names the bucket holds (moto's
//! CloudWatch `NumberOfObjects`, which counts every key name of the bucket's store, hidden ones
//! whose newest entry is a delete marker included) and records a `HistoryMark`: that count, and
//! each key's version and delete-marker ids. A later save proves the history unchanged when
//!
//! - the bucket is the same one (its creation time),
//! - the count is the same and the mark's own count matched its listing (nothing was written
//!   while it was taken),
//! - each key's newest entry is the same (`HEAD` without a version: no version or delete marker
//!   was added, and the newest was not deleted), and
//! - every older entry is still there (`HEAD` by version id: none was deleted).
//!
//! A key whose one entry is an object written at least two whole seconds before the mark was
//! taken (settled) needs no `HEAD`: the current listing, read anyway, shows it with the ETag, size
//! and modification time the mark recorded, or it changed. A new version, even of the same bytes,
//! is dated after the mark, and a delete marker or a deleted version takes the key out of the
//! listing. The benchmark's bucket (50 keys of one version each) was checked by 50 `HEAD`s, 0.1 s
//! of a second save on moto.
//!
//! A new key name, even one written and deleted since, raises the count; a key name that went
//! away fails its `HEAD`, so it cannot hide a new one. Anything else (no count, a failed request)
//! proves nothing, and the bucket is listed as on any engine.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_s3::error::SdkError;
use bytes::Bytes;
use futures::stream::{self, StreamExt};

use super::earlier::EarlierSnapshot;
use super::manifest::{check_part, read_lines};
use super::objects::ListedVersion;
use super::records::{HistoryMark, ListedStamp, VersionRecord, VERSIONS_FILE};
use crate::aws::{AwsClients, TEST_ACCESS_KEY};

/// What a check of a mark and a listing cost on moto, measured on a 2-core machine: a `HEAD`
/// about 6 ms (moto serves one at a time); its `ListObjectVersions` copies, for each page of 1,000,
/// every version of the bucket (about 0.43 ms each) and its content (about 4 s per GiB).
const HEAD_MS: f64 = 6.0;
const LIST_MS_PER_VERSION_PER_PAGE: f64 = 0.43;
const LIST_MS_PER_GIB_PER_PAGE: f64 = 4_000.0;
const VERSIONS_PER_PAGE: u64 = 1_000;

/// Whether checking `mark` (one `HEAD` per entry) costs less than listing the history it marks
/// (pure): true for a few large objects (100 versions of 2 GiB: 0.6 s against 8 s), false for
/// many small ones (3,000 versions of 100 bytes: 18 s against 3.9 s).
pub fn checking_is_cheaper(mark: &HistoryMark) -> bool {
    let entries: u64 = mark.keys.values().map(|ids| ids.len() as u64).sum();
    let pages = entries.div_ceil(VERSIONS_PER_PAGE).max(1) as f64;
    let gib = mark.bytes as f64 / f64::from(1u32 << 30);
    let checking = entries as f64 * HEAD_MS;
    let listing =
        pages * (entries as f64 * LIST_MS_PER_VERSION_PER_PAGE + gib * LIST_MS_PER_GIB_PER_PAGE);
    checking < listing
}

/// `HEAD` requests in flight at once while checking a mark.
const HEADS_AT_ONCE: usize = 16;
/// How long the engine may take to count a bucket's key names.
const COUNT_TIMEOUT: Duration = Duration::from_secs(10);

/// How many key names `bucket` holds, hidden ones included, as moto's CloudWatch counts them
/// (`AWS/S3` `NumberOfObjects`); `None` when the engine does not say. `now` (seconds since the
/// epoch) sets the window asked about.
pub async fn key_names(clients: &AwsClients, bucket: &str, now: u64) -> Option<u64> {
    let region = clients.region();
    // moto dates the datapoint at today's midnight (UTC).
    let body = serde_json::json!({
        "Namespace": "AWS/S3",
        "MetricName": "NumberOfObjects",
        "Dimensions": [
            {"Name": "StorageType", "Value": "AllStorageTypes"},
            {"Name": "BucketName", "Value": bucket},
        ],
        "StartTime": now.saturating_sub(2 * 86_400),
        "EndTime": now + 86_400,
        "Period": 86_400,
        "Statistics": ["Maximum"],
    });
    // The credential scope routes the request to CloudWatch and to the stack's account.
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={TEST_ACCESS_KEY}/20200101/{region}/monitoring/aws4_request, SignedHeaders=host, Signature=0"
    );
    let headers = [
        ("content-type", "application/x-amz-json-1.0"),
        (
            "x-amz-target",
            "GraniteServiceVersion20100801.GetMetricStatistics",
        ),
        ("authorization", authorization.as_str()),
    ];
    let url = format!("{}/", clients.url.trim_end_matches('/'));
    let (status, answer) = crate::http_client::post_with_headers(
        &url,
        &headers,
        Bytes::from(body.to_string()),
        COUNT_TIMEOUT,
    )
    .await
    .ok()?;
    if !status.is_success() {
        return None;
    }
    count_of(&serde_json::from_slice(&answer).ok()?)
}

/// The count a `GetMetricStatistics` answer holds (pure): its one datapoint's `Maximum`.
fn count_of(answer: &serde_json::Value) -> Option<u64> {
    let points = answer.get("Datapoints")?.as_array()?;
    let [point] = points.as_slice() else {
        return None;
    };
    let count = point.get("Maximum")?.as_f64()?;
    (count >= 0.0 && count.fract() == 0.0).then_some(count as u64)
}

/// How many whole seconds before a mark was taken an object must have been written to be settled
/// (`HistoryMark::settled`): the engine's clock and this one are the same machine's, and one
/// second more covers rounding.
const SETTLED_AFTER_S: i64 = 2;

/// When a history is counted and listed: the time a mark records as taken.
#[derive(Debug, Clone, Copy)]
pub struct Taken {
    /// Key names counted by the engine before anything was listed.
    pub key_names: u64,
    /// This machine's clock (seconds since the epoch), read before the count.
    pub at_s: i64,
}

impl Taken {
    /// Counts `bucket`'s key names now; `None` when the engine does not say.
    pub async fn now(clients: &AwsClients, bucket: &str) -> Option<Taken> {
        let now = crate::stack::up::now_seconds();
        Some(Taken {
            key_names: key_names(clients, bucket, now).await?,
            at_s: i64::try_from(now).ok()?,
        })
    }
}

/// The mark of a history just listed (pure), counted and timed (`taken`) before the listing.
pub fn mark_of(
    bucket_created: Option<String>,
    taken: Taken,
    listing: &[ListedVersion],
) -> HistoryMark {
    let mut newest: BTreeMap<String, String> = BTreeMap::new();
    let mut older: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut settled = BTreeMap::new();
    let bytes = listing.iter().map(|version| version.size).sum();
    for version in listing {
        let id = version.version_id.clone().unwrap_or_else(|| "null".into());
        if version.latest {
            let written_s = version.modified.map(|t| t.secs());
            if !version.delete_marker
                && written_s.is_some_and(|s| s + SETTLED_AFTER_S <= taken.at_s)
            {
                settled.insert(
                    version.key.clone(),
                    ListedStamp {
                        etag: version.etag.clone(),
                        size: version.size,
                        modified: version.modified.map(|t| t.to_string()).unwrap_or_default(),
                    },
                );
            }
            newest.insert(version.key.clone(), id);
        } else {
            older.entry(version.key.clone()).or_default().push(id);
        }
    }
    let mut keys = BTreeMap::new();
    for key in newest.keys().chain(older.keys()) {
        if keys.contains_key(key) {
            continue;
        }
        let mut others = older.get(key).cloned().unwrap_or_default();
        others.sort();
        // A key listed without its newest entry (a listing that raced a write) gets an empty
        // newest id, which no HEAD matches.
        let ids = std::iter::once(newest.get(key).cloned().unwrap_or_default())
            .chain(others)
            .collect();
        keys.insert(key.clone(), ids);
    }
    // A key with older entries is checked by HEAD whatever its newest shows: a listing of current
    // objects does not show an older entry deleted.
    settled.retain(|key, _| {
        keys.get(key)
            .is_some_and(|ids: &Vec<String>| ids.len() == 1)
    });
    HistoryMark {
        bucket_created,
        key_names: taken.key_names,
        bytes,
        keys,
        settled,
    }
}

/// The newest earlier snapshot with a mark of this bucket (the same bucket: created when it was).
pub fn earlier_mark<'a>(
    earlier: &'a [EarlierSnapshot],
    bucket: &str,
    bucket_created: Option<&str>,
) -> Option<(&'a EarlierSnapshot, &'a HistoryMark)> {
    earlier.iter().find_map(|snapshot| {
        let record = snapshot
            .resources
            .buckets
            .iter()
            .find(|b| b.name == bucket && b.versioned)?;
        let mark = record.history_mark.as_ref()?;
        (mark.bucket_created.as_deref() == bucket_created).then_some((snapshot, mark))
    })
}

/// The entries of `mark` a `HEAD` must check (pure): (key, id, whether it is the key's newest).
/// A settled key that `current` (the current objects listed after the count) shows as the mark
/// recorded it needs none: a new version would have a later modification time, a delete marker or
/// a deleted version would take the key out of the listing.
pub fn entries_to_check<'m>(
    mark: &'m HistoryMark,
    current: &HashMap<String, ListedStamp>,
) -> Vec<(&'m str, &'m str, bool)> {
    mark.keys
        .iter()
        .filter(|(key, _)| {
            let settled = mark.settled.get(*key);
            settled.is_none() || settled != current.get(*key)
        })
        .flat_map(|(key, ids)| {
            ids.iter()
                .enumerate()
                .map(move |(place, id)| (key.as_str(), id.as_str(), place == 0))
        })
        .collect()
}

/// Whether `bucket` holds exactly the history `mark` recorded, `key_names_now` being its count of
/// key names now (read before anything else) and `current` its current objects, listed after
/// the count.
pub async fn unchanged_since(
    clients: &AwsClients,
    bucket: &str,
    mark: &HistoryMark,
    key_names_now: u64,
    current: &HashMap<String, ListedStamp>,
) -> bool {
    // A mark whose count differs from its own listing was taken while the bucket changed.
    if mark.key_names != mark.keys.len() as u64 || key_names_now != mark.key_names {
        return false;
    }
    let checks = entries_to_check(mark, current);
    let mut results = stream::iter(checks)
        .map(|(key, id, newest)| async move {
            if newest {
                newest_entry(clients, bucket, key).await.as_deref() == Some(id)
            } else {
                entry_exists(clients, bucket, key, id).await
            }
        })
        .buffer_unordered(HEADS_AT_ONCE);
    while let Some(same) = results.next().await {
        if !same {
            return false;
        }
    }
    true
}

/// The id of `key`'s newest entry: its current version, or the delete marker that hides it.
async fn newest_entry(clients: &AwsClients, bucket: &str, key: &str) -> Option<String> {
    match clients
        .s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
    {
        Ok(head) => Some(head.version_id().unwrap_or("null").to_string()),
        Err(e) => {
            let headers = e.raw_response()?.headers();
            (headers.get("x-amz-delete-marker") == Some("true"))
                .then(|| headers.get("x-amz-version-id").map(str::to_string))
                .flatten()
        }
    }
}

/// Whether the version or delete marker `id` of `key` is still there (a delete marker answers a
/// `HEAD` with 405 and says what it is).
async fn entry_exists(clients: &AwsClients, bucket: &str, key: &str, id: &str) -> bool {
    match clients
        .s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .version_id(id)
        .send()
        .await
    {
        Ok(head) => head.version_id().unwrap_or("null") == id,
        Err(SdkError::ServiceError(e)) => {
            let raw = e.raw();
            raw.status().as_u16() == 405
                && raw.headers().get("x-amz-delete-marker") == Some("true")
                && raw.headers().get("x-amz-version-id") == Some(id)
        }
        Err(_) => false,
    }
}

/// The earlier snapshot's history of `bucket`, its part checked against its manifest first; `None`
/// when the part is missing, damaged or unreadable.
pub fn earlier_history(snapshot: &EarlierSnapshot, bucket: &str) -> Option<Vec<VersionRecord>> {
    let record = snapshot.manifest.parts.get(VERSIONS_FILE)?;
    check_part(&snapshot.dir.join(VERSIONS_FILE), record).ok()?;
    let history: Vec<VersionRecord> =
        read_lines(&snapshot.dir, &snapshot.manifest, VERSIONS_FILE).ok()?;
    Some(
        history
            .into_iter()
            .filter(|version| version.object.bucket == bucket)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(key: &str, id: &str, latest: bool, delete_marker: bool) -> ListedVersion {
        ListedVersion {
            key: key.into(),
            version_id: Some(id.into()),
            delete_marker,
            latest,
            etag: String::new(),
            size: 0,
            modified: None,
        }
    }

    /// A count of `key_names` taken at 1,000 s.
    fn taken(key_names: u64) -> Taken {
        Taken {
            key_names,
            at_s: 1_000,
        }
    }

    fn written_at(mut version: ListedVersion, secs: i64) -> ListedVersion {
        version.modified = Some(aws_smithy_types::DateTime::from_secs(secs));
        version.etag = format!("etag-{}", version.key);
        version.size = 3;
        version
    }

    #[test]
    fn a_key_whose_one_object_was_written_two_seconds_before_the_mark_is_settled() {
        let listing = [
            written_at(listed("old", "o1", true, false), 998),
            written_at(listed("recent", "r1", true, false), 999),
            written_at(listed("versions", "v2", true, false), 900),
            written_at(listed("versions", "v1", false, false), 800),
            written_at(listed("hidden", "h1", true, true), 900),
            listed("undated", "u1", true, false),
        ];
        let mark = mark_of(None, taken(5), &listing);
        assert_eq!(mark.settled.keys().collect::<Vec<_>>(), ["old"]);
        let stamp = &mark.settled["old"];
        assert_eq!((stamp.etag.as_str(), stamp.size), ("etag-old", 3));
        assert_eq!(
            stamp.modified,
            aws_smithy_types::DateTime::from_secs(998).to_string()
        );
    }

    #[test]
    fn a_settled_key_listed_as_the_mark_recorded_it_needs_no_head_and_any_other_does() {
        let listing = [
            written_at(listed("a", "a1", true, false), 900),
            written_at(listed("b", "b1", true, false), 900),
            written_at(listed("c", "c1", true, false), 999),
        ];
        let mark = mark_of(None, taken(3), &listing);
        let stamp = |key: &str| mark.settled[key].clone();
        let mut current: HashMap<String, ListedStamp> = HashMap::new();
        current.insert("a".into(), stamp("a"));
        // b written again with the same bytes: only its modification time differs.
        current.insert(
            "b".into(),
            ListedStamp {
                modified: aws_smithy_types::DateTime::from_secs(1_001).to_string(),
                ..stamp("b")
            },
        );
        let checks = entries_to_check(&mark, &current);
        assert_eq!(checks, [("b", "b1", true), ("c", "c1", true)]);
        // a gone from the listing (deleted, or hidden by a delete marker): it is checked too.
        current.remove("a");
        let checked: Vec<&str> = entries_to_check(&mark, &current)
            .into_iter()
            .map(|(key, _, _)| key)
            .collect();
        assert_eq!(checked, ["a", "b", "c"]);
    }

    #[test]
    fn a_mark_holds_each_keys_newest_entry_first_then_the_others_in_id_order() {
        let listing = [
            listed("a", "a3", true, false),
            listed("a", "a1", false, false),
            listed("b", "b1", false, false),
            listed("a", "a2", false, true),
            listed("b", "b2", true, true),
        ];
        let mark = mark_of(Some("2026-11-27".into()), taken(2), &listing);
        assert_eq!(mark.key_names, 2);
        assert_eq!(mark.keys["a"], ["a3", "a1", "a2"]);
        assert_eq!(mark.keys["b"], ["b2", "b1"]);
    }

    #[test]
    fn a_key_listed_without_its_newest_entry_gets_an_id_no_head_matches() {
        let mark = mark_of(None, taken(1), &[listed("a", "a1", false, false)]);
        assert_eq!(mark.keys["a"], ["", "a1"]);
    }

    #[test]
    fn a_version_without_an_id_is_the_null_version() {
        let mut version = listed("a", "x", true, false);
        version.version_id = None;
        assert_eq!(mark_of(None, taken(1), &[version]).keys["a"], ["null"]);
    }

    #[test]
    fn a_mark_records_the_bytes_a_listing_copies() {
        let mut big = listed("a", "a2", true, false);
        big.size = 5;
        let mut older = listed("a", "a1", false, false);
        older.size = 7;
        assert_eq!(mark_of(None, taken(1), &[big, older]).bytes, 12);
    }

    #[test]
    fn a_mark_is_checked_only_where_its_heads_cost_less_than_the_listing() {
        let mark = |versions: usize, bytes_each: u64| HistoryMark {
            bucket_created: None,
            key_names: versions as u64,
            bytes: versions as u64 * bytes_each,
            keys: (0..versions)
                .map(|n| (format!("k{n}"), vec![format!("v{n}")]))
                .collect(),
            settled: BTreeMap::new(),
        };
        // The benchmark's bucket: 100 objects of 20 MiB.
        assert!(checking_is_cheaper(&mark(100, 20 << 20)));
        // Many small objects: the listing is cheaper.
        assert!(!checking_is_cheaper(&mark(3_000, 100)));
        assert!(!checking_is_cheaper(&mark(1, 0)));
        // 10,000 objects of 1 MiB: ten pages, each copying 10 GiB.
        assert!(checking_is_cheaper(&mark(10_000, 1 << 20)));
    }

    #[test]
    fn the_count_is_the_one_datapoints_maximum() {
        let answer = |points: serde_json::Value| serde_json::json!({"Datapoints": points});
        assert_eq!(
            count_of(&answer(serde_json::json!([{"Maximum": 2.0}]))),
            Some(2)
        );
        assert_eq!(count_of(&answer(serde_json::json!([]))), None);
        assert_eq!(
            count_of(&answer(
                serde_json::json!([{"Maximum": 2.0}, {"Maximum": 3.0}])
            )),
            None
        );
        assert_eq!(
            count_of(&answer(serde_json::json!([{"Maximum": 1.5}]))),
            None
        );
        assert_eq!(count_of(&serde_json::json!({})), None);
    }
}
