//! PIN-guessing lockout (NIST SP 800-63B, rate limiting; OWASP: count unknown codes too).
//! A customer has so many PIN attempts per window; every attempt takes one before the PIN is
//! looked at, a correct PIN gives it back, so only wrong PINs use them up. Past the limit,
//! even a correct PIN is refused until the window ends.

use std::time::Duration;

use crate::Error;

/// How many wrong PINs a customer may enter per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinLockout {
    pub attempts: u32,
    pub window: Duration,
}

impl Default for PinLockout {
    /// 10 wrong PINs per 15 minutes.
    fn default() -> Self {
        Self {
            attempts: 10,
            window: Duration::from_secs(15 * 60),
        }
    }
}

impl PinLockout {
    /// Whether the attempt that brought the window's count to `attempts_taken` may go ahead;
    /// the refusal says when to try again, `window_left` from now.
    pub fn decide(&self, attempts_taken: u32, window_left: Duration) -> Result<(), Error> {
        if attempts_taken <= self.attempts {
            return Ok(());
        }
        let minutes = window_left.as_secs().div_ceil(60).max(1);
        Err(Error::Throttled {
            message: format!(
                "too many wrong PINs: {} in {} minutes; try again in {minutes} minute{}, or ask \
                 the city's staff to lift the lockout",
                self.attempts,
                self.window.as_secs().div_ceil(60),
                if minutes == 1 { "" } else { "s" }
            ),
            retry_after: window_left,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attempts_within_the_limit_go_ahead_and_the_next_is_refused_with_when() {
        let lockout = PinLockout::default();
        for taken in 1..=10 {
            assert!(lockout.decide(taken, Duration::from_secs(600)).is_ok());
        }
        match lockout.decide(11, Duration::from_secs(61)) {
            Err(Error::Throttled {
                message,
                retry_after,
            }) => {
                assert_eq!(retry_after, Duration::from_secs(61));
                assert!(message.contains("try again in 2 minutes"), "{message}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
