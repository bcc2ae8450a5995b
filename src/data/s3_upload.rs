//! S3 uploads with bounded memory. A source whose size is known in advance (a plain file's length,
//! a gzip file's ISIZE trailer) and is at most `SINGLE_PUT_LIMIT` is read whole and sent as one
//! `PutObject` (endpoints like moto pay a lot for multipart); anything else is streamed: read (and
//! gunzipped) in parts on a blocking thread and sent as a multipart upload with parts in parallel.
//! Memory is bounded by a semaphore shared by all uploads: every `PART_SIZE` in memory holds a permit,
//! and a whole-object read takes all its permits at once (so uploads cannot deadlock on the budget).

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::aws::{describe_error, error_code};

/// Size of one part (S3 needs at least 5 MiB for every part but the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts held in memory at once, across all concurrent uploads (PART_SIZE each).
pub const PARTS_IN_MEMORY: usize = 12;
/// Largest object read whole and sent with one PutObject.
pub const SINGLE_PUT_LIMIT: usize = 64 * 1024 * 1024;
/// Parts of one upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

/// Shared limits of concurrent uploads.
#[derive(Debug, Clone)]
pub struct UploadLimits {
    part_size: usize,
    parts_in_memory: usize,
    buffers: Arc<Semaphore>,
}

impl Default for UploadLimits {
    fn default() -> Self {
        UploadLimits::new(PART_SIZE, PARTS_IN_MEMORY)
    }
}

impl UploadLimits {
    /// Limits with a part size and a number of parts that may be held in memory.
    pub fn new(part_size: usize, parts_in_memory: usize) -> UploadLimits {
        let parts_in_memory = parts_in_memory.max(2);
        UploadLimits {
            part_size: part_size.max(5 * 1024 * 1024),
            parts_in_memory,
            buffers: Arc::new(Semaphore::new(parts_in_memory)),
        }
    }
}

/// One object to write.
#[derive(Debug, Clone)]
pub struct UploadRequest<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub source: &'a Path,
    pub gunzip: bool,
    pub content_type: &'a str,
    pub metadata: HashMap<String, String>,
}

/// Why an upload failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    Source(String),
    #[error("{0}")]
    Endpoint(String),
}

