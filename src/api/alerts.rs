//! Wrong PINs per client system, for alerting. The lockout protects each customer; a client
//! system whose customers between them enter far more wrong PINs than usual is a portal being
//! used for guessing across many customers (or a broken one), and an operator should hear of it
//! without the portal being locked out as a whole. Every window, each client system's tally is
//! logged: at `info`, or at `warn` past the alert threshold; the last window when the server
//! stops.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// The tally of PIN failures in the current window, per client system.
pub struct PinFailures {
    /// Wrong PINs per window, per client system, past which the window's report is a warning.
    pub alert_at: u64,
    pub window: Duration,
    tally: Mutex<BTreeMap<String, Tally>>,
}

/// One client system's PIN failures in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// PINs that matched no account.
    pub wrong: u64,
    /// PINs refused unread because the customer was locked out.
    pub locked_out: u64,
    /// PINs refused unread because the client system's wrong-PIN budget was spent.
    pub client_throttled: u64,
}

impl PinFailures {
    pub fn new(alert_at: u64, window: Duration) -> Self {
        Self {
            alert_at,
            window,
            tally: Mutex::default(),
        }
    }

    /// Counts a wrong PIN entered through `client`.
    pub fn wrong(&self, client: &str) {
        self.count(client, |tally| tally.wrong += 1);
    }

    /// Counts a PIN refused because the customer, acting through `client`, is locked out.
    pub fn locked_out(&self, client: &str) {
        self.count(client, |tally| tally.locked_out += 1);
    }

    /// Counts a PIN refused because `client`'s wrong-PIN budget is spent.
    pub fn client_throttled(&self, client: &str) {
        self.count(client, |tally| tally.client_throttled += 1);
    }

    fn count(&self, client: &str, add: impl FnOnce(&mut Tally)) {
        let mut tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        match tally.get_mut(client) {
            Some(entry) => add(entry),
            None => add(tally.entry(client.to_owned()).or_default()),
        }
    }

    /// Ends the window: logs each client system's tally and starts a new one. Returns the
    /// tallies, and whether each raised an alert.
    pub fn report(&self) -> Vec<(String, Tally, bool)> {
        let ended = std::mem::take(&mut *self.tally.lock().unwrap_or_else(PoisonError::into_inner));
        let window_secs = self.window.as_secs_f64();
        ended
            .into_iter()
            .map(|(client, tally)| {
                let alert = tally.wrong >= self.alert_at;
                if alert {
                    tracing::warn!(
                        %client,
                        wrong_pins = tally.wrong,
                        locked_out = tally.locked_out,
                        client_throttled = tally.client_throttled,
                        window_secs,
                        alert_at = self.alert_at,
                        "PIN failures through this client system are past the alert threshold: \
                         PIN guessing across customers?"
                    );
                } else {
                    tracing::info!(
                        %client,
                        wrong_pins = tally.wrong,
                        locked_out = tally.locked_out,
                        client_throttled = tally.client_throttled,
                        window_secs,
                        "PIN failures through this client system"
                    );
                }
                (client, tally, alert)
            })
            .collect()
    }

    /// Reports every window until `stop` completes (the server reports the last, shorter
    /// window as it stops).
    pub async fn report_every_window(&self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.window) => {}
                () = &mut stop => return,
            }
            self.report();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_window_reports_each_client_and_alerts_past_the_threshold() {
        let failures = PinFailures::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            failures.wrong("portal");
        }
        failures.locked_out("portal");
        failures.wrong("kiosk");
        assert_eq!(
            failures.report(),
            vec![
                (
                    "kiosk".to_owned(),
                    Tally {
                        wrong: 1,
                        ..Tally::default()
                    },
                    false
                ),
                (
                    "portal".to_owned(),
                    Tally {
                        wrong: 3,
                        locked_out: 1,
                        client_throttled: 0,
                    },
                    true
                ),
            ]
        );
        assert!(failures.report().is_empty(), "a new window starts empty");
    }
}
