//! The Redis part of a snapshot: every key through Redis' own serialization (`DUMP`, restored with
//! `RESTORE ... REPLACE`, which checks the payload's checksum and version), with its time to live.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use base64::Engine;

use super::records::RedisRecord;

/// Keys asked per `SCAN` step.
const SCAN_COUNT: u32 = 1000;
/// Time limit of one Redis command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

async fn connect(url: &str) -> Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url).with_context(|| format!("bad Redis URL {url}"))?;
    tokio::time::timeout(COMMAND_TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| {
            anyhow!(
                "Redis at {url} did not answer within {} s",
                COMMAND_TIMEOUT.as_secs()
            )
        })?
        .with_context(|| format!("connecting to Redis at {url}"))
}

async fn timed<T>(
    url: &str,
    what: &str,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T> {
    tokio::time::timeout(COMMAND_TIMEOUT, call)
        .await
        .map_err(|_| {
            anyhow!(
                "Redis at {url}: {what} did not answer within {} s",
                COMMAND_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| anyhow!("Redis at {url}: {what} failed: {e}"))
}

/// The server's version (`INFO server`), for the manifest.
pub async fn version(url: &str) -> Option<String> {
    let mut connection = connect(url).await.ok()?;
    let info: String = timed(
        url,
        "INFO",
        redis::cmd("INFO")
            .arg("server")
            .query_async(&mut connection),
    )
    .await
    .ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(|v| v.trim().to_string())
}

/// Every key of the database, sorted by key.
pub async fn save(url: &str) -> Result<Vec<RedisRecord>> {
    let mut connection = connect(url).await?;
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, found): (u64, Vec<Vec<u8>>) = timed(
            url,
            "SCAN",
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut connection),
        )
        .await?;
        keys.extend(found);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    keys.sort();
    keys.dedup();
    let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut records = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(SCAN_COUNT as usize) {
        let mut pipeline = redis::pipe();
        for key in chunk {
            pipeline.cmd("DUMP").arg(key).cmd("PTTL").arg(key);
        }
        let answers: Vec<(Option<Vec<u8>>, i64)> =
            timed(url, "DUMP", pipeline.query_async(&mut connection)).await?;
        for (key, (dump, ttl)) in chunk.iter().zip(answers) {
            // A key that expired or was deleted between SCAN and DUMP is not there any more.
            let Some(dump) = dump else { continue };
            records.push(RedisRecord {
                key: encode(key),
                ttl_ms: u64::try_from(ttl).ok().filter(|t| *t > 0),
                dump: encode(&dump),
            });
        }
    }
    Ok(records)
}

/// Empties the database (`--replace`).
pub async fn flush(url: &str) -> Result<()> {
    let mut connection = connect(url).await?;
    timed::<String>(
        url,
        "FLUSHDB",
        redis::cmd("FLUSHDB").query_async(&mut connection),
    )
    .await?;
    Ok(())
}

/// Restores every saved key (replacing a key of the same name); the number restored.
pub async fn load(url: &str, records: &[RedisRecord]) -> Result<u64> {
    let mut connection = connect(url).await?;
    let decode = |text: &str, what: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| anyhow!("redis.jsonl: a {what} is not base64 ({e})"))
    };
    let mut restored = 0;
    for chunk in records.chunks(SCAN_COUNT as usize) {
        let mut pipeline = redis::pipe();
        for record in chunk {
            pipeline
                .cmd("RESTORE")
                .arg(decode(&record.key, "key")?)
                .arg(record.ttl_ms.unwrap_or(0))
                .arg(decode(&record.dump, "DUMP payload")?)
                .arg("REPLACE")
                .ignore();
        }
        timed::<()>(url, "RESTORE", pipeline.query_async(&mut connection)).await?;
        restored += chunk.len() as u64;
    }
    Ok(restored)
}
