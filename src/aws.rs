//! AWS SDK clients for one endpoint: path-style S3, checksums only when required, static test
//! credentials for local endpoints.
//!
//! The HTTPS client is the SDK's default one (rustls, proxies from the environment) with *ring*
//! as its cryptography instead of AWS-LC: AWS-LC is a C library that took minutes of every clean
//! build, for TLS that only an endpoint off this machine uses (a real AWS region, a shared stack).

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// Dummy credentials local endpoints accept; also what `inframock env` exports.
pub const TEST_ACCESS_KEY: &str = "test";
/// See [`TEST_ACCESS_KEY`].
pub const TEST_SECRET_KEY: &str = "test";

/// Where AWS is, for every command: the URL, the region, how requests are signed and how long
/// one operation may take. [`Endpoint::resolve`] is the one answer to "which endpoint".
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub url: String,
    pub region: String,
    /// Sign with the dummy `test`/`test` keys (local engines, and loopback endpoints when no
    /// credentials are configured); otherwise the default credential chain.
    pub test_credentials: bool,
    pub operation_timeout: Duration,
}

/// Variables and files that configure AWS credentials for the default chain.
const CREDENTIAL_VARIABLES: [&str; 4] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
];

impl Endpoint {
    /// The AWS endpoint of this project: `--endpoint-url` with `--runtime external`, else the
    /// recorded stack's aws service, else an error saying how to start one.
    pub fn resolve(
        settings: &crate::config::Settings,
        recorded: Option<&crate::stack::state::StackState>,
    ) -> anyhow::Result<Endpoint> {
        use crate::cli::RuntimeKind;
        use crate::stack::ServiceName;
        let explicit = settings
            .endpoint_url
            .as_ref()
            .filter(|_| settings.runtime == RuntimeKind::External || recorded.is_none());
        let (url, region, external) = match (explicit, recorded) {
            (Some(url), _) => (
                url.clone(),
                settings.region.clone(),
                settings.runtime == RuntimeKind::External,
            ),
            (None, Some(stack)) => {
                let aws = stack.service(&ServiceName::Aws).ok_or_else(|| {
                    anyhow::anyhow!(
                        "the recorded stack has no aws service; run `inframock run` again"
                    )
                })?;
                (
                    aws.url.clone(),
                    stack.region.clone(),
                    stack.runtime == RuntimeKind::External,
                )
            }
            (None, None) => anyhow::bail!(
                "no stack is running for this project ({}); start it with `inframock run --detach` (or use --runtime external --endpoint-url URL)",
                settings.project_dir.display()
            ),
        };
        Ok(Endpoint::new(
            url,
            region,
            external,
            settings.operation_timeout,
        ))
    }

    /// An endpoint at `url`; `external` ones sign with the default chain unless they are on
    /// loopback and no credentials are configured.
    pub fn new(
        url: String,
        region: String,
        external: bool,
        operation_timeout: Duration,
    ) -> Endpoint {
        let test_credentials = !external || (is_loopback_url(&url) && !credentials_configured());
        Endpoint {
            url,
            region,
            test_credentials,
            operation_timeout,
        }
    }

    /// SDK clients for this endpoint.
    pub async fn clients(&self) -> AwsClients {
        AwsClients::new(self).await
    }

    /// Fails at once, naming what to set, when this endpoint needs credentials and none can be
    /// found (instead of every call failing after the instance-metadata lookups time out).
    pub async fn check_credentials(&self) -> anyhow::Result<()> {
        use aws_credential_types::provider::ProvideCredentials;
        if self.test_credentials {
            return Ok(());
        }
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .http_client(https_client(&self.url))
            .load()
            .await;
        let Some(provider) = config.credentials_provider() else {
            anyhow::bail!("no AWS credentials provider for {}", self.url);
        };
        let found =
            tokio::time::timeout(Duration::from_secs(5), provider.provide_credentials()).await;
        match found {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => anyhow::bail!(
                "no AWS credentials for the endpoint {} ({e}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)",
                self.url
            ),
            Err(_) => anyhow::bail!(
                "no AWS credentials for the endpoint {} (none found within 5 s); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)",
                self.url
            ),
        }
    }
}

/// How rustls words a refused certificate, in the chain of an error's causes.
pub const UNTRUSTED_CERTIFICATE: &str = "invalid peer certificate";

/// What to do when an endpoint's TLS certificate is refused. The client trusts the system's
/// authorities, or, when `SSL_CERT_FILE` or `SSL_CERT_DIR` is set, those instead.
const UNTRUSTED_CERTIFICATE_HINT: &str = " (the endpoint's TLS certificate is not signed by an authority this machine trusts: add that authority to the system's certificates, or set SSL_CERT_FILE to a PEM file of the authorities to trust, used instead of the system's)";

/// The SDK's default HTTP(S) client for `endpoint`, built the way the SDK builds it (its settings
/// and timers per client), with rustls over *ring*. An endpoint off this machine is reached
/// through the proxy `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` name, as the SDK does; a loopback one
/// never is (a corporate proxy cannot reach this machine's 127.0.0.1).
fn https_client(endpoint: &str) -> SharedHttpClient {
    let loopback = is_loopback_url(endpoint);
    aws_smithy_http_client::Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = aws_smithy_http_client::Connector::builder()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(if loopback {
            ProxyConfig::disabled()
        } else {
            ProxyConfig::from_env()
        }));
        connector.build()
    })
}

