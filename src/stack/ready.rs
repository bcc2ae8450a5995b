//! Readiness: a service is ready when its process is alive AND it answers its protocol
//! (AWS: one cheap list call per service; Redis: PING), checked in a loop with a deadline.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::aws::{describe_error, AwsClients, Endpoint};

/// How to ask a service whether it answers.
#[derive(Debug, Clone)]
pub enum Probe {
    /// S3 ListBuckets, DynamoDB ListTables, SQS ListQueues, SNS ListTopics against an endpoint.
    Aws(Endpoint),
    /// PING against a Redis URL.
    Redis { url: String },
    /// `GET <url>` answers 2xx (the health routes of our own helpers).
    Http { url: String },
    /// A TCP connection to `host:port` is accepted (memcached, declared services).
    Tcp { address: String },
    /// A command exits 0 within 5 s (`pg_isready`).
    Command { argv: Vec<String> },
    /// Nothing to ask: running is ready (the queue worker, which has no port).
    Alive,
}

impl Probe {
    /// One probe: `Ok` when the service answered, else why not.
    pub async fn check(&self) -> Result<(), String> {
        match self {
            Probe::Aws(endpoint) => {
                let clients = AwsClients::for_probe(endpoint).await;
                probe_aws(&clients)
                    .await
                    .map_err(|why| format!("{}: {why}", endpoint.url))
            }
            Probe::Redis { url } => probe_redis(url).await,
            Probe::Http { url } => probe_http(url).await,
            Probe::Tcp { address } => probe_tcp(address).await,
            Probe::Command { argv } => probe_command(argv).await,
            Probe::Alive => Ok(()),
        }
    }
}

async fn probe_aws(clients: &AwsClients) -> Result<(), String> {
    let (s3, dynamodb, sqs, sns) = tokio::join!(
        clients.s3.list_buckets().send(),
        clients.dynamodb.list_tables().limit(1).send(),
        clients.sqs.list_queues().max_results(1).send(),
        clients.sns.list_topics().send(),
    );
    s3.map_err(|e| format!("S3 ListBuckets: {}", describe_error(&e)))?;
    dynamodb.map_err(|e| format!("DynamoDB ListTables: {}", describe_error(&e)))?;
    sqs.map_err(|e| format!("SQS ListQueues: {}", describe_error(&e)))?;
    sns.map_err(|e| format!("SNS ListTopics: {}", describe_error(&e)))?;
    Ok(())
}

async fn probe_http(health: &str) -> Result<(), String> {
    use http_body_util::Empty;
    let uri: http::Uri = health
        .parse()
        .map_err(|e| format!("bad mock URL {health}: {e}"))?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    match tokio::time::timeout(Duration::from_secs(2), client.get(uri)).await {
        Ok(Ok(response)) if response.status().is_success() => Ok(()),
        Ok(Ok(response)) => Err(format!("GET {health} answered {}", response.status())),
        Ok(Err(e)) => Err(format!(
            "GET {health}: {}",
            crate::mock::proxy::error_chain(&e)
        )),
        Err(_) => Err(format!("GET {health}: no answer within 2 s")),
    }
}

async fn probe_tcp(address: &str) -> Result<(), String> {
    match tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(address),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("connecting to {address}: {e}")),
        Err(_) => Err(format!("connecting to {address}: no answer within 2 s")),
    }
}

async fn probe_command(argv: &[String]) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("the probe command is empty".to_string());
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(5), command.output()).await {
        Ok(Ok(output)) if output.status.success() => Ok(()),
        Ok(Ok(output)) => Err(format!(
            "`{}` exited with {}: {}",
            argv.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout).trim()
        )),
        Ok(Err(e)) => Err(format!("cannot run {program}: {e}")),
        Err(_) => Err(format!("`{}` took longer than 5 s", argv.join(" "))),
    }
}

async fn probe_redis(url: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| format!("bad Redis URL {url}: {e}"))?;
    let attempt = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    match tokio::time::timeout(Duration::from_secs(2), attempt).await {
        Ok(Ok(reply)) if reply == "PONG" => Ok(()),
        Ok(Ok(reply)) => Err(format!("PING answered {reply:?}")),
        Ok(Err(e)) => Err(format!("PING failed: {e}")),
        Err(_) => Err("PING timed out".to_string()),
    }
}

/// Why waiting for a service failed.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("{service} did not answer within {seconds} s (last probe: {last_error}); {hint}")]
    Deadline {
        service: String,
        seconds: u64,
        last_error: String,
        hint: String,
    },
    #[error("{0}")]
    Died(String),
    /// The service answered with a TLS certificate this machine does not trust: no wait mends that.
    #[error("{service} refused: {last_error}")]
    Untrusted { service: String, last_error: String },
}

/// Waits until `probe` succeeds, checking before each probe that the service is still alive
/// (`alive` returns the reason it is not). Polls quickly at first, then every half second.
pub async fn wait_until_ready<F, Fut>(
    service: &str,
    probe: &Probe,
    deadline: Duration,
    hint: &str,
    mut alive: F,
) -> Result<Duration, NotReady>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        alive().await.map_err(NotReady::Died)?;
        let last_error = match probe.check().await {
            Ok(()) => return Ok(started.elapsed()),
            Err(e) => e,
        };
        if last_error.contains(crate::aws::UNTRUSTED_CERTIFICATE) {
            return Err(NotReady::Untrusted {
                service: service.to_string(),
                last_error,
            });
        }
        if started.elapsed() >= deadline {
            alive().await.map_err(NotReady::Died)?;
            return Err(NotReady::Deadline {
                service: service.to_string(),
                seconds: deadline.as_secs(),
                last_error,
                hint: hint.to_string(),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}
