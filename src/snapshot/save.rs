//! `snapshot save`: read the running stack's state into a staging folder, write the manifest,
//! then swap the snapshot in whole.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::interrupt::Interrupt;
use super::manifest::{self, Counts, Manifest, PartWriter, FORMAT};
use super::records::{
    self, Resources, OBJECTS_FILE, QUEUES_FILE, REDIS_FILE, RESOURCES_FILE, VERSIONS_FILE,
};
use super::store::{self, Staging};
use super::{earlier, export, objects, queues, redis_keys, tables, Service};
use crate::aws::Endpoint;
use crate::config::Settings;
use crate::output::Reporter;
use crate::stack::catalog::{BucketHistory, TableReads};
use crate::stack::state::StackState;
use crate::stack::ServiceName;

/// What a save did.
#[derive(Debug, Serialize)]
pub struct Saved {
    pub name: String,
    pub path: std::path::PathBuf,
    pub manifest: Manifest,
    /// Objects fetched from the endpoint; the others were proven unchanged since an earlier save
    /// and linked from it.
    pub objects_fetched: u64,
    /// Tables whose stream, or whose export's text (on moto), proved them unchanged since an
    /// earlier save: their files were linked from it, not read or parsed again.
    pub tables_unchanged: Vec<String>,
    /// Versioned buckets whose history (older versions, delete markers) was proven unchanged since
    /// an earlier save and taken from it instead of listed again (`snapshot::history`).
    pub histories_unchanged: Vec<String>,
    /// Tables read through the engine's export (`ExportTableToPointInTime`) instead of `Scan`.
    pub tables_exported: Vec<String>,
    /// Tables without a stream (on an engine this stack runs): every save reads them whole, export
    /// or scan, to find out whether they changed.
    pub tables_without_stream: Vec<String>,
    pub elapsed_ms: u64,
    /// Milliseconds each service took to save (a slow engine shows where).
    pub elapsed_ms_by_service: std::collections::BTreeMap<Service, u64>,
}

