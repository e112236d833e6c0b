//! Denied checks reach the denied-check trail, written off the check's path, and none queued
//! is lost when the server stops; identical ones fold into one row, so one caller cannot make
//! the trail grow by a row a check; old rows are pruned; a refused write is counted, logged and
//! not tried again for ever.

use mandate::pb::Permission::{Inspections, Pay};
use mandate::pb::{CheckPermissionRequest, CheckPermissionsRequest, CheckReason};
use mandate_domain::decision::Reason;
use mandate_store::{DeniedCheck, DeniedFold};
use sea_orm::{ConnectionTrait, Database, Statement};

use crate::helpers::{Backend, assert_decision, series, spawn_app, spawn_app_with, start_on};
use crate::on_both_backends;

on_both_backends!(
    every_denied_check_is_in_the_trail_once_the_server_has_stopped,
    a_flood_of_identical_denied_batches_writes_one_row_a_window,
    thousands_of_different_denials_are_written_within_the_databases_limits,
    rows_older_than_the_retention_are_pruned_and_counted,
);

async fn every_denied_check_is_in_the_trail_once_the_server_has_stopped(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    app.set_permissions(&manager, &contractor, &associate, &[Pay])
        .await
        .unwrap();
    let allowed = app.check(&associate, Pay, &contractor, "").await.unwrap();
    assert_decision(&allowed, true, CheckReason::GrantedDirectly);
    for _ in 0..3 {
        let denied = app
            .check(&associate, Inspections, &contractor, "")
            .await
            .unwrap();
        assert_decision(&denied, false, CheckReason::PermissionNotHeld);
    }
    let item = |permission: mandate::pb::Permission| CheckPermissionRequest {
        customer_id: manager.clone(),
        permission: permission as i32,
        contractor_id: contractor.clone(),
        application_id: String::new(),
        at_least_revision: 0,
    };
    let mut denied_in_batch = item(Pay);
    denied_in_batch.customer_id = associate.clone();
    denied_in_batch.permission = Inspections as i32;
    app.permissions
        .check_permissions(CheckPermissionsRequest {
            items: vec![item(Pay), denied_in_batch],
        })
        .await
        .unwrap();

    let database = app.stop().await;
    let db = Database::connect(&database.url).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT client, customer_id, permission, contractor_id, application_id, reason, \
             occurrences FROM denied_checks ORDER BY id",
        ))
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        1,
        "three single checks and one batch item, all alike, share one row"
    );
    for row in rows {
        let client: String = row.try_get_by_index(0).unwrap();
        let customer: String = row.try_get_by_index(1).unwrap();
        let permission: String = row.try_get_by_index(2).unwrap();
        let account: Option<String> = row.try_get_by_index(3).unwrap();
        let application: Option<String> = row.try_get_by_index(4).unwrap();
        let reason: String = row.try_get_by_index(5).unwrap();
        let occurrences: i64 = row.try_get_by_index(6).unwrap();
        assert_eq!(occurrences, 4);
        assert_eq!(
            (
                client.as_str(),
                customer.as_str(),
                permission.as_str(),
                account.as_deref(),
                application,
                reason.as_str()
            ),
            (
                "bootstrap",
                associate.as_str(),
                "Inspections",
                Some(contractor.as_str()),
                None,
                "permission_not_held"
            )
        );
    }
    db.close().await.unwrap();
}

/// The trail's rows and the denials they stand for.
async fn trail(url: &str) -> (i64, i64) {
    let db = Database::connect(url).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*), CAST(COALESCE(SUM(occurrences), 0) AS BIGINT) FROM denied_checks",
        ))
        .await
        .unwrap()
        .unwrap();
    let counts = (
        row.try_get_by_index(0).unwrap(),
        row.try_get_by_index(1).unwrap(),
    );
    db.close().await.unwrap();
    counts
}

