use mandate::pb::Permission::{Apply, Inspections, Pay, Unspecified, UploadFiles};
use mandate::pb::{
    CheckPermissionRequest, CheckPermissionsRequest, CheckReason, LinkApplicationRequest,
    ListAccessibleApplicationsRequest, UnlinkApplicationRequest, check_permissions_result::Outcome,
};
use tonic::Code;

use crate::helpers::{
    Backend, TestApp, as_customer, assert_decision, contractor_request, expect_code,
    expect_invalid, spawn_app, spawn_app_with,
};
use crate::on_both_backends;

on_both_backends!(
    an_application_check_is_allowed_through_the_linked_account_and_names_it,
    an_application_not_linked_to_any_of_the_customers_accounts_is_denied_as_not_linked,
    a_check_on_an_application_through_one_account_needs_that_link,
    a_check_on_an_application_through_an_account_the_customer_is_not_in_is_not_associated,
    a_check_of_an_unknown_customer_or_account_is_not_found,
    a_check_names_its_bad_fields,
    a_check_is_at_least_as_fresh_as_a_revision_the_caller_saw,
    a_batch_decides_each_item_in_order_and_reports_a_bad_item_alone,
    a_batch_of_more_than_100_checks_is_refused,
    linking_and_unlinking_are_idempotent,
    a_batch_on_an_application_linked_to_seventy_thousand_accounts_is_decided,
    linking_to_an_unknown_account_or_a_bad_number_is_refused,
    accessible_applications_follow_the_permissions_page_by_page,
    a_batch_answers_every_item_as_a_single_check_would,
    without_a_cache_accessible_applications_follow_the_permissions_page_by_page,
    without_a_cache_a_batch_answers_every_item_as_a_single_check_would,
);

/// A server whose check cache keeps nothing (`--cache-size 0`): every answer from the database.
async fn spawn_uncached(backend: Backend) -> TestApp {
    spawn_app_with(backend, |settings| settings.cache_size = 0).await
}

async fn without_a_cache_accessible_applications_follow_the_permissions_page_by_page(
    backend: Backend,
) {
    accessible_applications_page_by_page(spawn_uncached(backend).await).await;
}

async fn without_a_cache_a_batch_answers_every_item_as_a_single_check_would(backend: Backend) {
    batch_answers_as_single_checks(spawn_uncached(backend).await).await;
}

const PERMIT: &str = "24-123456 BLD";

