//! `inframock dashboard`: the dashboard and readiness URL in the foreground (`run` starts the same
//! as a helper process when `[services.dashboard] enabled = true`).

use std::process::ExitCode;

use anyhow::Result;

use crate::config::Settings;
use crate::stack::ServiceName;

/// Serves until stopped.
pub async fn execute(settings: &Settings) -> Result<ExitCode> {
    let port = settings.service(&ServiceName::Dashboard).port;
    crate::dashboard::serve(settings.clone(), port).await?;
    Ok(ExitCode::SUCCESS)
}
