//! Tails: every message arriving on a queue, or on a topic through a queue of ours subscribed to it
//! (so the topic's other subscribers still get every message), is recorded.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use anyhow::{anyhow, Result};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};

use super::record::{from_sqs, Recorder};
use super::target::Target;
use crate::aws::{describe_error, AwsClients};
use crate::resources::queue_arn_of_url;

/// Message ids remembered by a peeking tail, to record each message once.
const PEEK_MEMORY: usize = 100_000;

/// Where a tail reads.
#[derive(Debug, Clone)]
pub struct TailSource {
    pub target: Target,
    /// The queue read: the target queue, or ours subscribed to the target topic.
    pub queue_url: String,
    /// The subscription of our queue to the topic.
    pub subscription_arn: Option<String>,
}

/// How a tail reads a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Receive and delete: the tail is the queue's consumer (topics always read this way, from a
    /// queue of their own).
    Consume,
    /// Receive without deleting, with no visibility timeout: other consumers still get the messages.
    Peek,
}

/// Prepares reading `target`: a topic gets a queue of ours named `queue_name`, subscribed to it
/// (created if missing; kept, so messages wait there while the tail is not running).
pub async fn prepare(clients: &AwsClients, target: Target, queue_name: &str) -> Result<TailSource> {
    match &target {
        Target::Queue { url, .. } => Ok(TailSource {
            queue_url: url.clone(),
            target,
            subscription_arn: None,
        }),
        Target::Topic { arn, fifo, name } => {
            let queue_name = if *fifo && !queue_name.ends_with(".fifo") {
                format!("{queue_name}.fifo")
            } else {
                queue_name.to_string()
            };
            let mut request = clients.sqs.create_queue().queue_name(&queue_name);
            if *fifo {
                request = request
                    .attributes(QueueAttributeName::FifoQueue, "true")
                    .attributes(QueueAttributeName::ContentBasedDeduplication, "true");
            }
            let url = request
                .send()
                .await
                .map_err(|e| {
                    anyhow!(
                        "tail of topic {name}: creating queue {queue_name}: {}",
                        describe_error(&e)
                    )
                })?
                .queue_url
                .ok_or_else(|| anyhow!("tail of topic {name}: no queue URL returned"))?;
            let queue_arn = queue_arn_of_url(clients, &url).await?;
            let subscription = clients
                .sns
                .subscribe()
                .topic_arn(arn)
                .protocol("sqs")
                .endpoint(&queue_arn)
                .return_subscription_arn(true)
                .send()
                .await
                .map_err(|e| {
                    anyhow!(
                        "tail of topic {name}: subscribing {queue_name}: {}",
                        describe_error(&e)
                    )
                })?;
            Ok(TailSource {
                queue_url: url,
                target,
                subscription_arn: subscription.subscription_arn,
            })
        }
    }
}

/// Removes what `prepare` created for a topic (the ad-hoc tail of `inframock queue tail`).
pub async fn remove(clients: &AwsClients, source: &TailSource) {
    if let Some(arn) = &source.subscription_arn {
        let _ = clients.sns.unsubscribe().subscription_arn(arn).send().await;
        let _ = clients
            .sqs
            .delete_queue()
            .queue_url(&source.queue_url)
            .send()
            .await;
    }
}

/// Records messages until the future is dropped. A recorded message is written (and synced)
/// before it is deleted from the queue, so a crash records it twice rather than never.
pub async fn run(
    clients: &AwsClients,
    source: &TailSource,
    recorder: &mut Recorder,
    mode: Mode,
) -> Result<()> {
    let from_topic = matches!(source.target, Target::Topic { .. });
    let label = source.target.label();
    let mut seen: HashSet<String> = HashSet::new();
    let mut seen_order: VecDeque<String> = VecDeque::new();
    loop {
        let mut request = super::receive_everything(&clients.sqs, &source.queue_url);
        request = match mode {
            Mode::Consume => request.wait_time_seconds(1),
            Mode::Peek => request.visibility_timeout(0),
        };
        let received = match request.send().await {
            Ok(output) => output.messages.unwrap_or_default(),
            Err(e) => {
                return Err(anyhow!(
                    "tail of {label}: receiving: {}",
                    describe_error(&e)
                ));
            }
        };
        let mut fresh = Vec::new();
        let mut to_delete = Vec::new();
        for message in &received {
            let id = message.message_id().unwrap_or_default().to_string();
            if mode == Mode::Peek {
                if !seen.insert(id.clone()) {
                    continue;
                }
                seen_order.push_back(id.clone());
                if seen_order.len() > PEEK_MEMORY {
                    if let Some(old) = seen_order.pop_front() {
                        seen.remove(&old);
                    }
                }
            }
            fresh.push(from_sqs(message, &label, from_topic));
            if let Some(handle) = message.receipt_handle() {
                to_delete.push(
                    DeleteMessageBatchRequestEntry::builder()
                        .id(to_delete.len().to_string())
                        .receipt_handle(handle)
                        .build()
                        .map_err(|e| anyhow!("tail of {label}: {e}"))?,
                );
            }
        }
        if !fresh.is_empty() {
            recorder.record(&fresh)?;
        }
        if mode == Mode::Consume && !to_delete.is_empty() {
            clients
                .sqs
                .delete_message_batch()
                .queue_url(&source.queue_url)
                .set_entries(Some(to_delete))
                .send()
                .await
                .map_err(|e| {
                    anyhow!(
                        "tail of {label}: deleting recorded messages: {}",
                        describe_error(&e)
                    )
                })?;
        }
        if fresh.is_empty() {
            // Peeking returns at once; moto's long poll may too: do not spin.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
