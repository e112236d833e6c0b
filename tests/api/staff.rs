//! Staff operations: appointing a Manager, a new PIN for an unclaimed account, finding accounts,
//! and reading any account's associates and audit trail.

use mandate::pb::Permission::Pay;
use mandate::pb::contractor_service_client::ContractorServiceClient;
use mandate::pb::permission_service_client::PermissionServiceClient;
use mandate::pb::{
    AppointManagerRequest, AssociateByPinRequest, ChangeKind, ListAssociatesRequest,
    ListAuditEventsRequest, MergeContractorsRequest, ReissuePinRequest, SearchContractorsRequest,
    SetPermissionsRequest,
};
use mandate_domain::client::Scope;
use tonic::Code;

use crate::helpers::{
    Backend, TestApp, all_permissions, as_customer, contractor_request, expect_code,
    expect_invalid, permissions, spawn_app, with_key,
};
use crate::on_both_backends;

on_both_backends!(
    staff_appoint_a_manager_when_the_only_one_is_gone,
    staff_reissue_the_pin_of_an_unclaimed_account_only,
    staff_find_accounts_by_name_or_email,
    staff_read_any_accounts_associates_and_audit_trail,
);

/// A key for a staff console, live at once.
async fn staff_key(app: &TestApp) -> String {
    let issued = mandate::credentials::keys::create(
        &app.store,
        "staff-console",
        [Scope::Staff].into_iter().collect(),
        None,
    )
    .await
    .expect("a staff key");
    app.keys.reload(&app.store).await.expect("reload the keys");
    issued.secret
}

async fn staff_appoint_a_manager_when_the_only_one_is_gone(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (gone, associate, contractor, _pin) = app.story().await;
    let staff = with_key(app.channel.clone(), &staff_key(&app).await);
    let mut console = ContractorServiceClient::new(staff);
    let appoint = |customer: &str| AppointManagerRequest {
        contractor_id: contractor.clone(),
        customer_id: customer.to_owned(),
    };
    let appointed = console
        .appoint_manager(appoint(&associate))
        .await
        .expect("staff appoint a Manager")
        .into_inner();
    assert!(!appointed.already_manager);
    assert_eq!(appointed.permissions, all_permissions());

    // The new Manager manages: it removes the Manager who is gone.
    app.permissions
        .set_permissions(as_customer(
            &associate,
            SetPermissionsRequest {
                contractor_id: contractor.clone(),
                customer_id: gone.clone(),
                permissions: permissions(&[Pay]),
                expire_time: None,
            },
        ))
        .await
        .expect("the appointed Manager manages");

    let again = console
        .appoint_manager(appoint(&associate))
        .await
        .expect("appointing a Manager again")
        .into_inner();
    assert!(again.already_manager);
    assert_eq!(
        again.revision,
        app.revision_counter().await,
        "nothing changed"
    );

    // A customer who was not associated becomes a Manager too.
    let outsider = app.customer("outsider").await.customer_id;
    console
        .appoint_manager(appoint(&outsider))
        .await
        .expect("an outsider appointed");
    let events = app
        .permissions
        .list_audit_events(as_customer(
            &outsider,
            ListAuditEventsRequest {
                contractor_id: contractor.clone(),
                page_size: 100,
                ..Default::default()
            },
        ))
        .await
        .expect("the new Manager reads the audit trail")
        .into_inner()
        .events;
    let appointments: Vec<_> = events
        .iter()
        .filter(|e| e.kind == ChangeKind::ManagerAppointed as i32)
        .collect();
    assert_eq!(appointments.len(), 2);
    assert!(
        appointments
            .iter()
            .all(|e| e.actor_client == "staff-console" && e.actor_customer_id.is_empty())
    );

    expect_code(
        console
            .appoint_manager(appoint("0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b"))
            .await,
        Code::NotFound,
    );
    expect_invalid(
        console
            .appoint_manager(AppointManagerRequest::default())
            .await,
        &["contractor_id", "customer_id"],
    );
    let other = app
        .contractor(&gone)
        .await
        .contractor
        .expect("an account")
        .contractor_id;
    console
        .merge_contractors(MergeContractorsRequest {
            survivor_contractor_id: contractor.clone(),
            absorbed_contractor_ids: vec![other.clone()],
        })
        .await
        .expect("a merge");
    let merged = expect_code(
        console
            .appoint_manager(AppointManagerRequest {
                contractor_id: other,
                customer_id: outsider,
            })
            .await,
        Code::FailedPrecondition,
    );
    assert!(merged.message().contains(&contractor), "{merged:?}");
}

