//! The SQS part of a snapshot: every queue's waiting messages (bodies, attributes, group and
//! deduplication ids), read without consuming them: each is received with a long visibility
//! timeout, recorded, then made visible again at once. Messages a consumer holds in flight cannot
//! be read; the manifest says how many there were.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName, SendMessageBatchRequestEntry,
};
use base64::Engine;

use super::interrupt::Interrupt;
use super::records::{MessageAttribute, MessageRecord, QueueRecord};
use crate::aws::{describe_error, AwsClients};
use crate::inventory::{message_counts, queue_attributes};

/// Seconds a message received by a save stays invisible to others (it is made visible again as
/// soon as the queue is read).
const HOLD_SECONDS: i32 = 300;
/// A save of one queue must finish well within [`HOLD_SECONDS`], or messages would come back
/// while it reads and be saved twice.
const READ_LIMIT: Duration = Duration::from_secs(240);

/// The queues and their messages, in the order each queue gave them.
pub struct SavedQueues {
    pub queues: Vec<QueueRecord>,
    pub messages: Vec<MessageRecord>,
    pub notes: Vec<String>,
}

/// The name of a queue from its URL.
pub fn name_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Saves every queue's waiting messages. A stop asked (`interrupt`) ends the reading of a queue
/// before its next receive, and the messages held are made visible again as always.
pub async fn save(clients: &AwsClients, interrupt: &Interrupt) -> Result<SavedQueues> {
    let mut urls = Vec::new();
    let mut pages = clients.sqs.list_queues().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            anyhow!(
                "listing queues (ListQueues at {}): {}",
                clients.url,
                describe_error(&e)
            )
        })?;
        urls.extend(page.queue_urls().iter().cloned());
    }
    urls.sort();
    let mut saved = SavedQueues {
        queues: Vec::new(),
        messages: Vec::new(),
        notes: Vec::new(),
    };
    for url in urls {
        let name = name_of(&url).to_string();
        let attributes = queue_attributes(clients, &url)
            .await
            .map_err(|e| anyhow!("queue {name} (GetQueueAttributes): {e}"))?;
        let (_, in_flight) = message_counts(&attributes);
        let messages = read_all(clients, &url, &name, interrupt).await?;
        if in_flight > 0 {
            saved.notes.push(format!(
                "queue {name}: {in_flight} message(s) in flight (received by a consumer, not yet deleted) were not saved"
            ));
        }
        saved.queues.push(QueueRecord {
            name: name.clone(),
            fifo: attributes.get("FifoQueue").is_some_and(|v| v == "true"),
            content_based_deduplication: attributes
                .get("ContentBasedDeduplication")
                .is_some_and(|v| v == "true"),
            messages: messages.len() as u64,
            in_flight_not_saved: in_flight,
        });
        saved.messages.extend(messages);
    }
    Ok(saved)
}

/// Receives every visible message of one queue, then makes them all visible again (also when
/// reading failed half-way).
async fn read_all(
    clients: &AwsClients,
    url: &str,
    name: &str,
    interrupt: &Interrupt,
) -> Result<Vec<MessageRecord>> {
    let mut held: Vec<String> = Vec::new();
    let read = read_holding(clients, url, name, &mut held, interrupt).await;
    let released = release(clients, url, &held).await;
    let messages = read?;
    released.map_err(|e| anyhow!("queue {name}: the saved messages could not be made visible again at once ({e}); they come back after {HOLD_SECONDS} s"))?;
    Ok(messages)
}

