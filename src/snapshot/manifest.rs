//! `manifest.json`: what a snapshot holds and the size and BLAKE3 of every part, so a corrupt or
//! truncated snapshot is refused, naming the part, before anything is loaded from it.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::records::{content_path, ObjectRecord};
use super::Service;

/// File name of the manifest inside a snapshot folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The layout version this binary writes and reads.
pub const FORMAT: u32 = 1;

/// What a snapshot holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version ([`FORMAT`]).
    pub format: u32,
    pub name: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// The inframock that wrote it.
    pub inframock: String,
    /// The AWS engine it was saved from (`moto`, `ministack`, `localstack`, `external`).
    pub engine: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_version: Option<String>,
    /// The services it holds.
    pub services: Vec<Service>,
    pub counts: Counts,
    /// Every part but the object contents (which are named by their hash): path → size and hash.
    pub parts: BTreeMap<String, PartRecord>,
    /// What was not saved, and why (in-flight messages, older versions of objects).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// What a snapshot holds, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub buckets: u64,
    pub objects: u64,
    pub object_bytes: u64,
    /// Distinct contents stored (objects with the same bytes share one).
    pub contents: u64,
    pub tables: u64,
    pub items: u64,
    pub queues: u64,
    pub messages: u64,
    pub redis_keys: u64,
    /// Older versions and delete markers kept from versioned buckets.
    #[serde(default)]
    pub versions: u64,
}

impl Counts {
    /// `12 objects, 3 items, 2 messages, 1 Redis keys`.
    pub fn summary(&self) -> String {
        format!(
            "{} objects, {} items, {} messages, {} Redis keys",
            self.objects, self.items, self.messages, self.redis_keys
        )
    }
}

/// One part's size and BLAKE3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub bytes: u64,
    pub blake3: String,
}

/// Why a snapshot cannot be loaded: the part and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("snapshot {snapshot}: {part}: {problem}; nothing was loaded from it (save it again, or import it again from its export)")]
pub struct Corrupt {
    pub snapshot: String,
    pub part: String,
    pub problem: String,
}

/// Writes one part, hashing and counting what it writes.
pub struct PartWriter {
    file: std::io::BufWriter<std::fs::File>,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl PartWriter {
    /// Creates `path` (and its folder). A file already there is unlinked first, never truncated:
    /// it may be a hard link to another snapshot's part.
    pub fn create(path: &Path) -> std::io::Result<PartWriter> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        Ok(PartWriter {
            file: std::io::BufWriter::new(std::fs::File::create(path)?),
            hasher: blake3::Hasher::new(),
            bytes: 0,
        })
    }

    /// Writes `value` as one JSON line.
    pub fn line(&mut self, value: &impl Serialize) -> std::io::Result<()> {
        let mut text = serde_json::to_vec(value)?;
        text.push(b'\n');
        self.write_all(&text)
    }

    /// Writes `records` as a JSON-lines part at `path`; its size and hash.
    pub fn write_lines<T: Serialize>(path: &Path, records: &[T]) -> std::io::Result<PartRecord> {
        let mut part = PartWriter::create(path)?;
        for record in records {
            part.line(record)?;
        }
        part.finish()
    }

    /// Flushes to disk; the part's size and hash.
    pub fn finish(mut self) -> std::io::Result<PartRecord> {
        self.file.flush()?;
        self.file.get_ref().sync_all()?;
        Ok(PartRecord {
            bytes: self.bytes,
            blake3: self.hasher.finalize().to_hex().to_string(),
        })
    }
}

