//! Signed AWS targets for `inframock bench`: `s3://BUCKET/KEY` (GetObject) and
//! `dynamodb://TABLE?ATTRIBUTE=VALUE&...` (GetItem) on the running stack's AWS endpoint.
//!
//! The SDK builds and signs the request (SigV4, the stack's credentials and region); an
//! interceptor takes its method, URL, headers and body just before it would be sent, and the load
//! loops send those bytes. So the engine sees the request an SDK client sends, signed once when
//! the run starts (engines on this machine do not check a signature's age; AWS itself allows 15
//! minutes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_dynamodb::types::{AttributeValue, KeyType, ScalarAttributeType};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use bytes::Bytes;

use crate::aws::{describe_error, AwsClients};

/// A request as the SDK would send it: what [`super::Target::parse`] takes.
#[derive(Debug, Clone, Default)]
pub struct SignedRequest {
    pub method: String,
    pub url: String,
    /// `NAME:VALUE`, as `--header` takes them.
    pub headers: Vec<String>,
    pub body: Bytes,
}

/// What an `s3://` or `dynamodb://` URL asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsUrl {
    /// GetObject of this key.
    S3Object { bucket: String, key: String },
    /// GetItem of the item whose key attributes have these values (typed by the table's schema).
    DynamodbItem {
        table: String,
        key: Vec<(String, String)>,
    },
}

impl AwsUrl {
    /// `Some` for an `s3://` or `dynamodb://` URL (an error when it is incomplete), `None` for
    /// any other URL.
    pub fn parse(url: &str) -> Option<Result<AwsUrl, String>> {
        if let Some(rest) = url.strip_prefix("s3://") {
            return Some(match rest.split_once('/') {
                Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => {
                    Ok(AwsUrl::S3Object {
                        bucket: bucket.to_string(),
                        key: percent_decode(key),
                    })
                }
                _ => Err(format!("{url}: an S3 target is s3://BUCKET/KEY")),
            });
        }
        let rest = url.strip_prefix("dynamodb://")?;
        let (table, query) = rest.split_once('?').unwrap_or((rest, ""));
        let key: Vec<(String, String)> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(name), percent_decode(value))
            })
            .collect();
        Some(if table.is_empty() || key.is_empty() {
            Err(format!(
                "{url}: a DynamoDB target is dynamodb://TABLE?KEY=VALUE (and &SORTKEY=VALUE for a table with a sort key)"
            ))
        } else {
            Ok(AwsUrl::DynamodbItem {
                table: table.to_string(),
                key,
            })
        })
    }

    /// Reads the object or item once (so a wrong name fails before any load, naming what is
    /// missing), then returns the signed request that reads it. `shown` is the URL as the user
    /// gave it, for errors.
    pub async fn signed_request(&self, clients: &AwsClients, shown: &str) -> Result<SignedRequest> {
        let capture = Capture::default();
        // The capture stops the request with an error; any other error says why nothing was taken.
        let stopped = match self {
            AwsUrl::S3Object { bucket, key } => {
                let head = clients
                    .s3
                    .head_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await;
                if let Err(error) = head {
                    let status = error.raw_response().map(|r| r.status().as_u16());
                    bail!(
                        "{shown}: cannot read it at {}: {}",
                        clients.url,
                        match status {
                            Some(404) => format!(
                                "no such object; list the bucket with `aws s3 ls s3://{bucket}/ --recursive --endpoint-url {}`",
                                clients.url
                            ),
                            Some(403) => "the endpoint refused the request's credentials (403); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_string(),
                            _ => describe_error(&error),
                        }
                    );
                }
                clients
                    .s3
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .customize()
                    .interceptor(capture.clone())
                    .send()
                    .await
                    .err()
                    .map(|e| describe_error(&e))
            }
            AwsUrl::DynamodbItem { table, key } => {
                let key = typed_key(clients, table, key, shown).await?;
                let item = clients
                    .dynamodb
                    .get_item()
                    .table_name(table)
                    .set_key(Some(key.clone()))
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow!(
                            "{shown}: GetItem at {}: {}",
                            clients.url,
                            describe_error(&e)
                        )
                    })?;
                if item.item().is_none() {
                    bail!(
                        "{shown}: table {table} has no item with that key; give the key of an item it holds"
                    );
                }
                clients
                    .dynamodb
                    .get_item()
                    .table_name(table)
                    .set_key(Some(key))
                    .customize()
                    .interceptor(capture.clone())
                    .send()
                    .await
                    .err()
                    .map(|e| describe_error(&e))
            }
        };
        capture.taken().with_context(|| {
            format!(
                "{shown}: the SDK stopped before its request was signed ({})",
                stopped.unwrap_or_default()
            )
        })
    }
}

