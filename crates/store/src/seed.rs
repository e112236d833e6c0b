//! Writing a generated data set in bulk (`mandate seed`): customers, accounts with sealed PINs,
//! memberships and application links, in one transaction that takes one revision and ends with
//! one audit event, as the legacy import does.
//!
//! PostgreSQL takes the rows by `COPY … FROM STDIN` (text format) on the transaction's
//! connection; SQLite by multi-row `INSERT`s, each shape prepared once and reused. The rows are
//! the ones the API writes: UUIDv7 ids from `new_id`, PINs sealed by the caller's vault, the
//! same columns and time precision; the running server cannot tell them from its own.

use std::collections::HashSet;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use mandate_domain::contractor::ContractorDetails;
use mandate_domain::customer::NewCustomer;
use mandate_domain::permission::PermissionSet;
use sea_orm::sqlx::{self, AssertSqlSafe, Postgres, Sqlite, Transaction};
use sea_orm::{DbBackend, DbErr, RuntimeErr};

use crate::{Actor, ChangeKind, Error, Result, Revision, SealedPin, Store, new_id, now};

/// Rows per SQLite `INSERT`: at most 16 columns, so well under SQLite's 32 766 bound values.
const SQLITE_ROWS: usize = 500;

/// A membership to write. Manage is never time-limited (as `membership::set_permissions`
/// requires); the caller keeps to that.
pub struct SeedMembership<'a> {
    pub contractor_id: &'a str,
    pub customer_id: &'a str,
    pub permissions: PermissionSet,
    pub expire_time: Option<DateTime<Utc>>,
    /// When the customer associated (and the grant was last set).
    pub associate_time: DateTime<Utc>,
}

/// An application link to write.
pub struct SeedLink<'a> {
    /// The application number, canonical (`parse_application_id`).
    pub application_id: &'a str,
    pub contractor_id: &'a str,
}

/// How many rows a seed wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeedCounts {
    pub customers: u64,
    pub contractors: u64,
    pub memberships: u64,
    pub links: u64,
}

/// A seed under way: an open write transaction that holds the revision lock. Dropped without
/// `finish`, it rolls back and nothing of it remains.
pub struct Seeding {
    txn: Txn,
    revision: Revision,
    /// The time every row is stamped with (but backdated grants).
    now: DateTime<Utc>,
    counts: SeedCounts,
    pins_in_use: HashSet<String>,
}

enum Txn {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl Txn {
    /// The number the one row `sql` answers holds.
    async fn number(&mut self, sql: &'static str) -> Result<i64> {
        match self {
            Txn::Postgres(txn) => sqlx::query_scalar(sql).fetch_one(&mut **txn).await,
            Txn::Sqlite(txn) => sqlx::query_scalar(sql).fetch_one(&mut **txn).await,
        }
        .map_err(sqlx_error)
    }
}

/// One value of a row, as both backends take it.
enum Field<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
    Time(DateTime<Utc>),
    MaybeTime(Option<DateTime<Utc>>),
    Small(i16),
}

fn sqlx_error(err: sqlx::Error) -> Error {
    Error::from(DbErr::Exec(RuntimeErr::SqlxError(err.into())))
}

impl Store {
    /// Starts a seed. It takes the next revision first, so writers of running servers wait for
    /// the seed to commit (or time out), and then refuses a database that holds customers or
    /// accounts: a seed fills an empty database and is never mixed with real data.
    pub async fn begin_seed(&self) -> Result<Seeding> {
        self.check_file()?;
        let revision_sql = "UPDATE revision_counter SET value = value + 1 WHERE id = 1 \
                            RETURNING value";
        let occupied_sql = "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM customers LIMIT 1) c) \
                            + (SELECT COUNT(*) FROM (SELECT 1 FROM contractors LIMIT 1) a)";
        let mut txn = match self.db.get_database_backend() {
            DbBackend::Postgres => {
                let mut txn = self
                    .db
                    .get_postgres_connection_pool()
                    .begin()
                    .await
                    .map_err(sqlx_error)?;
                // Copying millions of rows takes longer than a call's statement limit.
                sqlx::raw_sql(
                    "SET LOCAL statement_timeout = 0; \
                         SET LOCAL idle_in_transaction_session_timeout = 0",
                )
                .execute(&mut *txn)
                .await
                .map_err(sqlx_error)?;
                Txn::Postgres(txn)
            }
            _ => Txn::Sqlite(
                self.db
                    .get_sqlite_connection_pool()
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(sqlx_error)?,
            ),
        };
        let revision: Revision = txn.number(revision_sql).await?;
        let occupied = txn.number(occupied_sql).await?;
        if occupied > 0 {
            return Err(mandate_domain::Error::FailedPrecondition(
                "the database holds customers or accounts already: seed only an empty database \
                 (a seed is test data and is never mixed with real data)"
                    .into(),
            )
            .into());
        }
        Ok(Seeding {
            txn,
            revision,
            now: now(),
            counts: SeedCounts::default(),
            pins_in_use: HashSet::new(),
        })
    }
}

