//! Snapshots: the state of a running stack (S3 objects, DynamoDB items, SQS messages, Redis keys)
//! saved to `.inframock/snapshots/NAME/` and loaded back, into this stack or into another engine
//! on another machine.
//!
//! One snapshot is a folder:
//!
//! | file | what |
//! |---|---|
//! | `manifest.json` | engine, versions, counts, and the size and BLAKE3 of every other part |
//! | `resources.json` | the buckets, each table's key schema and indexes, the queues |
//! | `objects.jsonl` | one line per S3 object: bucket, key, content hash, size, type, metadata |
//! | `versions.jsonl` | versioned buckets' older versions and delete markers, in each key's order |
//! | `objects/<hh>/<hash>` | each distinct content once, named by its BLAKE3 (hard-linked between snapshots) |
//! | `tables/<table>/<n>.json` | items as DynamoDB-typed JSON (`{"records": [...]}`), sorted by key |
//! | `queues.jsonl` | one line per message: queue, body, attributes, group and deduplication ids |
//! | `redis.jsonl` | one line per key: key, time to live, `DUMP` payload |
//!
//! Saving writes a new folder beside the old one and swaps it in whole, so a save that fails or is
//! killed never leaves half a snapshot under its name. Loading verifies every part first and
//! refuses a corrupt or truncated snapshot, naming the part, before anything is written.

pub mod archive;
pub mod changes;
pub mod diff;
pub mod earlier;
pub mod export;
pub mod history;
pub mod interrupt;
pub mod manifest;
pub mod objects;
pub mod persist;
pub mod queues;
pub mod records;
pub mod redis_keys;
pub mod restore;
pub mod save;
pub mod store;
pub mod tables;

use serde::{Deserialize, Serialize};

/// Runs blocking work (hashing, archives, reading whole snapshots) off the async threads.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| anyhow::anyhow!("internal: {e}"))?
}

/// A part of the stack a snapshot can hold (`--services s3,dynamodb,sqs,redis`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    S3,
    Dynamodb,
    Sqs,
    Redis,
}

impl Service {
    /// Every service, in the order they are saved and loaded.
    pub const ALL: [Service; 4] = [Service::S3, Service::Dynamodb, Service::Sqs, Service::Redis];

    /// The name used on the command line and in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::S3 => "s3",
            Service::Dynamodb => "dynamodb",
            Service::Sqs => "sqs",
            Service::Redis => "redis",
        }
    }

    /// Parses `s3,dynamodb,...`; an empty list means every service.
    pub fn parse_list(text: Option<&str>) -> Result<Vec<Service>, String> {
        let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
            return Ok(Service::ALL.to_vec());
        };
        let mut services = Vec::new();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let service = Service::ALL
                .into_iter()
                .find(|s| s.as_str() == word.to_ascii_lowercase())
                .ok_or_else(|| {
                    format!(
                        "--services: unknown service `{word}` (known: s3, dynamodb, sqs, redis)"
                    )
                })?;
            if !services.contains(&service) {
                services.push(service);
            }
        }
        services.sort();
        Ok(services)
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_lists_parse_in_order_without_duplicates() {
        assert_eq!(Service::parse_list(None).unwrap(), Service::ALL.to_vec());
        assert_eq!(
            Service::parse_list(Some("redis, S3,redis")).unwrap(),
            vec![Service::S3, Service::Redis]
        );
        let error = Service::parse_list(Some("s3,sns")).unwrap_err();
        assert!(error.contains("`sns`"), "{error}");
    }
}
