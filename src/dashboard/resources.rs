//! The Resources pages: every declared table, bucket, queue and topic with its live counts and
//! drift (`inventory`, quick counts), and one page per kind: a table's key schema, indexes and
//! first 100 items (each openable as JSON); a bucket's objects by prefix (each downloadable); a
//! queue's counts and messages peeked without consuming them, and a form to send one; a topic's
//! subscriptions and a form to publish one.

use std::fmt::Write;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use hyper::StatusCode;

use super::layout::{encode, escape, html_table, json_block, pre, Page};
use super::{Context, Query, Reply};
use crate::aws::{describe_error, AwsClients};
use crate::inventory::{inspect_all, Counting};
use crate::output::human_bytes;

/// Items shown of a table.
const ITEMS_SHOWN: i32 = 100;

/// Objects listed of a bucket (one page of `ListObjectsV2`).
const OBJECTS_SHOWN: i32 = 1000;

/// The largest object the dashboard hands out (larger ones: `aws s3 cp`).
const DOWNLOAD_LIMIT: i64 = 512 * 1024 * 1024;

/// A problem page for an AWS error.
fn aws_problem(what: &str, error: impl std::fmt::Display) -> Reply {
    Reply::Problem(StatusCode::BAD_GATEWAY, format!("{what}: {error}"))
}

/// The AWS clients of the running stack, or a problem saying there is none.
async fn clients(context: &Context) -> Result<AwsClients, Reply> {
    context
        .clients()
        .await
        .map_err(|e| aws_problem("no AWS endpoint to ask", format!("{e:#}")))
}

/// A queue's URL, or a problem naming the queue.
async fn queue_url(clients: &AwsClients, name: &str) -> Result<String, Reply> {
    match clients.sqs.get_queue_url().queue_name(name).send().await {
        Ok(output) => Ok(output.queue_url.unwrap_or_default()),
        Err(e) => Err(aws_problem(&format!("queue {name}"), describe_error(&e))),
    }
}

/// A topic's ARN, or a problem saying there is no such topic.
async fn topic_arn(clients: &AwsClients, name: &str) -> Result<String, Reply> {
    crate::resources::topic_arn(clients, name)
        .await
        .ok_or_else(|| Reply::Problem(StatusCode::NOT_FOUND, format!("no topic {name}")))
}

/// The `name` parameter, or a problem naming it.
fn required<'a>(query: &'a Query, name: &str) -> Result<&'a str, Reply> {
    query
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            Reply::Problem(
                StatusCode::BAD_REQUEST,
                format!("`{name}` is missing from the address"),
            )
        })
}

/// `GET /resources`: every declared resource.
pub async fn overview(context: &Context) -> Result<Reply, Reply> {
    let clients = clients(context).await?;
    let settings = &context.settings;
    let runtime = crate::stack::state::read(&settings.state_dir())
        .ok()
        .flatten()
        .map_or(settings.runtime, |s| s.runtime);
    let inventory = inspect_all(
        &clients,
        &settings.stack,
        &settings.resource_vars(runtime),
        Counting::Quick,
    )
    .await;
    let rows: Vec<Vec<String>> = inventory
        .iter()
        .map(|item| {
            let link = format!(
                "<a href=\"/resources/{}?name={}\">{}</a>",
                item.kind,
                encode(&item.name),
                escape(&item.name)
            );
            let counts = item
                .counts
                .iter()
                .map(|(name, value)| match *name {
                    "bytes" => format!("{name} {}", human_bytes(*value)),
                    _ => format!("{name} {value}"),
                })
                .collect::<Vec<_>>()
                .join(", ");
            let state = match (&item.error, item.exists) {
                (Some(error), _) => format!("<span class=\"bad\">{}</span>", escape(error)),
                (None, false) => "<span class=\"bad\">missing</span>".to_string(),
                (None, true) if item.drift.is_empty() => {
                    "<span class=\"ok\">as declared</span>".into()
                }
                (None, true) => format!(
                    "<span class=\"bad\">{}</span>",
                    escape(&item.drift.join("; "))
                ),
            };
            vec![item.kind.to_string(), link, escape(&counts), state]
        })
        .collect();
    Ok(Reply::Page(Page {
        section: "/resources",
        title: "Resources".into(),
        live: format!(
            "<h2>Resources</h2><p>at {}</p>{}",
            escape(&clients.url),
            html_table("resources", &["kind", "name", "counts", "state"], &rows)
        ),
        controls: String::new(),
    }))
}

