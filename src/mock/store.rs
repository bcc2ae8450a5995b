//! The expectations in force: added through the API or loaded from `mocks/*.json`, matched
//! newest first, counted down by `repeat_count`, and restored to the loaded ones by `reset`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::{json, Value};

use super::expectation::{exact_path, Action, Expectation, ExpectationSpec, RequestView};

/// Where an expectation came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A file loaded at start: it comes back after `reset`.
    File(PathBuf),
    /// `POST /mocker/expectation`: gone after `reset`.
    Api,
}

/// An expectation in force, with its counters.
#[derive(Debug)]
pub struct Entry {
    pub expectation: Expectation,
    pub source: Source,
    /// Answers left (`repeat_count`), `None` = unlimited.
    remaining: Option<AtomicU64>,
    hits: AtomicU64,
}

/// Result of looking a request up.
pub enum Lookup {
    /// This expectation answers (its repeat count is already taken).
    Matched(Arc<Entry>),
    /// An expectation would match if its body predicate holds: read the body and ask again.
    NeedsBody,
    /// Nothing matches.
    NoMatch,
}

/// The expectations in force.
pub struct Store {
    entries: RwLock<Vec<Arc<Entry>>>,
    loaded: Vec<(ExpectationSpec, Source)>,
    next_id: AtomicU64,
    handlers_dir: PathBuf,
}

impl Store {
    /// A store holding the expectations loaded from files (kept across `reset`).
    pub fn new(
        loaded: Vec<(ExpectationSpec, Source)>,
        handlers_dir: PathBuf,
    ) -> Result<Self, String> {
        let store = Store {
            entries: RwLock::new(Vec::new()),
            loaded,
            next_id: AtomicU64::new(1),
            handlers_dir,
        };
        store.reset()?;
        Ok(store)
    }

