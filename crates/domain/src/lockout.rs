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

/// How many wrong PINs all the customers of one client system (the portal) may enter between
/// them: a bucket of `failures` tokens that refills evenly over `window`. Each PIN entry takes a
/// token before the PIN is looked at and a correct PIN gives it back, so only wrong PINs use the
/// bucket up. Empty, it refuses the entries of customers without standing (registered less than
/// `standing` ago) until a token has refilled: guessing spread over freshly registered
/// customers is held to `failures` per `window`, while customers who have been there for a while
/// go on under their own lockout alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientPinBudget {
    pub failures: u32,
    pub window: Duration,
    pub standing: Duration,
}

/// One token of a `ClientPinBudget`, in the thousandths the bucket is counted in.
pub const TOKEN: i64 = 1000;

impl Default for ClientPinBudget {
    /// 300 wrong PINs per 10 minutes; standing after 24 hours.
    fn default() -> Self {
        Self {
            failures: 300,
            window: Duration::from_secs(10 * 60),
            standing: Duration::from_secs(24 * 3600),
        }
    }
}

impl ClientPinBudget {
    /// The bucket's size, in thousandths of a token.
    pub fn capacity(&self) -> i64 {
        i64::from(self.failures).saturating_mul(TOKEN)
    }

    /// The window in milliseconds (at least one).
    pub fn window_ms(&self) -> i64 {
        i64::try_from(self.window.as_millis())
            .unwrap_or(i64::MAX)
            .max(1)
    }

    /// Whether a customer registered `age` ago may enter PINs when the bucket is empty.
    pub fn has_standing(&self, age: Duration) -> bool {
        age >= self.standing
    }

    /// The answer to an entry through `client` that found `left` thousandths of a token in the
    /// bucket: refused when it found less than a token, saying when one will have refilled.
    pub fn decide(&self, client: &str, refused: bool, left: i64) -> Result<(), Error> {
        if !refused {
            return Ok(());
        }
        let missing = TOKEN.saturating_sub(left).max(1);
        let wait_ms = missing
            .saturating_mul(self.window_ms())
            .checked_div(self.capacity().max(1))
            .unwrap_or(i64::MAX)
            .max(1);
        let retry_after = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(u64::MAX));
        let seconds = retry_after.as_secs().max(1);
        Err(Error::Throttled {
            message: format!(
                "too many wrong PINs through client system `{client}`: {} per {} minutes between \
                 its customers; try again in {seconds} second{}",
                self.failures,
                self.window.as_secs().div_ceil(60),
                if seconds == 1 { "" } else { "s" }
            ),
            retry_after,
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

    #[test]
    fn an_empty_client_bucket_refuses_and_says_when_a_token_refills() {
        let budget = ClientPinBudget {
            failures: 60,
            window: Duration::from_secs(60),
            standing: Duration::from_secs(3600),
        };
        assert!(budget.decide("portal", false, 0).is_ok());
        match budget.decide("portal", true, 250) {
            Err(Error::Throttled {
                retry_after,
                message,
            }) => {
                // A token a second: three quarters of one are missing.
                assert_eq!(retry_after, Duration::from_millis(750));
                assert!(message.contains("`portal`"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(budget.has_standing(Duration::from_secs(3600)));
        assert!(!budget.has_standing(Duration::from_secs(3599)));
    }
}