impl Seeding {
    /// The time the seed stamps its rows with, as the API would stamp a change made now.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// What was written so far.
    pub fn counts(&self) -> SeedCounts {
        self.counts
    }

    /// Writes `rows` as registered customers; returns their new ids, in order.
    pub async fn customers(&mut self, rows: &[NewCustomer]) -> Result<Vec<String>> {
        let ids: Vec<String> = rows.iter().map(|_| new_id()).collect();
        let now = self.now;
        let fields = rows.iter().zip(&ids).map(|(c, id)| {
            [
                Field::Text(id),
                Field::Text(&c.external_subject),
                Field::Text(&c.display_name),
                Field::Text(&c.email),
                Field::Time(now),
            ]
        });
        self.write(
            "customers",
            &[
                "customer_id",
                "external_subject",
                "display_name",
                "email",
                "create_time",
            ],
            fields,
        )
        .await?;
        self.counts.customers += rows.len() as u64;
        Ok(ids)
    }

    /// Writes `rows` as registered accounts. `new_pin` makes a PIN for an account id and seals
    /// it, as registration does; a PIN equal to one this seed issued already is drawn again.
    /// Returns each account's id and PIN, in order.
    pub async fn contractors<P>(
        &mut self,
        rows: &[ContractorDetails],
        mut new_pin: impl FnMut(&str) -> Result<(P, SealedPin)>,
    ) -> Result<Vec<(String, P)>> {
        let mut made = Vec::with_capacity(rows.len());
        let mut sealed = Vec::with_capacity(rows.len());
        for _ in rows {
            let id = new_id();
            let (pin, seal) = loop {
                let (pin, seal) = new_pin(&id)?;
                if self.pins_in_use.insert(seal.hash.clone()) {
                    break (pin, seal);
                }
            };
            made.push((id, pin));
            sealed.push(seal);
        }
        let now = self.now;
        let fields = rows
            .iter()
            .zip(&made)
            .zip(&sealed)
            .map(|((d, (id, _)), seal)| {
                let a = &d.mailing_address;
                [
                    Field::Text(id),
                    Field::Text(&d.business_name),
                    Field::Text(&d.contact.name),
                    Field::Text(&d.contact.phone),
                    Field::Text(&d.contact.email),
                    Field::Text(&a.street),
                    Field::Text(&a.city),
                    Field::Text(&a.province),
                    Field::Text(&a.postal_code),
                    Field::Text(&a.country),
                    Field::Text(&seal.hash),
                    Field::Bytes(&seal.ciphertext),
                    Field::Time(now),
                    Field::Time(now),
                ]
            });
        self.write(
            "contractors",
            &[
                "contractor_id",
                "business_name",
                "contact_name",
                "contact_phone",
                "contact_email",
                "street",
                "city",
                "province",
                "postal_code",
                "country",
                "pin_hash",
                "pin_ciphertext",
                "create_time",
                "update_time",
            ],
            fields,
        )
        .await?;
        self.counts.contractors += rows.len() as u64;
        Ok(made)
    }