/// `GET /resources/table?name=T`: key schema, indexes, count and the first items.
pub async fn table(context: &Context, query: &Query) -> Result<Reply, Reply> {
    let name = required(query, "name")?;
    let clients = clients(context).await?;
    let described = match clients
        .dynamodb
        .describe_table()
        .table_name(name)
        .send()
        .await
    {
        Ok(output) => output
            .table
            .unwrap_or_else(|| aws_sdk_dynamodb::types::TableDescription::builder().build()),
        Err(e) => return Err(aws_problem(&format!("table {name}"), describe_error(&e))),
    };
    let keys: Vec<String> = described
        .key_schema()
        .iter()
        .map(|k| k.attribute_name().to_string())
        .collect();
    let schema = described
        .key_schema()
        .iter()
        .map(|k| format!("{} ({})", k.attribute_name(), k.key_type().as_str()))
        .collect::<Vec<_>>()
        .join(" + ");
    let indexes = described
        .global_secondary_indexes()
        .iter()
        .map(|i| {
            let key = i
                .key_schema()
                .iter()
                .map(|k| k.attribute_name())
                .collect::<Vec<_>>()
                .join(" + ");
            format!("{} ({key})", i.index_name().unwrap_or("?"))
        })
        .collect::<Vec<_>>();
    let scanned = match clients
        .dynamodb
        .scan()
        .table_name(name)
        .limit(ITEMS_SHOWN)
        .send()
        .await
    {
        Ok(output) => output,
        Err(e) => return Err(aws_problem(&format!("scanning {name}"), describe_error(&e))),
    };
    let rows: Vec<Vec<String>> = scanned
        .items()
        .iter()
        .map(|item| {
            let typed = crate::data::dynamo_json::item_to_typed(item);
            let key = keys
                .iter()
                .map(|k| {
                    typed[k]
                        .as_object()
                        .and_then(|o| o.values().next())
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join(" / ");
            vec![
                escape(&key),
                format!(
                    "<details><summary>{} attributes</summary>{}</details>",
                    item.len(),
                    json_block(&typed)
                ),
            ]
        })
        .collect();
    let count = described.item_count().unwrap_or(0);
    let mut live = format!(
        "<h2>Table {}</h2><p>key <b>{}</b> · <span id=\"count\">{count}</span> items",
        escape(name),
        escape(&schema)
    );
    if !indexes.is_empty() {
        let _ = write!(live, " · indexes {}", escape(&indexes.join(", ")));
    }
    let _ = write!(
        live,
        "</p><p>the first {} items (open one to see it as DynamoDB JSON)</p>{}",
        rows.len(),
        html_table("items", &["key", "item"], &rows)
    );
    Ok(Reply::Page(Page {
        section: "/resources",
        title: format!("Table {name}"),
        live,
        controls: String::new(),
    }))
}

/// `GET /resources/bucket?name=B&prefix=P`: folders and objects under a prefix.
pub async fn bucket(context: &Context, query: &Query) -> Result<Reply, Reply> {
    let name = required(query, "name")?;
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    let clients = clients(context).await?;
    let listed = match clients
        .s3
        .list_objects_v2()
        .bucket(name)
        .prefix(&prefix)
        .delimiter("/")
        .max_keys(OBJECTS_SHOWN)
        .send()
        .await
    {
        Ok(output) => output,
        Err(e) => {
            return Err(aws_problem(
                &format!("listing bucket {name}"),
                describe_error(&e),
            ))
        }
    };
    let mut rows: Vec<Vec<String>> = listed
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .map(|folder| {
            vec![
                format!(
                    "<a href=\"/resources/bucket?name={}&prefix={}\">{}</a>",
                    encode(name),
                    encode(folder),
                    escape(folder)
                ),
                "folder".to_string(),
                String::new(),
            ]
        })
        .collect();
    rows.extend(listed.contents().iter().map(|object| {
        let key = object.key().unwrap_or_default();
        vec![
            format!(
                "<a href=\"/resources/object?bucket={}&key={}\">{}</a>",
                encode(name),
                encode(key),
                escape(key)
            ),
            human_bytes(u64::try_from(object.size().unwrap_or(0)).unwrap_or(0)),
            object
                .last_modified()
                .map(|t| t.to_string())
                .unwrap_or_default(),
        ]
    }));
    let more = if listed.is_truncated().unwrap_or(false) {
        format!("<p>only the first {OBJECTS_SHOWN} are listed: narrow the prefix</p>")
    } else {
        String::new()
    };
    Ok(Reply::Page(Page {
        section: "/resources",
        title: format!("Bucket {name}"),
        live: format!(
            "<h2>Bucket {}</h2><p>prefix <code>{}</code></p>{}{more}",
            escape(name),
            escape(if prefix.is_empty() { "/" } else { &prefix }),
            html_table("objects", &["key", "size", "modified"], &rows)
        ),
        controls: format!(
            "<form method=\"get\" action=\"/resources/bucket\"><input type=\"hidden\" name=\"name\" value=\"{}\">\
prefix <input type=\"text\" name=\"prefix\" value=\"{}\"> <button>list</button></form>",
            escape(name),
            escape(&prefix)
        ),
    }))
}

/// `GET /resources/object?bucket=B&key=K`: the object, to save.
pub async fn object(context: &Context, query: &Query) -> Result<Reply, Reply> {
    let (bucket, key) = (required(query, "bucket")?, required(query, "key")?);
    let clients = clients(context).await?;
    let object = match clients.s3.get_object().bucket(bucket).key(key).send().await {
        Ok(object) => object,
        Err(e) => {
            return Err(aws_problem(
                &format!("s3://{bucket}/{key}"),
                describe_error(&e),
            ))
        }
    };
    if object.content_length().unwrap_or(0) > DOWNLOAD_LIMIT {
        return Err(Reply::Problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "s3://{bucket}/{key} is {}: the dashboard hands out at most {}; use `aws s3 cp s3://{bucket}/{key} .`",
                human_bytes(u64::try_from(object.content_length().unwrap_or(0)).unwrap_or(0)),
                human_bytes(DOWNLOAD_LIMIT as u64)
            ),
        ));
    }
    let content_type = object
        .content_type()
        .unwrap_or("application/octet-stream")
        .to_string();
    match object.body.collect().await {
        Ok(body) => Ok(Reply::Download {
            name: key.rsplit('/').next().unwrap_or(key).to_string(),
            content_type,
            body: body.into_bytes(),
        }),
        Err(e) => Err(aws_problem(&format!("reading s3://{bucket}/{key}"), e)),
    }
}

