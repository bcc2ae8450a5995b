//! Event sinks: the mockserver seed's ingestion and logger services (Vector pipelines behind an
//! API key), served by the mock itself. A request to a sink's path carries newline-delimited
//! events and the key in the `Secret-Key` header, as the seed's clients send it; each event is
//! parsed as the seed's pipeline parses it and appended as a JSON line to
//! `.inframock/sinks/<name>.jsonl`. A missing or wrong key is a 401 and the request goes to
//! `<name>.unauthenticated.jsonl`; a malformed event is a 400 and goes to `<name>.dropped.jsonl`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The header holding the API key (the seed's clients send `Secret-Key`).
pub const KEY_HEADER: &str = "secret-key";

/// Headers the seed's pipelines keep with each event.
const KEPT_HEADERS: [&str; 8] = [
    "clientId",
    "deviceID",
    "compatibilityTag",
    "ddtags",
    "ddsource",
    "service",
    "internalDeviceID",
    "sessionId",
];

/// Most events one sink keeps in memory for `/mocker/history` (the files keep them all).
const HISTORY_LIMIT: usize = 10_000;

/// Which of the seed's services a sink stands in for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// `EVENTS|SCRIPTLOGS ::: <timestamp> ::: <identifier> ::: <category> ::: <json>`.
    Ingestion,
    /// `<PREFIX>::: <timestamp> ::: <category> ::: <json>` or `<PREFIX>::: <timestamp> ::: <text>`.
    Logger,
}

/// `[[services.mock.sinks]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkDecl {
    /// Names its files: `.inframock/sinks/<name>.jsonl`.
    pub name: String,
    pub kind: SinkKind,
    /// Requests whose path starts with this go to the sink (`/v1/ingest`, `/v2`).
    pub path: String,
    /// The environment variable holding the API key (never the key itself: the toml is
    /// committed).
    pub api_key_env: String,
}

