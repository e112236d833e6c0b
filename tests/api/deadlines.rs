//! A client's deadline bounds the work done for it: a write stuck behind another writer is
//! abandoned at the deadline, its transaction rolled back, and the service goes on.

use std::time::{Duration, Instant};

use tonic::Code;

use crate::helpers::{Backend, as_customer, spawn_app};
use crate::on_both_backends;

on_both_backends!(a_write_past_the_clients_deadline_is_abandoned_and_changes_nothing);

async fn a_write_past_the_clients_deadline_is_abandoned_and_changes_nothing(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    let before = app.revision_counter().await;
    let writer = app.hold_revision_lock().await;

    let mut request = as_customer(
        &manager,
        mandate::pb::SetPermissionsRequest {
            contractor_id: contractor.clone(),
            customer_id: associate.clone(),
            permissions: vec![mandate::pb::Permission::Pay as i32],
            expire_time: None,
        },
    );
    request.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let answer = app.permissions.set_permissions(request).await;
    let took = started.elapsed();
    let status = answer.expect_err("the write cannot finish while the lock is held");
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    // The server's database wait is 5 s: the client's deadline, not the wait, ended the call.
    assert!(took < Duration::from_secs(4), "the call took {took:?}");

    // The client gave up; the server gives up at the same deadline by its own clock, which a
    // loaded machine may run a moment later. Only once it has let go of the call may the lock
    // go: released earlier, the write would still finish (and commit) on the server.
    app.calls_cut_off("mandate.v1.PermissionService", "SetPermissions", 1.0)
        .await;
    writer.rollback().await.expect("release the lock");
    let granted = app
        .set_permissions(
            &manager,
            &contractor,
            &associate,
            &[mandate::pb::Permission::Apply],
        )
        .await
        .expect("the service goes on");
    assert_eq!(
        granted.revision,
        before + 1,
        "the abandoned write was not kept"
    );
    let decision = app
        .check(&associate, mandate::pb::Permission::Pay, &contractor, "")
        .await
        .expect("a check");
    assert!(!decision.allowed, "the abandoned grant of Pay was not kept");
}
