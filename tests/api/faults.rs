//! Faults injected under a running server: a full disk on SQLite, with and without clients that
//! hang up mid-write. An acknowledged write must survive a restart, whatever failed around it.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use mandate::pb::identity_service_client::IdentityServiceClient;
use mandate::pb::{GetCustomerRequest, RegisterCustomerRequest};
use sea_orm::sqlx::{AssertSqlSafe, Connection, Executor, Row, SqlitePool};
use sea_orm::{ConnectionTrait, Statement};
use tokio::task::JoinSet;
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::{Backend, TestApp, TestDatabase, spawn_app, start_on};
use crate::process::ServerProcess;

/// The SQLite pool of the server's store.
fn pool(app: &TestApp) -> SqlitePool {
    app.store.connection().get_sqlite_connection_pool().clone()
}

/// Runs `sql` on every connection the server's pool can hold, opening those it has not yet:
/// per-connection settings such as `max_page_count` then apply to whatever connection serves
/// the next call.
async fn on_every_connection(app: &TestApp, sql: &str) {
    let pool = pool(app);
    let size = pool.options().get_max_connections();
    let mut held = Vec::new();
    for _ in 0..size {
        let mut conn = pool.acquire().await.expect("a pooled connection");
        conn.execute(AssertSqlSafe(sql.to_owned()))
            .await
            .expect("the fault is set");
        held.push(conn);
    }
}

/// The database is full: no page can be added to it, as when its disk is.
async fn fill_the_disk(app: &TestApp) {
    let mut conn = pool(app).acquire().await.expect("a pooled connection");
    let pages: i64 = sea_orm::sqlx::query("PRAGMA page_count")
        .fetch_one(&mut *conn)
        .await
        .expect("the page count")
        .get(0);
    drop(conn);
    on_every_connection(app, &format!("PRAGMA max_page_count = {pages}")).await;
}

async fn free_the_disk(app: &TestApp) {
    on_every_connection(app, "PRAGMA max_page_count = 1073741823").await;
}

/// What one registration answered.
enum Outcome {
    Kept {
        customer_id: String,
        revision: i64,
    },
    Refused(Code),
    /// The client hung up before an answer: the write may or may not have been kept.
    Abandoned,
}

/// Registers `count` customers named `{prefix}-{n}`, all at once; when `hang_up` is set,
/// every other client gives up after a short, varying time, mid-write.
async fn register_many(app: &TestApp, prefix: &str, count: usize, hang_up: bool) -> Vec<Outcome> {
    register_at(app.address(), prefix, count, hang_up).await
}

async fn connect(address: SocketAddr) -> IdentityServiceClient<Channel> {
    IdentityServiceClient::new(
        Channel::from_shared(format!("http://{address}"))
            .expect("a valid URI")
            .connect()
            .await
            .expect("connect to the server"),
    )
}

/// `register_many` against the server at `address`.
async fn register_at(
    address: SocketAddr,
    prefix: &str,
    count: usize,
    hang_up: bool,
) -> Vec<Outcome> {
    let shared = connect(address).await;
    let mut calls = JoinSet::new();
    for n in 0..count {
        let hangs_up = hang_up && n % 2 == 0;
        // A client that hangs up has a connection of its own: the server closes a connection
        // whose client resets many streams at once (HTTP/2 rapid-reset protection).
        let mut identity = if hangs_up {
            connect(address).await
        } else {
            shared.clone()
        };
        let subject = format!("{prefix}-{n}");
        calls.spawn(async move {
            let call = identity.register_customer(RegisterCustomerRequest {
                external_subject: subject.clone(),
                display_name: format!("Customer {subject}"),
                // A long email makes rows large, so the full disk is met quickly.
                email: format!("{}-{n}@example.ca", "x".repeat(48)),
            });
            let answer = if hangs_up {
                let patience = Duration::from_micros(200 + (n as u64 * 397) % 3000);
                match tokio::time::timeout(patience, call).await {
                    Ok(answer) => answer,
                    Err(_) => return Outcome::Abandoned,
                }
            } else {
                call.await
            };
            match answer {
                Ok(response) => {
                    let response = response.into_inner();
                    Outcome::Kept {
                        customer_id: response.customer.expect("a customer").customer_id,
                        revision: response.revision,
                    }
                }
                Err(status) => Outcome::Refused(status.code()),
            }
        });
    }
    let mut outcomes = Vec::new();
    while let Some(outcome) = calls.join_next().await {
        outcomes.push(outcome.expect("the call's task"));
    }
    outcomes
}

/// Every revision the audit trail holds, and the revision counter.
async fn revisions(app: &TestApp) -> (Vec<i64>, i64) {
    let db = app.store.connection();
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT revision FROM audit_events ORDER BY revision",
        ))
        .await
        .expect("the audit trail");
    let events = rows
        .iter()
        .map(|row| row.try_get_by_index::<i64>(0).expect("a revision"))
        .collect();
    let counter = db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT value FROM revision_counter WHERE id = 1",
        ))
        .await
        .expect("the counter")
        .expect("the counter row")
        .try_get_by_index::<i64>(0)
        .expect("a revision");
    (events, counter)
}

