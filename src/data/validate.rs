//! What DynamoDB would refuse, checked locally for every item of a file before its first write, so
//! an invalid item never leaves a file half-written: key attributes present, non-empty and of the
//! table's declared type; items at most 400 KB; numbers of at most 38 significant digits within
//! DynamoDB's range; sets non-empty and without duplicates. Pure: unit-tested exhaustively.

use std::collections::HashSet;

use aws_sdk_dynamodb::types::AttributeValue;

use super::dynamo_json::{Item, ItemError};

/// DynamoDB's largest item, in bytes (names and values, UTF-8).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// DynamoDB's number precision.
pub const MAX_NUMBER_DIGITS: usize = 38;

/// The scalar type a key attribute is declared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ScalarType {
    S,
    N,
    B,
}

impl ScalarType {
    /// From DynamoDB's `AttributeType` name.
    pub fn parse(name: &str) -> Option<ScalarType> {
        match name {
            "S" => Some(ScalarType::S),
            "N" => Some(ScalarType::N),
            "B" => Some(ScalarType::B),
            _ => None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ScalarType::S => "a string (S)",
            ScalarType::N => "a number (N)",
            ScalarType::B => "binary (B)",
        }
    }
}

/// A table's key: its attributes (HASH first, then RANGE) and their declared types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableKey {
    pub attributes: Vec<(String, ScalarType)>,
}

impl TableKey {
    /// The key attribute names, HASH first.
    pub fn names(&self) -> Vec<String> {
        self.attributes.iter().map(|(n, _)| n.clone()).collect()
    }

    fn describe(&self) -> String {
        self.attributes
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

/// Checks every item; the first invalid one is the error (with its index in the file).
pub fn validate_items(items: &[Item], key: &TableKey) -> Result<(), ItemError> {
    for (index, item) in items.iter().enumerate() {
        validate_item(index, item, key)?;
    }
    Ok(())
}

fn validate_item(index: usize, item: &Item, key: &TableKey) -> Result<(), ItemError> {
    for (name, declared) in &key.attributes {
        let invalid = |reason: String| ItemError::Invalid { index, reason };
        let value = item.get(name).ok_or_else(|| ItemError::MissingKey {
            index,
            key: name.clone(),
            key_schema: key.describe(),
        })?;
        let (found, empty) = match value {
            AttributeValue::S(s) => (ScalarType::S, s.is_empty()),
            AttributeValue::N(_) => (ScalarType::N, false),
            AttributeValue::B(b) => (ScalarType::B, b.as_ref().is_empty()),
            _ => {
                return Err(ItemError::KeyNotScalar {
                    index,
                    key: name.clone(),
                })
            }
        };
        if found != *declared {
            return Err(invalid(format!(
                "key attribute `{name}` must be {} as the table declares it, found {}",
                declared.describe(),
                found.describe()
            )));
        }
        if empty {
            return Err(invalid(format!(
                "key attribute `{name}` is empty; DynamoDB refuses empty key values"
            )));
        }
    }
    let mut size = 0;
    for (name, value) in item {
        check_value(value).map_err(|reason| ItemError::Invalid {
            index,
            reason: format!("attribute `{name}`: {reason}"),
        })?;
        size += name.len() + value_size(value);
    }
    if size > MAX_ITEM_BYTES {
        return Err(ItemError::Invalid {
            index,
            reason: format!(
                "{size} bytes; DynamoDB items are at most {MAX_ITEM_BYTES} bytes (400 KB)"
            ),
        });
    }
    Ok(())
}

/// Numbers and sets anywhere in a value, nested ones too.
fn check_value(value: &AttributeValue) -> Result<(), String> {
    match value {
        AttributeValue::N(n) => check_number(n),
        AttributeValue::Ns(numbers) => {
            numbers.iter().try_for_each(|n| check_number(n))?;
            check_set(numbers.iter().map(|n| normalize_number(n)), "NS")
        }
        AttributeValue::Ss(strings) => check_set(strings.iter().cloned(), "SS"),
        AttributeValue::Bs(blobs) => check_set(blobs.iter().map(|b| b.as_ref().to_vec()), "BS"),
        AttributeValue::L(values) => values.iter().try_for_each(check_value),
        AttributeValue::M(fields) => fields.values().try_for_each(check_value),
        _ => Ok(()),
    }
}

fn check_set<T: std::hash::Hash + Eq>(
    members: impl ExactSizeIterator<Item = T>,
    tag: &str,
) -> Result<(), String> {
    let count = members.len();
    if count == 0 {
        return Err(format!(
            "an empty set ({tag}); DynamoDB sets hold at least one member"
        ));
    }
    let unique: HashSet<T> = members.collect();
    if unique.len() != count {
        return Err(format!("a set ({tag}) holds the same member twice"));
    }
    Ok(())
}

/// Sign, digits without leading/trailing zeros, and the decimal exponent of the first digit.
fn parse_number(text: &str) -> Option<(bool, String, i64)> {
    let text = text.trim();
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], rest[at + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if !whole
        .bytes()
        .chain(fraction.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let all: String = format!("{whole}{fraction}");
    let leading = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_matches('0').to_string();
    // Position of the first significant digit relative to the decimal point.
    let magnitude = whole.len() as i64 - leading as i64 - 1 + exponent;
    Some((negative, digits, magnitude))
}

fn normalize_number(text: &str) -> String {
    match parse_number(text) {
        Some((_, digits, _)) if digits.is_empty() => "0".to_string(),
        Some((negative, digits, magnitude)) => format!("{negative}{digits}e{magnitude}"),
        None => text.to_string(),
    }
}

fn check_number(text: &str) -> Result<(), String> {
    let Some((_, digits, magnitude)) = parse_number(text) else {
        return Err(format!("`{text}` is not a number"));
    };
    if digits.len() > MAX_NUMBER_DIGITS {
        return Err(format!(
            "the number {text} has {} significant digits; DynamoDB keeps at most {MAX_NUMBER_DIGITS} (store it as a string)",
            digits.len()
        ));
    }
    if !digits.is_empty() && !(-130..=125).contains(&magnitude) {
        return Err(format!(
            "the number {text} is outside DynamoDB's range (1E-130 to 9.99E+125 in magnitude)"
        ));
    }
    Ok(())
}

/// DynamoDB's size of a value (as its documentation counts it, to the byte or a little above).
fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(v) => 3 + v.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, e)| 1 + k.len() + value_size(e))
                .sum::<usize>()
        }
        _ => 0,
    }
}

