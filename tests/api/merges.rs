//! Merging a company's accounts (staff): the survivor takes the applications, the associates with
//! their permissions united, the history and the PINs of the absorbed accounts.

use std::collections::BTreeMap;

use mandate::pb::Permission::{Apply, Inspections, Pay};
use mandate::pb::{
    AssociateByPinRequest, ChangeKind, CheckReason, GetContractorRequest, LinkApplicationRequest,
    ListAssociatesRequest, ListAuditEventsRequest, MergeContractorsRequest, SetPermissionsRequest,
};
use tonic::Code;

use crate::helpers::{
    Backend, TestApp, all_permissions, as_customer, assert_decision, expect_code, expect_invalid,
    permissions, spawn_app,
};
use crate::on_both_backends;

on_both_backends!(
    a_merge_of_three_accounts_unites_them_in_the_survivor,
    a_merge_into_itself_an_absorbed_account_or_twice_is_refused_and_changes_nothing,
);

/// A customer's permissions on `contractor`, as its Manager `manager` lists them.
async fn associates(
    app: &mut TestApp,
    manager: &str,
    contractor: &str,
) -> BTreeMap<String, (Vec<i32>, bool)> {
    app.permissions
        .list_associates(as_customer(
            manager,
            ListAssociatesRequest {
                contractor_id: contractor.to_owned(),
                page_size: 100,
                page_token: String::new(),
            },
        ))
        .await
        .expect("the associates")
        .into_inner()
        .associates
        .into_iter()
        .map(|a| {
            let id = a.customer.expect("a customer").customer_id;
            (id, (a.permissions, a.expire_time.is_some()))
        })
        .collect()
}

fn merge(survivor: &str, absorbed: &[&str]) -> MergeContractorsRequest {
    MergeContractorsRequest {
        survivor_contractor_id: survivor.to_owned(),
        absorbed_contractor_ids: absorbed.iter().map(|id| (*id).to_owned()).collect(),
    }
}

async fn a_merge_of_three_accounts_unites_them_in_the_survivor(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let account = async |app: &mut TestApp, manager: &str| {
        let registered = app.contractor(manager).await;
        (
            registered.contractor.expect("an account").contractor_id,
            registered.pin,
        )
    };
    let (m1, m2, m3) = (
        app.customer("manager-a").await.customer_id,
        app.customer("manager-b").await.customer_id,
        app.customer("manager-c").await.customer_id,
    );
    let (x, y) = (
        app.customer("both").await.customer_id,
        app.customer("inspector").await.customer_id,
    );
    let (a, pin_a) = account(&mut app, &m1).await;
    let (b, pin_b) = account(&mut app, &m2).await;
    let (c, pin_c) = account(&mut app, &m3).await;
    // x holds Pay on A until tomorrow and Apply on B for good; y holds Inspections on C.
    app.associate(&x, &pin_a).await;
    app.associate(&x, &pin_b).await;
    app.associate(&y, &pin_c).await;
    app.permissions
        .set_permissions(as_customer(
            &m1,
            SetPermissionsRequest {
                contractor_id: a.clone(),
                customer_id: x.clone(),
                permissions: permissions(&[Pay]),
                expire_time: Some(prost_types::Timestamp {
                    seconds: chrono::Utc::now().timestamp() + 86_400,
                    nanos: 0,
                }),
            },
        ))
        .await
        .expect("a time-limited grant");
    app.set_permissions(&m2, &b, &x, &[Apply])
        .await
        .expect("a grant");
    app.set_permissions(&m3, &c, &y, &[Inspections])
        .await
        .expect("a grant");
    for (permit, account) in [("24-1 BLD", &a), ("24-1 BLD", &b), ("24-2 BLD", &c)] {
        app.permissions
            .link_application(LinkApplicationRequest {
                application_id: permit.into(),
                contractor_id: account.clone(),
            })
            .await
            .expect("linked");
    }

    let merged = app
        .contractors
        .merge_contractors(merge(&a, &[&b, &c]))
        .await
        .expect("staff merge the accounts")
        .into_inner();
    assert_eq!(merged.contractor.expect("the survivor").contractor_id, a);

    let united = associates(&mut app, &m1, &a).await;
    let expected: BTreeMap<String, (Vec<i32>, bool)> = [
        (m1.clone(), (all_permissions(), false)),
        (m2.clone(), (all_permissions(), false)),
        (m3.clone(), (all_permissions(), false)),
        (x.clone(), (permissions(&[Apply, Pay]), false)),
        (y.clone(), (permissions(&[Inspections]), false)),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        united, expected,
        "associates united, Managers still Managers"
    );

    // Every old PIN associates to the survivor.
    for (n, pin) in [&pin_a, &pin_b, &pin_c].into_iter().enumerate() {
        let newcomer = app.customer(&format!("newcomer-{n}")).await.customer_id;
        let joined = app
            .contractors
            .associate_by_pin(as_customer(
                &newcomer,
                AssociateByPinRequest { pin: pin.clone() },
            ))
            .await
            .expect("an old PIN still works")
            .into_inner();
        assert_eq!(joined.contractor.expect("the account").contractor_id, a);
        assert!(joined.permissions.is_empty());
    }

    // Checks naming an absorbed account, or a permit it held, are decided by the survivor.
    let through_c = app.check(&y, Inspections, &c, "").await.expect("a check");
    assert_decision(&through_c, true, CheckReason::GrantedDirectly);
    assert_eq!(through_c.contractor_id, a);
    let permit = app
        .check(&y, Inspections, "", "24-2 BLD")
        .await
        .expect("a check");
    assert_decision(&permit, true, CheckReason::GrantedDirectly);
    assert_eq!(permit.contractor_id, a);
    let not_held = app.check(&x, Inspections, &b, "").await.expect("a check");
    assert_decision(&not_held, false, CheckReason::PermissionNotHeld);

    // An absorbed account says where it went; the survivor's history holds theirs.
    let absorbed = app
        .contractors
        .get_contractor(as_customer(
            &m2,
            GetContractorRequest {
                contractor_id: b.clone(),
            },
        ))
        .await
        .expect("an absorbed account")
        .into_inner()
        .contractor
        .expect("the account");
    assert_eq!(absorbed.merged_into_contractor_id, a);
    let events = app
        .permissions
        .list_audit_events(as_customer(
            &m1,
            ListAuditEventsRequest {
                contractor_id: a.clone(),
                page_size: 100,
                ..Default::default()
            },
        ))
        .await
        .expect("the survivor's audit trail")
        .into_inner()
        .events;
    for account in [&b, &c] {
        assert!(
            events.iter().any(|e| &e.contractor_id == account
                && e.kind == ChangeKind::ContractorRegistered as i32),
            "the history of {account} is readable from the survivor"
        );
    }
    let merge_event = events
        .iter()
        .find(|e| e.kind == ChangeKind::ContractorsMerged as i32)
        .expect("the merge is in the audit trail");
    assert_eq!(merge_event.absorbed_contractor_ids, [b.clone(), c.clone()]);
    assert_eq!(merge_event.revision, merged.revision);
    assert_eq!(merge_event.actor_client, "bootstrap");
}

