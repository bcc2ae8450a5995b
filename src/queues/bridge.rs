//! Bridges (ESB): every message of IN goes through `map(message)` to OUT, and is deleted from IN
//! only once OUT accepted it. When the mapper fails or OUT is missing, the message stays in IN
//! (visible again after `retry_after`) and the error is reported: at least once, nothing lost.
//! A message that failed `max_attempts` times (IN's receive count) goes to the `dead_letter`
//! queue with the error, and only then leaves IN; without a dead-letter queue it stays in IN,
//! hidden for 12 hours, and the bridge says so. The error is printed whole (traceback included)
//! on the first attempt, then as "still failing (attempt N of M)".

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, Result};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName,
    SendMessageBatchRequestEntry,
};
use serde_json::json;

use super::mapper::{Mapped, Mapper};
use super::tail::TailSource;
use super::target::Target;
use crate::aws::{describe_error, AwsClients};

/// How long IN hides a message while it is mapped and sent.
const IN_FLIGHT_SECONDS: i32 = 30;
/// How long IN hides a message the bridge gave up on without a dead-letter queue (SQS's maximum).
const GIVEN_UP_SECONDS: i32 = 12 * 60 * 60;
/// Default attempts before a message is dead-lettered.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Longest error text carried by a dead-lettered message's attribute.
const ERROR_ATTRIBUTE_LIMIT: usize = 1024;

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
    /// Attempts (IN's receive count) before a failing message is dead-lettered or given up.
    pub max_attempts: u32,
    /// The queue that takes messages that failed `max_attempts` times.
    pub dead_letter: Option<String>,
    /// Print events as JSON lines.
    pub json: bool,
}

/// Counts of what a bridge did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub forwarded: u64,
    pub dropped: u64,
    pub failed: u64,
    /// Moved to the dead-letter queue after `max_attempts`.
    pub dead_lettered: u64,
}

