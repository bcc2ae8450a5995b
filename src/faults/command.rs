//! Fault commands: parsing their parameters and applying them. The same names and parameters work
//! over HTTP (`/mock/hiccup?msecs=200&offset=10`), JSON lines and the harakiri connection.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{Faults, Hiccup, Latency, OpFail};

/// The commands and their parameters (besides `service`, which every one takes), with what each
/// does (listed by `help`). Names are case-insensitive (`HICCUP`, as libcouchbase sends them).
pub const COMMANDS: [(&str, &[&str], &str); 9] = [
    (
        "hiccup",
        &["msecs", "offset"],
        "stall what a service sends for msecs after offset bytes (msecs 0 clears)",
    ),
    (
        "truncate",
        &["limit"],
        "cut the next chunk a service sends to limit bytes, then close (limit 0 clears)",
    ),
    (
        "failover",
        &["idx", "bucket"],
        "drop open connections and refuse new ones until respawn",
    ),
    (
        "respawn",
        &["idx", "bucket"],
        "accept connections again after failover",
    ),
    (
        "latency",
        &["ms", "jitter"],
        "delay every chunk by ms plus up to jitter ms (0 clears)",
    ),
    (
        "opfail",
        &["count", "code"],
        "fail the next count connections (count < 0: until reset; 0: restore), answering HTTP code when it is 100-599, else closing them",
    ),
    ("reset", &[], "clear every fault"),
    ("status", &[], "the faults in force and the connections forwarded"),
    ("help", &[], "this list"),
];

