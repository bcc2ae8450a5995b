//! One module per subcommand.

pub mod env;
pub mod faults;
pub mod logs;
pub mod mock;
pub mod queue;
pub mod reload_data;
pub mod run;
pub mod status;
pub mod stop;

/// Exit code when some data files failed to load (everything else loaded).
pub const EXIT_DATA_FAILED: u8 = 3;
/// Exit code of `status` when the stack is not running or not healthy.
pub const EXIT_NOT_RUNNING: u8 = 4;