    /// Adds expectations, all or none (one with the same id, or the same request predicates, is
    /// replaced): each is validated before any is stored, and they
    /// are stored under one lock (a request sees all of them or none). The error gives the index
    /// of the first invalid one and why.
    pub fn add_all(
        &self,
        specs: Vec<ExpectationSpec>,
        source: Source,
    ) -> Result<Vec<Value>, (usize, String)> {
        let compiled = specs
            .into_iter()
            .enumerate()
            .map(|(index, spec)| self.compile(spec, source.clone()).map_err(|e| (index, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let descriptions = compiled.iter().map(|e| describe(e)).collect();
        let mut entries = self.write();
        for entry in compiled {
            entries.retain(|e| {
                e.expectation.id != entry.expectation.id
                    && !same_request(&e.expectation.spec, &entry.expectation.spec)
            });
            entries.push(entry);
        }
        Ok(descriptions)
    }

    fn compile(&self, spec: ExpectationSpec, source: Source) -> Result<Arc<Entry>, String> {
        let id = match &spec.id {
            Some(id) if id.trim().is_empty() => return Err("`id` must not be empty".into()),
            Some(id) => id.clone(),
            None => format!("exp-{}", self.next_id.fetch_add(1, Ordering::Relaxed)),
        };
        let expectation = Expectation::compile(spec, id, &self.handlers_dir)?;
        Ok(Arc::new(Entry {
            remaining: expectation.repeat_count.map(AtomicU64::new),
            expectation,
            source,
            hits: AtomicU64::new(0),
        }))
    }

    /// Removes the expectations with this path (any predicates) and/or id; returns how many.
    pub fn delete(&self, path: Option<&str>, id: Option<&str>) -> usize {
        let mut entries = self.write();
        let before = entries.len();
        entries.retain(|e| {
            let path_hit = path.is_some_and(|p| {
                e.expectation.spec.path == p || e.expectation.spec.path == exact_path(p)
            });
            let id_hit = id.is_some_and(|i| e.expectation.id == i);
            !(path_hit || id_hit)
        });
        before - entries.len()
    }

    /// Back to the expectations loaded from files, with fresh counters.
    pub fn reset(&self) -> Result<(), String> {
        let mut fresh = Vec::new();
        for (spec, source) in &self.loaded {
            fresh.push(self.compile(spec.clone(), source.clone())?);
        }
        *self.write() = fresh;
        Ok(())
    }

    /// Every expectation in force, oldest first.
    pub fn list(&self) -> Vec<Value> {
        self.read().iter().map(|e| describe(e)).collect()
    }

    /// The expectations as the mockserver seed lists them: an object keyed by path (the newest
    /// wins a path), each with `status_code`, `headers`, `body`, `repeat_count` (answers left) and
    /// `response_delay` in seconds.
    pub fn list_by_path(&self) -> Value {
        let mut by_path = serde_json::Map::new();
        for entry in self.read().iter() {
            let spec = &entry.expectation.spec;
            let remaining = entry
                .remaining
                .as_ref()
                .map(|left| json!(left.load(Ordering::Relaxed)))
                .unwrap_or(Value::Null);
            by_path.insert(
                spec.path.clone(),
                json!({
                    "status_code": spec.status_code,
                    "headers": spec.headers,
                    "body": spec.body,
                    "repeat_count": remaining,
                    "response_delay": entry.expectation.delay_ms as f64 / 1000.0,
                }),
            );
        }
        Value::Object(by_path)
    }

    /// Number of expectations in force.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Finds the newest expectation matching the request and takes one of its answers.
    /// `body` is `None` until the caller has read it (only done when an expectation needs it).
    pub fn find(&self, request: &RequestView<'_>, body: Option<&[u8]>) -> Lookup {
        let mut exhausted = None;
        let found = {
            let entries = self.read();
            let mut found = None;
            for entry in entries.iter().rev() {
                let e = &entry.expectation;
                if !e.matches_head(request) {
                    continue;
                }
                if e.needs_body() {
                    match body {
                        None => return Lookup::NeedsBody,
                        Some(b) if !e.matches_body(b) => continue,
                        Some(_) => {}
                    }
                }
                match &entry.remaining {
                    // A delay-only expectation forwards on every call and never expires: the
                    // repeat count counts mocked answers only (as the mockserver seed does).
                    _ if matches!(e.action, Action::Proxy) => {}
                    None => {}
                    Some(left) => {
                        let taken = left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                            n.checked_sub(1)
                        });
                        match taken {
                            Ok(1) => exhausted = Some(Arc::clone(entry)),
                            Ok(_) => {}
                            Err(_) => continue, // used up by a concurrent request
                        }
                    }
                }
                entry.hits.fetch_add(1, Ordering::Relaxed);
                found = Some(Arc::clone(entry));
                break;
            }
            found
        };
        if let Some(done) = exhausted {
            self.write().retain(|e| !Arc::ptr_eq(e, &done));
        }
        match found {
            Some(entry) => Lookup::Matched(entry),
            None => Lookup::NoMatch,
        }
    }

    /// Whether any expectation matches on the request body (then a 404 reads it to say why).
    pub fn any_needs_body(&self) -> bool {
        self.read().iter().any(|e| e.expectation.needs_body())
    }

    /// The `limit` expectations closest to a request, with why each did not match (`body`: the
    /// request body, when it was read, for `json_body` differences).
    pub fn closest(
        &self,
        request: &RequestView<'_>,
        body: Option<&[u8]>,
        limit: usize,
    ) -> Vec<Value> {
        let entries = self.read();
        let mut scored: Vec<(usize, Vec<String>, &Arc<Entry>)> = entries
            .iter()
            .map(|e| {
                let (score, mismatches) = e.expectation.closeness(request, body);
                (score, mismatches, e)
            })
            .collect();
        scored.sort_by_key(|(score, _, _)| *score);
        scored
            .into_iter()
            .take(limit)
            .map(|(_, mismatches, e)| {
                let mut d = describe(e);
                d["mismatches"] = json!(mismatches);
                d
            })
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Entry>>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<Entry>>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn describe(entry: &Entry) -> Value {
    let mut value = serde_json::to_value(&entry.expectation.spec).unwrap_or_else(|_| json!({}));
    value["id"] = json!(entry.expectation.id);
    value["source"] = match &entry.source {
        Source::File(path) => json!(format!("file:{}", path.display())),
        Source::Api => json!("api"),
    };
    value["hits"] = json!(entry.hits.load(Ordering::Relaxed));
    if let Some(left) = &entry.remaining {
        value["remaining"] = json!(left.load(Ordering::Relaxed));
    }
    value
}

/// Whether two specs select the same requests (then the newer replaces the older).
fn same_request(a: &ExpectationSpec, b: &ExpectationSpec) -> bool {
    let method = |s: &ExpectationSpec| s.method.as_ref().map(|m| m.to_ascii_uppercase());
    let headers = |s: &ExpectationSpec| {
        s.request_headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect::<Vec<_>>()
    };
    a.path == b.path
        && a.path_match == b.path_match
        && method(a) == method(b)
        && a.query == b.query
        && headers(a) == headers(b)
        && a.json_body == b.json_body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> ExpectationSpec {
        serde_json::from_str(json).unwrap()
    }

    fn lookup(store: &Store, path: &str) -> Option<String> {
        let method = http::Method::GET;
        let headers = http::HeaderMap::new();
        let view = RequestView {
            method: &method,
            path,
            query: &[],
            headers: &headers,
        };
        match store.find(&view, None) {
            Lookup::Matched(e) => Some(e.expectation.id.clone()),
            _ => None,
        }
    }

    #[test]
    fn repeat_count_answers_n_times_then_forgets() {
        let store = Store::new(Vec::new(), PathBuf::from("/")).unwrap();
        store
            .add_all(
                vec![spec(
                    r#"{"id": "a", "path": "/x", "status_code": 200, "repeat_count": 2}"#,
                )],
                Source::Api,
            )
            .unwrap();
        assert_eq!(lookup(&store, "/x").as_deref(), Some("a"));
        assert_eq!(lookup(&store, "/x").as_deref(), Some("a"));
        assert_eq!(lookup(&store, "/x"), None);
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn newest_wins_same_request_replaces_and_reset_restores_files() {
        let loaded = vec![(
            spec(r#"{"id": "f", "path": "/f", "status_code": 200}"#),
            Source::File("mocks/f.json".into()),
        )];
        let store = Store::new(loaded, PathBuf::from("/")).unwrap();
        store
            .add_all(
                vec![spec(
                    r#"{"path": "/g/*", "path_match": "glob", "status_code": 200}"#,
                )],
                Source::Api,
            )
            .unwrap();
        store
            .add_all(
                vec![spec(r#"{"id": "g1", "path": "/g/1", "status_code": 201}"#)],
                Source::Api,
            )
            .unwrap();
        assert_eq!(lookup(&store, "/g/1").as_deref(), Some("g1"));
        store
            .add_all(
                vec![spec(r#"{"id": "g1b", "path": "/g/1", "status_code": 202}"#)],
                Source::Api,
            )
            .unwrap();
        assert_eq!(store.len(), 3, "same path and predicates replace");
        assert_eq!(lookup(&store, "/g/1").as_deref(), Some("g1b"));
        assert_eq!(store.delete(Some("/f"), None), 1);
        assert_eq!(lookup(&store, "/f"), None);
        store.reset().unwrap();
        assert_eq!(lookup(&store, "/f").as_deref(), Some("f"));
        assert_eq!(lookup(&store, "/g/1"), None);
        assert_eq!(store.list().len(), 1);
    }

    #[test]
    fn a_list_with_one_bad_expectation_adds_nothing() {
        let store = Store::new(Vec::new(), PathBuf::from("/")).unwrap();
        let specs = vec![
            spec(r#"{"path": "/ok", "status_code": 200}"#),
            spec(r#"{"id": " ", "path": "/blank-id", "status_code": 200}"#),
        ];
        let (index, reason) = store.add_all(specs, Source::Api).unwrap_err();
        assert_eq!(index, 1);
        assert!(reason.contains("`id` must not be empty"), "{reason}");
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn repeat_count_is_exact_under_concurrency() {
        let store = Arc::new(Store::new(Vec::new(), PathBuf::from("/")).unwrap());
        store
            .add_all(
                vec![spec(
                    r#"{"path": "/x", "status_code": 200, "repeat_count": 100}"#,
                )],
                Source::Api,
            )
            .unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    (0..50).filter(|_| lookup(&store, "/x").is_some()).count()
                })
            })
            .collect();
        let answered: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(answered, 100);
    }
}
