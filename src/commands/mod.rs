//! One module per subcommand.

pub mod bench;
pub mod completions;
pub mod config;
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
pub mod status;
pub mod stop;
pub mod wait;

/// Exit code when some data files failed to load (everything else loaded).
pub const EXIT_DATA_FAILED: u8 = 3;
/// Exit code of `status` when the stack is not running or not healthy.
pub const EXIT_NOT_RUNNING: u8 = 4;

/// The exit code of a command whose last step was a data load: 3 when some files failed.
pub fn data_exit_code(report: &crate::data::session::LoadReport) -> std::process::ExitCode {
    if report.failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(EXIT_DATA_FAILED)
    }
}
