//! The declared resources as the endpoint has them: live counts (items; objects and bytes;
//! visible and in-flight messages; subscriptions) and drift from the declaration (a key schema,
//! an index, a FIFO flag, versioning, subscriptions that differ), each said with its fix. The
//! comparisons are pure (`table_drift`, `queue_drift`); the rest asks the endpoint, read-only.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{KeyType as DynamoKeyType, Select};
use aws_sdk_sqs::types::QueueAttributeName;
use futures::future::join_all;
use serde::Serialize;

use crate::aws::{describe_error, error_code, AwsClients};
use crate::stack_file::{
    BucketDecl, KeyType, NameVars, QueueDecl, StackFile, TableDecl, TopicDecl,
};

/// The fix said with every drift.
const RECREATE: &str = "recreate it with `inframock reset`";

/// One declared resource as found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Inventory {
    pub kind: &'static str,
    pub name: String,
    pub exists: bool,
    /// Live counts by name (`items`; `objects`, `bytes`; `visible`, `in_flight`; `subscriptions`).
    pub counts: BTreeMap<&'static str, u64>,
    /// How it differs from inframock.toml, each with the fix; empty when it matches.
    pub drift: Vec<String>,
    /// Why it could not be inspected, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Inventory {
    fn new(kind: &'static str, name: String) -> Inventory {
        Inventory {
            kind,
            name,
            exists: true,
            counts: BTreeMap::new(),
            drift: Vec::new(),
            error: None,
        }
    }

    fn missing(mut self) -> Inventory {
        self.exists = false;
        self.drift
            .push("missing: `inframock reload-data` or `inframock reset` creates it".to_string());
        self
    }

    fn failed(mut self, error: String) -> Inventory {
        self.error = Some(error);
        self
    }
}

/// How a table's items are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// A counting scan of every table: exact, and as slow as the table is large (`resources`).
    Exact,
    /// The table's `ItemCount` (live on the local engines; real DynamoDB refreshes it every six
    /// hours): for what asks often, readiness and the dashboard.
    Quick,
}

/// Every declared resource, in declaration order: tables, buckets, queues, topics.
pub async fn inspect_all(
    clients: &AwsClients,
    stack: &StackFile,
    vars: &NameVars<'_>,
    counting: Counting,
) -> Vec<Inventory> {
    let tables = join_all(
        stack
            .tables
            .iter()
            .map(|t| inspect_table(clients, t, vars, counting)),
    );
    let buckets = join_all(
        stack
            .buckets
            .iter()
            .map(|b| inspect_bucket(clients, b, vars)),
    );
    let queues = join_all(stack.queues.iter().map(|q| inspect_queue(clients, q, vars)));
    let topics = join_all(stack.topics.iter().map(|t| inspect_topic(clients, t, vars)));
    let (tables, buckets, queues, topics) = tokio::join!(tables, buckets, queues, topics);
    tables
        .into_iter()
        .chain(buckets)
        .chain(queues)
        .chain(topics)
        .collect()
}

/// A table's key as found: (attribute, HASH or RANGE, type letter).
type FoundKey = Vec<(String, &'static str, String)>;

/// How a table's key and indexes differ from the declaration (pure).
pub fn table_drift(decl: &TableDecl, found: &FoundKey, found_indexes: &[String]) -> Vec<String> {
    let type_of = |name: &str| match decl.attributes.get(name).copied().unwrap_or(KeyType::S) {
        KeyType::S => "S",
        KeyType::N => "N",
        KeyType::B => "B",
    };
    let mut declared: FoundKey = vec![(
        decl.hash_key.clone(),
        "HASH",
        type_of(&decl.hash_key).into(),
    )];
    if let Some(range) = &decl.range_key {
        declared.push((range.clone(), "RANGE", type_of(range).into()));
    }
    let describe = |key: &FoundKey| {
        key.iter()
            .map(|(name, role, kind)| format!("{name} ({role}, {kind})"))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let mut drift = Vec::new();
    if &declared != found {
        drift.push(format!(
            "differs: key {} declared, {} found: {RECREATE}",
            describe(&declared),
            describe(found)
        ));
    }
    for index in &decl.global_secondary_indexes {
        if !found_indexes.contains(&index.name) {
            drift.push(format!(
                "differs: index {} is missing: {RECREATE}",
                index.name
            ));
        }
    }
    drift
}

async fn inspect_table(
    clients: &AwsClients,
    decl: &TableDecl,
    vars: &NameVars<'_>,
    counting: Counting,
) -> Inventory {
    let inventory = Inventory::new("table", vars.expand(&decl.name));
    let described = clients
        .dynamodb
        .describe_table()
        .table_name(&inventory.name)
        .send()
        .await;
    let table = match described {
        Ok(output) => output
            .table
            .unwrap_or_else(|| aws_sdk_dynamodb::types::TableDescription::builder().build()),
        Err(e) if error_code(&e).as_deref() == Some("ResourceNotFoundException") => {
            return inventory.missing()
        }
        Err(e) => return inventory.failed(describe_error(&e)),
    };
    let types: BTreeMap<&str, &str> = table
        .attribute_definitions()
        .iter()
        .map(|d| (d.attribute_name(), d.attribute_type().as_str()))
        .collect();
    let mut found: FoundKey = table
        .key_schema()
        .iter()
        .map(|k| {
            let role = if k.key_type() == &DynamoKeyType::Hash {
                "HASH"
            } else {
                "RANGE"
            };
            let kind = types
                .get(k.attribute_name())
                .copied()
                .unwrap_or("?")
                .to_string();
            (k.attribute_name().to_string(), role, kind)
        })
        .collect();
    found.sort_by_key(|(_, role, _)| *role != "HASH");
    let indexes: Vec<String> = table
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name().map(str::to_string))
        .collect();
    let mut inventory = inventory;
    inventory.drift = table_drift(decl, &found, &indexes);
    if counting == Counting::Quick {
        let items = table
            .item_count()
            .map_or(0, |n| u64::try_from(n).unwrap_or(0));
        inventory.counts.insert("items", items);
        return inventory;
    }
    match count_items(clients, &inventory.name).await {
        Ok(items) => {
            inventory.counts.insert("items", items);
            inventory
        }
        Err(error) => inventory.failed(error),
    }
}

/// Counts a table's items with a paginated `Scan` (`Select=COUNT`): exact, unlike `ItemCount`,
/// which real DynamoDB refreshes every six hours.
async fn count_items(clients: &AwsClients, table: &str) -> Result<u64, String> {
    let mut pages = clients
        .dynamodb
        .scan()
        .table_name(table)
        .select(Select::Count)
        .into_paginator()
        .send();
    let mut items = 0u64;
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| format!("counting items: {}", describe_error(&e)))?;
        items += u64::try_from(page.count).unwrap_or(0);
    }
    Ok(items)
}

