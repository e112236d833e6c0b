use std::time::Duration;

use mandate::pb::Permission::{Inspections, Pay};
use mandate::pb::{
    AssociateByPinRequest, AuditEvent, ChangeKind, GetPinRequest, LinkApplicationRequest,
    ListAuditEventsRequest, RotatePinRequest, WatchChangesRequest,
};
use tonic::{Code, Streaming};

use crate::helpers::{Backend, TestApp, as_customer, expect_code, permissions, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    every_change_to_an_account_is_in_its_audit_trail_with_before_and_after,
    the_audit_trail_pages_and_filters_by_time_for_managers_only,
    a_consumer_that_resumes_from_its_last_revision_sees_every_change_exactly_once,
    a_rotated_pin_replaces_the_old_one_at_once,
    a_pin_that_cannot_be_opened_is_not_shown_and_no_read_is_recorded,
    only_a_manager_may_rotate_the_pin,
    a_revoked_or_expired_key_ends_the_feeds_it_opened,
    a_feed_after_a_revision_never_reached_is_refused,
);

/// The next change of a feed; a feed that stays silent for 10 s fails the test.
async fn next(stream: &mut Streaming<mandate::pb::WatchChangesResponse>) -> AuditEvent {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a change within 10 s")
        .expect("the feed is healthy")
        .expect("the feed is open")
        .change
        .expect("a change in the message")
}

