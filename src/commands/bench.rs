//! `inframock bench URL`: flags → a run plan, the run with a progress bar per step, then the table
//! (or `--json`) and the `--out` report.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::aws::{AwsClients, Endpoint};
use crate::bench::aws_target::AwsUrl;
use crate::bench::stats::{Load, StepResult};
use crate::bench::{self, Report, RunPlan, StepLimit, StepObserver, StepSpec, Target};
use crate::cli::BenchArgs;
use crate::config::Settings;
use crate::stack::state;

/// Largest request body (`--body @FILE`) sent by every request.
const MAX_BODY: u64 = 64 << 20;
/// Default length of a step.
const DEFAULT_STEP: Duration = Duration::from_secs(5);

/// Runs `inframock bench`. `settings` (the project's) are needed for an `s3://` or `dynamodb://`
/// target, which is read on the running stack's AWS endpoint.
pub async fn execute(
    args: &BenchArgs,
    json: bool,
    settings: Option<&Settings>,
) -> Result<ExitCode> {
    let report_kind = args.out.as_deref().map(report_kind).transpose()?;
    if let Some(path) = &args.out {
        check_writable(path)?;
    }
    let target = match AwsUrl::parse(&args.url) {
        Some(aws_url) => aws_target(args, aws_url.map_err(anyhow::Error::msg)?, settings).await?,
        None => {
            let body = match &args.body {
                Some(text) => read_body(text)?,
                None => Bytes::new(),
            };
            Target::parse(&args.url, &args.method, &args.headers, body)
                .map_err(anyhow::Error::msg)?
        }
    };
    let scenario = args.scenario.as_deref().map(read_scenario).transpose()?;
    let loads = bench::steps(&StepSpec {
        concurrency: args.concurrency.as_deref(),
        ramp: args.ramp.as_deref(),
        rate: args.rate.as_deref(),
        rate_ramp: args.rate_ramp.as_deref(),
    })
    .map_err(anyhow::Error::msg)?;
    let duration = args
        .duration
        .as_deref()
        .map(|d| bench::duration("--duration", d))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if args.requests == Some(0) {
        bail!("--requests 0: a step needs at least one request");
    }
    let limit = StepLimit {
        duration: duration.or(args.requests.is_none().then_some(DEFAULT_STEP)),
        requests: args.requests,
    };
    let timeout = bench::duration("--timeout", &args.timeout).map_err(anyhow::Error::msg)?;
    if args.connections == 0 || args.connections > bench::MAX_CONCURRENCY {
        bail!(
            "--connections {} must be from 1 to {}",
            args.connections,
            bench::MAX_CONCURRENCY
        );
    }
    let earlier = args.compare.as_deref().map(read_earlier).transpose()?;
    if let (Some(earlier), Some(first)) = (&earlier, loads.first()) {
        if !bench::report::same_mode(earlier, *first) {
            bail!(
                "--compare {}: that run has {} steps, this one {} steps; compare like with like",
                args.compare.as_deref().unwrap_or(Path::new("")).display(),
                if earlier.is_open_loop() {
                    "rate"
                } else {
                    "concurrency"
                },
                if earlier.is_open_loop() {
                    "concurrency"
                } else {
                    "rate"
                },
            );
        }
    }
    answers_at_all(&target).await?;
    if let (Some(path), Some(body)) = (&args.scenario, scenario) {
        set_scenario(&target, path, body).await?;
    }

    let plan = RunPlan {
        target: Arc::new(target),
        loads,
        limit,
        timeout,
        connections: args.connections,
        threads: args.threads.map_or_else(
            || std::thread::available_parallelism().map_or(2, |n| n.get()),
            usize::from,
        ),
    };
    let mut progress = Progress::new(!json && std::io::stderr().is_terminal(), limit);
    let report = bench::run(&plan, &mut progress).await;

    if let (Some(path), Some(kind)) = (&args.out, report_kind) {
        let text = match kind {
            ReportKind::Html => report.html(earlier.as_ref()),
            ReportKind::Svg => bench::plot::svg(&report, earlier.as_ref()),
        }
        .map_err(anyhow::Error::msg)?;
        std::fs::write(path, text)
            .with_context(|| format!("--out {}: cannot write the report", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    if json {
        crate::output::print_json(serde_json::to_value(&report)?);
    } else {
        out!("{}", report.table());
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Clone, Copy)]
enum ReportKind {
    Html,
    Svg,
}

fn report_kind(path: &Path) -> Result<ReportKind> {
    match path.extension().and_then(|e| e.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("html") || ext.eq_ignore_ascii_case("htm") => {
            Ok(ReportKind::Html)
        }
        Some(ext) if ext.eq_ignore_ascii_case("svg") => Ok(ReportKind::Svg),
        _ => bail!(
            "--out {}: the report is .html (plot and table) or .svg (the plot); name the file so",
            path.display()
        ),
    }
}

/// Fails before any load when the report could not be written at the end: its folder is missing,
/// it names a folder, or it cannot be opened for writing. A run's results are not lost to a typo.
fn check_writable(path: &Path) -> Result<()> {
    if path.is_dir() {
        bail!(
            "--out {}: that is a folder; name a .html or .svg file in it",
            path.display()
        );
    }
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !folder.is_dir() {
        bail!(
            "--out {}: folder {} does not exist; create it or name a file in another folder",
            path.display(),
            folder.display()
        );
    }
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("--out {}: cannot write the report there", path.display()))?;
    if !existed {
        // Only opened to see that it can be: the report is written after the run.
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// The scenario file, read and checked before any load by the parser `inframock mock` answers
/// `/setscenario` with (the seed's `[["BODY", STATUS, DELAY_MS], ...]`; the error names the step).
fn read_scenario(path: &Path) -> Result<Bytes> {
    let body = std::fs::read(path)
        .with_context(|| format!("--scenario {}: cannot read the file", path.display()))?;
    crate::mock::scenario::parse(&body)
        .map_err(|e| anyhow::anyhow!("--scenario {}: {e}", path.display()))?;
    Ok(Bytes::from(body))
}

fn read_body(text: &str) -> Result<Bytes> {
    let Some(path) = text.strip_prefix('@') else {
        return Ok(Bytes::copy_from_slice(text.as_bytes()));
    };
    let size = std::fs::metadata(path)
        .with_context(|| format!("--body @{path}: cannot read the file"))?
        .len();
    if size > MAX_BODY {
        bail!(
            "--body @{path}: {size} bytes; a request body is at most {} MiB",
            MAX_BODY >> 20
        );
    }
    let bytes =
        std::fs::read(path).with_context(|| format!("--body @{path}: cannot read the file"))?;
    Ok(Bytes::from(bytes))
}

fn read_earlier(path: &Path) -> Result<Report> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--compare {}: cannot read the file", path.display()))?;
    Report::from_json(&text).map_err(|e| anyhow::anyhow!("--compare {}: {e}", path.display()))
}

/// The signed request that reads an `s3://` object or a `dynamodb://` item on the running stack.
async fn aws_target(
    args: &BenchArgs,
    aws_url: AwsUrl,
    settings: Option<&Settings>,
) -> Result<Target> {
    let conflicting = [
        (args.body.is_some(), "--body"),
        (!args.method.eq_ignore_ascii_case("GET"), "--method"),
        (args.scenario.is_some(), "--scenario"),
    ];
    if let Some((_, flag)) = conflicting.iter().find(|(given, _)| *given) {
        bail!(
            "{}: an s3:// or dynamodb:// target is read with the request an SDK sends (GetObject, GetItem); drop {flag}",
            args.url
        );
    }
    let settings = settings.context("an s3:// or dynamodb:// target needs the project's stack")?;
    let recorded = state::read(&settings.state_dir())?;
    let endpoint = Endpoint::resolve(settings, recorded.as_ref())?;
    endpoint.check_credentials().await?;
    // One attempt each: the signed request is taken from the SDK before it is sent.
    let clients = AwsClients::for_probe(&endpoint).await;
    let signed = aws_url.signed_request(&clients, &args.url).await?;
    let mut headers = signed.headers;
    headers.extend(args.headers.iter().cloned());
    let mut target = Target::parse(&signed.url, &signed.method, &headers, signed.body)
        .map_err(|e| anyhow::anyhow!("{}: the stack's AWS endpoint {e}", args.url))?;
    target.url.clone_from(&args.url);
    Ok(target)
}

/// Refuses to start a run against a port nothing listens on (every request would be an error).
async fn answers_at_all(target: &Target) -> Result<()> {
    let connect = tokio::net::TcpStream::connect(target.address);
    match tokio::time::timeout(Duration::from_secs(3), connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => bail!(
            "nothing answers at {} ({e}); start the server first (`inframock mock`, `inframock run`)",
            target.url
        ),
        Err(_) => bail!("{}: connecting took longer than 3 s", target.url),
    }
}

/// Posts the scenario (the file at `path`) to the URL's `/setscenario`, as the scenario seed's
/// instructions do.
async fn set_scenario(target: &Target, path: &Path, body: Bytes) -> Result<()> {
    let url = format!("{}/setscenario", target.origin);
    let (status, answer) =
        crate::http_client::post_bytes(&url, body, Duration::from_secs(30)).await?;
    if !status.is_success() {
        bail!(
            "--scenario {}: {url} answered {status}: {}",
            path.display(),
            String::from_utf8_lossy(&answer).trim()
        );
    }
    Ok(())
}

/// A progress bar per step on a terminal; one line per finished step otherwise (on stderr).
struct Progress {
    bars: Option<MultiProgress>,
    limit: StepLimit,
    current: Option<(ProgressBar, tokio::task::JoinHandle<()>)>,
}

impl Progress {
    fn new(interactive: bool, limit: StepLimit) -> Progress {
        Progress {
            bars: interactive.then(MultiProgress::new),
            limit,
            current: None,
        }
    }
}

impl StepObserver for Progress {
    fn started(&mut self, index: usize, count: usize, load: Load, sent: Arc<AtomicU64>) {
        let Some(bars) = &self.bars else { return };
        // By requests when they bound the step, else by time.
        let by_requests = self
            .limit
            .requests
            .filter(|_| self.limit.duration.is_none());
        let length = by_requests.unwrap_or_else(|| {
            self.limit
                .duration
                .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        });
        let bar = bars.add(ProgressBar::new(length));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>14} {bar:30.cyan/blue} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(format!("{}/{count} {}", index + 1, load.label()));
        let ticker = {
            let bar = bar.clone();
            tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                loop {
                    let count = sent.load(Ordering::Relaxed);
                    let elapsed = started.elapsed();
                    bar.set_position(match by_requests {
                        Some(_) => count,
                        None => u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                    });
                    bar.set_message(format!(
                        "{count} sent, {:.0}/s",
                        count as f64 / elapsed.as_secs_f64().max(0.001)
                    ));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        self.current = Some((bar, ticker));
    }

    fn finished(&mut self, index: usize, result: &StepResult) {
        let line = format!(
            "{:.0} answers/s, p50 {:.2} ms, p99 {:.2} ms{}",
            result.throughput,
            result.headline().p50,
            result.headline().p99,
            if result.timeouts + result.errors.values().sum::<u64>() > 0 {
                format!(
                    ", {} failed",
                    result.timeouts + result.errors.values().sum::<u64>()
                )
            } else {
                String::new()
            }
        );
        match self.current.take() {
            Some((bar, ticker)) => {
                ticker.abort();
                bar.set_position(bar.length().unwrap_or(0));
                bar.finish_with_message(line);
            }
            None => eprintln!("step {} {}: {line}", index + 1, result.load.label()),
        }
    }
}