async fn inspect_bucket(clients: &AwsClients, decl: &BucketDecl, vars: &NameVars<'_>) -> Inventory {
    let mut inventory = Inventory::new("bucket", vars.expand(&decl.name));
    let mut pages = clients
        .s3
        .list_objects_v2()
        .bucket(&inventory.name)
        .into_paginator()
        .send();
    let (mut objects, mut bytes) = (0u64, 0u64);
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => {
                for object in page.contents() {
                    objects += 1;
                    bytes += u64::try_from(object.size().unwrap_or(0)).unwrap_or(0);
                }
            }
            Err(e) if error_code(&e).as_deref() == Some("NoSuchBucket") => {
                return inventory.missing()
            }
            Err(e) => return inventory.failed(describe_error(&e)),
        }
    }
    inventory.counts.insert("objects", objects);
    inventory.counts.insert("bytes", bytes);
    if decl.versioning {
        let enabled = match versioning_enabled(clients, &inventory.name).await {
            Ok(enabled) => enabled,
            Err(e) => return inventory.failed(e),
        };
        if !enabled {
            inventory.drift.push(format!(
                "differs: versioning is declared but off: {RECREATE}"
            ));
        }
    }
    inventory
}

/// Whether a bucket has versioning enabled (`Err`: why it could not be read).
pub async fn versioning_enabled(clients: &AwsClients, bucket: &str) -> Result<bool, String> {
    let versioning = clients
        .s3
        .get_bucket_versioning()
        .bucket(bucket)
        .send()
        .await;
    match versioning {
        Ok(output) => Ok(output.status().is_some_and(|s| s.as_str() == "Enabled")),
        // moto answers with a root element the SDK refuses (GetBucketVersioningResponse): read
        // the same answer as text.
        Err(e) => versioning_as_text(&clients.url, bucket)
            .await
            .ok_or_else(|| format!("reading versioning: {}", describe_error(&e))),
    }
}

/// `GET /BUCKET?versioning` read as text: whether its status is `Enabled` (`None` when the
/// endpoint does not answer it unsigned).
async fn versioning_as_text(endpoint: &str, bucket: &str) -> Option<bool> {
    let url = format!("{}/{bucket}?versioning", endpoint.trim_end_matches('/'));
    let (status, body) = crate::http_client::get_text(&url, std::time::Duration::from_secs(10))
        .await
        .ok()?;
    status
        .is_success()
        .then(|| body.contains("<Status>Enabled</Status>"))
}

/// How a queue's attributes differ from the declaration (pure): the attributes `inframock run`
/// creates it with (`resources::queue_attributes`), a standard queue's `FifoQueue` being false and
/// a FIFO queue's `ContentBasedDeduplication` false unless declared.
pub fn queue_drift(decl: &QueueDecl, found: &BTreeMap<String, String>) -> Vec<String> {
    let mut expected: BTreeMap<String, String> = crate::resources::queue_attributes(decl)
        .into_iter()
        .map(|(name, value)| (name.as_str().to_string(), value))
        .collect();
    expected
        .entry("FifoQueue".into())
        .or_insert_with(|| "false".into());
    if decl.fifo {
        expected
            .entry("ContentBasedDeduplication".into())
            .or_insert_with(|| "false".into());
    }
    expected
        .iter()
        .filter_map(|(name, value)| {
            // An absent FifoQueue attribute is a standard queue.
            let actual = found
                .get(name)
                .cloned()
                .or_else(|| (name == "FifoQueue").then(|| "false".to_string()));
            (actual.as_deref() != Some(value.as_str())).then(|| {
                format!(
                    "differs: {name} is {} (declared {value}): {RECREATE}",
                    actual.as_deref().unwrap_or("unset")
                )
            })
        })
        .collect()
}

