//! Merging a company's accounts (staff): the survivor takes the applications, the associates with
//! their permissions united, the history and the PINs of the absorbed accounts.

use std::collections::BTreeMap;

use mandate::pb::Permission::{Apply, Inspections, Pay};
use mandate::pb::{
    AppointManagerRequest, AssociateByPinRequest, ChangeKind, CheckReason, Contractor,
    GetContractorRequest, GetPinRequest, LeaveContractorRequest, LinkApplicationRequest,
    ListAssociatesRequest, ListAuditEventsRequest, MergeContractorsRequest, ReissuePinRequest,
    RemoveAssociateRequest, RetireAliasPinsRequest, RotatePinRequest, SetPermissionsRequest,
    UnlinkApplicationRequest, UpdateContractorRequest,
};
use tonic::{Code, Status};

use crate::helpers::{
    Backend, TestApp, all_permissions, as_customer, assert_decision, expect_code, expect_invalid,
    permissions, spawn_app,
};
use crate::on_both_backends;

on_both_backends!(
    a_merge_of_three_accounts_unites_them_in_the_survivor,
    a_merge_into_itself_an_absorbed_account_or_twice_is_refused_and_changes_nothing,
    a_removed_associate_cannot_walk_back_in_through_an_old_pin_of_a_merged_account,
    a_rotation_or_staff_retire_every_alias_pin_and_a_refused_reissue_none,
    links_through_a_merged_away_account_act_on_its_survivor,
    every_other_rpc_naming_a_merged_away_account_is_refused_naming_its_survivor,
    an_account_with_a_hundred_thousand_permits_merges_within_the_database_wait,
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

/// `AssociateByPin` as `customer` with `pin`.
async fn associate_with(
    app: &mut TestApp,
    customer: &str,
    pin: &str,
) -> Result<mandate::pb::AssociateByPinResponse, Status> {
    app.contractors
        .associate_by_pin(as_customer(
            customer,
            AssociateByPinRequest {
                pin: pin.to_owned(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// How many alias PINs `GetContractor` says the account has.
async fn alias_pins(app: &mut TestApp, contractor: &str) -> i32 {
    app.contractors
        .get_contractor(GetContractorRequest {
            contractor_id: contractor.to_owned(),
        })
        .await
        .expect("the account")
        .into_inner()
        .alias_pins
}

/// A registered account's id and PIN.
async fn account(app: &mut TestApp, manager: &str) -> (String, String) {
    let registered = app.contractor(manager).await;
    (
        registered.contractor.expect("an account").contractor_id,
        registered.pin,
    )
}

async fn a_removed_associate_cannot_walk_back_in_through_an_old_pin_of_a_merged_account(
    backend: Backend,
) {
    let mut app = spawn_app(backend).await;
    let marie = app.customer("marie").await.customer_id;
    let ben = app.customer("ben").await.customer_id;
    let (survivor, pin) = account(&mut app, &marie).await;
    let (absorbed, old_pin) = account(&mut app, &marie).await;
    let merged = app
        .contractors
        .merge_contractors(merge(&survivor, &[&absorbed]))
        .await
        .expect("a merge")
        .into_inner();
    assert_eq!(merged.alias_pins, 1, "the absorbed PIN is an alias now");
    assert_eq!(alias_pins(&mut app, &survivor).await, 1);
    app.associate(&ben, &pin).await;

    // Marie removes Ben and replaces the PIN, as the guide's removal story asks.
    let removed = app
        .permissions
        .remove_associate(as_customer(
            &marie,
            RemoveAssociateRequest {
                contractor_id: survivor.clone(),
                customer_id: ben.clone(),
                rotate_pin: true,
            },
        ))
        .await
        .expect("Ben removed, the PIN rotated")
        .into_inner();
    assert_eq!(removed.retired_alias_pins, 1);
    assert_eq!(alias_pins(&mut app, &survivor).await, 0);

    // The attack: Ben enters the old PIN of the merged account.
    let before = app.revision_counter().await;
    for stale in [&old_pin, &pin] {
        expect_code(associate_with(&mut app, &ben, stale).await, Code::NotFound);
    }
    assert_eq!(app.revision_counter().await, before, "Ben got nowhere");
    let listed = associates(&mut app, &marie, &survivor).await;
    assert!(!listed.contains_key(&ben), "Ben is not associated again");
    // The new PIN works for whoever it is shared with.
    associate_with(&mut app, &ben, &removed.pin)
        .await
        .expect("the new PIN works");
}

async fn a_rotation_or_staff_retire_every_alias_pin_and_a_refused_reissue_none(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let manager = app.customer("manager").await.customer_id;
    let newcomer = app.customer("newcomer").await.customer_id;
    let (survivor, _) = account(&mut app, &manager).await;

    // A Manager's rotation retires the aliases of two absorbed accounts.
    let (b, pin_b) = account(&mut app, &manager).await;
    let (c, pin_c) = account(&mut app, &manager).await;
    let merged = app
        .contractors
        .merge_contractors(merge(&survivor, &[&b, &c]))
        .await
        .expect("a merge")
        .into_inner();
    assert_eq!(merged.alias_pins, 2);
    let rotated = app
        .contractors
        .rotate_pin(as_customer(
            &manager,
            RotatePinRequest {
                contractor_id: survivor.clone(),
            },
        ))
        .await
        .expect("a rotation")
        .into_inner();
    assert_eq!(rotated.retired_alias_pins, 2);
    for alias in [&pin_b, &pin_c] {
        expect_code(
            associate_with(&mut app, &newcomer, alias).await,
            Code::NotFound,
        );
    }

    // Staff retire an alias on its own; the account's own PIN keeps working.
    let (d, pin_d) = account(&mut app, &manager).await;
    app.contractors
        .merge_contractors(merge(&survivor, &[&d]))
        .await
        .expect("a merge");
    let retired = app
        .contractors
        .retire_alias_pins(RetireAliasPinsRequest {
            contractor_id: survivor.clone(),
        })
        .await
        .expect("staff retire the aliases")
        .into_inner();
    assert_eq!(retired.retired_alias_pins, 1);
    let again = app
        .contractors
        .retire_alias_pins(RetireAliasPinsRequest {
            contractor_id: survivor.clone(),
        })
        .await
        .expect("nothing left to retire")
        .into_inner();
    assert_eq!(again.retired_alias_pins, 0);
    assert_eq!(
        again.revision, retired.revision,
        "retiring none changes nothing"
    );
    expect_code(
        associate_with(&mut app, &newcomer, &pin_d).await,
        Code::NotFound,
    );
    let joined = associate_with(&mut app, &newcomer, &rotated.pin)
        .await
        .expect("the survivor's own PIN still works");
    assert_eq!(
        joined.contractor.expect("the account").contractor_id,
        survivor
    );
    let events = app
        .permissions
        .list_audit_events(ListAuditEventsRequest {
            contractor_id: survivor.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("the audit trail")
        .into_inner()
        .events;
    let event = events
        .iter()
        .find(|e| e.kind == ChangeKind::AliasPinsRetired as i32)
        .expect("the retirement is audited");
    assert_eq!(event.revision, retired.revision);
    assert_eq!(event.detail, "retired 1 alias PIN");

    // A refused reissue (the survivor has associates) retires nothing.
    let (e, pin_e) = account(&mut app, &manager).await;
    app.contractors
        .merge_contractors(merge(&survivor, &[&e]))
        .await
        .expect("a merge");
    let reissued = expect_code(
        app.contractors
            .reissue_pin(ReissuePinRequest {
                contractor_id: survivor.clone(),
            })
            .await,
        Code::FailedPrecondition,
    );
    assert!(reissued.message().contains("associate"), "{reissued:?}");
    assert_eq!(alias_pins(&mut app, &survivor).await, 1);
    let late = app.customer("late").await.customer_id;
    associate_with(&mut app, &late, &pin_e)
        .await
        .expect("an alias works until the survivor's PIN changes");
}

async fn links_through_a_merged_away_account_act_on_its_survivor(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let manager = app.customer("manager").await.customer_id;
    let (survivor, _) = account(&mut app, &manager).await;
    let (absorbed, _) = account(&mut app, &manager).await;
    app.permissions
        .link_application(LinkApplicationRequest {
            application_id: "24-100 BLD".into(),
            contractor_id: absorbed.clone(),
        })
        .await
        .expect("linked before the merge");
    app.contractors
        .merge_contractors(merge(&survivor, &[&absorbed]))
        .await
        .expect("a merge");
    let allowed = app
        .check(&manager, Pay, "", "24-100 BLD")
        .await
        .expect("a check");
    assert_decision(&allowed, true, CheckReason::GrantedThroughManage);

    // The permit system unlinks through the old account number: the survivor's link goes.
    let unlinked = app
        .permissions
        .unlink_application(UnlinkApplicationRequest {
            application_id: "24-100 BLD".into(),
            contractor_id: absorbed.clone(),
        })
        .await
        .expect("unlinked")
        .into_inner();
    assert_eq!(unlinked.contractor_id, survivor);
    let denied = app
        .check(&manager, Pay, "", "24-100 BLD")
        .await
        .expect("a check");
    assert_decision(&denied, false, CheckReason::ApplicationNotLinked);

    // A link through the old number is a link that checks read.
    let linked = app
        .permissions
        .link_application(LinkApplicationRequest {
            application_id: "24-200 BLD".into(),
            contractor_id: absorbed.clone(),
        })
        .await
        .expect("linked")
        .into_inner();
    assert_eq!(linked.contractor_id, survivor);
    let through = app
        .check(&manager, Pay, "", "24-200 BLD")
        .await
        .expect("a check");
    assert_decision(&through, true, CheckReason::GrantedThroughManage);
    assert_eq!(through.contractor_id, survivor);
    let twice = app
        .permissions
        .link_application(LinkApplicationRequest {
            application_id: "24-200 BLD".into(),
            contractor_id: survivor.clone(),
        })
        .await
        .expect("linked already")
        .into_inner();
    assert_eq!(twice.revision, linked.revision, "one link, not two");
}

async fn every_other_rpc_naming_a_merged_away_account_is_refused_naming_its_survivor(
    backend: Backend,
) {
    let mut app = spawn_app(backend).await;
    let manager = app.customer("manager").await.customer_id;
    let associate = app.customer("associate").await.customer_id;
    let (survivor, _) = account(&mut app, &manager).await;
    let (absorbed, pin) = account(&mut app, &manager).await;
    let (third, _) = account(&mut app, &manager).await;
    app.associate(&associate, &pin).await;
    app.contractors
        .merge_contractors(merge(&survivor, &[&absorbed]))
        .await
        .expect("a merge");
    let before = app.revision_counter().await;

    let id = || absorbed.clone();
    let contractor = Contractor {
        contractor_id: id(),
        business_name: "Renamed Inc.".into(),
        ..Default::default()
    };
    let c = app.contractors.clone();
    let p = app.permissions.clone();
    let refusals: Vec<(&str, Result<(), Status>)> = vec![
        (
            "UpdateContractor",
            c.clone()
                .update_contractor(as_customer(
                    &manager,
                    UpdateContractorRequest {
                        contractor: Some(contractor),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["business_name".into()],
                        }),
                    },
                ))
                .await
                .map(drop),
        ),
        (
            "GetPin",
            c.clone()
                .get_pin(as_customer(
                    &manager,
                    GetPinRequest {
                        contractor_id: id(),
                    },
                ))
                .await
                .map(drop),
        ),
        (
            "RotatePin",
            c.clone()
                .rotate_pin(as_customer(
                    &manager,
                    RotatePinRequest {
                        contractor_id: id(),
                    },
                ))
                .await
                .map(drop),
        ),
        (
            "LeaveContractor",
            c.clone()
                .leave_contractor(as_customer(
                    &associate,
                    LeaveContractorRequest {
                        contractor_id: id(),
                    },
                ))
                .await
                .map(drop),
        ),
        (
            "AppointManager",
            c.clone()
                .appoint_manager(AppointManagerRequest {
                    contractor_id: id(),
                    customer_id: associate.clone(),
                })
                .await
                .map(drop),
        ),
        (
            "ReissuePin",
            c.clone()
                .reissue_pin(ReissuePinRequest {
                    contractor_id: id(),
                })
                .await
                .map(drop),
        ),
        (
            "RetireAliasPins",
            c.clone()
                .retire_alias_pins(RetireAliasPinsRequest {
                    contractor_id: id(),
                })
                .await
                .map(drop),
        ),
        (
            "MergeContractors (as survivor)",
            c.clone()
                .merge_contractors(merge(&absorbed, &[&third]))
                .await
                .map(drop),
        ),
        (
            "ListAssociates (Manager)",
            p.clone()
                .list_associates(as_customer(
                    &manager,
                    ListAssociatesRequest {
                        contractor_id: id(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
        ),
        (
            "ListAssociates (staff)",
            p.clone()
                .list_associates(ListAssociatesRequest {
                    contractor_id: id(),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        (
            "SetPermissions",
            p.clone()
                .set_permissions(as_customer(
                    &manager,
                    SetPermissionsRequest {
                        contractor_id: id(),
                        customer_id: associate.clone(),
                        permissions: permissions(&[Pay]),
                        expire_time: None,
                    },
                ))
                .await
                .map(drop),
        ),
        (
            "RemoveAssociate",
            p.clone()
                .remove_associate(as_customer(
                    &manager,
                    RemoveAssociateRequest {
                        contractor_id: id(),
                        customer_id: associate.clone(),
                        rotate_pin: true,
                    },
                ))
                .await
                .map(drop),
        ),
        (
            "ListAuditEvents (staff)",
            p.clone()
                .list_audit_events(ListAuditEventsRequest {
                    contractor_id: id(),
                    page_size: 10,
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
    ];
    for (rpc, result) in refusals {
        let status = expect_code(result, Code::FailedPrecondition);
        assert!(
            status.message().contains(&survivor),
            "{rpc} names the survivor: {status:?}"
        );
    }
    assert_eq!(
        app.revision_counter().await,
        before,
        "no refusal changed anything"
    );
    // The associate is still there, with what it held.
    assert!(
        associates(&mut app, &manager, &survivor)
            .await
            .contains_key(&associate)
    );
}

/// #17: a merge of an account with 100 000 application links answered UNAVAILABLE after the
/// database wait every time (one INSERT per link). Moved in set-based statements, they all reach
/// the survivor, a permit both held stays linked once, and checks through it are allowed.
async fn an_account_with_a_hundred_thousand_permits_merges_within_the_database_wait(
    backend: Backend,
) {
    let mut app = spawn_app(backend).await;
    let manager = app.customer("manager").await.customer_id;
    let (survivor, _) = account(&mut app, &manager).await;
    let (absorbed, _) = account(&mut app, &manager).await;
    app.link_many(&absorbed, 100_000).await;
    app.permissions
        .link_application(LinkApplicationRequest {
            application_id: "24-W7 BLD".into(),
            contractor_id: survivor.clone(),
        })
        .await
        .expect("a permit both hold");
    app.contractors
        .merge_contractors(merge(&survivor, &[&absorbed]))
        .await
        .expect("the merge");
    let db = app.store.connection();
    let count = |sql: &str| {
        let statement = sea_orm::Statement::from_string(db.get_database_backend(), sql);
        async move {
            use sea_orm::ConnectionTrait;
            let row = db.query_one_raw(statement).await.unwrap().unwrap();
            row.try_get_by_index::<i64>(0).unwrap()
        }
    };
    assert_eq!(
        count(&format!(
            "SELECT COUNT(*) FROM application_links WHERE contractor_id = '{survivor}'"
        ))
        .await,
        100_000
    );
    assert_eq!(
        count(&format!(
            "SELECT COUNT(*) FROM application_links WHERE contractor_id = '{absorbed}'"
        ))
        .await,
        0
    );
    for permit in ["24-W1 BLD", "24-W7 BLD", "24-W100000 BLD"] {
        let decision = app.check(&manager, Pay, "", permit).await.expect("a check");
        assert_decision(&decision, true, CheckReason::GrantedThroughManage);
        assert_eq!(decision.contractor_id, survivor);
    }
}
