//! Expectations loaded at start from `mocks/*.json`: each file holds one expectation or a list of
//! them. They survive `POST /mocker/reset`; those added through the API do not.

use std::path::Path;

use serde_json::Value;

use super::expectation::{Expectation, ExpectationSpec};
use super::store::Source;

/// Reads every `*.json` of `dir` in name order. A missing folder is fine unless `required`.
/// Each error names the file (and the expectation's index) and the reason.
pub fn load_dir(dir: &Path, required: bool) -> Result<Vec<(ExpectationSpec, Source)>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(Vec::new()),
        Err(e) => {
            return Err(format!(
                "cannot read the mocks folder {}: {e} (set it with --mocks DIR)",
                dir.display()
            ))
        }
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
        .collect();
    files.sort();
    let mut loaded = Vec::new();
    for file in files {
        loaded.extend(load_file(&file, dir)?);
    }
    Ok(loaded)
}

fn load_file(file: &Path, dir: &Path) -> Result<Vec<(ExpectationSpec, Source)>, String> {
    let name = file.display();
    let text = std::fs::read_to_string(file).map_err(|e| format!("{name}: cannot read: {e}"))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
    let items = match value {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        _ => {
            return Err(format!(
                "{name}: expected an expectation object or a list of them"
            ))
        }
    };
    let mut specs = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let spec: ExpectationSpec = serde_json::from_value(item)
            .map_err(|e| format!("{name}: expectation {index}: {e}"))?;
        // Validate now so a bad file stops the start with its name, not a later reset.
        Expectation::compile(spec.clone(), String::new(), dir)
            .map_err(|e| format!("{name}: expectation {index}: {e}"))?;
        specs.push((spec, Source::File(file.to_path_buf())));
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_objects_and_lists_in_name_order_and_names_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("b.json"),
            r#"[{"path": "/b1", "status_code": 200}, {"path": "/b2", "status_code": 201}]"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("a.json"),
            r#"{"path": "/a", "status_code": 200}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let loaded = load_dir(dir.path(), true).unwrap();
        let paths: Vec<&str> = loaded.iter().map(|(s, _)| s.path.as_str()).collect();
        assert_eq!(paths, ["/a", "/b1", "/b2"]);

        std::fs::write(
            dir.path().join("c.json"),
            r#"[{"path": "/c"}, {"path": "/d", "response_delay": -3}]"#,
        )
        .unwrap();
        let err = load_dir(dir.path(), true).unwrap_err();
        assert!(
            err.contains("c.json: expectation 1: `response_delay` must not be negative"),
            "{err}"
        );
        std::fs::write(dir.path().join("c.json"), "{\n  \"path\": ").unwrap();
        let err = load_dir(dir.path(), true).unwrap_err();
        assert!(err.contains("c.json") && err.contains("line 2"), "{err}");

        assert!(load_dir(&dir.path().join("missing"), false)
            .unwrap()
            .is_empty());
        assert!(load_dir(&dir.path().join("missing"), true)
            .unwrap_err()
            .contains("--mocks"));
    }
}