/// One `check` key sends 100-item batches of the same denied check (#17: 1.77 M rows in 20 s
/// before): every denial is accounted for, in one row.
async fn a_flood_of_identical_denied_batches_writes_one_row_a_window(backend: Backend) {
    let mut app = spawn_app_with(backend, |settings| {
        settings.denied_check_window_secs = 3600;
    })
    .await;
    let (_, _, contractor, _) = app.story().await;
    let stranger = app.customer("stranger").await.customer_id;
    let item = CheckPermissionRequest {
        customer_id: stranger,
        permission: Pay as i32,
        contractor_id: contractor.clone(),
        application_id: String::new(),
        at_least_revision: 0,
    };
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (mut client, item) = (app.permissions.clone(), item.clone());
        callers.spawn(async move {
            for _ in 0..25 {
                let results = client
                    .check_permissions(CheckPermissionsRequest {
                        items: vec![item.clone(); 100],
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .results;
                assert_eq!(results.len(), 100);
            }
        });
    }
    while let Some(caller) = callers.join_next().await {
        caller.unwrap();
    }
    let (_, text) = app.http_get("/metrics").await;
    let dropped = series(&text, "mandate_denied_checks_dropped_total").unwrap();
    let database = app.stop().await;
    let (rows, occurrences) = trail(&database.url).await;
    assert_eq!(
        rows, 1,
        "20 000 identical denials in one window are one row"
    );
    assert_eq!(
        occurrences as f64 + dropped,
        20_000.0,
        "every denial is in the row or counted as dropped"
    );
    assert!(occurrences > 0);
}

/// More different denials than one statement may carry (10 values a row: 5 000 rows would be
/// 50 000 variables, past SQLite's 32 766) are written, in statements that fit.
async fn thousands_of_different_denials_are_written_within_the_databases_limits(backend: Backend) {
    let app = spawn_app(backend).await;
    let now = chrono::Utc::now();
    let folds: Vec<DeniedFold> = (0..5_000)
        .map(|n| DeniedFold {
            first: DeniedCheck {
                time: now,
                client: "payments".into(),
                customer_id: format!("customer-{n}"),
                permission: mandate_domain::permission::Permission::Pay,
                contractor_id: None,
                application_id: Some(format!("24-{n:06} BLD")),
                reason: Reason::ApplicationNotLinked,
            },
            occurrences: 2,
            last_time: now,
        })
        .collect();
    app.store.record_denied_checks(&folds).await.unwrap();
    let database = app.stop().await;
    assert_eq!(trail(&database.url).await, (5_000, 10_000));
}

/// Rows whose first denial is older than the retention are deleted when the server starts (and
/// hourly); newer ones stay, and the metrics count both.
async fn rows_older_than_the_retention_are_pruned_and_counted(backend: Backend) {
    // This first server keeps rows for a year, so that its own pruning (at start-up, racing the
    // rows written below) deletes none of them; the next one keeps the default 90 days.
    let app = spawn_app_with(backend, |settings| {
        settings.denied_check_retention_days = 365;
    })
    .await;
    let fold = |days: i64, n: usize| {
        let time = chrono::Utc::now() - chrono::Duration::days(days);
        DeniedFold {
            first: DeniedCheck {
                time,
                client: "payments".into(),
                customer_id: format!("customer-{n}"),
                permission: mandate_domain::permission::Permission::Pay,
                contractor_id: Some("01a205df-1f81-777b-a81a-51de193b618a".into()),
                application_id: None,
                reason: Reason::NotAssociated,
            },
            occurrences: 1,
            last_time: time,
        }
    };
    let old: Vec<DeniedFold> = (0..2_500).map(|n| fold(91, n)).collect();
    let recent: Vec<DeniedFold> = (0..7).map(|n| fold(89, n)).collect();
    app.store.record_denied_checks(&old).await.unwrap();
    app.store.record_denied_checks(&recent).await.unwrap();
    let app = start_on(app.stop().await).await;
    let text = app
        .metric_reaches("mandate_denied_check_rows_pruned_total", 2_500.0)
        .await;
    assert_eq!(
        series(&text, "mandate_denied_check_rows_pruned_total"),
        Some(2_500.0)
    );
    let text = app.metric_reaches("mandate_denied_check_rows", 7.0).await;
    assert_eq!(series(&text, "mandate_denied_check_rows"), Some(7.0));
    let database = app.stop().await;
    assert_eq!(trail(&database.url).await, (7, 7));
}

/// A write the database refuses is counted and logged once, its rows dropped, and the writer
/// goes on: once the database accepts again, the next window is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_trail_write_is_counted_and_the_next_window_is_written_on_postgres() {
    let mut app = spawn_app_with(Backend::Postgres, |settings| {
        settings.denied_check_window_secs = 1;
    })
    .await;
    let (_, associate, contractor, _) = app.story().await;
    let db = Database::connect(&app.database().url).await.unwrap();
    db.execute_unprepared(
        "ALTER TABLE denied_checks ADD CONSTRAINT refuse_all CHECK (occurrences < 0) NOT VALID",
    )
    .await
    .unwrap();
    let denied = app
        .check(&associate, Inspections, &contractor, "")
        .await
        .unwrap();
    assert_decision(&denied, false, CheckReason::PermissionNotHeld);
    app.metric_reaches("mandate_denied_check_write_failures_total", 1.0)
        .await;
    let text = app
        .metric_reaches("mandate_denied_checks_dropped_total", 1.0)
        .await;
    assert_eq!(
        series(&text, "mandate_denied_check_rows_written_total"),
        Some(0.0)
    );

    db.execute_unprepared("ALTER TABLE denied_checks DROP CONSTRAINT refuse_all")
        .await
        .unwrap();
    app.check(&associate, Inspections, &contractor, "")
        .await
        .unwrap();
    let text = app
        .metric_reaches("mandate_denied_check_rows_written_total", 1.0)
        .await;
    assert_eq!(
        series(&text, "mandate_denied_check_write_failures_total"),
        Some(1.0),
        "the refused rows were not tried again"
    );
    db.close().await.unwrap();
    let database = app.stop().await;
    assert_eq!(trail(&database.url).await, (1, 1));
}
