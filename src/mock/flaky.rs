//! The "flaky backend" responder of the scenario seed: when no scenario step is left, its `/`
//! mimicked the real backend — a delay of 100-600 ms, then mostly `200 {"time": <delay>}`,
//! sometimes `200` with invalid JSON, sometimes `500`, sometimes no answer for 10 s. Seeded, so a
//! test run can be repeated exactly; every probability and delay is a setting.

use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;

/// The flaky responder's settings (`[services.mock.flaky]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlakySettings {
    /// The path it answers when the scenario has no step left (the seed's `/`).
    pub path: String,
    /// Seed of the random choices (the same seed gives the same sequence).
    pub seed: u64,
    /// Shortest and longest delay before answering, in milliseconds.
    pub min_delay_ms: u64,
    pub max_delay_ms: u64,
    /// Probability of a 200 whose body is not valid JSON.
    pub invalid_json: f64,
    /// Probability of a 500.
    pub error: f64,
    /// Probability of no answer: the connection is held for `no_answer_ms`, then closed.
    pub no_answer: f64,
    pub no_answer_ms: u64,
}

impl Default for FlakySettings {
    fn default() -> Self {
        FlakySettings {
            path: "/".to_string(),
            seed: 1,
            min_delay_ms: 100,
            max_delay_ms: 600,
            invalid_json: 0.05,
            error: 0.05,
            no_answer: 0.02,
            no_answer_ms: 10_000,
        }
    }
}

impl FlakySettings {
    /// Checks the ranges; the error names the setting.
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [
            ("invalid_json", self.invalid_json),
            ("error", self.error),
            ("no_answer", self.no_answer),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!(
                    "flaky `{name}` is {p}; a probability is from 0 to 1"
                ));
            }
        }
        if self.invalid_json + self.error + self.no_answer > 1.0 {
            return Err("flaky `invalid_json` + `error` + `no_answer` exceed 1".to_string());
        }
        if self.min_delay_ms > self.max_delay_ms {
            return Err("flaky `min_delay_ms` is above `max_delay_ms`".to_string());
        }
        let hour = 3_600_000;
        if self.max_delay_ms > hour || self.no_answer_ms > hour {
            return Err("flaky delays are at most one hour (3600000 ms)".to_string());
        }
        if !self.path.starts_with('/') {
            return Err(format!("flaky `path` {:?} must start with `/`", self.path));
        }
        Ok(())
    }
}

/// The scenario seed's body of every failure: aiohttp's bare 500 page.
pub const BARE_500_BODY: &str = "500: Internal Server Error";

/// One answer of the flaky responder.
#[derive(Debug, Clone, PartialEq)]
pub enum FlakyAnswer {
    /// Wait `delay`, then answer `status` with `body`.
    Answer {
        delay: Duration,
        status: http::StatusCode,
        body: String,
    },
    /// Hold the connection this long, then close it without an answer.
    NoAnswer(Duration),
}

/// The responder: settings and its random sequence.
pub struct Flaky {
    pub settings: FlakySettings,
    state: Mutex<u64>,
}

impl Flaky {
    /// A responder with these (validated) settings.
    pub fn new(settings: FlakySettings) -> Flaky {
        // xorshift must not start at 0.
        let state = Mutex::new(settings.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        Flaky { settings, state }
    }

    /// The next answer.
    pub fn next(&self) -> FlakyAnswer {
        let (roll, delay_roll) = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            (next_unit(&mut state), next_unit(&mut state))
        };
        let s = &self.settings;
        let span = (s.max_delay_ms - s.min_delay_ms) as f64;
        let delay_ms = s.min_delay_ms + (delay_roll * span).round() as u64;
        let delay = Duration::from_millis(delay_ms);
        if roll < s.no_answer {
            return FlakyAnswer::NoAnswer(Duration::from_millis(s.no_answer_ms));
        }
        if roll < s.no_answer + s.error {
            return FlakyAnswer::Answer {
                delay,
                status: http::StatusCode::INTERNAL_SERVER_ERROR,
                body: BARE_500_BODY.to_string(),
            };
        }
        if roll < s.no_answer + s.error + s.invalid_json {
            return FlakyAnswer::Answer {
                delay,
                status: http::StatusCode::OK,
                body: format!("{{\"time\": {delay_ms}"),
            };
        }
        FlakyAnswer::Answer {
            delay,
            status: http::StatusCode::OK,
            body: format!("{{\"time\": {delay_ms}}}"),
        }
    }
}

/// A number in [0, 1) from an xorshift64 state.
fn next_unit(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_answers_in_the_seeds_shape() {
        let settings = FlakySettings {
            seed: 7,
            ..FlakySettings::default()
        };
        let a = Flaky::new(settings.clone());
        let b = Flaky::new(settings);
        let first: Vec<FlakyAnswer> = (0..500).map(|_| a.next()).collect();
        let second: Vec<FlakyAnswer> = (0..500).map(|_| b.next()).collect();
        assert_eq!(first, second);
        let (mut ok, mut invalid, mut errors, mut silent) = (0, 0, 0, 0);
        for answer in &first {
            match answer {
                FlakyAnswer::Answer {
                    delay,
                    status: http::StatusCode::OK,
                    body,
                } => {
                    assert!((100..=600).contains(&(delay.as_millis() as u64)));
                    match serde_json::from_str::<serde_json::Value>(body) {
                        Ok(v) => {
                            assert_eq!(v["time"], delay.as_millis() as u64);
                            ok += 1
                        }
                        Err(_) => invalid += 1,
                    }
                }
                FlakyAnswer::Answer {
                    status: http::StatusCode::INTERNAL_SERVER_ERROR,
                    ..
                } => errors += 1,
                FlakyAnswer::NoAnswer(wait) => {
                    assert_eq!(*wait, Duration::from_secs(10));
                    silent += 1
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(ok > 400, "mostly 200 with JSON: {ok}");
        assert!(
            invalid > 0 && errors > 0 && silent > 0,
            "{invalid} {errors} {silent}"
        );
    }

    #[test]
    fn probabilities_can_be_set_and_are_checked() {
        let always_500 = Flaky::new(FlakySettings {
            error: 1.0,
            invalid_json: 0.0,
            no_answer: 0.0,
            ..FlakySettings::default()
        });
        assert!((0..50).all(|_| matches!(
            always_500.next(),
            FlakyAnswer::Answer {
                status: http::StatusCode::INTERNAL_SERVER_ERROR,
                ..
            }
        )));
        let bad = FlakySettings {
            error: 0.7,
            invalid_json: 0.5,
            ..FlakySettings::default()
        };
        assert!(bad.validate().unwrap_err().contains("exceed 1"));
        assert!(FlakySettings::default().validate().is_ok());
    }
}
