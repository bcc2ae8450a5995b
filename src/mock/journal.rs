//! The request journal: every request the mock served (not the admin calls), newest last, kept in
//! memory up to a bound; the oldest are dropped first.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// Default number of requests kept.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// How a request was answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// By this expectation (fixed response or handler).
    Expectation(String),
    /// By the next step of the scenario.
    Scenario,
    /// Forwarded to the upstream (possibly delayed by an expectation).
    Proxied(Option<String>),
    /// Nothing matched and there is no upstream.
    Unmatched,
    /// The flaky responder answered (the scenario seed's mimicked backend).
    Flaky,
    /// An event sink took it.
    Sink(String),
    /// Deliberately not answered (a scenario step with status 0, the flaky responder's silence):
    /// the connection was held, then closed.
    NoAnswer,
}

/// One served request.
#[derive(Debug)]
pub struct JournalEntry {
    /// Milliseconds since the Unix epoch when the request arrived.
    pub time_ms: u64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    /// Request body bytes read so far (a streamed proxy body is counted while it flows).
    pub body_size: Arc<AtomicU64>,
    pub outcome: Outcome,
    pub status: u16,
    /// Milliseconds until the response head was sent.
    pub latency_ms: f64,
    /// What the server changed in the answer, if anything (e.g. framing headers it dropped).
    pub note: Option<String>,
    /// The upstream failed (could not be reached, timed out, answered 5xx).
    pub backend_error: Option<super::backend_log::BackendError>,
    /// Unmatched: the closest expectations and why each did not match (what the 404 said).
    pub closest: Option<Value>,
}

/// The closest expectations of an unmatched request, carried from the 404 to the journal.
#[derive(Debug, Clone)]
pub struct ClosestExpectations(pub Value);

impl JournalEntry {
    fn to_json(&self) -> Value {
        let (matched, expectation) = match &self.outcome {
            Outcome::Expectation(id) => ("expectation", Some(id.as_str())),
            Outcome::Scenario => ("scenario", None),
            Outcome::Proxied(id) => ("proxied", id.as_deref()),
            Outcome::Unmatched => ("unmatched", None),
            Outcome::Flaky => ("flaky", None),
            Outcome::Sink(name) => ("sink", Some(name.as_str())),
            Outcome::NoAnswer => ("no answer", None),
        };
        let headers: serde_json::Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let mut entry = json!({
            "time": rfc3339(self.time_ms),
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": headers,
            "body_size": self.body_size.load(Ordering::Relaxed),
            "matched": matched,
            "expectation": expectation,
            "status": self.status,
            "latency_ms": (self.latency_ms * 1000.0).round() / 1000.0,
            "note": self.note,
            "backend_error": self.backend_error.as_ref().map(|e| json!({
                "upstream": e.upstream,
                "kind": e.kind,
                "message": e.message,
            })),
        });
        if let Some(closest) = &self.closest {
            entry["closest"] = closest.clone();
        }
        entry
    }
}

/// What `GET /mocker/requests` filters on.
#[derive(Debug, Default)]
pub struct JournalQuery {
    /// Exact path, or a glob when it holds `*`.
    pub path: Option<String>,
    pub method: Option<String>,
    /// Only the last N matching requests.
    pub limit: Option<usize>,
}

/// The bounded journal.
pub struct Journal {
    capacity: usize,
    entries: Mutex<VecDeque<JournalEntry>>,
    dropped: AtomicU64,
    /// Requests whose upstream failed, since the last clear (dropped entries included).
    backend_errors: AtomicU64,
}

impl Journal {
    /// A journal keeping at most `capacity` requests (0 keeps none).
    pub fn new(capacity: usize) -> Self {
        Journal {
            capacity,
            entries: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            dropped: AtomicU64::new(0),
            backend_errors: AtomicU64::new(0),
        }
    }

