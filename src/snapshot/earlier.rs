//! The earlier snapshots a save can reuse parts of: each one's resources (with the marks that
//! prove a table or a bucket's history unchanged since it was saved) and its manifest, whose parts'
//! sizes and hashes check a reused file before it is linked.

use std::path::{Path, PathBuf};

use super::manifest::Manifest;
use super::records::{Resources, RESOURCES_FILE};

/// One earlier snapshot.
pub struct EarlierSnapshot {
    pub dir: PathBuf,
    pub resources: Resources,
    pub manifest: Manifest,
}

/// Every readable snapshot under `root` that recorded a table's stream mark or export hash, or a
/// bucket's history mark, newest first: by the time its manifest records (whole seconds), then by
/// when its manifest file was written (saves within one second).
pub fn earlier_snapshots(root: &Path) -> Vec<EarlierSnapshot> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut found: Vec<((u64, Option<std::time::SystemTime>), EarlierSnapshot)> = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| {
            let dir = e.path();
            let manifest = super::manifest::read(&dir).ok()?;
            let resources: Resources =
                super::manifest::read_json(&dir, &manifest, RESOURCES_FILE).ok()?;
            let marked = resources
                .tables
                .iter()
                .any(|t| t.stream_mark.is_some() || t.export_hash.is_some())
                || resources.buckets.iter().any(|b| b.history_mark.is_some());
            let written = std::fs::metadata(dir.join(super::manifest::MANIFEST_FILE))
                .and_then(|m| m.modified())
                .ok();
            marked.then_some((
                (manifest.created_at, written),
                EarlierSnapshot {
                    dir,
                    resources,
                    manifest,
                },
            ))
        })
        .collect();
    found.sort_by_key(|(when, _)| std::cmp::Reverse(*when));
    found.into_iter().map(|(_, earlier)| earlier).collect()
}
