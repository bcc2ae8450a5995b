//! `inframock faults <command>`: disturb the stack's fault proxies through their control port;
//! `inframock faults serve`: run fault proxies in the foreground.

use std::net::ToSocketAddrs;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::mock::encode;
use crate::cli::{FaultsAction, FaultsArgs, FaultsServeArgs, FaultsTarget};
use crate::config::Settings;
use crate::faults::control::{FaultServer, ProxySpec};
use crate::http_client::get_json;
use crate::output::Reporter;
use crate::stack::ServiceName;

const FAULTS_HINT: &str = "enable `faults = true` on a service in inframock.toml and `inframock run`, or start `inframock faults serve`, or point --url at its control port";

/// Runs `inframock faults ...`.
pub async fn execute(
    settings: &Settings,
    args: &FaultsArgs,
    reporter: &Reporter,
) -> Result<ExitCode> {
    let (command, params, target): (&str, Vec<(&str, String)>, &FaultsTarget) = match &args.action {
        FaultsAction::Serve(serve_args) => return serve(settings, serve_args, reporter).await,
        FaultsAction::Hiccup {
            msecs,
            offset,
            target,
        } => (
            "hiccup",
            vec![("msecs", msecs.to_string()), ("offset", offset.to_string())],
            target,
        ),
        FaultsAction::Truncate { limit, target } => {
            ("truncate", vec![("limit", limit.to_string())], target)
        }
        FaultsAction::Failover { target } => ("failover", vec![], target),
        FaultsAction::Respawn { target } => ("respawn", vec![], target),
        FaultsAction::Latency { ms, jitter, target } => (
            "latency",
            vec![("ms", ms.to_string()), ("jitter", jitter.to_string())],
            target,
        ),
        FaultsAction::Opfail {
            count,
            code,
            target,
        } => {
            let mut params = vec![("count", count.to_string())];
            if let Some(code) = code {
                params.push(("code", code.to_string()));
            }
            ("opfail", params, target)
        }
        FaultsAction::Reset { target } => ("reset", vec![], target),
        FaultsAction::Status { target } => ("status", vec![], target),
    };
    let mut query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    if let Some(service) = &target.service {
        query.push(format!("service={}", encode(service)));
    }
    let base = control_url(settings, target)?;
    let path = if query.is_empty() {
        format!("/mock/{command}")
    } else {
        format!("/mock/{command}?{}", query.join("&"))
    };
    let answer = get_json(&base, FAULTS_HINT, &path).await?;
    if settings.json {
        crate::output::print_json(answer);
    } else {
        for (service, state) in answer["faults"].as_object().into_iter().flatten() {
            outln!("{service}: {state}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn control_url(settings: &Settings, target: &FaultsTarget) -> Result<String> {
    crate::stack::state::helper_url(
        &settings.state_dir(),
        target.url.as_deref(),
        ServiceName::Faults,
        settings.service(&ServiceName::Faults).port,
    )
}

/// Parses `NAME=LISTEN_PORT:TARGET_HOST:TARGET_PORT`.
pub fn parse_proxy(spec: &str) -> Result<ProxySpec> {
    let usage = || {
        format!("--proxy {spec:?}: expected NAME=LISTEN_PORT:TARGET_HOST:TARGET_PORT, e.g. redis=16379:127.0.0.1:6379")
    };
    let (name, rest) = spec.split_once('=').with_context(usage)?;
    let (listen, target) = rest.split_once(':').with_context(usage)?;
    let listen: u16 = listen.parse().with_context(usage)?;
    let target = target
        .to_socket_addrs()
        .with_context(usage)?
        .next()
        .with_context(usage)?;
    if name.is_empty() {
        bail!(usage());
    }
    Ok(ProxySpec {
        name: name.to_string(),
        listen,
        target,
    })
}

async fn serve(
    settings: &Settings,
    args: &FaultsServeArgs,
    reporter: &Reporter,
) -> Result<ExitCode> {
    let specs = args
        .proxies
        .iter()
        .map(|p| parse_proxy(p))
        .collect::<Result<Vec<_>>>()?;
    let targets: Vec<String> = specs.iter().map(|s| s.target.to_string()).collect();
    let server = FaultServer::start(specs, settings.service(&ServiceName::Faults).port).await?;
    if settings.json {
        let proxies: Vec<_> = server
            .proxies
            .iter()
            .zip(&targets)
            .map(|((name, port), target)| json!({"name": name, "port": port, "target": target}))
            .collect();
        crate::output::print_json(
            json!({"control": format!("http://{}", server.control), "proxies": proxies}),
        );
    } else {
        for ((name, port), target) in server.proxies.iter().zip(&targets) {
            reporter.info(format!("{name}: 127.0.0.1:{port} -> {target}"));
        }
        reporter.info(format!(
            "fault control on http://{} (GET /mock/<command>?param=value, or JSON lines); Ctrl-C stops",
            server.control
        ));
    }
    crate::signals::stop_requested().await;
    drop(server);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_specs_parse_or_say_the_form() {
        let spec = parse_proxy("redis=16379:127.0.0.1:6379").unwrap();
        assert_eq!(spec.name, "redis");
        assert_eq!(spec.listen, 16379);
        assert_eq!(spec.target.port(), 6379);
        for bad in [
            "redis",
            "redis=x:127.0.0.1:1",
            "=1:127.0.0.1:1",
            "redis=1:nohost",
        ] {
            let err = format!("{:#}", parse_proxy(bad).unwrap_err());
            assert!(err.contains("NAME=LISTEN_PORT"), "{bad}: {err}");
        }
    }
}
