//! The one shutdown signal. The server stops in stages, always in this order, and every part
//! that acts on the stop waits on this signal for the stage it cares about:
//!
//! 1. [`Stage::Draining`]: SIGINT or SIGTERM arrived. `/readyz` answers 503, open change feeds
//!    end (telling their clients where to pick up), the PIN-failure reporter and the trail's
//!    pruning stop, the change tail stops, the gRPC listener takes no new connection; calls in
//!    flight finish.
//! 2. [`Stage::Cutting`]: the grace period is over; the connections still open are cut.
//! 3. [`Stage::Closing`]: the gRPC server has ended. The denied checks still queued are written,
//!    the plain-HTTP listeners, the key reload and the database watch end; the server awaits
//!    every background task (for at most the grace period), then closes the database pool.
//!
//! It imports no other module of the server.

use tokio::sync::watch;

/// How far the stop has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Serving,
    Draining,
    Cutting,
    Closing,
}

/// The stop, for the one who moves it on (the server).
#[derive(Debug)]
pub struct Shutdown(watch::Sender<Stage>);

/// The stop, for those who wait on it.
#[derive(Debug, Clone)]
pub struct Signal(watch::Receiver<Stage>);

impl Default for Shutdown {
    fn default() -> Self {
        Self(watch::Sender::new(Stage::Serving))
    }
}

impl Shutdown {
    pub fn signal(&self) -> Signal {
        Signal(self.0.subscribe())
    }

    /// Moves the stop on to `stage`; never back.
    pub fn advance(&self, stage: Stage) {
        self.0.send_if_modified(|now| {
            let later = stage > *now;
            if later {
                *now = stage;
            }
            later
        });
    }
}

impl Signal {
    /// Whether the stop has reached `stage`.
    pub fn reached(&self, stage: Stage) -> bool {
        *self.0.borrow() >= stage
    }

    /// Completes once the stop reaches `stage`: at once when it has, or when the server that
    /// would move it on is gone.
    pub async fn wait(&self, stage: Stage) {
        let mut receiver = self.0.clone();
        let _ = receiver.wait_for(|now| *now >= stage).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_stages_come_in_order_and_never_go_back() {
        let shutdown = Shutdown::default();
        let signal = shutdown.signal();
        assert!(signal.reached(Stage::Serving));
        assert!(!signal.reached(Stage::Draining));
        shutdown.advance(Stage::Cutting);
        assert!(signal.reached(Stage::Draining) && signal.reached(Stage::Cutting));
        shutdown.advance(Stage::Draining);
        assert!(signal.reached(Stage::Cutting), "the stop never goes back");
        assert!(!signal.reached(Stage::Closing));
        signal.wait(Stage::Draining).await;
        let waiting = tokio::spawn({
            let signal = signal.clone();
            async move { signal.wait(Stage::Closing).await }
        });
        shutdown.advance(Stage::Closing);
        waiting.await.expect("the wait ends at Closing");
    }

    #[tokio::test]
    async fn a_wait_ends_when_the_server_is_gone() {
        let shutdown = Shutdown::default();
        let signal = shutdown.signal();
        drop(shutdown);
        signal.wait(Stage::Closing).await;
    }
}
