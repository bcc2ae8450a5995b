//! `snapshot load`: verify the whole snapshot and check it against `inframock.toml`, then (and only
//! then) write it into the running stack — objects and items through the data folder's loader
//! (streamed, in parallel, bounded memory; an object that already holds the content is not sent),
//! then the messages and the Redis keys.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use super::manifest::{self, Manifest};
use super::records::{
    key_difference, BucketRecord, MessageRecord, RedisRecord, Resources, VersionRecord,
    QUEUES_FILE, REDIS_FILE, RESOURCES_FILE, VERSIONS_FILE,
};
use super::{objects, queues, redis_keys, store, tables, Service};
use crate::aws::{describe_error, error_code, AwsClients, Endpoint};
use crate::config::Settings;
use crate::data::discover::{ExperimentPlan, LoadPlan};
use crate::data::fingerprint::{FingerprintCache, LoadedFiles, CACHE_FILE, LOADED_FILE};
use crate::data::load::{FileOutcome, FileResult, LoadOptions};
use crate::data::summary::{apply_showing_progress, totals, FailuresOnly};
use crate::output::Reporter;
use crate::stack::readiness::{self, Step, StepState};
use crate::stack::state::StackState;
use crate::stack::ServiceName;
use crate::stack_file::BucketDecl;

/// What to do with what the stack holds already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Write the snapshot over what is there; keep everything else (queues get the snapshot's
    /// messages in addition to theirs).
    Merge,
    /// Each bucket, table, queue and the Redis database the snapshot holds ends up holding exactly
    /// what the snapshot holds.
    Replace,
}

/// What a load did.
#[derive(Debug, Serialize)]
pub struct Loaded {
    pub name: String,
    pub mode: Mode,
    pub services: Vec<Service>,
    /// The engine the snapshot was saved from.
    pub saved_from: String,
    /// Objects written (sent to the endpoint).
    pub objects_written: u64,
    /// Objects that already held the saved content: nothing sent.
    pub objects_unchanged: u64,
    /// Bytes of the objects written.
    pub bytes_written: u64,
    /// Older versions and delete markers written back into versioned buckets.
    pub versions_written: u64,
    /// Keys whose saved history was not written because the bucket has a history of its own for
    /// them (`--merge` never writes a key's history twice; `--replace` does not keep the bucket's).
    pub histories_kept: u64,
    pub items: u64,
    pub messages: u64,
    pub redis_keys: u64,
    /// Tables, buckets and queues the load created.
    pub created: Vec<String>,
    /// Files that failed (nothing of each was written).
    pub failed: Vec<FileOutcome>,
    pub elapsed_ms: u64,
}

/// Everything read and checked before anything is written.
struct Checked {
    manifest: Manifest,
    resources: Resources,
    objects: Vec<super::records::ObjectRecord>,
    versions: Vec<VersionRecord>,
    messages: Vec<MessageRecord>,
    redis: Vec<RedisRecord>,
}

impl Loaded {
    /// `12 objects, 3 items, 2 messages, 1 Redis keys` (objects written or already there).
    pub fn summary(&self) -> String {
        format!(
            "{} objects, {} items, {} messages, {} Redis keys",
            self.objects_written + self.objects_unchanged,
            self.items,
            self.messages,
            self.redis_keys
        )
    }
}

/// Loads snapshot `name` into the running `stack`. `only`: the services to load (default: all
/// the snapshot holds). The load is the readiness step `snapshot` (`stack::readiness`): running
/// while it loads, then done, or failed with why.
pub async fn load(
    settings: &Settings,
    stack: &StackState,
    name: &str,
    mode: Mode,
    only: Option<&[Service]>,
    reporter: &Reporter,
) -> Result<Loaded> {
    let state_dir = settings.state_dir();
    readiness::mark(
        &state_dir,
        Step::Snapshot,
        StepState::Running,
        Some(format!("snapshot {name}")),
    );
    let result = check_and_write(settings, stack, name, mode, only, reporter).await;
    let (state, detail) = match &result {
        Ok(loaded) if loaded.failed.is_empty() => (StepState::Done, loaded.summary()),
        Ok(loaded) => (
            StepState::Failed,
            format!(
                "{} file(s) failed to load (`inframock snapshot load {name}` says why)",
                loaded.failed.len()
            ),
        ),
        Err(e) => (StepState::Failed, format!("{e:#}")),
    };
    readiness::mark(
        &state_dir,
        Step::Snapshot,
        state,
        Some(format!("snapshot {name}: {detail}")),
    );
    result
}

