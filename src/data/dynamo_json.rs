//! JSON files to DynamoDB items. A file is one item, or one item per element of a top-level
//! `records` array. Each file is either plain JSON (numbers kept exactly as written, as `N`
//! strings) or DynamoDB-typed JSON (`{"experimentId": {"S": "..."}}`); the format is detected per file.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use serde_json::Value;

/// One DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// How a file's items are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JsonFormat {
    Plain,
    Typed,
}

/// Why a JSON file cannot become items. Item indexes are 0-based positions in `records`
/// (0 for a single-item file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("the top level must be an object (one item) or {{\"records\": [...]}}")]
    TopLevelNotObject,
    #[error("`records` must be an array of objects")]
    RecordsNotArray,
    #[error("item {index}: must be a JSON object")]
    ItemNotObject { index: usize },
    #[error("item {index}, attribute `{path}`: {message}")]
    BadTypedValue {
        index: usize,
        path: String,
        message: String,
    },
    #[error("item {index}: missing key attribute `{key}` (the table's key is {key_schema})")]
    MissingKey {
        index: usize,
        key: String,
        key_schema: String,
    },
    #[error("item {index}: key attribute `{key}` must be a string, number or binary")]
    KeyNotScalar { index: usize, key: String },
    /// Something DynamoDB would refuse (see `validate`).
    #[error("item {index}: {reason}")]
    Invalid { index: usize, reason: String },
}

const TYPE_TAGS: [&str; 10] = ["S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"];

/// Parses a JSON file's text into items and tells which format it used.
pub fn parse_items(text: &str) -> Result<(JsonFormat, Vec<Item>), ItemError> {
    let document: Value = serde_json::from_str(text).map_err(|e| ItemError::Syntax {
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })?;
    let Value::Object(mut top) = document else {
        return Err(ItemError::TopLevelNotObject);
    };
    // Taken out of the document, not copied: a file's items are in memory once.
    let raw_items: Vec<Value> = match top.remove("records") {
        Some(Value::Array(records)) => records,
        Some(_) => return Err(ItemError::RecordsNotArray),
        None => vec![Value::Object(top)],
    };
    let format = match raw_items.first() {
        Some(Value::Object(first)) if looks_typed(first) => JsonFormat::Typed,
        _ => JsonFormat::Plain,
    };
    let mut items = Vec::with_capacity(raw_items.len());
    for (index, raw) in raw_items.into_iter().enumerate() {
        let Value::Object(map) = raw else {
            return Err(ItemError::ItemNotObject { index });
        };
        let mut item = Item::with_capacity(map.len());
        for (name, value) in map {
            let attribute = match format {
                JsonFormat::Plain => plain_to_attribute(value),
                JsonFormat::Typed => typed_to_attribute(&value).map_err(|(path, message)| {
                    ItemError::BadTypedValue {
                        index,
                        path: join_path(&name, &path),
                        message,
                    }
                })?,
            };
            item.insert(name, attribute);
        }
        items.push(item);
    }
    Ok((format, items))
}

/// The key of an item as text, to find duplicates.
pub fn key_of(item: &Item, keys: &[String]) -> String {
    keys.iter()
        .map(|k| format!("{:?}", item.get(k)))
        .collect::<Vec<_>>()
        .join("\u{1}")
}

/// The key attributes of an item as typed JSON (`{"id": {"S": "x"}}`), to record and look up.
pub fn key_as_typed_json(item: &Item, keys: &[String]) -> Value {
    let mut fields = serde_json::Map::new();
    for name in keys {
        if let Some(value @ (AttributeValue::S(_) | AttributeValue::N(_) | AttributeValue::B(_))) =
            item.get(name)
        {
            fields.insert(name.clone(), attribute_to_typed(value));
        }
    }
    Value::Object(fields)
}

/// A whole item as DynamoDB-typed JSON, attributes sorted by name (what `aws dynamodb scan`
/// prints; the inverse of [`typed_to_attribute`]).
pub fn item_to_typed(item: &Item) -> Value {
    let mut names: Vec<&String> = item.keys().collect();
    names.sort();
    Value::Object(
        names
            .into_iter()
            .map(|name| (name.clone(), attribute_to_typed(&item[name])))
            .collect(),
    )
}

