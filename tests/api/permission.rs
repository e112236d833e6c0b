use chrono::{Duration, Utc};
use mandate::pb::Permission::{Inspections, Manage, Pay};
use mandate::pb::{
    self, AssociateByPinRequest, CheckReason, LeaveContractorRequest, ListAssociatesRequest,
    RemoveAssociateRequest, SetPermissionsRequest,
};
use tonic::Code;

use crate::helpers::{
    Backend, TestApp, all_permissions, as_customer, assert_decision, expect_code, expect_invalid,
    permissions, spawn_app,
};
use crate::on_both_backends;

on_both_backends!(
    any_associate_may_list_the_associates,
    a_customer_not_associated_cannot_list_the_associates,
    listing_the_associates_of_an_unknown_contractor_is_not_found,
    associates_are_listed_page_by_page,
    the_guides_story_grant_pay_check_revoke_and_remove,
    granting_manage_grants_every_permission,
    only_a_manager_may_set_permissions_and_a_refusal_changes_nothing,
    setting_permissions_names_each_bad_entry,
    setting_permissions_of_a_customer_not_associated_is_not_found,
    the_last_manager_cannot_lose_manage_be_removed_or_leave,
    a_second_manager_lets_the_first_step_down_and_leave,
    a_time_limited_grant_allows_until_it_expires_and_then_shows_as_expired,
    manage_cannot_be_time_limited_and_an_expiry_must_be_in_the_future,
    only_a_manager_may_remove_an_associate,
    an_associate_may_leave_and_then_is_not_associated,
    removing_an_associate_can_replace_the_pin_in_the_same_call,
);

