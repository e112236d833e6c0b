//! The server's background tasks: one set, each task named, each ended by the shutdown signal
//! at its stage (`crate::shutdown`), all awaited as the server stops.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;

/// The server's background tasks, each with its name, stopped by the shutdown signal and
/// awaited as the server stops.
#[derive(Default)]
pub struct Tasks {
    set: JoinSet<()>,
    names: HashMap<tokio::task::Id, &'static str>,
}

impl Tasks {
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let id = self.set.spawn(task).id();
        self.names.insert(id, name);
    }

    /// Awaits every task for at most `within`; those still running then are named in the log,
    /// aborted, and awaited as they end.
    pub async fn join(mut self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.set.join_next_with_id()).await {
                Ok(None) => return,
                Ok(Some(Ok((id, ())))) => {
                    self.names.remove(&id);
                }
                Ok(Some(Err(err))) => {
                    let name = self.names.remove(&err.id()).unwrap_or("a task");
                    tracing::error!(task = name, error = %err, "a background task failed");
                }
                Err(_) => {
                    let mut left: Vec<&str> = self.names.values().copied().collect();
                    left.sort_unstable();
                    tracing::warn!(
                        tasks = left.join(", "),
                        "background tasks still running after the grace period: stopping them \
                         (the denied checks still queued may not be written)"
                    );
                    self.set.shutdown().await;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test]
    async fn the_tasks_are_awaited_and_one_that_does_not_end_is_aborted() {
        let mut tasks = Tasks::default();
        let finished = Arc::new(AtomicBool::new(false));
        let (tell, told) = tokio::sync::oneshot::channel::<()>();
        {
            let finished = finished.clone();
            tasks.spawn("ends when told", async move {
                let _ = told.await;
                tokio::task::yield_now().await;
                finished.store(true, Ordering::SeqCst);
            });
        }
        let (_kept, never) = tokio::sync::oneshot::channel::<()>();
        let held = Arc::new(());
        {
            let held = held.clone();
            tasks.spawn("never ends", async move {
                let _ = never.await;
                drop(held);
            });
        }
        let _ = tell.send(());
        tasks.join(Duration::from_millis(200)).await;
        assert!(
            finished.load(Ordering::SeqCst),
            "the task that ended was awaited"
        );
        assert_eq!(
            Arc::strong_count(&held),
            1,
            "the task that did not end was aborted and dropped"
        );
    }
}
