//! `mandate seed`: a small generated set, then the real server treating the seeded rows as its
//! own: the sample's checks answer as it expects, a sample PIN associates a new customer and a
//! Manager reads the same PIN back, lists work, and a seeded Manager sets permissions.

use std::collections::HashMap;
use std::path::Path;

use mandate::ops::seed::{SeedError, SeedOptions, SeedSummary};
use mandate::pb::{
    self, AssociateByPinRequest, CheckPermissionRequest, GetPinRequest,
    ListAccessibleApplicationsRequest, ListAssociatesRequest, SetPermissionsRequest,
};
use sea_orm::{ConnectionTrait, Statement};

use crate::helpers::{Backend, TestApp, as_customer, spawn_app};
use crate::on_both_backends;

on_both_backends!(the_server_treats_seeded_rows_as_its_own);

/// Seeds `app`'s database with 200 customers, 40 accounts and 500 applications.
async fn seed(app: &TestApp, sample: Option<&Path>) -> Result<SeedSummary, SeedError> {
    let settings = app.database().settings();
    let vault = mandate::server::open_vault(&settings, &app.store)
        .await
        .expect("the PIN keys");
    let mut last: HashMap<&'static str, usize> = HashMap::new();
    mandate::ops::seed::seed(
        &app.store,
        &vault,
        &SeedOptions {
            customers: 200,
            contractors: 40,
            applications: 500,
            seed: 7,
            sample,
        },
        &mut |stage, done, _| {
            let before = last.insert(stage, done);
            assert!(
                before.is_none_or(|b| b < done),
                "{stage}: progress goes forward"
            );
        },
    )
    .await
}

/// One line of the sample file, by column name.
type Entry = HashMap<String, String>;