/// One attribute as typed JSON: numbers stay the exact text DynamoDB holds, binary is base64.
pub fn attribute_to_typed(value: &AttributeValue) -> Value {
    let base64 = |b: &Blob| base64::engine::general_purpose::STANDARD.encode(b.as_ref());
    match value {
        AttributeValue::S(s) => serde_json::json!({ "S": s }),
        AttributeValue::N(n) => serde_json::json!({ "N": n }),
        AttributeValue::B(b) => serde_json::json!({ "B": base64(b) }),
        AttributeValue::Bool(b) => serde_json::json!({ "BOOL": b }),
        AttributeValue::Null(_) => serde_json::json!({ "NULL": true }),
        AttributeValue::Ss(set) => serde_json::json!({ "SS": set }),
        AttributeValue::Ns(set) => serde_json::json!({ "NS": set }),
        AttributeValue::Bs(set) => {
            serde_json::json!({ "BS": set.iter().map(base64).collect::<Vec<_>>() })
        }
        AttributeValue::L(list) => {
            serde_json::json!({ "L": list.iter().map(attribute_to_typed).collect::<Vec<_>>() })
        }
        AttributeValue::M(map) => serde_json::json!({ "M": item_to_typed(map) }),
        _ => serde_json::json!({ "NULL": true }),
    }
}

/// A key recorded by [`key_as_typed_json`], back as attributes (`None` if it is not one).
pub fn key_from_typed_json(key: &Value) -> Option<Item> {
    let Value::Object(fields) = key else {
        return None;
    };
    fields
        .iter()
        .map(|(name, value)| Some((name.clone(), typed_to_attribute(value).ok()?)))
        .collect()
}

/// A typed-JSON item: every attribute is an object with exactly one type tag.
fn looks_typed(item: &serde_json::Map<String, Value>) -> bool {
    !item.is_empty()
        && item.values().all(|value| match value {
            Value::Object(inner) => {
                inner.len() == 1 && inner.keys().all(|k| TYPE_TAGS.contains(&k.as_str()))
            }
            _ => false,
        })
}

/// Plain JSON value to an attribute: numbers become `N` with their exact text.
pub fn plain_to_attribute(value: Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s),
        Value::Array(values) => {
            AttributeValue::L(values.into_iter().map(plain_to_attribute).collect())
        }
        Value::Object(map) => AttributeValue::M(
            map.into_iter()
                .map(|(k, v)| (k, plain_to_attribute(v)))
                .collect(),
        ),
    }
}

