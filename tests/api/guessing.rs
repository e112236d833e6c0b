//! PIN guessing writes nothing and waits for no writer: a wrong PIN is answered from a read.

use mandate::pb::AssociateByPinRequest;
use mandate_domain::pin::Pin;
use sea_orm::{ConnectionTrait, Statement};
use std::time::Duration;
use tokio::task::JoinSet;

use tonic::Code;
use tonic_types::StatusExt;

use mandate::pb::contractor_service_client::ContractorServiceClient;

use crate::helpers::{
    Backend, TestApp, as_customer, series, spawn_app, spawn_app_with, start_on, with_key,
};
use crate::on_both_backends;

on_both_backends!(
    a_thousand_wrong_pins_change_nothing,
    a_thousand_guesses_are_looked_at_ten_times_and_the_lockout_outlives_a_restart,
    lifting_a_lockout_with_nothing_counted_changes_nothing,
    guessing_across_fresh_customers_is_held_to_the_client_systems_budget,
);

/// The revision counter and the number of audit events.
async fn written(app: &TestApp) -> (i64, i64) {
    let db = app.store.connection();
    let events = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) FROM audit_events",
        ))
        .await
        .expect("the event count")
        .expect("a row")
        .try_get_by_index(0)
        .expect("a count");
    (app.revision_counter().await, events)
}

/// Wrong PINs leave the revision counter and the audit trail as they were. On PostgreSQL they
/// also wait for no writer: another transaction holds the revision lock throughout, and a guess
/// that wanted it would wait, then answer UNAVAILABLE instead of NOT_FOUND. (SQLite has one
/// write lock for the whole file, which the lockout's attempt counter needs too.)
async fn a_thousand_wrong_pins_change_nothing(backend: Backend) {
    // Every guess is looked at: no lockout or budget gets in the way here.
    let mut app = spawn_app_with(backend, |settings| {
        settings.pin_attempts = 100_000;
        settings.client_pin_failures = 100_000;
    })
    .await;
    let (_manager, associate, _contractor, pin) = app.story().await;
    let before = written(&app).await;
    let writer = match backend {
        Backend::Postgres => Some(app.hold_revision_lock().await),
        Backend::Sqlite => None,
    };

    let mut guesses = JoinSet::new();
    for batch in 0..10u64 {
        let mut contractors = app.contractors.clone();
        let associate = associate.clone();
        let pin = pin.clone();
        guesses.spawn(async move {
            let mut codes = Vec::new();
            for n in 0..100u64 {
                let guess =
                    Pin::from_random(0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(batch * 100 + n + 1))
                        .expose_formatted();
                if guess == pin {
                    continue;
                }
                let answer = contractors
                    .associate_by_pin(as_customer(
                        &associate,
                        AssociateByPinRequest { pin: guess },
                    ))
                    .await;
                codes.push(answer.err().map(|status| status.code()));
            }
            codes
        });
    }
    let mut answered = 0;
    while let Some(codes) = guesses.join_next().await {
        for code in codes.expect("the guesses' task") {
            assert_eq!(code, Some(Code::NotFound), "a wrong PIN answers NOT_FOUND");
            answered += 1;
        }
    }
    assert!(answered >= 990, "only {answered} guesses were made");
    if let Some(writer) = writer {
        writer.rollback().await.expect("release the lock");
    }
    assert_eq!(
        written(&app).await,
        before,
        "wrong PINs moved the revision counter or wrote audit events"
    );
}

/// A well-formed PIN (its check character holds) that is most likely no account's.
fn guess(n: u64) -> String {
    Pin::from_random(0x2545_f491_4f6c_dd1d_u64.wrapping_mul(n + 7)).expose_formatted()
}

