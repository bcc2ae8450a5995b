//! How commands talk to people and scripts: spinners on a TTY, plain lines when piped, JSON with
//! `--json`. Progress goes to stderr; results go to stdout.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// `println!` for results: a closed stdout (`inframock status | head -1`) ends the process quietly
/// (exit code 0) instead of a panic.
macro_rules! outln {
    () => {
        $crate::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for results, with `outln!`'s handling of a closed stdout.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

/// Writes to stdout. When the reader went away (EPIPE: `| head`, a closed pager) the process
/// ends at once, quietly, with exit code 0: nothing is left to say to anyone. Any other write
/// error is said on stderr and ends the process with exit code 1.
pub fn write_stdout(text: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(text) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

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

/// How to call this binary in printed hints: `inframock` when that name on PATH is this very
/// binary, else the path of the binary that runs (`make run` runs target/release/inframock; `make
/// install` puts it on PATH). The flag says whether it is on PATH.
pub fn invocation() -> (String, bool) {
    let Ok(me) = std::env::current_exe().and_then(|p| p.canonicalize()) else {
        return ("inframock".to_string(), true);
    };
    let on_path = std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("inframock"))
                .find(|candidate| candidate.is_file())
        })
        .and_then(|found| found.canonicalize().ok());
    if on_path.as_ref() == Some(&me) {
        ("inframock".to_string(), true)
    } else {
        (me.display().to_string(), false)
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