/// The load itself: check everything, then write.
async fn check_and_write(
    settings: &Settings,
    stack: &StackState,
    name: &str,
    mode: Mode,
    only: Option<&[Service]>,
    reporter: &Reporter,
) -> Result<Loaded> {
    let started = Instant::now();
    let state_dir = settings.state_dir();
    let dir = store::existing(&state_dir, name)?;
    if mode == Mode::Replace && stack.runtime == crate::cli::RuntimeKind::External {
        bail!(
            "snapshot load --replace empties buckets, tables and queues, and is never done to an external endpoint (as `reset`); load with --merge, which only writes"
        );
    }
    let step = reporter.step(format!("checking snapshot {name}"));
    let checked = match check(settings, stack, &dir, only).await {
        Ok(checked) => checked,
        Err(e) => {
            step.fail("refused: nothing was written");
            return Err(e);
        }
    };
    step.done(format!(
        "intact, saved from {} ({})",
        checked.manifest.engine,
        crate::output::human_age(
            crate::stack::up::now_seconds().saturating_sub(checked.manifest.created_at)
        )
    ));
    let services: Vec<Service> = match only {
        Some(only) => only.to_vec(),
        None => checked.manifest.services.clone(),
    };
    let endpoint = Endpoint::resolve(settings, Some(stack))?;
    let clients = endpoint.clients().await;
    let redis_url = stack.service(&ServiceName::Redis).map(|r| r.url.clone());
    let has = |service| services.contains(&service);
    let vars = settings.resource_vars(stack.runtime);
    if mode == Mode::Replace {
        let step = reporter.step("emptying what the snapshot replaces");
        replace_prepare(&clients, &checked, &services, redis_url.as_deref()).await?;
        step.done("emptied");
    }
    let step = reporter.step("creating missing buckets, tables and queues");
    let mut created = Vec::new();
    let mut created_tables = BTreeSet::new();
    if has(Service::S3) {
        for bucket in &checked.resources.buckets {
            let decl = BucketDecl {
                name: bucket.name.clone(),
                versioning: bucket.versioned,
                cors: Vec::new(),
            };
            if crate::resources::ensure_bucket(&clients, &decl, &vars)
                .await?
                .created
            {
                created.push(format!("bucket {}", bucket.name));
            }
        }
    }
    if has(Service::Dynamodb) {
        for table in &checked.resources.tables {
            if crate::resources::ensure_table(
                &clients,
                &table.as_declaration(),
                &vars,
                settings.stack.stack.persist,
            )
            .await?
            .created
            {
                created.push(format!("table {}", table.name));
            }
            // Items are always written: a table that holds other items may hold other versions of these.
            created_tables.insert(table.name.clone());
        }
    }
    let mut queue_urls = BTreeMap::new();
    if has(Service::Sqs) {
        for queue in &checked.resources.queues {
            queue_urls.insert(queue.name.clone(), queues::ensure(&clients, queue).await?);
        }
    }
    step.done(if created.is_empty() {
        "all there".to_string()
    } else {
        format!("created {}", created.join(", "))
    });
    let mut actions = Vec::new();
    let mut versions_written = 0;
    let mut histories_kept = 0;
    if has(Service::S3) {
        // A key's older versions go first, so its current object is written last and is its
        // latest again; `--merge` leaves a key that has a history in the bucket as it is.
        let mut replayed = Vec::new();
        let mut known: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for version in &checked.versions {
            let bucket = version.object.bucket.as_str();
            if mode == Mode::Merge && !known.contains_key(bucket) {
                known.insert(bucket, objects::keys_with_versions(&clients, bucket).await?);
            }
            if known
                .get(bucket)
                .is_some_and(|keys| keys.contains(&version.object.key))
            {
                if version.position == 0 {
                    histories_kept += 1;
                }
                continue;
            }
            replayed.push(version.clone());
        }
        if !replayed.is_empty() {
            let step = reporter.step(format!(
                "writing {} older versions and delete markers",
                replayed.len()
            ));
            versions_written = objects::replay_history(&clients, &dir, &replayed).await?;
            step.done(format!("{versions_written} written"));
        }
        let after_history: BTreeSet<(String, String)> = replayed
            .iter()
            .map(|v| (v.object.bucket.clone(), v.object.key.clone()))
            .collect();
        actions.extend(objects::load_actions(
            &dir,
            &checked.objects,
            &after_history,
        ));
    }
    if has(Service::Dynamodb) {
        actions.extend(tables::load_actions(
            &dir,
            &checked.resources.tables,
            &checked.manifest.parts,
        ));
    }
    let plan = LoadPlan {
        experiments: vec![ExperimentPlan {
            id: format!("snapshot {name}"),
            path: dir.clone(),
            actions,
            skipped: Vec::new(),
        }],
    };
    let cache = Arc::new(FingerprintCache::load(state_dir.join(CACHE_FILE)));
    let loaded = LoadedFiles::load(state_dir.join(LOADED_FILE));
    let options = LoadOptions {
        created_tables,
        ..LoadOptions::default()
    };
    // A snapshot holds thousands of objects: piped, only the files that failed are printed.
    let outcomes = apply_showing_progress(
        &clients,
        &plan,
        cache,
        &loaded,
        &options,
        reporter,
        &FailuresOnly,
    )
    .await;
    let (_, total) = totals(&plan, &outcomes);
    let mut messages = 0;
    if has(Service::Sqs) {
        for (queue, saved) in queues::by_queue(&checked.messages) {
            let url = queue_urls.get(queue).ok_or_else(|| {
                anyhow!("{QUEUES_FILE}: queue {queue} is not in {RESOURCES_FILE}")
            })?;
            messages += queues::send(&clients, url, &saved).await?;
        }
    }
    let mut redis_keys = 0;
    if has(Service::Redis) && !checked.redis.is_empty() {
        let url = redis_url.as_deref().context("this stack runs no Redis")?;
        redis_keys = redis_keys::load(url, &checked.redis).await?;
    }
    let failed: Vec<FileOutcome> = outcomes
        .into_iter()
        .filter(|o| matches!(o.result, FileResult::Failed { .. }))
        .collect();
    Ok(Loaded {
        name: name.to_string(),
        mode,
        services,
        saved_from: checked.manifest.engine.clone(),
        objects_written: total.objects as u64,
        objects_unchanged: total.unchanged as u64,
        bytes_written: total.bytes,
        versions_written,
        histories_kept,
        items: total.items as u64,
        messages,
        redis_keys,
        created,
        failed,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

/// Reads and verifies everything, and checks the snapshot against the stack: the first problem
/// refuses the whole load.
async fn check(
    settings: &Settings,
    stack: &StackState,
    dir: &std::path::Path,
    only: Option<&[Service]>,
) -> Result<Checked> {
    let manifest = manifest::read(dir)?;
    if let Some(only) = only {
        let absent: Vec<&str> = only
            .iter()
            .filter(|s| !manifest.services.contains(s))
            .map(|s| s.as_str())
            .collect();
        if !absent.is_empty() {
            bail!(
                "snapshot {}: it holds no {} (it holds {}); leave them out of --services",
                manifest.name,
                absent.join(", "),
                manifest
                    .services
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let (verifying, against) = (dir.to_path_buf(), manifest.clone());
    let objects = super::blocking(move || Ok(manifest::verify(&verifying, &against)?)).await?;
    let resources: Resources = manifest::read_json(dir, &manifest, RESOURCES_FILE)?;
    let versions: Vec<VersionRecord> = manifest::read_lines(dir, &manifest, VERSIONS_FILE)?;
    let messages: Vec<MessageRecord> = manifest::read_lines(dir, &manifest, QUEUES_FILE)?;
    let redis: Vec<RedisRecord> = manifest::read_lines(dir, &manifest, REDIS_FILE)?;
    let vars = settings.resource_vars(stack.runtime);
    let mut differences = Vec::new();
    for declared in &settings.stack.tables {
        let name = vars.expand(&declared.name);
        if let Some(saved) = resources.tables.iter().find(|t| t.name == name) {
            for difference in key_difference(declared, saved) {
                differences.push(format!("table {name}: {difference}"));
            }
        }
    }
    if !differences.is_empty() {
        bail!(
            "snapshot {} does not fit this stack, nothing was written:\n  {}\n(load it into a stack whose inframock.toml declares the snapshot's key, change the declaration, or remove the snapshot: `inframock snapshot rm {}`)",
            manifest.name,
            differences.join("\n  "),
            manifest.name
        );
    }
    let wants_redis = only.is_none_or(|o| o.contains(&Service::Redis));
    if wants_redis && !redis.is_empty() && stack.service(&ServiceName::Redis).is_none() {
        bail!(
            "snapshot {} holds {} Redis keys, and this stack runs no Redis; leave redis out of --services",
            manifest.name,
            redis.len()
        );
    }
    Ok(Checked {
        manifest,
        resources,
        objects,
        versions,
        messages,
        redis,
    })
}

/// `--replace`: empties what the snapshot will fill — objects of its buckets that it does not
/// hold, its tables (deleted, then created again from the snapshot), its queues, the Redis
/// database.
async fn replace_prepare(
    clients: &AwsClients,
    checked: &Checked,
    services: &[Service],
    redis_url: Option<&str>,
) -> Result<()> {
    if services.contains(&Service::S3) {
        for bucket in &checked.resources.buckets {
            if bucket.versioned {
                // The snapshot's history replaces the bucket's: every version goes.
                delete_every_version(clients, &bucket.name).await?;
            } else {
                delete_other_objects(clients, bucket, &checked.objects).await?;
            }
        }
    }
    if services.contains(&Service::Dynamodb) {
        for table in &checked.resources.tables {
            match clients
                .dynamodb
                .delete_table()
                .table_name(&table.name)
                .send()
                .await
            {
                Ok(_) => wait_table_gone(clients, &table.name).await?,
                Err(e) if error_code(&e).as_deref() == Some("ResourceNotFoundException") => {}
                Err(e) => bail!(
                    "emptying table {} (DeleteTable): {}",
                    table.name,
                    describe_error(&e)
                ),
            }
        }
    }
    if services.contains(&Service::Sqs) {
        for queue in &checked.resources.queues {
            if let Some(url) = queues::url_of(clients, &queue.name).await {
                queues::purge(clients, &url).await?;
            }
        }
    }
    if services.contains(&Service::Redis) {
        if let Some(url) = redis_url {
            redis_keys::flush(url).await?;
        }
    }
    Ok(())
}

/// Deletes the objects of `bucket` that the snapshot does not hold (a missing bucket has none).
async fn delete_other_objects(
    clients: &AwsClients,
    bucket: &BucketRecord,
    saved: &[super::records::ObjectRecord],
) -> Result<()> {
    let keep: BTreeSet<&str> = saved
        .iter()
        .filter(|o| o.bucket == bucket.name)
        .map(|o| o.key.as_str())
        .collect();
    let mut doomed = Vec::new();
    let mut pages = clients
        .s3
        .list_objects_v2()
        .bucket(&bucket.name)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => doomed.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .filter(|k| !keep.contains(k))
                    .map(str::to_string),
            ),
            Err(e) if error_code(&e).as_deref() == Some("NoSuchBucket") => return Ok(()),
            Err(e) => bail!(
                "listing bucket {} (ListObjectsV2): {}",
                bucket.name,
                describe_error(&e)
            ),
        }
    }
    for key in doomed {
        clients
            .s3
            .delete_object()
            .bucket(&bucket.name)
            .key(&key)
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "deleting s3://{}/{key}: {}",
                    bucket.name,
                    describe_error(&e)
                )
            })?;
    }
    Ok(())
}

/// Deletes every version and delete marker of a versioned bucket (a missing bucket has none).
async fn delete_every_version(clients: &AwsClients, bucket: &str) -> Result<()> {
    let listed = objects::list_versions(clients, bucket)
        .await?
        .unwrap_or_default();
    for version in listed {
        clients
            .s3
            .delete_object()
            .bucket(bucket)
            .key(&version.key)
            .set_version_id(version.version_id.clone())
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "deleting s3://{bucket}/{} (version {}): {}",
                    version.key,
                    version.version_id.as_deref().unwrap_or("null"),
                    describe_error(&e)
                )
            })?;
    }
    Ok(())
}

/// Waits until a deleted table is gone (engines delete asynchronously), at most 60 s.
async fn wait_table_gone(clients: &AwsClients, table: &str) -> Result<()> {
    for _ in 0..600 {
        match clients
            .dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
        {
            Err(e) if error_code(&e).as_deref() == Some("ResourceNotFoundException") => {
                return Ok(())
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    bail!("table {table} was still being deleted after 60 s")
}