async fn a_thousand_guesses_are_looked_at_ten_times_and_the_lockout_outlives_a_restart(
    backend: Backend,
) {
    let mut app = spawn_app(backend).await;
    let (_manager, _associate, _contractor, pin) = app.story().await;
    let guesser = app.customer("guesser").await.customer_id;
    let bystander = app.customer("bystander").await.customer_id;

    let mut guesses = JoinSet::new();
    for batch in 0..10u64 {
        let mut contractors = app.contractors.clone();
        let guesser = guesser.clone();
        let pin = pin.clone();
        guesses.spawn(async move {
            let mut answers = Vec::new();
            for n in 0..100u64 {
                let guess = guess(batch * 100 + n);
                if guess == pin {
                    continue;
                }
                let answer = contractors
                    .associate_by_pin(as_customer(&guesser, AssociateByPinRequest { pin: guess }))
                    .await;
                answers.push(answer.expect_err("a guess is never right"));
            }
            answers
        });
    }
    let mut looked_at = 0;
    let mut refused = 0;
    while let Some(answers) = guesses.join_next().await {
        for status in answers.expect("the guesses' task") {
            match status.code() {
                Code::NotFound => looked_at += 1,
                Code::ResourceExhausted => {
                    let retry = status
                        .get_details_retry_info()
                        .and_then(|info| info.retry_delay)
                        .expect("a refusal says when to try again");
                    assert!(retry <= Duration::from_secs(900), "{retry:?}");
                    refused += 1;
                }
                other => panic!("a guess answered {other:?}: {status:?}"),
            }
        }
    }
    assert!(looked_at <= 10, "{looked_at} guesses were looked at");
    assert_eq!(looked_at + refused, 1000);

    // Even the right PIN is refused now, also after a restart.
    let right = |customer: &str| as_customer(customer, AssociateByPinRequest { pin: pin.clone() });
    let locked = app.contractors.associate_by_pin(right(&guesser)).await;
    assert_eq!(
        locked.expect_err("locked out").code(),
        Code::ResourceExhausted
    );
    let database = app.stop().await;
    let mut app = start_on(database).await;
    let locked = app.contractors.associate_by_pin(right(&guesser)).await;
    assert_eq!(
        locked.expect_err("still locked out after a restart").code(),
        Code::ResourceExhausted
    );
    // Someone else is not affected.
    app.contractors
        .associate_by_pin(right(&bystander))
        .await
        .expect("another customer enters the PIN");

    // Staff lift the lockout, audited; the right PIN works again.
    let before = app.revision_counter().await;
    let lifted = app
        .identity
        .clear_pin_lockout(mandate::pb::ClearPinLockoutRequest {
            customer_id: guesser.clone(),
        })
        .await
        .expect("unlock")
        .into_inner();
    assert!(lifted.cleared);
    assert_eq!(
        lifted.revision,
        before + 1,
        "the lift is a change of its own"
    );
    let again = app
        .identity
        .clear_pin_lockout(mandate::pb::ClearPinLockoutRequest {
            customer_id: guesser.clone(),
        })
        .await
        .expect("nothing left to lift")
        .into_inner();
    assert!(!again.cleared);
    assert_eq!(again.revision, lifted.revision, "nothing changed");
    app.contractors
        .associate_by_pin(right(&guesser))
        .await
        .expect("the lockout is lifted");
}

/// Guessing spread over many customers stays under each customer's lockout, so it is tallied
/// per client system: past the alert threshold in a window, the server logs a warning naming
/// the client system, while the client's other customers go on entering PINs. (The window is an
/// hour; the server reports the window cut short when it stops.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pins_across_customers_raise_an_alert_naming_the_client_system() {
    use mandate::pb::contractor_service_client::ContractorServiceClient;
    use mandate::pb::identity_service_client::IdentityServiceClient;
    use mandate::pb::{RegisterCustomerRequest, RotatePinRequest};

    let database = crate::helpers::TestDatabase::new(Backend::Sqlite).await;
    let mut server = crate::process::ServerProcess::start(
        &database,
        &[
            "--pin-failure-alert",
            "12",
            "--pin-failure-window-secs",
            "3600",
        ],
    )
    .await;
    let channel = crate::helpers::with_key(
        crate::helpers::channel_to(server.address).await,
        &database.key(),
    );
    let mut identity = IdentityServiceClient::new(channel.clone());
    let mut contractors = ContractorServiceClient::new(channel);
    let mut customers = Vec::new();
    for n in 0..5 {
        customers.push(
            identity
                .register_customer(RegisterCustomerRequest {
                    external_subject: format!("spread-{n}"),
                    display_name: format!("Spread {n}"),
                    email: format!("spread-{n}@example.ca"),
                })
                .await
                .expect("a customer")
                .into_inner()
                .customer
                .expect("a customer")
                .customer_id,
        );
    }
    let manager = customers.remove(0);
    let registered = contractors
        .register_contractor(as_customer(
            &manager,
            crate::helpers::contractor_request("Spread Thin Ltd."),
        ))
        .await
        .expect("an account")
        .into_inner();
    let contractor = registered.contractor.expect("an account").contractor_id;
    // Three wrong PINs from each of four customers: none is near its own lockout.
    for (n, customer) in customers.iter().enumerate() {
        for guess in 0..3u64 {
            let wrong = Pin::from_random(((n as u64) << 8) + guess + 7).expose_formatted();
            let refused = contractors
                .associate_by_pin(as_customer(customer, AssociateByPinRequest { pin: wrong }))
                .await
                .expect_err("a wrong PIN");
            assert_eq!(refused.code(), Code::NotFound);
        }
    }
    // The client system is not locked out: its customers' right PINs still work.
    let pin = contractors
        .rotate_pin(as_customer(
            &manager,
            RotatePinRequest {
                contractor_id: contractor,
            },
        ))
        .await
        .expect("a new PIN")
        .into_inner()
        .pin;
    contractors
        .associate_by_pin(as_customer(&customers[0], AssociateByPinRequest { pin }))
        .await
        .expect("the right PIN still works through the same client system");
    let line = tokio::task::spawn_blocking(move || {
        let _ = server.terminate();
        server
            .whole_log()
            .into_iter()
            .find(|line| line.contains("past the alert threshold"))
    })
    .await
    .expect("the log reader")
    .expect("an alert for the window");
    assert!(
        line.contains("client=bootstrap") && line.contains("wrong_pins=12"),
        "{line}"
    );
}

