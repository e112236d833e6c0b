//! Faults injected under a running server: a full disk on SQLite, with and without clients that
//! hang up mid-write. An acknowledged write must survive a restart, whatever failed around it.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mandate::pb::identity_service_client::IdentityServiceClient;
use mandate::pb::{self, CheckPermissionRequest, GetCustomerRequest, RegisterCustomerRequest};
use mandate::server::Application;
use sea_orm::sqlx::{AssertSqlSafe, Connection, Executor, Row, SqlitePool};
use sea_orm::{ConnectionTrait, Statement};
use tokio::task::JoinSet;
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{
    Authed, Backend, Proxy, TestApp, TestDatabase, as_customer, channel_to, expect_code, spawn_app,
    start_on, start_with, with_key,
};
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
    register_at(app.address(), &app.key, prefix, count, hang_up).await
}

async fn connect(address: SocketAddr, key: &str) -> IdentityServiceClient<Authed> {
    IdentityServiceClient::new(with_key(channel_to(address).await, key))
}

/// `register_many` against the server at `address`.
async fn register_at(
    address: SocketAddr,
    key: &str,
    prefix: &str,
    count: usize,
    hang_up: bool,
) -> Vec<Outcome> {
    let shared = connect(address, key).await;
    let mut calls = JoinSet::new();
    for n in 0..count {
        let hangs_up = hang_up && n % 2 == 0;
        // A client that hangs up has a connection of its own: the server closes a connection
        // whose client resets many streams at once (HTTP/2 rapid-reset protection).
        let mut identity = if hangs_up {
            connect(address, key).await
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
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT revision FROM audit_events ORDER BY revision",
        ))
        .await
        .expect("the audit trail");
    let events = rows
        .iter()
        .map(|row| row.try_get_by_index::<i64>(0).expect("a revision"))
        .collect();
    (events, app.revision_counter().await)
}

/// Fills the disk under concurrent writers, frees it, writes again, restarts, and checks that
/// every acknowledged write is there.
async fn acknowledged_writes_survive_a_full_disk(hang_up: bool) {
    let app = spawn_app(Backend::Sqlite).await;
    let address = app.address();
    let mut outcomes = register_many(&app, "before", 20, false).await;
    fill_the_disk(&app).await;
    outcomes.extend(until_refused(address, &app.key).await);
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
    let server = ServerProcess::start(&database, &[]).await;
    let address = server.address;
    let key = database.key();
    let mut outcomes = register_at(address, &key, "before", 20, false).await;
    server.limit_file_size(Some(0));
    outcomes.extend(until_refused(address, &key).await);
    outcomes.extend(register_at(address, &key, "during", 100, hang_up).await);
    server.limit_file_size(None);
    outcomes.extend(register_at(address, &key, "after", 50, hang_up).await);
    let (status, _) = server.stop().await;
    assert!(status.success(), "the server exits cleanly: {status}");
    all_acknowledged_writes_are_kept(outcomes, database).await;
}

