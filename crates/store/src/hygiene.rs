//! Connection hygiene: a pooled connection goes back to the pool only when its state is proven
//! clean, and database sessions are bounded in time.
//!
//! SQLite may leave a transaction open when `COMMIT` fails (its documentation, "Response To
//! Errors Within A Transaction"), and a queued `ROLLBACK` may fail too. A connection returned to
//! the pool in that state answers later writes inside the stale transaction: they look committed
//! and never reach the file. The same holds for a call cancelled mid-transaction whose rollback
//! could not run. So every connection is checked as it is released (sqlx's `after_release`):
//! it must be outside any transaction, both as sqlx counts and, for SQLite, as SQLite itself
//! says (`sqlite3_get_autocommit`); otherwise it is closed, which rolls back whatever it held.

use std::time::Duration;

use sea_orm::sqlx::pool::PoolOptions;
use sea_orm::sqlx::postgres::PgConnectOptions;
use sea_orm::sqlx::sqlite::SqliteConnection;
use sea_orm::sqlx::{Connection, Postgres, Sqlite};

/// Releases a SQLite connection to the pool only when neither sqlx nor SQLite sees a
/// transaction open on it.
pub(crate) fn sqlite_pool(options: PoolOptions<Sqlite>) -> PoolOptions<Sqlite> {
    options.after_release(|conn, _| {
        Box::pin(async move {
            let clean = !conn.is_in_transaction() && sqlite_autocommit(conn).await?;
            if !clean {
                tracing::warn!(
                    "closing a SQLite connection left inside a transaction (a failed commit or \
                     rollback, or a cancelled call): it could otherwise swallow later writes"
                );
            }
            Ok(clean)
        })
    })
}

/// Whether SQLite is in autocommit mode on `conn`, that is, outside any transaction.
async fn sqlite_autocommit(conn: &mut SqliteConnection) -> Result<bool, sea_orm::sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let raw = handle.as_raw_handle();
    // SAFETY: `lock_handle` gives this task the connection's handle exclusively (the worker
    // thread is parked until the guard drops), `raw` is the open handle it guards, and
    // `sqlite3_get_autocommit` only reads the connection's state.
    let autocommit = unsafe { libsqlite3_sys::sqlite3_get_autocommit(raw.as_ptr()) };
    Ok(autocommit != 0)
}

/// Releases a PostgreSQL connection to the pool only when it is outside any transaction. (It
/// is not pinged: a connection that broke fails its next statement and is closed then, and one
/// that sat idle is pinged as it is taken; see `IDLE_PING`.)
pub(crate) fn postgres_pool(options: PoolOptions<Postgres>) -> PoolOptions<Postgres> {
    options.after_release(|conn, _| {
        Box::pin(async move {
            let clean = !conn.is_in_transaction();
            if !clean {
                tracing::warn!("closing a PostgreSQL connection left inside a transaction");
            }
            Ok(clean)
        })
    })
}

/// Bounds every PostgreSQL session: no statement runs longer than `wait`, no session sits idle
/// inside a transaction (holding the revision lock every writer needs) for long, and the
/// server's end of the connection probes a silent client with TCP keep-alive.
pub(crate) fn postgres_session(options: PgConnectOptions, wait: Duration) -> PgConnectOptions {
    let millis = wait.as_millis().max(1).to_string();
    let idle_in_transaction = (wait * 2).as_millis().max(1).to_string();
    options.options([
        ("statement_timeout", millis.as_str()),
        ("lock_timeout", millis.as_str()),
        (
            "idle_in_transaction_session_timeout",
            idle_in_transaction.as_str(),
        ),
        ("tcp_keepalives_idle", "10"),
        ("tcp_keepalives_interval", "5"),
        ("tcp_keepalives_count", "3"),
        ("tcp_user_timeout", "30000"),
    ])
}
