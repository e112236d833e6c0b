//! The check cache and the change tail, across replicas on one PostgreSQL: a check that passes a
//! revision is never answered from older state, one that does not is at most the staleness bound
//! behind, time-limited grants end by the clock on every replica, and a thousand change feeds
//! cost the database what one does.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use mandate::pb::Permission::{Apply, Pay};
use mandate::pb::{
    CheckPermissionRequest, CheckPermissionsRequest, CheckReason, LinkApplicationRequest,
    ListAccessibleApplicationsRequest, MergeContractorsRequest, UnlinkApplicationRequest,
    WatchChangesRequest, check_permissions_result,
};
use mandate::pb::{Permission, permission_service_client::PermissionServiceClient};
use tokio::task::JoinSet;

use crate::helpers::{
    Authed, Backend, Proxy, TestApp, TestDatabase, assert_decision, channel_to, start_replicas,
    start_with, with_key,
};

/// The staleness bound of the replicas here: the default.
const STALENESS: Duration = Duration::from_millis(1000);

fn check_request(
    customer: &str,
    permission: Permission,
    contractor: &str,
    at_least: i64,
) -> CheckPermissionRequest {
    CheckPermissionRequest {
        customer_id: customer.to_owned(),
        permission: permission as i32,
        contractor_id: contractor.to_owned(),
        application_id: String::new(),
        at_least_revision: at_least,
    }
}

