//! Proving that JSON files loaded earlier are still in their tables: the recorded first and last
//! keys of every candidate file are looked up together, at most 100 keys per BatchGetItem, so a
//! reload of hundreds of unchanged files costs a handful of calls instead of one per file.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use aws_sdk_dynamodb::types::KeysAndAttributes;
use futures::stream::{self, StreamExt};
use serde_json::Value;

use super::dynamo_json::{key_as_typed_json, key_from_typed_json};
use super::fingerprint::LoadedRecord;
use crate::aws::AwsClients;

/// DynamoDB's most keys in one BatchGetItem.
pub const KEYS_PER_CALL: usize = 100;
/// Lookups in flight at once.
const CALLS_AT_ONCE: usize = 4;

/// A file a record says was loaded, unchanged since: skipped if its keys are found.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub path: PathBuf,
    pub table: String,
    pub record: LoadedRecord,
}

/// The recorded keys to look up, per table, each once, in calls of at most [`KEYS_PER_CALL`]
/// (pure). Null keys (a file without items) need no lookup.
pub fn lookups(candidates: &[Candidate]) -> Vec<(String, Vec<Value>)> {
    let mut per_table: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for candidate in candidates {
        let keys = per_table.entry(&candidate.table).or_default();
        for key in [&candidate.record.first_key, &candidate.record.last_key] {
            if !key.is_null() && !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    per_table
        .into_iter()
        .flat_map(|(table, keys)| {
            keys.chunks(KEYS_PER_CALL)
                .map(|chunk| {
                    (
                        table.to_string(),
                        chunk.iter().map(|k| (*k).clone()).collect(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The candidates whose recorded keys are all in their tables. A lookup that fails or leaves keys
/// unprocessed proves nothing: those files are written again (never a wrong skip).
pub async fn prove(clients: &AwsClients, candidates: &[Candidate]) -> HashSet<PathBuf> {
    let found: Vec<(String, Vec<Value>)> = stream::iter(lookups(candidates))
        .map(|(table, keys)| async move {
            let present = lookup(clients, &table, &keys).await;
            (table, present)
        })
        .buffer_unordered(CALLS_AT_ONCE)
        .collect()
        .await;
    let present: HashSet<(String, String)> = found
        .into_iter()
        .flat_map(|(table, keys)| {
            keys.into_iter()
                .map(move |k| (table.clone(), k.to_string()))
        })
        .collect();
    candidates
        .iter()
        .filter(|c| {
            [&c.record.first_key, &c.record.last_key]
                .iter()
                .all(|key| key.is_null() || present.contains(&(c.table.clone(), key.to_string())))
        })
        .map(|c| c.path.clone())
        .collect()
}

/// The keys among `keys` that `table` holds (as recorded: typed JSON of the key attributes).
async fn lookup(clients: &AwsClients, table: &str, keys: &[Value]) -> Vec<Value> {
    let Some(items) = keys
        .iter()
        .map(key_from_typed_json)
        .collect::<Option<Vec<_>>>()
    else {
        return Vec::new();
    };
    let Some(names) = keys
        .first()
        .and_then(Value::as_object)
        .map(|o| o.keys().cloned().collect::<Vec<String>>())
    else {
        return Vec::new();
    };
    // Only the key attributes come back: whole items would cost the endpoint far more.
    let mut request = KeysAndAttributes::builder()
        .set_keys(Some(items))
        .projection_expression(
            (0..names.len())
                .map(|i| format!("#k{i}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
    for (i, name) in names.iter().enumerate() {
        request = request.expression_attribute_names(format!("#k{i}"), name);
    }
    let Ok(request) = request.build() else {
        return Vec::new();
    };
    let answered = clients
        .dynamodb
        .batch_get_item()
        .request_items(table, request)
        .send()
        .await;
    match answered {
        Ok(output) => output
            .responses
            .and_then(|mut r| r.remove(table))
            .unwrap_or_default()
            .iter()
            .map(|item| key_as_typed_json(item, &names))
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn candidate(table: &str, first: Value, last: Value) -> Candidate {
        Candidate {
            path: PathBuf::from(format!("/d/{table}/{first}")),
            table: table.into(),
            record: LoadedRecord {
                fingerprint: "f".into(),
                first_key: first,
                last_key: last,
            },
        }
    }

    #[test]
    fn keys_are_grouped_per_table_deduplicated_and_chunked() {
        let mut candidates: Vec<Candidate> = (0..120)
            .map(|i| {
                candidate(
                    "t",
                    json!({"id": {"S": format!("a{i}")}}),
                    json!({"id": {"S": format!("z{i}")}}),
                )
            })
            .collect();
        candidates.push(candidate(
            "t",
            json!({"id": {"S": "a0"}}),
            json!({"id": {"S": "a0"}}),
        ));
        candidates.push(candidate("u", Value::Null, Value::Null));
        candidates.push(candidate(
            "v",
            json!({"k": {"N": "1"}}),
            json!({"k": {"N": "1"}}),
        ));
        let calls = lookups(&candidates);
        let for_t: Vec<usize> = calls
            .iter()
            .filter(|(t, _)| t == "t")
            .map(|(_, k)| k.len())
            .collect();
        assert_eq!(
            for_t,
            [100, 100, 40],
            "240 distinct keys of t in calls of 100"
        );
        assert!(
            calls.iter().all(|(t, _)| t != "u"),
            "an empty file needs no lookup"
        );
        assert_eq!(
            calls.iter().find(|(t, _)| t == "v").map(|(_, k)| k.len()),
            Some(1),
            "first == last is looked up once"
        );
    }
}
