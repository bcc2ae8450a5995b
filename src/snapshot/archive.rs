//! `snapshot export NAME FILE.tar.zst` and `snapshot import FILE.tar.zst`: one file that carries a
//! snapshot to another machine. An import unpacks into a staging folder, verifies every part, and
//! only then puts the snapshot in place.

use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::manifest;
use super::store::{self, Staging};

/// zstd level of exports (fast; object contents are often compressed already).
const LEVEL: i32 = 3;
/// Entries an archive may hold (a bound on what a file from elsewhere can make us create).
const MAX_ENTRIES: usize = 10_000_000;

/// Writes snapshot folder `dir` to `file` as `NAME/...` in a zstd-compressed tar, once every part
/// is verified (a damaged snapshot is not carried elsewhere); the bytes written. Blocking.
pub fn export(dir: &Path, name: &str, file: &Path) -> Result<u64> {
    manifest::verify(dir, &manifest::read(dir)?)?;
    let temporary = file.with_extension("partial");
    let output = std::fs::File::create(&temporary)
        .with_context(|| format!("creating {}", temporary.display()))?;
    let encoder = zstd::Encoder::new(output, LEVEL)?;
    let mut builder = tar::Builder::new(encoder);
    builder.follow_symlinks(false);
    let written = builder
        .append_dir_all(name, dir)
        .and_then(|_| builder.into_inner())
        .and_then(|encoder| encoder.finish())
        .and_then(|file| file.sync_all().map(|_| file));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(e).with_context(|| format!("writing {}", file.display()));
    }
    std::fs::rename(&temporary, file).with_context(|| format!("writing {}", file.display()))?;
    Ok(std::fs::metadata(file)?.len())
}

/// Unpacks an exported snapshot into the project's snapshots, verified, under its own name or
/// `rename`; refuses to replace an existing one unless `force`. Returns its name and folder.
pub fn import(
    state_dir: &Path,
    file: &Path,
    rename: Option<&str>,
    force: bool,
) -> Result<(String, PathBuf)> {
    let input = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let decoder = zstd::Decoder::new(input)
        .with_context(|| format!("{}: not a zstd file", file.display()))?;
    let mut archive = tar::Archive::new(decoder);
    let unpacking = store::root(state_dir).join(format!(".import-{}", std::process::id()));
    if unpacking.exists() {
        std::fs::remove_dir_all(&unpacking)?;
    }
    std::fs::create_dir_all(&unpacking)?;
    let cleanup = RemoveOnDrop(unpacking.clone());
    let mut top: Option<String> = None;
    let entries = archive
        .entries()
        .with_context(|| format!("{}: not a snapshot archive", file.display()))?;
    for (count, entry) in entries.enumerate() {
        if count >= MAX_ENTRIES {
            bail!(
                "{}: more than {MAX_ENTRIES} entries; not a snapshot export",
                file.display()
            );
        }
        let mut entry = entry.with_context(|| format!("{}: damaged archive", file.display()))?;
        let path = entry.path()?.into_owned();
        let first = safe_top(&path).ok_or_else(|| {
            anyhow!(
                "{}: entry {} leaves the snapshot folder; refused",
                file.display(),
                path.display()
            )
        })?;
        match &top {
            None => top = Some(first),
            Some(known) if *known == first => {}
            Some(known) => bail!(
                "{}: holds more than one snapshot ({known}, {first}); not an export of one",
                file.display()
            ),
        }
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            bail!(
                "{}: entry {} is not a file or folder; refused",
                file.display(),
                path.display()
            );
        }
        entry
            .unpack_in(&unpacking)
            .with_context(|| format!("{}: unpacking {}", file.display(), path.display()))?;
    }
    let archived = top.ok_or_else(|| anyhow!("{}: empty archive", file.display()))?;
    let name = rename.unwrap_or(&archived).to_string();
    store::check_name(&name)?;
    let unpacked = unpacking.join(&archived);
    let mut manifest = manifest::read(&unpacked)?;
    manifest::verify(&unpacked, &manifest)?;
    let target = store::dir_of(state_dir, &name)?;
    if target.exists() && !force {
        bail!(
            "a snapshot named `{name}` exists already; import under another name with --name, or replace it with --force"
        );
    }
    let staging = Staging::begin(state_dir, &name)?;
    std::fs::remove_dir(&staging.dir)?;
    std::fs::rename(&unpacked, &staging.dir)?;
    if manifest.name != name {
        manifest.name = name.clone();
        manifest::write(&staging.dir, &manifest)?;
    }
    let dir = staging.commit()?;
    drop(cleanup);
    Ok((name, dir))
}

