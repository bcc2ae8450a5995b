//! `snapshot diff A B`: what changed from A to B — objects, items, messages, keys.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::manifest::{self, Manifest};
use super::records::{
    MessageRecord, ObjectRecord, RedisRecord, Resources, VersionRecord, QUEUES_FILE, REDIS_FILE,
    RESOURCES_FILE, VERSIONS_FILE,
};
use super::tables::{canonical_numbers, canonical_sets};
use crate::data::dynamo_json::{item_to_typed, key_as_typed_json, parse_items};
use crate::data::fingerprint::METADATA_KEY;

/// What was added, removed or changed, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl Changes {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// The differences between two snapshots.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotDiff {
    pub from: String,
    pub to: String,
    /// `bucket/key`.
    pub objects: Changes,
    /// Per table, items by key (typed JSON of the key). Numbers compare by value (`2.50` = `2.5`).
    pub items: BTreeMap<String, Changes>,
    /// Per queue, messages by body (a message saved twice counts twice).
    pub messages: BTreeMap<String, Changes>,
    /// Keys (as text, lossy for binary keys).
    pub redis: Changes,
}

impl SnapshotDiff {
    /// The two snapshots hold the same state.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
            && self.items.values().all(Changes::is_empty)
            && self.messages.values().all(Changes::is_empty)
            && self.redis.is_empty()
    }
}

/// Compares two keyed sets (pure).
pub fn compare<V: PartialEq>(from: &BTreeMap<String, V>, to: &BTreeMap<String, V>) -> Changes {
    let mut changes = Changes::default();
    for (name, value) in to {
        match from.get(name) {
            None => changes.added.push(name.clone()),
            Some(old) if old != value => changes.changed.push(name.clone()),
            Some(_) => {}
        }
    }
    changes.removed = from
        .keys()
        .filter(|name| !to.contains_key(*name))
        .cloned()
        .collect();
    changes
}

/// Compares two multisets of messages (pure): a message is added when B holds it more often.
pub fn compare_counts(from: &BTreeMap<String, u64>, to: &BTreeMap<String, u64>) -> Changes {
    let mut changes = Changes::default();
    for (body, count) in to {
        let old = from.get(body).copied().unwrap_or(0);
        changes.added.extend(std::iter::repeat_n(
            body.clone(),
            count.saturating_sub(old) as usize,
        ));
    }
    for (body, count) in from {
        let new = to.get(body).copied().unwrap_or(0);
        changes.removed.extend(std::iter::repeat_n(
            body.clone(),
            count.saturating_sub(new) as usize,
        ));
    }
    changes
}

/// What an object is, for comparison: content hash, type, metadata.
type ObjectIdentity = (String, Option<String>, BTreeMap<String, String>);

/// One snapshot's contents, keyed for comparison.
struct Contents {
    objects: BTreeMap<String, ObjectIdentity>,
    items: BTreeMap<String, BTreeMap<String, String>>,
    messages: BTreeMap<String, BTreeMap<String, u64>>,
    redis: BTreeMap<String, (String, bool)>,
}

fn contents(dir: &Path, manifest: &Manifest) -> Result<Contents> {
    let identity = |o: ObjectRecord| {
        let mut metadata = o.metadata;
        metadata.remove(METADATA_KEY);
        (o.hash, o.content_type, metadata)
    };
    let mut objects: BTreeMap<String, ObjectIdentity> = manifest::read_objects(dir, manifest)?
        .into_iter()
        .map(|o| (format!("{}/{}", o.bucket, o.key), identity(o)))
        .collect();
    // A key's history compares place by place: `bucket/key (older version 0)`, ...
    let versions: Vec<VersionRecord> = manifest::read_lines(dir, manifest, VERSIONS_FILE)?;
    for version in versions {
        let name = format!(
            "{}/{} ({} {})",
            version.object.bucket,
            version.object.key,
            if version.delete_marker {
                "delete marker"
            } else {
                "older version"
            },
            version.position
        );
        objects.insert(name, identity(version.object));
    }
    let resources: Resources = manifest::read_json(dir, manifest, RESOURCES_FILE)?;
    let mut items = BTreeMap::new();
    for table in &resources.tables {
        let key_names: Vec<String> = table.key().into_iter().map(|(n, _)| n).collect();
        let mut by_key = BTreeMap::new();
        for file in &table.files {
            let text = std::fs::read_to_string(dir.join(file))
                .with_context(|| format!("snapshot {}: reading {file}", manifest.name))?;
            let (_, parsed) = parse_items(&text)
                .map_err(|e| anyhow::anyhow!("snapshot {}: {file}: {e}", manifest.name))?;
            for item in parsed {
                let mut typed = item_to_typed(&item);
                canonical_numbers(&mut typed);
                canonical_sets(&mut typed);
                let mut key = key_as_typed_json(&item, &key_names);
                canonical_numbers(&mut key);
                by_key.insert(key.to_string(), typed.to_string());
            }
        }
        items.insert(table.name.clone(), by_key);
    }
    let mut messages: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for queue in &resources.queues {
        messages.entry(queue.name.clone()).or_default();
    }
    for message in manifest::read_lines::<MessageRecord>(dir, manifest, QUEUES_FILE)? {
        let shown = if message.attributes.is_empty() && message.group_id.is_none() {
            message.body.clone()
        } else {
            format!(
                "{} (group {}, {} attribute(s))",
                message.body,
                message.group_id.as_deref().unwrap_or("-"),
                message.attributes.len()
            )
        };
        *messages
            .entry(message.queue.clone())
            .or_default()
            .entry(shown)
            .or_default() += 1;
    }
    let redis = manifest::read_lines::<RedisRecord>(dir, manifest, REDIS_FILE)?
        .into_iter()
        .map(|r| {
            use base64::Engine;
            let key = base64::engine::general_purpose::STANDARD
                .decode(&r.key)
                .map(|k| String::from_utf8_lossy(&k).into_owned())
                .unwrap_or(r.key);
            (key, (r.dump, r.ttl_ms.is_some()))
        })
        .collect();
    Ok(Contents {
        objects,
        items,
        messages,
        redis,
    })
}