/// #17: a customer who entered only right PINs has an attempt row with nothing counted in it;
/// `ClearPinLockout` then answers `cleared: false` and takes no revision, as its proto says
/// (it answered `cleared: true` and took one).
async fn lifting_a_lockout_with_nothing_counted_changes_nothing(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, associate, _, pin) = app.story().await;
    let newcomer = app.customer("newcomer").await.customer_id;
    app.associate(&newcomer, &pin).await;
    let before = app.revision_counter().await;
    for customer in [&associate, &newcomer] {
        let lifted = app
            .identity
            .clear_pin_lockout(mandate::pb::ClearPinLockoutRequest {
                customer_id: customer.clone(),
            })
            .await
            .expect("nothing to lift")
            .into_inner();
        assert!(!lifted.cleared, "{customer}");
        assert_eq!(lifted.revision, before);
    }
    assert_eq!(
        app.revision_counter().await,
        before,
        "nothing was committed"
    );
}

/// The attack of #17: one portal key registering a fresh customer every 5 guesses (under each
/// customer's lockout) got 817 guesses a second evaluated, with no end. The client system's
/// wrong-PIN budget (20 here) holds them: past it, PIN entries of fresh customers are refused
/// unread, the right PIN included, with RetryInfo; a customer of long standing still enters its
/// PIN, and another client system is not affected.
async fn guessing_across_fresh_customers_is_held_to_the_client_systems_budget(backend: Backend) {
    let mut app = spawn_app_with(backend, |settings| {
        settings.client_pin_failures = 20;
        settings.client_pin_window_secs = 3600;
    })
    .await;
    let (_, _, _, pin) = app.story().await;
    let mut evaluated = 0;
    let mut refusal = None;
    'guessing: for round in 0..20 {
        let guesser = app.customer(&format!("guesser-{round}")).await.customer_id;
        for attempt in 0..5 {
            let wrong = guess(1000 + round * 5 + attempt);
            match app
                .contractors
                .associate_by_pin(as_customer(&guesser, AssociateByPinRequest { pin: wrong }))
                .await
            {
                Err(status) if status.code() == Code::NotFound => evaluated += 1,
                Err(status) if status.code() == Code::ResourceExhausted => {
                    refusal = Some((guesser, status));
                    break 'guessing;
                }
                other => panic!("a guess answered {other:?}"),
            }
        }
    }
    let (fresh, refusal) = refusal.expect("the budget stops the guessing");
    // The budget refills at 20 an hour: a test this short sees none of it.
    assert_eq!(evaluated, 20, "guesses looked at");
    let retry = refusal
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("RetryInfo");
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(180),
        "{retry:?}"
    );
    assert!(refusal.message().contains("bootstrap"), "{refusal:?}");
    let right = |customer: &str| as_customer(customer, AssociateByPinRequest { pin: pin.clone() });
    assert_eq!(
        app.contractors
            .associate_by_pin(right(&fresh))
            .await
            .expect_err("a fresh customer's entry is refused unread")
            .code(),
        Code::ResourceExhausted
    );

    // A customer registered two days ago goes on under its own lockout.
    let regular = app.customer("regular").await.customer_id;
    let db = app.store.connection();
    let two_days_ago = chrono::Utc::now() - chrono::Duration::days(2);
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        match db.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                "UPDATE customers SET create_time = $1 WHERE customer_id = $2"
            }
            _ => "UPDATE customers SET create_time = ?1 WHERE customer_id = ?2",
        },
        [two_days_ago.into(), regular.clone().into()],
    ))
    .await
    .expect("age the customer");
    app.contractors
        .associate_by_pin(right(&regular))
        .await
        .expect("a customer of standing enters its PIN");

    // Another client system's customers are not held by the portal's budget.
    let scopes: mandate_domain::client::Scopes = [mandate_domain::client::Scope::Portal]
        .into_iter()
        .collect();
    let kiosk = mandate::credentials::keys::create(&app.store, "kiosk", scopes, None)
        .await
        .expect("a key");
    app.keys.reload(&app.store).await.expect("reload");
    let walk_in = app.customer("walk-in").await.customer_id;
    ContractorServiceClient::new(with_key(app.channel.clone(), &kiosk.secret))
        .associate_by_pin(right(&walk_in))
        .await
        .expect("another client system is not throttled");
    let (_, text) = app.http_get("/metrics").await;
    assert!(
        series(
            &text,
            "mandate_pin_entries_refused_total{cause=\"client_throttled\"}"
        )
        .is_some_and(|n| n >= 2.0),
        "{text}"
    );
}

