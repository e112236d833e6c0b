//! Races on PostgreSQL with several connections: Managers acting at the same moment never leave
//! an account without a Manager, and the audit trail holds exactly the changes that succeeded;
//! customers claiming an unclaimed account at the same moment make exactly one Manager.

use std::collections::BTreeSet;

use mandate::pb::Permission::{Manage, Pay};
use mandate::pb::{
    LeaveContractorRequest, ListAuditEventsRequest, RemoveAssociateRequest, SetPermissionsRequest,
};
use tokio::task::JoinSet;
use tonic::Code;

use crate::helpers::{Backend, as_customer, channel_to, permissions, spawn_app, with_key};

const ROUNDS: u64 = 200;

/// What one Manager tries in a round, against its neighbour.
#[derive(Debug, Clone, Copy)]
enum Move {
    RevokeManage,
    Remove,
    Leave,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn managers_racing_to_revoke_remove_and_leave_always_leave_a_manager_on_postgres() {
    let mut app = spawn_app(Backend::Postgres).await;
    let mut pool = Vec::new();
    for i in 0..5 {
        pool.push(app.customer(&format!("manager-{i}")).await.customer_id);
    }
    let mut seed: u64 = 0x5eed;
    for round in 0..ROUNDS {
        let managers = &pool[..2 + usize::try_from(round % 4).unwrap()];
        let registered = app.contractor(&managers[0]).await;
        let contractor = registered.contractor.unwrap().contractor_id;
        let mut setup_revision = 0;
        for other in &managers[1..] {
            app.associate(other, &registered.pin).await;
            setup_revision = app
                .set_permissions(&managers[0], &contractor, other, &[Manage])
                .await
                .unwrap()
                .revision;
        }

        let mut racers = JoinSet::new();
        for (i, actor) in managers.iter().enumerate() {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let chosen = match (seed >> 33) % 3 {
                0 => Move::RevokeManage,
                1 => Move::Remove,
                _ => Move::Leave,
            };
            let target = managers[(i + 1) % managers.len()].clone();
            let actor = actor.clone();
            let contractor = contractor.clone();
            // Each racer on its own connection.
            let channel = with_key(channel_to(app.address()).await, &app.key);
            racers.spawn(async move {
                let mut permissions_api =
                    mandate::pb::permission_service_client::PermissionServiceClient::new(
                        channel.clone(),
                    );
                let mut contractors_api =
                    mandate::pb::contractor_service_client::ContractorServiceClient::new(channel);
                let outcome = match chosen {
                    Move::RevokeManage => permissions_api
                        .set_permissions(as_customer(
                            &actor,
                            SetPermissionsRequest {
                                contractor_id: contractor.clone(),
                                customer_id: target,
                                permissions: permissions(&[Pay]),
                                expire_time: None,
                            },
                        ))
                        .await
                        .map(|r| r.into_inner().revision),
                    Move::Remove => permissions_api
                        .remove_associate(as_customer(
                            &actor,
                            RemoveAssociateRequest {
                                contractor_id: contractor.clone(),
                                customer_id: target,
                                rotate_pin: false,
                            },
                        ))
                        .await
                        .map(|r| r.into_inner().revision),
                    Move::Leave => contractors_api
                        .leave_contractor(as_customer(
                            &actor,
                            LeaveContractorRequest {
                                contractor_id: contractor.clone(),
                            },
                        ))
                        .await
                        .map(|r| r.into_inner().revision),
                };
                (chosen, outcome)
            });
        }
        let mut committed = BTreeSet::new();
        while let Some(joined) = racers.join_next().await {
            let (chosen, outcome) = joined.unwrap();
            match outcome {
                Ok(revision) => {
                    committed.insert(revision);
                }
                Err(status) => assert!(
                    matches!(
                        status.code(),
                        Code::FailedPrecondition | Code::PermissionDenied | Code::NotFound
                    ),
                    "round {round}: {chosen:?} failed unexpectedly: {status:?}"
                ),
            }
        }

        let mut remaining_managers = Vec::new();
        for customer in managers {
            if app
                .check(customer, Manage, &contractor, "")
                .await
                .unwrap()
                .allowed
            {
                remaining_managers.push(customer.clone());
            }
        }
        assert!(
            !remaining_managers.is_empty(),
            "round {round}: the account was left without a Manager"
        );
        let audited: BTreeSet<i64> = app
            .permissions
            .list_audit_events(as_customer(
                &remaining_managers[0],
                ListAuditEventsRequest {
                    contractor_id: contractor.clone(),
                    page_size: 500,
                    ..ListAuditEventsRequest::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .events
            .into_iter()
            .map(|e| e.revision)
            .filter(|r| *r > setup_revision)
            .collect();
        assert_eq!(
            audited, committed,
            "round {round}: the audit trail differs from the changes that succeeded"
        );
    }
}

/// An account nobody has claimed yet, as the legacy import leaves one: registered, then stripped
/// of its associates in the database. Returns the account and its PIN.
async fn unclaimed_account(app: &mut crate::helpers::TestApp, name: &str) -> (String, String) {
    use sea_orm::{ConnectionTrait, Statement};
    let registrant = app.customer(name).await.customer_id;
    let registered = app.contractor(&registrant).await;
    let contractor = registered.contractor.expect("an account").contractor_id;
    let db = app.store.connection();
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        format!("DELETE FROM memberships WHERE contractor_id = '{contractor}'"),
    ))
    .await
    .expect("strip the account of its associates");
    (contractor, registered.pin)
}

/// Eight customers enter the PIN of an unclaimed account at the same moment, through their
/// own connections: exactly one becomes its Manager, with every permission; the others are
/// associated with none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customers_racing_to_claim_an_unclaimed_account_make_exactly_one_manager_on_postgres() {
    use mandate::pb::AssociateByPinRequest;
    use mandate::pb::contractor_service_client::ContractorServiceClient;

    let mut app = spawn_app(Backend::Postgres).await;
    for round in 0..20 {
        let (contractor, pin) = unclaimed_account(&mut app, &format!("registrant-{round}")).await;
        let mut ready = Vec::new();
        for i in 0..8 {
            let customer = app
                .customer(&format!("claimer-{round}-{i}"))
                .await
                .customer_id;
            ready.push((
                customer,
                with_key(channel_to(app.address()).await, &app.key),
            ));
        }
        // Every claimer is connected and waits at the barrier, so the claims go out together.
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(ready.len()));
        let mut claimers = JoinSet::new();
        for (customer, channel) in ready {
            let (pin, start) = (pin.clone(), start.clone());
            claimers.spawn(async move {
                start.wait().await;
                let granted = ContractorServiceClient::new(channel)
                    .associate_by_pin(as_customer(&customer, AssociateByPinRequest { pin }))
                    .await
                    .expect("a claim is an association")
                    .into_inner()
                    .permissions;
                (customer, granted)
            });
        }
        let mut managers = Vec::new();
        while let Some(claim) = claimers.join_next().await {
            let (customer, granted) = claim.expect("a claimer");
            if granted.contains(&(Manage as i32)) {
                assert_eq!(granted, crate::helpers::all_permissions());
                managers.push(customer);
            } else {
                assert!(granted.is_empty(), "a later claimer holds {granted:?}");
            }
        }
        assert_eq!(
            managers.len(),
            1,
            "round {round}: {managers:?} all became Manager of {contractor}"
        );
    }
}