/// Typed JSON value (`{"S": "x"}`) to an attribute; errors carry the path inside the value.
pub fn typed_to_attribute(value: &Value) -> Result<AttributeValue, (String, String)> {
    let Value::Object(map) = value else {
        return Err((
            String::new(),
            format!(
                "expected a typed value like {{\"S\": \"...\"}}, found {}",
                kind(value)
            ),
        ));
    };
    let mut entries = map.iter();
    let (Some((tag, inner)), None) = (entries.next(), entries.next()) else {
        return Err((
            String::new(),
            "a typed value has exactly one type tag".to_string(),
        ));
    };
    let wrong = |expected: &str| {
        Err((
            String::new(),
            format!("{tag} needs {expected}, found {}", kind(inner)),
        ))
    };
    match (tag.as_str(), inner) {
        ("S", Value::String(s)) => Ok(AttributeValue::S(s.clone())),
        ("S", _) => wrong("a string"),
        ("N", Value::String(s)) => Ok(AttributeValue::N(s.clone())),
        ("N", Value::Number(n)) => Ok(AttributeValue::N(n.to_string())),
        ("N", _) => wrong("a number as a string"),
        ("B", Value::String(s)) => decode_base64(s).map(AttributeValue::B),
        ("B", _) => wrong("base64 text"),
        ("BOOL", Value::Bool(b)) => Ok(AttributeValue::Bool(*b)),
        ("BOOL", _) => wrong("true or false"),
        ("NULL", Value::Bool(true)) => Ok(AttributeValue::Null(true)),
        ("NULL", _) => wrong("true"),
        ("M", Value::Object(fields)) => {
            let mut out = HashMap::with_capacity(fields.len());
            for (name, field) in fields {
                let converted =
                    typed_to_attribute(field).map_err(|(path, m)| (join_path(name, &path), m))?;
                out.insert(name.clone(), converted);
            }
            Ok(AttributeValue::M(out))
        }
        ("M", _) => wrong("an object"),
        ("L", Value::Array(values)) => values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                typed_to_attribute(v).map_err(|(path, m)| (join_path(&format!("[{i}]"), &path), m))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(AttributeValue::L),
        ("L", _) => wrong("an array"),
        ("SS", Value::Array(values)) => values
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err((
                    String::new(),
                    format!("SS holds strings, found {}", kind(other)),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(AttributeValue::Ss),
        ("NS", Value::Array(values)) => values
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                other => Err((
                    String::new(),
                    format!("NS holds numbers, found {}", kind(other)),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(AttributeValue::Ns),
        ("BS", Value::Array(values)) => values
            .iter()
            .map(|v| match v {
                Value::String(s) => decode_base64(s),
                other => Err((
                    String::new(),
                    format!("BS holds base64 text, found {}", kind(other)),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(AttributeValue::Bs),
        ("SS" | "NS" | "BS", _) => wrong("an array"),
        (other, _) => Err((
            String::new(),
            format!(
                "unknown type tag `{other}` (use one of {})",
                TYPE_TAGS.join(", ")
            ),
        )),
    }
}

fn decode_base64(text: &str) -> Result<Blob, (String, String)> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map(Blob::new)
        .map_err(|e| (String::new(), format!("invalid base64: {e}")))
}

fn join_path(head: &str, tail: &str) -> String {
    if tail.is_empty() {
        head.to_string()
    } else if tail.starts_with('[') {
        format!("{head}{tail}")
    } else {
        format!("{head}.{tail}")
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// serde_json appends " at line L column C"; we report those separately.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> (JsonFormat, Item) {
        let (format, mut items) = parse_items(text).expect("parses");
        assert_eq!(items.len(), 1);
        (format, items.remove(0))
    }

    #[test]
    fn plain_scalars_nested_maps_and_lists() {
        let (format, item) = one(r#"{"id": "e1", "n": 3, "ok": true, "none": null,
            "meta": {"organism": "mmusculus", "deep": {"x": [1, "a", false]}}, "empty": {}, "list": []}"#);
        assert_eq!(format, JsonFormat::Plain);
        assert_eq!(item["id"], AttributeValue::S("e1".into()));
        assert_eq!(item["n"], AttributeValue::N("3".into()));
        assert_eq!(item["ok"], AttributeValue::Bool(true));
        assert_eq!(item["none"], AttributeValue::Null(true));
        let AttributeValue::M(meta) = &item["meta"] else {
            panic!("meta is a map")
        };
        assert_eq!(meta["organism"], AttributeValue::S("mmusculus".into()));
        let AttributeValue::M(deep) = &meta["deep"] else {
            panic!("deep is a map")
        };
        assert_eq!(
            deep["x"],
            AttributeValue::L(vec![
                AttributeValue::N("1".into()),
                AttributeValue::S("a".into()),
                AttributeValue::Bool(false)
            ])
        );
        assert_eq!(item["empty"], AttributeValue::M(HashMap::new()));
        assert_eq!(item["list"], AttributeValue::L(vec![]));
    }

    #[test]
    fn numbers_are_kept_exactly() {
        let (_, item) = one(
            r#"{"big": 123456789012345678901234567890123456, "precise": 0.1000000000000000055511151231257827,
            "float": 0.05, "neg": -1.5e-7, "exp": 1E+3, "huge": 99999999999999999999}"#,
        );
        assert_eq!(
            item["big"],
            AttributeValue::N("123456789012345678901234567890123456".into())
        );
        assert_eq!(
            item["precise"],
            AttributeValue::N("0.1000000000000000055511151231257827".into())
        );
        assert_eq!(item["float"], AttributeValue::N("0.05".into()));
        assert_eq!(item["neg"], AttributeValue::N("-1.5e-7".into()));
        assert_eq!(item["exp"], AttributeValue::N("1e+3".into()));
        assert_eq!(
            item["huge"],
            AttributeValue::N("99999999999999999999".into())
        );
    }

    #[test]
    fn typed_json_with_sets_binary_null_and_nesting() {
        let (format, item) = one(r#"{"experimentId": {"S": "e1"}, "count": {"N": "42.50"},
            "rbac_can_write": {"SS": ["a", "b"]}, "ns": {"NS": ["1", 2.5]}, "blob": {"B": "aGk="},
            "bs": {"BS": ["AA==", "AQ=="]}, "flag": {"BOOL": false}, "nothing": {"NULL": true},
            "meta": {"M": {"organism": {"S": "hs"}, "tags": {"L": [{"S": "x"}, {"N": "1"}]}}}}"#);
        assert_eq!(format, JsonFormat::Typed);
        assert_eq!(item["experimentId"], AttributeValue::S("e1".into()));
        assert_eq!(item["count"], AttributeValue::N("42.50".into()));
        assert_eq!(
            item["rbac_can_write"],
            AttributeValue::Ss(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            item["ns"],
            AttributeValue::Ns(vec!["1".into(), "2.5".into()])
        );
        assert_eq!(item["blob"], AttributeValue::B(Blob::new(b"hi".to_vec())));
        assert_eq!(
            item["bs"],
            AttributeValue::Bs(vec![Blob::new(vec![0]), Blob::new(vec![1])])
        );
        assert_eq!(item["flag"], AttributeValue::Bool(false));
        assert_eq!(item["nothing"], AttributeValue::Null(true));
        let AttributeValue::M(meta) = &item["meta"] else {
            panic!("map")
        };
        assert_eq!(
            meta["tags"],
            AttributeValue::L(vec![
                AttributeValue::S("x".into()),
                AttributeValue::N("1".into())
            ])
        );
    }

    #[test]
    fn a_plain_item_that_merely_contains_maps_stays_plain() {
        let (format, item) = one(r#"{"experimentId": "e1", "meta": {"S": "not a type, a field"}}"#);
        assert_eq!(format, JsonFormat::Plain);
        let AttributeValue::M(meta) = &item["meta"] else {
            panic!("map")
        };
        assert_eq!(meta["S"], AttributeValue::S("not a type, a field".into()));
    }

    #[test]
    fn records_array_gives_one_item_each_and_empty_records_nothing() {
        let (_, items) = parse_items(r#"{"records": [{"a": 1}, {"a": 2}]}"#).unwrap();
        assert_eq!(items.len(), 2);
        let (_, none) = parse_items(r#"{"records": []}"#).unwrap();
        assert!(none.is_empty());
        assert_eq!(
            parse_items(r#"{"records": {}}"#).unwrap_err(),
            ItemError::RecordsNotArray
        );
        assert_eq!(
            parse_items(r#"{"records": [{"a": 1}, 3]}"#).unwrap_err(),
            ItemError::ItemNotObject { index: 1 }
        );
        assert_eq!(
            parse_items("[1]").unwrap_err(),
            ItemError::TopLevelNotObject
        );
    }

    #[test]
    fn typed_records_are_detected_per_file() {
        let (format, items) =
            parse_items(r#"{"records": [{"experimentId": {"S": "e"}, "plotUuid": {"S": "p"}}]}"#)
                .unwrap();
        assert_eq!(format, JsonFormat::Typed);
        assert_eq!(items[0]["plotUuid"], AttributeValue::S("p".into()));
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let err = parse_items("{\n  \"a\": 1,\n  \"b\": ]\n}").unwrap_err();
        let ItemError::Syntax { line, column, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!((*line, *column), (3, 8));
        assert!(
            err.to_string()
                .starts_with("invalid JSON at line 3, column 8: expected value"),
            "{err}"
        );
        assert!(matches!(parse_items(""), Err(ItemError::Syntax { .. })));
    }

    #[test]
    fn bad_typed_values_name_the_attribute_path() {
        let err =
            parse_items(r#"{"id": {"S": "x"}, "meta": {"M": {"n": {"N": true}}}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "item 0, attribute `meta.n`: N needs a number as a string, found a boolean"
        );
        let err = parse_items(r#"{"id": {"S": "x"}, "b": {"B": "!!"}}"#).unwrap_err();
        assert!(
            err.to_string().contains("attribute `b`: invalid base64"),
            "{err}"
        );
        let err = parse_items(r#"{"records": [{"id": {"S": "x"}}, {"id": "plain"}]}"#).unwrap_err();
        assert!(
            err.to_string().starts_with("item 1, attribute `id`"),
            "{err}"
        );
    }

    #[test]
    fn keys_round_trip_through_typed_json() {
        let keys = vec!["id".to_string(), "n".to_string()];
        let (_, items) = parse_items(r#"{"id": "a", "n": 12345678901234567890, "x": 1}"#).unwrap();
        let typed = key_as_typed_json(&items[0], &keys);
        assert_eq!(
            typed,
            serde_json::json!({"id": {"S": "a"}, "n": {"N": "12345678901234567890"}})
        );
        let back = key_from_typed_json(&typed).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back["n"], items[0]["n"]);
    }

    #[test]
    fn key_of_distinguishes_items() {
        let keys = vec!["id".to_string()];
        let (_, items) =
            parse_items(r#"{"records": [{"id": "a", "v": 1}, {"id": "a", "v": 2}, {"id": "b"}]}"#)
                .unwrap();
        assert_eq!(key_of(&items[0], &keys), key_of(&items[1], &keys));
        assert_ne!(key_of(&items[0], &keys), key_of(&items[2], &keys));
    }

    #[test]
    fn typed_json_survives_a_round_trip_through_attributes() {
        let typed = serde_json::json!({
            "b": {"B": "AAEC"}, "bool": {"BOOL": true}, "bs": {"BS": ["AA==", "AQ=="]},
            "l": {"L": [{"N": "1.50"}, {"S": "x"}]},
            "m": {"M": {"inner": {"NS": ["1", "100000000000000000000000000000000001"]}}},
            "n": {"N": "3.50"}, "null": {"NULL": true}, "s": {"S": "text"}, "ss": {"SS": ["a", "b"]}
        });
        let Value::Object(fields) = &typed else {
            unreachable!("an object literal")
        };
        let item: Item = fields
            .iter()
            .map(|(name, value)| (name.clone(), typed_to_attribute(value).expect("typed")))
            .collect();
        assert_eq!(item_to_typed(&item), typed);
    }
}