async fn link(app: &mut TestApp, application_id: &str, contractor_id: &str) -> i64 {
    app.permissions
        .link_application(LinkApplicationRequest {
            application_id: application_id.to_owned(),
            contractor_id: contractor_id.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .revision
}

async fn an_application_check_is_allowed_through_the_linked_account_and_names_it(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    // A second account of the associate's, which the permit is not linked to, grants Pay too.
    let other = app
        .contractor(&associate)
        .await
        .contractor
        .unwrap()
        .contractor_id;
    link(&mut app, PERMIT, &contractor).await;
    app.set_permissions(&manager, &contractor, &associate, &[Inspections])
        .await
        .unwrap();

    let booking = app
        .check(&associate, Inspections, "", PERMIT)
        .await
        .unwrap();
    assert_decision(&booking, true, CheckReason::GrantedDirectly);
    assert_eq!(booking.contractor_id, contractor);
    let payment = app.check(&associate, Pay, "", PERMIT).await.unwrap();
    assert_decision(&payment, false, CheckReason::PermissionNotHeld);
    assert_eq!(payment.contractor_id, contractor);
    let through_manage = app.check(&manager, UploadFiles, "", PERMIT).await.unwrap();
    assert_decision(&through_manage, true, CheckReason::GrantedThroughManage);

    link(&mut app, PERMIT, &other).await;
    let now_linked_twice = app.check(&associate, Pay, "", PERMIT).await.unwrap();
    assert_decision(&now_linked_twice, true, CheckReason::GrantedThroughManage);
    assert_eq!(now_linked_twice.contractor_id, other);
}

async fn an_application_not_linked_to_any_of_the_customers_accounts_is_denied_as_not_linked(
    backend: Backend,
) {
    let mut app = spawn_app(backend).await;
    let (_manager, associate, _contractor, _pin) = app.story().await;
    let elsewhere_owner = app.customer("elsewhere").await.customer_id;
    let elsewhere = app
        .contractor(&elsewhere_owner)
        .await
        .contractor
        .unwrap()
        .contractor_id;
    link(&mut app, PERMIT, &elsewhere).await;
    for application in [PERMIT, "25-000001 BLD"] {
        let denied = app.check(&associate, Apply, "", application).await.unwrap();
        assert_decision(&denied, false, CheckReason::ApplicationNotLinked);
        assert_eq!(denied.contractor_id, "");
    }
}

async fn a_check_on_an_application_through_one_account_needs_that_link(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, _associate, contractor, _pin) = app.story().await;
    let second = app
        .contractor(&manager)
        .await
        .contractor
        .unwrap()
        .contractor_id;
    link(&mut app, PERMIT, &second).await;
    let wrong_account = app.check(&manager, Pay, &contractor, PERMIT).await.unwrap();
    assert_decision(&wrong_account, false, CheckReason::ApplicationNotLinked);
    let right_account = app.check(&manager, Pay, &second, PERMIT).await.unwrap();
    assert_decision(&right_account, true, CheckReason::GrantedThroughManage);
    assert_eq!(right_account.contractor_id, second);
}

async fn a_check_on_an_application_through_an_account_the_customer_is_not_in_is_not_associated(
    backend: Backend,
) {
    let mut app = spawn_app(backend).await;
    let (_manager, _associate, contractor, _pin) = app.story().await;
    let stranger = app.customer("stranger").await.customer_id;
    link(&mut app, PERMIT, &contractor).await;
    let denied = app
        .check(&stranger, Pay, &contractor, PERMIT)
        .await
        .unwrap();
    assert_decision(&denied, false, CheckReason::NotAssociated);
    assert_eq!(denied.contractor_id, contractor);
}

async fn a_check_of_an_unknown_customer_or_account_is_not_found(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, _associate, contractor, _pin) = app.story().await;
    let unknown = "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b";
    expect_code(
        app.check(unknown, Pay, &contractor, "").await,
        Code::NotFound,
    );
    expect_code(app.check(&manager, Pay, unknown, "").await, Code::NotFound);
}

async fn a_check_names_its_bad_fields(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, _associate, contractor, _pin) = app.story().await;
    expect_invalid(
        app.check("", Unspecified, "x", "<bad>").await,
        &[
            "customer_id",
            "permission",
            "contractor_id",
            "application_id",
        ],
    );
    expect_invalid(app.check(&manager, Pay, "", "").await, &["contractor_id"]);
    // Refused for its form before anything is looked up.
    let unknown = "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b";
    expect_invalid(app.check(unknown, Pay, "", "").await, &["contractor_id"]);
    let negative = app
        .permissions
        .check_permission(CheckPermissionRequest {
            customer_id: manager,
            permission: Pay as i32,
            contractor_id: contractor,
            application_id: String::new(),
            at_least_revision: -1,
        })
        .await;
    expect_invalid(negative, &["at_least_revision"]);
}

async fn a_check_is_at_least_as_fresh_as_a_revision_the_caller_saw(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    let granted = app
        .set_permissions(&manager, &contractor, &associate, &[Pay])
        .await
        .unwrap();
    let request = |at_least_revision| CheckPermissionRequest {
        customer_id: associate.clone(),
        permission: Pay as i32,
        contractor_id: contractor.clone(),
        application_id: String::new(),
        at_least_revision,
    };
    let fresh = app
        .permissions
        .check_permission(request(granted.revision))
        .await
        .unwrap()
        .into_inner();
    assert!(fresh.allowed);
    assert!(fresh.revision >= granted.revision);
    let ahead = app
        .permissions
        .check_permission(request(granted.revision + 1000))
        .await;
    expect_invalid(ahead, &["at_least_revision"]);
}

