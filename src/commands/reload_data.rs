//! `inframock reload-data`: ensure resources, then load the data folder into the running stack.

use std::process::ExitCode;

use anyhow::Result;

use crate::aws::Endpoint;
use crate::cli::ReloadArgs;
use crate::config::Settings;
use crate::data::session;
use crate::output::Reporter;
use crate::resources::ensure_all;
use crate::stack::lock::{ProjectLock, LOCK_WAIT};
use crate::stack::state;

/// Reloads the data folder into the running stack.
pub async fn execute(
    settings: &Settings,
    args: &ReloadArgs,
    reporter: &Reporter,
) -> Result<ExitCode> {
    let _lock = ProjectLock::acquire_async(&settings.state_dir(), "reload-data", LOCK_WAIT).await?;
    let recorded = state::read(&settings.state_dir())?;
    let endpoint = Endpoint::resolve(settings, recorded.as_ref())?;
    endpoint.check_credentials().await?;
    let clients = endpoint.clients().await;
    let mut created = Default::default();
    if !args.load.dry_run {
        let step = reporter.step("checking declared resources");
        let runtime = recorded
            .as_ref()
            .map_or(crate::cli::RuntimeKind::Local, |r| r.runtime);
        match ensure_all(&clients, &settings.stack, &settings.resource_vars(runtime)).await {
            Ok(ensured) => {
                step.done(crate::resources::summary(&ensured));
                created = crate::stack::lifecycle::created_tables(&ensured);
            }
            Err(e) => {
                step.fail("resources could not be ensured");
                return Err(e.context(format!("at the AWS endpoint {}", clients.url)));
            }
        }
    }
    let report = session::load(settings, &clients, &args.load, created, reporter).await?;
    if settings.json {
        super::print_load_json(report.json.clone(), &report.json);
    }
    Ok(super::data_exit_code(&report))
}