/// The budget is one for every replica: spent through one, it refuses through the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_systems_pin_budget_is_shared_by_the_replicas_on_postgres() {
    let database = crate::helpers::TestDatabase::new(Backend::Postgres).await;
    let (mut first, second) = crate::helpers::start_replicas_with(database, |settings| {
        settings.client_pin_failures = 5;
        settings.client_pin_window_secs = 3600;
    })
    .await;
    let (_, _, _, pin) = first.story().await;
    let guesser = first.customer("guesser").await.customer_id;
    for n in 0..5 {
        let status = first
            .contractors
            .associate_by_pin(as_customer(
                &guesser,
                AssociateByPinRequest {
                    pin: guess(2000 + n),
                },
            ))
            .await
            .expect_err("a wrong PIN");
        assert_eq!(status.code(), Code::NotFound);
    }
    let other = first.customer("other").await.customer_id;
    let mut through_second = second.contractors.clone();
    let status = through_second
        .associate_by_pin(as_customer(
            &other,
            AssociateByPinRequest { pin: pin.clone() },
        ))
        .await
        .expect_err("the budget spent through the first replica holds on the second");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}

/// A PIN entry cut off before it is answered (here its client's deadline passes while the
/// account's row is held) gives back the token it took from its client system's budget: with a
/// budget of one, a fresh customer can enter the PIN afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_entry_cut_off_before_its_answer_gives_its_token_back_on_postgres() {
    use sea_orm::{Database, TransactionTrait};
    let mut app = spawn_app_with(Backend::Postgres, |settings| {
        settings.client_pin_failures = 1;
        settings.client_pin_window_secs = 3600;
    })
    .await;
    let (_, _, contractor, pin) = app.story().await;
    let fresh = app.customer("fresh").await.customer_id;
    let db = Database::connect(&app.database().url)
        .await
        .expect("a connection of the test's own");
    let blocker = db.begin().await.expect("a transaction");
    blocker
        .execute_unprepared(&format!(
            "SELECT 1 FROM contractors WHERE contractor_id = '{contractor}' FOR UPDATE"
        ))
        .await
        .expect("hold the account's row");
    let mut request = as_customer(&fresh, AssociateByPinRequest { pin: pin.clone() });
    request.set_timeout(Duration::from_millis(300));
    app.contractors
        .associate_by_pin(request)
        .await
        .expect_err("the entry waits past its deadline");
    app.calls_cut_off("mandate.v1.ContractorService", "AssociateByPin", 1.0)
        .await;
    blocker.rollback().await.expect("let the row go");
    let full: i64 = 1000 * 3_600_000;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let credit: i64 = db
            .query_one_raw(Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT credit FROM client_pin_tokens WHERE client = 'bootstrap'",
            ))
            .await
            .expect("the budget")
            .expect("its row")
            .try_get_by_index(0)
            .expect("a credit");
        if credit >= full {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the token was not given back: {credit}"
        );
        tokio::task::yield_now().await;
    }
    app.contractors
        .associate_by_pin(as_customer(&fresh, AssociateByPinRequest { pin }))
        .await
        .expect("the budget holds its token again");
}
