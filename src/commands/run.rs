//! `inframock run`: bring the stack up, ensure every declared resource, load the data folder,
//! print where everything is, and stay in the foreground until Ctrl-C (or return with `--detach`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use super::env::export_lines;
use crate::cli::RunArgs;
use crate::config::Settings;
use crate::data::session;
use crate::output::Reporter;
use crate::resources::Ensured;
use crate::snapshot::persist;
use crate::stack::lifecycle;
use crate::stack::lock::{ProjectLock, LOCK_WAIT};
use crate::stack::readiness::{self, Step, StepState};
use crate::stack::up::{bring_up, RunningStack};
use crate::stack::{state, ServiceName};

/// Runs the stack.
pub async fn execute(settings: &Settings, args: &RunArgs, reporter: &Reporter) -> Result<ExitCode> {
    if settings.stack_origin == crate::config::BUILT_IN_ORIGIN {
        reporter.info(format!(
            "note: no inframock.toml in {}: running the built-in example stack (the Biomage development stack); `inframock init` writes a stack file of your own",
            settings.project_dir.display()
        ));
    }
    if let (_, Some(warning)) = settings.region_note() {
        reporter.warn(warning);
    }
    let state_dir = settings.ensure_state_dir()?;
    // One run at a time per project: a second one waits here, then reuses what the first started.
    let lock = ProjectLock::acquire_async(&state_dir, "run", LOCK_WAIT).await?;
    // From here on Ctrl-C is ours: while the stack starts, it drops what was starting (processes
    // stop with it); afterwards it stops what this run started.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    readiness::begin_run(&state_dir);
    let mut stack = tokio::select! {
        stack = bring_up(settings, reporter, args.fresh) => match stack {
            Ok(stack) => {
                let names: Vec<&str> = stack.state.services.iter().map(|r| r.name.as_str()).collect();
                readiness::mark(&state_dir, Step::Services, StepState::Done, Some(names.join(", ")));
                stack
            }
            Err(e) => {
                readiness::mark(&state_dir, Step::Services, StepState::Failed, Some(format!("{e:#}")));
                return Err(e);
            }
        },
        _ = interrupt.recv() => {
            state::forget_gone(&state_dir)?;
            reporter.info("interrupted while starting: stopped what was starting (containers being created, if any, are removed by `inframock stop`)");
            return Ok(ExitCode::from(130));
        }
    };
    let prepared = prepare(settings, args, reporter, &mut stack).await;
    let (ensured, data_report, exit) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            stack.stop_started(&state_dir).await?;
            return Err(e);
        }
    };
    print_banner(settings, &stack, &ensured, &data_report, args.detach);
    drop(lock);
    if args.detach {
        for item in stack.started.drain(..) {
            item.keep_running();
        }
        return Ok(exit);
    }
    let monitor = match &args.harakiri_monitor {
        Some(address) => match start_monitor(address, &stack, reporter).await {
            Ok(monitor) => Some(monitor),
            Err(e) => {
                stack.stop_started(&state_dir).await?;
                return Err(e);
            }
        },
        None => None,
    };
    let stopped_because = wait_for_shutdown(&mut stack, &mut interrupt, monitor).await;
    let _lock = ProjectLock::acquire_async(&state_dir, "run (stopping)", LOCK_WAIT).await?;
    let stopped_because = match stopped_because {
        Shutdown::ServiceDied(_) if stopped_elsewhere(&state_dir, &stack)? => {
            Shutdown::StoppedElsewhere
        }
        other => other,
    };
    match &stopped_because {
        Shutdown::Signal => reporter.info("stopping the stack"),
        Shutdown::ServiceDied(why) => reporter.warn(why),
        Shutdown::MonitorClosed => {
            reporter.info("the harakiri monitor closed its connection: stopping the whole stack")
        }
        Shutdown::StoppedElsewhere => {
            reporter.info("stopped by `inframock stop`");
            for item in stack.started.drain(..) {
                item.keep_running();
            }
            return Ok(exit);
        }
    }
    if !matches!(stopped_because, Shutdown::ServiceDied(_)) {
        if let Err(e) = persist::save_before_stop(settings, reporter).await {
            reporter.warn(format!(
                "persist: the stack's state could not be saved ({e:#}); snapshot `persist` keeps the last save"
            ));
        }
    }
    stack.stop_started(&state_dir).await?;
    if matches!(stopped_because, Shutdown::MonitorClosed) {
        // The harness owns the whole stack, also what an earlier run left running.
        lifecycle::down(settings, reporter).await?;
        return Ok(exit);
    }
    if !stack.reused.is_empty() {
        reporter.info(format!(
            "left running what an earlier `run --detach` started ({}); `inframock stop` stops it",
            names(&stack.reused)
        ));
    }
    match stopped_because {
        Shutdown::ServiceDied(_) => Ok(ExitCode::FAILURE),
        _ => Ok(exit),
    }
}

/// Resources, queue tails/bridges and the data folder, once the services answer. Returns what was
/// ensured, the data report and the exit code (3 when some data files failed).
async fn prepare(
    settings: &Settings,
    args: &RunArgs,
    reporter: &Reporter,
    stack: &mut RunningStack,
) -> Result<(Vec<Ensured>, serde_json::Value, ExitCode)> {
    let endpoint = lifecycle::endpoint_of(settings, stack)?;
    endpoint.check_credentials().await?;
    let clients = endpoint.clients().await;
    let ensured = lifecycle::ensure_declared(settings, reporter, &clients, stack).await?;
    let aws_started_here = !stack.reused.contains(&ServiceName::Aws);
    if let Some(loaded) =
        persist::load_on_run(settings, &stack.state, aws_started_here, reporter).await?
    {
        reporter.info(format!(
            "persist: loaded the state saved at the last stop: {}",
            loaded.summary()
        ));
        if !loaded.failed.is_empty() {
            reporter.warn(format!(
                "persist: {} file(s) of snapshot `persist` failed to load (`inframock snapshot load persist` says why)",
                loaded.failed.len()
            ));
        }
    }
    let (report, code) = load_data(settings, args, reporter, &clients, &ensured).await;
    // Periodic saves start once the kept state and the data are loaded.
    crate::stack::helpers::ensure_persist_keeper(settings, reporter, stack).await?;
    Ok((ensured, report, code))
}