/// A sink ready to take events.
pub struct Sink {
    pub decl: SinkDecl,
    key: String,
    dir: PathBuf,
    /// What `/mocker/history` lists: (`events` | `scriptlogs` | `unauthenticated`, record).
    recent: Mutex<Vec<(&'static str, Value)>>,
}

/// A sink's answer: status and JSON body.
pub type SinkAnswer = (http::StatusCode, Value);

impl Sink {
    /// A sink writing under `dir`; its key is read from the environment now (a missing one is an
    /// error naming the variable).
    pub fn new(decl: SinkDecl, dir: &Path) -> Result<Sink, String> {
        let valid = !decl.name.is_empty()
            && decl
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(format!(
                "sink name {:?}: use letters, digits, '-' and '_'",
                decl.name
            ));
        }
        if !decl.path.starts_with('/') {
            return Err(format!(
                "sink {}: path {:?} must start with `/`",
                decl.name, decl.path
            ));
        }
        let key = std::env::var(&decl.api_key_env)
            .ok()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                format!(
                    "sink {}: the environment variable {} (its api_key_env) is not set; export the key there",
                    decl.name, decl.api_key_env
                )
            })?;
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Sink {
            decl,
            key,
            dir: dir.to_path_buf(),
            recent: Mutex::new(Vec::new()),
        })
    }

    /// Takes one request: checks the key, parses every event, appends them to the files.
    pub fn accept(&self, headers: &http::HeaderMap, body: &[u8]) -> SinkAnswer {
        let kept: Map<String, Value> = KEPT_HEADERS
            .iter()
            .filter_map(|name| {
                let value = headers.get(*name)?.to_str().ok()?;
                Some((name.to_string(), json!(value)))
            })
            .collect();
        let text = String::from_utf8_lossy(body);
        let given = headers.get(KEY_HEADER).and_then(|v| v.to_str().ok());
        if given != Some(self.key.as_str()) {
            let record = json!({"headers": kept, "message": text, "@timestamp": now()});
            self.append("unauthenticated", &record);
            self.remember("unauthenticated", record);
            return (
                http::StatusCode::UNAUTHORIZED,
                json!({"error": format!("missing or wrong {} header", "Secret-Key")}),
            );
        }
        let mut dropped = Vec::new();
        for (index, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            match self.parse(line) {
                Ok((kind, mut record)) => {
                    if let Value::Object(fields) = &mut record {
                        fields.extend(kept.clone());
                        fields.insert("@timestamp".into(), json!(now()));
                    }
                    self.append("", &record);
                    self.remember(kind, record);
                }
                Err(reason) => {
                    let record = json!({"headers": kept, "message": line, "reason": reason, "@timestamp": now()});
                    self.append("dropped", &record);
                    dropped.push(format!("event {index}: {reason}"));
                }
            }
        }
        if dropped.is_empty() {
            (http::StatusCode::OK, json!({}))
        } else {
            (
                http::StatusCode::BAD_REQUEST,
                json!({"error": "malformed events were dropped", "dropped": dropped}),
            )
        }
    }

    /// The events kept for `/mocker/history` of this kind (`events`, `scriptlogs`,
    /// `unauthenticated`).
    pub fn recent(&self, kind: &str) -> Vec<Value> {
        self.recent
            .lock()
            .map(|r| {
                r.iter()
                    .filter(|(k, _)| *k == kind)
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets what `/mocker/history` lists (`POST /mocker/reset`); the files stay.
    pub fn clear(&self) {
        if let Ok(mut recent) = self.recent.lock() {
            recent.clear();
        }
    }

    fn parse(&self, line: &str) -> Result<(&'static str, Value), String> {
        let fields: Vec<&str> = line.split(":::").map(str::trim).collect();
        match self.decl.kind {
            SinkKind::Ingestion => {
                let [prefix, timestamp, identifier, category, data] = fields.as_slice() else {
                    return Err(
                        "expected PREFIX ::: TIMESTAMP ::: IDENTIFIER ::: CATEGORY ::: JSON".into(),
                    );
                };
                let (kind, id_field) = match *prefix {
                    "EVENTS" => ("events", "sessionId"),
                    "SCRIPTLOGS" => ("scriptlogs", "deploymentId"),
                    other => {
                        return Err(format!("unknown log type {other:?} (EVENTS or SCRIPTLOGS)"))
                    }
                };
                check_timestamp(timestamp)?;
                check_word(identifier, "identifier")?;
                check_word(category, "category")?;
                let event = json_object(data)?;
                Ok((
                    kind,
                    json!({"timestamp": timestamp, id_field: identifier, "category": category, "event_json": event}),
                ))
            }
            SinkKind::Logger => match fields.as_slice() {
                [prefix, timestamp, category, data] if data.starts_with('{') => {
                    let file = logger_file(prefix, timestamp)?;
                    let parsed = json_object(data)?;
                    Ok((
                        "events",
                        json!({"logPrefix": prefix, "timestamp": timestamp, "category": category, "parsed_json": parsed, "file": file}),
                    ))
                }
                [prefix, timestamp, rest @ ..] if !rest.is_empty() => {
                    let file = logger_file(prefix, timestamp)?;
                    Ok((
                        "events",
                        json!({"logPrefix": prefix, "timestamp": timestamp, "logMessage": rest.join(" ::: "), "file": file}),
                    ))
                }
                _ => Err("expected PREFIX::: TIMESTAMP ::: MESSAGE".into()),
            },
        }
    }

    fn append(&self, suffix: &str, record: &Value) {
        let file = if suffix.is_empty() {
            format!("{}.jsonl", self.decl.name)
        } else {
            format!("{}.{suffix}.jsonl", self.decl.name)
        };
        let path = self.dir.join(file);
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(format!("{record}\n").as_bytes()));
        if let Err(e) = written {
            eprintln!(
                "sink {}: cannot append to {}: {e}",
                self.decl.name,
                path.display()
            );
        }
    }

    fn remember(&self, kind: &'static str, record: Value) {
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() >= HISTORY_LIMIT {
                recent.remove(0);
            }
            recent.push((kind, record));
        }
    }
}

/// Checks a logger line's prefix and time; the file the seed's logger wrote it to.
fn logger_file(prefix: &str, timestamp: &str) -> Result<&'static str, String> {
    check_word(prefix, "prefix")?;
    check_timestamp(timestamp)?;
    Ok(if prefix == "METRICS" {
        "metrics"
    } else {
        "logs"
    })
}

fn check_word(text: &str, what: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!("{what} {text:?} is not a word"))
    }
}

