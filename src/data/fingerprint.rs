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
fn read_record<T: serde::de::DeserializeOwned + Default>(path: &Path) -> T {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

/// Writes a JSON record atomically (temporary file, then rename); a failure only costs work later.
fn write_record(path: &Path, value: &impl Serialize) {
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

/// File name of the record of JSON files loaded into a running stack.
pub const LOADED_FILE: &str = "loaded-items.json";

/// Which JSON files were loaded, with which fingerprint, into which stack instance: a reload skips
/// a file whose content did not change since it was last written into the same running stack
/// (`--force` writes it anyway). Entries are added only after a file loaded completely.
#[derive(Debug, Default)]
pub struct LoadedFiles {
    path: Option<PathBuf>,
    entries: Mutex<HashMap<String, String>>,
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

    fn key(stack: &str, table: &str, source: &Path) -> String {
        format!("{stack}|{table}|{}", source.display())
    }

    /// Whether `source` with `fingerprint` is already in `table` of `stack`.
    pub fn is_loaded(&self, stack: &str, table: &str, source: &Path, fingerprint: &str) -> bool {
        self.entries.lock().is_ok_and(|entries| {
            entries
                .get(&Self::key(stack, table, source))
                .map(String::as_str)
                == Some(fingerprint)
        })
    }

    /// Records a completed load.
    pub fn mark_loaded(&self, stack: &str, table: &str, source: &Path, fingerprint: String) {
        if let Ok(mut entries) = self.entries.lock() {
            // Entries of other stack instances are stale: keep the record small.
            entries.retain(|key, _| key.starts_with(&format!("{stack}|")));
            entries.insert(Self::key(stack, table, source), fingerprint);
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

    #[test]
    fn loaded_files_match_stack_table_source_and_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join(LOADED_FILE);
        let loaded = LoadedFiles::load(record.clone());
        let source = Path::new("/d/e1/mock_experiment.json");
        assert!(!loaded.is_loaded("s1", "t", source, "f1"));
        loaded.mark_loaded("s1", "t", source, "f1".into());
        loaded.save();
        let reread = LoadedFiles::load(record);
        assert!(reread.is_loaded("s1", "t", source, "f1"));
        assert!(
            !reread.is_loaded("s1", "t", source, "f2"),
            "content changed"
        );
        assert!(
            !reread.is_loaded("s2", "t", source, "f1"),
            "another stack instance"
        );
        assert!(
            !reread.is_loaded("s1", "other", source, "f1"),
            "another table"
        );
        reread.mark_loaded("s2", "t", source, "f1".into());
        assert!(
            !reread.is_loaded("s1", "t", source, "f1"),
            "stale instances are dropped"
        );
    }
}