/// The data folder's step of `run` (skipped with `--no-populate` or `POPULATE_MOCK=false`): the
/// report and the exit code (3 when some data files failed).
async fn load_data(
    settings: &Settings,
    args: &RunArgs,
    reporter: &Reporter,
    clients: &crate::aws::AwsClients,
    ensured: &[Ensured],
) -> (serde_json::Value, ExitCode) {
    if !settings.populate || args.no_populate {
        let why = if args.no_populate {
            "--no-populate"
        } else {
            "POPULATE_MOCK is off"
        };
        readiness::mark(
            &settings.state_dir(),
            Step::Data,
            StepState::Skipped,
            Some(why.into()),
        );
        return (serde_json::Value::Null, ExitCode::SUCCESS);
    }
    let created = lifecycle::created_tables(ensured);
    match session::load(settings, clients, &args.load, created, reporter).await {
        Ok(report) => {
            let code = super::data_exit_code(&report);
            (report.json, code)
        }
        Err(e) => {
            // The stack itself is fine: keep it up, and say what went wrong with the data.
            reporter.warn(format!("data was not loaded: {e:#}"));
            (
                serde_json::Value::Null,
                ExitCode::from(super::EXIT_DATA_FAILED),
            )
        }
    }
}

/// Connects to the harakiri monitor and serves it in the background.
async fn start_monitor(
    address: &str,
    stack: &RunningStack,
    reporter: &Reporter,
) -> Result<tokio::task::JoinHandle<()>> {
    let edge_port = stack
        .state
        .client_url(&ServiceName::Aws)
        .and_then(|url| url.rsplit(':').next().and_then(|p| p.parse().ok()))
        .unwrap_or(0);
    let stream = crate::harakiri::connect(address, edge_port).await?;
    reporter.info(format!(
        "harakiri monitor {address}: sent port {edge_port}; the stack stops when it closes the connection"
    ));
    let control = stack
        .state
        .service(&ServiceName::Faults)
        .map(|f| std::net::SocketAddr::from(([127, 0, 0, 1], f.port)));
    Ok(tokio::spawn(crate::harakiri::serve(stream, control)))
}

/// Whether what this run started was stopped by another command (`inframock stop`, `reset`):
/// its records are gone from the state file. Called while holding the lock, so a `stop` that
/// was under way has finished.
fn stopped_elsewhere(state_dir: &std::path::Path, stack: &RunningStack) -> Result<bool> {
    let recorded = state::read(state_dir)?;
    Ok(stack.started.iter().any(|item| {
        let mine = item.record();
        !recorded.as_ref().is_some_and(|s| {
            s.services
                .iter()
                .any(|r| r.name == mine.name && r.pid == mine.pid && r.container == mine.container)
        })
    }))
}

enum Shutdown {
    Signal,
    ServiceDied(String),
    MonitorClosed,
    /// `inframock stop` (another terminal) stopped the services.
    StoppedElsewhere,
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

fn print_banner(
    settings: &Settings,
    stack: &RunningStack,
    ensured: &[Ensured],
    data: &serde_json::Value,
    detach: bool,
) {
    let exports = export_lines(settings, &stack.state);
    if settings.json {
        let document = serde_json::json!({
            "project": stack.state.project,
            "runtime": stack.state.runtime,
            "ready_after_ms": stack.ready_after.as_millis() as u64,
            "services": stack.state.services,
            "reused": stack.reused,
            "resources": ensured,
            "data": data,
            "exports": super::env::export_object(&exports),
            "detached": detach,
        });
        super::print_load_json(document, data);
        return;
    }
    outln!();
    outln!(
        "inframock is ready (project {}, runtime {}, {:.1} s)",
        stack.state.project,
        stack.state.runtime,
        stack.ready_after.as_secs_f64()
    );
    outln!();
    let name_width =
        crate::output::column_width(stack.state.services.iter().map(|s| s.name.as_str()), 6);
    let url_width =
        crate::output::column_width(stack.state.services.iter().map(|s| s.url.as_str()), 26);
    for service in &stack.state.services {
        let pid = service.pid.map(|p| format!("pid {p}")).unwrap_or_default();
        let what = crate::stack::lifecycle::kind_of(settings, service).summary;
        outln!(
            "  {:<name_width$} {:<url_width$} {:<10} {what}",
            service.name.as_str(),
            service.url,
            pid
        );
    }
    outln!();
    outln!("  resources: {}", crate::resources::summary(ensured));
    let (region_from, _) = settings.region_note();
    outln!("  region:    {} ({region_from})", settings.region);
    outln!();
    let (inframock, on_path) = crate::output::invocation();
    outln!("Point your tools at it (or run `eval \"$({inframock} env)\"`):");
    for line in &exports {
        outln!("  {line}");
    }
    if let Some(aws) = stack.state.service(&ServiceName::Aws) {
        outln!("  aws --endpoint-url={} s3 ls", aws.url);
    }
    outln!();
    if !on_path {
        outln!("(`inframock` on your PATH is not this binary: `make install` puts it there.)");
    }
    if detach {
        outln!("Running in the background; `{inframock} stop` stops it.");
    } else {
        outln!("Press Ctrl-C to stop (or use `inframock run --detach`).");
    }
}
