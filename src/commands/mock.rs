//! `inframock mock`: run the HTTP mock/proxy server in the foreground; `inframock mock requests` and
//! `inframock mock expectations` ask a running one.

use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use crate::cli::{MockAction, MockArgs, MockRequestsArgs, MockServeArgs, MockUrlArgs};
use crate::config::Settings;
use crate::http_client::get_json;
use crate::mock::flaky::FlakySettings;
use crate::mock::routes::RouteDecl;
use crate::mock::{MockOptions, MockServer};
use crate::output::{human_bytes, Reporter};
use crate::stack::ServiceName;

const MOCK_HINT: &str = "start one with `inframock mock`, or enable [services.mock] and `inframock run`, or point --url at it";

/// Runs `inframock mock [...]`.
pub async fn execute(
    settings: &Settings,
    args: &MockArgs,
    reporter: &Reporter,
) -> Result<ExitCode> {
    match &args.action {
        None => serve(settings, &args.serve, reporter).await,
        Some(MockAction::Requests(query)) => print_requests(settings, query).await,
        Some(MockAction::Expectations(target)) => print_expectations(settings, target).await,
    }
}

/// The server options: `mock` flags over `[services.mock]` over defaults.
pub fn options(settings: &Settings, args: &MockServeArgs) -> Result<MockOptions> {
    let mock = &settings.mock;
    let (mocks_dir, mocks_required) = match &args.mocks {
        Some(dir) => (settings.project_dir.join(dir), true),
        None => (mock.mocks_dir.clone(), mock.mocks_named),
    };
    let python = args.python.clone().or(mock.python.clone());
    let declared = mock.upstream_policy;
    let upstream_policy = crate::mock::routes::policy(
        "--upstream",
        Some(
            args.upstream_timeout
                .map_or(declared.timeout.as_millis() as u64, |s| s * 1000),
        ),
        args.upstream_limit.map(|n| n as usize).or(declared.limit),
        args.upstream_hedge_after_ms
            .or(declared.hedge_after.map(|d| d.as_millis() as u64)),
    )
    .map_err(anyhow::Error::msg)?;
    Ok(MockOptions {
        bind: args.bind.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        port: settings.service(&ServiceName::Mock).port,
        port_flag: "--mock-port",
        upstream: args.upstream.clone().or(mock.upstream.clone()),
        routes: args
            .routes
            .iter()
            .map(|r| RouteDecl {
                prefix: r.prefix.clone(),
                upstream: r.upstream.clone(),
                rewrite: r.rewrite.clone(),
                ..RouteDecl::default()
            })
            .chain(mock.routes.iter().cloned())
            .collect(),
        flaky: flaky_settings(&mock.flaky, args),
        scenario_errors_as_500: args.scenario_errors_as_500 || mock.scenario_errors_as_500,
        sinks: mock.sinks.clone(),
        sinks_dir: settings.state_dir().join("sinks"),
        mocks_dir,
        mocks_required,
        journal_capacity: args.journal_size.unwrap_or(mock.journal_size),
        admin_any_host: args.admin_any_host,
        sandbox: settings
            .sandbox(python.as_deref())
            .map_err(|e| e.to_string()),
        upstream_policy,
        backend_errors_log: settings
            .state_dir()
            .join("logs")
            .join("backend-errors.jsonl"),
        header_timeout: Duration::from_secs(args.header_timeout),
        max_connections: args.max_connections as usize,
    })
}

/// The flaky responder: `--flaky PATH` (and `--flaky-seed`) over `[services.mock.flaky]`.
fn flaky_settings(declared: &Option<FlakySettings>, args: &MockServeArgs) -> Option<FlakySettings> {
    let mut settings = match (&args.flaky, declared) {
        (None, None) => return None,
        (_, Some(declared)) => declared.clone(),
        (Some(_), None) => FlakySettings::default(),
    };
    if let Some(path) = &args.flaky {
        settings.path = path.clone();
    }
    if let Some(seed) = args.flaky_seed {
        settings.seed = seed;
    }
    Some(settings)
}