fn check_timestamp(text: &str) -> Result<(), String> {
    // ISO 8601: a date, `T` or a space, a time.
    let bytes = text.as_bytes();
    let ok = bytes.len() >= 19
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && (bytes[10] == b'T' || bytes[10] == b' ')
        && bytes[13] == b':'
        && bytes[16] == b':'
        && bytes[..4].iter().all(u8::is_ascii_digit);
    if ok {
        Ok(())
    } else {
        Err(format!("timestamp {text:?} is not ISO 8601"))
    }
}

fn json_object(text: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err("the event data is JSON but not an object".into()),
        Err(e) => Err(format!("the event data is not JSON: {e}")),
    }
}

fn now() -> String {
    super::journal::rfc3339(super::journal::now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(kind: SinkKind, dir: &Path) -> Sink {
        std::env::set_var("INFRAMOCK_TEST_SINK_KEY", "k1");
        Sink::new(
            SinkDecl {
                name: "ingest".into(),
                kind,
                path: "/v1/ingest".into(),
                api_key_env: "INFRAMOCK_TEST_SINK_KEY".into(),
            },
            dir,
        )
        .unwrap()
    }

    fn headers(key: Option<&str>) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        if let Some(key) = key {
            headers.insert("Secret-Key", key.parse().unwrap());
        }
        headers.insert("deviceID", "d-1".parse().unwrap());
        headers
    }

    #[test]
    fn events_are_parsed_keyed_and_sorted_into_files() {
        let dir = tempfile::tempdir().unwrap();
        let sink = sink(SinkKind::Ingestion, dir.path());
        let good = "EVENTS ::: 2026-11-26T10:00:00.000Z ::: s1 ::: click ::: {\"x\": 1}\nSCRIPTLOGS ::: 2026-11-26 10:00:01 ::: dep9 ::: info ::: {\"y\": 2}\n";
        assert_eq!(sink.accept(&headers(Some("k1")), good.as_bytes()).0, 200);
        let stored = std::fs::read_to_string(dir.path().join("ingest.jsonl")).unwrap();
        let lines: Vec<Value> = stored
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["sessionId"], "s1");
        assert_eq!(lines[0]["event_json"]["x"], 1);
        assert_eq!(lines[0]["deviceID"], "d-1");
        assert_eq!(lines[1]["deploymentId"], "dep9");
        assert_eq!(sink.recent("events").len(), 1);
        assert_eq!(sink.recent("scriptlogs").len(), 1);

        let (status, _) = sink.accept(&headers(Some("wrong")), b"EVENTS ::: x");
        assert_eq!(status, 401);
        assert_eq!(sink.accept(&headers(None), b"x").0, 401);
        assert_eq!(sink.recent("unauthenticated").len(), 2);
        let unauthenticated =
            std::fs::read_to_string(dir.path().join("ingest.unauthenticated.jsonl")).unwrap();
        assert_eq!(unauthenticated.lines().count(), 2);

        let (status, body) = sink.accept(
            &headers(Some("k1")),
            b"EVENTS ::: 2026-11-26T10:00:00Z ::: s1 ::: click ::: {not json\nOTHER ::: 2026-11-26T10:00:00Z ::: a ::: b ::: {}",
        );
        assert_eq!(status, 400);
        assert_eq!(body["dropped"].as_array().unwrap().len(), 2, "{body}");
        let dropped = std::fs::read_to_string(dir.path().join("ingest.dropped.jsonl")).unwrap();
        assert_eq!(dropped.lines().count(), 2);
    }

    #[test]
    fn logger_lines_with_and_without_json() {
        let dir = tempfile::tempdir().unwrap();
        let sink = sink(SinkKind::Logger, dir.path());
        let body = "METRICS::: 2026-11-26T10:00:00Z ::: latency ::: {\"ms\": 5}\nLOGS::: 2026-11-26T10:00:00Z ::: model loaded\n";
        assert_eq!(sink.accept(&headers(Some("k1")), body.as_bytes()).0, 200);
        let events = sink.recent("events");
        assert_eq!(events[0]["file"], "metrics");
        assert_eq!(events[0]["parsed_json"]["ms"], 5);
        assert_eq!(events[1]["logMessage"], "model loaded");
    }
}
