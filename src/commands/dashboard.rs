//! `inframock dashboard`: the dashboard and readiness URL in the foreground (`run` starts the same
//! as a helper process when `[services.dashboard] enabled = true`; it inherits
//! `INFRAMOCK_DASHBOARD_TOKEN` from run's environment).

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::DashboardArgs;
use crate::config::Settings;
use crate::dashboard::Access;
use crate::stack::ServiceName;

/// Serves until stopped.
pub async fn execute(settings: &Settings, args: &DashboardArgs) -> Result<ExitCode> {
    let port = settings.service(&ServiceName::Dashboard).port;
    let access = Access::new(
        args.bind.unwrap_or(settings.dashboard_bind),
        args.token.clone().filter(|t| !t.is_empty()),
    )?;
    crate::dashboard::serve(settings.clone(), port, access).await?;
    Ok(ExitCode::SUCCESS)
}
