//! API keys and scopes: every `mandate.v1` RPC needs a live key whose scopes allow it; Health
//! and reflection need none; the audit trail names the client behind each change.

use std::time::{Duration, Instant};

use chrono::Utc;
use mandate::credentials::keys::KEY_PREFIX;
use mandate::pb::contractor_service_client::ContractorServiceClient;
use mandate::pb::identity_service_client::IdentityServiceClient;
use mandate::pb::permission_service_client::PermissionServiceClient;
use mandate::pb::*;
use mandate_domain::client::{Scope, Scopes};
use tonic::{Code, Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{
    Authed, Backend, TestApp, TestDatabase, as_customer, spawn_app, start_on, start_replicas,
    with_key,
};
use crate::on_both_backends;

on_both_backends!(
    each_scope_reaches_its_rpcs_and_no_others,
    calls_without_a_live_key_are_unauthenticated_and_health_needs_none,
    the_audit_trail_names_the_client_behind_each_change,
    only_portal_keys_may_act_for_a_customer,
    contact_details_go_only_to_those_entitled,
    a_portal_call_lists_only_the_applications_of_the_customer_it_acts_for,
);

/// A key for the client `name` with `scopes`, live on `app` at once.
async fn key_for(
    app: &TestApp,
    name: &str,
    scopes: &[Scope],
    expires_in: Option<chrono::Duration>,
) -> String {
    let scopes: Scopes = scopes.iter().copied().collect();
    let issued = mandate::credentials::keys::create(
        &app.store,
        name,
        scopes,
        expires_in.map(|d| Utc::now() + d),
    )
    .await
    .expect("a key");
    app.keys.reload(&app.store).await.expect("reload the keys");
    issued.secret
}

/// `message`, as `customer` when given.
fn request<T>(customer: Option<&str>, message: T) -> Request<T> {
    match customer {
        Some(customer) => as_customer(customer, message),
        None => Request::new(message),
    }
}

/// Calls `rpc` over `channel` with an empty request; as `customer` for the portal's RPCs.
async fn call(channel: &Authed, rpc: &str, customer: Option<&str>) -> Result<(), Status> {
    let identity = || IdentityServiceClient::new(channel.clone());
    let contractors = || ContractorServiceClient::new(channel.clone());
    let permissions = || PermissionServiceClient::new(channel.clone());
    macro_rules! ask {
        ($client:expr, $method:ident, $message:ty) => {
            $client
                .$method(request(customer, <$message>::default()))
                .await
                .map(|_| ())
        };
    }
    match rpc {
        "RegisterCustomer" => ask!(identity(), register_customer, RegisterCustomerRequest),
        "GetCustomer" => ask!(identity(), get_customer, GetCustomerRequest),
        "LinkLegacyCustomer" => ask!(identity(), link_legacy_customer, LinkLegacyCustomerRequest),
        "ClearPinLockout" => ask!(identity(), clear_pin_lockout, ClearPinLockoutRequest),
        "ReissueCustomerPin" => ask!(identity(), reissue_customer_pin, ReissueCustomerPinRequest),
        "RegisterContractor" => ask!(
            contractors(),
            register_contractor,
            RegisterContractorRequest
        ),
        "GetContractor" => ask!(contractors(), get_contractor, GetContractorRequest),
        "UpdateContractor" => ask!(contractors(), update_contractor, UpdateContractorRequest),
        "ListMyContractors" => ask!(contractors(), list_my_contractors, ListMyContractorsRequest),
        "AssociateByPin" => ask!(contractors(), associate_by_pin, AssociateByPinRequest),
        "GetPin" => ask!(contractors(), get_pin, GetPinRequest),
        "RotatePin" => ask!(contractors(), rotate_pin, RotatePinRequest),
        "LeaveContractor" => ask!(contractors(), leave_contractor, LeaveContractorRequest),
        "MergeContractors" => ask!(contractors(), merge_contractors, MergeContractorsRequest),
        "AppointManager" => ask!(contractors(), appoint_manager, AppointManagerRequest),
        "ReissuePin" => ask!(contractors(), reissue_pin, ReissuePinRequest),
        "RetireAliasPins" => ask!(contractors(), retire_alias_pins, RetireAliasPinsRequest),
        "SearchContractors" => ask!(contractors(), search_contractors, SearchContractorsRequest),
        "ListAssociates" => ask!(permissions(), list_associates, ListAssociatesRequest),
        "SetPermissions" => ask!(permissions(), set_permissions, SetPermissionsRequest),
        "RemoveAssociate" => ask!(permissions(), remove_associate, RemoveAssociateRequest),
        "CheckPermission" => ask!(permissions(), check_permission, CheckPermissionRequest),
        "CheckPermissions" => ask!(permissions(), check_permissions, CheckPermissionsRequest),
        "LinkApplication" => ask!(permissions(), link_application, LinkApplicationRequest),
        "UnlinkApplication" => ask!(permissions(), unlink_application, UnlinkApplicationRequest),
        "ListAccessibleApplications" => ask!(
            permissions(),
            list_accessible_applications,
            ListAccessibleApplicationsRequest
        ),
        "WatchChanges" => ask!(permissions(), watch_changes, WatchChangesRequest),
        "ListAuditEvents" => ask!(permissions(), list_audit_events, ListAuditEventsRequest),
        other => panic!("no such RPC {other}"),
    }
}

/// Whether the key layer refused the call, rather than the RPC answering it.
fn refused_by_key(status: &Status) -> bool {
    status.code() == Code::Unauthenticated
        || (status.code() == Code::PermissionDenied
            && (status.message().contains("lacks the scope")
                || status
                    .message()
                    .contains("only a key with the portal scope")))
}

async fn each_scope_reaches_its_rpcs_and_no_others(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let customer = app.customer("ana").await.customer_id;
    for scope in Scope::ALL {
        let key = key_for(&app, &format!("only-{scope}"), &[scope], None).await;
        let channel = with_key(app.channel.clone(), &key);
        // The one scope table, as the server reads it (`mandate::credentials::scopes::SCOPES`): `call` knows
        // how to call each of its RPCs, and fails on one it does not know.
        for (_, rpc, allowed) in mandate::credentials::scopes::SCOPES {
            let acts_for_customer = allowed.contains(&Scope::Portal) && scope == Scope::Portal;
            let answer = call(
                &channel,
                rpc,
                acts_for_customer.then_some(customer.as_str()),
            )
            .await;
            let refused = answer.as_ref().err().is_some_and(refused_by_key);
            if allowed.contains(&scope) {
                assert!(!refused, "a {scope} key was refused {rpc}: {answer:?}");
            } else {
                let status = answer.expect_err(&format!("a {scope} key reached {rpc}"));
                assert_eq!(status.code(), Code::PermissionDenied, "{rpc}: {status:?}");
                let needed: Vec<&str> = allowed.iter().map(|scope| scope.as_str()).collect();
                assert!(
                    status.message().contains(&needed.join(" or ")),
                    "{rpc}: the refusal names the scope needed: {status:?}"
                );
            }
        }
    }
}

async fn calls_without_a_live_key_are_unauthenticated_and_health_needs_none(backend: Backend) {
    let app = spawn_app(backend).await;
    let revoked = key_for(&app, "revoked", &Scope::ALL, None).await;
    let record = app
        .store
        .keys()
        .await
        .expect("the keys")
        .into_iter()
        .find(|key| key.name == "revoked")
        .expect("the key just made");
    app.store.revoke_key(&record.key_id).await.expect("revoke");
    let expired = key_for(
        &app,
        "expired",
        &Scope::ALL,
        Some(chrono::Duration::seconds(-1)),
    )
    .await;
    app.keys.reload(&app.store).await.expect("reload");
    let unknown = format!("{KEY_PREFIX}{}", "0".repeat(64));

    let mut presented: Vec<Option<String>> = vec![None];
    for key in [revoked, expired, unknown, String::new(), "mdt_".into()] {
        presented.push(Some(format!("Bearer {key}")));
    }
    presented.push(Some(format!("Basic {}", app.key)));
    for authorization in presented {
        let mut identity = IdentityServiceClient::new(app.channel.clone());
        let mut message = Request::new(GetCustomerRequest {
            customer_id: "01a205df-1e69-7279-825f-4703e6030243".into(),
        });
        if let Some(value) = &authorization {
            message
                .metadata_mut()
                .insert("authorization", value.parse().expect("metadata"));
        }
        let status = identity
            .get_customer(message)
            .await
            .expect_err("a call without a live key is refused");
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{authorization:?}: {status:?}"
        );
        let printed = format!("{status:?}");
        assert!(
            !printed.contains("mdt_0000"),
            "the refusal repeats the key: {printed}"
        );
    }
    // Expiry is checked on every call, not only at reload.
    let soon = key_for(
        &app,
        "soon",
        &[Scope::Staff],
        Some(chrono::Duration::hours(1)),
    )
    .await;
    let mut staff = IdentityServiceClient::new(with_key(app.channel.clone(), &soon));
    let found = staff
        .get_customer(GetCustomerRequest {
            customer_id: "01a205df-1e69-7279-825f-4703e6030243".into(),
        })
        .await;
    assert_eq!(found.expect_err("no such customer").code(), Code::NotFound);

    let mut health = HealthClient::new(app.channel.clone());
    health
        .check(HealthCheckRequest::default())
        .await
        .expect("Health needs no key");
}

