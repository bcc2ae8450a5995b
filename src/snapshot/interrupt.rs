//! A save asked to stop halfway (Ctrl-C): the parts that only read stop at once, the ones holding
//! something on the engine stop at their next step and put it back.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// Whether a save was asked to stop, and a way to wait for it.
#[derive(Default)]
pub struct Interrupt {
    requested: AtomicBool,
    notify: Notify,
}

impl Interrupt {
    /// Asks every part to stop.
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether a stop was asked.
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Returns once a stop is asked.
    pub async fn requested(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_requested() {
                return;
            }
            notified.await;
        }
    }

    /// Runs `work` unless a stop is asked first (`None`: it was dropped where it was). Only for
    /// work that changes nothing on the engine, or whose changes are put back afterwards.
    pub async fn unless_requested<T>(
        &self,
        work: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        tokio::select! {
            done = work => Some(done),
            () = self.requested() => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_is_dropped_once_a_stop_is_asked_and_runs_to_its_end_otherwise() {
        let interrupt = Interrupt::default();
        assert_eq!(interrupt.unless_requested(async { 7 }).await, Some(7));
        let never = std::future::pending::<u32>();
        let (dropped, ()) = tokio::join!(interrupt.unless_requested(never), async {
            tokio::task::yield_now().await;
            interrupt.request();
        });
        assert_eq!(dropped, None);
        assert!(interrupt.is_requested());
        // Asked before: returns at once.
        interrupt.requested().await;
    }
}