async fn serve(settings: &Settings, args: &MockServeArgs, reporter: &Reporter) -> Result<ExitCode> {
    let options = options(settings, args)?;
    let server = MockServer::start(options.clone()).await?;
    let url = format!("http://{}", server.addr);
    if settings.json {
        crate::output::print_json(json!({
            "url": url,
            "port": server.addr.port(),
            "expectations_loaded": server.loaded,
            "mocks": options.mocks_dir,
            "upstream": options.upstream,
        }));
    } else {
        let fallback = match &options.upstream {
            Some(upstream) => format!("unmatched requests go to {upstream}"),
            None => "unmatched requests get a 404 listing the closest expectations".to_string(),
        };
        reporter.info(format!(
            "mock server listening on {url}: {} expectation(s) from {}; {fallback}",
            server.loaded,
            options.mocks_dir.display()
        ));
        reporter.info(format!(
            "admin API on {url}/mocker/ (see `inframock mock --help`); Ctrl-C stops"
        ));
    }
    crate::signals::stop_requested().await;
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// The base URL of the mock server to ask.
fn target_url(settings: &Settings, target: &MockUrlArgs) -> Result<String> {
    crate::stack::state::helper_url(
        &settings.state_dir(),
        target.url.as_deref(),
        ServiceName::Mock,
        settings.service(&ServiceName::Mock).port,
    )
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' | b'*' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

async fn print_requests(settings: &Settings, args: &MockRequestsArgs) -> Result<ExitCode> {
    let base = target_url(settings, &args.target)?;
    let mut params = Vec::new();
    if let Some(path) = &args.path {
        params.push(format!("path={}", encode(path)));
    }
    if let Some(method) = &args.method {
        params.push(format!("method={}", encode(method)));
    }
    if let Some(limit) = args.limit {
        params.push(format!("limit={limit}"));
    }
    let query = if params.is_empty() {
        String::new()
    } else {
        format!("?{}", params.join("&"))
    };
    let journal = get_json(&base, MOCK_HINT, &format!("/mocker/requests{query}")).await?;
    let requests = journal["requests"].as_array().cloned().unwrap_or_default();
    if settings.json {
        crate::output::print_json(json!({"requests": requests}));
        return Ok(ExitCode::SUCCESS);
    }
    for r in &requests {
        let target = match r["query"].as_str() {
            Some(q) => format!("{}?{q}", r["path"].as_str().unwrap_or("")),
            None => r["path"].as_str().unwrap_or("").to_string(),
        };
        let answered_by = match (r["matched"].as_str(), r["expectation"].as_str()) {
            (Some(kind), Some(id)) => format!("{kind} {id}"),
            (Some(kind), None) => kind.to_string(),
            _ => String::new(),
        };
        outln!(
            "{}  {:<6} {}  {}  {}  {:.1} ms  {}",
            r["time"].as_str().unwrap_or(""),
            r["method"].as_str().unwrap_or(""),
            target,
            r["status"],
            answered_by,
            r["latency_ms"].as_f64().unwrap_or(0.0),
            human_bytes(r["body_size"].as_u64().unwrap_or(0)),
        );
    }
    eprintln!(
        "{} request(s) shown; {} kept of at most {}, {} dropped",
        requests.len(),
        journal["total"],
        journal["capacity"],
        journal["dropped"]
    );
    Ok(ExitCode::SUCCESS)
}

async fn print_expectations(settings: &Settings, target: &MockUrlArgs) -> Result<ExitCode> {
    let base = target_url(settings, target)?;
    let list = get_json(&base, MOCK_HINT, "/mocker/expectations?format=full").await?;
    let items = list.as_array().cloned().unwrap_or_default();
    if settings.json {
        crate::output::print_json(list);
        return Ok(ExitCode::SUCCESS);
    }
    for e in &items {
        let answer = match (&e["status_code"], &e["handler"]) {
            (Value::Null, Value::String(h)) => format!("handler {h}"),
            (Value::Null, _) => "delay + proxy".to_string(),
            (status, _) => format!("status {status}"),
        };
        outln!(
            "{:<12} {:<6} {} ({})  {}  hits {}{}  [{}]",
            e["id"].as_str().unwrap_or(""),
            e["method"].as_str().unwrap_or("*"),
            e["path"].as_str().unwrap_or(""),
            e["path_match"].as_str().unwrap_or("exact"),
            answer,
            e["hits"],
            match e["remaining"].as_u64() {
                Some(n) => format!(", {n} left"),
                None => String::new(),
            },
            e["source"].as_str().unwrap_or("")
        );
    }
    eprintln!("{} expectation(s) at {base}", items.len());
    Ok(ExitCode::SUCCESS)
}
