//! Mandate's persistence: sea-orm entities, migrations, and one transaction per change.
//!
//! Every change runs in a write transaction that locks the rows its rules read (an account's row
//! for the last-Manager rule and its memberships, a legacy record for its single-use PIN), so
//! changes to one account take turns and rules see every earlier change; unique indexes keep
//! PINs and external subjects unique. As it commits, the change takes the next revision from a
//! one-row counter and records its audit event: that row lock, held only from there to the
//! commit, serialises commits across every replica sharing the database, so revisions are
//! handed out in commit order without gaps, and the change and its audit event commit together
//! or not at all. Reads never take it. (On SQLite, `BEGIN IMMEDIATE` puts all writers in line.)

mod applications;
mod audit;
mod cache;
mod contractors;
mod customers;
mod denials;
mod entity;
mod error;
mod hygiene;
mod keys;
mod legacy;
mod lockout;
mod merged;
mod merges;
mod migration;
mod paging;
mod permissions;
mod records;
mod seed;
mod staff;
mod tail;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mandate_domain::membership::ManagerlessPolicy;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

pub use applications::{AccountCheck, ApplicationCheck, ApplicationCursor, CheckTarget};
pub use cache::CacheStats;
pub use denials::{DeniedCheck, DeniedFold};
pub use error::{Error, Result};
pub use keys::{ApiKey, KeyKind, NewKey};
pub use legacy::{ImportOutcome, LegacyAccount, LegacyApplication, LegacyImport, LinkedRecord};
pub use permissions::NewPin;
pub use records::{
    AccessibleApplication, Actor, Associate, AuditEvent, ChangeKind, CheckOutcome, Contractor,
    Customer, Membership, Page, Revision, SealedPin, Viewer,
};
pub use seed::{SeedCounts, SeedLink, SeedMembership, Seeding};
pub use staff::ContractorQuery;
pub use tail::Subscription;

use audit::{Change, record_change};
use tail::Committed;

/// Held while this process migrates, so that processes starting together take turns.
enum Turn {
    /// A transaction holding a PostgreSQL advisory lock.
    Postgres(DatabaseTransaction),
    /// A file beside the SQLite database, locked; unlocked when dropped.
    File { _held: std::fs::File },
    /// An in-memory database: nobody else can see it.
    Alone,
}

/// Creates the SQLite file `url` asks to be created (`mode=rwc`), empty, readable and writable
/// by its owner alone, before the driver would create it as the umask says (0644 commonly): it
/// holds every name, email and address. SQLite gives its write-ahead log and shared-memory
/// files the database file's mode. A file that exists is left as it is, and a failure here is
/// left for the driver to report.
fn create_private(url: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    if !url.contains("mode=rwc") {
        return;
    }
    if let Some(path) = sqlite_file(url) {
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
    }
}

/// Locks `<db>.migrate-lock`, waiting for another process that holds it.
async fn lock_beside(db: PathBuf) -> Result<std::fs::File> {
    let mut name = db.into_os_string();
    name.push(".migrate-lock");
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&name)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(|e| Error::Internal(format!("the migration lock task failed: {e}")))?
    .map_err(|e: std::io::Error| Error::Internal(format!("cannot lock for migration: {e}")))
}

/// The file of a SQLite database URL (`sqlite://FILE?…` or `sqlite:FILE`); `None` for other
/// databases and in-memory ones.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(percent_decoded(path)))
}

