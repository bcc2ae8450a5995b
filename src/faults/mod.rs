//! Fault injection: TCP proxies in front of the stack's services and the commands that disturb them
//! (the CouchbaseMock seed's `hiccup`, `truncate`, `failover`, `respawn`, and beyond: `latency`,
//! `reset`). Commands arrive over HTTP (`GET /mock/<command>?param=value`) or as JSON lines
//! (`{"command": ..., "payload": {...}}` -> `{"status": "ok"}`) on the control port, and on the
//! harakiri connection of `inframock run`.

pub mod command;
pub mod control;
pub mod proxy;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// The faults of one proxied service.
#[derive(Debug)]
pub struct ServiceFaults {
    /// Set when any fault is active: the proxy's fast path checks only this.
    active: AtomicBool,
    settings: Mutex<FaultSettings>,
    /// Bumped by `failover`; connections opened before it are dropped.
    epoch: watch::Sender<u64>,
    /// Connections forwarded so far.
    pub connections: AtomicU64,
}

/// The faults in force for one service.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct FaultSettings {
    /// Stall `msecs` once each connection has sent `offset` bytes to its client.
    pub hiccup: Option<Hiccup>,
    /// The next write to a client is cut to this many bytes, then the connection closes.
    pub truncate: Option<u64>,
    /// Connections are refused (and open ones were dropped) until `respawn`.
    pub down: bool,
    /// Every chunk to the client waits `ms` plus up to `jitter` ms.
    pub latency: Option<Latency>,
    /// The next connections fail (CouchbaseMock's `opfail`).
    pub opfail: Option<OpFail>,
}

/// `opfail` parameters: how many more connections fail, and how.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct OpFail {
    /// Connections still to fail; `-1`: every one until `reset` (or `opfail` with count 0).
    pub remaining: i64,
    /// An HTTP status (100-599) answered before closing; otherwise the connection is closed at once.
    pub code: Option<u16>,
}

/// `hiccup` parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Hiccup {
    pub msecs: u64,
    pub offset: u64,
}

/// `latency` parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Latency {
    pub ms: u64,
    pub jitter: u64,
}

impl Default for ServiceFaults {
    fn default() -> Self {
        ServiceFaults {
            active: AtomicBool::new(false),
            settings: Mutex::new(FaultSettings::default()),
            epoch: watch::channel(0).0,
            connections: AtomicU64::new(0),
        }
    }
}

impl ServiceFaults {
    /// Whether anything is disturbed (cheap; read on every chunk).
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// The faults in force.
    pub fn current(&self) -> FaultSettings {
        self.lock().clone()
    }

    /// Changes the faults; `failover` also drops the open connections.
    pub fn update(&self, change: impl FnOnce(&mut FaultSettings)) {
        let mut settings = self.lock();
        let was_down = settings.down;
        change(&mut settings);
        let active = *settings != FaultSettings::default();
        self.active.store(active, Ordering::Release);
        if settings.down && !was_down {
            self.epoch.send_modify(|e| *e += 1);
        }
    }

    /// Takes the one-shot truncation, if set.
    pub fn take_truncate(&self) -> Option<u64> {
        let mut settings = self.lock();
        let limit = settings.truncate.take();
        let active = *settings != FaultSettings::default();
        self.active.store(active, Ordering::Release);
        limit
    }

    /// Takes one failure of `opfail` for a new connection: `Some(code)` when it must fail.
    pub fn take_opfail(&self) -> Option<Option<u16>> {
        let mut settings = self.lock();
        let opfail = settings.opfail?;
        if opfail.remaining > 0 {
            let remaining = opfail.remaining - 1;
            settings.opfail = (remaining > 0).then_some(OpFail {
                remaining,
                ..opfail
            });
        }
        let active = *settings != FaultSettings::default();
        self.active.store(active, Ordering::Release);
        Some(opfail.code)
    }

    /// A receiver that changes when open connections must be dropped.
    pub fn watch_failover(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultSettings> {
        self.settings.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The proxied services by name.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    services: Arc<BTreeMap<String, Arc<ServiceFaults>>>,
    /// The names in the order they were given: CouchbaseMock's `idx` counts in this order.
    order: Arc<Vec<String>>,
}

impl Faults {
    /// Fault state for these service names.
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        let order: Vec<String> = names.into_iter().collect();
        Faults {
            services: Arc::new(
                order
                    .iter()
                    .map(|n| (n.clone(), Arc::new(ServiceFaults::default())))
                    .collect(),
            ),
            order: Arc::new(order),
        }
    }

    /// The name of the service at `index` in the order given (CouchbaseMock's `idx`).
    pub fn name_at(&self, index: usize) -> Option<&str> {
        self.order.get(index).map(String::as_str)
    }

    /// The names in the order given.
    pub fn ordered_names(&self) -> &[String] {
        &self.order
    }

    /// One service's faults.
    pub fn service(&self, name: &str) -> Option<Arc<ServiceFaults>> {
        self.services.get(name).cloned()
    }

    /// Names of the proxied services.
    pub fn names(&self) -> Vec<String> {
        self.services.keys().cloned().collect()
    }

    /// Every service's faults, for `GET /mock/status`.
    pub fn status(&self) -> serde_json::Value {
        let map: serde_json::Map<String, serde_json::Value> = self
            .services
            .iter()
            .map(|(name, faults)| {
                let mut value = serde_json::to_value(faults.current()).unwrap_or_default();
                value["connections"] = faults.connections.load(Ordering::Relaxed).into();
                (name.clone(), value)
            })
            .collect();
        serde_json::Value::Object(map)
    }
}