struct Part {
    bytes: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

/// Uploads `request.source` (gunzipped when asked); returns the bytes written to S3.
pub async fn upload(
    s3: &aws_sdk_s3::Client,
    request: &UploadRequest<'_>,
    limits: &UploadLimits,
) -> Result<u64, UploadError> {
    if let Some(length) = put_whole_if_small(s3, request, limits).await? {
        return Ok(length);
    }
    let (sender, mut parts) = mpsc::channel::<Result<Part, String>>(1);
    let source = request.source.to_path_buf();
    let gunzip = request.gunzip;
    let part_size = limits.part_size;
    let buffers = limits.buffers.clone();
    let runtime = tokio::runtime::Handle::current();
    let reader = tokio::task::spawn_blocking(move || {
        read_parts(&source, gunzip, part_size, &buffers, &runtime, &sender)
    });
    // Decide from the first part alone: waiting for a second part while holding the first could
    // deadlock concurrent uploads on the shared part budget.
    let result = match next_part(&mut parts).await? {
        Some(first) if first.bytes.len() == limits.part_size => {
            put_multipart(s3, request, first, &mut parts).await
        }
        Some(Part { bytes, _permit }) => put_whole(s3, request, bytes).await,
        None => put_whole(s3, request, Vec::new()).await,
    };
    drop(parts);
    let _ = reader.await;
    result
}

/// Sends the object with one PutObject when its size is known and small enough; `None` when the
/// streamed path must be used (unknown or large size, or a gzip trailer that understated it).
async fn put_whole_if_small(
    s3: &aws_sdk_s3::Client,
    request: &UploadRequest<'_>,
    limits: &UploadLimits,
) -> Result<Option<u64>, UploadError> {
    let largest = SINGLE_PUT_LIMIT.min(limits.part_size * limits.parts_in_memory);
    let Some(expected) = expected_size(request.source, request.gunzip) else {
        return Ok(None);
    };
    if expected > largest as u64 {
        return Ok(None);
    }
    let parts = (expected as usize).div_ceil(limits.part_size).max(1);
    let capacity = parts * limits.part_size;
    let permits = limits
        .buffers
        .clone()
        .acquire_many_owned(parts as u32)
        .await
        .map_err(|e| UploadError::Source(format!("internal: {e}")))?;
    let source = request.source.to_path_buf();
    let gunzip = request.gunzip;
    let body = tokio::task::spawn_blocking(move || {
        read_whole(&source, gunzip, expected as usize, capacity)
    })
    .await
    .map_err(|e| UploadError::Source(format!("internal: {e}")))?
    .map_err(UploadError::Source)?;
    let outcome = match body {
        Some(bytes) => put_whole(s3, request, bytes).await.map(Some),
        None => Ok(None),
    };
    drop(permits);
    outcome
}

/// The size of the object a source becomes: a plain file's length, or a gzip file's ISIZE trailer
/// (its uncompressed size modulo 4 GiB; a hint that `read_whole` checks).
pub fn expected_size(source: &Path, gunzip: bool) -> Option<u64> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(source).ok()?;
    let length = file.metadata().ok()?.len();
    if !gunzip {
        return Some(length);
    }
    if length < 18 {
        return None;
    }
    file.seek(SeekFrom::End(-4)).ok()?;
    let mut trailer = [0u8; 4];
    file.read_exact(&mut trailer).ok()?;
    Some(u64::from(u32::from_le_bytes(trailer)))
}

/// Reads the whole source (gunzipped when asked) if it fits in `capacity` bytes; `None` when it
/// is larger than that.
fn read_whole(
    source: &Path,
    gunzip: bool,
    expected: usize,
    capacity: usize,
) -> Result<Option<Vec<u8>>, String> {
    let file = std::fs::File::open(source)
        .map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    let buffered = BufReader::with_capacity(256 * 1024, file);
    let reader: Box<dyn Read> = if gunzip {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    let mut bytes = Vec::with_capacity(expected.min(capacity));
    reader
        .take(capacity as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            if gunzip {
                format!("corrupt gzip data in {}: {e}", source.display())
            } else {
                format!("cannot read {}: {e}", source.display())
            }
        })?;
    if bytes.len() > capacity {
        return Ok(None);
    }
    Ok(Some(bytes))
}

async fn next_part(
    parts: &mut mpsc::Receiver<Result<Part, String>>,
) -> Result<Option<Part>, UploadError> {
    match parts.recv().await {
        Some(Ok(part)) => Ok(Some(part)),
        Some(Err(message)) => Err(UploadError::Source(message)),
        None => Ok(None),
    }
}

/// Reads the source in parts of `part_size` (the last may be shorter) and sends them.
fn read_parts(
    source: &PathBuf,
    gunzip: bool,
    part_size: usize,
    buffers: &Arc<Semaphore>,
    runtime: &tokio::runtime::Handle,
    sender: &mpsc::Sender<Result<Part, String>>,
) {
    let file = match std::fs::File::open(source) {
        Ok(file) => file,
        Err(e) => {
            let _ = sender.blocking_send(Err(format!("cannot read {}: {e}", source.display())));
            return;
        }
    };
    let buffered = BufReader::with_capacity(256 * 1024, file);
    let mut reader: Box<dyn Read> = if gunzip {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    loop {
        let Ok(permit) = runtime.block_on(buffers.clone().acquire_owned()) else {
            return;
        };
        let mut bytes = vec![0u8; part_size];
        let mut filled = 0;
        while filled < part_size {
            match reader.read(&mut bytes[filled..]) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let what = if gunzip {
                        format!("corrupt gzip data in {}: {e}", source.display())
                    } else {
                        format!("cannot read {}: {e}", source.display())
                    };
                    let _ = sender.blocking_send(Err(what));
                    return;
                }
            }
        }
        bytes.truncate(filled);
        let last = filled < part_size;
        if filled > 0 || last {
            let part = Part {
                bytes,
                _permit: permit,
            };
            if sender.blocking_send(Ok(part)).is_err() {
                return;
            }
        }
        if last {
            return;
        }
    }
}

