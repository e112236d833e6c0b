//! Denied checks, recorded off the check's path: a check that answers "no" puts its record on a
//! bounded queue without waiting (and without waking anything), and one task per server takes
//! the queue every `TAKE_EVERY` and writes it to the denied-check trail. When the queue is full (the database slower than the denials), records are dropped
//! rather than slowing checks: the drops are counted and logged (at most once a minute while
//! they go on, and at shutdown, when what is queued is written before the database closes).
//!
//! Identical denials (same client system, customer, permission, account, application and
//! reason) within a window fold into one row with a count, its first and its last time: one
//! caller repeating a denied check as fast as it can writes one row per window, not one per
//! check. The open folds are written when the window ends, when `MAX_FOLDS` different ones are
//! open, and at shutdown. A second task deletes the rows older than the retention, in small
//! batches, every hour. Rows written, denials folded, failed writes, rows pruned and the rows in
//! the trail are in `/metrics`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mandate_domain::decision::Reason;
use mandate_domain::permission::Permission;
use mandate_store::{DeniedCheck, DeniedFold, Store};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Room for the records taken off the queue at a time (all that are queued).
const RECEIVE: usize = 500;
/// How often the queue is taken: at the default queue of 10 000, up to a million denials a
/// second are written without a drop.
const TAKE_EVERY: Duration = Duration::from_millis(10);
/// The most different denials folding at once; past it the window is cut short and written.
const MAX_FOLDS: usize = 10_000;
/// How often, at most, the drops and failed writes are logged while they go on.
const REPORT_EVERY: Duration = Duration::from_secs(60);
/// How often old rows are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How soon a pass the database failed is tried again.
const PRUNE_RETRY: Duration = Duration::from_secs(10);
/// Rows deleted by one pruning statement.
const PRUNE_BATCH: u64 = 1000;
/// The pause between two pruning statements, so that pruning never crowds out the writes.
const PRUNE_PAUSE: Duration = Duration::from_millis(50);

/// What makes two denials identical.
type Key = (
    String,
    String,
    Permission,
    Option<String>,
    Option<String>,
    Reason,
);

/// The queue of denied checks waiting to be written, and what became of them.
pub struct Denials {
    sender: mpsc::Sender<DeniedCheck>,
    /// Denials not written: the queue was full, or their rows could not be written.
    dropped: AtomicU64,
    /// Rows written to the trail by this server.
    written: AtomicU64,
    /// Denials written as part of another's row (a row of n occurrences folds n - 1).
    folded: AtomicU64,
    /// Writes the database refused.
    failures: AtomicU64,
    /// Rows deleted by this server's pruning.
    pruned: AtomicU64,
    /// Rows in the trail at the last count, and `written` then.
    counted: AtomicU64,
    written_at_count: AtomicU64,
}

/// What `/metrics` shows of the trail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrailStats {
    pub dropped: u64,
    pub written: u64,
    pub folded: u64,
    pub failures: u64,
    pub pruned: u64,
    /// Rows in the trail at the last count (each pruning) plus those this server wrote since.
    pub rows: u64,
}

impl Denials {
    /// A queue of `capacity` records, and its end for `write_denials`.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<DeniedCheck>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let denials = Self {
            sender,
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            folded: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            pruned: AtomicU64::new(0),
            counted: AtomicU64::new(0),
            written_at_count: AtomicU64::new(0),
        };
        (denials, receiver)
    }

    /// Queues `check` for the trail, without waiting; drops it when the queue is full.
    pub fn record(&self, check: DeniedCheck) {
        if self.sender.try_send(check).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Denials dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// What became of the denials so far.
    pub fn stats(&self) -> TrailStats {
        let written = self.written.load(Ordering::Relaxed);
        let since_count = written.saturating_sub(self.written_at_count.load(Ordering::Relaxed));
        TrailStats {
            dropped: self.dropped(),
            written,
            folded: self.folded.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            pruned: self.pruned.load(Ordering::Relaxed),
            rows: self.counted.load(Ordering::Relaxed) + since_count,
        }
    }
}

/// The open folds of a window.
#[derive(Default)]
struct Folds {
    open: HashMap<Key, DeniedFold>,
}

impl Folds {
    fn add(&mut self, check: DeniedCheck) {
        let key = (
            check.client.clone(),
            check.customer_id.clone(),
            check.permission,
            check.contractor_id.clone(),
            check.application_id.clone(),
            check.reason,
        );
        match self.open.entry(key) {
            Entry::Occupied(mut fold) => {
                let fold = fold.get_mut();
                fold.occurrences += 1;
                fold.last_time = fold.last_time.max(check.time);
            }
            Entry::Vacant(slot) => {
                slot.insert(DeniedFold {
                    last_time: check.time,
                    first: check,
                    occurrences: 1,
                });
            }
        }
    }
}