/// `GET /resources/queue?name=Q`: counts and up to 10 messages, peeked (left in the queue).
pub async fn queue(context: &Context, query: &Query) -> Result<Reply, Reply> {
    let name = required(query, "name")?;
    let clients = clients(context).await?;
    let url = queue_url(&clients, name).await?;
    // Counts are shown as the engine gives them; a queue whose attributes cannot be read still
    // shows its messages.
    let (visible, in_flight) = match crate::inventory::queue_attributes(&clients, &url).await {
        Ok(attributes) => {
            let (visible, in_flight) = crate::inventory::message_counts(&attributes);
            (visible.to_string(), in_flight.to_string())
        }
        Err(_) => Default::default(),
    };
    let fifo = name.ends_with(".fifo");
    // Peeking: received with no visibility timeout, so the messages stay for their consumers.
    let peeked = crate::queues::receive_everything(&clients.sqs, &url)
        .visibility_timeout(0)
        .send()
        .await;
    let messages = match peeked {
        Ok(output) => output.messages.unwrap_or_default(),
        Err(e) => return Err(aws_problem(&format!("peeking {name}"), describe_error(&e))),
    };
    let rows: Vec<Vec<String>> = messages
        .iter()
        .map(|m| {
            let group = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .cloned()
                .unwrap_or_default();
            vec![
                escape(m.message_id().unwrap_or_default()),
                escape(&group),
                pre(m.body().unwrap_or_default()),
            ]
        })
        .collect();
    let group_field = if fifo {
        "group id <input type=\"text\" name=\"group\" value=\"dashboard\"><br>"
    } else {
        ""
    };
    Ok(Reply::Page(Page {
        section: "/resources",
        title: format!("Queue {name}"),
        live: format!(
            "<h2>Queue {}</h2><p><span id=\"visible\">{}</span> visible · {} in flight</p>\
<p>peeked, left in the queue:</p>{}",
            escape(name),
            visible,
            in_flight,
            html_table("messages", &["id", "group", "body"], &rows)
        ),
        controls: format!(
            "<form method=\"post\" action=\"/resources/queue/send\" id=\"send\"><b>Send a message</b><br>\
<input type=\"hidden\" name=\"name\" value=\"{}\">{group_field}<textarea name=\"body\"></textarea><br>\
<button>send</button></form>",
            escape(name)
        ),
    }))
}

