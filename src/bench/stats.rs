//! What one step measured: latency histograms (HdrHistogram, microseconds), answers by status,
//! failures, and the summary a report shows.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::target::ExchangeError;

/// Longest latency a histogram holds exactly (longer ones are clamped to it): 10 minutes.
const HIGHEST_MICROS: u64 = 600_000_000;

/// The load of one step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// Closed loop: this many requests in flight, each sent when the previous answer arrived.
    Concurrency(u32),
    /// Open loop: requests sent on a schedule of this many per second.
    Rate(f64),
}

impl Load {
    /// The x value of the step in plots.
    pub fn value(self) -> f64 {
        match self {
            Load::Concurrency(c) => f64::from(c),
            Load::Rate(r) => r,
        }
    }

    /// `c=4` or `1000/s`.
    pub fn label(self) -> String {
        match self {
            Load::Concurrency(c) => format!("c={c}"),
            Load::Rate(r) => format!("{r}/s"),
        }
    }
}

/// Collects one worker's measurements; workers' recorders are merged at the end of a step.
pub struct Recorder {
    /// From when the request was sent.
    latency: Histogram<u64>,
    /// From when the request was meant to be sent (open loop only).
    corrected: Option<Histogram<u64>>,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<&'static str, u64>,
    timeouts: u64,
}

impl Recorder {
    /// An empty recorder; `corrected` keeps a second histogram measured from intended send times.
    pub fn new(corrected: bool) -> Recorder {
        // Constant bounds that the constructor accepts; nothing a user gives reaches it.
        let histogram = || {
            Histogram::<u64>::new_with_bounds(1, HIGHEST_MICROS, 3)
                .expect("1 µs ..= 10 min at 3 significant digits is a valid histogram")
        };
        Recorder {
            latency: histogram(),
            corrected: corrected.then(histogram),
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            timeouts: 0,
        }
    }

    /// An answer with `status`, `latency` after it was sent and `corrected` after it was due.
    pub fn answer(&mut self, status: u16, latency: Duration, corrected: Option<Duration>) {
        *self.statuses.entry(status).or_default() += 1;
        self.latency.saturating_record(micros(latency));
        if let (Some(histogram), Some(corrected)) = (&mut self.corrected, corrected) {
            histogram.saturating_record(micros(corrected));
        }
    }

    /// A failed exchange.
    pub fn error(&mut self, error: ExchangeError) {
        *self.errors.entry(error.name()).or_default() += 1;
    }

    /// A request that had no answer within the timeout.
    pub fn timeout(&mut self) {
        self.timeouts += 1;
    }

    /// Adds another worker's measurements.
    pub fn merge(&mut self, other: Recorder) {
        let _ = self.latency.add(&other.latency);
        if let (Some(mine), Some(theirs)) = (&mut self.corrected, &other.corrected) {
            let _ = mine.add(theirs);
        }
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        for (error, count) in other.errors {
            *self.errors.entry(error).or_default() += count;
        }
        self.timeouts += other.timeouts;
    }

    /// The summary of a step that ran `elapsed` under `load`.
    pub fn summary(&self, load: Load, elapsed: Duration) -> StepResult {
        let answers: u64 = self.statuses.values().sum();
        let seconds = elapsed.as_secs_f64().max(1e-9);
        StepResult {
            load,
            seconds: round3(seconds),
            requests: answers,
            throughput: round3(answers as f64 / seconds),
            latency_ms: Percentiles::of(&self.latency),
            corrected_latency_ms: self.corrected(load, elapsed, answers),
            statuses: self
                .statuses
                .iter()
                .map(|(status, count)| (status.to_string(), *count))
                .collect(),
            errors: self
                .errors
                .iter()
                .map(|(error, count)| (error.to_string(), *count))
                .collect(),
            timeouts: self.timeouts,
        }
    }
}