/// Writes queued denied checks, folded by `window` (see the module's documentation), until
/// `stop` completes, then writes what is left in the queue and returns. Rows the database
/// refuses are dropped (and counted), not tried again: the trail must not hold checks back.
pub async fn write_denials(
    store: Store,
    denials: &Denials,
    mut receiver: mpsc::Receiver<DeniedCheck>,
    stop: impl Future<Output = ()>,
    window: Duration,
) {
    tokio::pin!(stop);
    let mut folds = Folds::default();
    let mut window_end: Option<Instant> = None;
    let mut received = Vec::with_capacity(RECEIVE);
    let mut reported = (0, 0);
    let mut next_report = Instant::now();
    loop {
        // Taken on a tick, not awaited: a denial queued never wakes this task, so a check that
        // answers "no" costs its caller no wakeup of another thread.
        let mut last = tokio::select! {
            () = tokio::time::sleep(TAKE_EVERY) => false,
            () = &mut stop => true,
        };
        loop {
            match receiver.try_recv() {
                Ok(check) => received.push(check),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    last = true;
                    break;
                }
            }
        }
        if !received.is_empty() && window_end.is_none() {
            window_end = Some(Instant::now() + window);
        }
        for check in received.drain(..) {
            folds.add(check);
        }
        let window_over = window_end.is_some_and(|end| Instant::now() >= end);
        if last || window_over || folds.open.len() >= MAX_FOLDS {
            write(&store, denials, &mut folds).await;
            window_end = None;
        }
        let now = (denials.dropped(), denials.failures.load(Ordering::Relaxed));
        if now != reported && (last || Instant::now() >= next_report) {
            next_report = Instant::now() + REPORT_EVERY;
            tracing::warn!(
                dropped = now.0,
                failed_writes = now.1,
                "denied checks dropped from the trail so far: the queue was full or the database \
                 refused their rows"
            );
            reported = now;
        }
        if last {
            return;
        }
    }
}

/// Writes the open folds to the trail, a row each, and closes them.
async fn write(store: &Store, denials: &Denials, folds: &mut Folds) {
    if folds.open.is_empty() {
        return;
    }
    let rows: Vec<DeniedFold> = folds.open.drain().map(|(_, fold)| fold).collect();
    let occurrences: u64 = rows.iter().map(|row| row.occurrences).sum();
    let count = rows.len() as u64;
    match store.within(store.record_denied_checks(&rows)).await {
        Ok(()) => {
            denials.written.fetch_add(count, Ordering::Relaxed);
            denials
                .folded
                .fetch_add(occurrences - count, Ordering::Relaxed);
        }
        Err(err) => {
            let first = denials.failures.fetch_add(1, Ordering::Relaxed) == 0;
            denials.dropped.fetch_add(occurrences, Ordering::Relaxed);
            // The first failure is logged with its cause; later ones are counted, and reported
            // with the drops.
            if first {
                tracing::warn!(error = %err, rows = count, "cannot write denied checks to the trail");
            } else {
                tracing::debug!(error = %err, rows = count, "cannot write denied checks to the trail");
            }
        }
    }
}

/// Deletes the trail's rows older than `retention`, now and every `PRUNE_EVERY`, until
/// `stop` completes; counts the rows after each pass. A pass the database failed is tried again
/// after `PRUNE_RETRY` (its failure logged once, not at every try).
pub async fn prune_denials(
    store: Store,
    denials: &Denials,
    retention: Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut failing = false;
    loop {
        let mut failed = false;
        let before = chrono::Utc::now()
            - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        loop {
            match store
                .within(store.prune_denied_checks(before, PRUNE_BATCH))
                .await
            {
                Ok(deleted) => {
                    denials.pruned.fetch_add(deleted, Ordering::Relaxed);
                    if deleted < PRUNE_BATCH {
                        break;
                    }
                }
                Err(err) => {
                    if !failing {
                        tracing::warn!(error = %err, "cannot prune the denied-check trail");
                    }
                    failed = true;
                    break;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(PRUNE_PAUSE) => {}
                () = &mut stop => return,
            }
        }
        let written = denials.written.load(Ordering::Relaxed);
        match store.within(store.denied_check_rows()).await {
            Ok(rows) => {
                denials.counted.store(rows, Ordering::Relaxed);
                denials.written_at_count.store(written, Ordering::Relaxed);
            }
            Err(err) => {
                if !failing {
                    tracing::warn!(error = %err, "cannot count the denied-check trail");
                }
                failed = true;
            }
        }
        if failing && !failed {
            tracing::info!("the denied-check trail is pruned and counted again");
        }
        failing = failed;
        let next = if failed { PRUNE_RETRY } else { PRUNE_EVERY };
        tokio::select! {
            () = tokio::time::sleep(next) => {}
            () = &mut stop => return,
        }
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn identical_denials_fold_into_one_row_and_others_stay_apart() {
        let mut folds = Folds::default();
        let first = denied();
        for _ in 0..1000 {
            folds.add(first.clone());
        }
        let mut later = denied();
        later.time = first.time + chrono::Duration::seconds(3);
        folds.add(later.clone());
        let mut other = denied();
        other.permission = Permission::Apply;
        folds.add(other);
        let mut through_permit = denied();
        through_permit.application_id = Some("24-1 BLD".into());
        folds.add(through_permit);
        assert_eq!(folds.open.len(), 3);
        let fold = folds
            .open
            .values()
            .find(|f| f.occurrences > 1)
            .expect("the repeated denial");
        assert_eq!(fold.occurrences, 1001);
        assert_eq!(fold.first.time, first.time);
        assert_eq!(fold.last_time, later.time);
    }
}
