//! One module per subcommand.

pub mod bench;
pub mod completions;
pub mod config;
pub mod dashboard;
pub mod env;
pub mod faults;
pub mod init;
pub mod logs;
pub mod mock;
pub mod queue;
pub mod reload_data;
pub mod reset;
pub mod resources;
pub mod run;
pub mod snapshot;
pub mod status;
pub mod stop;
pub mod wait;

/// Exit code when some data files failed to load (everything else loaded).
pub const EXIT_DATA_FAILED: u8 = 3;
/// Exit code of `status` when the stack is not running or not healthy.
pub const EXIT_NOT_RUNNING: u8 = 4;

/// Prints the JSON document of a command whose last step was a data load (`data`: the load's
/// report): `ok: false` with `data_failed` (exit code 3) when some files failed.
pub fn print_load_json(document: serde_json::Value, data: &serde_json::Value) {
    match data["total"]["failed"].as_u64().unwrap_or(0) {
        0 => crate::output::print_json(document),
        failed => crate::output::print_json_failure(
            document,
            crate::output::ErrorCode::DataFailed,
            format!("{failed} data file(s) failed to load; everything else loaded"),
        ),
    }
}

/// The exit code of a command whose last step was a data load: 3 when some files failed.
pub fn data_exit_code(report: &crate::data::session::LoadReport) -> std::process::ExitCode {
    if report.failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(EXIT_DATA_FAILED)
    }
}
