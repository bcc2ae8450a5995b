//! The running stack: which services exist, where they run, how to start, probe and stop them.

pub mod catalog;
pub mod health;
pub mod helpers;
pub mod lifecycle;
pub mod lock;
pub mod ports;
pub mod readiness;
pub mod ready;
pub mod runtime;
pub mod state;
pub mod up;
pub mod version;

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A service of the stack: the built-in ones, or one declared as `[services.<name>]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceName {
    /// S3, DynamoDB, SQS, SNS on one edge port (the engine of `[services.aws]`).
    Aws,
    /// Redis.
    Redis,
    /// The HTTP mock/proxy server (our own binary, as a process, in every runtime).
    Mock,
    /// The fault proxies' control port (our own binary, as a process, in every runtime).
    Faults,
    /// The declared queue tails and bridges (our own binary, as a process, in every runtime).
    Queues,
    /// The dashboard in the browser and the readiness URL (our own binary, as a process).
    Dashboard,
    /// `[stack] persist_every`: saves the stack's state every N seconds (our own binary, as a
    /// process).
    Persist,
    /// A service declared in `inframock.toml` (`[services.cache] preset = "memcached"`).
    Declared(Arc<str>),
}

impl ServiceName {
    /// The built-in services, in start order.
    pub const BUILT_IN: [ServiceName; 7] = [
        ServiceName::Aws,
        ServiceName::Redis,
        ServiceName::Mock,
        ServiceName::Faults,
        ServiceName::Queues,
        ServiceName::Dashboard,
        ServiceName::Persist,
    ];

    /// The name used in flags, state and output.
    pub fn as_str(&self) -> &str {
        match self {
            ServiceName::Aws => "aws",
            ServiceName::Redis => "redis",
            ServiceName::Mock => "mock",
            ServiceName::Faults => "faults",
            ServiceName::Queues => "queues",
            ServiceName::Dashboard => "dashboard",
            ServiceName::Persist => "persist",
            ServiceName::Declared(name) => name,
        }
    }

    /// Our own helpers: processes of this binary in every runtime.
    pub fn is_helper(&self) -> bool {
        matches!(
            self,
            ServiceName::Mock
                | ServiceName::Faults
                | ServiceName::Queues
                | ServiceName::Dashboard
                | ServiceName::Persist
        )
    }

    /// The service of this name: a built-in one, else a declared one.
    pub fn named(name: &str) -> ServiceName {
        ServiceName::BUILT_IN
            .into_iter()
            .find(|s| s.as_str() == name)
            .unwrap_or_else(|| ServiceName::Declared(Arc::from(name)))
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ServiceName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ServiceName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(ServiceName::named(&name))
    }
}
