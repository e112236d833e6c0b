//! Load is bounded: past the maximum of calls in flight a call answers UNAVAILABLE at once
//! (Health still answers), and a client system holds at most so many change feeds.

use std::time::{Duration, Instant};

use mandate::pb::permission_service_client::PermissionServiceClient;
use mandate::pb::{Permission, WatchChangesRequest};
use mandate_domain::client::Scope;
use sea_orm::{ConnectionTrait, Statement};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{Backend, spawn_app_with, with_key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_maximum_of_calls_in_flight_a_call_is_shed_at_once() {
    let mut app = spawn_app_with(Backend::Postgres, |settings| settings.max_calls = 2).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    // Two writes stay in flight behind a transaction of the test's own.
    let writer = app.hold_revision_lock().await;
    let mut stuck = Vec::new();
    for _ in 0..2 {
        let mut app_permissions = app.permissions.clone();
        let request = crate::helpers::as_customer(
            &manager,
            mandate::pb::SetPermissionsRequest {
                contractor_id: contractor.clone(),
                customer_id: associate.clone(),
                permissions: vec![Permission::Pay as i32],
                expire_time: None,
            },
        );
        stuck.push(tokio::spawn(async move {
            app_permissions.set_permissions(request).await
        }));
    }
    // Both are in flight once PostgreSQL has them waiting for the lock.
    let db = app.store.connection();
    let started = Instant::now();
    loop {
        let waiting: i64 = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            ))
            .await
            .expect("the locks")
            .expect("a row")
            .try_get_by_index(0)
            .expect("a count");
        if waiting >= 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the writes never queued"
        );
        tokio::task::yield_now().await;
    }
    // The next call is shed without waiting for anything.
    let asked = Instant::now();
    let shed = app
        .check(&associate, Permission::Pay, &contractor, "")
        .await
        .expect_err("a call past the maximum");
    let took = asked.elapsed();
    assert_eq!(shed.code(), Code::Unavailable, "{shed:?}");
    assert!(shed.message().contains("in flight"), "{shed:?}");
    eprintln!("a call past the maximum was shed after {took:?}");
    HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .expect("Health is not shed");

    writer.rollback().await.expect("release the lock");
    for write in stuck {
        write
            .await
            .expect("the write's task")
            .expect("the stuck write completes");
    }
    app.check(&associate, Permission::Pay, &contractor, "")
        .await
        .expect("calls are served again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_holds_at_most_so_many_change_feeds() {
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        settings.max_feeds_per_client = 2
    })
    .await;
    let mut first = app.permissions.clone();
    let mut second = app.permissions.clone();
    let one = first
        .watch_changes(WatchChangesRequest::default())
        .await
        .expect("a first feed");
    let _two = second
        .watch_changes(WatchChangesRequest::default())
        .await
        .expect("a second feed");
    let refused = app
        .permissions
        .clone()
        .watch_changes(WatchChangesRequest::default())
        .await;
    let status = refused.expect_err("a third feed of the same client");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("bootstrap"), "{status:?}");

    // Another client system has feeds of its own.
    let issued = mandate::credentials::keys::create(
        &app.store,
        "inspections",
        [Scope::Check].into_iter().collect(),
        None,
    )
    .await
    .expect("a key");
    app.keys.reload(&app.store).await.expect("reload");
    PermissionServiceClient::new(with_key(app.channel.clone(), &issued.secret))
        .watch_changes(WatchChangesRequest::default())
        .await
        .expect("another client's feed");

    // A feed closed by its consumer gives its place back.
    drop(one);
    let started = Instant::now();
    loop {
        match app
            .permissions
            .clone()
            .watch_changes(WatchChangesRequest::default())
            .await
        {
            Ok(_) => break,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the place never came back"
                );
                tokio::task::yield_now().await;
            }
            Err(status) => panic!("unexpected answer: {status:?}"),
        }
    }
}
