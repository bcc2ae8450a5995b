//! AWS SDK clients for one endpoint: path-style S3, checksums only when required, static test
//! credentials for local endpoints.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;

/// Dummy credentials local endpoints accept; also what `inframock env` exports.
pub const TEST_ACCESS_KEY: &str = "test";
/// See [`TEST_ACCESS_KEY`].
pub const TEST_SECRET_KEY: &str = "test";

/// One client per service, all pointed at the same endpoint.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
}

impl AwsClients {
    /// Clients for `endpoint` in `region`. With `test_credentials` they sign with dummy keys (local
    /// endpoints); otherwise they use the default credential chain (an external endpoint).
    pub async fn new(endpoint: &str, region: &str, test_credentials: bool) -> AwsClients {
        let retry = RetryConfig::standard().with_max_attempts(5);
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .build();
        AwsClients::build(endpoint, region, test_credentials, retry, timeouts).await
    }

    /// Clients for readiness probes: one attempt, short timeouts, so a probe loop decides when to retry.
    pub async fn for_probe(endpoint: &str, region: &str, test_credentials: bool) -> AwsClients {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_millis(500))
            .operation_timeout(Duration::from_secs(3))
            .build();
        AwsClients::build(
            endpoint,
            region,
            test_credentials,
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
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            dynamodb: aws_sdk_dynamodb::Client::new(&shared),
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
            text
        }
        SdkError::TimeoutError(_) => "the endpoint did not answer in time".to_string(),
        other => format!("{other}"),
    }
}
