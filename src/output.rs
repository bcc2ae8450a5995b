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

/// Version of the layout of a command's JSON document.
pub const JSON_SCHEMA: u32 = 1;

/// The running command's name, for its JSON document (`set_command`).
static COMMAND: std::sync::OnceLock<String> = std::sync::OnceLock::new();
/// Warnings said while the command ran, carried by its JSON document.
static WARNINGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Names the running command (`run`, `status`, ...) for its JSON document.
pub fn set_command(name: &str) {
    let _ = COMMAND.set(name.to_string());
}

/// Why a command did not succeed: the closed list of error codes of the JSON document, each with
/// the exit code it comes with (README "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Anything else that stopped the command (exit 1); the message names the file, flag or port.
    Failed,
    /// inframock.toml (or `--config`) cannot be read or is invalid (exit 1).
    StackFile,
    /// The data folder is missing or unreadable, or `--experiment` names none of it (exit 1).
    DataFolder,
    /// A port is taken by another program (exit 1).
    PortInUse,
    /// The stack is up, but some data files failed to load (exit 3).
    DataFailed,
    /// Nothing runs, a service is unhealthy, or the stack was not ready in time (exit 4).
    NotRunning,
}

impl ErrorCode {
    /// The code as the JSON document says it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Failed => "failed",
            ErrorCode::StackFile => "stack_file",
            ErrorCode::DataFolder => "data_folder",
            ErrorCode::PortInUse => "port_in_use",
            ErrorCode::DataFailed => "data_failed",
            ErrorCode::NotRunning => "not_running",
        }
    }

    /// The process exit code that goes with it.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorCode::DataFailed => 3,
            ErrorCode::NotRunning => 4,
            _ => 1,
        }
    }

    /// What to do about it, when that does not depend on the message.
    fn hint(self) -> Option<&'static str> {
        match self {
            ErrorCode::DataFailed => Some("each failed file is in data.files with its error; fix them and run `inframock reload-data`"),
            ErrorCode::NotRunning => Some("start the stack with `inframock run --detach`"),
            ErrorCode::StackFile => Some("fix the file named in the message, then run the command again"),
            _ => None,
        }
    }
}

/// A command's one JSON document: `{"schema", "command", "ok", "data", "warnings", "error"}`;
/// `error` is `{"code", "message", "hint"}` when the command did not succeed.
pub fn json_document(
    data: serde_json::Value,
    error: Option<(ErrorCode, String)>,
) -> serde_json::Value {
    let warnings = WARNINGS.lock().map(|w| w.clone()).unwrap_or_default();
    serde_json::json!({
        "schema": JSON_SCHEMA,
        "command": COMMAND.get().map_or("inframock", String::as_str),
        "ok": error.is_none(),
        "data": data,
        "warnings": warnings,
        "error": error.map(|(code, message)| serde_json::json!({
            "code": code.as_str(),
            "message": message,
            "hint": code.hint(),
        })),
    })
}

/// Prints a command's result as its JSON document (`ok: true`).
pub fn print_json(data: serde_json::Value) {
    outln!("{}", json_document(data, None));
}

/// Prints a command's result that comes with a non-zero exit code (`ok: false`, the error).
pub fn print_json_failure(data: serde_json::Value, code: ErrorCode, message: impl Into<String>) {
    outln!("{}", json_document(data, Some((code, message.into()))));
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

    /// A warning line on stderr, also carried by the command's JSON document.
    pub fn warn(&self, message: impl AsRef<str>) {
        eprintln!("warning: {}", message.as_ref());
        if let Ok(mut warnings) = WARNINGS.lock() {
            warnings.push(message.as_ref().to_string());
        }
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

/// A duration as people say it: `250 ms`, `30 s`, `1.5 s`, `3 min 20 s`, `2 h 5 min`, `3 days 4 h`.
pub fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let pair = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big} {big_unit}")
        } else {
            format!("{big} {big_unit} {small} {small_unit}")
        }
    };
    match seconds {
        0 => format!("{} ms", duration.as_millis()),
        1..=59 if duration.subsec_millis() == 0 => format!("{seconds} s"),
        1..=59 => format!("{:.1} s", duration.as_secs_f64()),
        60..=3599 => pair(seconds / 60, "min", seconds % 60, "s"),
        3600..=86_399 => pair(seconds / 3600, "h", seconds % 3600 / 60, "min"),
        _ => {
            let days = seconds / 86_400;
            let unit = if days == 1 { "day" } else { "days" };
            pair(days, unit, seconds % 86_400 / 3600, "h")
        }
    }
}

/// How long ago something happened, `seconds` before now: `3 min ago`; `just now` within the
/// second (times recorded in whole seconds).
pub fn human_age(seconds: u64) -> String {
    if seconds == 0 {
        return "just now".to_string();
    }
    format!("{} ago", human_duration(Duration::from_secs(seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        let cases = [
            (Duration::from_millis(250), "250 ms"),
            (Duration::from_secs(30), "30 s"),
            (Duration::from_millis(1500), "1.5 s"),
            (Duration::from_secs(200), "3 min 20 s"),
            (Duration::from_secs(180), "3 min"),
            (Duration::from_secs(7500), "2 h 5 min"),
            (Duration::from_secs(86_400), "1 day"),
            (Duration::from_secs(3 * 86_400 + 4 * 3600 + 5), "3 days 4 h"),
        ];
        for (duration, said) in cases {
            assert_eq!(human_duration(duration), said, "{duration:?}");
        }
        assert_eq!(human_age(61), "1 min 1 s ago");
        assert_eq!(human_age(0), "just now");
    }

    #[test]
    fn the_json_document_has_one_shape_and_error_codes_map_to_exit_codes() {
        let ok = json_document(serde_json::json!({"a": 1}), None);
        assert_eq!(ok["schema"], JSON_SCHEMA);
        assert_eq!(ok["ok"], true);
        assert!(ok["error"].is_null() && ok["warnings"].is_array());
        let failed = json_document(
            serde_json::Value::Null,
            Some((ErrorCode::DataFailed, "2 failed".into())),
        );
        assert_eq!(failed["ok"], false);
        assert_eq!(failed["error"]["code"], "data_failed");
        assert_eq!(failed["error"]["message"], "2 failed");
        let codes = [
            (ErrorCode::Failed, 1),
            (ErrorCode::StackFile, 1),
            (ErrorCode::DataFolder, 1),
            (ErrorCode::PortInUse, 1),
            (ErrorCode::DataFailed, 3),
            (ErrorCode::NotRunning, 4),
        ];
        for (code, exit) in codes {
            assert_eq!(code.exit_code(), exit, "{}", code.as_str());
        }
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