async fn trail(app: &mut TestApp, viewer: &str, contractor_id: &str) -> Vec<AuditEvent> {
    app.permissions
        .list_audit_events(as_customer(
            viewer,
            ListAuditEventsRequest {
                contractor_id: contractor_id.to_owned(),
                ..ListAuditEventsRequest::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .events
}

async fn every_change_to_an_account_is_in_its_audit_trail_with_before_and_after(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    let granted = app
        .set_permissions(&manager, &contractor, &associate, &[Pay, Inspections])
        .await
        .unwrap();
    app.permissions
        .link_application(LinkApplicationRequest {
            application_id: "24-123456 BLD".into(),
            contractor_id: contractor.clone(),
        })
        .await
        .unwrap();
    app.contractors
        .get_pin(as_customer(
            &manager,
            GetPinRequest {
                contractor_id: contractor.clone(),
            },
        ))
        .await
        .unwrap();

    let events = trail(&mut app, &manager, &contractor).await;
    let kinds: Vec<i32> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            ChangeKind::ContractorRegistered as i32,
            ChangeKind::Associated as i32,
            ChangeKind::PermissionsSet as i32,
            ChangeKind::ApplicationLinked as i32,
            ChangeKind::PinRead as i32,
        ]
    );
    assert!(events.windows(2).all(|w| w[0].revision < w[1].revision));
    let set = &events[2];
    assert_eq!(set.revision, granted.revision);
    assert_eq!(set.actor_customer_id, manager);
    assert_eq!(set.customer_id, associate);
    assert!(set.permissions_before.is_empty());
    assert_eq!(set.permissions_after, permissions(&[Pay, Inspections]));
    assert_eq!(events[3].application_id, "24-123456 BLD");
}

async fn the_audit_trail_pages_and_filters_by_time_for_managers_only(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, pin) = app.story().await;
    for subject in ["c1", "c2", "c3"] {
        let customer = app.customer(subject).await.customer_id;
        app.associate(&customer, &pin).await;
    }
    let all = trail(&mut app, &manager, &contractor).await;
    assert_eq!(all.len(), 5);

    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .permissions
            .list_audit_events(as_customer(
                &manager,
                ListAuditEventsRequest {
                    contractor_id: contractor.clone(),
                    page_size: 2,
                    page_token: token,
                    ..ListAuditEventsRequest::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        paged.extend(page.events);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, all);

    let after_last = prost_types::Timestamp {
        seconds: all[4].time.unwrap().seconds + 1,
        nanos: 0,
    };
    let none_after = app
        .permissions
        .list_audit_events(as_customer(
            &manager,
            ListAuditEventsRequest {
                contractor_id: contractor.clone(),
                start_time: Some(after_last),
                ..ListAuditEventsRequest::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(none_after.events.is_empty());
    let from_first = app
        .permissions
        .list_audit_events(as_customer(
            &manager,
            ListAuditEventsRequest {
                contractor_id: contractor.clone(),
                start_time: all[0].time,
                end_time: Some(after_last),
                ..ListAuditEventsRequest::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(from_first.events, all);

    let ancient = app
        .permissions
        .list_audit_events(as_customer(
            &manager,
            ListAuditEventsRequest {
                contractor_id: contractor.clone(),
                start_time: Some(prost_types::Timestamp {
                    seconds: -200_000_000_000,
                    nanos: 0,
                }),
                ..ListAuditEventsRequest::default()
            },
        ))
        .await;
    crate::helpers::expect_invalid(ancient, &["start_time"]);
    let denied = app
        .permissions
        .list_audit_events(as_customer(
            &associate,
            ListAuditEventsRequest {
                contractor_id: contractor.clone(),
                ..ListAuditEventsRequest::default()
            },
        ))
        .await;
    expect_code(denied, Code::PermissionDenied);
}

async fn a_consumer_that_resumes_from_its_last_revision_sees_every_change_exactly_once(
    backend: Backend,
) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, pin) = app.story().await;
    let mut feed = app
        .permissions
        .watch_changes(WatchChangesRequest { after_revision: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next(&mut feed).await.revision);
    }
    // The consumer goes away mid-stream; changes keep coming.
    drop(feed);
    app.set_permissions(&manager, &contractor, &associate, &[Pay])
        .await
        .unwrap();
    let late = app.customer("late").await.customer_id;
    app.associate(&late, &pin).await;
    let mut feed = app
        .permissions
        .watch_changes(WatchChangesRequest {
            after_revision: *seen.last().unwrap(),
        })
        .await
        .unwrap()
        .into_inner();
    for _ in 0..4 {
        seen.push(next(&mut feed).await.revision);
    }
    // Then a live change, committed while the consumer waits.
    let live = app
        .set_permissions(&manager, &contractor, &late, &[Inspections])
        .await
        .unwrap();
    let change = next(&mut feed).await;
    assert_eq!(change.revision, live.revision);
    assert_eq!(change.kind, ChangeKind::PermissionsSet as i32);
    seen.push(change.revision);

    // Every revision so far is a change of the feed: customers, account, associations, grants.
    let expected: Vec<i64> = (1..=live.revision).collect();
    assert_eq!(seen, expected);
}

async fn a_rotated_pin_replaces_the_old_one_at_once(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, _associate, contractor, old_pin) = app.story().await;
    let rotated = app
        .contractors
        .rotate_pin(as_customer(
            &manager,
            RotatePinRequest {
                contractor_id: contractor.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(rotated.pin, old_pin);
    let newcomer = app.customer("newcomer").await.customer_id;
    let with_old = app
        .contractors
        .associate_by_pin(as_customer(
            &newcomer,
            AssociateByPinRequest {
                pin: old_pin.clone(),
            },
        ))
        .await;
    expect_code(with_old, Code::NotFound);
    let with_new = app
        .contractors
        .associate_by_pin(as_customer(
            &newcomer,
            AssociateByPinRequest {
                pin: rotated.pin.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(with_new.contractor.unwrap().contractor_id, contractor);
    let shown = app
        .contractors
        .get_pin(as_customer(
            &manager,
            GetPinRequest {
                contractor_id: contractor.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.pin, rotated.pin);
    let kinds: Vec<i32> = trail(&mut app, &manager, &contractor)
        .await
        .iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&(ChangeKind::PinRotated as i32)));
}

async fn only_a_manager_may_rotate_the_pin(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, pin) = app.story().await;
    let result = app
        .contractors
        .rotate_pin(as_customer(
            &associate,
            RotatePinRequest {
                contractor_id: contractor.clone(),
            },
        ))
        .await;
    expect_code(result, Code::PermissionDenied);
    let shown = app
        .contractors
        .get_pin(as_customer(
            &manager,
            GetPinRequest {
                contractor_id: contractor,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.pin, pin);
}

async fn a_pin_that_cannot_be_opened_is_not_shown_and_no_read_is_recorded(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, _associate, contractor, _pin) = app.story().await;
    // Damage the stored ciphertext, as a bad restore might.
    let db = sea_orm::Database::connect(&app.database().url)
        .await
        .unwrap();
    let damaged = match backend {
        Backend::Sqlite => "X'00112233445566778899aabbccddeeff00'",
        Backend::Postgres => "'\\x00112233445566778899aabbccddeeff00'::bytea",
    };
    let sql = format!("UPDATE contractors SET pin_ciphertext = {damaged}");
    use sea_orm::ConnectionTrait;
    db.execute_raw(sea_orm::Statement::from_string(
        db.get_database_backend(),
        sql,
    ))
    .await
    .unwrap();
    db.close().await.unwrap();

    let read = app
        .contractors
        .get_pin(as_customer(
            &manager,
            GetPinRequest {
                contractor_id: contractor.clone(),
            },
        ))
        .await;
    let status = expect_code(read, Code::Internal);
    assert!(!status.message().contains("secret"), "{status:?}");
    let kinds: Vec<i32> = trail(&mut app, &manager, &contractor)
        .await
        .iter()
        .map(|e| e.kind)
        .collect();
    assert!(!kinds.contains(&(ChangeKind::PinRead as i32)), "{kinds:?}");
}

/// A `check` key of its own for the client `name`, live at once, expiring after `lifetime` when
/// given; the key and its id.
async fn check_key(
    app: &TestApp,
    name: &str,
    lifetime: Option<chrono::Duration>,
) -> (String, String) {
    let scopes: mandate_domain::client::Scopes =
        [mandate_domain::client::Scope::Check].into_iter().collect();
    let issued = mandate::credentials::keys::create(
        &app.store,
        name,
        scopes,
        lifetime.map(|d| chrono::Utc::now() + d),
    )
    .await
    .expect("a key");
    app.keys.reload(&app.store).await.expect("reload the keys");
    (issued.secret, issued.record.key_id)
}

/// A feed opened with `key` after `after`.
async fn feed_with(
    app: &TestApp,
    key: &str,
    after: i64,
) -> Streaming<mandate::pb::WatchChangesResponse> {
    mandate::pb::permission_service_client::PermissionServiceClient::new(crate::helpers::with_key(
        app.channel.clone(),
        key,
    ))
    .watch_changes(WatchChangesRequest {
        after_revision: after,
    })
    .await
    .expect("a feed")
    .into_inner()
}

/// The end of a feed: the status it ended with (a feed silent for 30 s fails the test).
async fn ending(stream: &mut Streaming<mandate::pb::WatchChangesResponse>) -> tonic::Status {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the feed ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the feed ends within 30 s")
}

/// #17: a key revoked while its feed is open no longer hears the changes (6 of 6 were delivered
/// after `keys revoke` before): the feed ends with UNAUTHENTICATED at the next key reload, as a
/// new call would be refused; a key that expires ends its feed the same way.
async fn a_revoked_or_expired_key_ends_the_feeds_it_opened(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (key, key_id) = check_key(&app, "inspections", None).await;
    let mut watched = feed_with(&app, &key, app.revision_counter().await).await;
    let first = app.customer("before-revocation").await;
    let change = next(&mut watched).await;
    assert_eq!(change.customer_id, first.customer_id);

    app.store.revoke_key(&key_id).await.expect("revoke");
    app.keys.reload(&app.store).await.expect("reload");
    let after = app.revision_counter().await;
    for n in 0..6 {
        app.customer(&format!("after-revocation-{n}")).await;
    }
    let ended = tokio::time::timeout(Duration::from_secs(30), watched.message())
        .await
        .expect("the feed answers within 30 s")
        .expect_err("none of the 6 later changes is delivered: the feed ends");
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert!(ended.message().contains("inspections"), "{ended:?}");
    assert!(
        ended.message().contains(&format!("after_revision {after}")),
        "where to pick up: {ended:?}"
    );

    // A key that expires while its feed is open: the feed ends at a reload after the expiry.
    let (short, _) = check_key(&app, "short-lived", Some(chrono::Duration::seconds(2))).await;
    let mut brief = feed_with(&app, &short, app.revision_counter().await).await;
    let ended = ending(&mut brief).await;
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
}

/// #17: a feed asked to start after a revision this database never reached (a consumer resuming
/// after a restore) is refused, where it used to stay silent for ever.
async fn a_feed_after_a_revision_never_reached_is_refused(backend: Backend) {
    let mut app = spawn_app(backend).await;
    app.customer("someone").await;
    let latest = app.revision_counter().await;
    let refused = crate::helpers::expect_invalid(
        app.permissions
            .watch_changes(WatchChangesRequest {
                after_revision: latest + 1,
            })
            .await,
        &["after_revision"],
    );
    assert!(
        refused.message().contains(&latest.to_string()),
        "{refused:?}"
    );
    let mut at_latest = app
        .permissions
        .watch_changes(WatchChangesRequest {
            after_revision: latest,
        })
        .await
        .expect("a feed from the latest revision")
        .into_inner();
    let newcomer = app.customer("newcomer").await;
    assert_eq!(next(&mut at_latest).await.customer_id, newcomer.customer_id);
}