/// Saves `services` of the running `stack` as snapshot `name` (replacing one of that name).
/// `explicit`: the services were named on the command line (a missing one is then an error,
/// not a note). When `interrupted` ends first (Ctrl-C), the reading stops, what it had changed on
/// the engine is put back, and nothing is written.
pub async fn save(
    settings: &Settings,
    stack: &StackState,
    name: &str,
    services: &[Service],
    explicit: bool,
    reporter: &Reporter,
    interrupted: impl std::future::Future<Output = ()>,
) -> Result<Saved> {
    let started = Instant::now();
    let state_dir = settings.state_dir();
    store::check_name(name)?;
    let root = store::root(&state_dir);
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let staging = Staging::begin(&state_dir, name)?;
    let endpoint = Endpoint::resolve(settings, Some(stack))?;
    let clients = endpoint.clients().await;
    let redis_url = stack.service(&ServiceName::Redis).map(|r| r.url.clone());
    let Engine {
        name: engine,
        table_reads,
        bucket_history,
    } = engine_of(settings, stack);
    let wants = |service| services.contains(&service);
    let redis_url = match (&redis_url, wants(Service::Redis)) {
        (None, true) if explicit => bail!("--services redis: this stack runs no Redis"),
        (url, true) => url.clone(),
        (_, false) => None,
    };
    // The services are read at once: each waits on its own part of the engine (on moto, the S3
    // part overlaps the tables' Scan).
    let listing: Vec<&str> = services
        .iter()
        .filter(|s| **s != Service::Redis || redis_url.is_some())
        .map(|s| s.as_str())
        .collect();
    let step = reporter.step(format!("saving {}", listing.join(", ")));
    let stored = store::stored_contents(&state_dir);
    // Marks prove something only on an engine this stack runs: on an external endpoint an empty
    // stream page does not mean the stream's end.
    let engine_is_ours = stack.service(&ServiceName::Aws).is_some();
    let check_histories = bucket_history == BucketHistory::CheckedAgainstMark && wants(Service::S3);
    let earlier = if engine_is_ours && (wants(Service::Dynamodb) || check_histories) {
        earlier::earlier_snapshots(&root)
    } else {
        Vec::new()
    };
    let segments = match table_reads {
        TableReads::ParallelScan => tables::PARALLEL_SEGMENTS,
        TableReads::Export => 1,
    };
    let export_bucket = (table_reads == TableReads::Export && wants(Service::Dynamodb))
        .then(export::ExportBucket::for_this_save);
    let table_reading = tables::TableReading {
        segments,
        export: export_bucket.as_ref(),
        use_streams: engine_is_ours,
        earlier: &earlier,
    };
    // Asked to stop (Ctrl-C), the parts that only read, and the tables (whose exports' changes
    // the export bucket puts back), are dropped where they are; the queues stop before their next
    // receive and make the messages they hold visible again.
    let interrupt = Interrupt::default();
    let watch = async {
        interrupted.await;
        interrupt.request();
        std::future::pending::<std::convert::Infallible>().await
    };
    // The engine's version is read beside the services: it may start a program (Python, for moto
    // outside a virtual environment).
    let reads = async {
        tokio::join!(
            interrupt.unless_requested(engine_version(settings, stack)),
            interrupt.unless_requested(timed(wants(Service::S3).then(|| objects::save(
                &clients,
                &root,
                &staging.dir,
                &stored,
                objects::ObjectReading {
                    export_bucket: export_bucket.as_ref().map(|b| b.name.as_str()),
                    history_marks:
                        (engine_is_ours && check_histories).then_some(earlier.as_slice()),
                }
            )))),
            interrupt.unless_requested(timed(wants(Service::Dynamodb).then(|| tables::save(
                &clients,
                &staging.dir,
                table_reading
            )))),
            timed(wants(Service::Sqs).then(|| queues::save(&clients, &interrupt))),
            interrupt.unless_requested(timed(redis_url.as_deref().map(redis_keys::save))),
        )
    };
    let (engine_version, s3, dynamodb, sqs, redis) = tokio::select! {
        read = reads => read,
        never = watch => match never {},
    };
    if interrupt.is_requested() {
        step.fail("interrupted; putting back what the save changed on the engine");
        if let Some(bucket) = export_bucket {
            bucket.remove(&clients).await;
        }
        bail!(
            "interrupted: snapshot {name} was not written (one saved earlier under that name is as it was); the engine is as the save found it (messages held while a queue was read are visible again, point-in-time recovery is off again where the save had switched it on)"
        );
    }
    let (Some(engine_version), Some(s3), Some(dynamodb), Some(redis)) =
        (engine_version, s3, dynamodb, redis)
    else {
        bail!("a part of the save stopped without a stop asked (a bug: please report it)");
    };
    if let Some(bucket) = export_bucket {
        bucket.remove(&clients).await;
    }
    let read = (|| {
        Ok::<_, anyhow::Error>((
            s3.transpose()?,
            dynamodb.transpose()?,
            sqs.transpose()?,
            redis.transpose()?,
        ))
    })();
    let (s3, dynamodb, sqs, redis) = match read {
        Ok(read) => read,
        Err(e) => {
            step.fail("the state could not be saved; the snapshot was not changed");
            return Err(e);
        }
    };
    let mut saved_services = Vec::new();
    let mut resources = Resources::default();
    let mut counts = Counts::default();
    let mut parts = std::collections::BTreeMap::new();
    let mut notes = Vec::new();
    let mut objects_fetched = 0;
    let mut tables_unchanged = Vec::new();
    let mut histories_unchanged = Vec::new();
    let mut tables_exported = Vec::new();
    let mut tables_without_stream = Vec::new();
    let mut elapsed_ms_by_service = std::collections::BTreeMap::new();
    let mut said = Vec::new();
    if let Some((saved, elapsed_ms)) = s3 {
        let part = PartWriter::write_lines(&staging.dir.join(OBJECTS_FILE), &saved.objects)?;
        parts.insert(OBJECTS_FILE.to_string(), part);
        let part = PartWriter::write_lines(&staging.dir.join(VERSIONS_FILE), &saved.versions)?;
        parts.insert(VERSIONS_FILE.to_string(), part);
        counts.buckets = saved.buckets.len() as u64;
        counts.objects = saved.objects.len() as u64;
        counts.object_bytes = saved.objects.iter().map(|o| o.size).sum();
        counts.versions = saved.versions.len() as u64;
        let contents = manifest::content_paths(
            saved
                .objects
                .iter()
                .chain(records::older_objects(&saved.versions)),
        );
        counts.contents = contents.len() as u64;
        said.push(format!(
            "{} objects in {} buckets ({} fetched, {} unchanged since an earlier save){}",
            counts.objects,
            counts.buckets,
            saved.fetched,
            (counts.objects + counts.versions).saturating_sub(saved.fetched),
            if counts.versions > 0 {
                format!(", {} older versions and delete markers", counts.versions)
            } else {
                String::new()
            }
        ));
        objects_fetched = saved.fetched;
        histories_unchanged = saved.histories_unchanged;
        resources.buckets = saved.buckets;
        notes.extend(saved.notes);
        saved_services.push(Service::S3);
        elapsed_ms_by_service.insert(Service::S3, elapsed_ms);
    }
    if let Some((saved, elapsed_ms)) = dynamodb {
        counts.tables = saved.tables.len() as u64;
        counts.items = saved.tables.iter().map(|t| t.items).sum();
        said.push(format!(
            "{} items in {} tables ({} unchanged since an earlier save)",
            counts.items,
            counts.tables,
            saved.unchanged.len()
        ));
        tables_unchanged = saved.unchanged;
        tables_exported = saved.exported;
        tables_without_stream = saved.without_stream;
        notes.extend(saved.notes);
        resources.tables = saved.tables;
        parts.extend(saved.parts);
        saved_services.push(Service::Dynamodb);
        elapsed_ms_by_service.insert(Service::Dynamodb, elapsed_ms);
    }
    if let Some((saved, elapsed_ms)) = sqs {
        let part = PartWriter::write_lines(&staging.dir.join(QUEUES_FILE), &saved.messages)?;
        parts.insert(QUEUES_FILE.to_string(), part);
        counts.queues = saved.queues.len() as u64;
        counts.messages = saved.messages.len() as u64;
        said.push(format!(
            "{} messages in {} queues",
            counts.messages, counts.queues
        ));
        resources.queues = saved.queues;
        notes.extend(saved.notes);
        saved_services.push(Service::Sqs);
        elapsed_ms_by_service.insert(Service::Sqs, elapsed_ms);
    }
    if let Some((records, elapsed_ms)) = redis {
        let part = PartWriter::write_lines(&staging.dir.join(REDIS_FILE), &records)?;
        parts.insert(REDIS_FILE.to_string(), part);
        counts.redis_keys = records.len() as u64;
        said.push(format!("{} Redis keys", counts.redis_keys));
        saved_services.push(Service::Redis);
        elapsed_ms_by_service.insert(Service::Redis, elapsed_ms);
    }
    step.done(said.join("; "));
    let mut part = PartWriter::create(&staging.dir.join(RESOURCES_FILE))?;
    serde_json::to_writer_pretty(&mut part, &resources)?;
    parts.insert(RESOURCES_FILE.to_string(), part.finish()?);
    let redis_version = match (&redis_url, saved_services.contains(&Service::Redis)) {
        (Some(url), true) => redis_keys::version(url).await,
        _ => None,
    };
    let manifest = Manifest {
        format: FORMAT,
        name: name.to_string(),
        created_at: crate::stack::up::now_seconds(),
        inframock: env!("CARGO_PKG_VERSION").to_string(),
        engine,
        engine_version,
        redis_version,
        services: saved_services,
        counts,
        parts,
        notes,
    };
    manifest::write(&staging.dir, &manifest).with_context(|| {
        format!(
            "writing {}",
            staging.dir.join(manifest::MANIFEST_FILE).display()
        )
    })?;
    let path = staging.commit()?;
    Ok(Saved {
        name: name.to_string(),
        path,
        manifest,
        objects_fetched,
        tables_unchanged,
        histories_unchanged,
        tables_exported,
        tables_without_stream,
        elapsed_ms: started.elapsed().as_millis() as u64,
        elapsed_ms_by_service,
    })
}

