//! Streamed S3 uploads: the source is read (and gunzipped) in parts on a blocking thread, one
//! `PutObject` when it fits in one part, otherwise a multipart upload with parts sent concurrently.
//! Memory is bounded by a semaphore shared by all uploads: each part in memory holds a permit.

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
pub const PARTS_IN_MEMORY: usize = 8;
/// Parts of one upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

/// Shared limits of concurrent uploads.
#[derive(Debug, Clone)]
pub struct UploadLimits {
    part_size: usize,
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
        UploadLimits {
            part_size: part_size.max(5 * 1024 * 1024),
            buffers: Arc::new(Semaphore::new(parts_in_memory.max(2))),
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
        first => {
            let bytes = first.map(|p| p.bytes).unwrap_or_default();
            put_whole(s3, request, bytes).await
        }
    };
    drop(parts);
    let _ = reader.await;
    result
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
