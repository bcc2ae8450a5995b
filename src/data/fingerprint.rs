//! Content fingerprints of source files, stored as S3 object metadata so a reload skips objects
//! whose source did not change (compared with a HEAD: works across machines, against any endpoint).
//! A local cache keyed by path, size, modification time and inode avoids re-hashing unchanged files.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// S3 user-metadata key holding the fingerprint (sent as `x-amz-meta-inframock-source`).
pub const METADATA_KEY: &str = "inframock-source";

/// File name of the cache inside `.inframock/`.
pub const CACHE_FILE: &str = "fingerprints.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct CacheEntry {
    size: u64,
    mtime_ns: i128,
    inode: u64,
    fingerprint: String,
}

/// Cached fingerprints, shared by concurrent uploads.
#[derive(Debug, Default)]
pub struct FingerprintCache {
    path: Option<PathBuf>,
    entries: Mutex<HashMap<PathBuf, CacheEntry>>,
}

impl FingerprintCache {
    /// Loads the cache at `path` (a missing or unreadable cache is simply empty).
    pub fn load(path: PathBuf) -> FingerprintCache {
        let entries = read_record(&path);
        FingerprintCache {
            path: Some(path),
            entries: Mutex::new(entries),
        }
    }

    /// The fingerprint of `source` loaded with `transform` (e.g. "gunzip"), hashing the file only
    /// when it changed since it was last hashed. Blocking: call it off the async runtime.
    pub fn fingerprint(&self, source: &Path, transform: &str) -> std::io::Result<String> {
        let metadata = std::fs::metadata(source)?;
        let stamp = CacheEntry {
            size: metadata.len(),
            mtime_ns: metadata.mtime() as i128 * 1_000_000_000 + metadata.mtime_nsec() as i128,
            inode: metadata.ino(),
            fingerprint: String::new(),
        };
        let key = (source.to_path_buf(), transform.to_string());
        let cache_key = cache_key(&key.0, &key.1);
        if let Ok(entries) = self.entries.lock() {
            if let Some(hit) = entries.get(&cache_key) {
                if hit.size == stamp.size
                    && hit.mtime_ns == stamp.mtime_ns
                    && hit.inode == stamp.inode
                {
                    return Ok(hit.fingerprint.clone());
                }
            }
        }
        let fingerprint = format!("v1-{transform}-{}", hash_file(source)?);
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(
                cache_key,
                CacheEntry {
                    fingerprint: fingerprint.clone(),
                    ..stamp
                },
            );
        }
        Ok(fingerprint)
    }

    /// Writes the cache back (atomically); failures only cost a re-hash next time.
    pub fn save(&self) {
        if let (Some(path), Ok(entries)) = (&self.path, self.entries.lock()) {
            write_record(path, &*entries);
        }
    }
}

/// Reads a JSON record; a missing or unreadable one is empty (it only saves work).
pub fn read_record<T: serde::de::DeserializeOwned + Default>(path: &Path) -> T {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

/// Writes a JSON record atomically (temporary file, then rename); a failure only costs work later.
pub fn write_record(path: &Path, value: &impl Serialize) {
    let Ok(text) = serde_json::to_string(value) else {
        return;
    };
    let temporary = path.with_extension("json.tmp");
    if std::fs::write(&temporary, text).is_ok() {
        let _ = std::fs::rename(&temporary, path);
    }
}

fn cache_key(path: &Path, transform: &str) -> PathBuf {
    let mut key = path.as_os_str().to_owned();
    key.push("\u{0}");
    key.push(transform);
    PathBuf::from(key)
}

/// BLAKE3 of a file's bytes, read in 1 MiB chunks.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_changes_with_content_and_transform_and_is_cached() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a");
        std::fs::write(&file, b"one").unwrap();
        let cache_path = dir.path().join(CACHE_FILE);
        let cache = FingerprintCache::load(cache_path.clone());
        let first = cache.fingerprint(&file, "gunzip").unwrap();
        assert!(first.starts_with("v1-gunzip-"));
        assert_ne!(first, cache.fingerprint(&file, "copy").unwrap());
        cache.save();
        let reloaded = FingerprintCache::load(cache_path);
        assert_eq!(reloaded.fingerprint(&file, "gunzip").unwrap(), first);
        std::fs::write(&file, b"two, longer").unwrap();
        assert_ne!(reloaded.fingerprint(&file, "gunzip").unwrap(), first);
    }

    #[test]
    fn identical_content_gives_identical_fingerprints_on_any_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), b"same").unwrap();
        std::fs::write(dir.path().join("y"), b"same").unwrap();
        let cache = FingerprintCache::default();
        assert_eq!(
            cache.fingerprint(&dir.path().join("x"), "copy").unwrap(),
            cache.fingerprint(&dir.path().join("y"), "copy").unwrap()
        );
    }
}

