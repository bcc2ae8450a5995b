//! Fault commands: parsing their parameters and applying them. The same names and parameters work
//! over HTTP (`/mock/hiccup?msecs=200&offset=10`), JSON lines and the harakiri connection.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{Faults, Hiccup, Latency};

/// The commands and their parameters (besides `service`, which every one takes).
pub const COMMANDS: [(&str, &[&str]); 7] = [
    ("hiccup", &["msecs", "offset"]),
    ("truncate", &["limit"]),
    ("failover", &[]),
    ("respawn", &[]),
    ("latency", &["ms", "jitter"]),
    ("reset", &[]),
    ("status", &[]),
];

/// Applies a command to the chosen service (`service=` parameter) or to every proxied service.
/// Returns the answer body (`{"status": "ok", ...}`); the error says what is wrong.
pub fn apply(
    faults: &Faults,
    command: &str,
    params: &BTreeMap<String, Value>,
) -> Result<Value, String> {
    let Some((_, allowed)) = COMMANDS.iter().find(|(name, _)| *name == command) else {
        let names: Vec<&str> = COMMANDS.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "unknown command `{command}`; the commands are {}",
            names.join(", ")
        ));
    };
    for key in params.keys() {
        if key != "service" && !allowed.contains(&key.as_str()) {
            return Err(format!(
                "`{command}` takes no parameter `{key}`; it takes {}",
                if allowed.is_empty() {
                    "only `service`".to_string()
                } else {
                    format!(
                        "{} and `service`",
                        allowed
                            .iter()
                            .map(|a| format!("`{a}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ));
        }
    }
    let targets = match params.get("service") {
        Some(value) => {
            let name = text(value);
            match faults.service(&name) {
                Some(service) => vec![service],
                None => {
                    return Err(format!(
                        "no fault proxy for service `{name}`; proxied services: {}",
                        faults.names().join(", ")
                    ))
                }
            }
        }
        None => faults
            .names()
            .iter()
            .filter_map(|n| faults.service(n))
            .collect(),
    };
    match command {
        "hiccup" => {
            let msecs = number(params, "msecs", MAX_DELAY_MS)?.ok_or("`hiccup` needs `msecs`")?;
            let offset = number(params, "offset", u64::MAX)?.unwrap_or(0);
            let hiccup = (msecs > 0).then_some(Hiccup { msecs, offset });
            targets.iter().for_each(|t| t.update(|s| s.hiccup = hiccup));
        }
        "truncate" => {
            let limit =
                number(params, "limit", u64::MAX)?.ok_or("`truncate` needs `limit` (bytes)")?;
            targets
                .iter()
                .for_each(|t| t.update(|s| s.truncate = Some(limit)));
        }
        "failover" => targets.iter().for_each(|t| t.update(|s| s.down = true)),
        "respawn" => targets.iter().for_each(|t| t.update(|s| s.down = false)),
        "latency" => {
            let ms = number(params, "ms", MAX_DELAY_MS)?.ok_or("`latency` needs `ms`")?;
            let jitter = number(params, "jitter", MAX_DELAY_MS)?.unwrap_or(0);
            let latency = (ms > 0 || jitter > 0).then_some(Latency { ms, jitter });
            targets
                .iter()
                .for_each(|t| t.update(|s| s.latency = latency));
        }
        "reset" => targets
            .iter()
            .for_each(|t| t.update(|s| *s = Default::default())),
        _ => {}
    }
    Ok(json!({"status": "ok", "faults": faults.status()}))
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The longest delay a fault may add (one hour), in milliseconds: larger values would overflow
/// the timers or stall a connection for ever.
pub const MAX_DELAY_MS: u64 = 3_600_000;

/// A whole number parameter from 0 to `max`, given as a JSON number or as text.
fn number(params: &BTreeMap<String, Value>, key: &str, max: u64) -> Result<Option<u64>, String> {
    let Some(value) = params.get(key) else {
        return Ok(None);
    };
    let parsed = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match parsed {
        Some(n) if n <= max => Ok(Some(n)),
        Some(n) => Err(format!("`{key}` is {n}; it must be at most {max}")),
        None => Err(format!(
            "`{key}` must be a non-negative whole number, got {value}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn commands_change_the_chosen_services() {
        let faults = Faults::new(["aws".to_string(), "redis".to_string()]);
        apply(
            &faults,
            "hiccup",
            &params(&[
                ("msecs", json!("200")),
                ("offset", json!(5)),
                ("service", json!("redis")),
            ]),
        )
        .unwrap();
        let redis = faults.service("redis").unwrap();
        assert_eq!(
            redis.current().hiccup,
            Some(Hiccup {
                msecs: 200,
                offset: 5
            })
        );
        assert!(redis.is_active());
        assert!(!faults.service("aws").unwrap().is_active());
        apply(&faults, "truncate", &params(&[("limit", json!(3))])).unwrap();
        assert_eq!(faults.service("aws").unwrap().take_truncate(), Some(3));
        assert!(
            !faults.service("aws").unwrap().is_active(),
            "truncate is one-shot"
        );
        let dropped = redis.watch_failover();
        apply(&faults, "failover", &params(&[])).unwrap();
        assert!(dropped.has_changed().unwrap());
        assert!(redis.current().down);
        apply(&faults, "respawn", &params(&[])).unwrap();
        assert!(!redis.current().down);
        apply(
            &faults,
            "latency",
            &params(&[("ms", json!(10)), ("jitter", json!(5))]),
        )
        .unwrap();
        apply(&faults, "reset", &params(&[])).unwrap();
        assert!(!redis.is_active());
        assert_eq!(redis.current(), Default::default());
    }

    #[test]
    fn bad_commands_are_explained() {
        let faults = Faults::new(["redis".to_string()]);
        let cases = [
            ("explode", params(&[]), "unknown command `explode`"),
            ("hiccup", params(&[]), "needs `msecs`"),
            ("hiccup", params(&[("msecs", json!(-1))]), "non-negative"),
            (
                "latency",
                params(&[("ms", json!(1)), ("jitter", json!(u64::MAX))]),
                "at most 3600000",
            ),
            (
                "latency",
                params(&[("ms", json!("18446744073709551615"))]),
                "at most 3600000",
            ),
            (
                "truncate",
                params(&[("bytes", json!(1))]),
                "no parameter `bytes`",
            ),
            (
                "failover",
                params(&[("service", json!("aws"))]),
                "no fault proxy for service `aws`",
            ),
        ];
        for (command, p, reason) in cases {
            let err = apply(&faults, command, &p).unwrap_err();
            assert!(err.contains(reason), "{command}: {err}");
        }
        assert_eq!(
            faults.service("redis").unwrap().current(),
            Default::default()
        );
    }
}