async fn a_merge_into_itself_an_absorbed_account_or_twice_is_refused_and_changes_nothing(
    backend: Backend,
) {
    let mut app = spawn_app(backend).await;
    let manager = app.customer("manager").await.customer_id;
    let mut accounts = Vec::new();
    for _ in 0..4 {
        accounts.push(
            app.contractor(&manager)
                .await
                .contractor
                .expect("an account")
                .contractor_id,
        );
    }
    let [a, b, c, d] = [&accounts[0], &accounts[1], &accounts[2], &accounts[3]];
    let before = app.revision_counter().await;
    expect_invalid(
        app.contractors.merge_contractors(merge(a, &[a])).await,
        &["absorbed_contractor_ids[0]"],
    );
    expect_invalid(
        app.contractors.merge_contractors(merge(a, &[b, b])).await,
        &["absorbed_contractor_ids[1]"],
    );
    expect_invalid(
        app.contractors.merge_contractors(merge(a, &[])).await,
        &["absorbed_contractor_ids"],
    );
    expect_invalid(
        app.contractors
            .merge_contractors(merge("nope", &["nope"]))
            .await,
        &["survivor_contractor_id", "absorbed_contractor_ids[0]"],
    );
    expect_code(
        app.contractors
            .merge_contractors(merge(a, &[b, "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b"]))
            .await,
        Code::NotFound,
    );
    assert_eq!(
        app.revision_counter().await,
        before,
        "refusals change nothing"
    );

    app.contractors
        .merge_contractors(merge(a, &[b]))
        .await
        .expect("a merge");
    let twice = expect_code(
        app.contractors.merge_contractors(merge(c, &[b])).await,
        Code::FailedPrecondition,
    );
    assert!(twice.message().contains("merged into"), "{twice:?}");
    let into_absorbed = expect_code(
        app.contractors.merge_contractors(merge(b, &[d])).await,
        Code::FailedPrecondition,
    );
    assert!(
        into_absorbed.message().contains(a.as_str()),
        "{into_absorbed:?}"
    );

    // A survivor can absorb again; what was merged into the absorbed follows it.
    app.contractors
        .merge_contractors(merge(c, &[a]))
        .await
        .expect("the survivor is absorbed in its turn");
    let b_now = app
        .contractors
        .get_contractor(as_customer(
            &manager,
            GetContractorRequest {
                contractor_id: b.clone(),
            },
        ))
        .await
        .expect("the first absorbed account")
        .into_inner()
        .contractor
        .expect("the account");
    assert_eq!(b_now.merged_into_contractor_id, *c);
}
