//! Denied checks, recorded off the check's path: a check that answers "no" puts its record on a
//! bounded queue without waiting, and one task per server writes the queue to the denied-check
//! trail in batches. When the queue is full (the database slower than the denials), records are
//! dropped rather than slowing checks: the drops are counted and logged (at most once a minute
//! while they go on, and at shutdown, when the queue is written out before the database
//! closes).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mandate_store::{DeniedCheck, Store};
use tokio::sync::{mpsc, watch};

/// Records written in one statement at most.
const BATCH: usize = 500;
/// How long records gather after the first before they are written: a trickle of denials is
/// written a few times a second, not one statement each.
const GATHER: Duration = Duration::from_millis(200);
/// How often, at most, the drops are logged while they go on.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// The queue of denied checks waiting to be written.
pub struct Denials {
    sender: mpsc::Sender<DeniedCheck>,
    /// Records dropped so far: the queue was full, or their batch could not be written.
    dropped: AtomicU64,
}

impl Denials {
    /// A queue of `capacity` records, and its end for `write_denials`.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<DeniedCheck>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let denials = Self {
            sender,
            dropped: AtomicU64::new(0),
        };
        (denials, receiver)
    }

    /// Queues `check` for the trail, without waiting; drops it when the queue is full.
    pub fn record(&self, check: DeniedCheck) {
        if self.sender.try_send(check).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Writes queued denied checks in batches (what gathered in `GATHER` after the first, in
/// statements of up to `BATCH`) until `served` turns `true`, then writes what is left in the
/// queue and returns. A batch the database refuses is dropped (and counted): the
/// trail must not hold checks back.
pub async fn write_denials(
    store: Store,
    denials: &Denials,
    mut receiver: mpsc::Receiver<DeniedCheck>,
    mut served: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut reported = 0;
    let mut next_report = tokio::time::Instant::now();
    loop {
        let last = tokio::select! {
            received = receiver.recv_many(&mut batch, BATCH) => received == 0,
            _ = served.wait_for(|served| *served) => true,
        };
        let last = last
            || tokio::select! {
                () = tokio::time::sleep(GATHER) => false,
                _ = served.wait_for(|served| *served) => true,
            };
        while let Ok(check) = receiver.try_recv() {
            batch.push(check);
            if batch.len() == BATCH {
                write(&store, denials, &mut batch).await;
            }
        }
        write(&store, denials, &mut batch).await;
        let dropped = denials.dropped();
        if dropped > reported && (last || tokio::time::Instant::now() >= next_report) {
            next_report = tokio::time::Instant::now() + REPORT_EVERY;
            tracing::warn!(
                dropped,
                "denied checks dropped from the trail so far: the queue was full or the database refused them"
            );
            reported = dropped;
        }
        if last {
            return;
        }
    }
}

/// Writes `batch` to the trail and empties it.
async fn write(store: &Store, denials: &Denials, batch: &mut Vec<DeniedCheck>) {
    if batch.is_empty() {
        return;
    }
    if let Err(err) = store.within(store.record_denied_checks(batch)).await {
        tracing::warn!(error = %err, records = batch.len(), "cannot write denied checks to the trail");
        denials
            .dropped
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        // A database that refuses is given a moment before the next batch.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    batch.clear();
}

#[cfg(test)]
mod tests {
    use mandate_domain::decision::Reason;
    use mandate_domain::permission::Permission;

    use super::*;

    fn denied() -> DeniedCheck {
        DeniedCheck {
            time: chrono::Utc::now(),
            client: "payments".into(),
            customer_id: "c".into(),
            permission: Permission::Pay,
            contractor_id: Some("a".into()),
            application_id: None,
            reason: Reason::PermissionNotHeld,
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (denials, mut receiver) = Denials::new(2);
        for _ in 0..5 {
            denials.record(denied());
        }
        assert_eq!(denials.dropped(), 3);
        assert!(receiver.try_recv().is_ok());
        denials.record(denied());
        assert_eq!(denials.dropped(), 3);
    }
}
