//! Declared AWS resources and how to ensure them: create what is missing, configure what the
//! declaration asks for, never drop anything.

use anyhow::{anyhow, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType as DynamoKeyType, Projection as DynamoProjection, ProjectionType, ScalarAttributeType,
    StreamSpecification, StreamViewType,
};
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CorsConfiguration, CorsRule,
    CreateBucketConfiguration, VersioningConfiguration,
};
use aws_sdk_sqs::types::QueueAttributeName;
use futures::future::join_all;
use serde::Serialize;

use crate::aws::{describe_error, error_code, AwsClients};
use crate::stack_file::{
    BucketDecl, KeyType, NameVars, Projection, QueueDecl, StackFile, TableDecl, TopicDecl,
};

/// What ensuring one resource did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ensured {
    pub kind: &'static str,
    pub name: String,
    /// True when this call created it; false when it already existed.
    pub created: bool,
}

/// Ensures every resource of the stack file; returns what was done, or every failure at once.
pub async fn ensure_all(
    clients: &AwsClients,
    stack: &StackFile,
    vars: &NameVars<'_>,
) -> Result<Vec<Ensured>> {
    let tracked = stack.stack.persist;
    let tables = join_all(
        stack
            .tables
            .iter()
            .map(|t| ensure_table(clients, t, vars, tracked)),
    );
    let buckets = join_all(
        stack
            .buckets
            .iter()
            .map(|b| ensure_bucket(clients, b, vars)),
    );
    let queues = join_all(stack.queues.iter().map(|q| ensure_queue(clients, q, vars)));
    let (tables, buckets, queues) = tokio::join!(tables, buckets, queues);
    // Topics last: their subscriptions may point at the queues.
    let topics = join_all(stack.topics.iter().map(|t| ensure_topic(clients, t, vars))).await;
    let mut done = Vec::new();
    let mut failures = Vec::new();
    for outcome in tables
        .into_iter()
        .chain(buckets)
        .chain(queues)
        .chain(topics)
    {
        match outcome {
            Ok(ensured) => done.push(ensured),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    if failures.is_empty() {
        Ok(done)
    } else {
        Err(anyhow!(
            "could not create {} resource(s):\n  {}",
            failures.len(),
            failures.join("\n  ")
        ))
    }
}

/// "4 tables, 6 buckets, 1 queue, 1 topic (12 created, 0 already there)"
pub fn summary(ensured: &[Ensured]) -> String {
    let count = |kind: &str| ensured.iter().filter(|e| e.kind == kind).count();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let created = ensured.iter().filter(|e| e.created).count();
    format!(
        "{}, {}, {}, {} ({} created, {} already there)",
        plural(count("table"), "table"),
        plural(count("bucket"), "bucket"),
        plural(count("queue"), "queue"),
        plural(count("topic"), "topic"),
        created,
        ensured.len() - created
    )
}

/// The DynamoDB definition of a declared table (pure: unit-tested).
pub fn table_definition(
    decl: &TableDecl,
) -> Result<(
    Vec<KeySchemaElement>,
    Vec<AttributeDefinition>,
    Vec<GlobalSecondaryIndex>,
)> {
    let key_schema = key_schema_elements(&decl.hash_key, decl.range_key.as_deref())?;
    let mut key_names: Vec<&str> = vec![decl.hash_key.as_str()];
    key_names.extend(decl.range_key.as_deref());
    let mut indexes = Vec::new();
    for index in &decl.global_secondary_indexes {
        key_names.push(&index.hash_key);
        key_names.extend(index.range_key.as_deref());
        let projection = match index.projection {
            Projection::All => DynamoProjection::builder().projection_type(ProjectionType::All),
            Projection::KeysOnly => {
                DynamoProjection::builder().projection_type(ProjectionType::KeysOnly)
            }
            Projection::Include => DynamoProjection::builder()
                .projection_type(ProjectionType::Include)
                .set_non_key_attributes(Some(index.non_key_attributes.clone())),
        };
        indexes.push(
            GlobalSecondaryIndex::builder()
                .index_name(&index.name)
                .set_key_schema(Some(key_schema_elements(
                    &index.hash_key,
                    index.range_key.as_deref(),
                )?))
                .projection(projection.build())
                .build()?,
        );
    }
    key_names.sort_unstable();
    key_names.dedup();
    let attributes = key_names
        .into_iter()
        .map(|name| {
            let kind = match decl.attributes.get(name).copied().unwrap_or(KeyType::S) {
                KeyType::S => ScalarAttributeType::S,
                KeyType::N => ScalarAttributeType::N,
                KeyType::B => ScalarAttributeType::B,
            };
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(kind)
                .build()
                .map_err(anyhow::Error::from)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((key_schema, attributes, indexes))
}

fn key_schema_elements(hash: &str, range: Option<&str>) -> Result<Vec<KeySchemaElement>> {
    let mut elements = vec![KeySchemaElement::builder()
        .attribute_name(hash)
        .key_type(DynamoKeyType::Hash)
        .build()?];
    if let Some(range) = range {
        elements.push(
            KeySchemaElement::builder()
                .attribute_name(range)
                .key_type(DynamoKeyType::Range)
                .build()?,
        );
    }
    Ok(elements)
}

/// Creates a table from its declaration unless it exists (name expanded with `vars`).
/// `tracked` (`[stack] persist`): the table gets a `KEYS_ONLY` stream, so a snapshot save can
/// prove it unchanged without reading it (`snapshot::changes`).
pub async fn ensure_table(
    clients: &AwsClients,
    decl: &TableDecl,
    vars: &NameVars<'_>,
    tracked: bool,
) -> Result<Ensured> {
    let name = vars.expand(&decl.name);
    let ensured = |created| Ensured {
        kind: "table",
        name: name.clone(),
        created,
    };
    let (keys, attributes, indexes) = table_definition(decl)?;
    let request = clients
        .dynamodb
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(keys))
        .set_attribute_definitions(Some(attributes))
        .set_global_secondary_indexes((!indexes.is_empty()).then_some(indexes))
        .set_stream_specification(
            tracked
                .then(|| {
                    StreamSpecification::builder()
                        .stream_enabled(true)
                        .stream_view_type(StreamViewType::KeysOnly)
                        .build()
                })
                .transpose()?,
        );
    match request.send().await {
        Ok(_) => Ok(ensured(true)),
        Err(e) if error_code(&e).as_deref() == Some("ResourceInUseException") => {
            if tracked {
                add_stream(clients, &name).await;
            }
            Ok(ensured(false))
        }
        Err(e) => Err(anyhow!("table {name}: {}", describe_error(&e))),
    }
}

/// Gives an existing table without a stream a `KEYS_ONLY` one (`persist` turned on after the table
/// was created). Best effort: a table whose stream cannot be added is read whole by each save.
async fn add_stream(clients: &AwsClients, name: &str) {
    let Ok(described) = clients
        .dynamodb
        .describe_table()
        .table_name(name)
        .send()
        .await
    else {
        return;
    };
    let has_stream = described
        .table()
        .and_then(|t| t.stream_specification())
        .is_some_and(|s| s.stream_enabled());
    if has_stream {
        return;
    }
    let Ok(stream) = StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::KeysOnly)
        .build()
    else {
        return;
    };
    let _ = clients
        .dynamodb
        .update_table()
        .table_name(name)
        .stream_specification(stream)
        .send()
        .await;
}

/// A `CreateBucket` of `name` in `region`: outside us-east-1 it names the region as its location
/// constraint (which us-east-1 refuses).
pub fn create_bucket_request(
    clients: &AwsClients,
    name: &str,
    region: &str,
) -> aws_sdk_s3::operation::create_bucket::builders::CreateBucketFluentBuilder {
    let request = clients.s3.create_bucket().bucket(name);
    if region == "us-east-1" {
        return request;
    }
    request.create_bucket_configuration(
        CreateBucketConfiguration::builder()
            .location_constraint(BucketLocationConstraint::from(region))
            .build(),
    )
}

/// Creates a bucket (versioning and CORS as declared) unless it exists.
pub async fn ensure_bucket(
    clients: &AwsClients,
    decl: &BucketDecl,
    vars: &NameVars<'_>,
) -> Result<Ensured> {
    let name = vars.expand(&decl.name);
    let created = match create_bucket_request(clients, &name, vars.region)
        .send()
        .await
    {
        Ok(_) => true,
        Err(e) if error_code(&e).as_deref() == Some("BucketAlreadyOwnedByYou") => false,
        Err(e) => return Err(anyhow!("bucket {name}: {}", describe_error(&e))),
    };
    if decl.versioning {
        clients
            .s3
            .put_bucket_versioning()
            .bucket(&name)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| anyhow!("bucket {name}: enabling versioning: {}", describe_error(&e)))?;
    }
    if !decl.cors.is_empty() {
        let rules = decl
            .cors
            .iter()
            .map(|rule| {
                CorsRule::builder()
                    .set_id(rule.id.clone())
                    .set_allowed_headers(Some(rule.allowed_headers.clone()))
                    .set_allowed_methods(Some(rule.allowed_methods.clone()))
                    .set_allowed_origins(Some(rule.allowed_origins.clone()))
                    .set_expose_headers(Some(rule.expose_headers.clone()))
                    .set_max_age_seconds(rule.max_age_seconds)
                    .build()
                    .map_err(anyhow::Error::from)
            })
            .collect::<Result<Vec<_>>>()?;
        clients
            .s3
            .put_bucket_cors()
            .bucket(&name)
            .cors_configuration(
                CorsConfiguration::builder()
                    .set_cors_rules(Some(rules))
                    .build()?,
            )
            .send()
            .await
            .map_err(|e| anyhow!("bucket {name}: setting CORS: {}", describe_error(&e)))?;
    }
    Ok(Ensured {
        kind: "bucket",
        name,
        created,
    })
}

/// The SQS attributes of a declared queue (pure: unit-tested).
pub fn queue_attributes(decl: &QueueDecl) -> Vec<(QueueAttributeName, String)> {
    let mut attributes = Vec::new();
    if decl.fifo {
        attributes.push((QueueAttributeName::FifoQueue, "true".to_string()));
    }
    if decl.content_based_deduplication {
        attributes.push((
            QueueAttributeName::ContentBasedDeduplication,
            "true".to_string(),
        ));
    }
    for (key, value) in &decl.attributes {
        attributes.push((QueueAttributeName::from(key.as_str()), value.clone()));
    }
    attributes
}

async fn ensure_queue(
    clients: &AwsClients,
    decl: &QueueDecl,
    vars: &NameVars<'_>,
) -> Result<Ensured> {
    let name = vars.expand(&decl.name);
    let existed = clients
        .sqs
        .get_queue_url()
        .queue_name(&name)
        .send()
        .await
        .is_ok();
    let mut request = clients.sqs.create_queue().queue_name(&name);
    for (key, value) in queue_attributes(decl) {
        request = request.attributes(key, value);
    }
    match request.send().await {
        Ok(_) => Ok(Ensured {
            kind: "queue",
            name,
            created: !existed,
        }),
        Err(e) => {
            let reason = describe_error(&e);
            if existed {
                // The queue exists with other attributes: keep it (never drop), say so.
                Err(anyhow!(
                    "queue {name} exists with attributes that differ from inframock.toml ({reason}); it was left as it is (never dropped): `inframock resources` shows the difference, `inframock reset` recreates it"
                ))
            } else {
                Err(anyhow!("queue {name}: {reason}"))
            }
        }
    }
}

async fn ensure_topic(
    clients: &AwsClients,
    decl: &TopicDecl,
    vars: &NameVars<'_>,
) -> Result<Ensured> {
    let name = vars.expand(&decl.name);
    let existing = topic_arn(clients, &name).await;
    let arn = clients
        .sns
        .create_topic()
        .name(&name)
        .send()
        .await
        .map_err(|e| anyhow!("topic {name}: {}", describe_error(&e)))?
        .topic_arn
        .ok_or_else(|| anyhow!("topic {name}: the endpoint returned no ARN"))?;
    for subscription in &decl.subscriptions {
        let endpoint = match (&subscription.queue, &subscription.endpoint) {
            (Some(queue), _) => queue_arn(clients, &vars.expand(queue)).await?,
            (None, Some(endpoint)) => vars.expand(endpoint),
            (None, None) => continue,
        };
        let mut request = clients
            .sns
            .subscribe()
            .topic_arn(&arn)
            .protocol(&subscription.protocol)
            .endpoint(&endpoint)
            .return_subscription_arn(true);
        if let Some(policy) = &subscription.filter_policy {
            request = request.attributes("FilterPolicy", policy);
        }
        if subscription.raw_message_delivery {
            request = request.attributes("RawMessageDelivery", "true");
        }
        request.send().await.map_err(|e| {
            anyhow!(
                "topic {name}: subscribing {endpoint}: {}",
                describe_error(&e)
            )
        })?;
    }
    Ok(Ensured {
        kind: "topic",
        name,
        created: existing.is_none(),
    })
}

/// The ARN of a topic by name, if it exists.
pub async fn topic_arn(clients: &AwsClients, name: &str) -> Option<String> {
    let suffix = format!(":{name}");
    let mut pages = clients.sns.list_topics().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.ok()?;
        for topic in page.topics.unwrap_or_default() {
            if let Some(arn) = topic.topic_arn {
                if arn.ends_with(&suffix) {
                    return Some(arn);
                }
            }
        }
    }
    None
}