/// The first component of an archive path, if the path is relative and never goes up.
fn safe_top(path: &Path) -> Option<String> {
    let mut components = path.components();
    let first = match components.next()? {
        Component::Normal(first) => first.to_str()?.to_string(),
        _ => return None,
    };
    components
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        .then_some(first)
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths_must_stay_inside_one_folder() {
        assert_eq!(safe_top(Path::new("s/objects/ab/x")), Some("s".into()));
        assert_eq!(safe_top(Path::new("../x")), None);
        assert_eq!(safe_top(Path::new("/etc/passwd")), None);
        assert_eq!(safe_top(Path::new("s/../../x")), None);
    }

    /// A zstd tar holding one entry whose raw name is `name` (written into the header as bytes, as
    /// a hostile archive would: the tar crate's own path setters refuse `..`).
    fn archive_with_entry(file: &Path, name: &[u8], kind: tar::EntryType, body: &[u8]) {
        let encoder = zstd::Encoder::new(std::fs::File::create(file).unwrap(), 3).unwrap();
        let mut builder = tar::Builder::new(encoder);
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        header.set_entry_type(kind);
        if kind == tar::EntryType::Symlink {
            header.set_link_name("/etc").unwrap();
        }
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, body).unwrap();
        builder.into_inner().unwrap().finish().unwrap();
    }

    #[test]
    fn a_hand_made_archive_that_leaves_the_snapshot_folder_writes_nothing() {
        let state = tempfile::tempdir().unwrap();
        let file = state.path().join("evil.tar.zst");
        let outside = state.path().join("escaped");
        for (name, kind, why) in [
            (
                &b"s/../../escaped"[..],
                tar::EntryType::Regular,
                "leaves the snapshot folder",
            ),
            (
                &b"../escaped"[..],
                tar::EntryType::Regular,
                "leaves the snapshot folder",
            ),
            (
                &b"/tmp/escaped"[..],
                tar::EntryType::Regular,
                "leaves the snapshot folder",
            ),
            (
                &b"s/link"[..],
                tar::EntryType::Symlink,
                "is not a file or folder",
            ),
        ] {
            archive_with_entry(&file, name, kind, b"boom");
            let error = import(state.path(), &file, Some("evil"), false)
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(why),
                "{}: {error}",
                String::from_utf8_lossy(name)
            );
            assert!(!outside.exists());
            assert!(!Path::new("/tmp/escaped").exists());
            assert!(!store::root(state.path()).join("evil").exists());
            // The unpacking folder is gone too: nothing of the archive is left behind.
            let left: Vec<_> = std::fs::read_dir(store::root(state.path()))
                .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "{left:?}");
        }
    }

    #[test]
    fn an_export_imports_under_another_name_and_a_damaged_one_is_refused() {
        let state = tempfile::tempdir().unwrap();
        let staging = Staging::begin(state.path(), "one").unwrap();
        let mut part = manifest::PartWriter::create(&staging.dir.join("redis.jsonl")).unwrap();
        part.line(&serde_json::json!({"key": "YQ==", "dump": "AA=="}))
            .unwrap();
        let record = part.finish().unwrap();
        let manifest = manifest::Manifest {
            format: manifest::FORMAT,
            name: "one".into(),
            created_at: 0,
            inframock: "test".into(),
            engine: "moto".into(),
            engine_version: None,
            redis_version: None,
            services: vec![super::super::Service::Redis],
            counts: Default::default(),
            parts: [("redis.jsonl".to_string(), record)].into(),
            notes: vec![],
        };
        manifest::write(&staging.dir, &manifest).unwrap();
        let dir = staging.commit().unwrap();
        let file = state.path().join("one.tar.zst");
        export(&dir, "one", &file).unwrap();
        let (name, imported) = import(state.path(), &file, Some("two"), false).unwrap();
        assert_eq!(name, "two");
        assert_eq!(manifest::read(&imported).unwrap().name, "two");
        let error = import(state.path(), &file, Some("two"), false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("--force"), "{error}");
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
        assert!(import(state.path(), &file, Some("three"), false).is_err());
        assert!(!state.path().join("snapshots/three").exists());
    }
}
