use sea_orm::{DbErr, RuntimeErr, SqlxError, SqlxPostgresError, SqlxSqliteError};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rule refused the change; nothing was written.
    #[error(transparent)]
    Domain(#[from] mandate_domain::Error),
    /// The database could not be reached; the caller may retry.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] DbErr),
    /// The database did not answer within the configured wait; the caller may retry.
    #[error("the database did not answer within {0:?}")]
    TimedOut(std::time::Duration),
    /// The SQLite file was deleted or replaced under the running server: nothing written now
    /// would be kept. Needs an operator.
    #[error("{0}")]
    Gone(String),
    /// The database refused or failed a statement.
    #[error("database error: {0}")]
    Database(#[source] DbErr),
    /// Stored data breaks an invariant Mandate keeps; needs an operator.
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// Something outside the database failed, such as the random source or PIN sealing.
    #[error("{0}")]
    Internal(String),
}

impl From<DbErr> for Error {
    fn from(err: DbErr) -> Self {
        match &err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => Error::Unavailable(err),
            DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))
                if is_connection_failure(e) =>
            {
                Error::Unavailable(err)
            }
            _ => Error::Database(err),
        }
    }
}

/// Failures of the connection or of the database's availability rather than of the statement:
/// worth a retry by the caller.
fn is_connection_failure(err: &SqlxError) -> bool {
    match err {
        SqlxError::Io(_)
        | SqlxError::Tls(_)
        | SqlxError::PoolTimedOut
        | SqlxError::PoolClosed
        | SqlxError::WorkerCrashed => true,
        SqlxError::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<SqlxPostgresError>() {
                // Connection exceptions (08), a transaction rolled back (40: a deadlock
                // between changes that lock the same accounts in another order), insufficient
                // resources (53), operator intervention such as a shutdown (57P), a statement
                // cut off by the statement timeout (57014) or a lock not had within the lock
                // timeout (55P03).
                let code = pg.code();
                ["08", "40", "53", "57P", "57014", "55P03"]
                    .iter()
                    .any(|class| code.starts_with(class))
            } else if db.try_downcast_ref::<SqlxSqliteError>().is_some() {
                // SQLITE_BUSY (5), SQLITE_LOCKED (6), SQLITE_READONLY (8), SQLITE_IOERR (10),
                // SQLITE_FULL (13) and SQLITE_CANTOPEN (14), with their extended codes: the
                // file or its disk, not the statement.
                db.code()
                    .and_then(|code| code.parse::<i32>().ok())
                    .is_some_and(|code| matches!(code & 0xff, 5 | 6 | 8 | 10 | 13 | 14))
            } else {
                false
            }
        }
        _ => false,
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