async fn the_audit_trail_names_the_client_behind_each_change(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    let key = key_for(&app, "customer-portal", &[Scope::Portal], None).await;
    let mut portal = PermissionServiceClient::new(with_key(app.channel.clone(), &key));
    let granted = portal
        .set_permissions(as_customer(
            &manager,
            SetPermissionsRequest {
                contractor_id: contractor.clone(),
                customer_id: associate.clone(),
                permissions: vec![Permission::Pay as i32],
                expire_time: None,
            },
        ))
        .await
        .expect("a grant through the portal's key")
        .into_inner();
    let events = app
        .permissions
        .list_audit_events(as_customer(
            &manager,
            ListAuditEventsRequest {
                contractor_id: contractor.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("the audit trail")
        .into_inner()
        .events;
    let grant = events
        .iter()
        .find(|event| event.revision == granted.revision)
        .expect("the grant's event");
    assert_eq!(grant.actor_client, "customer-portal");
    assert_eq!(grant.actor_customer_id, manager);
    assert!(
        events
            .iter()
            .filter(|event| event.revision != granted.revision)
            .all(|event| event.actor_client == "bootstrap"),
        "the story's changes came through the bootstrap key: {events:?}"
    );
}

async fn only_portal_keys_may_act_for_a_customer(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    let key = key_for(&app, "payments", &[Scope::Check], None).await;
    let mut payments = PermissionServiceClient::new(with_key(app.channel.clone(), &key));
    let check = CheckPermissionRequest {
        customer_id: associate,
        permission: Permission::Pay as i32,
        contractor_id: contractor,
        application_id: String::new(),
        at_least_revision: 0,
    };
    payments
        .check_permission(check.clone())
        .await
        .expect("a check key may check");
    let status = payments
        .check_permission(as_customer(&manager, check))
        .await
        .expect_err("a check key may not name a customer to act for");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("portal scope"),
        "the refusal says why: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_key_is_private_made_once_and_revocable() {
    use std::os::unix::fs::PermissionsExt;

    let app = spawn_app(Backend::Sqlite).await;
    let key = app.key.clone();
    assert!(key.starts_with(KEY_PREFIX) && key.len() == KEY_PREFIX.len() + 64);
    let file = app.database().key_file();
    let mode = std::fs::metadata(&file)
        .expect("the key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the bootstrap key file is private");
    let stored = app.store.keys().await.expect("the keys");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].name, "bootstrap");
    assert_eq!(stored[0].scopes, Scopes::all());
    assert!(key.starts_with(&stored[0].key_prefix));
    assert_ne!(stored[0].key_hash, key, "the key is not stored as it is");

    // A restart makes no second bootstrap key, and the first one still works.
    let database = app.stop().await;
    let mut app = start_on(database).await;
    assert_eq!(
        std::fs::read_to_string(&file).expect("the key file").trim(),
        key,
        "the key file was not rewritten"
    );
    assert_eq!(app.store.keys().await.expect("the keys").len(), 1);
    app.customer("still-served").await;

    // Revoked, it stops working as soon as the server reloads its keys.
    let id = app.store.keys().await.expect("the keys")[0].key_id.clone();
    app.store.revoke_key(&id).await.expect("revoke");
    app.keys.reload(&app.store).await.expect("reload");
    let refused = app
        .identity
        .register_customer(RegisterCustomerRequest {
            external_subject: "late".into(),
            display_name: "Late".into(),
            email: "late@example.ca".into(),
        })
        .await;
    assert_eq!(refused.expect_err("revoked").code(), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_through_one_replica_is_refused_by_another_within_a_second() {
    let (first, second) = start_replicas(TestDatabase::new(Backend::Postgres).await).await;
    let issued = mandate::credentials::keys::create(
        &first.store,
        "inspections",
        [Scope::Check].into_iter().collect(),
        None,
    )
    .await
    .expect("a key");
    let mut through_second =
        PermissionServiceClient::new(with_key(second.channel.clone(), &issued.secret));
    let check = || CheckPermissionsRequest { items: vec![] };
    // The second replica learns of the new key by itself.
    let created = Instant::now();
    while let Err(status) = through_second.check_permissions(check()).await {
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert!(
            created.elapsed() < Duration::from_secs(30),
            "the new key never arrived"
        );
        tokio::task::yield_now().await;
    }
    eprintln!(
        "a new key worked on another replica after {:?}",
        created.elapsed()
    );

    first
        .store
        .revoke_key(&issued.record.key_id)
        .await
        .expect("revoke");
    let revoked = Instant::now();
    while through_second.check_permissions(check()).await.is_ok() {
        assert!(
            revoked.elapsed() < Duration::from_secs(30),
            "the revocation never arrived"
        );
        tokio::task::yield_now().await;
    }
    let took = revoked.elapsed();
    eprintln!("a revoked key was refused by another replica after {took:?}");
    let status = through_second
        .check_permissions(check())
        .await
        .expect_err("refused from now on");
    assert_eq!(status.code(), Code::Unauthenticated);
}

/// Runs `mandate ARGS` on `database`; its standard output and error.
fn mandate(database: &TestDatabase, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["--database-url", &database.url];
    all.extend_from_slice(args);
    let output = crate::process::mandate_command(&all, &[])
        .output()
        .expect("run mandate");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_and_unlock_commands_manage_keys_and_lockouts() {
    let mut app = spawn_app(Backend::Sqlite).await;
    let (_manager, _associate, _contractor, pin) = app.story().await;
    let database = app.database();

    let (ok, key, said) = mandate(
        database,
        &[
            "keys",
            "create",
            "--name",
            "inspections",
            "--scope",
            "check",
        ],
    );
    assert!(ok, "{said}");
    let key = key.trim().to_owned();
    assert!(key.starts_with(KEY_PREFIX), "the key is printed: {key}");
    let (ok, list, said) = mandate(database, &["keys", "list"]);
    assert!(ok, "{said}");
    assert!(
        list.contains("inspections") && list.contains(&key[..12]),
        "{list}"
    );
    assert!(!list.contains(&key), "keys list shows a key: {list}");
    let (ok, _, said) = mandate(
        database,
        &["keys", "create", "--name", "x", "--scope", "admin"],
    );
    assert!(
        !ok && said.contains("--scope"),
        "an unknown scope is refused: {said}"
    );

    // Lock a customer out, then lift it from the command line.
    let guesser = app.customer("guesser").await.customer_id;
    for n in 0..11u64 {
        let wrong =
            mandate_domain::pin::Pin::from_random(n.wrapping_mul(0x9e37_79b9_7f4a_7c15) + 1)
                .expose_formatted();
        let _ = app
            .contractors
            .associate_by_pin(as_customer(&guesser, AssociateByPinRequest { pin: wrong }))
            .await;
    }
    let right = || as_customer(&guesser, AssociateByPinRequest { pin: pin.clone() });
    let locked = app.contractors.associate_by_pin(right()).await;
    assert_eq!(
        locked.expect_err("locked out").code(),
        Code::ResourceExhausted
    );
    let (ok, _, said) = mandate(app.database(), &["unlock", &guesser]);
    assert!(ok && said.contains("lifted"), "{said}");
    app.contractors
        .associate_by_pin(right())
        .await
        .expect("the lockout was lifted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_can_be_turned_off() {
    let app =
        crate::helpers::spawn_app_with(Backend::Sqlite, |settings| settings.reflection = false)
            .await;
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
            app.channel.clone(),
        );
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let answer = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await;
    assert_eq!(
        answer.expect_err("no reflection").code(),
        Code::Unimplemented
    );
}

async fn contact_details_go_only_to_those_entitled(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    let stranger = app.customer("stranger").await.customer_id;
    let portal = key_for(&app, "portal", &[Scope::Portal], None).await;
    let staff = key_for(&app, "staff-console", &[Scope::Staff], None).await;
    let portal_channel = with_key(app.channel.clone(), &portal);
    let staff_channel = with_key(app.channel.clone(), &staff);

    let customer = async |channel: &Authed, acting: Option<&str>| {
        IdentityServiceClient::new(channel.clone())
            .get_customer(request(
                acting,
                GetCustomerRequest {
                    customer_id: associate.clone(),
                },
            ))
            .await
            .expect("the customer")
            .into_inner()
            .customer
            .expect("a customer")
    };
    assert_eq!(
        customer(&staff_channel, None).await.email,
        "associate@example.ca"
    );
    assert_eq!(
        customer(&portal_channel, Some(&associate)).await.email,
        "associate@example.ca",
        "a customer sees its own details"
    );
    for other in [Some(manager.as_str()), None] {
        let seen = customer(&portal_channel, other).await;
        assert_eq!(
            (seen.email.as_str(), seen.external_subject.as_str()),
            ("", "")
        );
        assert_eq!(
            seen.display_name, "Customer associate",
            "the name is not a secret"
        );
    }

    let account = async |channel: &Authed, acting: Option<&str>| {
        ContractorServiceClient::new(channel.clone())
            .get_contractor(request(
                acting,
                GetContractorRequest {
                    contractor_id: contractor.clone(),
                },
            ))
            .await
            .expect("the account")
            .into_inner()
            .contractor
            .expect("an account")
    };
    assert!(account(&staff_channel, None).await.contact.is_some());
    assert!(
        account(&portal_channel, Some(&associate))
            .await
            .contact
            .is_some()
    );
    for outsider in [Some(stranger.as_str()), None] {
        let seen = account(&portal_channel, outsider).await;
        assert!(
            seen.contact.is_none() && seen.mailing_address.is_none(),
            "{seen:?}"
        );
        assert_eq!(seen.business_name, "Rideau Builders Inc.");
    }
}

/// #17: a portal call acting for Eve (`x-customer-id`) listed Ben's accessible applications. It
/// may list Eve's alone; a portal key that names no customer lists none; a check system still
/// asks for anyone.
async fn a_portal_call_lists_only_the_applications_of_the_customer_it_acts_for(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, ben, contractor, _) = app.story().await;
    app.set_permissions(
        &manager,
        &contractor,
        &ben,
        &[mandate::pb::Permission::Apply],
    )
    .await
    .expect("Ben may apply");
    let eve = app.customer("eve").await.customer_id;
    app.permissions
        .link_application(LinkApplicationRequest {
            application_id: "24-777 BLD".into(),
            contractor_id: contractor.clone(),
        })
        .await
        .expect("linked");
    let portal = key_for(&app, "portal", &[Scope::Portal], None).await;
    let check = key_for(&app, "inspections", &[Scope::Check], None).await;
    let ask = |key: &str, acting: Option<&str>, customer: &str| {
        let channel = with_key(app.channel.clone(), key);
        let request = request(
            acting,
            ListAccessibleApplicationsRequest {
                customer_id: customer.to_owned(),
                permission: mandate::pb::Permission::Apply as i32,
                page_size: 10,
                page_token: String::new(),
            },
        );
        async move {
            PermissionServiceClient::new(channel)
                .list_accessible_applications(request)
                .await
                .map(|r| r.into_inner().applications.len())
        }
    };
    let refused = ask(&portal, Some(&eve), &ben)
        .await
        .expect_err("Eve's session asks for Ben's applications");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(ask(&portal, Some(&eve), &eve).await.expect("her own"), 0);
    let unnamed = ask(&portal, None, &ben)
        .await
        .expect_err("a portal call acts for a customer");
    assert_eq!(unnamed.code(), Code::Unauthenticated, "{unnamed:?}");
    assert_eq!(
        ask(&check, None, &ben).await.expect("a check system asks"),
        1
    );
    assert_eq!(ask(&portal, Some(&ben), &ben).await.expect("his own"), 1);
}