/// Whether a URL's host is this machine (localhost, 127.0.0.0/8, ::1).
pub fn is_loopback_url(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    let Some(host) = uri.host() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether AWS credentials are configured through the environment or the shared files.
fn credentials_configured() -> bool {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if CREDENTIAL_VARIABLES.iter().any(|name| set(name)) {
        return true;
    }
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let file = |variable: &str, default: &str| {
        std::env::var_os(variable)
            .map(std::path::PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(default)))
            .is_some_and(|path| path.is_file())
    };
    file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials")
        || file("AWS_CONFIG_FILE", ".aws/config")
}

/// One client per service, all pointed at the same endpoint.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// DynamoDB Streams (snapshots read a table's stream to know whether it changed).
    pub dynamodb_streams: aws_sdk_dynamodbstreams::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    /// The endpoint's URL, named in errors.
    pub url: String,
}

impl AwsClients {
    /// The region the clients sign for (us-east-1 when none is set).
    pub fn region(&self) -> &str {
        self.s3
            .config()
            .region()
            .map_or("us-east-1", |r| r.as_ref())
    }

    /// Clients for `endpoint`: standard retries, every operation bounded by its timeout.
    pub async fn new(endpoint: &Endpoint) -> AwsClients {
        let retry = RetryConfig::standard().with_max_attempts(5);
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_timeout(endpoint.operation_timeout)
            .build();
        AwsClients::build(
            &endpoint.url,
            &endpoint.region,
            endpoint.test_credentials,
            retry,
            timeouts,
        )
        .await
    }

    /// Clients for readiness probes: one attempt, short timeouts, so a probe loop decides when to retry.
    pub async fn for_probe(endpoint: &Endpoint) -> AwsClients {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_millis(500))
            .operation_timeout(Duration::from_secs(3))
            .build();
        AwsClients::build(
            &endpoint.url,
            &endpoint.region,
            endpoint.test_credentials,
            RetryConfig::disabled(),
            timeouts,
        )
        .await
    }

    async fn build(
        endpoint: &str,
        region: &str,
        test_credentials: bool,
        retry: RetryConfig,
        timeouts: TimeoutConfig,
    ) -> AwsClients {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .http_client(https_client(endpoint))
            .endpoint_url(endpoint)
            .retry_config(retry)
            .timeout_config(timeouts)
            // Large streamed uploads to emulators report spurious stalls; uploads have their own retry.
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
        if test_credentials {
            loader = loader.credentials_provider(Credentials::new(
                TEST_ACCESS_KEY,
                TEST_SECRET_KEY,
                None,
                None,
                "inframock",
            ));
        }
        let shared = loader.load().await;
        let s3_config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            )
            .build();
        AwsClients {
            url: endpoint.to_string(),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            dynamodb: aws_sdk_dynamodb::Client::new(&shared),
            dynamodb_streams: aws_sdk_dynamodbstreams::Client::new(&shared),
            sqs: aws_sdk_sqs::Client::new(&shared),
            sns: aws_sdk_sns::Client::new(&shared),
        }
    }
}

/// The error code of an SDK error, when the service sent one.
pub fn error_code<E, R>(error: &aws_sdk_s3::error::SdkError<E, R>) -> Option<String>
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    match error {
        aws_sdk_s3::error::SdkError::ServiceError(service) => {
            service.err().code().map(str::to_string)
        }
        _ => None,
    }
}

/// The innermost cause of an error the SDK could not map to a code (e.g. an undecodable answer).
fn unhandled_detail(error: &(dyn std::error::Error + 'static)) -> String {
    let mut detail = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        detail = cause.to_string();
        source = cause.source();
    }
    detail
}

/// One line describing an SDK error: the service's code and message, or the transport failure.
pub fn describe_error<E, R>(error: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_s3::error::SdkError;
    match error {
        SdkError::ServiceError(service) => {
            let err = service.err();
            match (err.code(), err.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_string(),
                _ => format!(
                    "unexpected answer from the endpoint: {}",
                    unhandled_detail(err)
                ),
            }
        }
        SdkError::DispatchFailure(failure) => {
            let mut text = String::from("cannot reach the endpoint");
            if let Some(connector) = failure.as_connector_error() {
                text.push_str(&format!(": {connector}"));
                let mut source = std::error::Error::source(connector);
                while let Some(cause) = source {
                    text.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
            }
            if text.contains(UNTRUSTED_CERTIFICATE) {
                text.push_str(UNTRUSTED_CERTIFICATE_HINT);
            }
            text
        }
        SdkError::TimeoutError(_) => {
            "the endpoint did not answer within the operation timeout (--operation-timeout)"
                .to_string()
        }
        other => format!("{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_recognised() {
        assert!(is_loopback_url("http://localhost:4566"));
        assert!(is_loopback_url("http://127.0.0.1:4566"));
        assert!(is_loopback_url("http://127.3.2.1"));
        assert!(is_loopback_url("http://[::1]:4566"));
        assert!(!is_loopback_url("https://s3.eu-west-1.amazonaws.com"));
        assert!(!is_loopback_url("http://10.0.0.1:4566"));
        assert!(!is_loopback_url("not a url"));
    }

    #[test]
    fn local_engines_always_sign_with_test_keys() {
        let local = Endpoint::new(
            "http://localhost:4566".into(),
            "eu-west-1".into(),
            false,
            Duration::from_secs(30),
        );
        assert!(local.test_credentials);
        let remote = Endpoint::new(
            "https://dynamodb.eu-west-1.amazonaws.com".into(),
            "eu-west-1".into(),
            true,
            Duration::from_secs(30),
        );
        assert!(!remote.test_credentials, "real AWS uses the default chain");
    }
}