async fn check_at(
    app: &mut TestApp,
    customer: &str,
    permission: Permission,
    contractor: &str,
    at_least: i64,
) -> mandate::pb::CheckPermissionResponse {
    app.permissions
        .check_permission(check_request(customer, permission, contractor, at_least))
        .await
        .expect("a check")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_through_one_replica_is_denied_by_the_other_at_its_revision_and_within_the_staleness_bound()
 {
    let (mut a, mut b) = start_replicas(TestDatabase::new(Backend::Postgres).await).await;
    let (manager, associate, contractor, _pin) = a.story().await;
    let granted = a
        .set_permissions(&manager, &contractor, &associate, &[Pay])
        .await
        .unwrap();
    // B answers at the grant's revision (from the database until its tail has applied it),
    // then from its cache.
    wait_until_applied(&b, granted.revision).await;
    let first = check_at(&mut b, &associate, Pay, &contractor, granted.revision).await;
    assert_decision(&first, true, CheckReason::GrantedDirectly);
    let hits = b.store.cache_stats().hits;
    for _ in 0..5 {
        let again = check_at(&mut b, &associate, Pay, &contractor, granted.revision).await;
        assert_decision(&again, true, CheckReason::GrantedDirectly);
        assert!(again.revision >= granted.revision);
    }
    assert!(
        b.store.cache_stats().hits >= hits + 5,
        "B answered from its cache: {:?}",
        b.store.cache_stats()
    );

    // Revoked through A: B denies at once when asked for the revoke's revision.
    let revoked = a
        .set_permissions(&manager, &contractor, &associate, &[])
        .await
        .unwrap();
    let asked = check_at(&mut b, &associate, Pay, &contractor, revoked.revision).await;
    assert_decision(&asked, false, CheckReason::PermissionNotHeld);
    assert!(asked.revision >= revoked.revision, "{asked:?}");

    // Granted again through A; without a revision, B may answer from before the grant for at
    // most the staleness bound.
    let regranted = a
        .set_permissions(&manager, &contractor, &associate, &[Pay])
        .await
        .unwrap();
    let acknowledged = Instant::now();
    let mut seen_after = None;
    loop {
        let answer = check_at(&mut b, &associate, Pay, &contractor, 0).await;
        if answer.allowed {
            assert!(answer.revision >= regranted.revision, "{answer:?}");
            seen_after.get_or_insert(acknowledged.elapsed());
        } else {
            assert!(answer.revision < regranted.revision, "{answer:?}");
        }
        if acknowledged.elapsed() > STALENESS {
            // Past the bound: whatever B answers now reflects the grant.
            let late = check_at(&mut b, &associate, Pay, &contractor, 0).await;
            assert_decision(&late, true, CheckReason::GrantedDirectly);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "B answered with the grant {:?} after A acknowledged it",
        seen_after.expect("B saw the grant")
    );
}

/// A check on `application` alone, at least at `at_least`.
async fn check_application_at(
    app: &mut TestApp,
    customer: &str,
    permission: Permission,
    application: &str,
    at_least: i64,
) -> mandate::pb::CheckPermissionResponse {
    app.permissions
        .check_permission(CheckPermissionRequest {
            application_id: application.to_owned(),
            ..check_request(customer, permission, "", at_least)
        })
        .await
        .expect("a check by application")
        .into_inner()
}

/// Links (or unlinks) `application` to `contractor` through `app`; the change's revision.
async fn set_link(app: &mut TestApp, application: &str, contractor: &str, linked: bool) -> i64 {
    if linked {
        app.permissions
            .link_application(LinkApplicationRequest {
                application_id: application.to_owned(),
                contractor_id: contractor.to_owned(),
            })
            .await
            .expect("linked")
            .into_inner()
            .revision
    } else {
        app.permissions
            .unlink_application(UnlinkApplicationRequest {
                application_id: application.to_owned(),
                contractor_id: contractor.to_owned(),
            })
            .await
            .expect("unlinked")
            .into_inner()
            .revision
    }
}

/// Two replicas on one PostgreSQL database; through A the guide's story, Pay granted to the
/// associate and `permit` linked to the account (and, first, to `others` other accounts); B
/// allows the associate's first check on the permit at the link's revision, through the
/// account. A, B, the manager, associate and account, and the link's revision.
async fn permit_linked_on_both(permit: &str, others: u32) -> (TestApp, TestApp, [String; 3], i64) {
    let (mut a, mut b) = start_replicas(TestDatabase::new(Backend::Postgres).await).await;
    let (manager, associate, contractor, _pin) = a.story().await;
    if others > 0 {
        a.link_widely(permit, others).await;
    }
    a.set_permissions(&manager, &contractor, &associate, &[Pay])
        .await
        .unwrap();
    let linked = set_link(&mut a, permit, &contractor, true).await;
    wait_until_applied(&b, linked).await;
    let first = check_application_at(&mut b, &associate, Pay, permit, linked).await;
    assert_decision(&first, true, CheckReason::GrantedDirectly);
    assert_eq!(first.contractor_id, contractor);
    (a, b, [manager, associate, contractor], linked)
}

/// #19: checks by application are answered from each replica's cache, and a link, an unlink or
/// a merge through one replica reaches the other's at once when the check passes its revision,
/// and within the staleness bound without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_unlinks_and_merges_through_one_replica_reach_the_others_checks_by_application() {
    const PERMIT: &str = "24-700001 BLD";
    let (mut a, mut b, [manager, associate, contractor], linked) =
        permit_linked_on_both(PERMIT, 0).await;
    let hits = b.store.cache_stats().hits;
    for _ in 0..5 {
        let again = check_application_at(&mut b, &associate, Pay, PERMIT, linked).await;
        assert_decision(&again, true, CheckReason::GrantedDirectly);
        assert!(again.revision >= linked, "{again:?}");
    }
    assert!(
        b.store.cache_stats().hits >= hits + 5,
        "B answered the checks by application from its cache: {:?}",
        b.store.cache_stats()
    );

    // Unlinked through A: B denies at once when asked for the unlink's revision.
    let unlinked = set_link(&mut a, PERMIT, &contractor, false).await;
    let asked = check_application_at(&mut b, &associate, Pay, PERMIT, unlinked).await;
    assert_decision(&asked, false, CheckReason::ApplicationNotLinked);
    assert!(asked.revision >= unlinked, "{asked:?}");
    let again = check_application_at(&mut b, &associate, Pay, PERMIT, unlinked).await;
    assert_decision(&again, false, CheckReason::ApplicationNotLinked);

    // Linked again through A: without a revision, B may answer from before the link for at
    // most the staleness bound.
    let relinked = set_link(&mut a, PERMIT, &contractor, true).await;
    let acknowledged = Instant::now();
    loop {
        let answer = check_application_at(&mut b, &associate, Pay, PERMIT, 0).await;
        if answer.allowed {
            assert!(answer.revision >= relinked, "{answer:?}");
        } else {
            assert!(answer.revision < relinked, "{answer:?}");
        }
        if acknowledged.elapsed() > STALENESS {
            let late = check_application_at(&mut b, &associate, Pay, PERMIT, 0).await;
            assert_decision(&late, true, CheckReason::GrantedDirectly);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    const OTHER_PERMIT: &str = "24-700002 BLD";
    merged_in_reaches_the_other(
        &mut a,
        &mut b,
        [&manager, &associate],
        &contractor,
        OTHER_PERMIT,
        Pay,
    )
    .await;
}

/// #19: an application linked more widely than the cache keeps the links of is decided from
/// the customer's memberships and their accounts' applications, which the cache keeps too: a
/// grant, an unlink or a merge through one replica reaches the other's checks on it at once
/// when the check passes its revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_on_a_widely_linked_application_are_cached_and_changes_reach_the_other_replica() {
    const PERMIT: &str = "24-700101 BLD";
    let (mut a, mut b, [manager, associate, contractor], linked) =
        permit_linked_on_both(PERMIT, 100).await;
    let hits = b.store.cache_stats().hits;
    for _ in 0..5 {
        let again = check_application_at(&mut b, &associate, Pay, PERMIT, linked).await;
        assert_decision(&again, true, CheckReason::GrantedDirectly);
        assert_eq!(again.contractor_id, contractor);
        let other = check_application_at(&mut b, &associate, Apply, PERMIT, linked).await;
        assert_decision(&other, false, CheckReason::PermissionNotHeld);
    }
    assert!(
        b.store.cache_stats().hits >= hits + 10,
        "B answered the checks on the wide application from its cache: {:?}",
        b.store.cache_stats()
    );
    // A customer in no account at all: denied, from the cache the second time.
    let stranger = a.customer("stranger").await.customer_id;
    let first = check_application_at(&mut b, &stranger, Pay, PERMIT, linked).await;
    assert_decision(&first, false, CheckReason::ApplicationNotLinked);
    let hits = b.store.cache_stats().hits;
    let again = check_application_at(&mut b, &stranger, Pay, PERMIT, linked).await;
    assert_decision(&again, false, CheckReason::ApplicationNotLinked);
    assert_eq!(
        b.store.cache_stats().hits,
        hits + 1,
        "{:?}",
        b.store.cache_stats()
    );

    // The grant changed through A: B answers the new grant at its revision.
    let revoked = a
        .set_permissions(&manager, &contractor, &associate, &[Apply])
        .await
        .unwrap()
        .revision;
    let asked = check_application_at(&mut b, &associate, Pay, PERMIT, revoked).await;
    assert_decision(&asked, false, CheckReason::PermissionNotHeld);
    let asked = check_application_at(&mut b, &associate, Apply, PERMIT, revoked).await;
    assert_decision(&asked, true, CheckReason::GrantedDirectly);

    // Unlinked from the associate's account through A (its 100 other links stay).
    let unlinked = set_link(&mut a, PERMIT, &contractor, false).await;
    for _ in 0..2 {
        let asked = check_application_at(&mut b, &associate, Apply, PERMIT, unlinked).await;
        assert_decision(&asked, false, CheckReason::ApplicationNotLinked);
        assert!(asked.revision >= unlinked, "{asked:?}");
    }

    // Linked to another account of the manager's, then merged into the associate's.
    merged_in_reaches_the_other(
        &mut a,
        &mut b,
        [&manager, &associate],
        &contractor,
        PERMIT,
        Apply,
    )
    .await;
}

/// Links `permit` to a new account of `manager`'s, which `associate` (holding `permission` on
/// `contractor`) is not in: B denies the check on it (from its cache the second time). Merged
/// into `contractor` through A, it is allowed by B at the merge's revision.
async fn merged_in_reaches_the_other(
    a: &mut TestApp,
    b: &mut TestApp,
    [manager, associate]: [&str; 2],
    contractor: &str,
    permit: &str,
    permission: Permission,
) {
    let other = a
        .contractor(manager)
        .await
        .contractor
        .expect("an account")
        .contractor_id;
    let linked = set_link(a, permit, &other, true).await;
    for _ in 0..2 {
        let before = check_application_at(b, associate, permission, permit, linked).await;
        assert_decision(&before, false, CheckReason::ApplicationNotLinked);
    }
    let merged = a
        .contractors
        .merge_contractors(MergeContractorsRequest {
            survivor_contractor_id: contractor.to_owned(),
            absorbed_contractor_ids: vec![other],
        })
        .await
        .expect("merged")
        .into_inner()
        .revision;
    let after = check_application_at(b, associate, permission, permit, merged).await;
    assert_decision(&after, true, CheckReason::GrantedDirectly);
    assert_eq!(after.contractor_id, contractor);
    assert!(after.revision >= merged, "{after:?}");
}

/// The applications `customer` may act on with Pay, as `app` lists them (one page of 50).
async fn accessible(app: &mut TestApp, customer: &str) -> Vec<String> {
    app.permissions
        .list_accessible_applications(ListAccessibleApplicationsRequest {
            customer_id: customer.to_owned(),
            permission: Pay as i32,
            page_size: 50,
            page_token: String::new(),
        })
        .await
        .expect("a list")
        .into_inner()
        .applications
        .into_iter()
        .map(|a| a.application_id)
        .collect()
}

/// Waits, at most the staleness bound (and a margin for a busy machine), until `replica`
/// lists `expected` for `customer`; every list before it must be what held before the change.
async fn lists_within_the_bound(
    replica: &mut TestApp,
    customer: &str,
    before: &[&str],
    expected: &[&str],
) {
    let deadline = Instant::now() + STALENESS * 5;
    loop {
        let listed = accessible(replica, customer).await;
        if listed == expected {
            return;
        }
        assert_eq!(
            listed, before,
            "only the list before the change, until it shows"
        );
        assert!(
            Instant::now() < deadline,
            "the list showed the change within the bound"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// #19: the list of accessible applications comes from each replica's cache, and a link or a
/// grant changed through one replica reaches the other's list within the staleness bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_and_grants_changed_through_one_replica_reach_the_others_lists() {
    let (mut a, mut b) = start_replicas(TestDatabase::new(Backend::Postgres).await).await;
    let (manager, associate, contractor, _pin) = a.story().await;
    a.set_permissions(&manager, &contractor, &associate, &[Pay])
        .await
        .unwrap();
    let linked = set_link(&mut a, "24-900001 BLD", &contractor, true).await;
    wait_until_applied(&b, linked).await;
    assert_eq!(accessible(&mut b, &associate).await, ["24-900001 BLD"]);
    let hits = b.store.cache_stats().hits;
    for _ in 0..3 {
        assert_eq!(accessible(&mut b, &associate).await, ["24-900001 BLD"]);
    }
    assert!(
        b.store.cache_stats().hits >= hits + 3,
        "B listed from its cache: {:?}",
        b.store.cache_stats()
    );
    set_link(&mut a, "24-900002 BLD", &contractor, true).await;
    lists_within_the_bound(
        &mut b,
        &associate,
        &["24-900001 BLD"],
        &["24-900001 BLD", "24-900002 BLD"],
    )
    .await;
    a.set_permissions(&manager, &contractor, &associate, &[Apply])
        .await
        .unwrap();
    lists_within_the_bound(&mut b, &associate, &["24-900001 BLD", "24-900002 BLD"], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_limited_grant_ends_on_both_replicas_without_any_write() {
    let (mut a, mut b) = start_replicas(TestDatabase::new(Backend::Postgres).await).await;
    let (manager, associate, contractor, _pin) = a.story().await;
    let end = Utc::now() + chrono::Duration::milliseconds(1500);
    let granted = a
        .grant_until(&manager, &contractor, &associate, &[Pay], end)
        .await;
    for replica in [&mut a, &mut b] {
        // Twice: the second answer comes from the replica's cache.
        for _ in 0..2 {
            let during = check_at(replica, &associate, Pay, &contractor, granted.revision).await;
            assert_decision(&during, true, CheckReason::GrantedDirectly);
        }
    }
    let revision = a.revision_counter().await;
    // Waiting for the grant's end, not for the servers: the clock is what this test is about.
    tokio::time::sleep((end - Utc::now()).to_std().unwrap_or_default()).await;
    for replica in [&mut a, &mut b] {
        let after = check_at(replica, &associate, Pay, &contractor, 0).await;
        assert_decision(&after, false, CheckReason::GrantExpired);
    }
    assert_eq!(a.revision_counter().await, revision, "nothing was written");
}

/// Waits until `replica`'s change tail has applied `revision`.
async fn wait_until_applied(replica: &TestApp, revision: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while replica.store.applied_revision() < revision {
        assert!(
            Instant::now() < deadline,
            "revision {revision} applied within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What each associate holds after each write, by revision.
#[derive(Default)]
struct History(Vec<(i64, HashMap<String, Vec<Permission>>)>);

impl History {
    fn record(&mut self, revision: i64, customer: &str, held: Vec<Permission>) {
        let mut state = self.0.last().map(|(_, s)| s.clone()).unwrap_or_default();
        state.insert(customer.to_owned(), held);
        self.0.push((revision, state));
    }

    /// Whether `customer` held `permission` at `revision` (at the latest write at or before it).
    fn held(&self, revision: i64, customer: &str, permission: Permission) -> bool {
        self.0
            .iter()
            .rev()
            .find(|(r, _)| *r <= revision)
            .and_then(|(_, state)| state.get(customer))
            .is_some_and(|held| held.contains(&permission))
    }
}

/// A tiny deterministic generator, so that a failure can be replayed from its seed.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_interleavings_of_changes_and_cached_checks_across_two_replicas_never_answer_older_than_asked()
 {
    let (mut a, mut b) = start_replicas(TestDatabase::new(Backend::Postgres).await).await;
    let manager = a.customer("manager").await.customer_id;
    let registered = a.contractor(&manager).await;
    let contractor = registered.contractor.unwrap().contractor_id;
    let mut associates = Vec::new();
    for i in 0..4 {
        let customer = a.customer(&format!("associate-{i}")).await.customer_id;
        a.associate(&customer, &registered.pin).await;
        associates.push(customer);
    }
    let mut history = History::default();
    let start = a.revision_counter().await;
    for customer in &associates {
        history.record(start, customer, Vec::new());
    }
    // Two permits linked and unlinked along the way, the second also linked to 70 other
    // accounts (more than the cache keeps the links of): whether each was linked to the
    // associates' account, by revision.
    const PERMITS: [&str; 2] = ["24-800001 BLD", "24-800002 BLD"];
    a.link_widely(PERMITS[1], 70).await;
    let mut permit_linked: [Vec<(i64, bool)>; 2] = [vec![(start, false)], vec![(start, false)]];
    let linked_at = |links: &[(i64, bool)], revision: i64| {
        links
            .iter()
            .rev()
            .find(|(at, _)| *at <= revision)
            .is_some_and(|(_, linked)| *linked)
    };

    // Background checkers on both replicas keep filling their caches, racing every write.
    let mut background = JoinSet::new();
    for replica in [&a, &b] {
        for _ in 0..2 {
            let mut client = PermissionServiceClient::new(with_key(
                channel_to(replica.address()).await,
                &replica.key,
            ));
            let (associates, contractor) = (associates.clone(), contractor.clone());
            background.spawn(async move {
                let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
                loop {
                    let customer = &associates[dice.below(associates.len())];
                    let mut request = check_request(customer, Pay, &contractor, 0);
                    if dice.below(2) == 0 {
                        request.contractor_id.clear();
                        request.application_id = PERMITS[dice.below(2)].to_owned();
                    }
                    let _ = client.check_permission(request).await;
                }
            });
        }
    }

    let seed = u64::try_from(Utc::now().timestamp_micros()).unwrap_or(1) | 1;
    eprintln!("seed {seed}");
    let mut dice = Dice(seed);
    let mut verified = 0;
    for _ in 0..150 {
        let customer = associates[dice.below(associates.len())].clone();
        let held: Vec<Permission> = [Pay, Apply]
            .into_iter()
            .filter(|_| dice.below(2) == 0)
            .collect();
        let writer = if dice.below(2) == 0 { &mut a } else { &mut b };
        if dice.below(4) == 0 {
            let which = dice.below(2);
            let link = !linked_at(&permit_linked[which], i64::MAX);
            let revision = set_link(writer, PERMITS[which], &contractor, link).await;
            permit_linked[which].push((revision, link));
        }
        let writer = if dice.below(2) == 0 { &mut a } else { &mut b };
        let written = writer
            .set_permissions(&manager, &contractor, &customer, &held)
            .await
            .unwrap();
        history.record(written.revision, &customer, held);
        // Checks on either replica, some passing the write's revision, some an older one, some
        // none; every answer must be what held at the revision it reports, and never older
        // than the revision asked for.
        for _ in 0..3 {
            let reader = if dice.below(2) == 0 { &mut a } else { &mut b };
            let asked = match dice.below(3) {
                0 => written.revision,
                1 => written.revision - 1,
                _ => 0,
            };
            let customer = &associates[dice.below(associates.len())];
            let permission = if dice.below(2) == 0 { Pay } else { Apply };
            let answer = check_at(reader, customer, permission, &contractor, asked).await;
            assert!(
                answer.revision >= asked,
                "asked {asked}, answered {answer:?}"
            );
            assert_eq!(
                answer.allowed,
                history.held(answer.revision, customer, permission),
                "seed {seed}: {customer} {permission:?} at {answer:?}"
            );
            // The same, by the permit: allowed while it is linked and the grant holds.
            let reader = if dice.below(2) == 0 { &mut a } else { &mut b };
            let which = dice.below(2);
            let answer =
                check_application_at(reader, customer, permission, PERMITS[which], asked).await;
            assert!(
                answer.revision >= asked,
                "asked {asked}, answered {answer:?}"
            );
            assert_eq!(
                answer.allowed,
                linked_at(&permit_linked[which], answer.revision)
                    && history.held(answer.revision, customer, permission),
                "seed {seed}: {customer} {permission:?} on {} at {answer:?}",
                PERMITS[which]
            );
            verified += 2;
        }
        // And a batch of every associate, at the write's revision.
        let reader = if dice.below(2) == 0 { &mut a } else { &mut b };
        let items = associates
            .iter()
            .map(|c| check_request(c, Pay, &contractor, written.revision))
            .collect();
        let results = reader
            .permissions
            .check_permissions(CheckPermissionsRequest { items })
            .await
            .unwrap()
            .into_inner()
            .results;
        for (customer, result) in associates.iter().zip(results) {
            let Some(check_permissions_result::Outcome::Decision(answer)) = result.outcome else {
                panic!("a decision for {customer}: {result:?}");
            };
            assert!(answer.revision >= written.revision, "{answer:?}");
            assert_eq!(
                answer.allowed,
                history.held(answer.revision, customer, Pay),
                "seed {seed}: batch {customer} at {answer:?}"
            );
            verified += 1;
        }
    }
    background.abort_all();
    let (hits_a, hits_b) = (a.store.cache_stats().hits, b.store.cache_stats().hits);
    eprintln!("{verified} answers verified; cache hits: A {hits_a}, B {hits_b}");
    assert!(hits_a > 0 && hits_b > 0, "both caches answered some checks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_open_change_feeds_cost_the_database_what_one_does() {
    const FEEDS: usize = 1000;
    let database = TestDatabase::new(Backend::Postgres).await;
    let (credentials, rest) = database.url.split_once('@').expect("a URL with a user");
    let (server, name) = rest.split_once('/').expect("a URL with a database");
    let proxy = Proxy::start(server).await;
    let mut settings = database.settings();
    settings.database_url = format!("{credentials}@{}/{name}", proxy.address());
    settings.max_feeds_per_client = 2 * FEEDS as u32;
    // The feeds are opened all at once.
    settings.max_calls = 2 * FEEDS as u32;
    let mut app = start_with(database, &settings).await;
    let (manager, associate, contractor, _pin) = app.story().await;

    // Connections of 100 feeds each: under the streams allowed on one connection.
    let mut clients: Vec<PermissionServiceClient<Authed>> = Vec::new();
    for _ in 0..FEEDS / 100 {
        clients.push(PermissionServiceClient::new(with_key(
            channel_to(app.address()).await,
            &app.key,
        )));
    }
    let latest = app.revision_counter().await;
    let mut feeds = open_feeds(&clients, 1).await;
    catch_up(&mut feeds, latest).await;
    let one = idle_traffic(&proxy).await;

    feeds.extend(open_feeds(&clients, FEEDS - 1).await);
    catch_up(&mut feeds[1..], latest).await;
    let thousand = idle_traffic(&proxy).await;
    eprintln!("bytes sent to the database in 3 s idle: 1 feed {one}, {FEEDS} feeds {thousand}");
    assert!(
        thousand <= 2 * one + 4096,
        "{FEEDS} feeds asked {thousand} bytes of the database, one feed {one}"
    );

    // One change reaches every feed.
    let granted = app
        .set_permissions(&manager, &contractor, &associate, &[Pay])
        .await
        .unwrap();
    catch_up(&mut feeds, granted.revision).await;
}

/// What the server asks of the database, in bytes, while it sits idle for three seconds.
async fn idle_traffic(proxy: &Proxy) -> u64 {
    let before = proxy.bytes_sent();
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.bytes_sent() - before
}

/// Opens `count` feeds from the first revision, spread over `clients`.
async fn open_feeds(
    clients: &[PermissionServiceClient<Authed>],
    count: usize,
) -> Vec<tonic::Streaming<mandate::pb::WatchChangesResponse>> {
    let mut set = JoinSet::new();
    for i in 0..count {
        let mut client = clients[i % clients.len()].clone();
        set.spawn(async move {
            client
                .watch_changes(WatchChangesRequest { after_revision: 0 })
                .await
                .expect("a feed")
                .into_inner()
        });
    }
    set.join_all().await
}

/// Reads every feed up to `revision`.
async fn catch_up(
    feeds: &mut [tonic::Streaming<mandate::pb::WatchChangesResponse>],
    revision: i64,
) {
    for (i, feed) in feeds.iter_mut().enumerate() {
        loop {
            let change = tokio::time::timeout(Duration::from_secs(30), feed.message())
                .await
                .unwrap_or_else(|_| panic!("feed {i}: revision {revision} within 30 s"))
                .expect("a healthy feed")
                .expect("an open feed")
                .change
                .expect("a change");
            if change.revision >= revision {
                break;
            }
        }
    }
}
