//! PIN attempts per customer, for the lockout. Each attempt is one statement on the customer's
//! own row, outside the revision lock: guessing serialises no one else's changes, and two
//! attempts racing both count.

use std::time::Duration;

use mandate_domain::Error as Rule;
use mandate_domain::lockout::{ClientPinBudget, PinLockout, TOKEN};
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Statement};

use crate::entity::customer;
use crate::{Actor, Change, ChangeKind, Error, Result, Revision, Store, current_revision};

impl Store {
    /// Takes one of `customer_id`'s PIN attempts in the current window, before the PIN is
    /// looked at; `Throttled` (with when to try again) when none is left.
    pub async fn take_pin_attempt(&self, customer_id: &str, lockout: PinLockout) -> Result<()> {
        let now = chrono::Utc::now().timestamp_millis();
        let window = i64::try_from(lockout.window.as_millis()).unwrap_or(i64::MAX);
        let expired_before = now.saturating_sub(window);
        let limit = i64::from(lockout.attempts);
        let backend = self.db.get_database_backend();
        // The count stops one past the limit, so that it tells a refused attempt from the last
        // one allowed.
        let sql = match backend {
            DbBackend::Postgres => {
                "INSERT INTO pin_attempts (customer_id, window_start_ms, attempts) \
                 VALUES ($1, $2, 1) \
                 ON CONFLICT (customer_id) DO UPDATE SET \
                   attempts = CASE WHEN pin_attempts.window_start_ms <= $3 THEN 1 \
                                   WHEN pin_attempts.attempts > $4 THEN pin_attempts.attempts \
                                   ELSE pin_attempts.attempts + 1 END, \
                   window_start_ms = CASE WHEN pin_attempts.window_start_ms <= $3 THEN $2 \
                                          ELSE pin_attempts.window_start_ms END \
                 RETURNING attempts, window_start_ms"
            }
            _ => {
                "INSERT INTO pin_attempts (customer_id, window_start_ms, attempts) \
                 VALUES (?1, ?2, 1) \
                 ON CONFLICT (customer_id) DO UPDATE SET \
                   attempts = CASE WHEN pin_attempts.window_start_ms <= ?3 THEN 1 \
                                   WHEN pin_attempts.attempts > ?4 THEN pin_attempts.attempts \
                                   ELSE pin_attempts.attempts + 1 END, \
                   window_start_ms = CASE WHEN pin_attempts.window_start_ms <= ?3 THEN ?2 \
                                          ELSE pin_attempts.window_start_ms END \
                 RETURNING attempts, window_start_ms"
            }
        };
        let row = self
            .db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [
                    customer_id.into(),
                    now.into(),
                    expired_before.into(),
                    limit.into(),
                ],
            ))
            .await?
            .ok_or_else(|| Error::Corrupt("an upsert returned no row".into()))?;
        let attempts: i32 = row.try_get_by_index(0)?;
        let window_start: i64 = row.try_get_by_index(1)?;
        // Another attempt may have opened the window a moment after this one read the clock.
        let left_ms = window_start
            .saturating_add(window)
            .saturating_sub(now)
            .clamp(0, window);
        lockout.decide(
            u32::try_from(attempts).unwrap_or(u32::MAX),
            Duration::from_millis(u64::try_from(left_ms).unwrap_or(0)),
        )?;
        Ok(())
    }

    /// Gives back the attempt a correct PIN took: only wrong PINs use attempts up.
    pub async fn refund_pin_attempt(&self, customer_id: &str) -> Result<()> {
        let backend = self.db.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => {
                "UPDATE pin_attempts SET attempts = attempts - 1 \
                 WHERE customer_id = $1 AND attempts > 0"
            }
            _ => {
                "UPDATE pin_attempts SET attempts = attempts - 1 \
                 WHERE customer_id = ?1 AND attempts > 0"
            }
        };
        self.db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [customer_id.into()],
            ))
            .await?;
        Ok(())
    }

    /// Takes a token of `client`'s bucket of wrong PINs before a PIN entered through it is
    /// looked at: refused (`Throttled`, with when a token will have refilled) when the bucket
    /// holds less than one, unless `standing` (the customer has been registered long enough):
    /// such an entry takes its token all the same, and the bucket may owe up to a full window's
    /// worth. One statement on the client's own row, so that entries racing through many
    /// replicas all count.
    pub async fn take_client_pin_token(
        &self,
        client: &str,
        budget: ClientPinBudget,
        standing: bool,
    ) -> Result<()> {
        let now = chrono::Utc::now().timestamp_millis();
        let window_ms = budget.window_ms();
        // The bucket is kept in thousandths of a token times the window in milliseconds: a
        // millisecond refills `capacity` units exactly, with no remainder lost however often
        // the bucket is counted.
        let full = budget.capacity().saturating_mul(window_ms);
        let token = TOKEN.saturating_mul(window_ms);
        let backend = self.db.get_database_backend();
        // What the bucket holds now (`held`): what it held, refilled for the time since, at
        // most full. A token is taken when it holds one, or for a customer of standing, who
        // may run the bucket into debt (down to a full bucket's worth).
        let sql = match backend {
            DbBackend::Postgres => {
                "INSERT INTO client_pin_tokens (client, credit, updated_ms, refused) \
                 VALUES ($1, $2 - $6, $3, false) \
                 ON CONFLICT (client) DO UPDATE SET \
                   credit = CASE \
                     WHEN LEAST($2, client_pin_tokens.credit \
                          + LEAST(GREATEST($3 - client_pin_tokens.updated_ms, 0), $4) * $7) \
                          >= $6 OR $5 \
                     THEN GREATEST(-$2, LEAST($2, client_pin_tokens.credit \
                          + LEAST(GREATEST($3 - client_pin_tokens.updated_ms, 0), $4) * $7) \
                          - $6) \
                     ELSE LEAST($2, client_pin_tokens.credit \
                          + LEAST(GREATEST($3 - client_pin_tokens.updated_ms, 0), $4) * $7) \
                     END, \
                   refused = NOT (LEAST($2, client_pin_tokens.credit \
                          + LEAST(GREATEST($3 - client_pin_tokens.updated_ms, 0), $4) * $7) \
                          >= $6 OR $5), \
                   updated_ms = GREATEST(client_pin_tokens.updated_ms, $3) \
                 RETURNING refused, credit"
            }
            _ => {
                "INSERT INTO client_pin_tokens (client, credit, updated_ms, refused) \
                 VALUES (?1, ?2 - ?6, ?3, 0) \
                 ON CONFLICT (client) DO UPDATE SET \
                   credit = CASE \
                     WHEN MIN(?2, credit + MIN(MAX(?3 - updated_ms, 0), ?4) * ?7) >= ?6 OR ?5 \
                     THEN MAX(-?2, MIN(?2, credit + MIN(MAX(?3 - updated_ms, 0), ?4) * ?7) - ?6) \
                     ELSE MIN(?2, credit + MIN(MAX(?3 - updated_ms, 0), ?4) * ?7) END, \
                   refused = NOT (MIN(?2, credit + MIN(MAX(?3 - updated_ms, 0), ?4) * ?7) >= ?6 \
                     OR ?5), \
                   updated_ms = MAX(updated_ms, ?3) \
                 RETURNING refused, credit"
            }
        };
        let row = self
            .db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [
                    client.into(),
                    full.into(),
                    now.into(),
                    window_ms.into(),
                    standing.into(),
                    token.into(),
                    budget.capacity().into(),
                ],
            ))
            .await?
            .ok_or_else(|| Error::Corrupt("an upsert returned no row".into()))?;
        let refused: bool = row.try_get_by_index(0)?;
        let credit: i64 = row.try_get_by_index(1)?;
        budget.decide(client, refused, credit / window_ms)?;
        Ok(())
    }

    /// Gives back the token a correct PIN took from `client`'s bucket.
    pub async fn refund_client_pin_token(
        &self,
        client: &str,
        budget: ClientPinBudget,
    ) -> Result<()> {
        let backend = self.db.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => {
                "UPDATE client_pin_tokens SET credit = LEAST($2, credit + $3) WHERE client = $1"
            }
            _ => "UPDATE client_pin_tokens SET credit = MIN(?2, credit + ?3) WHERE client = ?1",
        };
        self.db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [
                    client.into(),
                    budget.capacity().saturating_mul(budget.window_ms()).into(),
                    TOKEN.saturating_mul(budget.window_ms()).into(),
                ],
            ))
            .await?;
        Ok(())
    }

    /// Lifts `customer_id`'s lockout (a staff operation), audited as `actor`; whether there
    /// was anything to lift (a wrong PIN counted in the current window of `lockout`), and the
    /// revision (the current one when nothing changed: nothing is committed then).
    pub async fn clear_pin_lockout(
        &self,
        actor: &Actor,
        customer_id: &str,
        lockout: PinLockout,
    ) -> Result<(bool, Revision)> {
        let txn = self.begin_change().await?;
        customer::Entity::find_by_id(customer_id.to_owned())
            .one(&txn)
            .await?
            .ok_or_else(|| Rule::not_found("customer", customer_id))?;
        let backend = txn.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => {
                "DELETE FROM pin_attempts WHERE customer_id = $1 \
                 RETURNING attempts, window_start_ms"
            }
            _ => {
                "DELETE FROM pin_attempts WHERE customer_id = ?1 \
                 RETURNING attempts, window_start_ms"
            }
        };
        let deleted = txn
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [customer_id.into()],
            ))
            .await?;
        let window = i64::try_from(lockout.window.as_millis()).unwrap_or(i64::MAX);
        let expired_before = chrono::Utc::now().timestamp_millis().saturating_sub(window);
        let counted = match deleted {
            Some(row) => {
                let attempts: i32 = row.try_get_by_index(0)?;
                let window_start: i64 = row.try_get_by_index(1)?;
                attempts > 0 && window_start > expired_before
            }
            None => false,
        };
        if !counted {
            // Nothing to lift: nothing is committed.
            let revision = current_revision(&txn).await?;
            txn.rollback().await?;
            return Ok((false, revision));
        }
        let revision = self
            .commit_change(
                txn,
                actor,
                Change {
                    customer_id: Some(customer_id),
                    ..Change::of(ChangeKind::PinLockoutCleared)
                },
            )
            .await?;
        Ok((true, revision))
    }
}
