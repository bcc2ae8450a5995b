//! `inframock env`: `export` lines pointing AWS tools and Redis clients at the running stack.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::aws::{Endpoint, TEST_ACCESS_KEY, TEST_SECRET_KEY};
use crate::cli::RuntimeKind;
use crate::config::Settings;
use crate::stack::state::{self, StackState};
use crate::stack::ServiceName;

/// The `export` lines for a stack.
pub fn export_lines(stack: &StackState) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(aws) = stack.client_url(ServiceName::Aws) {
        lines.push(format!("export AWS_ENDPOINT_URL={aws}"));
    }
    lines.push(format!("export AWS_DEFAULT_REGION={}", stack.region));
    lines.push(format!("export AWS_REGION={}", stack.region));
    let test_keys = stack.service(ServiceName::Aws).is_some_and(|aws| {
        Endpoint::new(
            aws.url.clone(),
            stack.region.clone(),
            stack.runtime == RuntimeKind::External,
            crate::config::DEFAULT_OPERATION_TIMEOUT,
        )
        .test_credentials
    });
    if test_keys {
        lines.push(format!("export AWS_ACCESS_KEY_ID={TEST_ACCESS_KEY}"));
        lines.push(format!("export AWS_SECRET_ACCESS_KEY={TEST_SECRET_KEY}"));
    }
    if let Some(redis) = stack.client_url(ServiceName::Redis) {
        lines.push(format!("export REDIS_URL={redis}"));
    }
    if let Some(mock) = stack.service(ServiceName::Mock) {
        lines.push(format!("export INFRAMOCK_MOCK_URL={}", mock.url));
    }
    if let Some(faults) = stack.service(ServiceName::Faults) {
        lines.push(format!("export INFRAMOCK_FAULTS_URL={}", faults.url));
    }
    lines.push(format!("export CLUSTER_ENV={}", stack.cluster_env));
    lines
}

/// Prints the export lines (or a JSON object of them with `--json`).
pub fn execute(settings: &Settings) -> Result<ExitCode> {
    let stack = state::read(&settings.state_dir())?
        .context("no stack is running for this project; start one with `inframock run --detach`")?;
    let lines = export_lines(&stack);
    if settings.json {
        let map: serde_json::Map<String, serde_json::Value> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        println!("{}", serde_json::Value::Object(map));
    } else {
        for line in lines {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::state::ServiceRecord;

    fn record(name: ServiceName, url: &str) -> ServiceRecord {
        ServiceRecord {
            name,
            runtime: RuntimeKind::Local,
            port: 1,
            url: url.into(),
            pid: Some(1),
            started: None,
            program: None,
            log: None,
            container: None,
        }
    }

    #[test]
    fn exports_endpoint_region_credentials_and_redis() {
        let stack = StackState {
            project: "p".into(),
            runtime: RuntimeKind::Local,
            started_at: 0,
            region: "eu-west-1".into(),
            cluster_env: "development".into(),
            services: vec![
                record(ServiceName::Aws, "http://localhost:4566"),
                record(ServiceName::Redis, "redis://localhost:6379"),
            ],
            fault_proxies: Vec::new(),
        };
        let lines = export_lines(&stack);
        assert_eq!(
            lines,
            [
                "export AWS_ENDPOINT_URL=http://localhost:4566",
                "export AWS_DEFAULT_REGION=eu-west-1",
                "export AWS_REGION=eu-west-1",
                "export AWS_ACCESS_KEY_ID=test",
                "export AWS_SECRET_ACCESS_KEY=test",
                "export REDIS_URL=redis://localhost:6379",
                "export CLUSTER_ENV=development",
            ]
        );
    }

    #[test]
    fn a_fault_proxy_is_what_applications_use() {
        let stack = StackState {
            project: "p".into(),
            runtime: RuntimeKind::Local,
            started_at: 0,
            region: "eu-west-1".into(),
            cluster_env: "development".into(),
            services: vec![record(ServiceName::Redis, "redis://localhost:6379")],
            fault_proxies: vec![crate::stack::state::FaultProxyRecord {
                service: ServiceName::Redis,
                port: 16379,
                target_port: 6379,
            }],
        };
        assert!(
            export_lines(&stack).contains(&"export REDIS_URL=redis://localhost:16379".to_string())
        );
    }

    #[test]
    fn external_stack_keeps_the_users_credentials() {
        let stack = StackState {
            project: "p".into(),
            runtime: RuntimeKind::External,
            started_at: 0,
            region: "us-east-1".into(),
            cluster_env: "staging".into(),
            services: vec![record(ServiceName::Aws, "https://example.test")],
            fault_proxies: Vec::new(),
        };
        let lines = export_lines(&stack).join("\n");
        assert!(!lines.contains("AWS_ACCESS_KEY_ID"));
        assert!(!lines.contains("REDIS_URL"));
    }
}