async fn a_batch_decides_each_item_in_order_and_reports_a_bad_item_alone(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    app.set_permissions(&manager, &contractor, &associate, &[Pay])
        .await
        .unwrap();
    let item = |customer: &str, permission: mandate::pb::Permission| CheckPermissionRequest {
        customer_id: customer.to_owned(),
        permission: permission as i32,
        contractor_id: contractor.clone(),
        application_id: String::new(),
        at_least_revision: 0,
    };
    let results = app
        .permissions
        .check_permissions(CheckPermissionsRequest {
            items: vec![
                item(&associate, Pay),
                item(&associate, Unspecified),
                item(&associate, Apply),
                item(&manager, Apply),
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(results.len(), 4);
    let outcomes: Vec<Outcome> = results.into_iter().map(|r| r.outcome.unwrap()).collect();
    let decision = |o: &Outcome| match o {
        Outcome::Decision(d) => (d.allowed, d.reason),
        Outcome::Error(e) => panic!("unexpected error {e:?}"),
    };
    assert_eq!(
        decision(&outcomes[0]),
        (true, CheckReason::GrantedDirectly as i32)
    );
    match &outcomes[1] {
        Outcome::Error(error) => {
            assert_eq!(error.code, Code::InvalidArgument as i32);
            assert_eq!(error.field_violations[0].field, "permission");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(
        decision(&outcomes[2]),
        (false, CheckReason::PermissionNotHeld as i32)
    );
    assert_eq!(
        decision(&outcomes[3]),
        (true, CheckReason::GrantedThroughManage as i32)
    );
}

async fn a_batch_of_more_than_100_checks_is_refused(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let result = app
        .permissions
        .check_permissions(CheckPermissionsRequest {
            items: vec![CheckPermissionRequest::default(); 101],
        })
        .await;
    expect_invalid(result, &["items"]);
}

async fn linking_and_unlinking_are_idempotent(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, _associate, contractor, _pin) = app.story().await;
    let first = link(&mut app, PERMIT, &contractor).await;
    assert_eq!(link(&mut app, PERMIT, &contractor).await, first);
    assert_decision(
        &app.check(&manager, Pay, "", PERMIT).await.unwrap(),
        true,
        CheckReason::GrantedThroughManage,
    );
    let unlink = |app: &mut TestApp| {
        let mut permissions = app.permissions.clone();
        let contractor = contractor.clone();
        async move {
            permissions
                .unlink_application(UnlinkApplicationRequest {
                    application_id: PERMIT.to_owned(),
                    contractor_id: contractor,
                })
                .await
                .unwrap()
                .into_inner()
                .revision
        }
    };
    let unlinked = unlink(&mut app).await;
    assert!(unlinked > first);
    assert_eq!(unlink(&mut app).await, unlinked);
    assert_decision(
        &app.check(&manager, Pay, "", PERMIT).await.unwrap(),
        false,
        CheckReason::ApplicationNotLinked,
    );
}

async fn linking_to_an_unknown_account_or_a_bad_number_is_refused(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_manager, _associate, contractor, _pin) = app.story().await;
    let unknown = app
        .permissions
        .link_application(LinkApplicationRequest {
            application_id: PERMIT.to_owned(),
            contractor_id: "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b".to_owned(),
        })
        .await;
    expect_code(unknown, Code::NotFound);
    let bad = app
        .permissions
        .link_application(LinkApplicationRequest {
            application_id: "24-1\n".repeat(20),
            contractor_id: contractor,
        })
        .await;
    expect_invalid(bad, &["application_id"]);
}

async fn accessible_applications_follow_the_permissions_page_by_page(backend: Backend) {
    accessible_applications_page_by_page(spawn_app(backend).await).await;
}

async fn accessible_applications_page_by_page(mut app: TestApp) {
    let (manager, associate, contractor, _pin) = app.story().await;
    let second = app
        .contractors
        .register_contractor(as_customer(&manager, contractor_request("Second Co.")))
        .await
        .unwrap()
        .into_inner();
    let second_id = second.contractor.unwrap().contractor_id;
    app.associate(&associate, &second.pin).await;
    for permit in ["24-000003 BLD", "24-000001 BLD", "24-000002 BLD"] {
        link(&mut app, permit, &contractor).await;
    }
    link(&mut app, "24-000004 BLD", &second_id).await;
    app.set_permissions(&manager, &contractor, &associate, &[Pay])
        .await
        .unwrap();

    let list = |app: &mut TestApp, token: String| {
        let mut permissions = app.permissions.clone();
        let associate = associate.clone();
        async move {
            permissions
                .list_accessible_applications(ListAccessibleApplicationsRequest {
                    customer_id: associate,
                    permission: Pay as i32,
                    page_size: 2,
                    page_token: token,
                })
                .await
                .map(|r| r.into_inner())
        }
    };
    let first = list(&mut app, String::new()).await.unwrap();
    assert_ne!(first.next_page_token, "");
    let rest = list(&mut app, first.next_page_token.clone()).await.unwrap();
    assert_eq!(rest.next_page_token, "");
    let listed: Vec<(String, String)> = first
        .applications
        .into_iter()
        .chain(rest.applications)
        .map(|a| (a.application_id, a.contractor_id))
        .collect();
    let expected: Vec<(String, String)> = ["24-000001 BLD", "24-000002 BLD", "24-000003 BLD"]
        .iter()
        .map(|p| ((*p).to_owned(), contractor.clone()))
        .collect();
    assert_eq!(
        listed, expected,
        "only the account that grants Pay, in order"
    );

    app.set_permissions(&manager, &contractor, &associate, &[])
        .await
        .unwrap();
    let after_revoke = list(&mut app, String::new()).await.unwrap();
    assert!(after_revoke.applications.is_empty());
    expect_invalid(list(&mut app, "page-2".into()).await, &["page_token"]);
    // A token with a NUL byte in its application part is no token this list returned.
    let forged = format!("{contractor}.2400");
    expect_invalid(list(&mut app, forged).await, &["page_token"]);
}

/// A batch decides the checks that name only an account together; every item must still get
/// exactly the answer `CheckPermission` gives it alone: allowed, denied, expired, through
/// Manage, through a merged account, unknown customer or account, by application, and bad.
async fn a_batch_answers_every_item_as_a_single_check_would(backend: Backend) {
    batch_answers_as_single_checks(spawn_app(backend).await).await;
}

async fn batch_answers_as_single_checks(mut app: TestApp) {
    let (manager, associate, contractor, _pin) = app.story().await;
    app.set_permissions(&manager, &contractor, &associate, &[Pay])
        .await
        .unwrap();
    let other = app
        .contractor(&manager)
        .await
        .contractor
        .unwrap()
        .contractor_id;
    let expiring = app.customer("expiring").await.customer_id;
    let registered = app.contractor(&expiring).await;
    let lapsed = registered.contractor.unwrap().contractor_id;
    app.associate(&associate, &registered.pin).await;
    // A whole second ahead (not the next whole second, which may be a moment away).
    app.grant_until(
        &expiring,
        &lapsed,
        &associate,
        &[Pay],
        chrono::Utc::now() + chrono::Duration::seconds(1),
    )
    .await;
    link(&mut app, PERMIT, &contractor).await;
    // A permit linked to two accounts, one of them through an account merged away since.
    let shared = "24-654321 BLD";
    link(&mut app, shared, &lapsed).await;
    link(&mut app, shared, &other).await;
    app.contractors
        .merge_contractors(mandate::pb::MergeContractorsRequest {
            survivor_contractor_id: contractor.clone(),
            absorbed_contractor_ids: vec![other.clone()],
        })
        .await
        .unwrap();
    // A permit linked to more accounts than the cache keeps the links of, one of them the
    // associate's.
    let wide = "24-777777 BLD";
    link(&mut app, wide, &contractor).await;
    app.link_widely(wide, 70).await;
    let unknown = "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b";
    let item =
        |customer: &str, permission: mandate::pb::Permission, account: &str, permit: &str| {
            CheckPermissionRequest {
                customer_id: customer.to_owned(),
                permission: permission as i32,
                contractor_id: account.to_owned(),
                application_id: permit.to_owned(),
                at_least_revision: 0,
            }
        };
    let mut items = Vec::new();
    for customer in [manager.as_str(), associate.as_str(), unknown] {
        for account in [
            contractor.as_str(),
            other.as_str(),
            lapsed.as_str(),
            unknown,
        ] {
            for permission in [Pay, Inspections] {
                items.push(item(customer, permission, account, ""));
            }
        }
        items.push(item(customer, Pay, "", PERMIT));
        items.push(item(customer, Pay, &contractor, PERMIT));
        for permission in [Pay, Inspections] {
            items.push(item(customer, permission, "", shared));
            items.push(item(customer, permission, "", wide));
        }
    }
    items.push(item(&associate, Unspecified, &contractor, ""));
    items.push(CheckPermissionRequest {
        at_least_revision: i64::MAX,
        ..item(&associate, Pay, &contractor, "")
    });
    // A grant cannot be given an end in the past: let this one's end pass.
    let lapse = std::time::Instant::now() + std::time::Duration::from_millis(1100);
    tokio::time::sleep_until(lapse.into()).await;
    // Cold: nothing read yet; then warm: the single checks of the first round filled the cache.
    for round in ["cold", "warm"] {
        let batch = app
            .permissions
            .check_permissions(CheckPermissionsRequest {
                items: items.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .results;
        assert_eq!(batch.len(), items.len());
        for (item, result) in items.iter().zip(batch) {
            let alone = app.permissions.check_permission(item.clone()).await;
            match (result.outcome.unwrap(), alone) {
                (Outcome::Decision(together), Ok(alone)) => {
                    assert_eq!(
                        together.allowed,
                        alone.get_ref().allowed,
                        "{round} {item:?}"
                    );
                    assert_eq!(together.reason, alone.get_ref().reason, "{round} {item:?}");
                    assert_eq!(
                        together.contractor_id,
                        alone.get_ref().contractor_id,
                        "{round} {item:?}"
                    );
                }
                (Outcome::Error(together), Err(alone)) => {
                    assert_eq!(
                        together.code,
                        alone.code() as i32,
                        "{round} {item:?}: {alone:?}"
                    );
                }
                (together, alone) => {
                    panic!("{round} {item:?}: batch {together:?}, alone {alone:?}")
                }
            }
        }
    }
}

/// #17: an application linked to more accounts than a statement may name (70 000: past SQLite's
/// 32 766 variables and PostgreSQL's 65 535 parameters) made a 100-item batch fail whole with a
/// message blaming the database. Each item is decided, from the customer's own memberships.
async fn a_batch_on_an_application_linked_to_seventy_thousand_accounts_is_decided(
    backend: Backend,
) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, _) = app.story().await;
    app.set_permissions(&manager, &contractor, &associate, &[Pay])
        .await
        .expect("a grant");
    app.permissions
        .link_application(LinkApplicationRequest {
            application_id: "24-900 BLD".into(),
            contractor_id: contractor.clone(),
        })
        .await
        .expect("linked");
    app.link_widely("24-900 BLD", 70_000).await;
    let item = |customer: &str, permission: mandate::pb::Permission| CheckPermissionRequest {
        customer_id: customer.to_owned(),
        permission: permission as i32,
        contractor_id: String::new(),
        application_id: "24-900 BLD".into(),
        at_least_revision: 0,
    };
    let stranger = app.customer("stranger").await.customer_id;
    let items: Vec<CheckPermissionRequest> = (0..100)
        .map(|n| match n % 3 {
            0 => item(&associate, Pay),
            1 => item(&associate, Inspections),
            _ => item(&stranger, Pay),
        })
        .collect();
    let results = app
        .permissions
        .check_permissions(CheckPermissionsRequest { items })
        .await
        .expect("the batch is decided")
        .into_inner()
        .results;
    assert_eq!(results.len(), 100);
    for (n, result) in results.iter().enumerate() {
        let Some(Outcome::Decision(decision)) = &result.outcome else {
            panic!("item {n}: {result:?}");
        };
        let (allowed, reason) = match n % 3 {
            0 => (true, CheckReason::GrantedDirectly),
            1 => (false, CheckReason::PermissionNotHeld),
            _ => (false, CheckReason::ApplicationNotLinked),
        };
        assert_decision(decision, allowed, reason);
        if allowed {
            assert_eq!(decision.contractor_id, contractor);
        }
    }
}