impl Bridge {
    /// Moves messages until the future is dropped (or `limit` messages were handled, for tests).
    pub async fn run(&mut self, clients: &AwsClients, limit: Option<u64>) -> Result<Counts> {
        let mut counts = Counts::default();
        let mut out: Option<Target> = None;
        let from_topic = matches!(self.source.target, Target::Topic { .. });
        loop {
            let handled = counts.forwarded + counts.dropped + counts.failed + counts.dead_lettered;
            if limit.is_some_and(|l| handled >= l) {
                return Ok(counts);
            }
            let received = super::receive_everything(&clients.sqs, &self.source.queue_url)
                .wait_time_seconds(1)
                .visibility_timeout(IN_FLIGHT_SECONDS)
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
            if received.is_empty() {
                continue;
            }
            // Map the whole batch, send what was mapped in one call, then delete from IN exactly
            // the messages OUT accepted (and those the mapper dropped).
            let mut outcomes: Vec<Outcome> = Vec::with_capacity(received.len());
            let mut bodies: Vec<(usize, String)> = Vec::new();
            // The IN message as the mapper sees it (an SNS envelope unwrapped), and its id.
            let unwrapped: Vec<_> = received
                .iter()
                .map(|m| super::record::from_sqs(m, "", from_topic))
                .collect();
            for (index, message) in unwrapped.iter().enumerate() {
                match self.mapper.map(&message.body).await {
                    Err(error) => outcomes.push(Outcome::Failed("mapper", error)),
                    Ok(Mapped::Drop) => outcomes.push(Outcome::Dropped),
                    Ok(Mapped::Body(body)) => {
                        outcomes.push(Outcome::Failed("OUT", "not sent".into()));
                        bodies.push((index, body));
                    }
                }
            }
            if !bodies.is_empty() {
                if out.is_none() {
                    out = Target::resolve(clients, &self.to).await.ok();
                }
                let results = match &out {
                    None => vec![
                        Err(format!(
                            "no queue or topic named `{}` at the endpoint",
                            self.to
                        ));
                        bodies.len()
                    ],
                    Some(target) => send_batch(clients, target, &bodies, &received).await,
                };
                for ((index, _), result) in bodies.iter().zip(results) {
                    outcomes[*index] = match (result, &out) {
                        (Ok(()), Some(target)) => Outcome::Forwarded(target.label()),
                        (Ok(()), None) => Outcome::Failed("OUT", "no target".into()),
                        (Err(error), _) => Outcome::Failed("OUT", error),
                    };
                }
                if outcomes
                    .iter()
                    .any(|o| matches!(o, Outcome::Failed("OUT", _)))
                {
                    out = None; // resolve OUT again next time (it may have been created meanwhile)
                }
            }
            let done: Vec<&Message> = received
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| !matches!(o, Outcome::Failed(..)))
                .map(|(m, _)| m)
                .collect();
            self.delete_batch(clients, &done).await?;
            for ((message, outcome), id) in received
                .iter()
                .zip(outcomes)
                .zip(unwrapped.iter().map(|u| &u.message_id))
            {
                match outcome {
                    Outcome::Forwarded(to) => {
                        counts.forwarded += 1;
                        self.report(id, "forwarded", Some(&to));
                    }
                    Outcome::Dropped => {
                        counts.dropped += 1;
                        self.report(id, "dropped", None);
                    }
                    Outcome::Failed(stage, error) => {
                        let attempt = receive_count(message);
                        if attempt < self.max_attempts {
                            counts.failed += 1;
                            self.retry_later(clients, message, self.retry_after).await;
                            self.report_failure(id, stage, &error, attempt);
                        } else if self
                            .dead_letter(clients, message, stage, &error, attempt)
                            .await
                        {
                            counts.dead_lettered += 1;
                        } else {
                            counts.failed += 1;
                        }
                    }
                }
            }
        }
    }

    /// Deletes delivered messages from IN (one call for the batch).
    async fn delete_batch(&self, clients: &AwsClients, messages: &[&Message]) -> Result<()> {
        let entries: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        let output = clients
            .sqs
            .delete_message_batch()
            .queue_url(&self.source.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "bridge {}: deleting delivered messages from IN: {}",
                    self.name,
                    describe_error(&e)
                )
            })?;
        let failed = output.failed;
        if !failed.is_empty() {
            // They were delivered; IN will offer them again (at least once): say so.
            eprintln!(
                "bridge {}: {} delivered message(s) could not be deleted from IN and will be delivered again: {}",
                self.name,
                failed.len(),
                failed.iter().filter_map(|f| f.message.clone()).collect::<Vec<_>>().join("; ")
            );
        }
        Ok(())
    }

    async fn retry_later(&self, clients: &AwsClients, message: &Message, seconds: i32) {
        if let Some(handle) = message.receipt_handle() {
            let _ = clients
                .sqs
                .change_message_visibility()
                .queue_url(&self.source.queue_url)
                .receipt_handle(handle)
                .visibility_timeout(seconds)
                .send()
                .await;
        }
    }

    /// A message that failed its last attempt: sent to the dead-letter queue (body and
    /// attributes as received, plus the error, the stage, the bridge and the attempts), then
    /// deleted from IN; without a dead-letter queue, or when it refuses the message, the message
    /// stays in IN. True when it was dead-lettered.
    async fn dead_letter(
        &self,
        clients: &AwsClients,
        message: &Message,
        stage: &str,
        error: &str,
        attempts: u32,
    ) -> bool {
        let id = message.message_id().unwrap_or("?");
        let Some(dead_letter) = &self.dead_letter else {
            self.retry_later(clients, message, GIVEN_UP_SECONDS).await;
            self.event(id, "given_up", json!({"attempts": attempts, "stage": stage}), || {
                format!(
                    "bridge {}: message {id} failed {attempts} times ({stage}); it stays in IN, hidden for 12 h (set dead_letter to move such messages aside): {error}",
                    self.name
                )
            });
            return false;
        };
        match self
            .send_dead_letter(clients, dead_letter, message, stage, error, attempts)
            .await
        {
            Ok(()) => {
                let deleted = self.delete_batch(clients, &[message]).await;
                self.event(
                    id,
                    "dead_lettered",
                    json!({"attempts": attempts, "to": dead_letter, "error": error}),
                    || {
                        format!(
                            "bridge {}: message {id} failed {attempts} times ({stage}); moved to {dead_letter}",
                            self.name
                        )
                    },
                );
                deleted.is_ok()
            }
            Err(why) => {
                self.retry_later(clients, message, self.retry_after).await;
                self.event(id, "failed", json!({"attempts": attempts, "stage": "dead letter", "error": why}), || {
                    format!(
                        "bridge {}: message {id} could not be moved to {dead_letter}, it stays in IN: {why}",
                        self.name
                    )
                });
                false
            }
        }
    }

    async fn send_dead_letter(
        &self,
        clients: &AwsClients,
        queue: &str,
        message: &Message,
        stage: &str,
        error: &str,
        attempts: u32,
    ) -> Result<(), String> {
        let Ok(Target::Queue { url, fifo, .. }) = Target::resolve(clients, queue).await else {
            return Err(format!(
                "dead_letter {queue}: no such queue at the endpoint"
            ));
        };
        let text = |value: &str| {
            aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| e.to_string())
        };
        let mut attributes = message.message_attributes().cloned().unwrap_or_default();
        let error: String = error.chars().take(ERROR_ATTRIBUTE_LIMIT).collect();
        attributes.insert("inframock-error".into(), text(&error)?);
        attributes.insert("inframock-stage".into(), text(stage)?);
        attributes.insert("inframock-bridge".into(), text(&self.name)?);
        attributes.insert("inframock-attempts".into(), text(&attempts.to_string())?);
        let (group, dedup) = fifo_ids(message);
        let mut send = clients
            .sqs
            .send_message()
            .queue_url(&url)
            .message_body(message.body().unwrap_or_default())
            .set_message_attributes(Some(attributes));
        if fifo {
            send = send.message_group_id(group).message_deduplication_id(dedup);
        }
        send.send()
            .await
            .map(|_| ())
            .map_err(|e| format!("queue {queue} refused it: {}", describe_error(&e)))
    }

    /// A failed attempt: the whole error the first time, then a short line.
    fn report_failure(&self, id: &str, stage: &str, error: &str, attempt: u32) {
        let first = attempt <= 1;
        let fields = json!({
            "stage": stage,
            "attempt": attempt,
            "max_attempts": self.max_attempts,
            "error": if first { error } else { "still failing" },
        });
        self.event(id, "failed", fields, || {
            if first {
                format!(
                    "bridge {}: message {id} stays in IN ({stage} failed; tried again in {} s, at most {} times): {error}",
                    self.name, self.retry_after, self.max_attempts
                )
            } else {
                format!(
                    "bridge {}: message {id} still failing ({stage}, attempt {attempt} of {})",
                    self.name, self.max_attempts
                )
            }
        });
    }

    /// An event: a JSON line on stdout with `--json` (and in the worker's log), else `text()`
    /// on stderr.
    fn event(
        &self,
        id: &str,
        what: &str,
        fields: serde_json::Value,
        text: impl FnOnce() -> String,
    ) {
        if self.json {
            let mut line = json!({"bridge": self.name, "message_id": id, "event": what});
            if let (Some(line), serde_json::Value::Object(fields)) = (line.as_object_mut(), fields)
            {
                line.extend(fields);
            }
            outln!("{line}");
        } else {
            eprintln!("{}", text());
        }
    }

    /// A delivered (`to`: where) or dropped message: on stdout, a JSON line with `--json`.
    fn report(&self, id: &str, what: &str, to: Option<&str>) {
        if self.json {
            outln!(
                "{}",
                json!({"bridge": self.name, "message_id": id, "event": what, "to": to})
            );
            return;
        }
        match to {
            Some(to) => outln!("bridge {}: message {id} -> {to}", self.name),
            None => outln!(
                "bridge {}: message {id} dropped by the mapper (deleted from IN)",
                self.name
            ),
        }
    }
}