/// Fills the disk under concurrent writers, frees it, writes again, restarts, and checks that
/// every acknowledged write is there.
async fn acknowledged_writes_survive_a_full_disk(hang_up: bool) {
    let app = spawn_app(Backend::Sqlite).await;
    let address = app.address();
    let mut outcomes = register_many(&app, "before", 20, false).await;
    fill_the_disk(&app).await;
    outcomes.extend(until_refused(address).await);
    outcomes.extend(register_many(&app, "during", 150, hang_up).await);
    free_the_disk(&app).await;
    outcomes.extend(register_many(&app, "after", 40, hang_up).await);
    all_acknowledged_writes_are_kept(outcomes, app.stop().await).await;
}

/// The same with the server in a process of its own whose file-size limit drops to zero: every
/// write to the database file or its log fails, `COMMIT` included, as on a full disk or a log
/// file made unwritable.
async fn acknowledged_writes_survive_failed_commits(hang_up: bool) {
    let database = TestDatabase::new(Backend::Sqlite).await;
    let url = database.url.clone();
    let server = tokio::task::spawn_blocking(move || ServerProcess::start(&url, &[]))
        .await
        .expect("the server process starts");
    let address = server.address;
    let mut outcomes = register_at(address, "before", 20, false).await;
    server.limit_file_size(Some(0));
    outcomes.extend(until_refused(address).await);
    outcomes.extend(register_at(address, "during", 100, hang_up).await);
    server.limit_file_size(None);
    outcomes.extend(register_at(address, "after", 50, hang_up).await);
    let (status, _) = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("the server process stops");
    assert!(status.success(), "the server exits cleanly: {status}");
    all_acknowledged_writes_are_kept(outcomes, database).await;
}

/// Writes one at a time until one is refused, which shows the fault is in place.
async fn until_refused(address: SocketAddr) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for n in 0..200 {
        let outcome = register_at(address, &format!("probe-{n}"), 1, false).await;
        let refused = matches!(outcome[..], [Outcome::Refused(_)]);
        outcomes.extend(outcome);
        if refused {
            return outcomes;
        }
    }
    panic!("no write was refused: the fault was not injected");
}

/// Restarts a server on `database` and checks that every write acknowledged in `outcomes` is
/// there at its revision, that no revision was acknowledged twice or skipped, and that every
/// refusal was UNAVAILABLE.
async fn all_acknowledged_writes_are_kept(outcomes: Vec<Outcome>, database: TestDatabase) {
    let refusals: Vec<Code> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            Outcome::Refused(code) => Some(*code),
            _ => None,
        })
        .collect();
    assert!(
        refusals.iter().all(|code| *code == Code::Unavailable),
        "a full disk answers UNAVAILABLE, not {refusals:?}"
    );
    let mut app = start_on(database).await;
    let mut acknowledged = BTreeSet::new();
    let mut lost = Vec::new();
    for outcome in &outcomes {
        if let Outcome::Kept {
            customer_id,
            revision,
        } = outcome
        {
            assert!(
                acknowledged.insert(*revision),
                "revision {revision} was acknowledged twice"
            );
            let found = app
                .identity
                .get_customer(GetCustomerRequest {
                    customer_id: customer_id.clone(),
                })
                .await;
            if found.is_err() {
                lost.push(*revision);
            }
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes are lost, at revisions {lost:?}",
        lost.len(),
        acknowledged.len()
    );
    let (events, counter) = revisions(&app).await;
    let expected: Vec<i64> = (1..=counter).collect();
    assert_eq!(events, expected, "the audit trail has every revision once");
    assert!(
        acknowledged.iter().all(|revision| *revision <= counter),
        "an acknowledged revision is past the counter {counter}"
    );
    drop(app.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_writes_survive_a_full_disk() {
    acknowledged_writes_survive_a_full_disk(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_writes_survive_a_full_disk_with_clients_hanging_up() {
    acknowledged_writes_survive_a_full_disk(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_writes_survive_failed_commits() {
    acknowledged_writes_survive_failed_commits(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_writes_survive_failed_commits_with_clients_hanging_up() {
    acknowledged_writes_survive_failed_commits(true).await;
}

/// A pooled connection proves itself clean before reuse: one left inside a transaction (as
/// a failed `COMMIT` can leave it) is closed, not handed to the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_left_inside_a_transaction_is_not_reused() {
    let app = spawn_app(Backend::Sqlite).await;
    let pool = pool(&app);
    let mut conn = pool.acquire().await.expect("a pooled connection");
    // Behind sqlx's back, as SQLite does when it keeps a transaction open after a failed COMMIT.
    conn.execute("BEGIN").await.expect("a transaction");
    conn.execute("SELECT 1 FROM customers")
        .await
        .expect("a read");
    assert!(!conn.is_in_transaction(), "sqlx does not know of it");
    drop(conn);
    // Every connection the pool hands out now is outside any transaction.
    for _ in 0..pool.options().get_max_connections() * 2 {
        let mut conn = pool.acquire().await.expect("a pooled connection");
        conn.execute("BEGIN")
            .await
            .expect("a connection from the pool is not inside a transaction already");
        conn.execute("ROLLBACK").await.expect("rolled back");
    }
}