/// Under `--managerless-policy none`, the first customer to enter an unclaimed account's PIN is
/// associated with no permissions: staff appoint the Manager.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_none_policy_the_first_claimer_holds_nothing() {
    use mandate::pb::AssociateByPinRequest;

    let mut app = crate::helpers::spawn_app_with(Backend::Sqlite, |settings| {
        settings.managerless_policy = mandate::settings::Policy::None;
    })
    .await;
    let (_contractor, pin) = unclaimed_account(&mut app, "registrant").await;
    let claimer = app.customer("claimer").await.customer_id;
    let granted = app
        .contractors
        .associate_by_pin(as_customer(&claimer, AssociateByPinRequest { pin }))
        .await
        .expect("associated")
        .into_inner()
        .permissions;
    assert!(granted.is_empty(), "{granted:?}");
}

/// An association through an alias PIN and a merge of that alias's survivor into a third
/// account, started together, 40 rounds: each takes its turn on the survivor's row instead of
/// deadlocking (both once locked the absorbed account and the survivor in opposite orders).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_alias_association_and_a_merge_of_its_survivor_never_deadlock_on_postgres() {
    use mandate::pb::contractor_service_client::ContractorServiceClient;
    use mandate::pb::{AssociateByPinRequest, ListAssociatesRequest, MergeContractorsRequest};

    let mut app = spawn_app(Backend::Postgres).await;
    let manager = app.customer("manager").await.customer_id;
    let mut deadlocks = 0;
    for round in 0..40 {
        let mut ids = Vec::new();
        let mut alias = String::new();
        for n in 0..3 {
            let registered = app.contractor(&manager).await;
            if n == 1 {
                alias = registered.pin;
            }
            ids.push(registered.contractor.unwrap().contractor_id);
        }
        let (survivor, absorbed, third) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
        app.contractors
            .merge_contractors(MergeContractorsRequest {
                survivor_contractor_id: survivor.clone(),
                absorbed_contractor_ids: vec![absorbed],
            })
            .await
            .expect("the first merge");
        let customer = app.customer(&format!("walk-in-{round}")).await.customer_id;

        let start = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let (associating, merging) = (
            with_key(channel_to(app.address()).await, &app.key),
            with_key(channel_to(app.address()).await, &app.key),
        );
        let association = tokio::spawn({
            let (start, customer) = (start.clone(), customer.clone());
            async move {
                start.wait().await;
                ContractorServiceClient::new(associating)
                    .associate_by_pin(as_customer(&customer, AssociateByPinRequest { pin: alias }))
                    .await
                    .map(drop)
            }
        });
        let merge = tokio::spawn({
            let (start, survivor, third) = (start.clone(), survivor.clone(), third.clone());
            async move {
                start.wait().await;
                ContractorServiceClient::new(merging)
                    .merge_contractors(MergeContractorsRequest {
                        survivor_contractor_id: third,
                        absorbed_contractor_ids: vec![survivor],
                    })
                    .await
                    .map(drop)
            }
        });
        for outcome in [association.await.unwrap(), merge.await.unwrap()] {
            match outcome {
                Ok(()) => {}
                Err(status) if status.code() == Code::Unavailable => deadlocks += 1,
                Err(status) => panic!("round {round}: {status:?}"),
            }
        }
        // Whichever went first, the customer ends up on the last survivor.
        let listed = app
            .permissions
            .list_associates(ListAssociatesRequest {
                contractor_id: third,
                page_size: 10,
                page_token: String::new(),
            })
            .await
            .expect("the associates")
            .into_inner()
            .associates;
        assert!(
            deadlocks > 0
                || listed
                    .iter()
                    .any(|a| a.customer.as_ref().unwrap().customer_id == customer),
            "round {round}: the customer is an associate of the final survivor"
        );
    }
    assert_eq!(deadlocks, 0, "rounds that deadlocked");
}