/// Writes one at a time until one is refused, which shows the fault is in place.
async fn until_refused(address: SocketAddr, key: &str) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for n in 0..200 {
        let outcome = register_at(address, key, &format!("probe-{n}"), 1, false).await;
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

/// Health's status for the whole server, as it changes: waits (up to a minute) for `wanted`.
async fn health_becomes(app: &TestApp, wanted: ServingStatus) {
    let mut health = HealthClient::new(app.channel.clone());
    let mut updates = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("Health watch")
        .into_inner();
    let wait = async {
        while let Some(update) = updates.message().await.expect("a health update") {
            if update.status == wanted as i32 {
                return;
            }
        }
        panic!("the health stream ended before {wanted:?}");
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .unwrap_or_else(|_| panic!("Health did not turn {wanted:?}"));
}

/// Does `change` to the SQLite file of a running server, then expects writes to answer
/// UNAVAILABLE (saying the server needs a restart) and Health to turn NOT_SERVING; reads still
/// answer from the file the server holds open, which nothing can change any more. The database,
/// once the server has stopped.
async fn writes_stop_when_the_file_is(change: impl FnOnce(&str)) -> TestDatabase {
    let mut app = spawn_app(Backend::Sqlite).await;
    let ana = app.customer("ana").await;
    change(&app.database().name);

    let refused = app
        .identity
        .register_customer(RegisterCustomerRequest {
            external_subject: "ben".into(),
            display_name: "Ben".into(),
            email: "ben@example.ca".into(),
        })
        .await;
    let status = expect_code(refused, Code::Unavailable);
    assert!(
        status.message().contains("restarted"),
        "the message says what to do: {status:?}"
    );
    health_becomes(&app, ServingStatus::NotServing).await;
    app.identity
        .get_customer(GetCustomerRequest {
            customer_id: ana.customer_id,
        })
        .await
        .expect("a read of what was there");
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_sqlite_file_was_deleted_stops_acknowledging_writes() {
    let database = writes_stop_when_the_file_is(|file| {
        std::fs::remove_file(file).expect("delete the database file");
    })
    .await;
    assert!(
        !std::path::Path::new(&database.name).exists(),
        "no connection made an empty database in place of the deleted one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_sqlite_file_was_replaced_stops_acknowledging_writes() {
    writes_stop_when_the_file_is(|file| {
        let copy = format!("{file}.copy");
        std::fs::copy(file, &copy).expect("copy the database file");
        std::fs::rename(&copy, file).expect("replace the database file");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refuses_to_start_on_a_deleted_sqlite_file() {
    let mut app = spawn_app(Backend::Sqlite).await;
    app.customer("ana").await;
    let database = app.stop().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", database.name));
    }

    let refused = Application::build(&database.settings()).await;
    let message = match refused {
        Ok(_) => panic!("the server started on an empty database in place of the deleted one"),
        Err(err) => err.to_string(),
    };
    assert!(
        message.contains(&format!("{} is missing", database.name)),
        "the message says what is missing: {message}"
    );
    assert!(
        message.contains(&format!("remove {}.secret", database.name)),
        "the message says how to start afresh on purpose: {message}"
    );
    assert!(
        !std::path::Path::new(&database.name).exists(),
        "no empty database was created"
    );
}

/// How long a call took, and what it answered.
async fn timed<T>(call: impl Future<Output = Result<T, Status>>) -> (Result<T, Status>, Duration) {
    let started = Instant::now();
    // The client's own deadline, far beyond the server's: the server must answer first.
    let answer = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .unwrap_or_else(|_| Err(Status::deadline_exceeded("the test gave up")));
    (answer, started.elapsed())
}

/// PostgreSQL stops answering without closing anything (a black hole). Calls in flight and new
/// calls answer UNAVAILABLE within the configured wait; Health turns NOT_SERVING, then SERVING
/// once the database answers again; nothing acknowledged is lost and nothing refused was kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_postgres_outage_answers_unavailable_within_the_wait() {
    let database = TestDatabase::new(Backend::Postgres).await;
    let (credentials, rest) = database.url.split_once('@').expect("a URL with a user");
    let (server, name) = rest.split_once('/').expect("a URL with a database");
    let proxy = Proxy::start(server).await;
    let mut settings = database.settings();
    settings.database_url = format!("{credentials}@{}/{name}", proxy.address());
    settings.database_wait_ms = 1000;
    let wait = Duration::from_millis(settings.database_wait_ms);
    // Generous: the bound is the wait; this margin only absorbs a slow machine.
    let bound = wait + Duration::from_secs(4);
    let mut app = start_with(database, &settings).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    let granted = app
        .set_permissions(&manager, &contractor, &associate, &[pb::Permission::Pay])
        .await
        .expect("a grant before the outage");

    // Writes in flight as the database goes silent: they queue behind a transaction of the
    // test's own that holds the revision lock, on a connection that bypasses the proxy.
    let blocker = app.hold_revision_lock().await;
    let mut in_flight = JoinSet::new();
    for n in 0..3 {
        let mut identity = app.identity.clone();
        in_flight.spawn(timed(async move {
            identity
                .register_customer(RegisterCustomerRequest {
                    external_subject: format!("in-flight-{n}"),
                    display_name: "In flight".into(),
                    email: "flight@example.ca".into(),
                })
                .await
        }));
    }
    proxy.black_hole();
    blocker.commit().await.expect("release the revision lock");

    let check = CheckPermissionRequest {
        customer_id: associate.clone(),
        permission: pb::Permission::Pay as i32,
        contractor_id: contractor.clone(),
        application_id: String::new(),
        at_least_revision: 0,
    };
    let mut permissions = app.permissions.clone();
    let (answer, took) = timed(permissions.check_permission(check.clone())).await;
    expect_code(answer, Code::Unavailable);
    eprintln!("black hole: a new check answered UNAVAILABLE after {took:?}");
    assert!(took <= bound, "a new check took {took:?}");
    let mut contractors = app.contractors.clone();
    let (answer, took) = timed(contractors.associate_by_pin(as_customer(
        &associate,
        pb::AssociateByPinRequest {
            pin: "Q4WE-3CVY-HW".into(),
        },
    )))
    .await;
    expect_code(answer, Code::Unavailable);
    assert!(took <= bound, "a new call took {took:?}");
    while let Some(call) = in_flight.join_next().await {
        let (answer, took) = call.expect("the call's task");
        expect_code(answer, Code::Unavailable);
        eprintln!("black hole: a write in flight answered UNAVAILABLE after {took:?}");
        assert!(took <= bound, "a write in flight took {took:?}");
    }
    health_becomes(&app, ServingStatus::NotServing).await;
    assert_eq!(
        app.probe("/readyz").await.0,
        503,
        "not ready while the database is silent"
    );
    assert_eq!(app.probe("/healthz").await.0, 200, "but alive");

    proxy.light();
    health_becomes(&app, ServingStatus::Serving).await;
    assert_eq!(app.probe("/readyz").await.0, 200, "ready again");
    // The database may hold the silenced sessions' locks a little longer: retry as a client
    // would, for a bounded time.
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        match app
            .set_permissions(&manager, &contractor, &associate, &[pb::Permission::Apply])
            .await
        {
            Ok(after) => break after,
            Err(status) if status.code() == Code::Unavailable && Instant::now() < deadline => {}
            Err(status) => panic!("the service did not resume: {status:?}"),
        }
    };
    assert_eq!(
        after.revision,
        granted.revision + 1,
        "no refused write was kept"
    );
    let decision = app
        .check(&associate, pb::Permission::Pay, &contractor, "")
        .await
        .expect("a check after the outage");
    assert!(!decision.allowed, "the later grant replaced Pay");
    let (events, counter) = revisions(&app).await;
    assert_eq!(events, (1..=counter).collect::<Vec<_>>());
}