/// `POST /resources/queue/send`: one message (FIFO: in the form's group, deduplicated by its body).
pub async fn send_message(context: &Context, form: &Query) -> Result<Reply, Reply> {
    let (name, body) = (required(form, "name")?, required(form, "body")?);
    let back = format!("/resources/queue?name={}", encode(name));
    let clients = clients(context).await?;
    let url = queue_url(&clients, name).await?;
    let mut send = clients
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body(body);
    if name.ends_with(".fifo") {
        let group = form
            .get("group")
            .filter(|g| !g.is_empty())
            .map_or("dashboard", String::as_str);
        let deduplication = blake3::hash(format!("{group}\u{0}{body}").as_bytes()).to_hex();
        send = send
            .message_group_id(group)
            .message_deduplication_id(deduplication.as_str());
    }
    let flash = match send.send().await {
        Ok(output) => format!("sent message {}", output.message_id().unwrap_or_default()),
        Err(e) => format!("not sent: {}", describe_error(&e)),
    };
    Ok(Reply::Redirect { to: back, flash })
}

/// `GET /resources/topic?name=T`: subscriptions and a form to publish.
pub async fn topic(context: &Context, query: &Query) -> Result<Reply, Reply> {
    let name = required(query, "name")?;
    let clients = clients(context).await?;
    let arn = topic_arn(&clients, name).await?;
    let subscriptions = match clients
        .sns
        .list_subscriptions_by_topic()
        .topic_arn(&arn)
        .send()
        .await
    {
        Ok(output) => output.subscriptions.unwrap_or_default(),
        Err(e) => return Err(aws_problem(&format!("topic {name}"), describe_error(&e))),
    };
    let rows: Vec<Vec<String>> = subscriptions
        .iter()
        .map(|s| {
            vec![
                escape(s.protocol().unwrap_or_default()),
                escape(s.endpoint().unwrap_or_default()),
            ]
        })
        .collect();
    Ok(Reply::Page(Page {
        section: "/resources",
        title: format!("Topic {name}"),
        live: format!(
            "<h2>Topic {}</h2><p><code>{}</code></p>{}",
            escape(name),
            escape(&arn),
            html_table("subscriptions", &["protocol", "endpoint"], &rows)
        ),
        controls: format!(
            "<form method=\"post\" action=\"/resources/topic/publish\" id=\"publish\"><b>Publish a message</b><br>\
<input type=\"hidden\" name=\"name\" value=\"{}\">subject <input type=\"text\" name=\"subject\"><br>\
<textarea name=\"message\"></textarea><br><button>publish</button></form>",
            escape(name)
        ),
    }))
}

/// `POST /resources/topic/publish`.
pub async fn publish(context: &Context, form: &Query) -> Result<Reply, Reply> {
    let (name, message) = (required(form, "name")?, required(form, "message")?);
    let back = format!("/resources/topic?name={}", encode(name));
    let clients = clients(context).await?;
    let arn = topic_arn(&clients, name).await?;
    let mut publish = clients.sns.publish().topic_arn(&arn).message(message);
    if let Some(subject) = form.get("subject").filter(|s| !s.is_empty()) {
        publish = publish.subject(subject);
    }
    let flash = match publish.send().await {
        Ok(output) => format!(
            "published message {}",
            output.message_id().unwrap_or_default()
        ),
        Err(e) => format!("not published: {}", describe_error(&e)),
    };
    Ok(Reply::Redirect { to: back, flash })
}
