//! Where snapshots live (`.inframock/snapshots/NAME/`), their names, listing and removal, and the
//! staging folder a save writes before it swaps the snapshot in whole.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::manifest::{self, Counts, MANIFEST_FILE};

/// Folder of the snapshots inside `.inframock/`.
pub const SNAPSHOTS_DIR: &str = "snapshots";

/// `.inframock/snapshots/`.
pub fn root(state_dir: &Path) -> PathBuf {
    state_dir.join(SNAPSHOTS_DIR)
}

/// Checks a snapshot name: letters, digits, `.`, `_`, `-`, at most 64, not starting with `.`
/// (a name is a folder name, so nothing that could leave the snapshots folder).
pub fn check_name(name: &str) -> Result<()> {
    let fine = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !fine {
        bail!("snapshot name `{name}`: use 1 to 64 letters, digits, `.`, `_` or `-`, not starting with `.`");
    }
    Ok(())
}

/// The folder of snapshot `name` (checked), whether or not it exists.
pub fn dir_of(state_dir: &Path, name: &str) -> Result<PathBuf> {
    check_name(name)?;
    Ok(root(state_dir).join(name))
}

/// The folder of an existing snapshot, or an error that lists the ones there are.
pub fn existing(state_dir: &Path, name: &str) -> Result<PathBuf> {
    let dir = dir_of(state_dir, name)?;
    if !dir.join(MANIFEST_FILE).is_file() {
        let known: Vec<String> = list(state_dir).into_iter().map(|s| s.name).collect();
        bail!(
            "no snapshot named `{name}` in {} (there {}); `inframock snapshot save {name}` makes one",
            root(state_dir).display(),
            match known.len() {
                0 => "are none".to_string(),
                _ => format!("are: {}", known.join(", ")),
            }
        );
    }
    Ok(dir)
}

/// One snapshot, as `snapshot list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<super::Service>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts: Option<Counts>,
    /// Bytes on disk (contents shared with other snapshots count in each).
    pub bytes: u64,
    /// Why its manifest cannot be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Every snapshot, by name.
pub fn list(state_dir: &Path) -> Vec<Listed> {
    let Ok(entries) = std::fs::read_dir(root(state_dir)) else {
        return Vec::new();
    };
    let mut listed: Vec<Listed> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                return None;
            }
            let dir = e.path();
            let bytes = folder_bytes(&dir);
            Some(match manifest::read(&dir) {
                Ok(m) => Listed {
                    name,
                    created_at: Some(m.created_at),
                    engine: Some(m.engine),
                    services: Some(m.services),
                    counts: Some(m.counts),
                    bytes,
                    problem: None,
                },
                Err(e) => Listed {
                    name,
                    created_at: None,
                    engine: None,
                    services: None,
                    counts: None,
                    bytes,
                    problem: Some(e.problem),
                },
            })
        })
        .collect();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    listed
}

fn folder_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => folder_bytes(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// Removes snapshot `name`.
pub fn remove(state_dir: &Path, name: &str) -> Result<()> {
    let dir = dir_of(state_dir, name)?;
    if !dir.exists() {
        bail!(
            "no snapshot named `{name}` in {}",
            root(state_dir).display()
        );
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))
}

/// A snapshot being written: `.NAME.saving-PID/`, swapped in as `NAME/` by [`Staging::commit`],
/// removed when dropped uncommitted (a failed save leaves the old snapshot as it was).
pub struct Staging {
    pub dir: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Staging {
    /// Starts writing snapshot `name`.
    pub fn begin(state_dir: &Path, name: &str) -> Result<Staging> {
        let target = dir_of(state_dir, name)?;
        let dir = root(state_dir).join(format!(".{name}.saving-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Staging {
            dir,
            target,
            committed: false,
        })
    }

    /// Puts the written snapshot in place of the old one (two renames; the old one is removed
    /// after the new one is in place).
    pub fn commit(mut self) -> Result<PathBuf> {
        let old = self.dir.with_extension("old");
        let had_old = self.target.exists();
        if had_old {
            std::fs::rename(&self.target, &old)
                .with_context(|| format!("moving {} aside", self.target.display()))?;
        }
        if let Err(e) = std::fs::rename(&self.dir, &self.target) {
            if had_old {
                let _ = std::fs::rename(&old, &self.target);
            }
            return Err(e).with_context(|| format!("putting {} in place", self.target.display()));
        }
        self.committed = true;
        if had_old {
            let _ = std::fs::remove_dir_all(&old);
        }
        Ok(self.target.clone())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Contents already stored by any snapshot, hash → file: a save links them instead of fetching
/// and writing them again.
pub fn stored_contents(state_dir: &Path) -> HashMap<String, PathBuf> {
    let mut found = HashMap::new();
    for snapshot in list(state_dir) {
        let objects = root(state_dir).join(&snapshot.name).join("objects");
        let Ok(prefixes) = std::fs::read_dir(&objects) else {
            continue;
        };
        for prefix in prefixes.flatten() {
            let Ok(files) = std::fs::read_dir(prefix.path()) else {
                continue;
            };
            for file in files.flatten() {
                let hash = file.file_name().to_string_lossy().into_owned();
                if hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()) {
                    found.entry(hash).or_insert_with(|| file.path());
                }
            }
        }
    }
    found
}

/// Puts `from` at `to` without copying when the file system allows (a hard link), else copies.
pub fn link_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if to.exists() {
        return Ok(());
    }
    std::fs::hard_link(from, to).or_else(|_| std::fs::copy(from, to).map(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_the_folder_are_refused() {
        for bad in ["", "../x", "a/b", ".hidden", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["persist", "before-migration_2.1"] {
            check_name(good).unwrap();
        }
    }

    #[test]
    fn a_staging_folder_replaces_the_snapshot_only_when_committed() {
        let state = tempfile::tempdir().unwrap();
        let first = Staging::begin(state.path(), "s").unwrap();
        std::fs::write(first.dir.join("a"), "1").unwrap();
        let dir = first.commit().unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        let abandoned = Staging::begin(state.path(), "s").unwrap();
        std::fs::write(abandoned.dir.join("a"), "2").unwrap();
        let staging_dir = abandoned.dir.clone();
        drop(abandoned);
        assert!(!staging_dir.exists());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        let second = Staging::begin(state.path(), "s").unwrap();
        std::fs::write(second.dir.join("a"), "3").unwrap();
        second.commit().unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "3");
        let left: Vec<_> = std::fs::read_dir(root(state.path()))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(left.len(), 1, "only the snapshot stays: {left:?}");
    }
}
