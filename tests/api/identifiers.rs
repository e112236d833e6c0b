//! Identifiers the way other systems write them: one permit number however it is spaced or
//! cased, and ids in upper case as well as lower.

use mandate::pb::Permission::Pay;
use mandate::pb::{
    CheckPermissionRequest, CheckReason, GetContractorRequest, LinkApplicationRequest,
    ListAccessibleApplicationsRequest,
};
use sea_orm::{ConnectionTrait, Statement};

use crate::helpers::{Backend, as_customer, assert_decision, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    one_permit_number_however_it_is_written_is_one_permit,
    ids_in_upper_case_name_the_same_records,
    links_stored_in_other_forms_are_rewritten_by_the_migration,
);

async fn one_permit_number_however_it_is_written_is_one_permit(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    app.set_permissions(&manager, &contractor, &associate, &[Pay])
        .await
        .expect("a grant");
    app.permissions
        .link_application(LinkApplicationRequest {
            application_id: " 24-123456   bld ".into(),
            contractor_id: contractor.clone(),
        })
        .await
        .expect("linked");
    for written in ["24-123456 BLD", "24-123456 bld", "24-123456  Bld"] {
        let decision = app
            .check(&associate, Pay, "", written)
            .await
            .expect("a check");
        assert_decision(&decision, true, CheckReason::GrantedDirectly);
    }
    let listed = app
        .permissions
        .list_accessible_applications(ListAccessibleApplicationsRequest {
            customer_id: associate.clone(),
            permission: Pay as i32,
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .expect("the applications")
        .into_inner()
        .applications;
    let numbers: Vec<&str> = listed.iter().map(|a| a.application_id.as_str()).collect();
    assert_eq!(numbers, ["24-123456 BLD"], "one permit, in its one form");
}

async fn ids_in_upper_case_name_the_same_records(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, _associate, contractor, _pin) = app.story().await;
    let decision = app
        .permissions
        .check_permission(CheckPermissionRequest {
            customer_id: manager.to_uppercase(),
            permission: Pay as i32,
            contractor_id: format!(" {} ", contractor.to_uppercase()),
            application_id: String::new(),
            at_least_revision: 0,
        })
        .await
        .expect("a check with ids in upper case")
        .into_inner();
    assert_decision(&decision, true, CheckReason::GrantedThroughManage);
    let read = app
        .contractors
        .get_contractor(as_customer(
            &manager.to_uppercase(),
            GetContractorRequest {
                contractor_id: contractor.to_uppercase(),
            },
        ))
        .await
        .expect("the account, for a customer named in upper case")
        .into_inner()
        .contractor
        .expect("the account");
    assert_eq!(
        read.contractor_id, contractor,
        "ids come back in lower case"
    );
    assert!(
        read.contact.is_some(),
        "the upper-case x-customer-id is the associate it names"
    );
}

async fn links_stored_in_other_forms_are_rewritten_by_the_migration(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_manager, _associate, contractor, _pin) = app.story().await;
    let db = app.store.connection();
    let run = async |sql: String| {
        db.execute_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .expect("a statement")
    };
    // As an earlier version stored them: trimmed, but in the caller's case and spacing.
    for written in ["24-9 bld", "24-9 BLD", "25-1  abc"] {
        run(format!(
            "INSERT INTO application_links (application_id, contractor_id, link_time) \
             VALUES ('{written}', '{contractor}', CURRENT_TIMESTAMP)"
        ))
        .await;
    }
    run("DELETE FROM seaql_migrations \
         WHERE version = 'm20261201_000002_canonical_application_ids'"
        .to_owned())
    .await;
    app.store.migrate().await.expect("the migration runs again");
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT application_id FROM application_links ORDER BY application_id",
        ))
        .await
        .expect("the links");
    let numbers: Vec<String> = rows
        .iter()
        .map(|row| row.try_get_by_index(0).expect("a number"))
        .collect();
    assert_eq!(numbers, ["24-9 BLD", "25-1 ABC"]);
}
