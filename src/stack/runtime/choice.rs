//! What `--runtime auto` chose on this project's last run, and why: `.inframock/runtime.json`.
//!
//! With it, `auto` does not make the user wait for a registry twice: when the last run fell back to
//! local processes because an image could not be pulled, and that image is still missing, the next
//! run says so and uses local processes at once (for a day; `--runtime docker` tries again now).

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cli::RuntimeKind;

/// File name of the record inside `.inframock/`.
pub const CHOICE_FILE: &str = "runtime.json";

/// How long a failed pull is remembered before `auto` tries the registry again.
pub const RETRY_PULL_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The runtime `auto` chose, with the images the docker runtime needed then.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuntimeChoice {
    /// `local` or `docker`.
    pub runtime: RuntimeKind,
    /// Why: for local, why not docker.
    pub reason: String,
    /// The images the docker runtime needed (those it ran with, or those it lacked).
    pub images: Vec<String>,
    /// The image that could not be pulled, when that decided for local.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpullable: Option<String>,
    /// Seconds since the Unix epoch.
    pub chosen_at: u64,
}

impl RuntimeChoice {
    /// Whether this remembered failed pull still decides for local: the same images are needed,
    /// and it was less than `RETRY_PULL_AFTER` ago.
    pub fn still_unpullable(&self, images: &[String], now: u64) -> Option<&str> {
        let recent = now.saturating_sub(self.chosen_at) < RETRY_PULL_AFTER.as_secs();
        match &self.unpullable {
            Some(image) if recent && self.images == images => Some(image),
            _ => None,
        }
    }
}

/// The last choice, if one is recorded and readable (an unreadable record is only forgotten).
pub fn read(state_dir: &Path) -> Option<RuntimeChoice> {
    let text = std::fs::read_to_string(state_dir.join(CHOICE_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Records a choice (best effort: a project folder that cannot be written only loses the memory).
pub fn write(state_dir: &Path, choice: &RuntimeChoice) {
    if std::fs::create_dir_all(state_dir).is_err() {
        return;
    }
    if let Ok(text) = serde_json::to_string_pretty(choice) {
        let _ = std::fs::write(state_dir.join(CHOICE_FILE), text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed_pull(at: u64) -> RuntimeChoice {
        RuntimeChoice {
            runtime: RuntimeKind::Local,
            reason: "image x:1 could not be pulled".into(),
            images: vec!["x:1".into(), "redis:7".into()],
            unpullable: Some("x:1".into()),
            chosen_at: at,
        }
    }

    #[test]
    fn a_failed_pull_decides_for_a_day_and_only_for_the_same_images() {
        let choice = failed_pull(1_000);
        let images = vec!["x:1".to_string(), "redis:7".to_string()];
        assert_eq!(choice.still_unpullable(&images, 1_000 + 3_600), Some("x:1"));
        assert_eq!(choice.still_unpullable(&images, 1_000 + 90_000), None);
        assert_eq!(
            choice.still_unpullable(&["x:2".to_string(), "redis:7".to_string()], 1_100),
            None
        );
    }

    #[test]
    fn a_choice_survives_the_file_and_a_broken_file_is_forgotten() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(read(dir.path()), None);
        write(dir.path(), &failed_pull(5));
        assert_eq!(read(dir.path()), Some(failed_pull(5)));
        std::fs::write(dir.path().join(CHOICE_FILE), "{").expect("write");
        assert_eq!(read(dir.path()), None);
    }
}
