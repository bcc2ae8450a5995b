//! Queue mocks of the stack: tails that record every message arriving on a queue or topic, and
//! bridges (ESB) that move messages from one queue/topic to another through a Python mapper.

pub mod bridge;
pub mod mapper;
pub mod record;
pub mod tail;
pub mod target;
pub mod worker;

/// A `ReceiveMessage` of up to 10 messages of `queue_url` with every system and message attribute:
/// what tails, bridges, snapshots and the dashboard read. Callers add the wait and the visibility
/// timeout they need.
pub fn receive_everything(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> aws_sdk_sqs::operation::receive_message::builders::ReceiveMessageFluentBuilder {
    sqs.receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .message_attribute_names("All")
}