impl Write for PartWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.file.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Reads a snapshot's manifest.
pub fn read(dir: &Path) -> Result<Manifest, Corrupt> {
    let name = snapshot_name(dir);
    let corrupt = |problem: String| Corrupt {
        snapshot: name.clone(),
        part: MANIFEST_FILE.into(),
        problem,
    };
    let text = std::fs::read_to_string(dir.join(MANIFEST_FILE))
        .map_err(|e| corrupt(format!("cannot be read ({e})")))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| corrupt(format!("is not a snapshot manifest ({e})")))?;
    if manifest.format != FORMAT {
        return Err(corrupt(format!(
            "layout version {} (this inframock reads version {FORMAT}; use the inframock that saved it)",
            manifest.format
        )));
    }
    Ok(manifest)
}

/// Writes the manifest (last: a folder without one is not a snapshot).
pub fn write(dir: &Path, manifest: &Manifest) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(manifest)?;
    let mut file = std::fs::File::create(dir.join(MANIFEST_FILE))?;
    file.write_all(&text)?;
    file.sync_all()
}

fn snapshot_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

/// Checks every part against the manifest and every object content against its name (its hash):
/// the first problem found, naming the part. Blocking (it reads everything); call it off the
/// async threads. Returns the object records, read once here.
pub fn verify(dir: &Path, manifest: &Manifest) -> Result<Vec<ObjectRecord>, Corrupt> {
    let name = snapshot_name(dir);
    let corrupt = |part: &str, problem: String| Corrupt {
        snapshot: name.clone(),
        part: part.to_string(),
        problem,
    };
    for (part, record) in &manifest.parts {
        if part.contains("..") || part.starts_with('/') {
            return Err(corrupt(part, "names a file outside the snapshot".into()));
        }
        check_part(&dir.join(part), record).map_err(|problem| corrupt(part, problem))?;
    }
    let objects = read_objects(dir, manifest)?;
    let versions: Vec<super::records::VersionRecord> =
        read_lines(dir, manifest, super::records::VERSIONS_FILE)?;
    let mut checked = std::collections::HashSet::new();
    for object in objects
        .iter()
        .chain(super::records::older_objects(&versions))
    {
        if !checked.insert(object.hash.as_str()) {
            continue;
        }
        let part = object.content_path();
        let path = dir.join(&part);
        let what = format!("{part} (s3://{}/{})", object.bucket, object.key);
        let size = std::fs::metadata(&path)
            .map_err(|e| corrupt(&what, format!("is missing ({e})")))?
            .len();
        if size != object.size {
            return Err(corrupt(
                &what,
                format!("holds {size} bytes, the object had {}", object.size),
            ));
        }
        let hash = crate::data::fingerprint::hash_file(&path)
            .map_err(|e| corrupt(&what, format!("cannot be read ({e})")))?;
        if hash != object.hash {
            return Err(corrupt(
                &what,
                "its content does not match its hash (changed or damaged)".into(),
            ));
        }
    }
    Ok(objects)
}

/// Whether the file at `path` is the part `record` describes (its size, then its BLAKE3); what is
/// wrong with it when not.
pub fn check_part(path: &Path, record: &PartRecord) -> Result<(), String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("is missing ({e})"))?
        .len();
    if size != record.bytes {
        return Err(format!(
            "holds {size} bytes, the manifest says {} (truncated or changed)",
            record.bytes
        ));
    }
    let hash =
        crate::data::fingerprint::hash_file(path).map_err(|e| format!("cannot be read ({e})"))?;
    if hash != record.blake3 {
        return Err("its content does not match the manifest's hash (changed or damaged)".into());
    }
    Ok(())
}

/// The object records of `objects.jsonl` (none when the snapshot holds no S3 part).
pub fn read_objects(dir: &Path, manifest: &Manifest) -> Result<Vec<ObjectRecord>, Corrupt> {
    read_lines(dir, manifest, super::records::OBJECTS_FILE)
}