    /// Records a request, dropping the oldest when full.
    pub fn record(&self, entry: JournalEntry) {
        if entry.backend_error.is_some() {
            self.backend_errors.fetch_add(1, Ordering::Relaxed);
        }
        if self.capacity == 0 {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut entries = self.lock();
        if entries.len() == self.capacity {
            entries.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        entries.push_back(entry);
    }

    /// Forgets every request.
    pub fn clear(&self) {
        self.lock().clear();
        self.dropped.store(0, Ordering::Relaxed);
        self.backend_errors.store(0, Ordering::Relaxed);
    }

    /// The calls as the mockserver seed's `GET /mocker/history` lists them: each with its path
    /// without the leading slash, the status answered and whether a mock (an expectation's or the
    /// scenario's answer) answered it rather than the upstream, oldest first.
    pub fn history(&self) -> Value {
        let calls: Vec<Value> = self
            .lock()
            .iter()
            .map(|entry| {
                json!({
                    "path": entry.path.trim_start_matches('/'),
                    "status_code": entry.status,
                    "is_mocked": matches!(
                        entry.outcome,
                        Outcome::Expectation(_) | Outcome::Scenario | Outcome::Flaky | Outcome::NoAnswer
                    ),
                })
            })
            .collect();
        json!({
            "api_calls": calls,
            "external_logger_events": [],
            "external_logger_scriptlogs": [],
            "unauthenticated_external_logs": [],
        })
    }

    /// The journal as JSON: `{"requests": [...], "total": n, "dropped": n, "capacity": n}`.
    pub fn query(&self, query: &JournalQuery) -> Result<Value, String> {
        let glob = match &query.path {
            Some(p) if p.contains('*') => Some(
                globset::GlobBuilder::new(p)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| format!("invalid glob in `path` {p:?}: {e}"))?
                    .compile_matcher(),
            ),
            _ => None,
        };
        let entries = self.lock();
        let matching: Vec<&JournalEntry> = entries
            .iter()
            .filter(|e| match (&query.path, &glob) {
                (_, Some(g)) => g.is_match(&e.path),
                (Some(p), None) => &e.path == p,
                (None, None) => true,
            })
            .filter(|e| {
                query
                    .method
                    .as_ref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(&e.method))
            })
            .collect();
        let skip = query
            .limit
            .map(|l| matching.len().saturating_sub(l))
            .unwrap_or(0);
        let requests: Vec<Value> = matching[skip..].iter().map(|e| e.to_json()).collect();
        Ok(json!({
            "requests": requests,
            "total": entries.len(),
            "dropped": self.dropped.load(Ordering::Relaxed),
            "capacity": self.capacity,
            "backend_errors": self.backend_errors.load(Ordering::Relaxed),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<JournalEntry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `2026-11-25T16:23:10.123Z` for milliseconds since the epoch (UTC, proleptic Gregorian).
pub fn rfc3339(ms: u64) -> String {
    let seconds = ms / 1000;
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, method: &str) -> JournalEntry {
        JournalEntry {
            time_ms: 0,
            method: method.into(),
            path: path.into(),
            query: None,
            headers: Vec::new(),
            body_size: Arc::new(AtomicU64::new(3)),
            outcome: Outcome::Unmatched,
            status: 404,
            latency_ms: 0.5,
            note: None,
            backend_error: None,
            closest: None,
        }
    }

    #[test]
    fn bounded_and_filtered() {
        let journal = Journal::new(3);
        for i in 0..5 {
            journal.record(entry(
                &format!("/a/{i}"),
                if i % 2 == 0 { "GET" } else { "POST" },
            ));
        }
        let all = journal.query(&JournalQuery::default()).unwrap();
        assert_eq!(all["total"], 3);
        assert_eq!(all["dropped"], 2);
        assert_eq!(all["requests"][0]["path"], "/a/2");
        let q = JournalQuery {
            path: Some("/a/*".into()),
            method: Some("get".into()),
            limit: Some(1),
        };
        let got = journal.query(&q).unwrap();
        assert_eq!(got["requests"].as_array().unwrap().len(), 1);
        assert_eq!(got["requests"][0]["path"], "/a/4");
        assert_eq!(got["requests"][0]["body_size"], 3);
        journal.clear();
        assert_eq!(journal.query(&JournalQuery::default()).unwrap()["total"], 0);
    }

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_623_790_000), "2026-11-25T16:23:10.000Z");
    }
}
