//! `inframock bench`: the scenario seed's load tool, done properly. A run is a list of steps of
//! rising load against one request: closed-loop concurrency steps (the seed's ramp) or open-loop
//! scheduled rates (latency counted from when each request was due, as wrk2 `-R` does). Each step
//! records HdrHistogram latencies, answers by status, failures and timeouts; the report is a table,
//! JSON, and an offline HTML/SVG plot.
//!
//! Parsing the steps is pure (`steps`, `duration`); `run` does the I/O and tells an observer about
//! each step, so the command decides how progress looks.

pub mod aws_target;
pub mod load;
pub mod plot;
pub mod report;
pub mod stats;
pub mod target;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

pub use load::StepLimit;
use load::StepPlan;
pub use report::Report;
use stats::{Load, StepResult};
pub use target::Target;

/// Most steps in one run.
const MAX_STEPS: usize = 64;
/// Highest concurrency (open connections) of a step.
pub const MAX_CONCURRENCY: u32 = 10_000;
/// Highest scheduled rate, requests per second.
const MAX_RATE: f64 = 10_000_000.0;
/// Longest step.
const MAX_STEP_DURATION: Duration = Duration::from_secs(3600);

/// Everything a run needs.
pub struct RunPlan {
    pub target: Arc<Target>,
    pub loads: Vec<Load>,
    pub limit: StepLimit,
    pub timeout: Duration,
    /// Open loop: connections the schedule is spread over.
    pub connections: u32,
    /// Load threads (each its own event loop over a share of the connections).
    pub threads: usize,
}

/// Told about each step as the run goes.
pub trait StepObserver {
    /// Step `index` of `count` starts; `sent` counts its requests as they are sent.
    fn started(&mut self, index: usize, count: usize, load: Load, sent: Arc<AtomicU64>);
    /// Step `index` ended with `result`.
    fn finished(&mut self, index: usize, result: &StepResult);
}

/// Runs every step in order.
pub async fn run(plan: &RunPlan, observer: &mut dyn StepObserver) -> Report {
    let started = crate::mock::journal::rfc3339(crate::mock::journal::now_ms());
    let mut steps = Vec::with_capacity(plan.loads.len());
    for (index, load) in plan.loads.iter().copied().enumerate() {
        let sent = Arc::new(AtomicU64::new(0));
        observer.started(index, plan.loads.len(), load, Arc::clone(&sent));
        let step = StepPlan {
            target: Arc::clone(&plan.target),
            load,
            limit: plan.limit,
            timeout: plan.timeout,
            connections: plan.connections,
            threads: plan.threads,
        };
        let result = load::run_step(step, sent).await;
        observer.finished(index, &result);
        steps.push(result);
    }
    Report {
        url: plan.target.url.clone(),
        method: plan.target.method.to_string(),
        started,
        mode: match plan.loads.first() {
            Some(Load::Rate(_)) => "open",
            _ => "closed",
        }
        .to_string(),
        steps,
    }
}

/// How the steps were asked for on the command line.
#[derive(Debug, Default, Clone)]
pub struct StepSpec<'a> {
    /// `--concurrency 1,2,4`
    pub concurrency: Option<&'a str>,
    /// `--ramp 1..64` (doubling)
    pub ramp: Option<&'a str>,
    /// `--rate 500,1000`
    pub rate: Option<&'a str>,
    /// `--rate-ramp 100..3200` (doubling)
    pub rate_ramp: Option<&'a str>,
}

/// The loads of a run; without any flag, the closed-loop ramp 1..64.
pub fn steps(spec: &StepSpec<'_>) -> Result<Vec<Load>, String> {
    let given = [spec.concurrency, spec.ramp, spec.rate, spec.rate_ramp]
        .iter()
        .filter(|f| f.is_some())
        .count();
    if given > 1 {
        return Err(
            "give one of --concurrency, --ramp, --rate and --rate-ramp (a run is either concurrency steps or rate steps)"
                .into(),
        );
    }
    let loads = if let Some(list) = spec.concurrency {
        number_list("--concurrency", list)?
            .into_iter()
            .map(|c| concurrency("--concurrency", c))
            .collect::<Result<Vec<_>, _>>()?
    } else if let Some(rates) = spec.rate {
        number_list("--rate", rates)?
            .into_iter()
            .map(|r| rate("--rate", r))
            .collect::<Result<Vec<_>, _>>()?
    } else if let Some(range) = spec.rate_ramp {
        ramp("--rate-ramp", range, rate)?
    } else {
        ramp("--ramp", spec.ramp.unwrap_or("1..64"), concurrency)?
    };
    if loads.len() > MAX_STEPS {
        return Err(format!(
            "{} steps asked; at most {MAX_STEPS} per run",
            loads.len()
        ));
    }
    Ok(loads)
}

fn number_list(flag: &str, text: &str) -> Result<Vec<f64>, String> {
    text.split(',')
        .map(|part| {
            part.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| {
                    format!(
                        "{flag} {text:?}: {:?} is not a positive number",
                        part.trim()
                    )
                })
        })
        .collect()
}

/// The loads of a doubling ramp `FROM..TO`. TO is checked first, then the steps in order from
/// FROM, so an error names a value that was typed (`--ramp 1..100000` names 100000, not 16384,
/// the first doubling above the limit).
fn ramp(
    flag: &str,
    text: &str,
    load: fn(&str, f64) -> Result<Load, String>,
) -> Result<Vec<Load>, String> {
    let values = doubling(flag, text)?;
    if let Some(&to) = values.last() {
        load(flag, to)?;
    }
    values.into_iter().map(|value| load(flag, value)).collect()
}

