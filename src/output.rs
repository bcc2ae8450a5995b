//! How commands talk to people and scripts: spinners on a TTY, plain lines when piped, JSON with
//! `--json`. Progress goes to stderr; results go to stdout.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Progress reporting for one command.
#[derive(Debug, Clone, Copy)]
pub struct Reporter {
    /// Spinners and bars (stderr is a terminal and not `--json`); plain lines otherwise.
    pub interactive: bool,
}

impl Reporter {
    /// A reporter for the current terminal.
    pub fn new(json: bool) -> Reporter {
        Reporter {
            interactive: !json && std::io::stderr().is_terminal(),
        }
    }

    /// A step that takes a while: a spinner on a TTY, one line otherwise.
    pub fn step(&self, message: impl Into<String>) -> Step {
        let message = message.into();
        if self.interactive {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner:.cyan} {msg} {elapsed:.dim}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(message);
            bar.enable_steady_tick(Duration::from_millis(100));
            Step { bar: Some(bar) }
        } else {
            eprintln!("{message} ...");
            Step { bar: None }
        }
    }

    /// A plain informational line on stderr.
    pub fn info(&self, message: impl AsRef<str>) {
        eprintln!("{}", message.as_ref());
    }

    /// A warning line on stderr.
    pub fn warn(&self, message: impl AsRef<str>) {
        eprintln!("warning: {}", message.as_ref());
    }
}

/// A running step; finish it with `done` or `fail`.
pub struct Step {
    bar: Option<ProgressBar>,
}

impl Step {
    /// Ends the step with a success line.
    pub fn done(self, message: impl AsRef<str>) {
        match self.bar {
            Some(bar) => bar.finish_with_message(format!("✔ {}", message.as_ref())),
            None => eprintln!("{}", message.as_ref()),
        }
    }

    /// Ends the step with a failure line.
    pub fn fail(self, message: impl AsRef<str>) {
        match self.bar {
            Some(bar) => bar.abandon_with_message(format!("✘ {}", message.as_ref())),
            None => eprintln!("failed: {}", message.as_ref()),
        }
    }
}

/// The width of a text column: its longest entry, at least `minimum`.
pub fn column_width<'a>(entries: impl Iterator<Item = &'a str>, minimum: usize) -> usize {
    entries.map(str::len).max().unwrap_or(0).max(minimum)
}

/// Formats a byte count as B/KiB/MiB/GiB.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