fn endpoint_error<E, R>(
    request: &UploadRequest<'_>,
    error: &aws_sdk_s3::error::SdkError<E, R>,
) -> UploadError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    if error_code(error).as_deref() == Some("NoSuchBucket") {
        return UploadError::Endpoint(format!(
            "bucket {} does not exist; declare it under [[buckets]] in inframock.toml (run `inframock run` to create it)",
            request.bucket
        ));
    }
    UploadError::Endpoint(format!(
        "writing s3://{}/{}: {}",
        request.bucket,
        request.key,
        describe_error(error)
    ))
}

async fn put_whole(
    s3: &aws_sdk_s3::Client,
    request: &UploadRequest<'_>,
    bytes: Vec<u8>,
) -> Result<u64, UploadError> {
    let length = bytes.len() as u64;
    s3.put_object()
        .bucket(request.bucket)
        .key(request.key)
        .content_type(request.content_type)
        .set_metadata(Some(request.metadata.clone()))
        .body(ByteStream::from(bytes))
        .send()
        .await
        .map_err(|e| endpoint_error(request, &e))?;
    Ok(length)
}

async fn put_multipart(
    s3: &aws_sdk_s3::Client,
    request: &UploadRequest<'_>,
    first_part: Part,
    rest: &mut mpsc::Receiver<Result<Part, String>>,
) -> Result<u64, UploadError> {
    let created = s3
        .create_multipart_upload()
        .bucket(request.bucket)
        .key(request.key)
        .content_type(request.content_type)
        .set_metadata(Some(request.metadata.clone()))
        .send()
        .await
        .map_err(|e| endpoint_error(request, &e))?;
    let upload_id = created
        .upload_id
        .ok_or_else(|| UploadError::Endpoint("the endpoint returned no upload id".into()))?;
    let outcome = send_parts(s3, request, &upload_id, first_part, rest).await;
    match outcome {
        Ok((mut completed, length)) => {
            completed.sort_by_key(|p| p.part_number);
            let completed = s3
                .complete_multipart_upload()
                .bucket(request.bucket)
                .key(request.key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(completed))
                        .build(),
                )
                .send()
                .await;
            match completed {
                Ok(_) => Ok(length),
                // Some moto releases (before 5.2.5) answer with an XML root the SDK rejects although
                // the upload completed: trust the object itself when it carries our fingerprint.
                Err(e)
                    if error_code(&e).is_none() && completed_anyway(s3, request, length).await =>
                {
                    Ok(length)
                }
                Err(e) => Err(endpoint_error(request, &e)),
            }
        }
        Err(e) => {
            // The previous object (if any) stays as it was; drop the partial upload.
            let _ = s3
                .abort_multipart_upload()
                .bucket(request.bucket)
                .key(request.key)
                .upload_id(&upload_id)
                .send()
                .await;
            Err(e)
        }
    }
}

/// Whether the object now holds this upload: its length and metadata match.
async fn completed_anyway(
    s3: &aws_sdk_s3::Client,
    request: &UploadRequest<'_>,
    length: u64,
) -> bool {
    let Ok(head) = s3
        .head_object()
        .bucket(request.bucket)
        .key(request.key)
        .send()
        .await
    else {
        return false;
    };
    head.content_length == Some(length as i64) && head.metadata.as_ref() == Some(&request.metadata)
}

