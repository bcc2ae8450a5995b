//! The running stack: which services exist, where they run, how to start, probe and stop them.

pub mod helpers;
pub mod lifecycle;
pub mod lock;
pub mod ports;
pub mod ready;
pub mod runtime;
pub mod state;
pub mod up;

use serde::{Deserialize, Serialize};

/// A service of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ServiceName {
    /// S3, DynamoDB, SQS, SNS on one edge port.
    Aws,
    /// Redis.
    Redis,
    /// The HTTP mock/proxy server (our own binary, as a process, in every runtime).
    Mock,
    /// The fault proxies' control port (our own binary, as a process, in every runtime).
    Faults,
    /// The declared queue tails and bridges (our own binary, as a process, in every runtime).
    Queues,
}

impl ServiceName {
    /// The services a runtime starts (processes or containers), in start order.
    pub const ALL: [ServiceName; 2] = [ServiceName::Aws, ServiceName::Redis];
    /// Every service, including the mock server that `run` starts when enabled.
    pub const EVERY: [ServiceName; 5] = [
        ServiceName::Aws,
        ServiceName::Redis,
        ServiceName::Mock,
        ServiceName::Faults,
        ServiceName::Queues,
    ];

    /// The name used in flags, state and output.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceName::Aws => "aws",
            ServiceName::Redis => "redis",
            ServiceName::Mock => "mock",
            ServiceName::Faults => "faults",
            ServiceName::Queues => "queues",
        }
    }

    /// Our own helpers: processes of this binary in every runtime.
    pub fn is_helper(self) -> bool {
        matches!(
            self,
            ServiceName::Mock | ServiceName::Faults | ServiceName::Queues
        )
    }

    /// Parses a name given on the command line.
    pub fn parse(name: &str) -> Option<ServiceName> {
        ServiceName::EVERY.into_iter().find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The URL clients use to reach a service on 127.0.0.1.
pub fn local_url(service: ServiceName, port: u16) -> String {
    match service {
        ServiceName::Aws => format!("http://localhost:{port}"),
        ServiceName::Redis => format!("redis://localhost:{port}"),
        ServiceName::Mock | ServiceName::Faults => format!("http://localhost:{port}"),
        // No port: it records to .inframock/messages/.
        ServiceName::Queues => String::new(),
    }
}