/// File name of the record of JSON files loaded into tables.
pub const LOADED_FILE: &str = "loaded-items.json";

/// What a completed load of one JSON file wrote: the source's fingerprint and the keys of its
/// first and last items, which a reload looks up to prove the items are still there (null for a
/// file without items).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadedRecord {
    pub fingerprint: String,
    pub first_key: serde_json::Value,
    pub last_key: serde_json::Value,
}

/// Which JSON files were loaded into which table of which endpoint. A record alone never skips a
/// file: the caller also checks that the table was not just created and that the recorded keys
/// are present (a reset, a deleted table or a restarted engine fail that check). Entries are added
/// only after a file was written completely.
#[derive(Debug, Default)]
pub struct LoadedFiles {
    path: Option<PathBuf>,
    entries: Mutex<HashMap<String, LoadedRecord>>,
}

impl LoadedFiles {
    /// Loads the record at `path` (missing or unreadable: empty).
    pub fn load(path: PathBuf) -> LoadedFiles {
        let entries = read_record(&path);
        LoadedFiles {
            path: Some(path),
            entries: Mutex::new(entries),
        }
    }

    fn key(endpoint: &str, table: &str, source: &Path) -> String {
        format!("{endpoint}|{table}|{}", source.display())
    }

    /// The record of `source` in `table` at `endpoint`, when its fingerprint is `fingerprint`.
    pub fn matching(
        &self,
        endpoint: &str,
        table: &str,
        source: &Path,
        fingerprint: &str,
    ) -> Option<LoadedRecord> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(&Self::key(endpoint, table, source))
            .filter(|record| record.fingerprint == fingerprint)
            .cloned()
    }

    /// Whether `source` was ever loaded into `table` at `endpoint` (from any content).
    pub fn knows(&self, endpoint: &str, table: &str, source: &Path) -> bool {
        self.entries
            .lock()
            .is_ok_and(|entries| entries.contains_key(&Self::key(endpoint, table, source)))
    }

    /// Records a completed load.
    pub fn mark_loaded(&self, endpoint: &str, table: &str, source: &Path, record: LoadedRecord) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(Self::key(endpoint, table, source), record);
        }
    }

    /// Forgets a file (it failed, or was found missing): the next load writes it.
    pub fn forget(&self, endpoint: &str, table: &str, source: &Path) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&Self::key(endpoint, table, source));
        }
    }

    /// Writes the record back (atomically).
    pub fn save(&self) {
        if let (Some(path), Ok(entries)) = (&self.path, self.entries.lock()) {
            write_record(path, &*entries);
        }
    }
}

#[cfg(test)]
mod loaded_tests {
    use super::*;

    fn record(fingerprint: &str) -> LoadedRecord {
        LoadedRecord {
            fingerprint: fingerprint.into(),
            first_key: serde_json::json!({"id": {"S": "a"}}),
            last_key: serde_json::json!({"id": {"S": "z"}}),
        }
    }

    #[test]
    fn loaded_files_match_endpoint_table_source_and_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOADED_FILE);
        let loaded = LoadedFiles::load(path.clone());
        let source = Path::new("/d/e1/mock_experiment.json");
        assert!(loaded.matching("u1", "t", source, "f1").is_none());
        loaded.mark_loaded("u1", "t", source, record("f1"));
        loaded.save();
        let reread = LoadedFiles::load(path);
        assert_eq!(reread.matching("u1", "t", source, "f1"), Some(record("f1")));
        assert!(
            reread.matching("u1", "t", source, "f2").is_none(),
            "content changed"
        );
        assert!(
            reread.matching("u2", "t", source, "f1").is_none(),
            "another endpoint"
        );
        assert!(
            reread.matching("u1", "other", source, "f1").is_none(),
            "another table"
        );
        reread.forget("u1", "t", source);
        assert!(
            reread.matching("u1", "t", source, "f1").is_none(),
            "forgotten"
        );
    }
}
