//! Walking the data folder (`list`, the only I/O here) and turning it into a `LoadPlan` (`plan`, pure).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::rules::{object_key, Rules, SkipReason, Target};

/// One entry of an experiment folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    pub name: String,
    pub is_dir: bool,
    /// A FIFO, socket or device (following links): never opened.
    pub not_regular: bool,
    pub size: u64,
}

/// The contents of one experiment folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimentDir {
    /// The folder name, used as the experiment id in S3 keys.
    pub id: String,
    pub path: PathBuf,
    pub entries: Vec<EntryInfo>,
}

/// Why the data folder cannot be walked.
#[derive(Debug, thiserror::Error)]
pub enum DataFolderError {
    #[error("data folder {0} does not exist; create it with one sub-folder per experiment, or point --data / BIOMAGE_DATA_PATH at yours")]
    Missing(PathBuf),
    #[error(
        "data folder {0} is a file, not a folder; point --data / BIOMAGE_DATA_PATH at a folder"
    )]
    NotAFolder(PathBuf),
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("experiment {id} is not in {root} (found: {found}); check --experiment")]
    UnknownExperiment {
        id: String,
        root: PathBuf,
        found: String,
    },
}

/// Lists the experiment folders of `root` (hidden ones skipped), sorted by name; with `only`,
/// just those experiments (each must exist).
pub fn list(root: &Path, only: &[String]) -> Result<Vec<ExperimentDir>, DataFolderError> {
    let metadata = std::fs::metadata(root).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DataFolderError::Missing(root.to_path_buf()),
        _ => DataFolderError::Unreadable {
            path: root.to_path_buf(),
            source: e,
        },
    })?;
    if !metadata.is_dir() {
        return Err(DataFolderError::NotAFolder(root.to_path_buf()));
    }
    let unreadable = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DataFolderError::Unreadable { path, source }
    };
    let mut experiments = Vec::new();
    for entry in std::fs::read_dir(root).map_err(unreadable(root))? {
        let entry = entry.map_err(unreadable(root))?;
        let id = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        // Follows symlinks, so a linked experiment folder loads too.
        if id.starts_with('.') || !path.is_dir() {
            continue;
        }
        experiments.push(ExperimentDir {
            entries: list_entries(&path)?,
            id,
            path,
        });
    }
    experiments.sort_by(|a, b| a.id.cmp(&b.id));
    if only.is_empty() {
        return Ok(experiments);
    }
    for id in only {
        if !experiments.iter().any(|e| &e.id == id) {
            return Err(DataFolderError::UnknownExperiment {
                id: id.clone(),
                root: root.to_path_buf(),
                found: experiments
                    .iter()
                    .map(|e| e.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    experiments.retain(|e| only.contains(&e.id));
    Ok(experiments)
}

fn list_entries(dir: &Path) -> Result<Vec<EntryInfo>, DataFolderError> {
    let unreadable = |source| DataFolderError::Unreadable {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        // Follows symlinks. A broken one has no metadata: it stays a file, whose load then fails
        // loudly ("cannot read"), as an unreadable file does.
        let metadata = std::fs::metadata(entry.path()).ok();
        let is_dir = metadata.as_ref().is_some_and(|m| m.is_dir());
        entries.push(EntryInfo {
            name: entry.file_name().to_string_lossy().into_owned(),
            is_dir,
            not_regular: metadata
                .as_ref()
                .is_some_and(|m| !m.is_dir() && !m.is_file()),
            size: metadata.map(|m| m.len()).unwrap_or(0),
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// What to load: per experiment, the files with their targets and the files skipped.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LoadPlan {
    pub experiments: Vec<ExperimentPlan>,
}

/// The plan of one experiment folder.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExperimentPlan {
    pub id: String,
    pub path: PathBuf,
    pub actions: Vec<Action>,
    pub skipped: Vec<Skipped>,
}

/// One file to load.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Action {
    pub file: String,
    pub path: PathBuf,
    pub size: u64,
    #[serde(flatten)]
    pub target: PlannedTarget,
    /// An object written back from a snapshot: what it keeps (`None` for a data folder file,
    /// typed by its extension and fingerprinted by its content).
    #[serde(skip)]
    pub restore: Option<ObjectAttributes>,
}

/// What an object written back from a snapshot keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectAttributes {
    pub content_type: Option<String>,
    /// User metadata (without inframock's fingerprint, which is `fingerprint`).
    pub metadata: std::collections::BTreeMap<String, String>,
    /// The fingerprint stored on the object and compared with the one it holds: the snapshot's
    /// content is already hashed, so nothing is hashed again.
    pub fingerprint: String,
    /// The object's ETag and size when it was saved: an object written by a client carries no
    /// fingerprint, but the same ETag (a hash of its content), size, type and metadata prove it
    /// holds what the snapshot holds.
    pub etag: Option<String>,
    pub size: u64,
    /// Written even when the object holds it already (it must become the key's latest version
    /// again, after older versions written just before).
    pub always: bool,
}

impl ObjectAttributes {
    /// Whether an object answering HEAD with these holds what the snapshot holds (pure).
    pub fn held_by(
        &self,
        etag: Option<&str>,
        size: Option<i64>,
        content_type: Option<&str>,
        metadata: &std::collections::HashMap<String, String>,
    ) -> bool {
        let mut others: std::collections::BTreeMap<String, String> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        others.remove(super::fingerprint::METADATA_KEY);
        self.etag.is_some()
            && self.etag.as_deref() == etag
            && size.and_then(|s| u64::try_from(s).ok()) == Some(self.size)
            && self.content_type.as_deref() == content_type
            && others == self.metadata
    }
}

/// A target with every name expanded.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PlannedTarget {
    Table {
        table: String,
    },
    Object {
        bucket: String,
        key: String,
        gunzip: bool,
    },
    Sql {
        service: String,
    },
}

/// A file that is not loaded, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Skipped {
    pub file: String,
    pub reason: &'static str,
}

/// Classifies every entry of every experiment folder (pure).
pub fn plan(experiments: &[ExperimentDir], rules: &Rules) -> LoadPlan {
    let experiments = experiments
        .iter()
        .map(|experiment| {
            let mut actions = Vec::new();
            let mut skipped = Vec::new();
            for entry in &experiment.entries {
                let classified = if entry.is_dir {
                    if entry.name.starts_with('.') {
                        Err(SkipReason::Hidden)
                    } else {
                        Err(SkipReason::Directory)
                    }
                } else if entry.not_regular {
                    Err(SkipReason::NotRegular)
                } else {
                    rules.classify(&entry.name)
                };
                match classified {
                    Ok(rule) => actions.push(Action {
                        file: entry.name.clone(),
                        path: experiment.path.join(&entry.name),
                        size: entry.size,
                        target: match &rule.target {
                            Target::Table { table } => PlannedTarget::Table {
                                table: table.clone(),
                            },
                            Target::Object {
                                bucket,
                                key,
                                gunzip,
                            } => PlannedTarget::Object {
                                bucket: bucket.clone(),
                                key: object_key(key, &experiment.id, &entry.name),
                                gunzip: *gunzip,
                            },
                            Target::Sql { service } => PlannedTarget::Sql {
                                service: service.clone(),
                            },
                        },
                        restore: None,
                    }),
                    Err(reason) => skipped.push(Skipped {
                        file: entry.name.clone(),
                        reason: reason.as_str(),
                    }),
                }
            }
            ExperimentPlan {
                id: experiment.id.clone(),
                path: experiment.path.clone(),
                actions,
                skipped,
            }
        })
        .collect();
    LoadPlan { experiments }
}

/// Two rules writing the same S3 object from one experiment (e.g. `r.rds.gz` and
/// `biomage-source.r.rds.gz`) would race: keep the later-sorted file, report the other.
pub fn drop_conflicting_objects(plan: &mut LoadPlan) {
    for experiment in &mut plan.experiments {
        let mut seen: Vec<(String, String)> = Vec::new();
        let mut keep = Vec::new();
        for action in experiment.actions.drain(..).rev() {
            if let PlannedTarget::Object { bucket, key, .. } = &action.target {
                let id = (bucket.clone(), key.clone());
                if seen.contains(&id) {
                    experiment.skipped.push(Skipped {
                        file: action.file.clone(),
                        reason: "another file writes the same S3 object",
                    });
                    continue;
                }
                seen.push(id);
            }
            keep.push(action);
        }
        keep.reverse();
        experiment.actions = keep;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack_file::{NameVars, StackFile};

    fn rules() -> Rules {
        let vars = NameVars {
            env: "development",
            region: "eu-west-1",
            account: "000000000000",
            experiment: None,
            host: None,
        };
        Rules::compile(&StackFile::built_in().data.rules, &vars).unwrap()
    }

    fn file(name: &str) -> EntryInfo {
        EntryInfo {
            name: name.into(),
            is_dir: false,
            not_regular: false,
            size: 10,
        }
    }

    #[test]
    fn plan_classifies_and_expands_keys() {
        let experiments = vec![ExperimentDir {
            id: "e1".into(),
            path: "/d/e1".into(),
            entries: vec![
                file("mock_experiment.json"),
                file("r.rds.gz"),
                file("mock_cell_sets.json"),
                file("notes.txt"),
                file(".hidden"),
                EntryInfo {
                    name: "sub".into(),
                    is_dir: true,
                    not_regular: false,
                    size: 0,
                },
            ],
        }];
        let plan = plan(&experiments, &rules());
        let e = &plan.experiments[0];
        assert_eq!(e.actions.len(), 3);
        assert_eq!(
            e.actions[1].target,
            PlannedTarget::Object {
                bucket: "biomage-source-development".into(),
                key: "e1/r.rds".into(),
                gunzip: true
            }
        );
        assert_eq!(
            e.actions[2].target,
            PlannedTarget::Object {
                bucket: "cell-sets-development".into(),
                key: "e1".into(),
                gunzip: false
            }
        );
        let skipped: Vec<_> = e
            .skipped
            .iter()
            .map(|s| (s.file.as_str(), s.reason))
            .collect();
        assert_eq!(
            skipped,
            [
                ("notes.txt", "no rule matches"),
                (".hidden", "hidden"),
                ("sub", "folder")
            ]
        );
    }

    #[test]
    fn conflicting_objects_keep_one_file() {
        let experiments = vec![ExperimentDir {
            id: "e1".into(),
            path: "/d/e1".into(),
            entries: vec![file("biomage-source.r.rds.gz"), file("r.rds.gz")],
        }];
        let mut plan = plan(&experiments, &rules());
        drop_conflicting_objects(&mut plan);
        let e = &plan.experiments[0];
        assert_eq!(e.actions.len(), 1);
        assert_eq!(e.actions[0].file, "r.rds.gz");
        assert_eq!(e.skipped[0].file, "biomage-source.r.rds.gz");
    }

    #[test]
    fn list_walks_sorted_skips_hidden_and_top_level_files() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("b")).unwrap();
        std::fs::create_dir(root.path().join("a")).unwrap();
        std::fs::create_dir(root.path().join(".git")).unwrap();
        std::fs::write(root.path().join("README.md"), "x").unwrap();
        std::fs::write(root.path().join("a/mock_samples.json"), "{}").unwrap();
        let found = list(root.path(), &[]).unwrap();
        let ids: Vec<_> = found.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(
            found[0].entries,
            [EntryInfo {
                name: "mock_samples.json".into(),
                is_dir: false,
                not_regular: false,
                size: 2
            }]
        );
        let only = list(root.path(), &["b".to_string()]).unwrap();
        assert_eq!(only.len(), 1);
        let err = list(root.path(), &["zzz".to_string()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("experiment zzz is not in") && err.contains("found: a, b"),
            "{err}"
        );
    }

    #[test]
    fn fifos_are_skipped_never_opened_broken_links_fail_loudly() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("e1");
        std::fs::create_dir(&dir).unwrap();
        let fifo =
            std::ffi::CString::new(dir.join("mock_experiment.json").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        std::os::unix::fs::symlink(dir.join("gone"), dir.join("mock_samples.json")).unwrap();
        let found = list(root.path(), &[]).unwrap();
        let plan = plan(&found, &rules());
        let experiment = &plan.experiments[0];
        assert_eq!(experiment.skipped.len(), 1);
        assert_eq!(experiment.skipped[0].file, "mock_experiment.json");
        assert!(experiment.skipped[0].reason.contains("not a regular file"));
        assert_eq!(
            experiment.actions[0].file, "mock_samples.json",
            "a broken link is loaded, and fails loudly"
        );
    }

    #[test]
    fn missing_data_folder_is_one_clear_error() {
        let root = tempfile::tempdir().unwrap();
        let err = list(&root.path().join("nope"), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("does not exist") && err.contains("BIOMAGE_DATA_PATH"),
            "{err}"
        );
        std::fs::write(root.path().join("f"), "").unwrap();
        let err = list(&root.path().join("f"), &[]).unwrap_err().to_string();
        assert!(err.contains("is a file"), "{err}");
    }
}