/// The table's key attributes with their values typed by its schema (S, N or B; B as base64).
async fn typed_key(
    clients: &AwsClients,
    table: &str,
    given: &[(String, String)],
    shown: &str,
) -> Result<HashMap<String, AttributeValue>> {
    let described = clients
        .dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "{shown}: DescribeTable at {}: {}",
                clients.url,
                describe_error(&e)
            )
        })?;
    let description = described
        .table()
        .ok_or_else(|| anyhow!("table {table}: DescribeTable gave no description"))?;
    let types: HashMap<&str, &ScalarAttributeType> = description
        .attribute_definitions()
        .iter()
        .map(|d| (d.attribute_name(), d.attribute_type()))
        .collect();
    let schema: Vec<(&str, &KeyType)> = description
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type()))
        .collect();
    let key_names = schema
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ");
    let mut key = HashMap::new();
    for (name, value) in given {
        let Some(kind) = types
            .get(name.as_str())
            .filter(|_| schema.iter().any(|(n, _)| n == name))
        else {
            bail!(
                "{shown}: {name} is not a key attribute of table {table}; its key is {}",
                key_names
            );
        };
        if value.is_empty() {
            bail!("{shown}: {name} has no value; give it as {name}=VALUE");
        }
        let typed = match kind {
            ScalarAttributeType::N => {
                if value.parse::<f64>().is_err() {
                    bail!("{shown}: {name} is a number in table {table}; {value:?} is not one");
                }
                AttributeValue::N(value.clone())
            }
            ScalarAttributeType::B => {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(value)
                    .with_context(|| {
                        format!(
                            "{shown}: {name} is binary in table {table}; give its value in base64"
                        )
                    })?;
                AttributeValue::B(aws_smithy_types::Blob::new(bytes))
            }
            _ => AttributeValue::S(value.clone()),
        };
        key.insert(name.clone(), typed);
    }
    let missing: Vec<&str> = schema
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !key.contains_key(*n))
        .collect();
    if !missing.is_empty() {
        let whole: Vec<String> = schema.iter().map(|(n, _)| format!("{n}=VALUE")).collect();
        bail!(
            "{shown}: the key of table {table} needs {} too (dynamodb://{table}?{})",
            missing.join(", "),
            whole.join("&")
        );
    }
    Ok(key)
}

/// `%XX` sequences decoded (an invalid one is left as it is; `+` stays `+`, as in an S3 key).
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// Takes the signed request just before it would be sent, and stops it there.
#[derive(Debug, Clone, Default)]
struct Capture {
    taken: Arc<Mutex<Option<SignedRequest>>>,
}

/// The error that stops the captured request (never shown: the capture is what counts).
const CAPTURED: &str = "captured for inframock bench";

impl Capture {
    fn taken(&self) -> Result<SignedRequest> {
        self.taken
            .lock()
            .map_err(|_| anyhow!("the signed request could not be kept"))?
            .take()
            .ok_or_else(|| anyhow!("the SDK did not build the signed request"))
    }
}

impl Intercept for Capture {
    fn name(&self) -> &'static str {
        "inframock-bench-capture"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let Some(body) = request.body().bytes() else {
            return Err("the request's body is a stream; it cannot be sent again".into());
        };
        let captured = SignedRequest {
            method: request.method().to_string(),
            url: request.uri().to_string(),
            headers: request
                .headers()
                .iter()
                .map(|(name, value)| format!("{name}:{value}"))
                .collect(),
            body: Bytes::copy_from_slice(body),
        };
        if let Ok(mut taken) = self.taken.lock() {
            *taken = Some(captured);
        }
        Err(CAPTURED.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_and_dynamodb_urls_name_their_object_or_item() {
        assert_eq!(
            AwsUrl::parse("s3://bucket/a/b%20c.rds").unwrap().unwrap(),
            AwsUrl::S3Object {
                bucket: "bucket".into(),
                key: "a/b c.rds".into()
            }
        );
        assert_eq!(
            AwsUrl::parse("dynamodb://things?id=a%26b&n=2")
                .unwrap()
                .unwrap(),
            AwsUrl::DynamodbItem {
                table: "things".into(),
                key: vec![("id".into(), "a&b".into()), ("n".into(), "2".into())]
            }
        );
        assert!(AwsUrl::parse("http://127.0.0.1/").is_none());
        assert!(AwsUrl::parse("s3://bucket").unwrap().is_err());
        assert!(AwsUrl::parse("s3:///key").unwrap().is_err());
        let no_key = AwsUrl::parse("dynamodb://things").unwrap().unwrap_err();
        assert!(no_key.contains("dynamodb://TABLE?KEY=VALUE"), "{no_key}");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("a+b%2Bc"), "a+b+c");
    }
}