async fn read_holding(
    clients: &AwsClients,
    url: &str,
    name: &str,
    held: &mut Vec<String>,
    interrupt: &Interrupt,
) -> Result<Vec<MessageRecord>> {
    let started = Instant::now();
    let mut seen = HashSet::new();
    let mut messages = Vec::new();
    loop {
        if interrupt.is_requested() {
            bail!("queue {name}: interrupted");
        }
        if started.elapsed() > READ_LIMIT {
            bail!(
                "queue {name}: reading its {} messages took longer than {} s; save it with fewer messages waiting",
                messages.len(),
                READ_LIMIT.as_secs()
            );
        }
        let output = crate::queues::receive_everything(&clients.sqs, url)
            .visibility_timeout(HOLD_SECONDS)
            .wait_time_seconds(0)
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "queue {name} (ReceiveMessage at {}): {}",
                    clients.url,
                    describe_error(&e)
                )
            })?;
        let received = output.messages.unwrap_or_default();
        if received.is_empty() {
            return Ok(messages);
        }
        for message in received {
            if let Some(receipt) = message.receipt_handle() {
                held.push(receipt.to_string());
            }
            if !seen.insert(message.message_id().unwrap_or_default().to_string()) {
                continue;
            }
            let system = message.attributes();
            let system_value = |attribute: MessageSystemAttributeName| {
                system.and_then(|s| s.get(&attribute)).cloned()
            };
            messages.push(MessageRecord {
                queue: name.to_string(),
                body: message.body().unwrap_or_default().to_string(),
                attributes: message
                    .message_attributes()
                    .map(|attributes| {
                        attributes
                            .iter()
                            .map(|(key, value)| (key.clone(), attribute_record(value)))
                            .collect()
                    })
                    .unwrap_or_default(),
                group_id: system_value(MessageSystemAttributeName::MessageGroupId),
                deduplication_id: system_value(MessageSystemAttributeName::MessageDeduplicationId),
            });
        }
    }
}

fn attribute_record(value: &MessageAttributeValue) -> MessageAttribute {
    MessageAttribute {
        data_type: value.data_type().to_string(),
        string_value: value.string_value().map(str::to_string),
        binary_value: value
            .binary_value()
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b.as_ref())),
    }
}

/// Makes held messages visible again, ten per call.
async fn release(clients: &AwsClients, url: &str, receipts: &[String]) -> Result<(), String> {
    for chunk in receipts.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(n, receipt)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(n.to_string())
                    .receipt_handle(receipt)
                    .visibility_timeout(0)
                    .build()
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = clients
            .sqs
            .change_message_visibility_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| describe_error(&e))?;
        if let Some(failed) = output.failed().first() {
            return Err(format!(
                "{} message(s) refused: {}",
                output.failed().len(),
                failed.message().unwrap_or_default()
            ));
        }
    }
    Ok(())
}

/// The URL of queue `name`, if it exists.
pub async fn url_of(clients: &AwsClients, name: &str) -> Option<String> {
    let found = clients
        .sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .ok()?;
    found.queue_url().map(str::to_string)
}

/// Creates a queue the snapshot holds if it is missing; its URL.
pub async fn ensure(clients: &AwsClients, queue: &QueueRecord) -> Result<String> {
    if let Some(url) = url_of(clients, &queue.name).await {
        return Ok(url);
    }
    let mut request = clients.sqs.create_queue().queue_name(&queue.name);
    if queue.fifo {
        request = request.attributes(QueueAttributeName::FifoQueue, "true");
        if queue.content_based_deduplication {
            request = request.attributes(QueueAttributeName::ContentBasedDeduplication, "true");
        }
    }
    let created = request.send().await.map_err(|e| {
        anyhow!(
            "creating queue {} (CreateQueue at {}): {}",
            queue.name,
            clients.url,
            describe_error(&e)
        )
    })?;
    created
        .queue_url()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("creating queue {}: CreateQueue returned no URL", queue.name))
}

/// Empties a queue (`--replace`).
pub async fn purge(clients: &AwsClients, url: &str) -> Result<()> {
    clients
        .sqs
        .purge_queue()
        .queue_url(url)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "emptying queue {} (PurgeQueue at {}): {}",
                name_of(url),
                clients.url,
                describe_error(&e)
            )
        })?;
    Ok(())
}

