//! Denied checks reach the denied-check trail, written off the check's path, and none queued
//! is lost when the server stops.

use mandate::pb::Permission::{Inspections, Pay};
use mandate::pb::{CheckPermissionRequest, CheckPermissionsRequest, CheckReason};
use sea_orm::{ConnectionTrait, Database, Statement};

use crate::helpers::{Backend, assert_decision, spawn_app};
use crate::on_both_backends;

on_both_backends!(every_denied_check_is_in_the_trail_once_the_server_has_stopped);

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
            "SELECT client, customer_id, permission, contractor_id, application_id, reason \
             FROM denied_checks ORDER BY id",
        ))
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        4,
        "three single checks and one batch item were denied"
    );
    for row in rows {
        let client: String = row.try_get_by_index(0).unwrap();
        let customer: String = row.try_get_by_index(1).unwrap();
        let permission: String = row.try_get_by_index(2).unwrap();
        let account: Option<String> = row.try_get_by_index(3).unwrap();
        let application: Option<String> = row.try_get_by_index(4).unwrap();
        let reason: String = row.try_get_by_index(5).unwrap();
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