impl Recorder {
    /// Latency corrected for coordinated omission: the open loop measured it from when each
    /// request was due; for the closed loop it is estimated after the fact as wrk does — each
    /// answer slower than the mean time between a worker's requests stands for the requests that
    /// worker would have sent meanwhile (HdrHistogram's correction with an expected interval).
    fn corrected(&self, load: Load, elapsed: Duration, answers: u64) -> Option<Percentiles> {
        if let Some(histogram) = &self.corrected {
            return Some(Percentiles::of(histogram));
        }
        let Load::Concurrency(workers) = load else {
            return None;
        };
        let interval = micros(elapsed)
            .saturating_mul(u64::from(workers))
            .checked_div(answers)?;
        (interval > 0).then(|| Percentiles::of(&self.latency.clone_correct(interval)))
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, HIGHEST_MICROS)
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Latency percentiles of a step, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    fn of(histogram: &Histogram<u64>) -> Percentiles {
        let ms = |micros: u64| round3(micros as f64 / 1000.0);
        Percentiles {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: round3(histogram.mean() / 1000.0),
        }
    }

    /// The percentiles plotted and tabled, with their names.
    pub fn named(&self) -> [(&'static str, f64); 5] {
        [
            ("p50", self.p50),
            ("p90", self.p90),
            ("p99", self.p99),
            ("p99.9", self.p999),
            ("max", self.max),
        ]
    }
}

/// One step of a run, as reported (text, JSON, plots).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub load: Load,
    /// How long the step ran.
    pub seconds: f64,
    /// Answered requests (any status).
    pub requests: u64,
    /// Answers per second.
    pub throughput: f64,
    /// From when each request was sent.
    pub latency_ms: Percentiles,
    /// Coordinated omission corrected: the open loop's from when each request was due, the
    /// closed loop's estimated as wrk does (see `Recorder::corrected`).
    pub corrected_latency_ms: Option<Percentiles>,
    /// Answers by HTTP status.
    pub statuses: BTreeMap<String, u64>,
    /// Failed exchanges by kind (connect, connection broken).
    pub errors: BTreeMap<String, u64>,
    /// Requests without an answer within --timeout.
    pub timeouts: u64,
}

impl StepResult {
    /// The latency a report leads with: corrected when measured, else from the send.
    pub fn headline(&self) -> &Percentiles {
        self.corrected_latency_ms
            .as_ref()
            .unwrap_or(&self.latency_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_recorders_sum_statuses_and_keep_percentiles() {
        let mut first = Recorder::new(true);
        for ms in 1..=99 {
            first.answer(
                200,
                Duration::from_millis(ms),
                Some(Duration::from_millis(ms + 100)),
            );
        }
        let mut second = Recorder::new(true);
        second.answer(
            503,
            Duration::from_millis(1000),
            Some(Duration::from_millis(1000)),
        );
        second.error(ExchangeError::Connect);
        second.timeout();
        first.merge(second);
        let step = first.summary(Load::Rate(50.0), Duration::from_secs(2));
        assert_eq!(step.requests, 100);
        assert_eq!(step.throughput, 50.0);
        assert_eq!(step.statuses["200"], 99);
        assert_eq!(step.statuses["503"], 1);
        assert_eq!(step.errors["connect"], 1);
        assert_eq!(step.timeouts, 1);
        let within = |value: f64, expected: f64| (value - expected).abs() <= expected * 0.01;
        assert!(within(step.latency_ms.p50, 50.0), "{:?}", step.latency_ms);
        assert!(within(step.latency_ms.max, 1000.0), "{:?}", step.latency_ms);
        let corrected = step.corrected_latency_ms.unwrap();
        assert!(within(corrected.p50, 150.0), "{corrected:?}");
        assert_eq!(step.headline(), &corrected);
    }

    #[test]
    fn a_closed_loop_step_is_corrected_after_the_fact_as_wrk_does() {
        // One worker, 1 s: 99 answers of 1 ms and one stalled for 901 ms. The mean interval is
        // 10 ms, so the stall stands for ~89 requests that were never sent.
        let mut recorder = Recorder::new(false);
        for _ in 0..99 {
            recorder.answer(200, Duration::from_millis(1), None);
        }
        recorder.answer(200, Duration::from_millis(901), None);
        let step = recorder.summary(Load::Concurrency(1), Duration::from_secs(1));
        assert_eq!(step.latency_ms.p50, 1.0);
        assert_eq!(
            step.latency_ms.p90, 1.0,
            "uncorrected, the stall is one answer in 100"
        );
        let corrected = step.corrected_latency_ms.unwrap();
        assert!(
            corrected.p90 > 100.0,
            "corrected, it is most of the second: {corrected:?}"
        );
        assert_eq!(Load::Concurrency(4).label(), "c=4");
    }
}
