//! Bridges (ESB): every message of IN goes through `map(message)` to OUT, and is deleted from IN
//! only once OUT accepted it. When the mapper fails or OUT is missing, the message stays in IN
//! (visible again after `retry_after`) and the error is reported: at least once, nothing lost.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, Result};
use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
use serde_json::json;

use super::mapper::{Mapped, Mapper};
use super::tail::TailSource;
use super::target::Target;
use crate::aws::{describe_error, AwsClients};

/// How long IN hides a message while it is mapped and sent.
const IN_FLIGHT_SECONDS: i32 = 30;

/// One bridge.
pub struct Bridge {
    pub name: String,
    /// IN: a queue, or our queue subscribed to a topic.
    pub source: TailSource,
    /// OUT as named; resolved when first needed and again after it failed.
    pub to: String,
    pub mapper: Mapper,
    /// Seconds until a message that could not be delivered is tried again.
    pub retry_after: i32,
    /// Print events as JSON lines.
    pub json: bool,
}

/// Counts of what a bridge did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub forwarded: u64,
    pub dropped: u64,
    pub failed: u64,
}

impl Bridge {
    /// Moves messages until the future is dropped (or `limit` messages were handled, for tests).
    pub async fn run(&mut self, clients: &AwsClients, limit: Option<u64>) -> Result<Counts> {
        let mut counts = Counts::default();
        let mut out: Option<Target> = None;
        let from_topic = matches!(self.source.target, Target::Topic { .. });
        loop {
            if limit.is_some_and(|l| counts.forwarded + counts.dropped + counts.failed >= l) {
                return Ok(counts);
            }
            let received = clients
                .sqs
                .receive_message()
                .queue_url(&self.source.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .visibility_timeout(IN_FLIGHT_SECONDS)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|e| {
                    anyhow!(
                        "bridge {}: receiving from {}: {}",
                        self.name,
                        self.source.target.label(),
                        describe_error(&e)
                    )
                })?
                .messages
                .unwrap_or_default();
            for message in &received {
                let recorded = super::record::from_sqs(message, "", from_topic);
                let id = recorded.message_id.clone();
                let outcome = match self.mapper.map(&recorded.body).await {
                    Err(error) => Err(("mapper", error)),
                    Ok(Mapped::Drop) => Ok(None),
                    Ok(Mapped::Body(body)) => {
                        if out.is_none() {
                            out = Target::resolve(clients, &self.to).await.ok();
                        }
                        match &out {
                            None => Err((
                                "OUT",
                                format!("no queue or topic named `{}` at the endpoint", self.to),
                            )),
                            Some(target) => {
                                match send(clients, target, &body, message, &id).await {
                                    Ok(()) => Ok(Some(target.label())),
                                    Err(error) => {
                                        out = None;
                                        Err(("OUT", error))
                                    }
                                }
                            }
                        }
                    }
                };
                match outcome {
                    Ok(to) => {
                        self.delete(clients, message).await?;
                        match &to {
                            Some(_) => counts.forwarded += 1,
                            None => counts.dropped += 1,
                        }
                        self.report(
                            &id,
                            if to.is_some() { "forwarded" } else { "dropped" },
                            to.as_deref(),
                            None,
                        );
                    }
                    Err((stage, error)) => {
                        counts.failed += 1;
                        self.retry_later(clients, message).await;
                        self.report(&id, "failed", Some(stage), Some(&error));
                    }
                }
            }
        }
    }

    async fn delete(&self, clients: &AwsClients, message: &Message) -> Result<()> {
        let Some(handle) = message.receipt_handle() else {
            return Ok(());
        };
        clients
            .sqs
            .delete_message()
            .queue_url(&self.source.queue_url)
            .receipt_handle(handle)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                anyhow!(
                    "bridge {}: deleting a delivered message from IN: {}",
                    self.name,
                    describe_error(&e)
                )
            })
    }

    async fn retry_later(&self, clients: &AwsClients, message: &Message) {
        if let Some(handle) = message.receipt_handle() {
            let _ = clients
                .sqs
                .change_message_visibility()
                .queue_url(&self.source.queue_url)
                .receipt_handle(handle)
                .visibility_timeout(self.retry_after)
                .send()
                .await;
        }
    }

    fn report(&self, id: &str, what: &str, detail: Option<&str>, error: Option<&str>) {
        if self.json {
            println!(
                "{}",
                json!({"bridge": self.name, "message_id": id, "event": what, "to": detail.filter(|_| error.is_none()), "stage": detail.filter(|_| error.is_some()), "error": error})
            );
            return;
        }
        match (what, detail, error) {
            ("forwarded", Some(to), _) => println!("bridge {}: message {id} -> {to}", self.name),
            ("dropped", _, _) => println!(
                "bridge {}: message {id} dropped by the mapper (deleted from IN)",
                self.name
            ),
            (_, stage, Some(error)) => eprintln!(
                "bridge {}: message {id} stays in IN ({} failed; tried again in {} s): {error}",
                self.name,
                stage.unwrap_or("delivery"),
                self.retry_after
            ),
            _ => {}
        }
    }
}

/// Sends a mapped body to OUT, carrying the message attributes (and, for FIFO, its group and a
/// deduplication id from IN's message id, so a redelivery after a crash is not sent twice).
async fn send(
    clients: &AwsClients,
    out: &Target,
    body: &str,
    message: &Message,
    id: &str,
) -> Result<(), String> {
    let attributes: HashMap<String, MessageAttributeValue> =
        message.message_attributes().cloned().unwrap_or_default();
    let group = message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId).cloned())
        .unwrap_or_else(|| "inframock-bridge".to_string());
    let dedup: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(128)
        .collect();
    match out {
        Target::Queue { url, fifo, name } => {
            let mut request = clients
                .sqs
                .send_message()
                .queue_url(url)
                .message_body(body)
                .set_message_attributes((!attributes.is_empty()).then_some(attributes));
            if *fifo {
                request = request
                    .message_group_id(group)
                    .message_deduplication_id(dedup);
            }
            request
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("queue {name} did not accept it: {}", describe_error(&e)))
        }
        Target::Topic { arn, fifo, name } => {
            let mut converted = HashMap::new();
            for (key, value) in attributes {
                let built = aws_sdk_sns::types::MessageAttributeValue::builder()
                    .data_type(value.data_type())
                    .set_string_value(value.string_value().map(str::to_string))
                    .set_binary_value(
                        value
                            .binary_value()
                            .map(|b| aws_sdk_sns::primitives::Blob::new(b.as_ref().to_vec())),
                    )
                    .build()
                    .map_err(|e| format!("attribute {key}: {e}"))?;
                converted.insert(key, built);
            }
            let mut request = clients
                .sns
                .publish()
                .topic_arn(arn)
                .message(body)
                .set_message_attributes((!converted.is_empty()).then_some(converted));
            if *fifo {
                request = request
                    .message_group_id(group)
                    .message_deduplication_id(dedup);
            }
            request
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("topic {name} did not accept it: {}", describe_error(&e)))
        }
    }
}

/// Seconds until a failed message is tried again (default).
pub const DEFAULT_RETRY_AFTER: i32 = 5;

/// Time limit of one `map` call (default).
pub const DEFAULT_MAPPER_TIMEOUT: Duration = Duration::from_secs(5);