/// IN's receive count of a message: which attempt this is (1 when the engine does not say).
fn receive_count(message: &Message) -> u32 {
    message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|count| count.parse().ok())
        .unwrap_or(1)
}

/// What happened to one message of a batch.
enum Outcome {
    Forwarded(String),
    Dropped,
    Failed(&'static str, String),
}

/// Sends mapped bodies to OUT in one call, carrying each message's attributes (and, for FIFO, its
/// group and a deduplication id from IN's message id, so a redelivery after a crash is not sent
/// twice). Returns one result per body, in order.
async fn send_batch(
    clients: &AwsClients,
    out: &Target,
    bodies: &[(usize, String)],
    received: &[Message],
) -> Vec<Result<(), String>> {
    let fifo = matches!(
        out,
        Target::Queue { fifo: true, .. } | Target::Topic { fifo: true, .. }
    );
    let mut results: Vec<Result<(), String>> = vec![Ok(()); bodies.len()];
    let (accepted, refused): (Vec<String>, Vec<(String, String)>) = match out {
        Target::Queue { url, name, .. } => {
            let mut entries = Vec::new();
            for (position, (index, body)) in bodies.iter().enumerate() {
                let message = &received[*index];
                let (group, dedup) = fifo_ids(message);
                let mut entry = SendMessageBatchRequestEntry::builder()
                    .id(position.to_string())
                    .message_body(body)
                    .set_message_attributes(
                        message
                            .message_attributes()
                            .cloned()
                            .filter(|a| !a.is_empty()),
                    );
                if fifo {
                    entry = entry
                        .message_group_id(group)
                        .message_deduplication_id(dedup);
                }
                match entry.build() {
                    Ok(entry) => entries.push(entry),
                    Err(e) => results[position] = Err(e.to_string()),
                }
            }
            match clients
                .sqs
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(output) => (
                    output.successful.iter().map(|s| s.id.clone()).collect(),
                    output
                        .failed
                        .iter()
                        .map(|f| {
                            (
                                f.id.clone(),
                                f.message.clone().unwrap_or_else(|| f.code.clone()),
                            )
                        })
                        .collect(),
                ),
                Err(e) => {
                    let error = format!("queue {name} did not accept them: {}", describe_error(&e));
                    return vec![Err(error); bodies.len()];
                }
            }
        }
        Target::Topic { arn, name, .. } => {
            let mut entries = Vec::new();
            for (position, (index, body)) in bodies.iter().enumerate() {
                let message = &received[*index];
                let (group, dedup) = fifo_ids(message);
                let mut converted = HashMap::new();
                for (key, value) in message.message_attributes().cloned().unwrap_or_default() {
                    if let Ok(built) = aws_sdk_sns::types::MessageAttributeValue::builder()
                        .data_type(value.data_type())
                        .set_string_value(value.string_value().map(str::to_string))
                        .set_binary_value(
                            value
                                .binary_value()
                                .map(|b| aws_sdk_sns::primitives::Blob::new(b.as_ref().to_vec())),
                        )
                        .build()
                    {
                        converted.insert(key, built);
                    }
                }
                let mut entry = aws_sdk_sns::types::PublishBatchRequestEntry::builder()
                    .id(position.to_string())
                    .message(body)
                    .set_message_attributes((!converted.is_empty()).then_some(converted));
                if fifo {
                    entry = entry
                        .message_group_id(group)
                        .message_deduplication_id(dedup);
                }
                match entry.build() {
                    Ok(entry) => entries.push(entry),
                    Err(e) => results[position] = Err(e.to_string()),
                }
            }
            match clients
                .sns
                .publish_batch()
                .topic_arn(arn)
                .set_publish_batch_request_entries(Some(entries))
                .send()
                .await
            {
                Ok(output) => (
                    output
                        .successful()
                        .iter()
                        .filter_map(|s| s.id.clone())
                        .collect(),
                    output
                        .failed()
                        .iter()
                        .map(|f| {
                            (
                                f.id.clone(),
                                f.message.clone().unwrap_or_else(|| f.code.clone()),
                            )
                        })
                        .collect(),
                ),
                Err(e) => {
                    let error = format!("topic {name} did not accept them: {}", describe_error(&e));
                    return vec![Err(error); bodies.len()];
                }
            }
        }
    };
    for (position, result) in results.iter_mut().enumerate() {
        if result.is_err() {
            continue;
        }
        let id = position.to_string();
        if let Some((_, reason)) = refused.iter().find(|(i, _)| *i == id) {
            *result = Err(format!("{} refused it: {reason}", out.label()));
        } else if !accepted.contains(&id) {
            *result = Err(format!("{} did not confirm it", out.label()));
        }
    }
    results
}

/// The FIFO group of an IN message (or a fixed one) and a deduplication id from its message id.
fn fifo_ids(message: &Message) -> (String, String) {
    let group = message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId).cloned())
        .unwrap_or_else(|| "inframock-bridge".to_string());
    let dedup: String = message
        .message_id()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(128)
        .collect();
    (group, dedup)
}

/// Seconds until a failed message is tried again (default).
pub const DEFAULT_RETRY_AFTER: i32 = 5;

/// Time limit of one `map` call (default).
pub const DEFAULT_MAPPER_TIMEOUT: Duration = Duration::from_secs(5);