fn number_size(text: &str) -> usize {
    parse_number(text).map_or(text.len(), |(_, digits, _)| digits.len().div_ceil(2) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::primitives::Blob;

    fn key() -> TableKey {
        TableKey {
            attributes: vec![("id".into(), ScalarType::S), ("n".into(), ScalarType::N)],
        }
    }

    fn item(fields: &[(&str, AttributeValue)]) -> Item {
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn ok_item() -> Item {
        item(&[
            ("id", AttributeValue::S("a".into())),
            ("n", AttributeValue::N("1".into())),
        ])
    }

    fn error_of(items: &[Item]) -> String {
        validate_items(items, &key()).unwrap_err().to_string()
    }

    #[test]
    fn valid_items_pass() {
        let mut full = ok_item();
        full.insert(
            "exact".into(),
            AttributeValue::N("12345678901234567890123456789012345678".into()),
        );
        full.insert("small".into(), AttributeValue::N("-1.5E-129".into()));
        full.insert("zero".into(), AttributeValue::N("0.000".into()));
        full.insert(
            "set".into(),
            AttributeValue::Ns(vec!["1".into(), "2".into()]),
        );
        full.insert(
            "nested".into(),
            AttributeValue::M(
                [(
                    "l".to_string(),
                    AttributeValue::L(vec![AttributeValue::Bool(true)]),
                )]
                .into(),
            ),
        );
        assert!(validate_items(&[ok_item(), full], &key()).is_ok());
    }

    #[test]
    fn keys_must_be_present_non_empty_and_of_the_declared_type() {
        let mut missing = ok_item();
        missing.remove("n");
        let err = error_of(&[ok_item(), missing]);
        assert!(
            err.starts_with("item 1: missing key attribute `n`"),
            "{err}"
        );
        let mut empty = ok_item();
        empty.insert("id".into(), AttributeValue::S(String::new()));
        assert!(error_of(&[empty]).contains("`id` is empty"));
        let mut wrong = ok_item();
        wrong.insert("id".into(), AttributeValue::N("5".into()));
        let err = error_of(&[wrong]);
        assert!(err.contains("must be a string (S)"), "{err}");
        assert!(err.contains("found a number (N)"), "{err}");
        let mut empty_binary = ok_item();
        let binary_key = TableKey {
            attributes: vec![("b".into(), ScalarType::B)],
        };
        empty_binary.insert("b".into(), AttributeValue::B(Blob::new(Vec::new())));
        assert!(validate_items(&[empty_binary], &binary_key).is_err());
        let mut listed = ok_item();
        listed.insert("id".into(), AttributeValue::L(vec![]));
        assert!(error_of(&[listed]).contains("must be a string, number or binary"));
    }

    #[test]
    fn numbers_keep_38_digits_within_range() {
        for bad in [
            "123456789012345678901234567890123456789",
            "1e126",
            "1e-131",
            "12a",
            "",
        ] {
            let mut it = ok_item();
            it.insert("x".into(), AttributeValue::N(bad.into()));
            let err = error_of(&[it]);
            assert!(err.contains("attribute `x`"), "{bad}: {err}");
        }
        let mut trailing_zeros = ok_item();
        trailing_zeros.insert(
            "x".into(),
            AttributeValue::N("1000000000000000000000000000000000000000000".into()),
        );
        assert!(validate_items(&[trailing_zeros], &key()).is_ok());
    }

    #[test]
    fn sets_are_non_empty_without_duplicates_also_nested() {
        let mut empty = ok_item();
        empty.insert("s".into(), AttributeValue::Ss(vec![]));
        assert!(error_of(&[empty]).contains("empty set (SS)"));
        let mut twice = ok_item();
        twice.insert(
            "s".into(),
            AttributeValue::Ns(vec!["1".into(), "1.0".into()]),
        );
        assert!(error_of(&[twice]).contains("same member twice"));
        let mut nested = ok_item();
        nested.insert(
            "m".into(),
            AttributeValue::L(vec![AttributeValue::Bs(vec![])]),
        );
        assert!(error_of(&[nested]).contains("attribute `m`"));
    }

    #[test]
    fn items_over_400_kb_are_refused() {
        let mut big = ok_item();
        big.insert("blob".into(), AttributeValue::S("x".repeat(MAX_ITEM_BYTES)));
        assert!(error_of(&[big]).contains("400 KB"));
        let mut fits = ok_item();
        fits.insert("blob".into(), AttributeValue::S("x".repeat(300 * 1024)));
        assert!(validate_items(&[fits], &key()).is_ok());
    }
}