async fn inspect_queue(clients: &AwsClients, decl: &QueueDecl, vars: &NameVars<'_>) -> Inventory {
    let mut inventory = Inventory::new("queue", vars.expand(&decl.name));
    let url = match clients
        .sqs
        .get_queue_url()
        .queue_name(&inventory.name)
        .send()
        .await
    {
        Ok(output) => output.queue_url.unwrap_or_default(),
        Err(_) => return inventory.missing(),
    };
    let found = match queue_attributes(clients, &url).await {
        Ok(found) => found,
        Err(error) => return inventory.failed(error),
    };
    let (visible, in_flight) = message_counts(&found);
    inventory.counts.insert("visible", visible);
    inventory.counts.insert("in_flight", in_flight);
    inventory.drift = queue_drift(decl, &found);
    inventory
}

/// Every attribute of the queue at `url`, by name (`VisibilityTimeout` -> `"30"`).
pub async fn queue_attributes(
    clients: &AwsClients,
    url: &str,
) -> Result<BTreeMap<String, String>, String> {
    let output = clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .map_err(|e| describe_error(&e))?;
    Ok(output
        .attributes
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| (name.as_str().to_string(), value))
        .collect())
}

/// (visible, in flight) messages from a queue's attributes (0 when the engine leaves one out).
pub fn message_counts(attributes: &BTreeMap<String, String>) -> (u64, u64) {
    let count = |name: &str| {
        attributes
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (
        count("ApproximateNumberOfMessages"),
        count("ApproximateNumberOfMessagesNotVisible"),
    )
}

async fn inspect_topic(clients: &AwsClients, decl: &TopicDecl, vars: &NameVars<'_>) -> Inventory {
    let mut inventory = Inventory::new("topic", vars.expand(&decl.name));
    let Some(arn) = crate::resources::topic_arn(clients, &inventory.name).await else {
        return inventory.missing();
    };
    let mut pages = clients
        .sns
        .list_subscriptions_by_topic()
        .topic_arn(&arn)
        .into_paginator()
        .send();
    let mut subscriptions = 0u64;
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => subscriptions += page.subscriptions().len() as u64,
            Err(e) => return inventory.failed(describe_error(&e)),
        }
    }
    inventory.counts.insert("subscriptions", subscriptions);
    if subscriptions < decl.subscriptions.len() as u64 {
        inventory.drift.push(format!(
            "differs: {} subscription(s) declared, {subscriptions} found: `inframock reload-data` subscribes them again",
            decl.subscriptions.len()
        ));
    }
    inventory
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(toml: &str) -> TableDecl {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn a_table_whose_key_differs_is_drift_with_the_fix() {
        let decl = table(
            "name = \"t\"\nhash_key = \"id\"\nrange_key = \"at\"\nattributes = { at = \"N\" }\n",
        );
        let same: FoundKey = vec![
            ("id".into(), "HASH", "S".into()),
            ("at".into(), "RANGE", "N".into()),
        ];
        assert!(table_drift(&decl, &same, &[]).is_empty());
        let other: FoundKey = vec![("other".into(), "HASH", "S".into())];
        let drift = table_drift(&decl, &other, &[]);
        assert_eq!(drift.len(), 1);
        assert!(
            drift[0].contains("id (HASH, S) + at (RANGE, N) declared, other (HASH, S) found"),
            "{drift:?}"
        );
        assert!(drift[0].ends_with("recreate it with `inframock reset`"));
    }

    #[test]
    fn a_queue_whose_fifo_flag_or_attributes_differ_is_drift() {
        let decl: QueueDecl = toml::from_str(
            "name = \"q.fifo\"\nfifo = true\nattributes = { VisibilityTimeout = \"60\" }\n",
        )
        .unwrap();
        let found = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let matching = found(&[
            ("FifoQueue", "true"),
            ("ContentBasedDeduplication", "false"),
            ("VisibilityTimeout", "60"),
        ]);
        assert!(queue_drift(&decl, &matching).is_empty());
        let standard = found(&[("VisibilityTimeout", "30")]);
        let drift = queue_drift(&decl, &standard);
        assert!(
            drift
                .iter()
                .any(|d| d.contains("FifoQueue is false (declared true)")),
            "{drift:?}"
        );
        assert!(
            drift
                .iter()
                .any(|d| d.contains("VisibilityTimeout is 30 (declared 60)")),
            "{drift:?}"
        );
    }
}
