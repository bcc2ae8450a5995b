//! A queue or topic named on the command line or in inframock.toml, resolved at the endpoint.

use anyhow::{anyhow, Result};

use crate::aws::{describe_error, AwsClients};
use crate::resources::topic_arn;

/// An SQS queue or an SNS topic.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Queue {
        name: String,
        url: String,
        fifo: bool,
    },
    Topic {
        name: String,
        arn: String,
        fifo: bool,
    },
}

impl Target {
    /// Finds `name` (a name, a queue URL or a topic ARN): a topic of that name first, then a queue.
    pub async fn resolve(clients: &AwsClients, name: &str) -> Result<Target> {
        if name.starts_with("arn:aws:sns:") {
            let short = name.rsplit(':').next().unwrap_or(name).to_string();
            return Ok(Target::Topic {
                fifo: short.ends_with(".fifo"),
                name: short,
                arn: name.to_string(),
            });
        }
        if name.starts_with("http://") || name.starts_with("https://") {
            let short = name.rsplit('/').next().unwrap_or(name).to_string();
            return Ok(Target::Queue {
                fifo: short.ends_with(".fifo"),
                name: short,
                url: name.to_string(),
            });
        }
        if let Some(arn) = topic_arn(clients, name).await {
            return Ok(Target::Topic {
                name: name.to_string(),
                arn,
                fifo: name.ends_with(".fifo"),
            });
        }
        match clients.sqs.get_queue_url().queue_name(name).send().await {
            Ok(found) => Ok(Target::Queue {
                name: name.to_string(),
                url: found.queue_url.unwrap_or_default(),
                fifo: name.ends_with(".fifo"),
            }),
            Err(e) => Err(anyhow!(
                "no queue or topic named `{name}` at the endpoint ({}); declare it in inframock.toml ([[queues]] / [[topics]]) or check the name",
                describe_error(&e)
            )),
        }
    }

    /// `queue NAME` or `topic NAME`.
    pub fn label(&self) -> String {
        match self {
            Target::Queue { name, .. } => format!("queue {name}"),
            Target::Topic { name, .. } => format!("topic {name}"),
        }
    }
}