    /// Writes memberships of accounts and customers written by this seed.
    pub async fn memberships(&mut self, rows: &[SeedMembership<'_>]) -> Result<()> {
        let fields = rows.iter().map(|m| {
            [
                Field::Text(m.contractor_id),
                Field::Text(m.customer_id),
                Field::Small(i16::from(m.permissions.bits())),
                Field::MaybeTime(m.expire_time),
                Field::Time(m.associate_time),
                Field::Time(m.associate_time),
            ]
        });
        self.write(
            "memberships",
            &[
                "contractor_id",
                "customer_id",
                "permissions",
                "expire_time",
                "associate_time",
                "update_time",
            ],
            fields,
        )
        .await?;
        self.counts.memberships += rows.len() as u64;
        Ok(())
    }

    /// Writes application links to accounts written by this seed; each pair once.
    pub async fn links(&mut self, rows: &[SeedLink<'_>]) -> Result<()> {
        let now = self.now;
        let fields = rows.iter().map(|l| {
            [
                Field::Text(l.application_id),
                Field::Text(l.contractor_id),
                Field::Time(now),
            ]
        });
        self.write(
            "application_links",
            &["application_id", "contractor_id", "link_time"],
            fields,
        )
        .await?;
        self.counts.links += rows.len() as u64;
        Ok(())
    }

    /// Records the seed's audit event (`detail` says what it wrote, in words) and commits.
    /// Returns the seed's revision.
    pub async fn finish(self, actor: &Actor, detail: &str) -> Result<Revision> {
        let Seeding {
            txn, revision, now, ..
        } = self;
        let kind = ChangeKind::Seeded.as_str();
        match txn {
            Txn::Postgres(mut txn) => {
                sqlx::query(
                    "INSERT INTO audit_events \
                     (revision, time, kind, actor_customer_id, actor_client, detail) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(revision)
                .bind(now)
                .bind(kind)
                .bind(actor.customer_id.as_deref())
                .bind(actor.client.as_str())
                .bind(detail)
                .execute(&mut *txn)
                .await
                .map_err(sqlx_error)?;
                txn.commit().await.map_err(sqlx_error)?;
            }
            Txn::Sqlite(mut txn) => {
                sqlx::query(
                    "INSERT INTO audit_events \
                     (revision, time, kind, actor_customer_id, actor_client, detail) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .bind(revision)
                .bind(now)
                .bind(kind)
                .bind(actor.customer_id.as_deref())
                .bind(actor.client.as_str())
                .bind(detail)
                .execute(&mut *txn)
                .await
                .map_err(sqlx_error)?;
                txn.commit().await.map_err(sqlx_error)?;
            }
        }
        Ok(revision)
    }

    /// Writes `rows` (each with a value per column) into `table`.
    async fn write<'r, const N: usize>(
        &mut self,
        table: &str,
        columns: &[&str; N],
        rows: impl Iterator<Item = [Field<'r>; N]>,
    ) -> Result<()> {
        match &mut self.txn {
            Txn::Postgres(txn) => {
                let mut data = String::new();
                for row in rows {
                    for (i, field) in row.iter().enumerate() {
                        if i > 0 {
                            data.push('\t');
                        }
                        copy_text(&mut data, field);
                    }
                    data.push('\n');
                }
                if data.is_empty() {
                    return Ok(());
                }
                let statement = format!("COPY {table} ({}) FROM STDIN", columns.join(", "));
                let mut copy = txn.copy_in_raw(&statement).await.map_err(sqlx_error)?;
                copy.send(data.into_bytes()).await.map_err(sqlx_error)?;
                copy.finish().await.map_err(sqlx_error)?;
            }
            Txn::Sqlite(txn) => {
                let row_sql = format!("({})", vec!["?"; N].join(", "));
                let full_sql = insert_sql(table, columns, &row_sql, SQLITE_ROWS);
                let mut rows = rows.peekable();
                while rows.peek().is_some() {
                    let chunk: Vec<[Field<'r>; N]> = rows.by_ref().take(SQLITE_ROWS).collect();
                    let sql = if chunk.len() == SQLITE_ROWS {
                        full_sql.clone()
                    } else {
                        insert_sql(table, columns, &row_sql, chunk.len())
                    };
                    let mut query = sqlx::query(AssertSqlSafe(sql));
                    for row in &chunk {
                        for field in row {
                            query = match *field {
                                Field::Text(text) => query.bind(text),
                                Field::Bytes(bytes) => query.bind(bytes),
                                Field::Time(time) => query.bind(time),
                                Field::MaybeTime(time) => query.bind(time),
                                Field::Small(small) => query.bind(small),
                            };
                        }
                    }
                    query.execute(&mut **txn).await.map_err(sqlx_error)?;
                }
            }
        }
        Ok(())
    }
}

/// `INSERT INTO table (columns) VALUES row, row, …` with `rows` rows.
fn insert_sql(table: &str, columns: &[&str], row_sql: &str, rows: usize) -> String {
    format!(
        "INSERT INTO {table} ({}) VALUES {}",
        columns.join(", "),
        vec![row_sql; rows].join(", ")
    )
}

/// Appends `field` in `COPY`'s text format: backslash escapes, `\N` for NULL, timestamps in
/// UTC to the microsecond, `bytea` in hex.
fn copy_text(out: &mut String, field: &Field<'_>) {
    match field {
        Field::Text(text) => {
            for c in text.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        }
        Field::Bytes(bytes) => {
            out.push_str("\\\\x");
            for byte in *bytes {
                let _ = write!(out, "{byte:02x}");
            }
        }
        Field::Time(time) => copy_time(out, *time),
        Field::MaybeTime(Some(time)) => copy_time(out, *time),
        Field::MaybeTime(None) => out.push_str("\\N"),
        Field::Small(small) => {
            let _ = write!(out, "{small}");
        }
    }
}

fn copy_time(out: &mut String, time: DateTime<Utc>) {
    let _ = write!(out, "{}", time.format("%Y-%m-%d %H:%M:%S%.6f+00"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_what_the_text_format_would_misread() {
        let mut out = String::new();
        copy_text(&mut out, &Field::Text("a\tb\\c\nd"));
        assert_eq!(out, "a\\tb\\\\c\\nd");
        out.clear();
        copy_text(&mut out, &Field::Bytes(&[0, 0xab]));
        assert_eq!(out, "\\\\x00ab");
        out.clear();
        copy_text(&mut out, &Field::MaybeTime(None));
        assert_eq!(out, "\\N");
    }

    #[test]
    fn an_insert_has_one_placeholder_group_per_row() {
        assert_eq!(
            insert_sql("t", &["a", "b"], "(?, ?)", 2),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"
        );
    }
}