async fn send_parts(
    s3: &aws_sdk_s3::Client,
    request: &UploadRequest<'_>,
    upload_id: &str,
    first_part: Part,
    rest: &mut mpsc::Receiver<Result<Part, String>>,
) -> Result<(Vec<CompletedPart>, u64), UploadError> {
    let mut in_flight = FuturesUnordered::new();
    let mut completed = Vec::new();
    let mut length = 0u64;
    let mut number = 0i32;
    let mut pending = Some(first_part);
    let mut source_done = false;
    loop {
        while in_flight.len() < PARTS_IN_FLIGHT {
            let part = match pending.take() {
                Some(part) => part,
                None if source_done => break,
                None => match next_part(rest).await? {
                    Some(part) => part,
                    None => {
                        source_done = true;
                        break;
                    }
                },
            };
            if part.bytes.is_empty() && number > 0 {
                continue;
            }
            number += 1;
            length += part.bytes.len() as u64;
            let part_number = number;
            let call = s3
                .upload_part()
                .bucket(request.bucket)
                .key(request.key)
                .upload_id(upload_id)
                .part_number(part_number)
                .body(ByteStream::from(part.bytes))
                .send();
            let permit = part._permit;
            // Spawned, so parts in flight progress while this loop waits for the next part.
            in_flight.push(tokio::spawn(async move {
                let outcome = call.await;
                drop(permit);
                (part_number, outcome)
            }));
        }
        match in_flight.next().await.transpose() {
            Err(e) => return Err(UploadError::Endpoint(format!("internal: {e}"))),
            Ok(Some((part_number, Ok(output)))) => completed.push(
                CompletedPart::builder()
                    .part_number(part_number)
                    .set_e_tag(output.e_tag)
                    .build(),
            ),
            Ok(Some((_, Err(e)))) => return Err(endpoint_error(request, &e)),
            Ok(None) => break,
        }
    }
    Ok((completed, length))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip_file(dir: &Path, name: &str, members: &[&[u8]]) -> PathBuf {
        let path = dir.join(name);
        let mut out = Vec::new();
        for member in members {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(member).unwrap();
            out.extend(encoder.finish().unwrap());
        }
        std::fs::write(&path, out).unwrap();
        path
    }

    #[test]
    fn expected_size_reads_the_gzip_trailer_or_the_file_length() {
        let dir = tempfile::tempdir().unwrap();
        let one = gzip_file(dir.path(), "a.gz", &[&[7u8; 5000]]);
        assert_eq!(expected_size(&one, true), Some(5000));
        assert_eq!(
            expected_size(&one, false),
            Some(std::fs::metadata(&one).unwrap().len())
        );
        std::fs::write(dir.path().join("tiny"), b"x").unwrap();
        assert_eq!(expected_size(&dir.path().join("tiny"), true), None);
        assert_eq!(expected_size(&dir.path().join("missing"), false), None);
    }

    #[test]
    fn read_whole_refuses_what_is_larger_than_the_trailer_said() {
        let dir = tempfile::tempdir().unwrap();
        // Two members: the trailer names only the last one's size.
        let two = gzip_file(dir.path(), "b.gz", &[&[1u8; 3000], &[2u8; 100]]);
        let hint = expected_size(&two, true).unwrap() as usize;
        assert_eq!(hint, 100);
        assert_eq!(
            read_whole(&two, true, hint, 1000).unwrap(),
            None,
            "falls back to streaming"
        );
        let whole = read_whole(&two, true, hint, 8192).unwrap().unwrap();
        assert_eq!(whole.len(), 3100);
        let corrupt = dir.path().join("c.gz");
        let mut bytes = std::fs::read(&two).unwrap();
        let middle = bytes.len() / 3;
        bytes[middle..middle + 8].fill(0xff);
        std::fs::write(&corrupt, bytes).unwrap();
        let err = read_whole(&corrupt, true, 100, 8192).unwrap_err();
        assert!(err.contains("corrupt gzip data"), "{err}");
    }
}