/// `FROM..TO` doubling from FROM; TO is always the last step.
fn doubling(flag: &str, text: &str) -> Result<Vec<f64>, String> {
    let (from, to) = text
        .split_once("..")
        .ok_or_else(|| format!("{flag} {text:?} must be FROM..TO, e.g. 1..64"))?;
    let bound = |part: &str| {
        part.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
            .ok_or_else(|| format!("{flag} {text:?}: {part:?} is not a positive number"))
    };
    let (from, to) = (bound(from)?, bound(to)?);
    if from > to {
        return Err(format!("{flag} {text:?}: FROM is larger than TO"));
    }
    let mut values = Vec::new();
    let mut value = from;
    while value < to && values.len() <= MAX_STEPS {
        values.push(value);
        value *= 2.0;
    }
    values.push(to);
    Ok(values)
}

fn concurrency(flag: &str, value: f64) -> Result<Load, String> {
    if value.fract() != 0.0 || value > f64::from(MAX_CONCURRENCY) {
        return Err(format!(
            "{flag}: concurrency {value} must be a whole number from 1 to {MAX_CONCURRENCY}"
        ));
    }
    Ok(Load::Concurrency(value as u32))
}

fn rate(flag: &str, value: f64) -> Result<Load, String> {
    if value > MAX_RATE {
        return Err(format!(
            "{flag}: rate {value}/s is above the limit of {MAX_RATE}/s"
        ));
    }
    Ok(Load::Rate(value))
}

/// Parses `5s`, `500ms`, `2m`, `1.5s` (a bare number is seconds), at most an hour.
pub fn duration(flag: &str, text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let seconds_per_unit = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" | "min" => 60.0,
        _ => {
            return Err(format!(
                "{flag} {text:?}: the unit must be ms, s or m (e.g. 5s)"
            ))
        }
    };
    let value: f64 = number
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
        .ok_or_else(|| format!("{flag} {text:?} is not a positive duration (e.g. 5s, 500ms)"))?;
    let duration = Duration::from_secs_f64(value * seconds_per_unit);
    if duration > MAX_STEP_DURATION {
        return Err(format!("{flag} {text:?} is longer than an hour"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(spec: StepSpec<'_>) -> Result<Vec<Load>, String> {
        steps(&spec)
    }

    #[test]
    fn ramps_double_and_end_at_their_top() {
        let ramp = of(StepSpec {
            ramp: Some("1..10"),
            ..Default::default()
        })
        .unwrap();
        let values: Vec<f64> = ramp.iter().map(|l| l.value()).collect();
        assert_eq!(values, [1.0, 2.0, 4.0, 8.0, 10.0]);
        assert_eq!(
            of(StepSpec::default()).unwrap().len(),
            7,
            "1..64 by default"
        );
        let rates = of(StepSpec {
            rate_ramp: Some("100..400"),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            rates,
            [Load::Rate(100.0), Load::Rate(200.0), Load::Rate(400.0)]
        );
        let one = of(StepSpec {
            ramp: Some("3..3"),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(one, [Load::Concurrency(3)]);
    }

    #[test]
    fn lists_are_taken_as_given() {
        let list = of(StepSpec {
            concurrency: Some("1, 5,50"),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            list,
            [
                Load::Concurrency(1),
                Load::Concurrency(5),
                Load::Concurrency(50)
            ]
        );
        let rates = of(StepSpec {
            rate: Some("250.5"),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(rates, [Load::Rate(250.5)]);
    }

    #[test]
    fn bad_steps_name_the_flag() {
        let error = |spec| of(spec).unwrap_err();
        assert!(error(StepSpec {
            ramp: Some("8..2"),
            ..Default::default()
        })
        .contains("FROM is larger"));
        assert!(error(StepSpec {
            ramp: Some("8"),
            ..Default::default()
        })
        .contains("FROM..TO"));
        assert!(error(StepSpec {
            concurrency: Some("1,x"),
            ..Default::default()
        })
        .contains("--concurrency"));
        assert!(error(StepSpec {
            concurrency: Some("1.5"),
            ..Default::default()
        })
        .contains("whole number"));
        assert!(error(StepSpec {
            concurrency: Some("20000"),
            ..Default::default()
        })
        .contains("10000"));
        let too_many = error(StepSpec {
            ramp: Some("1..100000"),
            ..Default::default()
        });
        assert!(
            too_many.contains("100000") && too_many.contains("10000"),
            "{too_many}"
        );
        let too_fast = error(StepSpec {
            rate_ramp: Some("1..1e9"),
            ..Default::default()
        });
        assert!(too_fast.contains("1000000000/s"), "{too_fast}");
        assert!(error(StepSpec {
            rate: Some("0"),
            ..Default::default()
        })
        .contains("positive"));
        assert!(error(StepSpec {
            rate: Some("1"),
            ramp: Some("1..2"),
            ..Default::default()
        })
        .contains("one of"));
        let many = (1..=65)
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert!(error(StepSpec {
            concurrency: Some(&many),
            ..Default::default()
        })
        .contains("at most 64"));
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(
            duration("--duration", "5s").unwrap(),
            Duration::from_secs(5)
        );
        assert_eq!(
            duration("--duration", "250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            duration("--duration", "2m").unwrap(),
            Duration::from_secs(120)
        );
        assert_eq!(
            duration("--duration", "1.5").unwrap(),
            Duration::from_millis(1500)
        );
        assert!(duration("--duration", "5h").unwrap_err().contains("unit"));
        assert!(duration("--timeout", "-1s")
            .unwrap_err()
            .contains("--timeout"));
        assert!(duration("--duration", "90m").unwrap_err().contains("hour"));
    }
}
