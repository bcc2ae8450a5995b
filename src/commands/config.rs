//! `inframock config`: every resolved setting and where its value came from — a flag, an
//! environment variable, inframock.toml, or the default — so "why does it use that port/region?"
//! has an answer without reading the code.

use std::process::ExitCode;

use serde::Serialize;

use crate::config::Settings;
use crate::stack::ServiceName;

/// One setting as resolved.
#[derive(Debug, Serialize)]
struct Entry {
    name: String,
    value: String,
    from: String,
}

/// Prints the settings (a table, or `--json`).
pub fn execute(settings: &Settings) -> ExitCode {
    let entries = entries(settings);
    if settings.json {
        crate::output::print_json(serde_json::json!({"settings": entries}));
        return ExitCode::SUCCESS;
    }
    let name_width = crate::output::column_width(entries.iter().map(|e| e.name.as_str()), 7);
    let value_width = crate::output::column_width(entries.iter().map(|e| e.value.as_str()), 5);
    outln!(
        "{:<name_width$}  {:<value_width$}  FROM",
        "SETTING",
        "VALUE"
    );
    for entry in &entries {
        outln!(
            "{:<name_width$}  {:<value_width$}  {}",
            entry.name,
            entry.value,
            entry.from
        );
    }
    if let (_, Some(warning)) = settings.region_note() {
        eprintln!("warning: {warning}");
    }
    ExitCode::SUCCESS
}

fn entries(settings: &Settings) -> Vec<Entry> {
    let stack_file = settings.stack_origin.as_str();
    // A flag or its variable, else the stack file when it sets the value, else the default.
    let from = |id: &str, in_stack_file: Option<&str>| -> String {
        settings
            .sources
            .get(id)
            .cloned()
            .or_else(|| in_stack_file.map(|field| format!("{stack_file}: {field}")))
            .unwrap_or_else(|| "default".to_string())
    };
    let entry = |name: &str, value: String, from: String| Entry {
        name: name.to_string(),
        value,
        from,
    };
    let sections = &settings.stack.services;
    let mut entries =
        vec![
        entry(
            "project",
            settings.project_dir.display().to_string(),
            settings.sources.get("project_dir").cloned().unwrap_or_else(|| {
                "the nearest folder up holding inframock.toml or .inframock/ (else this one)".into()
            }),
        ),
        entry(
            "stack file",
            stack_file.to_string(),
            settings.sources.get("config").cloned().unwrap_or_else(|| {
                if stack_file == crate::config::BUILT_IN_ORIGIN {
                    "no inframock.toml in the project (`inframock init` writes one)".into()
                } else {
                    "the project folder".into()
                }
            }),
        ),
        entry("runtime", settings.runtime.to_string(), from("runtime", None)),
        entry("region", settings.region.clone(), from("region", None)),
        entry("cluster env", settings.cluster_env.clone(), from("cluster_env", None)),
        entry(
            "data folder",
            settings.data_path.display().to_string(),
            from("data_path", None),
        ),
        entry(
            "aws engine",
            settings.service(&ServiceName::Aws).kind.id.to_string(),
            from(
                "engine",
                sections.aws.engine.as_ref().map(|_| "[services.aws] engine"),
            ),
        ),
    ];
    let ports = [
        (
            ServiceName::Aws,
            "aws_port",
            sections.aws.port.map(|_| "[services.aws] port"),
        ),
        (
            ServiceName::Redis,
            "redis_port",
            sections.redis.port.map(|_| "[services.redis] port"),
        ),
        (
            ServiceName::Mock,
            "mock_port",
            sections.mock.port.map(|_| "[services.mock] port"),
        ),
        (
            ServiceName::Faults,
            "faults_port",
            sections.faults.port.map(|_| "[services.faults] port"),
        ),
        (
            ServiceName::Dashboard,
            "dashboard_port",
            sections.dashboard.port.map(|_| "[services.dashboard] port"),
        ),
    ];
    for (service, id, in_file) in ports {
        entries.push(entry(
            &format!("{service} port"),
            settings.service(&service).port.to_string(),
            from(id, in_file),
        ));
    }
    for (name, service) in &settings.services {
        if let ServiceName::Declared(declared) = name {
            entries.push(entry(
                &format!("{declared} port"),
                service.port.to_string(),
                format!("{stack_file}: [services.{declared}]"),
            ));
        }
    }
    entries.extend([
        entry(
            "mock server",
            if settings.mock.enabled {
                "enabled"
            } else {
                "off"
            }
            .to_string(),
            if sections.mock.enabled {
                format!("{stack_file}: [services.mock] enabled")
            } else {
                "default".into()
            },
        ),
        entry(
            "ready timeout",
            format!("{} s", settings.ready_timeout.as_secs()),
            from("ready_timeout", None),
        ),
        entry(
            "operation timeout",
            format!("{} s", settings.operation_timeout.as_secs()),
            from("operation_timeout", None),
        ),
        entry(
            "load data on run",
            settings.populate.to_string(),
            if std::env::var_os("POPULATE_MOCK").is_some() {
                "env POPULATE_MOCK".into()
            } else {
                "default".into()
            },
        ),
    ]);
    if let Some(url) = &settings.endpoint_url {
        entries.push(entry(
            "endpoint url",
            url.clone(),
            from("endpoint_url", None),
        ));
    }
    entries
}