fn read_sample(path: &Path) -> Vec<Entry> {
    let mut reader = csv::Reader::from_path(path).expect("the sample file");
    let header: Vec<String> = reader
        .headers()
        .expect("a header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header, mandate::ops::sample::COLUMNS);
    reader
        .records()
        .map(|record| {
            let record = record.expect("a line");
            header
                .iter()
                .cloned()
                .zip(record.iter().map(str::to_owned))
                .collect()
        })
        .collect()
}

fn permission(name: &str) -> pb::Permission {
    match name {
        "apply" => pb::Permission::Apply,
        "pay" => pb::Permission::Pay,
        "inspections" => pb::Permission::Inspections,
        "upload_files" => pb::Permission::UploadFiles,
        "manage" => pb::Permission::Manage,
        other => panic!("unknown permission {other}"),
    }
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let db = app.store.connection();
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("a count")
        .expect("a row")
        .try_get_by_index(0)
        .expect("a number")
}

async fn the_server_treats_seeded_rows_as_its_own(backend: Backend) {
    use std::os::unix::fs::PermissionsExt;

    let mut app = spawn_app(backend).await;
    let path = app.database().dir().join("sample.csv");
    let summary = seed(&app, Some(&path)).await.expect("a seed run");
    assert_eq!(
        (summary.counts.customers, summary.counts.contractors),
        (200, 40)
    );
    assert!(summary.counts.links >= 500);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM memberships").await,
        summary.counts.memberships as i64
    );
    // One revision, one audit event.
    assert_eq!(app.revision_counter().await, summary.revision);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE kind = 'seeded'"
        )
        .await,
        1
    );
    let mode = std::fs::metadata(&path)
        .expect("the sample")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the sample holds PINs");

    let sample = read_sample(&path);
    let of = |kind: &str| -> Vec<&Entry> { sample.iter().filter(|e| e["kind"] == kind).collect() };
    let (checks, applications, pins, managed) =
        (of("check"), of("application"), of("pin"), of("manage"));
    let allowed = checks
        .iter()
        .filter(|e| e["expected_allowed"] == "true")
        .count();
    assert!(
        !checks.is_empty() && allowed * 2 == checks.len(),
        "half allowed"
    );
    assert!(!applications.is_empty() && !pins.is_empty() && !managed.is_empty());

    for entry in &checks {
        let decision = app
            .check(
                &entry["customer_id"],
                permission(&entry["permission"]),
                &entry["contractor_id"],
                "",
            )
            .await
            .expect("a check");
        assert_eq!(
            decision.allowed.to_string(),
            entry["expected_allowed"],
            "{entry:?}: {decision:?}"
        );
    }
    for entry in &applications {
        for (customer, allowed) in [
            (&entry["customer_id"], true),
            (&entry["other_customer_id"], false),
        ] {
            let decision = app
                .permissions
                .check_permission(CheckPermissionRequest {
                    customer_id: customer.clone(),
                    permission: permission(&entry["permission"]) as i32,
                    contractor_id: String::new(),
                    application_id: entry["application_id"].clone(),
                    at_least_revision: 0,
                })
                .await
                .expect("a check by application")
                .into_inner();
            assert_eq!(decision.allowed, allowed, "{entry:?}: {decision:?}");
        }
    }

    // The first entry's customer finds its application among those it may act on.
    let wanted = applications[0];
    let mut found = false;
    let mut token = String::new();
    loop {
        let page = app
            .permissions
            .list_accessible_applications(ListAccessibleApplicationsRequest {
                customer_id: wanted["customer_id"].clone(),
                permission: permission(&wanted["permission"]) as i32,
                page_size: 500,
                page_token: token,
            })
            .await
            .expect("a page of applications")
            .into_inner();
        found |= page
            .applications
            .iter()
            .any(|a| a.application_id == wanted["application_id"]);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert!(found, "{wanted:?}");

    // A seeded PIN: a Manager reads it back (it is sealed with the server's secret), and it
    // associates a new customer, with no permissions.
    let pair = managed
        .iter()
        .find_map(|m| {
            pins.iter()
                .find(|p| p["contractor_id"] == m["contractor_id"])
                .map(|p| (*m, *p))
        })
        .expect("a sample account with a PIN and a Manager");
    let (manage, pin) = pair;
    let account = manage["contractor_id"].clone();
    let manager = manage["customer_id"].clone();
    let read = app
        .contractors
        .get_pin(as_customer(
            &manager,
            GetPinRequest {
                contractor_id: account.clone(),
            },
        ))
        .await
        .expect("a Manager reads the PIN")
        .into_inner();
    assert_eq!(read.pin, pin["pin"]);
    let newcomer = app.customer("newcomer").await.customer_id;
    let joined = app
        .contractors
        .associate_by_pin(as_customer(
            &newcomer,
            AssociateByPinRequest {
                pin: pin["pin"].clone(),
            },
        ))
        .await
        .expect("a sample PIN associates")
        .into_inner();
    assert_eq!(
        joined.contractor.expect("the account").contractor_id,
        account
    );
    assert!(joined.permissions.is_empty(), "the account has a Manager");

    // The Manager lists the associates and grants the newcomer Pay.
    let associates = app
        .permissions
        .list_associates(as_customer(
            &manager,
            ListAssociatesRequest {
                contractor_id: account.clone(),
                page_size: 500,
                page_token: String::new(),
            },
        ))
        .await
        .expect("a Manager lists the associates")
        .into_inner()
        .associates;
    let listed: Vec<String> = associates
        .iter()
        .filter_map(|a| a.customer.as_ref().map(|c| c.customer_id.clone()))
        .collect();
    for customer in [&manager, &manage["other_customer_id"], &newcomer] {
        assert!(listed.contains(customer), "{customer} in {listed:?}");
    }
    for customer in [&newcomer, &manage["other_customer_id"]] {
        app.permissions
            .set_permissions(as_customer(
                &manager,
                SetPermissionsRequest {
                    contractor_id: account.clone(),
                    customer_id: customer.clone(),
                    permissions: vec![pb::Permission::Pay as i32],
                    expire_time: None,
                },
            ))
            .await
            .expect("a seeded Manager sets permissions");
        let decision = app
            .check(customer, pb::Permission::Pay, &account, "")
            .await
            .expect("a check");
        assert!(decision.allowed, "{decision:?}");
    }

    // A second run is refused, and writes nothing.
    let revision = app.revision_counter().await;
    let again = seed(&app, None).await;
    assert!(
        matches!(
            &again,
            Err(SeedError::Store(mandate_store::Error::Domain(_)))
        ),
        "{again:?}"
    );
    assert_eq!(app.revision_counter().await, revision);
}