/// `text` with its `%XX` escapes decoded, as the SQLite driver reads a URL's path (an escape
/// that is not one is kept as written).
fn percent_decoded(text: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escape = (bytes[at] == b'%')
            .then(|| text.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escape {
            Some(byte) => {
                decoded.push(byte);
                at += 3;
            }
            None => {
                decoded.push(bytes[at]);
                at += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(decoded)
}

/// A database URL without its password (`postgres://user:secret@host/db` →
/// `postgres://user@host/db`, or `…/db?password=secret` → `…/db`), and the password,
/// percent-decoded. The URL alone reaches the database driver's traces and errors; the password
/// goes to the driver separately.
pub fn split_password(url: &str) -> (String, Option<String>) {
    let (url, in_user_info) = split_user_info_password(url);
    let (url, in_query) = split_query_password(&url);
    (url, in_user_info.or(in_query))
}

/// `split_password` for a password in the URL's query (`?password=…`, as libpq takes it).
fn split_query_password(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut password = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("password=") {
            Some(value) => {
                password = Some(percent_decode(value));
                false
            }
            None => true,
        })
        .collect();
    match password {
        None => (url.to_owned(), None),
        Some(password) if kept.is_empty() => (base.to_owned(), Some(password)),
        Some(password) => (format!("{base}?{}", kept.join("&")), Some(password)),
    }
}

/// `split_password` for a password in the URL's user information (`user:password@`).
fn split_user_info_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((user_info, host)) = authority.rsplit_once('@') else {
        return (url.to_owned(), None);
    };
    let Some((user, password)) = user_info.split_once(':') else {
        return (url.to_owned(), None);
    };
    (
        format!("{scheme}://{user}@{host}{path}"),
        Some(percent_decode(password)),
    )
}

/// `text` with its `%XX` escapes decoded; a malformed escape is kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// How the store behaves.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// What the first associate of an account without a Manager receives.
    pub managerless_policy: ManagerlessPolicy,
    /// How long a call waits on the database (for a connection, a lock or an answer) before
    /// answering that the database is unavailable. PostgreSQL statements are cut off after it.
    pub database_wait: Duration,
    /// The most database connections open at once (on PostgreSQL, one of them listens for
    /// the changes of other replicas).
    pub pool_size: u32,
    /// The most checks' grants the check cache keeps; 0 turns it off.
    pub cache_size: usize,
    /// How old a cached answer to a check without `at_least_revision` may be.
    pub cache_staleness: Duration,
}

/// Connects, trying again for up to `wait` while the database is locked: a SQLite file that
/// another process is creating and switching to WAL mode refuses connections for that moment,
/// without waiting for its busy timeout.
async fn connect_patiently(options: ConnectOptions, wait: Duration) -> Result<DatabaseConnection> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match Database::connect(options.clone())
            .await
            .map_err(Error::from)
        {
            Err(Error::Unavailable(err)) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %err, "the database is not ready yet; trying again");
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            connected => return connected,
        }
    }
}

/// How long a pooled connection may sit idle before it is pinged as it is taken.
const IDLE_PING: Duration = Duration::from_secs(10);

/// The PostgreSQL advisory lock key that serialises migrations ("mandate" in ASCII).
const MIGRATION_LOCK: i64 = 0x006d_616e_6461_7465;

/// The database behind Mandate.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// The URL connected to, for finding a SQLite file's neighbours.
    url: String,
    managerless_policy: ManagerlessPolicy,
    /// The change tail's state: the check cache and the change feeds of this replica.
    changes: Arc<tail::Changes>,
    /// Held by the change of this process that is taking its revision and committing: the
    /// others queue here rather than in the database, where every commit would wake all the
    /// transactions waiting for the revision lock to race for it.
    commit_turn: Arc<tokio::sync::Mutex<()>>,
    /// The SQLite file as it was opened, to notice it being deleted or replaced.
    file: Option<Arc<WatchedFile>>,
    database_wait: Duration,
    pool_size: u32,
    /// Told how long each write waited for its transaction (see `observe_write_waits`).
    write_waits: Arc<OnceLock<WaitObserver>>,
}

/// What `Store::observe_write_waits` is given.
pub type WaitObserver = Box<dyn Fn(Duration) + Send + Sync>;

/// The connection pool as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open, in use or idle.
    pub open: u32,
    /// Connections open and waiting in the pool for a call.
    pub idle: u32,
    /// The most the pool opens.
    pub max: u32,
}

