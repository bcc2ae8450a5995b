//! inframock: parse the command line, run one command, map errors to exit codes.

// First, so that its `outln!`/`out!` macros are in scope in every module after it.
#[macro_use]
mod output;

mod aws;
mod bench;
mod cli;
mod commands;
mod config;
mod dashboard;
mod data;
mod faults;
mod harakiri;
mod http_client;
mod inventory;
mod line_reader;
mod mock;
mod python;
mod queues;
mod resources;
mod signals;
mod snapshot;
mod stack;
mod stack_file;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use cli::{Cli, Command};
use config::{Settings, StackFileUse};
use output::Reporter;

fn main() -> ExitCode {
    keep_large_buffers_out_of_the_heap();
    cli::forget_empty_variables();
    // Built after the empty variables are gone (clap reads them when it builds the tree); the same
    // tree parses and says where each value came from.
    let command = Cli::command();
    let matches = command.clone().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let sources = cli::value_sources(&command, &matches);
    output::set_command(matches.subcommand_name().unwrap_or("inframock"));
    let json = cli.global.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, sources)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            let code = error_code(&e);
            if json {
                output::print_json_failure(serde_json::Value::Null, code, format!("{e:#}"));
            }
            ExitCode::from(code.exit_code())
        }
    }
}

async fn run(
    cli: Cli,
    sources: std::collections::BTreeMap<String, String>,
) -> anyhow::Result<ExitCode> {
    let current_dir = std::env::current_dir()?;
    // These need no stack (bench loads a URL, completions print a script, init writes a project):
    // a broken or missing inframock.toml must not stop them.
    match &cli.command {
        Command::Bench(args) if bench::aws_target::AwsUrl::parse(&args.url).is_none() => {
            return commands::bench::execute(args, cli.global.json, None).await
        }
        Command::Completions { shell } => return Ok(commands::completions::execute(*shell)),
        // A new project: here, or in --project-dir (no search upward for an existing one).
        Command::Init(args) => {
            let dir = match &cli.global.project_dir {
                Some(dir) => current_dir.join(dir),
                None => current_dir.clone(),
            };
            return commands::init::execute(&dir, args, cli.global.json);
        }
        _ => {}
    }
    let populate_mock = std::env::var("POPULATE_MOCK").ok();
    let no_populate = matches!(&cli.command, Command::Run(args) if args.no_populate);
    // These work from the recorded state alone: a broken inframock.toml must not stop them.
    let stack_file_use = match &cli.command {
        Command::Stop(_) | Command::Status | Command::Env | Command::Logs(_) => {
            StackFileUse::Tolerated
        }
        _ => StackFileUse::Required,
    };
    let mut settings = Settings::resolve(
        &cli.global,
        populate_mock.as_deref(),
        no_populate,
        &current_dir,
        stack_file_use,
    )?;
    settings.sources = sources;
    let reporter = Reporter::new(settings.json);
    if let Some(why) = &settings.stack_error {
        reporter.warn(format!(
            "{why}\n(working from the recorded state in {}; fix the file before the next `run`)",
            settings.state_dir().display()
        ));
    }
    match &cli.command {
        Command::Run(args) => commands::run::execute(&settings, args, &reporter).await,
        Command::ReloadData(args) => {
            commands::reload_data::execute(&settings, args, &reporter).await
        }
        Command::Stop(args) => commands::stop::execute(&settings, args, &reporter).await,
        Command::Snapshot(args) => commands::snapshot::execute(&settings, args, &reporter).await,
        Command::Reset(args) => commands::reset::execute(&settings, args, &reporter).await,
        Command::Status => commands::status::execute(&settings).await,
        Command::Env => commands::env::execute(&settings),
        Command::Logs(args) => commands::logs::execute(&settings, args).await,
        Command::Mock(args) => commands::mock::execute(&settings, args, &reporter).await,
        Command::Faults(args) => commands::faults::execute(&settings, args, &reporter).await,
        Command::Queue(args) => commands::queue::execute(&settings, args, &reporter).await,
        Command::Bench(args) => {
            commands::bench::execute(args, settings.json, Some(&settings)).await
        }
        Command::Completions { shell } => Ok(commands::completions::execute(*shell)),
        Command::Init(args) => commands::init::execute(&settings.project_dir, args, settings.json),
        Command::Config => Ok(commands::config::execute(&settings)),
        Command::Resources => commands::resources::execute(&settings).await,
        Command::Wait(args) => commands::wait::execute(&settings, args, &reporter).await,
        Command::Dashboard(args) => commands::dashboard::execute(&settings, args).await,
    }
}

/// The error code of a command's failure, from what failed.
fn error_code(error: &anyhow::Error) -> output::ErrorCode {
    use output::ErrorCode;
    if error.downcast_ref::<stack_file::StackFileError>().is_some() {
        ErrorCode::StackFile
    } else if error
        .downcast_ref::<data::discover::DataFolderError>()
        .is_some()
    {
        ErrorCode::DataFolder
    } else if error.downcast_ref::<stack::ports::PortInUse>().is_some() {
        ErrorCode::PortInUse
    } else {
        ErrorCode::Failed
    }
}

/// Upload parts are 8 MiB buffers allocated and freed on many threads. glibc raises its mmap
/// threshold after the first such free, after which every thread's arena keeps freed parts, and
/// memory grows with the number of threads instead of staying at the part budget. A fixed threshold
/// keeps large buffers mmapped, so they go back to the system when freed.
fn keep_large_buffers_out_of_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
