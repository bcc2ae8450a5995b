//! The partition keys a load creates, each created by one request at a time.
//!
//! moto's `put_item` creates a new partition key's item collection with no lock
//! (`self.items[hash_value][range_value] = item` on a `defaultdict` whose key hashes in Python).
//! Two requests that create the same new partition key at once can each create it, and then one
//! replaces the other, with the items already written into it. The loader acknowledged those items;
//! they were simply gone. Reproduced in moto's own process with forced thread switches
//! (`bench/moto_partition_race.py`): 4 writers of the same new keys lost 22 and 51 of 25,000 items
//! (with and without a stream), one writer per key none. `make bench` saw 17 and 31 of 10,000
//! items go in 2 of 6 rounds.
//!
//! So a batch holding a partition key that this load has not written yet runs alone among the
//! batches of that key: the first creates it, and once it is written the key's other batches run
//! in parallel as before. Keys are locked in sorted order, so two batches never wait on each other.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

/// A table and one partition key of it (as `dynamo_json::key_of` writes it).
type Partition = (String, String);

/// The partition keys of one load: written already, or being created.
#[derive(Default)]
pub struct NewPartitions {
    /// (table, partition key) written by a batch that succeeded.
    written: Mutex<HashSet<Partition>>,
    /// One lock per (table, partition key) not yet written, held by the batch creating it.
    creating: Mutex<HashMap<Partition, Arc<tokio::sync::Mutex<()>>>>,
}

impl NewPartitions {
    /// Runs `write`, a batch of `table` holding the partition keys `keys`. If any key is not yet
    /// written by this load, `write` waits for every other batch creating one of them and holds
    /// those keys while it runs. A key counts as written once a batch holding it succeeded.
    pub async fn write<E>(
        &self,
        table: &str,
        keys: BTreeSet<String>,
        write: impl Future<Output = Result<(), E>>,
    ) -> Result<(), E> {
        let new: Vec<Partition> = {
            let written = self.written.lock().unwrap_or_else(|e| e.into_inner());
            keys.into_iter()
                .map(|key| (table.to_string(), key))
                .filter(|entry| !written.contains(entry))
                .collect()
        };
        if new.is_empty() {
            return write.await;
        }
        let locks: Vec<Arc<tokio::sync::Mutex<()>>> = {
            let mut creating = self.creating.lock().unwrap_or_else(|e| e.into_inner());
            new.iter()
                .map(|entry| creating.entry(entry.clone()).or_default().clone())
                .collect()
        };
        // `new` is in key order (from a BTreeSet), so every batch locks in the same order.
        let mut held = Vec::with_capacity(locks.len());
        for lock in locks {
            held.push(lock.lock_owned().await);
        }
        // While this batch waited, the batch it waited for may have written every key: then it
        // runs beside the others.
        let still_new = {
            let written = self.written.lock().unwrap_or_else(|e| e.into_inner());
            new.iter().any(|entry| !written.contains(entry))
        };
        if !still_new {
            drop(held);
            return write.await;
        }
        let result = write.await;
        if result.is_ok() {
            let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
            written.extend(new);
        }
        drop(held);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A write that records how many writes of its kind run at once.
    async fn counted(running: &AtomicUsize, most: &AtomicUsize) -> Result<(), ()> {
        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        running.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }

    fn keys(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[tokio::test]
    async fn the_batch_creating_a_partition_key_runs_alone_then_the_others_at_once() {
        let partitions = NewPartitions::default();
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let batches = (0..4).map(|_| partitions.write("t", keys(&["p"]), counted(&running, &most)));
        futures::future::join_all(batches).await;
        // Without the gate all four would run at once.
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn once_written_a_partition_keys_batches_run_at_once() {
        let partitions = NewPartitions::default();
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        partitions
            .write("t", keys(&["p"]), counted(&running, &most))
            .await
            .ok();
        let batches = (0..4).map(|_| partitions.write("t", keys(&["p"]), counted(&running, &most)));
        futures::future::join_all(batches).await;
        assert_eq!(most.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn other_keys_and_other_tables_do_not_wait() {
        let partitions = NewPartitions::default();
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        futures::future::join_all([
            partitions.write("t", keys(&["a"]), counted(&running, &most)),
            partitions.write("t", keys(&["b"]), counted(&running, &most)),
            partitions.write("u", keys(&["a"]), counted(&running, &most)),
        ])
        .await;
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_failed_batch_leaves_its_keys_new() {
        let partitions = NewPartitions::default();
        let failed: Result<(), &str> = partitions
            .write("t", keys(&["p"]), async { Err("refused") })
            .await;
        assert!(failed.is_err());
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let batches = (0..3).map(|_| partitions.write("t", keys(&["p"]), counted(&running, &most)));
        futures::future::join_all(batches).await;
        // The next batch creates the key alone, then the other two run at once.
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn batches_sharing_keys_in_any_order_never_wait_on_each_other() {
        let partitions = NewPartitions::default();
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let done = tokio::time::timeout(
            Duration::from_secs(5),
            futures::future::join_all([
                partitions.write("t", keys(&["a", "b"]), counted(&running, &most)),
                partitions.write("t", keys(&["b", "a"]), counted(&running, &most)),
                partitions.write("t", keys(&["b", "c"]), counted(&running, &most)),
            ]),
        )
        .await;
        assert!(done.is_ok(), "the batches deadlocked");
    }
}