/// The differences from snapshot folder `from` to `to`.
pub fn diff(from: &Path, to: &Path) -> Result<SnapshotDiff> {
    let from_manifest = manifest::read(from)?;
    let to_manifest = manifest::read(to)?;
    let a = contents(from, &from_manifest)?;
    let b = contents(to, &to_manifest)?;
    let mut items = BTreeMap::new();
    for table in a.items.keys().chain(b.items.keys()) {
        let empty = BTreeMap::new();
        let changes = compare(
            a.items.get(table).unwrap_or(&empty),
            b.items.get(table).unwrap_or(&empty),
        );
        items.insert(table.clone(), changes);
    }
    let mut messages = BTreeMap::new();
    for queue in a.messages.keys().chain(b.messages.keys()) {
        let empty = BTreeMap::new();
        let changes = compare_counts(
            a.messages.get(queue).unwrap_or(&empty),
            b.messages.get(queue).unwrap_or(&empty),
        );
        messages.insert(queue.clone(), changes);
    }
    Ok(SnapshotDiff {
        from: from_manifest.name,
        to: to_manifest.name,
        objects: compare(&a.objects, &b.objects),
        items,
        messages,
        redis: compare(&a.redis, &b.redis),
    })
}

/// The differences as text: one line per kind with counts, then up to `shown` names of each.
pub fn render(diff: &SnapshotDiff, shown: usize) -> String {
    if diff.is_empty() {
        return format!("{} and {} hold the same state\n", diff.from, diff.to);
    }
    let mut text = format!("from {} to {}:\n", diff.from, diff.to);
    let mut section = |title: String, changes: &Changes| {
        if changes.is_empty() {
            return;
        }
        text.push_str(&format!(
            "{title}: {} added, {} removed, {} changed\n",
            changes.added.len(),
            changes.removed.len(),
            changes.changed.len()
        ));
        for (sign, names) in [
            ("+", &changes.added),
            ("-", &changes.removed),
            ("~", &changes.changed),
        ] {
            for name in names.iter().take(shown) {
                text.push_str(&format!("  {sign} {name}\n"));
            }
            if names.len() > shown {
                text.push_str(&format!(
                    "  {sign} ... {} more (--json lists all)\n",
                    names.len() - shown
                ));
            }
        }
    };
    section("objects".into(), &diff.objects);
    for (table, changes) in &diff.items {
        section(format!("table {table}"), changes);
    }
    for (queue, changes) in &diff.messages {
        section(format!("queue {queue}"), changes);
    }
    section("redis keys".into(), &diff.redis);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_sets_compare_into_added_removed_and_changed() {
        let from = BTreeMap::from([("a".to_string(), 1), ("b".to_string(), 2)]);
        let to = BTreeMap::from([("b".to_string(), 3), ("c".to_string(), 4)]);
        let changes = compare(&from, &to);
        assert_eq!(changes.added, ["c"]);
        assert_eq!(changes.removed, ["a"]);
        assert_eq!(changes.changed, ["b"]);
        assert!(compare(&from, &from).is_empty());
    }

    #[test]
    fn messages_compare_as_multisets() {
        let from = BTreeMap::from([("x".to_string(), 2), ("y".to_string(), 1)]);
        let to = BTreeMap::from([("x".to_string(), 3)]);
        let changes = compare_counts(&from, &to);
        assert_eq!(changes.added, ["x"]);
        assert_eq!(changes.removed, ["y"]);
    }

    #[test]
    fn rendering_lists_names_up_to_the_limit() {
        let diff = SnapshotDiff {
            from: "a".into(),
            to: "b".into(),
            objects: Changes {
                added: vec!["b/1".into(), "b/2".into(), "b/3".into()],
                ..Changes::default()
            },
            items: BTreeMap::new(),
            messages: BTreeMap::new(),
            redis: Changes::default(),
        };
        let text = render(&diff, 2);
        assert!(
            text.contains("objects: 3 added, 0 removed, 0 changed"),
            "{text}"
        );
        assert!(text.contains("+ b/2") && !text.contains("+ b/3"), "{text}");
        assert!(text.contains("1 more"), "{text}");
    }
}