/// A SQLite database file and the identity (device and inode) it had when the server opened it.
/// SQLite keeps writing to the file it opened: once the path names another file, or none,
/// writes would be acknowledged into a file nobody will open again.
struct WatchedFile {
    path: PathBuf,
    identity: Option<FileIdentity>,
    /// Set, for good, the first time the path no longer names the opened file.
    lost: AtomicBool,
}

/// What tells one file from another at the same path.
type FileIdentity = (u64, u64);

fn file_identity(path: &Path) -> Option<FileIdentity> {
    let metadata = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((metadata.dev(), metadata.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        Some((0, 0))
    }
}

impl WatchedFile {
    /// `Err` once the path no longer names the file the server opened.
    fn check(&self) -> Result<()> {
        if !self.lost.load(Ordering::Relaxed) {
            let now = file_identity(&self.path);
            if now.is_some() && now == self.identity {
                return Ok(());
            }
            tracing::error!(
                file = %self.path.display(),
                "the SQLite database file was deleted or replaced while the server ran: \
                 refusing every call until the server is restarted"
            );
            self.lost.store(true, Ordering::Relaxed);
        }
        Err(Error::Gone(format!(
            "the database file {} was deleted or replaced while the server ran",
            self.path.display()
        )))
    }
}

impl Store {
    /// Connects to `url` (`sqlite://…?mode=rwc` or `postgres://…`) without migrating.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self> {
        let StoreOptions {
            managerless_policy,
            database_wait,
            pool_size,
            cache_size,
            cache_staleness,
        } = options;
        // The driver traces its options, URL included, so the password travels apart from it.
        let (url, password) = split_password(url);
        let url = url.as_str();
        let mut options = ConnectOptions::new(url);
        options
            .sqlx_logging(false)
            .max_connections(pool_size)
            .acquire_timeout(database_wait)
            .connect_timeout(database_wait)
            // A busy connection proves itself by the statements it runs: a ping before each
            // use would double a check's round trips. Only one that sat idle (through a
            // database restart, say) is pinged first; one that broke in use is closed by the
            // error it gives.
            .test_before_acquire_if_idle_for(IDLE_PING);
        options.map_sqlx_sqlite_opts(move |sqlite| {
            // Readers do not wait for the writer, and a writer waits its turn rather than
            // failing with "database is locked". FULL synchronous mode: a commit is on disk
            // before it is acknowledged, even if the machine loses power. The file is created
            // (`create_private`) before the first connection, never by a connection: one opened
            // after the file was deleted must fail, not start an empty database in its place.
            sqlite
                .create_if_missing(false)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(database_wait)
                .foreign_keys(true)
        });
        // Every SQLite connection is opened at start-up and kept: they all hold the file that
        // was opened, so reads go on answering from it if it is deleted or replaced.
        options.map_sqlx_sqlite_pool_opts(move |pool| {
            hygiene::sqlite_pool(pool)
                .min_connections(pool_size)
                .idle_timeout(None)
                .max_lifetime(None)
        });
        options.map_sqlx_postgres_opts(move |pg| {
            let pg = match &password {
                Some(password) => pg.password(password),
                None => pg,
            };
            hygiene::postgres_session(pg, database_wait)
        });
        options.map_sqlx_postgres_pool_opts(hygiene::postgres_pool);
        create_private(url);
        let db = connect_patiently(options, database_wait).await?;
        // The file exists once a connection has opened it.
        let file = sqlite_file(url).map(|path| {
            Arc::new(WatchedFile {
                identity: file_identity(&path),
                path,
                lost: AtomicBool::new(false),
            })
        });
        Ok(Self {
            db,
            url: url.to_owned(),
            managerless_policy,
            changes: Arc::new(tail::Changes::new(cache_size, cache_staleness)),
            commit_turn: Arc::default(),
            file,
            database_wait,
            pool_size,
            write_waits: Arc::default(),
        })
    }

    /// Whether the database answers, and (for SQLite) its file is still the one opened: what
    /// the health check reports.
    pub async fn probe(&self) -> Result<()> {
        self.check_file()?;
        self.db
            .execute_unprepared("SELECT 1")
            .await
            .map_err(Error::from)?;
        Ok(())
    }

    /// Refreshes the database's planner statistics, after a bulk load.
    pub async fn analyze(&self) -> Result<()> {
        self.db.execute_unprepared("ANALYZE").await?;
        Ok(())
    }

    fn check_file(&self) -> Result<()> {
        self.file.as_ref().map_or(Ok(()), |file| file.check())
    }

    /// Applies every pending migration. On PostgreSQL, replicas that start together take
    /// turns: the first migrates while the others wait on an advisory lock, then find nothing
    /// left to do.
    pub async fn migrate(&self) -> Result<()> {
        let turn = match self.db.get_database_backend() {
            DbBackend::Postgres => {
                let txn = self.db.begin().await?;
                // Waiting for another replica's migration, and holding the lock while migrating,
                // may take longer than a call's statement and idle-transaction limits.
                txn.execute_unprepared(
                    "SET LOCAL statement_timeout = 0; \
                     SET LOCAL lock_timeout = 0; \
                     SET LOCAL idle_in_transaction_session_timeout = 0",
                )
                .await?;
                txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
                    .await?;
                Turn::Postgres(txn)
            }
            _ => match sqlite_file(&self.url) {
                Some(db) => Turn::File {
                    _held: lock_beside(db).await?,
                },
                None => Turn::Alone,
            },
        };
        migration::Migrator::up(&self.db, None).await?;
        if let Turn::Postgres(txn) = turn {
            txn.commit().await?;
        }
        Ok(())
    }

    /// How long a call waits on the database before calling it unavailable.
    pub fn database_wait(&self) -> Duration {
        self.database_wait
    }

    /// Runs `operation` within the database wait: `TimedOut` if the database has not answered
    /// by then, for callers outside a bounded call (the change feed, the health check).
    pub async fn within<T>(&self, operation: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout(self.database_wait, operation)
            .await
            .unwrap_or(Err(Error::TimedOut(self.database_wait)))
    }

    /// Closes the pool when the server stops, giving its connections up to `wait` (SQLite
    /// checkpoints its write-ahead log as the last one closes).
    pub async fn close(&self, wait: Duration) {
        if self.file.is_some() {
            // Everything into the database file itself, so that the file alone is a complete
            // copy once the server has stopped (SQLite would otherwise leave it to the last
            // connection to close, which a busy pool may not get to within `wait`).
            let checkpoint = self
                .db
                .execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)");
            match tokio::time::timeout(wait, checkpoint).await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => tracing::warn!(error = %err, "checkpointing the SQLite log"),
                Err(_) => tracing::warn!("checkpointing the SQLite log did not end in time"),
            }
        }
        match tokio::time::timeout(wait, self.db.close_by_ref()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "closing the database"),
            Err(_) => tracing::warn!("the database did not close in time"),
        }
    }

    /// The connection, for tests that inspect what is stored.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Writes a consistent copy of the SQLite database, as of now, to `file`, which must not
    /// exist (`VACUUM INTO`); calls go on meanwhile. `None` for PostgreSQL, whose own tools
    /// (`pg_dump`, or the service's backups) do this.
    pub async fn backup_into(&self, file: &Path) -> Option<Result<()>> {
        self.file.as_ref()?;
        let Some(file) = file.to_str() else {
            return Some(Err(Error::Internal(format!(
                "the backup's path {} is not UTF-8: SQLite takes UTF-8 paths",
                file.display()
            ))));
        };
        Some(
            self.db
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    "VACUUM INTO ?1",
                    [file.into()],
                ))
                .await
                .map(|_| ())
                .map_err(Error::from),
        )
    }

    /// The connection pool's use, for the metrics.
    pub fn pool_stats(&self) -> PoolStats {
        let (open, idle) = match self.db.get_database_backend() {
            DbBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            _ => {
                let pool = self.db.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
        };
        PoolStats {
            open,
            idle: u32::try_from(idle).unwrap_or(u32::MAX),
            max: self.pool_size,
        }
    }

    /// Has `observer` told, from now on, how long each write waited to begin its transaction:
    /// for a pooled connection, then for `BEGIN` (on SQLite, for the write lock too). The first
    /// observer set stays.
    pub fn observe_write_waits(&self, observer: WaitObserver) {
        let _ = self.write_waits.set(observer);
    }

    /// What the check cache holds and how it has done.
    pub fn cache_stats(&self) -> CacheStats {
        self.changes.cache.stats()
    }

    /// Takes the next revision, records `change` as its audit event, commits the transaction,
    /// and wakes this replica's change tail; the revision. `Ok` means the change is durable: a
    /// failed commit leaves its connection to be checked, and closed, as it goes back to the
    /// pool (see `hygiene`); a SQLite file that vanished meanwhile makes the commit worthless.
    async fn commit_change(
        &self,
        txn: DatabaseTransaction,
        actor: &Actor,
        change: Change<'_>,
    ) -> Result<Revision> {
        let committed = Committed::from(&change);
        let _turn = self.commit_turn.lock().await;
        let revision = record_change(&txn, actor, change).await?;
        self.commit_recorded(txn, revision, &committed).await?;
        Ok(revision)
    }

    /// Commits a transaction whose changes are recorded, the last at `revision` being
    /// `committed`, and tells this replica's change tail; as `commit_change`.
    async fn commit_recorded(
        &self,
        txn: DatabaseTransaction,
        revision: Revision,
        committed: &Committed<'_>,
    ) -> Result<()> {
        if let Err(err) = txn.commit().await {
            tracing::error!(revision, error = %err, "a commit failed; nothing was acknowledged");
            return Err(err.into());
        }
        self.changes.committed(revision, committed);
        self.check_file()
    }

    /// Whether a PIN secret's fingerprint is recorded: the database was set up with a secret.
    pub async fn has_key_fingerprint(&self) -> Result<bool> {
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                self.db.get_database_backend(),
                "SELECT COUNT(*) FROM key_check",
            ))
            .await?
            .ok_or_else(|| Error::Corrupt("a count returned no row".into()))?;
        let count: i64 = row.try_get_by_index(0)?;
        Ok(count > 0)
    }

    /// Whether `fingerprint` is the fingerprint of the PIN secret this database was set up with.
    /// The first server to ask records its own; later ones must match it.
    pub async fn matches_key_fingerprint(&self, fingerprint: &str) -> Result<bool> {
        let backend = self.db.get_database_backend();
        let insert = match backend {
            DbBackend::Postgres => {
                "INSERT INTO key_check (id, fingerprint) VALUES (1, $1) ON CONFLICT (id) DO NOTHING"
            }
            _ => {
                "INSERT INTO key_check (id, fingerprint) VALUES (1, ?1) ON CONFLICT (id) DO NOTHING"
            }
        };
        self.db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                insert,
                [fingerprint.into()],
            ))
            .await?;
        let stored = self
            .db
            .query_one_raw(Statement::from_string(
                backend,
                "SELECT fingerprint FROM key_check WHERE id = 1",
            ))
            .await?
            .ok_or_else(|| Error::Corrupt("the key check row is missing".into()))?;
        let stored: String = stored.try_get_by_index(0)?;
        Ok(constant_time_eq(stored.as_bytes(), fingerprint.as_bytes()))
    }

    /// Starts a write transaction. Its change takes a revision only as it commits
    /// (`commit_change`): the revision counter's row lock, which puts writers in line, is held
    /// from there to the commit alone. Until then, a change locks the rows its rules read
    /// (`contractors::lock_contractor`), so changes to different accounts run side by side.
    async fn begin_change(&self) -> Result<DatabaseTransaction> {
        self.check_file()?;
        self.begin_write().await
    }

    /// Starts a transaction that will write: on SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so it waits its turn instead of failing when it first writes.
    async fn begin_write(&self) -> Result<DatabaseTransaction> {
        let asked = Instant::now();
        let txn = self
            .db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await;
        // A wait that ended in a timeout is a wait too, and the longest.
        if let Some(observe) = self.write_waits.get() {
            observe(asked.elapsed());
        }
        Ok(txn?)
    }
}