async fn staff_reissue_the_pin_of_an_unclaimed_account_only(backend: Backend) {
    use sea_orm::{ConnectionTrait, Statement};

    let mut app = spawn_app(backend).await;
    let (_manager, _associate, claimed, _pin) = app.story().await;
    let registrant = app.customer("registrant").await.customer_id;
    let registered = app.contractor(&registrant).await;
    let unclaimed = registered.contractor.expect("an account").contractor_id;
    // As the legacy import leaves an account: no associates.
    let db = app.store.connection();
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        format!("DELETE FROM memberships WHERE contractor_id = '{unclaimed}'"),
    ))
    .await
    .expect("strip the account of its associates");

    let mut console =
        ContractorServiceClient::new(with_key(app.channel.clone(), &staff_key(&app).await));
    let refused = expect_code(
        console
            .reissue_pin(ReissuePinRequest {
                contractor_id: claimed,
            })
            .await,
        Code::FailedPrecondition,
    );
    assert!(refused.message().contains("Managers rotate"), "{refused:?}");

    let reissued = console
        .reissue_pin(ReissuePinRequest {
            contractor_id: unclaimed.clone(),
        })
        .await
        .expect("a new PIN")
        .into_inner();
    assert_ne!(reissued.pin, registered.pin);
    let claimer = app.customer("claimer").await.customer_id;
    expect_code(
        app.contractors
            .associate_by_pin(as_customer(
                &claimer,
                AssociateByPinRequest {
                    pin: registered.pin,
                },
            ))
            .await,
        Code::NotFound,
    );
    let claimed = app
        .contractors
        .associate_by_pin(as_customer(
            &claimer,
            AssociateByPinRequest { pin: reissued.pin },
        ))
        .await
        .expect("the new PIN claims the account")
        .into_inner();
    assert_eq!(
        claimed.contractor.expect("the account").contractor_id,
        unclaimed
    );
    assert_eq!(
        claimed.permissions,
        all_permissions(),
        "the first claimer manages"
    );
}

async fn staff_find_accounts_by_name_or_email(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let manager = app.customer("manager").await.customer_id;
    let mut ids = Vec::new();
    for (name, email) in [
        ("Rideau Builders Inc.", "office@rideau.ca"),
        ("RIDEAU Plumbing 100%", "plumbing@rideau.ca"),
        ("Ottawa Roofing", "Roofs@Ottawa.ca"),
    ] {
        let mut request = contractor_request(name);
        if let Some(contact) = request.contact.as_mut() {
            contact.email = email.into();
        }
        ids.push(
            app.contractors
                .register_contractor(as_customer(&manager, request))
                .await
                .expect("an account")
                .into_inner()
                .contractor
                .expect("an account")
                .contractor_id,
        );
    }
    let mut console =
        ContractorServiceClient::new(with_key(app.channel.clone(), &staff_key(&app).await));
    let mut search = async |name: &str, email: &str, page_size: i32, page_token: String| {
        console
            .search_contractors(SearchContractorsRequest {
                business_name: name.into(),
                email: email.into(),
                page_size,
                page_token,
                legacy_contractor_id: String::new(),
            })
            .await
            .map(tonic::Response::into_inner)
    };
    let found = |response: &mandate::pb::SearchContractorsResponse| -> Vec<String> {
        response
            .contractors
            .iter()
            .map(|c| c.contractor_id.clone())
            .collect()
    };
    let rideau = search("rideau", "", 0, String::new())
        .await
        .expect("a search");
    assert_eq!(found(&rideau), ids[..2]);
    assert!(
        rideau.contractors[0].contact.is_some(),
        "staff see contact details"
    );
    let literal = search("100%", "", 0, String::new())
        .await
        .expect("a search");
    assert_eq!(
        found(&literal),
        ids[1..2],
        "% is a character, not a wildcard"
    );
    let nothing = search("e_u", "", 0, String::new()).await.expect("a search");
    assert!(nothing.contractors.is_empty(), "_ is a character too");
    let by_email = search("", "roofs@ottawa.CA", 0, String::new())
        .await
        .expect("a search");
    assert_eq!(found(&by_email), ids[2..]);
    let first = search("rideau", "", 1, String::new())
        .await
        .expect("a page");
    assert_eq!(found(&first), ids[..1]);
    let second = search("rideau", "", 1, first.next_page_token)
        .await
        .expect("the next page");
    assert_eq!(found(&second), ids[1..2]);
    assert!(second.next_page_token.is_empty());
    expect_invalid(
        search("rideau", "office@rideau.ca", 0, String::new()).await,
        &["business_name"],
    );
    expect_invalid(search("", "", 0, String::new()).await, &["business_name"]);
    expect_invalid(search("r", "", 0, String::new()).await, &["business_name"]);
}

async fn staff_read_any_accounts_associates_and_audit_trail(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    let mut console =
        PermissionServiceClient::new(with_key(app.channel.clone(), &staff_key(&app).await));
    let associates = console
        .list_associates(ListAssociatesRequest {
            contractor_id: contractor.clone(),
            ..Default::default()
        })
        .await
        .expect("staff list any account's associates")
        .into_inner()
        .associates;
    let emails: Vec<String> = associates
        .iter()
        .map(|a| a.customer.as_ref().expect("a customer").email.clone())
        .collect();
    assert_eq!(associates.len(), 2);
    assert!(
        emails.iter().all(|email| email.contains('@')),
        "staff see emails: {emails:?}"
    );
    let events = console
        .list_audit_events(ListAuditEventsRequest {
            contractor_id: contractor.clone(),
            ..Default::default()
        })
        .await
        .expect("staff read any account's audit trail")
        .into_inner()
        .events;
    assert!(events.iter().any(|e| e.customer_id == associate));
    assert!(events.iter().any(|e| e.customer_id == manager));

    // A portal key without a customer is still asked for one.
    let portal = mandate::credentials::keys::create(
        &app.store,
        "portal",
        [Scope::Portal].into_iter().collect(),
        None,
    )
    .await
    .expect("a portal key");
    app.keys.reload(&app.store).await.expect("reload the keys");
    expect_code(
        PermissionServiceClient::new(with_key(app.channel.clone(), &portal.secret))
            .list_associates(ListAssociatesRequest {
                contractor_id: contractor,
                ..Default::default()
            })
            .await,
        Code::Unauthenticated,
    );
}