/// Sends the saved messages of one queue, in their saved order, ten per call; the number sent.
/// A FIFO message keeps its group but gets a deduplication id of this load (the saved one with a
/// suffix): within five minutes of the original send, the queue would drop it as a duplicate.
pub async fn send(clients: &AwsClients, url: &str, messages: &[&MessageRecord]) -> Result<u64> {
    let name = name_of(url);
    let load = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let mut sent = 0;
    for chunk in messages.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(n, message)| {
                let mut entry = SendMessageBatchRequestEntry::builder()
                    .id(n.to_string())
                    .message_body(&message.body)
                    .set_message_group_id(message.group_id.clone())
                    .set_message_deduplication_id(
                        message
                            .deduplication_id
                            .as_deref()
                            .map(|id| restored_deduplication_id(id, &load)),
                    );
                for (key, attribute) in &message.attributes {
                    entry = entry.message_attributes(key, attribute_value(attribute)?);
                }
                entry.build().map_err(|e| anyhow!("queue {name}: {e}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let output = clients
            .sqs
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "queue {name} (SendMessageBatch at {}): {} ({sent} of the snapshot's {} messages were sent before; a load with --replace sends them all again)",
                    clients.url,
                    describe_error(&e),
                    messages.len()
                )
            })?;
        if let Some(failed) = output.failed().first() {
            bail!(
                "queue {name}: {} message(s) refused by SendMessageBatch: {} ({} of the snapshot's {} messages were sent; a load with --replace sends them all again)",
                output.failed().len(),
                failed.message().unwrap_or_default(),
                sent + output.successful().len() as u64,
                messages.len()
            );
        }
        sent += output.successful().len() as u64;
    }
    Ok(sent)
}

/// A deduplication id for a restored message (pure): the saved one (at most 96 characters of it)
/// and the load's mark, within SQS's 128 characters.
pub fn restored_deduplication_id(saved: &str, load: &str) -> String {
    let kept: String = saved.chars().take(96).collect();
    let mark: String = load.chars().take(30).collect();
    format!("{kept}-{mark}")
}

fn attribute_value(attribute: &MessageAttribute) -> Result<MessageAttributeValue> {
    let binary = attribute
        .binary_value
        .as_deref()
        .map(|b| base64::engine::general_purpose::STANDARD.decode(b))
        .transpose()
        .map_err(|e| anyhow!("a binary message attribute is not base64: {e}"))?;
    MessageAttributeValue::builder()
        .data_type(&attribute.data_type)
        .set_string_value(attribute.string_value.clone())
        .set_binary_value(binary.map(aws_sdk_sqs::primitives::Blob::new))
        .build()
        .map_err(|e| anyhow!("message attribute: {e}"))
}

/// The saved messages grouped by queue, each group in saved order (pure).
pub fn by_queue(messages: &[MessageRecord]) -> BTreeMap<&str, Vec<&MessageRecord>> {
    let mut grouped: BTreeMap<&str, Vec<&MessageRecord>> = BTreeMap::new();
    for message in messages {
        grouped.entry(&message.queue).or_default().push(message);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restored_deduplication_ids_differ_per_load_and_fit_sqs() {
        let long = "x".repeat(128);
        let id = restored_deduplication_id(&long, "18a2b3c4d5e6f7");
        assert!(id.len() <= 128, "{}", id.len());
        assert_ne!(
            restored_deduplication_id("d1", "1"),
            restored_deduplication_id("d1", "2")
        );
    }

    #[test]
    fn queue_names_come_from_their_urls_and_messages_group_in_order() {
        assert_eq!(
            name_of("http://127.0.0.1:4566/000000000000/jobs.fifo"),
            "jobs.fifo"
        );
        let message = |queue: &str, body: &str| MessageRecord {
            queue: queue.into(),
            body: body.into(),
            attributes: BTreeMap::new(),
            group_id: None,
            deduplication_id: None,
        };
        let messages = [message("b", "1"), message("a", "2"), message("b", "3")];
        let grouped = by_queue(&messages);
        let bodies: Vec<&str> = grouped["b"].iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["1", "3"]);
    }
}