/// The revision of the latest change committed (as `db` sees it).
async fn current_revision(db: &impl ConnectionTrait) -> Result<Revision> {
    db.query_one_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT value FROM revision_counter WHERE id = 1",
    ))
    .await?
    .ok_or_else(|| Error::Corrupt("the revision counter row is missing".into()))?
    .try_get_by_index(0)
    .map_err(Error::from)
}

/// Whether two byte strings are equal, in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// A new identifier: a UUIDv7, so identifiers sort in creation order.
fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The current time at the precision both databases keep (microseconds), so that what a change
/// returns equals what a later read returns.
fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sqlite_url_names_its_file_and_other_urls_none() {
        assert_eq!(
            sqlite_file("sqlite://mandate.db?mode=rwc"),
            Some(PathBuf::from("mandate.db"))
        );
        assert_eq!(
            sqlite_file("sqlite:/var/lib/m.db"),
            Some(PathBuf::from("/var/lib/m.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(
            sqlite_file("sqlite://my%20db.sqlite?mode=rwc"),
            Some(PathBuf::from("my db.sqlite"))
        );
        assert_eq!(
            sqlite_file("sqlite://100%.db"),
            Some(PathBuf::from("100%.db"))
        );
        assert_eq!(sqlite_file("postgres://postgres@127.0.0.1/test"), None);
    }

    #[test]
    fn a_password_is_taken_out_of_the_url_and_decoded() {
        assert_eq!(
            split_password(
                "postgres://mandate:p%40ss:w0rd@db.example:5432/mandate?sslmode=require"
            ),
            (
                "postgres://mandate@db.example:5432/mandate?sslmode=require".to_owned(),
                Some("p@ss:w0rd".to_owned())
            )
        );
        for unchanged in [
            "postgres://postgres@127.0.0.1/test",
            "postgres://127.0.0.1/test?user=a@b",
            "sqlite://mandate.db?mode=rwc",
            "not a url",
        ] {
            assert_eq!(split_password(unchanged), (unchanged.to_owned(), None));
        }
        assert_eq!(
            split_password("postgres://app@db/permits?sslmode=require&password=s%3Acret"),
            (
                "postgres://app@db/permits?sslmode=require".to_owned(),
                Some("s:cret".to_owned())
            )
        );
        assert_eq!(
            split_password("postgres://app@db/permits?password=s3cret"),
            (
                "postgres://app@db/permits".to_owned(),
                Some("s3cret".to_owned())
            )
        );
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn every_change_kind_reads_back_from_its_stored_name() {
        for kind in ChangeKind::ALL {
            assert_eq!(ChangeKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ChangeKind::parse("renamed"), None);
    }

    #[test]
    fn an_accessible_applications_cursor_reads_back_from_its_token() {
        let token = format!(
            "{}.{}",
            "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b",
            hex::encode("24-1 BLD")
        );
        let cursor = ApplicationCursor::parse(&token).unwrap();
        assert_eq!(cursor.application_id, "24-1 BLD");
        assert_eq!(cursor.contractor_id, "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b");
        assert_eq!(ApplicationCursor::parse("no-dot"), None);
        assert_eq!(ApplicationCursor::parse("id.zz"), None);
    }
}
