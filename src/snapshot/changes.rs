//! Whether a table changed since an earlier save, read from the table's DynamoDB stream.
//!
//! Every write to a table with a stream (put, update, delete, batch, transaction, PartiQL) adds a
//! record to it. A save notes where the stream ended before it read the table; a later save that
//! finds no record after that mark has proof that the table holds what the earlier snapshot holds,
//! and reuses its item files instead of reading every item again (on moto, a Scan costs ~1.6 ms
//! per item). Without proof (no stream, another stream, a shard that went away, a read that
//! failed) the table is read whole.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use aws_sdk_dynamodbstreams::types::ShardIteratorType;

use super::records::StreamMark;
use crate::aws::{describe_error, AwsClients};

/// Records asked for per `GetRecords` call (the most the API allows).
const RECORDS_PER_PAGE: i32 = 1000;
/// Pages read from one shard before giving up on proof (ten million records).
const MAX_PAGES: usize = 10_000;

/// What reading a stream showed.
#[derive(Debug)]
pub struct Reading {
    /// Where the stream ends now: the mark this save records.
    pub mark: StreamMark,
    /// True when the stream proves nothing was written after `since`: false when something was,
    /// or when there was no comparable mark.
    pub unchanged_since: bool,
}

/// Reads the stream `stream_arn` of a table created at `table_created_ms`, from the earlier mark
/// `since` (when it is a mark of this same stream and table) to its end.
pub async fn read(
    clients: &AwsClients,
    stream_arn: &str,
    table_created_ms: Option<i64>,
    since: Option<&StreamMark>,
) -> Result<Reading> {
    let since =
        since.filter(|m| m.stream_arn == stream_arn && m.table_created_ms == table_created_ms);
    let shards = shard_ids(clients, stream_arn).await?;
    let mut unchanged = since.is_some();
    if let Some(since) = since {
        // A shard the mark knew that is gone now was trimmed: what it held cannot be checked.
        if since.shards.keys().any(|id| !shards.contains(id)) {
            unchanged = false;
        }
    }
    let mut mark = StreamMark {
        stream_arn: stream_arn.to_string(),
        table_created_ms,
        shards: BTreeMap::new(),
    };
    for shard in shards {
        let after = since.and_then(|m| m.shards.get(&shard)).cloned().flatten();
        let (last, any) = read_shard(clients, stream_arn, &shard, after.as_deref()).await?;
        if any {
            unchanged = false;
        }
        mark.shards.insert(shard, last);
    }
    Ok(Reading {
        mark,
        unchanged_since: unchanged,
    })
}

/// How far along its stream a mark is, comparable between marks of one stream: each shard's
/// sequence number (digits, compared by length then text), in shard order.
pub fn progress(mark: &StreamMark) -> Vec<(usize, &str)> {
    mark.shards
        .values()
        .map(|sequence| sequence.as_deref().map_or((0, ""), |s| (s.len(), s)))
        .collect()
}

/// Every shard of the stream.
async fn shard_ids(clients: &AwsClients, stream_arn: &str) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut start: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let described = clients
            .dynamodb_streams
            .describe_stream()
            .stream_arn(stream_arn)
            .set_exclusive_start_shard_id(start.clone())
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "stream {stream_arn} (DescribeStream at {}): {}",
                    clients.url,
                    describe_error(&e)
                )
            })?;
        let Some(description) = described.stream_description else {
            break;
        };
        ids.extend(
            description
                .shards()
                .iter()
                .filter_map(|s| s.shard_id().map(str::to_string)),
        );
        match description.last_evaluated_shard_id {
            Some(next) if Some(&next) != start.as_ref() => start = Some(next),
            _ => return Ok(ids),
        }
    }
    Err(anyhow!("stream {stream_arn}: too many shards to check"))
}

/// Reads one shard after `after` (from its first record when `None`, or when `after`'s record is
/// gone) to its end: where it ends (the last record's sequence number, `None` for an empty shard)
/// and whether anything was written after `after`.
async fn read_shard(
    clients: &AwsClients,
    stream_arn: &str,
    shard: &str,
    after: Option<&str>,
) -> Result<(Option<String>, bool)> {
    let streams = &clients.dynamodb_streams;
    let failed = |call: &str, e: String| {
        anyhow!(
            "stream {stream_arn}, shard {shard} ({call} at {}): {e}",
            clients.url
        )
    };
    let iterator_at = |kind: ShardIteratorType, sequence: Option<&str>| {
        streams
            .get_shard_iterator()
            .stream_arn(stream_arn)
            .shard_id(shard)
            .shard_iterator_type(kind)
            .set_sequence_number(sequence.map(str::to_string))
            .send()
    };
    // The mark's own record must still be there: a stream that dropped records (trimmed, or
    // emptied by moto once a Lambda read them) proves nothing after it; read it from its start.
    let mut dropped = false;
    if let Some(sequence) = after {
        let still_there = match iterator_at(ShardIteratorType::AtSequenceNumber, Some(sequence))
            .await
            .ok()
            .and_then(|found| found.shard_iterator)
        {
            Some(at) => streams
                .get_records()
                .shard_iterator(at)
                .limit(1)
                .send()
                .await
                .ok()
                .and_then(|page| {
                    page.records()
                        .first()
                        .and_then(|r| r.dynamodb())
                        .and_then(|d| d.sequence_number())
                        .map(|found| found == sequence)
                })
                .unwrap_or(false),
            None => false,
        };
        if !still_there {
            dropped = true;
        }
    }
    let start = after.filter(|_| !dropped);
    let kind = if start.is_some() {
        ShardIteratorType::AfterSequenceNumber
    } else {
        ShardIteratorType::TrimHorizon
    };
    let mut iterator = iterator_at(kind, start)
        .await
        .map_err(|e| failed("GetShardIterator", describe_error(&e)))?
        .shard_iterator;
    let mut last = start.map(str::to_string);
    let mut any = dropped;
    for _ in 0..MAX_PAGES {
        let Some(current) = iterator.take() else {
            return Ok((last, any));
        };
        let page = streams
            .get_records()
            .shard_iterator(current)
            .limit(RECORDS_PER_PAGE)
            .send()
            .await
            .map_err(|e| failed("GetRecords", describe_error(&e)))?;
        let records = page.records();
        if records.is_empty() {
            return Ok((last, any));
        }
        any = true;
        if let Some(sequence) = records
            .iter()
            .rev()
            .find_map(|r| r.dynamodb().and_then(|d| d.sequence_number()))
        {
            last = Some(sequence.to_string());
        }
        iterator = page.next_shard_iterator;
    }
    Err(anyhow!(
        "stream {stream_arn}, shard {shard}: more than {} records to read",
        MAX_PAGES * RECORDS_PER_PAGE as usize
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(shards: &[(&str, Option<&str>)]) -> StreamMark {
        StreamMark {
            stream_arn: "arn".into(),
            table_created_ms: Some(1),
            shards: shards
                .iter()
                .map(|(id, seq)| (id.to_string(), seq.map(str::to_string)))
                .collect(),
        }
    }

    #[test]
    fn a_mark_further_along_its_stream_compares_greater() {
        let empty = mark(&[("s1", None)]);
        let early = mark(&[("s1", Some("900"))]);
        let late = mark(&[("s1", Some("1000"))]);
        assert!(progress(&early) > progress(&empty));
        // Sequence numbers are digits of any length: 1000 is after 900.
        assert!(progress(&late) > progress(&early));
        assert_eq!(progress(&late), progress(&late.clone()));
    }
}
