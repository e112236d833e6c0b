//! Secrets never reach the log: a server logging at `trace` level is taken through the guide's
//! story, PIN reads, rotations, wrong PINs, a lockout and refused keys, and its whole log is
//! searched for every key and every PIN it saw.

use mandate::pb::contractor_service_client::ContractorServiceClient;
use mandate::pb::identity_service_client::IdentityServiceClient;
use mandate::pb::permission_service_client::PermissionServiceClient;
use mandate::pb::*;
use mandate_domain::client::Scope;
use mandate_domain::pin::Pin;

use crate::helpers::{
    Backend, TestDatabase, as_customer, channel_to, contractor_request, with_key,
};
use crate::process::ServerProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_level_log_holds_no_key_and_no_pin() {
    let database = TestDatabase::new(Backend::Sqlite).await;
    let mut server = ServerProcess::start_with_log(&database, &[], "trace").await;
    let key = database.key();
    let channel = with_key(channel_to(server.address).await, &key);
    let mut identity = IdentityServiceClient::new(channel.clone());
    let mut contractors = ContractorServiceClient::new(channel.clone());
    let mut permissions = PermissionServiceClient::new(channel.clone());
    let mut secrets = vec![key.clone()];

    let mut customer = async |subject: &str| {
        identity
            .register_customer(RegisterCustomerRequest {
                external_subject: subject.into(),
                display_name: subject.into(),
                email: format!("{subject}@example.ca"),
            })
            .await
            .expect("a customer")
            .into_inner()
            .customer
            .expect("a customer")
            .customer_id
    };
    let manager = customer("manager").await;
    let associate = customer("associate").await;
    let guesser = customer("guesser").await;
    let registered = contractors
        .register_contractor(as_customer(
            &manager,
            contractor_request("Rideau Builders Inc."),
        ))
        .await
        .expect("a contractor")
        .into_inner();
    let contractor = registered.contractor.expect("a contractor").contractor_id;
    secrets.push(registered.pin.clone());
    contractors
        .associate_by_pin(as_customer(
            &associate,
            AssociateByPinRequest {
                pin: registered.pin.to_lowercase().replace('-', " "),
            },
        ))
        .await
        .expect("associated");
    let read = contractors
        .get_pin(as_customer(
            &manager,
            GetPinRequest {
                contractor_id: contractor.clone(),
            },
        ))
        .await
        .expect("the PIN")
        .into_inner();
    secrets.push(read.pin);
    let rotated = contractors
        .rotate_pin(as_customer(
            &manager,
            RotatePinRequest {
                contractor_id: contractor.clone(),
            },
        ))
        .await
        .expect("a new PIN")
        .into_inner();
    secrets.push(rotated.pin);
    let removed = permissions
        .remove_associate(as_customer(
            &manager,
            RemoveAssociateRequest {
                contractor_id: contractor.clone(),
                customer_id: associate.clone(),
                rotate_pin: true,
            },
        ))
        .await
        .expect("removed")
        .into_inner();
    secrets.push(removed.pin);
    // Wrong PINs until the lockout, then a mistyped one.
    for n in 0..12u64 {
        let wrong = Pin::from_random(n.wrapping_mul(0x9e37_79b9_7f4a_7c15) + 3).expose_formatted();
        secrets.push(wrong.clone());
        let _ = contractors
            .associate_by_pin(as_customer(&guesser, AssociateByPinRequest { pin: wrong }))
            .await;
    }
    let _ = contractors
        .associate_by_pin(as_customer(
            &guesser,
            AssociateByPinRequest {
                pin: "4SB9-9AMR-CX".into(),
            },
        ))
        .await;
    // Keys: a new one used, and a wrong one refused.
    let issued = mandate::credentials::keys::create(
        &mandate_store::Store::connect(&database.url, database.settings().store_options())
            .await
            .expect("the database"),
        "payments",
        [Scope::Check].into_iter().collect(),
        None,
    )
    .await
    .expect("a key");
    secrets.push(issued.secret.clone());
    let wrong_key = format!("mdt_{}", "ab".repeat(32));
    secrets.push(wrong_key.clone());
    let _ = PermissionServiceClient::new(with_key(channel_to(server.address).await, &wrong_key))
        .check_permissions(CheckPermissionsRequest { items: vec![] })
        .await;
    let _ =
        PermissionServiceClient::new(with_key(channel_to(server.address).await, &issued.secret))
            .check_permissions(CheckPermissionsRequest { items: vec![] })
            .await;

    let ((status, _), log) = tokio::task::spawn_blocking(move || {
        let exited = server.terminate();
        (exited, server.whole_log())
    })
    .await
    .expect("the server stops");
    let log = log.join("\n").to_uppercase();
    assert!(status.success(), "{status}");
    assert!(
        log.contains(&contractor.to_uppercase()),
        "the log tells the story: it names the account"
    );
    assert!(
        log.len() > 10_000,
        "a trace-level log was captured ({} bytes)",
        log.len()
    );
    for secret in &secrets {
        let upper = secret.to_uppercase();
        let canonical = upper.replace('-', "");
        for form in [&upper, &canonical] {
            assert!(
                !log.contains(form.as_str()),
                "the log holds a secret: {form}"
            );
        }
    }
    let secret_file =
        std::fs::read_to_string(format!("{}.secret", database.name)).expect("the PIN secret file");
    assert!(
        !log.contains(&secret_file.trim().to_uppercase()),
        "the log holds the PIN secret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_level_log_holds_no_database_password() {
    // The test cluster trusts local connections, so it accepts any password: the server
    // connects, and its whole trace-level log is searched for the password it was given.
    let password = "Pw-in-the-url-7f3a9c";
    let mut database = TestDatabase::new(Backend::Postgres).await;
    database.url = database.url.replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{password}@"),
        1,
    );
    let secret_file = database.dir().join("pin-secret");
    let secret_file = secret_file.display().to_string();
    let mut server =
        ServerProcess::start_with_log(&database, &["--pin-secret-file", &secret_file], "trace")
            .await;
    let channel = with_key(channel_to(server.address).await, &database.key());
    IdentityServiceClient::new(channel)
        .register_customer(RegisterCustomerRequest {
            external_subject: "passworded".into(),
            display_name: "Passworded".into(),
            email: "passworded@example.ca".into(),
        })
        .await
        .expect("served over a URL with a password");
    let ((status, _), log) = tokio::task::spawn_blocking(move || {
        let exited = server.terminate();
        (exited, server.whole_log())
    })
    .await
    .expect("the server stops");
    let log = log.join("\n");
    assert!(status.success(), "{status}");
    assert!(
        !log.contains(password),
        "the log holds the database password"
    );
    assert!(
        log.contains("postgres://postgres@"),
        "the trace-level log shows the URL, without its password"
    );
}
