//! `inframock env`: `export` lines pointing AWS tools and Redis clients at the running stack.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::aws::{Endpoint, TEST_ACCESS_KEY, TEST_SECRET_KEY};
use crate::cli::RuntimeKind;
use crate::config::Settings;
use crate::stack::state::{self, StackState};
use crate::stack::ServiceName;

/// The `export` lines for a stack: the AWS variables, then each service's URL under the variable
/// its kind names (`REDIS_URL`, `MEMCACHED_URL`, `DATABASE_URL`, ...).
pub fn export_lines(settings: &Settings, stack: &StackState) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(aws) = stack.client_url(&ServiceName::Aws) {
        lines.push(format!("export AWS_ENDPOINT_URL={aws}"));
    }
    lines.push(format!("export AWS_DEFAULT_REGION={}", stack.region));
    lines.push(format!("export AWS_REGION={}", stack.region));
    let test_keys = stack.service(&ServiceName::Aws).is_some_and(|aws| {
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
    for record in stack
        .services
        .iter()
        .filter(|r| r.name != ServiceName::Aws && !r.name.is_helper())
    {
        let kind = crate::stack::lifecycle::kind_of(settings, record);
        if let (Some(var), Some(url)) = (kind.env_var, stack.client_url(&record.name)) {
            lines.push(format!("export {var}={url}"));
        }
    }
    if let Some(mock) = stack.service(&ServiceName::Mock) {
        lines.push(format!("export INFRAMOCK_MOCK_URL={}", mock.url));
    }
    if let Some(faults) = stack.service(&ServiceName::Faults) {
        lines.push(format!("export INFRAMOCK_FAULTS_URL={}", faults.url));
    }
    if let Some(dashboard) = stack.service(&ServiceName::Dashboard) {
        lines.push(format!("export INFRAMOCK_DASHBOARD_URL={}", dashboard.url));
    }
    lines.push(format!("export CLUSTER_ENV={}", stack.cluster_env));
    lines
}

/// The export lines as one JSON object, variable → value (what `env --json` and `run --json`
/// give scripts).
pub fn export_object(lines: &[String]) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    serde_json::Value::Object(map)
}

/// Prints the export lines (or a JSON object of them with `--json`).
pub fn execute(settings: &Settings) -> Result<ExitCode> {
    let stack = state::read(&settings.state_dir())?
        .context("no stack is running for this project; start one with `inframock run --detach`")?;
    let lines = export_lines(settings, &stack);
    if settings.json {
        crate::output::print_json(export_object(&lines));
    } else {
        for line in lines {
            outln!("{line}");
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
            port: crate::stack::runtime::port_of(url).unwrap_or(0),
            url: url.into(),
            pid: Some(1),
            started: None,
            program: None,
            log: None,
            container: None,
            kind: None,
        }
    }

    /// Settings of a project whose stack file is `toml`.
    fn settings(toml: &str) -> Settings {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("inframock.toml"), toml).unwrap();
        Settings::resolve(
            &crate::cli::GlobalArgs::default(),
            None,
            false,
            dir.path(),
            crate::config::StackFileUse::Required,
        )
        .unwrap()
    }

    /// A stack on the local runtime in eu-west-1 / development.
    fn local_stack(
        services: Vec<ServiceRecord>,
        fault_proxies: Vec<crate::stack::state::FaultProxyRecord>,
    ) -> StackState {
        StackState {
            project: "p".into(),
            runtime: RuntimeKind::Local,
            started_at: 0,
            region: "eu-west-1".into(),
            cluster_env: "development".into(),
            services,
            fault_proxies,
        }
    }

    #[test]
    fn declared_services_are_exported_under_their_kinds_variables() {
        let settings = settings(
            "[services.cache]\npreset = 'memcached'\n[services.db]\npreset = 'postgres'\nenv_var = 'MAIN_DB'\n",
        );
        let stack = local_stack(
            vec![
                record(ServiceName::named("cache"), "memcached://localhost:11211"),
                record(
                    ServiceName::named("db"),
                    "postgres://postgres@localhost:5432/postgres",
                ),
            ],
            vec![crate::stack::state::FaultProxyRecord {
                service: ServiceName::named("cache"),
                port: 21211,
                target_port: 11211,
            }],
        );
        let lines = export_lines(&settings, &stack);
        assert!(
            lines.contains(&"export MEMCACHED_URL=memcached://localhost:21211".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(
                &"export MAIN_DB=postgres://postgres@localhost:5432/postgres".to_string()
            ),
            "{lines:?}"
        );
    }

    #[test]
    fn exports_endpoint_region_credentials_and_redis() {
        let stack = local_stack(
            vec![
                record(ServiceName::Aws, "http://localhost:4566"),
                record(ServiceName::Redis, "redis://localhost:6379"),
            ],
            Vec::new(),
        );
        let lines = export_lines(&settings(""), &stack);
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
        let stack = local_stack(
            vec![record(ServiceName::Redis, "redis://localhost:6379")],
            vec![crate::stack::state::FaultProxyRecord {
                service: ServiceName::Redis,
                port: 16379,
                target_port: 6379,
            }],
        );
        assert!(export_lines(&settings(""), &stack)
            .contains(&"export REDIS_URL=redis://localhost:16379".to_string()));
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
        let lines = export_lines(&settings(""), &stack).join("\n");
        assert!(!lines.contains("AWS_ACCESS_KEY_ID"));
        assert!(!lines.contains("REDIS_URL"));
    }
}