/// Reads a JSON-lines part (empty when the snapshot does not have it).
pub fn read_lines<T: serde::de::DeserializeOwned>(
    dir: &Path,
    manifest: &Manifest,
    part: &str,
) -> Result<Vec<T>, Corrupt> {
    if !manifest.parts.contains_key(part) {
        return Ok(Vec::new());
    }
    let corrupt = part_problem(dir, part);
    let file = std::fs::File::open(dir.join(part))
        .map_err(|e| corrupt(format!("cannot be read ({e})")))?;
    let mut records = Vec::new();
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| corrupt(format!("cannot be read ({e})")))?;
        if line.is_empty() {
            continue;
        }
        records.push(
            serde_json::from_str(&line)
                .map_err(|e| corrupt(format!("line {}: {e}", number + 1)))?,
        );
    }
    Ok(records)
}

/// Reads a JSON part (the default value when the snapshot does not have it).
pub fn read_json<T: serde::de::DeserializeOwned + Default>(
    dir: &Path,
    manifest: &Manifest,
    part: &str,
) -> Result<T, Corrupt> {
    if !manifest.parts.contains_key(part) {
        return Ok(T::default());
    }
    let corrupt = part_problem(dir, part);
    let text = std::fs::read_to_string(dir.join(part))
        .map_err(|e| corrupt(format!("cannot be read ({e})")))?;
    serde_json::from_str(&text).map_err(|e| corrupt(format!("{e}")))
}

/// Builds the error naming `part` of the snapshot at `dir`.
fn part_problem<'a>(dir: &'a Path, part: &'a str) -> impl Fn(String) -> Corrupt + 'a {
    move |problem| Corrupt {
        snapshot: snapshot_name(dir),
        part: part.to_string(),
        problem,
    }
}

/// `objects/<hh>/<hash>` of every content the records name, once each.
pub fn content_paths<'a>(objects: impl IntoIterator<Item = &'a ObjectRecord>) -> Vec<String> {
    let mut paths: Vec<String> = objects.into_iter().map(|o| content_path(&o.hash)).collect();
    paths.sort();
    paths.dedup();
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(dir: &Path) -> Manifest {
        let mut part = PartWriter::create(&dir.join("redis.jsonl")).unwrap();
        part.line(&serde_json::json!({"key": "a", "dump": "AA=="}))
            .unwrap();
        let record = part.finish().unwrap();
        let manifest = Manifest {
            format: FORMAT,
            name: "s".into(),
            created_at: 0,
            inframock: "test".into(),
            engine: "moto".into(),
            engine_version: None,
            redis_version: None,
            services: vec![Service::Redis],
            counts: Counts::default(),
            parts: BTreeMap::from([("redis.jsonl".to_string(), record)]),
            notes: vec![],
        };
        write(dir, &manifest).unwrap();
        manifest
    }

    #[test]
    fn an_intact_snapshot_verifies_and_a_changed_or_truncated_part_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = saved(dir.path());
        assert_eq!(read(dir.path()).unwrap(), manifest);
        verify(dir.path(), &manifest).unwrap();
        let part = dir.path().join("redis.jsonl");
        let text = std::fs::read(&part).unwrap();
        std::fs::write(&part, &text[..text.len() - 3]).unwrap();
        let error = verify(dir.path(), &manifest).unwrap_err().to_string();
        assert!(
            error.contains("redis.jsonl") && error.contains("truncated"),
            "{error}"
        );
        let mut changed = text.clone();
        changed[3] ^= 1;
        std::fs::write(&part, &changed).unwrap();
        let error = verify(dir.path(), &manifest).unwrap_err().to_string();
        assert!(
            error.contains("redis.jsonl") && error.contains("hash"),
            "{error}"
        );
    }

    #[test]
    fn a_manifest_of_another_layout_or_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = saved(dir.path());
        manifest.format = 99;
        write(dir.path(), &manifest).unwrap();
        let error = read(dir.path()).unwrap_err().to_string();
        assert!(error.contains("layout version 99"), "{error}");
        std::fs::write(dir.path().join(MANIFEST_FILE), "{").unwrap();
        assert!(read(dir.path())
            .unwrap_err()
            .to_string()
            .contains("manifest.json"));
    }
}
