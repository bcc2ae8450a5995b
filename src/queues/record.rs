//! Recorded messages: one JSON object per message, printed and appended to
//! `.inframock/messages/<name>.jsonl`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A message as recorded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Recorded {
    /// When the tail received it (RFC 3339, UTC).
    pub time: String,
    /// `queue NAME` or `topic NAME`.
    pub source: String,
    pub message_id: String,
    pub body: String,
    /// The body parsed, when it is JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Message attributes (name -> value as text).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// FIFO message group, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// The folder of recorded messages.
pub fn messages_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("messages")
}

/// The file a named tail records to.
pub fn messages_file(state_dir: &Path, name: &str) -> PathBuf {
    messages_dir(state_dir).join(format!("{name}.jsonl"))
}

/// Converts an SQS message. `from_topic` unwraps the SNS envelope of a topic subscription.
pub fn from_sqs(message: &Message, source: &str, from_topic: bool) -> Recorded {
    let raw = message.body().unwrap_or_default().to_string();
    let mut attributes: BTreeMap<String, String> = message
        .message_attributes()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let text = v.string_value().map(str::to_string).unwrap_or_else(|| {
                        format!(
                            "<{} bytes>",
                            v.binary_value().map(|b| b.as_ref().len()).unwrap_or(0)
                        )
                    });
                    (k.clone(), text)
                })
                .collect()
        })
        .unwrap_or_default();
    let group = message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId).cloned());
    let mut message_id = message.message_id().unwrap_or_default().to_string();
    let mut subject = None;
    let mut body = raw.clone();
    if from_topic {
        if let Ok(envelope) = serde_json::from_str::<Value>(&raw) {
            if envelope["Type"] == "Notification" {
                body = envelope["Message"].as_str().unwrap_or_default().to_string();
                message_id = envelope["MessageId"]
                    .as_str()
                    .unwrap_or(&message_id)
                    .to_string();
                subject = envelope["Subject"].as_str().map(str::to_string);
                if let Some(map) = envelope["MessageAttributes"].as_object() {
                    for (name, value) in map {
                        let text = value["Value"].as_str().unwrap_or_default().to_string();
                        attributes.insert(name.clone(), text);
                    }
                }
            }
        }
    }
    let json = serde_json::from_str::<Value>(&body)
        .ok()
        .filter(|v| v.is_object() || v.is_array());
    Recorded {
        time: crate::mock::journal::rfc3339(crate::mock::journal::now_ms()),
        source: source.to_string(),
        message_id,
        body,
        json,
        subject,
        attributes,
        group,
    }
}

/// Prints recorded messages and appends them to a file.
pub struct Recorder {
    file: Option<(PathBuf, std::fs::File)>,
    /// Print JSON lines instead of human lines.
    json: bool,
    /// Print at all (the worker only records).
    print: bool,
}

impl Recorder {
    /// A recorder appending to `file` (folders created) when given.
    pub fn new(file: Option<PathBuf>, json: bool, print: bool) -> Result<Recorder> {
        let file = match file {
            Some(path) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("cannot create {}", parent.display()))?;
                }
                let handle = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                Some((path, handle))
            }
            None => None,
        };
        Ok(Recorder { file, json, print })
    }

    /// Records messages (written and flushed before the caller deletes them from the queue).
    pub fn record(&mut self, messages: &[Recorded]) -> Result<()> {
        if let Some((path, file)) = &mut self.file {
            let mut text = String::new();
            for message in messages {
                text.push_str(&serde_json::to_string(message)?);
                text.push('\n');
            }
            file.write_all(text.as_bytes())
                .and_then(|_| file.sync_data())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        if self.print {
            let mut lines = String::new();
            for message in messages {
                let line = if self.json {
                    serde_json::to_string(message)?
                } else {
                    human_line(message)
                };
                lines.push_str(&line);
                lines.push('\n');
            }
            out!("{lines}");
        }
        Ok(())
    }
}

/// `2026-11-25T16:23:10.123Z  topic results  {"a":1}  [attr=value]`
pub fn human_line(message: &Recorded) -> String {
    let mut line = format!("{}  {}  {}", message.time, message.source, message.body);
    if let Some(subject) = &message.subject {
        line.push_str(&format!("  (subject: {subject})"));
    }
    if !message.attributes.is_empty() {
        let attributes: Vec<String> = message
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        line.push_str(&format!("  [{}]", attributes.join(", ")));
    }
    line
}

/// Reads a messages file; a line that is not a recorded message is reported with its number.
pub fn read_file(path: &Path) -> Result<Vec<Recorded>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).with_context(|| {
                format!("{} line {}: not a recorded message", path.display(), i + 1)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sns_envelopes_are_unwrapped_and_records_round_trip() {
        let envelope = serde_json::json!({
            "Type": "Notification", "MessageId": "sns-1", "Subject": "s",
            "Message": "{\"a\": 1}", "MessageAttributes": {"kind": {"Type": "String", "Value": "x"}}
        });
        let message = Message::builder()
            .message_id("sqs-1")
            .body(envelope.to_string())
            .build();
        let recorded = from_sqs(&message, "topic t", true);
        assert_eq!(recorded.message_id, "sns-1");
        assert_eq!(recorded.body, "{\"a\": 1}");
        assert_eq!(recorded.json, Some(serde_json::json!({"a": 1})));
        assert_eq!(recorded.attributes["kind"], "x");
        let plain = from_sqs(&message, "queue q", false);
        assert_eq!(plain.message_id, "sqs-1");

        let dir = tempfile::tempdir().unwrap();
        let path = messages_file(dir.path(), "t");
        let mut recorder = Recorder::new(Some(path.clone()), true, false).unwrap();
        recorder.record(&[recorded.clone(), plain.clone()]).unwrap();
        assert_eq!(read_file(&path).unwrap(), vec![recorded, plain]);
        std::fs::write(&path, "{}\n").unwrap();
        assert!(format!("{:#}", read_file(&path).unwrap_err()).contains("line 1"));
    }
}