/// Runs `work` if there is any, with the milliseconds it took.
async fn timed<T>(
    work: Option<impl std::future::Future<Output = Result<T>>>,
) -> Option<Result<(T, u64)>> {
    let work = work?;
    let started = Instant::now();
    Some(
        work.await
            .map(|value| (value, started.elapsed().as_millis() as u64)),
    )
}

/// The AWS engine a save reads: its kind, and how its tables and bucket histories are read.
struct Engine {
    name: String,
    table_reads: TableReads,
    bucket_history: BucketHistory,
}

/// The engine of the stack's AWS service; an endpoint it does not run is `external`, read the
/// way any engine can be.
fn engine_of(settings: &Settings, stack: &StackState) -> Engine {
    let Some(record) = stack.service(&ServiceName::Aws) else {
        return Engine {
            name: "external".into(),
            table_reads: TableReads::ParallelScan,
            bucket_history: BucketHistory::Listing,
        };
    };
    let kind = crate::stack::lifecycle::kind_of(settings, record);
    let name = record
        .kind
        .clone()
        .unwrap_or_else(|| record.runtime.to_string());
    Engine {
        name,
        table_reads: kind.table_reads,
        bucket_history: kind.bucket_history,
    }
}

/// The version of the stack's AWS engine, when it can be told (none for an external endpoint).
async fn engine_version(settings: &Settings, stack: &StackState) -> Option<String> {
    let record = stack.service(&ServiceName::Aws)?;
    let kind = crate::stack::lifecycle::kind_of(settings, record);
    crate::stack::version::of_service(settings, record, &kind).await
}