/// Applies a command to the chosen service (`service=` or CouchbaseMock's `idx=`, the proxied
/// service's index in declared order) or to every proxied service. Returns the answer body
/// (`{"status": "ok", "faults": ...}`, plus `commands` for `help`); the error says what is wrong.
pub fn apply(
    faults: &Faults,
    command: &str,
    params: &BTreeMap<String, Value>,
) -> Result<Value, String> {
    let command = command.to_ascii_lowercase();
    let Some((_, allowed, _)) = COMMANDS.iter().find(|(name, _, _)| *name == command) else {
        let names: Vec<&str> = COMMANDS.iter().map(|(n, _, _)| *n).collect();
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
    let targets = targets(faults, params)?;
    match command.as_str() {
        "hiccup" => {
            let msecs = number(params, "msecs", MAX_DELAY_MS)?.ok_or("`hiccup` needs `msecs`")?;
            let offset = number(params, "offset", u64::MAX)?.unwrap_or(0);
            let hiccup = (msecs > 0).then_some(Hiccup { msecs, offset });
            targets.iter().for_each(|t| t.update(|s| s.hiccup = hiccup));
        }
        "truncate" => {
            let limit =
                number(params, "limit", u64::MAX)?.ok_or("`truncate` needs `limit` (bytes)")?;
            // CouchbaseMock: a limit of 0 turns truncation off.
            let truncate = (limit > 0).then_some(limit);
            targets
                .iter()
                .for_each(|t| t.update(|s| s.truncate = truncate));
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
        "opfail" => {
            let count = signed(params, "count")?.ok_or("`opfail` needs `count`")?;
            let code = number(params, "code", u64::from(u16::MAX))?.map(|c| c as u16);
            let opfail = match count {
                0 => None,
                n if n < 0 => Some(OpFail {
                    remaining: -1,
                    code,
                }),
                n => Some(OpFail { remaining: n, code }),
            };
            targets.iter().for_each(|t| t.update(|s| s.opfail = opfail));
        }
        "reset" => targets
            .iter()
            .for_each(|t| t.update(|s| *s = Default::default())),
        "help" => {
            let commands: serde_json::Map<String, Value> = COMMANDS
                .iter()
                .map(|(name, params, what)| {
                    (
                        name.to_string(),
                        json!({"parameters": params, "does": what}),
                    )
                })
                .collect();
            return Ok(json!({"status": "ok", "commands": commands}));
        }
        _ => {}
    }
    Ok(json!({"status": "ok", "faults": faults.status()}))
}

/// The services a command addresses: `service`, or `idx` (CouchbaseMock's server index, counted
/// in declared order; its `bucket` is accepted and ignored), else every proxied service.
fn targets(
    faults: &Faults,
    params: &BTreeMap<String, Value>,
) -> Result<Vec<std::sync::Arc<super::ServiceFaults>>, String> {
    let name = match (params.get("service"), params.get("idx")) {
        (Some(_), Some(_)) => {
            return Err("give `service` or `idx`, not both".to_string());
        }
        (Some(value), None) => Some(text(value)),
        (None, Some(_)) => {
            let index = number(params, "idx", u64::from(u32::MAX))?.unwrap_or(0) as usize;
            let name = faults.name_at(index).ok_or_else(|| {
                format!(
                    "no proxied service has idx {index}; they are {}",
                    faults
                        .ordered_names()
                        .iter()
                        .enumerate()
                        .map(|(i, n)| format!("{i} = {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            Some(name.to_string())
        }
        (None, None) => None,
    };
    match name {
        Some(name) => match faults.service(&name) {
            Some(service) => Ok(vec![service]),
            None => Err(format!(
                "no fault proxy for service `{name}`; proxied services: {}",
                faults.names().join(", ")
            )),
        },
        None => Ok(faults
            .names()
            .iter()
            .filter_map(|n| faults.service(n))
            .collect()),
    }
}

/// A whole number that may be negative (`opfail`'s count), bounded to ±1,000,000,000.
fn signed(params: &BTreeMap<String, Value>, key: &str) -> Result<Option<i64>, String> {
    let Some(value) = params.get(key) else {
        return Ok(None);
    };
    let parsed = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match parsed {
        Some(n) if n.abs() <= 1_000_000_000 => Ok(Some(n)),
        _ => Err(format!(
            "`{key}` must be a whole number from -1000000000 to 1000000000, got {value}"
        )),
    }
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
    fn couchbasemock_forms_are_understood() {
        let faults = Faults::new(["aws".to_string(), "redis".to_string(), "cache".to_string()]);
        // Upper case, as libcouchbase sends them; idx counts in declared order, bucket is ignored.
        apply(
            &faults,
            "FAILOVER",
            &params(&[("idx", json!(1)), ("bucket", json!("default"))]),
        )
        .unwrap();
        assert!(faults.service("redis").unwrap().current().down);
        assert!(!faults.service("aws").unwrap().current().down);
        apply(&faults, "Respawn", &params(&[("idx", json!("1"))])).unwrap();
        assert!(!faults.service("redis").unwrap().current().down);
        // truncate with limit 0 turns truncation off.
        apply(&faults, "truncate", &params(&[("limit", json!(3))])).unwrap();
        apply(&faults, "truncate", &params(&[("limit", json!(0))])).unwrap();
        assert_eq!(faults.service("cache").unwrap().current().truncate, None);
        // opfail: N connections, then normal; negative until reset; 0 restores.
        let cache = faults.service("cache").unwrap();
        apply(
            &faults,
            "opfail",
            &params(&[
                ("count", json!(2)),
                ("code", json!(503)),
                ("service", json!("cache")),
            ]),
        )
        .unwrap();
        assert_eq!(cache.take_opfail(), Some(Some(503)));
        assert_eq!(cache.take_opfail(), Some(Some(503)));
        assert_eq!(
            cache.take_opfail(),
            None,
            "two connections failed, then normal"
        );
        assert!(!cache.is_active());
        apply(&faults, "opfail", &params(&[("count", json!(-5))])).unwrap();
        for _ in 0..10 {
            assert_eq!(cache.take_opfail(), Some(None), "until reset");
        }
        apply(&faults, "opfail", &params(&[("count", json!(0))])).unwrap();
        assert_eq!(cache.take_opfail(), None, "count 0 restores");
        let help = apply(&faults, "help", &params(&[])).unwrap();
        assert_eq!(
            help["commands"]["opfail"]["parameters"],
            json!(["count", "code"])
        );
        assert_eq!(help["commands"].as_object().unwrap().len(), COMMANDS.len());
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
            (
                "failover",
                params(&[("idx", json!(3))]),
                "no proxied service has idx 3; they are 0 = redis",
            ),
            (
                "failover",
                params(&[("idx", json!(0)), ("service", json!("redis"))]),
                "not both",
            ),
            ("opfail", params(&[]), "needs `count`"),
            (
                "opfail",
                params(&[("count", json!("many"))]),
                "whole number",
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
