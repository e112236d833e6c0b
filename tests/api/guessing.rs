//! PIN guessing writes nothing and waits for no writer: a wrong PIN is answered from a read.

use mandate::pb::AssociateByPinRequest;
use mandate_domain::pin::Pin;
use sea_orm::{ConnectionTrait, Statement};
use tokio::task::JoinSet;
use tonic::Code;

use crate::helpers::{Backend, TestApp, as_customer, spawn_app};
use crate::on_both_backends;

on_both_backends!(a_thousand_wrong_pins_write_nothing_and_wait_for_no_writer);

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

async fn a_thousand_wrong_pins_write_nothing_and_wait_for_no_writer(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_manager, associate, _contractor, pin) = app.story().await;
    let before = written(&app).await;

    // Another writer holds the revision lock throughout: a guess that wanted it would wait,
    // then answer UNAVAILABLE, instead of NOT_FOUND.
    let writer = app.hold_revision_lock().await;

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
    writer.rollback().await.expect("release the lock");
    assert_eq!(
        written(&app).await,
        before,
        "wrong PINs moved the revision counter or wrote audit events"
    );
}