/// The ARN of a queue by name.
pub async fn queue_arn(clients: &AwsClients, name: &str) -> Result<String> {
    let url = clients
        .sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| anyhow!("queue {name}: {}", describe_error(&e)))?
        .queue_url
        .ok_or_else(|| anyhow!("queue {name}: no URL returned"))?;
    queue_arn_of_url(clients, &url).await
}

/// The ARN of a queue from its URL.
pub async fn queue_arn_of_url(clients: &AwsClients, url: &str) -> Result<String> {
    let attributes = clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| anyhow!("queue {url}: {}", describe_error(&e)))?;
    attributes
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| anyhow!("queue {url}: the endpoint returned no ARN"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_table_has_keys_index_and_attribute_types() {
        let stack = StackFile::built_in();
        let samples = &stack.tables[1];
        let (keys, attributes, indexes) = table_definition(samples).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].attribute_name(), "experimentId");
        let names: Vec<_> = attributes.iter().map(|a| a.attribute_name()).collect();
        assert_eq!(names, ["experimentId", "projectUuid"]);
        assert_eq!(indexes.len(), 1);
        let gsi = &indexes[0];
        assert_eq!(gsi.index_name(), "gsiByProjectAndExperimentID");
        assert_eq!(gsi.key_schema()[0].attribute_name(), "projectUuid");
        assert_eq!(gsi.key_schema()[1].key_type(), &DynamoKeyType::Range);
        let projection = gsi.projection().unwrap();
        assert_eq!(projection.projection_type(), Some(&ProjectionType::Include));
        assert_eq!(projection.non_key_attributes(), ["samples"]);
    }

    #[test]
    fn range_key_and_numeric_attribute() {
        let decl = TableDecl {
            name: "t".into(),
            hash_key: "id".into(),
            range_key: Some("n".into()),
            attributes: [("n".to_string(), KeyType::N)].into_iter().collect(),
            global_secondary_indexes: vec![],
        };
        let (keys, attributes, indexes) = table_definition(&decl).unwrap();
        assert_eq!(keys[1].attribute_name(), "n");
        assert_eq!(attributes[1].attribute_type(), &ScalarAttributeType::N);
        assert!(indexes.is_empty());
    }

    #[test]
    fn fifo_queue_attributes() {
        let stack = StackFile::built_in();
        let attributes = queue_attributes(&stack.queues[0]);
        assert!(attributes.contains(&(QueueAttributeName::FifoQueue, "true".into())));
        assert!(
            attributes.contains(&(QueueAttributeName::ContentBasedDeduplication, "true".into()))
        );
        assert!(attributes.contains(&(
            QueueAttributeName::DeduplicationScope,
            "messageGroup".into()
        )));
        assert!(attributes.contains(&(
            QueueAttributeName::FifoThroughputLimit,
            "perMessageGroupId".into()
        )));
    }
}
