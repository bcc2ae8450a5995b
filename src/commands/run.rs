//! `inframock run`: bring the stack up, ensure every declared resource, load the data folder,
//! print where everything is, and stay in the foreground until Ctrl-C (or return with `--detach`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use super::env::export_lines;
use crate::aws::AwsClients;
use crate::cli::{RunArgs, RuntimeKind};
use crate::config::Settings;
use crate::output::Reporter;
use crate::resources::{ensure_all, Ensured};
use crate::stack::up::{bring_up, RunningStack};
use crate::stack::{state, ServiceName};

/// Runs the stack.
pub async fn execute(settings: &Settings, args: &RunArgs, reporter: &Reporter) -> Result<ExitCode> {
    let state_dir = settings.state_dir();
    // From here on Ctrl-C is ours: while the stack starts, it drops what was starting (processes
    // stop with it); afterwards it stops what this run started.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut stack = tokio::select! {
        stack = bring_up(settings, reporter, args.fresh) => stack?,
        _ = interrupt.recv() => {
            reporter.info("interrupted while starting: stopped what was starting (containers being created, if any, are removed by `inframock stop`)");
            return Ok(ExitCode::from(130));
        }
    };
    let aws_url = stack
        .state
        .service(ServiceName::Aws)
        .map(|s| s.url.clone())
        .unwrap_or_default();
    let clients = AwsClients::new(
        &aws_url,
        &settings.region,
        stack.state.runtime != RuntimeKind::External,
    )
    .await;
    let step = reporter.step("creating declared resources");
    let ensured = match ensure_all(&clients, &settings.stack, &settings.name_vars()).await {
        Ok(ensured) => {
            step.done(resource_summary(&ensured));
            ensured
        }
        Err(e) => {
            step.fail("resources could not be created");
            stack.stop_started(&state_dir).await?;
            return Err(e);
        }
    };
    let wants_queues = crate::queues::worker::any_declared(settings);
    if wants_queues {
        let step = reporter.step("preparing queue tails and bridges");
        match crate::queues::worker::prepare(settings, &clients).await {
            Ok((tails, bridges)) => step.done(format!(
                "{} tail(s), {} bridge(s) ready",
                tails.len(),
                bridges.len()
            )),
            Err(e) => {
                step.fail("queue tails and bridges could not be prepared");
                stack.stop_started(&state_dir).await?;
                return Err(e);
            }
        }
    }
    if let Err(e) =
        crate::stack::up::ensure_queue_worker(settings, reporter, wants_queues, &mut stack).await
    {
        stack.stop_started(&state_dir).await?;
        return Err(e);
    }
    let mut exit = ExitCode::SUCCESS;
    let mut data_report = serde_json::Value::Null;
    if settings.populate && !args.no_populate {
        let stack_id = stack.state.instance_id();
        let outcome = super::reload_data::load_data(
            settings,
            &clients,
            stack_id.as_deref(),
            &args.load,
            reporter,
        )
        .await;
        match outcome {
            Ok((report, code)) => {
                data_report = report;
                exit = code;
            }
            Err(e) => {
                // The stack itself is fine: keep it up, and say what went wrong with the data.
                reporter.warn(format!("data was not loaded: {e:#}"));
                exit = ExitCode::from(super::EXIT_DATA_FAILED);
            }
        }
    }
    print_banner(settings, &stack, &ensured, &data_report, args.detach);
    if args.detach {
        for item in stack.started.drain(..) {
            item.keep_running();
        }
        return Ok(exit);
    }
    let monitor = match &args.harakiri_monitor {
        Some(address) => {
            let edge_port = stack
                .state
                .client_url(ServiceName::Aws)
                .and_then(|url| url.rsplit(':').next().and_then(|p| p.parse().ok()))
                .unwrap_or(0);
            match crate::harakiri::connect(address, edge_port).await {
                Ok(stream) => {
                    reporter.info(format!(
                        "harakiri monitor {address}: sent port {edge_port}; the stack stops when it closes the connection"
                    ));
                    let control = stack
                        .state
                        .service(ServiceName::Faults)
                        .map(|f| std::net::SocketAddr::from(([127, 0, 0, 1], f.port)));
                    Some(tokio::spawn(crate::harakiri::serve(stream, control)))
                }
                Err(e) => {
                    stack.stop_started(&state_dir).await?;
                    return Err(e);
                }
            }
        }
        None => None,
    };
    let stopped_because = wait_for_shutdown(&mut stack, &mut interrupt, monitor).await;
    match &stopped_because {
        Shutdown::Signal => reporter.info("stopping the stack"),
        Shutdown::ServiceDied(why) => reporter.warn(why),
        Shutdown::MonitorClosed => {
            reporter.info("the harakiri monitor closed its connection: stopping the whole stack")
        }
    }
    stack.stop_started(&state_dir).await?;
    if matches!(stopped_because, Shutdown::MonitorClosed) {
        // The harness owns the whole stack, also what an earlier run left running.
        if state::read(&state_dir)?.is_some() {
            super::stop::execute(settings, reporter).await?;
        }
        return Ok(exit);
    }
    if !stack.reused.is_empty() {
        reporter.info(format!(
            "left running what an earlier `run --detach` started ({}); `inframock stop` stops it",
            names(&stack.reused)
        ));
    }
    match stopped_because {
        Shutdown::Signal | Shutdown::MonitorClosed => Ok(exit),
        Shutdown::ServiceDied(_) => Ok(ExitCode::FAILURE),
    }
}