async fn any_associate_may_list_the_associates(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let ben = app.customer("ben").await;
    let registered = app.contractor(&ana.customer_id).await;
    let contractor_id = registered.contractor.unwrap().contractor_id;
    app.contractors
        .associate_by_pin(as_customer(
            &ben.customer_id,
            AssociateByPinRequest {
                pin: registered.pin,
            },
        ))
        .await
        .unwrap();
    let manager_view_of = contractor_id.clone();
    let listed = app
        .permissions
        .list_associates(as_customer(
            &ben.customer_id,
            ListAssociatesRequest {
                contractor_id,
                ..ListAssociatesRequest::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let manager = &listed.associates[0];
    assert_eq!(
        manager.customer.as_ref().unwrap().display_name,
        "Customer ana"
    );
    assert_eq!(manager.permissions, all_permissions());
    assert!(manager.expire_time.is_none());
    assert!(manager.associate_time.is_some());
    assert_eq!(listed.associates.len(), 2);
    // Emails and sign-in subjects are for Managers' eyes: Ben holds no Manage.
    for associate in &listed.associates {
        let customer = associate.customer.as_ref().unwrap();
        assert_eq!(
            (customer.email.as_str(), customer.external_subject.as_str()),
            ("", "")
        );
    }
    let as_manager = app
        .permissions
        .list_associates(as_customer(
            &ana.customer_id,
            ListAssociatesRequest {
                contractor_id: manager_view_of.clone(),
                ..ListAssociatesRequest::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let ben_seen = as_manager
        .associates
        .iter()
        .map(|a| a.customer.as_ref().unwrap())
        .find(|c| c.customer_id == ben.customer_id)
        .unwrap();
    assert_eq!(
        ben_seen.email, ben.email,
        "a Manager sees the associates' emails"
    );
    assert_eq!(ben_seen.external_subject, ben.external_subject);
}

async fn a_customer_not_associated_cannot_list_the_associates(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let cy = app.customer("cy").await;
    let contractor_id = app
        .contractor(&ana.customer_id)
        .await
        .contractor
        .unwrap()
        .contractor_id;
    let result = app
        .permissions
        .list_associates(as_customer(
            &cy.customer_id,
            ListAssociatesRequest {
                contractor_id,
                ..ListAssociatesRequest::default()
            },
        ))
        .await;
    expect_code(result, Code::PermissionDenied);
}

async fn listing_the_associates_of_an_unknown_contractor_is_not_found(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let result = app
        .permissions
        .list_associates(as_customer(
            &ana.customer_id,
            ListAssociatesRequest {
                contractor_id: "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b".into(),
                ..ListAssociatesRequest::default()
            },
        ))
        .await;
    expect_code(result, Code::NotFound);
    let malformed = app
        .permissions
        .list_associates(as_customer(
            &ana.customer_id,
            ListAssociatesRequest {
                contractor_id: "acme".into(),
                ..ListAssociatesRequest::default()
            },
        ))
        .await;
    expect_invalid(malformed, &["contractor_id"]);
}

async fn associates_are_listed_page_by_page(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let registered = app.contractor(&ana.customer_id).await;
    let contractor_id = registered.contractor.unwrap().contractor_id;
    let mut expected = vec![ana.customer_id.clone()];
    for subject in ["ben", "cy", "dee", "eve"] {
        let customer = app.customer(subject).await;
        app.contractors
            .associate_by_pin(as_customer(
                &customer.customer_id,
                AssociateByPinRequest {
                    pin: registered.pin.clone(),
                },
            ))
            .await
            .unwrap();
        expected.push(customer.customer_id);
    }
    let mut listed = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = app
            .permissions
            .list_associates(as_customer(
                &ana.customer_id,
                ListAssociatesRequest {
                    contractor_id: contractor_id.clone(),
                    page_size: 2,
                    page_token: token,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.associates.len() <= 2);
        listed.extend(
            page.associates
                .into_iter()
                .map(|a| a.customer.unwrap().customer_id),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(listed, expected);
}

async fn associates_of(app: &mut TestApp, viewer: &str, contractor_id: &str) -> Vec<pb::Associate> {
    app.permissions
        .list_associates(as_customer(
            viewer,
            ListAssociatesRequest {
                contractor_id: contractor_id.to_owned(),
                ..ListAssociatesRequest::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .associates
}

async fn remove(
    app: &mut TestApp,
    manager: &str,
    contractor_id: &str,
    customer_id: &str,
) -> Result<i64, tonic::Status> {
    app.permissions
        .remove_associate(as_customer(
            manager,
            RemoveAssociateRequest {
                contractor_id: contractor_id.to_owned(),
                customer_id: customer_id.to_owned(),
                rotate_pin: false,
            },
        ))
        .await
        .map(|r| r.into_inner().revision)
}

async fn leave(
    app: &mut TestApp,
    customer_id: &str,
    contractor_id: &str,
) -> Result<i64, tonic::Status> {
    app.contractors
        .leave_contractor(as_customer(
            customer_id,
            LeaveContractorRequest {
                contractor_id: contractor_id.to_owned(),
            },
        ))
        .await
        .map(|r| r.into_inner().revision)
}

async fn the_guides_story_grant_pay_check_revoke_and_remove(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    let before = app.check(&associate, Pay, &contractor, "").await.unwrap();
    assert_decision(&before, false, CheckReason::PermissionNotHeld);

    let granted = app
        .set_permissions(&manager, &contractor, &associate, &[Pay])
        .await
        .unwrap();
    assert_eq!(granted.associate.unwrap().permissions, permissions(&[Pay]));
    let pay = app.check(&associate, Pay, &contractor, "").await.unwrap();
    assert_decision(&pay, true, CheckReason::GrantedDirectly);
    assert_eq!(pay.contractor_id, contractor);
    assert!(pay.revision >= granted.revision);
    let inspections = app
        .check(&associate, Inspections, &contractor, "")
        .await
        .unwrap();
    assert_decision(&inspections, false, CheckReason::PermissionNotHeld);

    app.set_permissions(&manager, &contractor, &associate, &[])
        .await
        .unwrap();
    let revoked = app.check(&associate, Pay, &contractor, "").await.unwrap();
    assert_decision(&revoked, false, CheckReason::PermissionNotHeld);

    remove(&mut app, &manager, &contractor, &associate)
        .await
        .unwrap();
    let removed = app.check(&associate, Pay, &contractor, "").await.unwrap();
    assert_decision(&removed, false, CheckReason::NotAssociated);
    assert_eq!(
        associates_of(&mut app, &manager, &contractor).await.len(),
        1
    );
}

async fn granting_manage_grants_every_permission(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    let granted = app
        .set_permissions(&manager, &contractor, &associate, &[Manage])
        .await
        .unwrap();
    assert_eq!(granted.associate.unwrap().permissions, all_permissions());
    let pay = app.check(&associate, Pay, &contractor, "").await.unwrap();
    assert_decision(&pay, true, CheckReason::GrantedThroughManage);
    let manage = app
        .check(&associate, Manage, &contractor, "")
        .await
        .unwrap();
    assert_decision(&manage, true, CheckReason::GrantedDirectly);
}

async fn only_a_manager_may_set_permissions_and_a_refusal_changes_nothing(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    let stranger = app.customer("stranger").await.customer_id;
    app.set_permissions(&manager, &contractor, &associate, &[Pay, Inspections])
        .await
        .unwrap();
    for actor in [&associate, &stranger] {
        let result = app
            .set_permissions(actor, &contractor, &associate, &[Manage])
            .await;
        expect_code(result, Code::PermissionDenied);
    }
    let listed = associates_of(&mut app, &manager, &contractor).await;
    assert_eq!(listed[1].permissions, permissions(&[Pay, Inspections]));
}

async fn setting_permissions_names_each_bad_entry(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    let result = app
        .permissions
        .set_permissions(as_customer(
            &manager,
            SetPermissionsRequest {
                contractor_id: contractor.clone(),
                customer_id: associate.clone(),
                permissions: vec![Pay as i32, 0, 42],
                expire_time: None,
            },
        ))
        .await;
    expect_invalid(result, &["permissions[1]", "permissions[2]"]);
    let missing = app.set_permissions(&manager, &contractor, "", &[Pay]).await;
    expect_invalid(missing, &["customer_id"]);
}

async fn setting_permissions_of_a_customer_not_associated_is_not_found(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, _associate, contractor, _pin) = app.story().await;
    let stranger = app.customer("stranger").await.customer_id;
    let result = app
        .set_permissions(&manager, &contractor, &stranger, &[Pay])
        .await;
    expect_code(result, Code::NotFound);
    let unknown_account = app
        .set_permissions(
            &manager,
            "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b",
            &stranger,
            &[Pay],
        )
        .await;
    expect_code(unknown_account, Code::NotFound);
}

async fn the_last_manager_cannot_lose_manage_be_removed_or_leave(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, _associate, contractor, _pin) = app.story().await;
    let demote = app
        .set_permissions(&manager, &contractor, &manager, &[Pay])
        .await;
    let status = expect_code(demote, Code::FailedPrecondition);
    assert!(
        status.message().contains("There must always be a Manager"),
        "{status:?}"
    );
    expect_code(
        remove(&mut app, &manager, &contractor, &manager).await,
        Code::FailedPrecondition,
    );
    expect_code(
        leave(&mut app, &manager, &contractor).await,
        Code::FailedPrecondition,
    );
    let still = app.check(&manager, Manage, &contractor, "").await.unwrap();
    assert_decision(&still, true, CheckReason::GrantedDirectly);
}

async fn a_second_manager_lets_the_first_step_down_and_leave(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    app.set_permissions(&manager, &contractor, &associate, &[Manage])
        .await
        .unwrap();
    // FAQ: "Once the owner/manager associates their account, the existing permissions can be
    // removed or edited as required."
    app.set_permissions(&associate, &contractor, &manager, &[Pay])
        .await
        .unwrap();
    let demoted = app.check(&manager, Manage, &contractor, "").await.unwrap();
    assert_decision(&demoted, false, CheckReason::PermissionNotHeld);
    expect_code(
        leave(&mut app, &associate, &contractor).await,
        Code::FailedPrecondition,
    );
    leave(&mut app, &manager, &contractor).await.unwrap();
    let listed = associates_of(&mut app, &associate, &contractor).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].permissions, all_permissions());
}

async fn a_time_limited_grant_allows_until_it_expires_and_then_shows_as_expired(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, pin) = app.story().await;
    let end = Utc::now() + Duration::hours(8);
    let granted = app
        .permissions
        .set_permissions(as_customer(
            &manager,
            SetPermissionsRequest {
                contractor_id: contractor.clone(),
                customer_id: associate.clone(),
                permissions: permissions(&[Inspections]),
                expire_time: Some(prost_types::Timestamp {
                    seconds: end.timestamp(),
                    nanos: 123_456_789,
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .associate
        .unwrap();
    // Kept at the microsecond, as the databases keep it: the listing shows what was answered.
    let kept = granted.expire_time.unwrap();
    assert_eq!((kept.seconds, kept.nanos), (end.timestamp(), 123_456_000));
    assert!(!granted.expired);
    let listed = associates_of(&mut app, &manager, &contractor).await;
    assert_eq!(listed[1].expire_time, Some(kept));
    let before = app
        .check(&associate, Inspections, &contractor, "")
        .await
        .unwrap();
    assert_decision(&before, true, CheckReason::GrantedDirectly);

    // The job ends: the grant is set to end in a moment, the check is answered (and cached),
    // and the moment passes. Nothing is written when it ends: the grant ends by the clock.
    let soon = Utc::now() + Duration::milliseconds(1500);
    app.grant_until(&manager, &contractor, &associate, &[Inspections], soon)
        .await;
    let during = app
        .check(&associate, Inspections, &contractor, "")
        .await
        .unwrap();
    assert_decision(&during, true, CheckReason::GrantedDirectly);
    // Waiting for the grant's end, not for the server: time is what this test is about.
    tokio::time::sleep((soon - Utc::now()).to_std().unwrap_or_default()).await;
    let after = app
        .check(&associate, Inspections, &contractor, "")
        .await
        .unwrap();
    assert_decision(&after, false, CheckReason::GrantExpired);
    let listed = associates_of(&mut app, &manager, &contractor).await;
    assert!(listed[1].expired, "{:?}", listed[1]);
    // Entering the PIN again shows what the associate holds now: nothing.
    let again = app
        .contractors
        .associate_by_pin(as_customer(&associate, AssociateByPinRequest { pin }))
        .await
        .unwrap()
        .into_inner();
    assert!(again.already_associated);
    assert!(again.permissions.is_empty(), "{again:?}");
}

async fn manage_cannot_be_time_limited_and_an_expiry_must_be_in_the_future(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    let at = |t: chrono::DateTime<Utc>| {
        Some(prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: 0,
        })
    };
    for (granted, end) in [
        (Manage, at(Utc::now() + Duration::days(1))),
        (Pay, at(Utc::now() - Duration::days(1))),
    ] {
        let result = app
            .permissions
            .set_permissions(as_customer(
                &manager,
                SetPermissionsRequest {
                    contractor_id: contractor.clone(),
                    customer_id: associate.clone(),
                    permissions: permissions(&[granted]),
                    expire_time: end,
                },
            ))
            .await;
        expect_invalid(result, &["expire_time"]);
    }
}

async fn only_a_manager_may_remove_an_associate(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, pin) = app.story().await;
    let third = app.customer("third").await.customer_id;
    app.associate(&third, &pin).await;
    app.set_permissions(&manager, &contractor, &associate, &[Pay, Inspections])
        .await
        .unwrap();
    expect_code(
        remove(&mut app, &associate, &contractor, &third).await,
        Code::PermissionDenied,
    );
    let stranger = app.customer("stranger").await.customer_id;
    expect_code(
        remove(&mut app, &manager, &contractor, &stranger).await,
        Code::NotFound,
    );
    remove(&mut app, &manager, &contractor, &third)
        .await
        .unwrap();
    assert_eq!(
        associates_of(&mut app, &manager, &contractor).await.len(),
        2
    );
}

async fn an_associate_may_leave_and_then_is_not_associated(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    app.set_permissions(&manager, &contractor, &associate, &[Pay])
        .await
        .unwrap();
    leave(&mut app, &associate, &contractor).await.unwrap();
    let after = app.check(&associate, Pay, &contractor, "").await.unwrap();
    assert_decision(&after, false, CheckReason::NotAssociated);
    expect_code(
        leave(&mut app, &associate, &contractor).await,
        Code::NotFound,
    );
}

async fn removing_an_associate_can_replace_the_pin_in_the_same_call(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, old_pin) = app.story().await;
    let before = app.revision_counter().await;
    let removed = app
        .permissions
        .remove_associate(as_customer(
            &manager,
            RemoveAssociateRequest {
                contractor_id: contractor.clone(),
                customer_id: associate.clone(),
                rotate_pin: true,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        removed.revision,
        before + 2,
        "the removal and the new PIN each take a revision"
    );
    assert!(!removed.pin.is_empty() && removed.pin != old_pin);
    assert!(
        !format!("{removed:?}").contains(&removed.pin),
        "Debug hides the PIN"
    );

    // The removed customer cannot come straight back with the PIN they knew...
    let back = app
        .contractors
        .associate_by_pin(as_customer(
            &associate,
            AssociateByPinRequest {
                pin: old_pin.clone(),
            },
        ))
        .await;
    expect_code(back, Code::NotFound);
    // ...and the new PIN works for whoever it is shared with.
    let newcomer = app.customer("newcomer").await.customer_id;
    app.associate(&newcomer, &removed.pin).await;
    let events = app
        .permissions
        .list_audit_events(as_customer(
            &manager,
            pb::ListAuditEventsRequest {
                contractor_id: contractor.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    let kinds: Vec<(i64, pb::ChangeKind)> = events
        .iter()
        .filter(|event| event.revision > before && event.revision <= removed.revision)
        .map(|event| (event.revision, event.kind()))
        .collect();
    assert_eq!(
        kinds,
        [
            (before + 1, pb::ChangeKind::AssociateRemoved),
            (before + 2, pb::ChangeKind::PinRotated)
        ]
    );
}
