//! The scenario API of the scenario seed: `POST /setscenario` with `[["BODY", STATUS, DELAY_MS], ...]`
//! sets the next responses of `/`; `GET /requests` lists the arrival times of the requests to `/`,
//! in seconds since the scenario was set (as the seed lists them). A step with status 0 is the
//! seed's "no answer": the connection is held for the delay, then closed.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::Value;

/// Request times kept at most (a long benchmark must not grow memory without end).
const MAX_TIMESTAMPS: usize = 1_000_000;

/// One planned response of `/`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub body: String,
    /// `None`: status 0, no answer.
    pub status: Option<http::StatusCode>,
    pub delay_ms: u64,
}

#[derive(Default)]
struct State {
    steps: VecDeque<Step>,
    /// Seconds since the Unix epoch when the scenario was set (0: never set; then times count
    /// from the first request's clock).
    set_at: f64,
    /// Seconds since the scenario was set of each request to `/`.
    requests: Vec<f64>,
}

/// The scenario in force.
#[derive(Default)]
pub struct Scenario {
    state: Mutex<State>,
}

impl Scenario {
    /// Replaces the scenario (set at `now_seconds`, since the Unix epoch) and forgets the
    /// recorded requests.
    pub fn set(&self, steps: Vec<Step>, now_seconds: f64) {
        let mut state = self.lock();
        state.steps = steps.into();
        state.set_at = now_seconds;
        state.requests.clear();
    }

    /// Records a request to `/` (arrived at `now_seconds`) and takes the next step, if any.
    pub fn next(&self, now_seconds: f64) -> Option<Step> {
        let mut state = self.lock();
        if state.set_at == 0.0 {
            state.set_at = now_seconds;
        }
        if state.requests.len() < MAX_TIMESTAMPS {
            let since = (now_seconds - state.set_at).max(0.0);
            state.requests.push(since);
        }
        state.steps.pop_front()
    }

    /// Arrival times of the requests to `/`, in seconds since the scenario was set.
    pub fn requests(&self) -> Vec<f64> {
        self.lock().requests.clone()
    }

    /// Drops the steps and the recorded requests.
    pub fn clear(&self) {
        self.set(Vec::new(), 0.0);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Parses a `/setscenario` body; the error names the offending step.
pub fn parse(body: &[u8]) -> Result<Vec<Step>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the scenario is not valid JSON: {e}"))?;
    let Value::Array(items) = value else {
        return Err(
            "the scenario must be a JSON list of [\"BODY\", STATUS, DELAY_MS] steps".into(),
        );
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_step(item).map_err(|e| format!("step {i}: {e}")))
        .collect()
}

fn parse_step(item: &Value) -> Result<Step, String> {
    let Some([body, status, delay]) = item.as_array().map(Vec::as_slice) else {
        return Err(format!("expected [\"BODY\", STATUS, DELAY_MS], got {item}"));
    };
    let body = match body {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let status = match status.as_u64() {
        Some(0) => None,
        other => Some(
            other
                .and_then(|s| u16::try_from(s).ok())
                .and_then(|s| http::StatusCode::from_u16(s).ok())
                .ok_or_else(|| {
                    format!("STATUS {status} is not an HTTP status (or 0 for no answer)")
                })?,
        ),
    };
    let delay_ms = match delay.as_u64() {
        Some(ms) => ms,
        None => match delay.as_f64() {
            Some(ms) if ms >= 0.0 => ms.round() as u64,
            Some(_) => return Err(format!("DELAY_MS {delay} must not be negative")),
            None => return Err(format!("DELAY_MS {delay} is not a number")),
        },
    };
    Ok(Step {
        body,
        status,
        delay_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seed_format_and_serves_in_order() {
        let steps = parse(br#"[["{\"time\":50}", 200, 50], ["oops", 500, 0]]"#).unwrap();
        assert_eq!(steps[0].body, r#"{"time":50}"#);
        assert_eq!(
            steps[1].status,
            Some(http::StatusCode::INTERNAL_SERVER_ERROR)
        );
        let scenario = Scenario::default();
        scenario.set(steps, 100.0);
        assert_eq!(scenario.next(100.5).unwrap().delay_ms, 50);
        assert_eq!(scenario.next(101.0).unwrap().body, "oops");
        assert!(scenario.next(103.0).is_none());
        assert_eq!(
            scenario.requests(),
            vec![0.5, 1.0, 3.0],
            "seconds since the scenario was set"
        );
        scenario.set(Vec::new(), 200.0);
        assert!(scenario.requests().is_empty());
        let silent = parse(br#"[["", 0, 20]]"#).unwrap();
        assert_eq!(silent[0].status, None, "status 0: no answer");
    }

    #[test]
    fn rejects_bad_steps_with_their_index() {
        assert!(parse(b"{").unwrap_err().contains("not valid JSON"));
        assert!(parse(b"{}").unwrap_err().contains("JSON list"));
        assert!(parse(br#"[["a", 200, 0], ["b", 200]]"#)
            .unwrap_err()
            .starts_with("step 1"));
        assert!(parse(br#"[["a", 1000, 0]]"#)
            .unwrap_err()
            .contains("not an HTTP status"));
        assert!(parse(br#"[["a", 200, -5]]"#)
            .unwrap_err()
            .contains("negative"));
    }
}