enum Shutdown {
    Signal,
    ServiceDied(String),
    MonitorClosed,
}

async fn wait_for_shutdown(
    stack: &mut RunningStack,
    interrupt: &mut tokio::signal::unix::Signal,
    mut monitor: Option<tokio::task::JoinHandle<()>>,
) -> Shutdown {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        let sigterm = async {
            match terminate.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let monitor_closed = async {
            match monitor.as_mut() {
                Some(task) => {
                    let _ = task.await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = monitor_closed => return Shutdown::MonitorClosed,
            _ = interrupt.recv() => return Shutdown::Signal,
            _ = sigterm => return Shutdown::Signal,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                for item in stack.started.iter_mut() {
                    if let Err(why) = item.check_alive().await {
                        return Shutdown::ServiceDied(why.replace("while starting", "unexpectedly"));
                    }
                }
            }
        }
    }
}

fn names(services: &[ServiceName]) -> String {
    services
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// "4 tables, 6 buckets, 1 queue, 1 topic (12 created, 0 already there)"
pub fn resource_summary(ensured: &[Ensured]) -> String {
    let count = |kind: &str| ensured.iter().filter(|e| e.kind == kind).count();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let created = ensured.iter().filter(|e| e.created).count();
    format!(
        "{}, {}, {}, {} ({} created, {} already there)",
        plural(count("table"), "table"),
        plural(count("bucket"), "bucket"),
        plural(count("queue"), "queue"),
        plural(count("topic"), "topic"),
        created,
        ensured.len() - created
    )
}

fn print_banner(
    settings: &Settings,
    stack: &RunningStack,
    ensured: &[Ensured],
    data: &serde_json::Value,
    detach: bool,
) {
    let exports = export_lines(&stack.state);
    if settings.json {
        let document = serde_json::json!({
            "project": stack.state.project,
            "runtime": stack.state.runtime,
            "ready_after_ms": stack.ready_after.as_millis() as u64,
            "services": stack.state.services,
            "reused": stack.reused,
            "resources": ensured,
            "data": data,
            "exports": exports,
            "detached": detach,
        });
        println!("{document}");
        return;
    }
    println!();
    println!(
        "inframock is ready (project {}, runtime {}, {:.1} s)",
        stack.state.project,
        stack.state.runtime,
        stack.ready_after.as_secs_f64()
    );
    println!();
    for service in &stack.state.services {
        let pid = service.pid.map(|p| format!("pid {p}")).unwrap_or_default();
        let what = match service.name {
            ServiceName::Aws => "S3, DynamoDB, SQS, SNS",
            ServiceName::Redis => "Redis",
            ServiceName::Mock => "HTTP mock/proxy (admin: /mocker/)",
            ServiceName::Faults => "fault proxies' control (/mock/<command>)",
            ServiceName::Queues => "queue tails and bridges of inframock.toml",
        };
        println!(
            "  {:<6} {:<26} {:<10} {what}",
            service.name.as_str(),
            service.url,
            pid
        );
    }
    println!();
    println!("  resources: {}", resource_summary(ensured));
    println!();
    println!("Point your tools at it (or run `eval \"$(inframock env)\"`):");
    for line in &exports {
        println!("  {line}");
    }
    if let Some(aws) = stack.state.service(ServiceName::Aws) {
        println!("  aws --endpoint-url={} s3 ls", aws.url);
    }
    println!();
    if detach {
        println!("Running in the background; `inframock stop` stops it.");
    } else {
        println!("Press Ctrl-C to stop (or use `inframock run --detach`).");
    }
}
