//! The `external` runtime: an endpoint that already runs elsewhere (a shared LocalStack, a compose
//! file's containers, real AWS). Nothing is started or stopped; "starting" a service records its URL,
//! and readiness is the same probe as for the others.

use anyhow::Result;
use futures::future::BoxFuture;

use super::{external_url, port_of, Found, Runtime, Started, StopOutcome};
use crate::aws::Endpoint;
use crate::cli::RuntimeKind;
use crate::config::Settings;
use crate::stack::state::ServiceRecord;
use crate::stack::ServiceName;

/// Services at URLs given by the settings.
#[derive(Debug, Clone, Copy)]
pub struct ExternalRuntime;

impl Runtime for ExternalRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::External
    }

    fn services(&self, settings: &Settings) -> Vec<ServiceName> {
        let mut services = vec![ServiceName::Aws];
        if settings.redis_url.is_some() {
            services.push(ServiceName::Redis);
        }
        services
    }

    fn prepare<'a>(
        &'a self,
        settings: &'a Settings,
        service: ServiceName,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let url = external_url(settings, &service)?;
            if service == ServiceName::Aws {
                // Missing credentials fail here at once, not after the whole ready timeout.
                Endpoint::new(
                    url,
                    settings.region.clone(),
                    true,
                    settings.operation_timeout,
                )
                .check_credentials()
                .await?;
            }
            Ok(())
        })
    }

    fn start<'a>(
        &'a self,
        settings: &'a Settings,
        service: ServiceName,
        _port: u16,
    ) -> BoxFuture<'a, Result<Started>> {
        Box::pin(async move {
            let url = external_url(settings, &service)?;
            let record = ServiceRecord {
                name: service,
                runtime: RuntimeKind::External,
                port: port_of(&url).unwrap_or(0),
                url,
                pid: None,
                started: None,
                program: None,
                log: None,
                container: None,
                kind: None,
            };
            Ok(Started::new(
                record,
                std::sync::Arc::new(ExternalRuntime),
                None,
            ))
        })
    }

    fn find<'a>(
        &'a self,
        _settings: &'a Settings,
        _service: ServiceName,
        _recorded: Option<&'a ServiceRecord>,
    ) -> BoxFuture<'a, Result<Option<Found>>> {
        // Checked anew by every `run`: the endpoint may have moved or been reset.
        Box::pin(async { Ok(None) })
    }

    fn is_alive<'a>(&'a self, _record: &'a ServiceRecord) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    fn stop<'a>(&'a self, _record: &'a ServiceRecord) -> BoxFuture<'a, StopOutcome> {
        // Not ours to stop: forgetting the record is all.
        Box::pin(async { StopOutcome::AlreadyGone })
    }

    fn logs<'a>(
        &'a self,
        record: &'a ServiceRecord,
        _lines: usize,
        _follow: bool,
        _printer: super::LogPrinter<'a>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            anyhow::bail!(
                "{} runs elsewhere ({}): its logs are where it runs",
                record.name,
                record.url
            )
        })
    }
}
