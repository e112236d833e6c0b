use mandate::pb::{GetCustomerRequest, RegisterCustomerRequest};
use tonic::Code;

use crate::helpers::{Backend, expect_code, expect_invalid, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    a_registered_customer_can_be_read_back,
    a_taken_external_subject_is_already_exists_and_adds_nothing,
    registering_with_bad_fields_names_every_field,
    an_unknown_customer_is_not_found,
    a_malformed_customer_id_is_invalid_argument,
);

async fn a_registered_customer_can_be_read_back(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let registered = app
        .identity
        .register_customer(RegisterCustomerRequest {
            external_subject: " oidc|ana ".into(),
            display_name: "Ana Lima".into(),
            email: "ana@Example.CA".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let customer = registered.customer.unwrap();
    assert_eq!(customer.external_subject, "oidc|ana");
    assert_eq!(customer.email, "ana@example.ca");
    assert!(registered.revision > 0);

    let read = app
        .identity
        .get_customer(GetCustomerRequest {
            customer_id: customer.customer_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.customer.unwrap(), customer);
}

async fn a_taken_external_subject_is_already_exists_and_adds_nothing(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let first = app.customer("sub-1").await;
    let again = app
        .identity
        .register_customer(RegisterCustomerRequest {
            external_subject: "sub-1".into(),
            display_name: "Someone Else".into(),
            email: "else@example.ca".into(),
        })
        .await;
    let status = expect_code(again, Code::AlreadyExists);
    assert!(status.message().contains("external_subject"), "{status:?}");
    // The failed call changed nothing: the next registration takes the very next revision.
    let next = app
        .identity
        .register_customer(RegisterCustomerRequest {
            external_subject: "sub-2".into(),
            display_name: "Two".into(),
            email: "two@example.ca".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.revision, 2);
    let unchanged = app
        .identity
        .get_customer(GetCustomerRequest {
            customer_id: first.customer_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unchanged.customer.unwrap(), first);
}

async fn registering_with_bad_fields_names_every_field(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let result = app
        .identity
        .register_customer(RegisterCustomerRequest {
            external_subject: " ".into(),
            display_name: "x".repeat(201),
            email: "not-an-email".into(),
        })
        .await;
    expect_invalid(result, &["external_subject", "display_name", "email"]);
}

async fn an_unknown_customer_is_not_found(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let result = app
        .identity
        .get_customer(GetCustomerRequest {
            customer_id: "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b".into(),
        })
        .await;
    expect_code(result, Code::NotFound);
}

async fn a_malformed_customer_id_is_invalid_argument(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let result = app
        .identity
        .get_customer(GetCustomerRequest {
            customer_id: "ana".into(),
        })
        .await;
    expect_invalid(result, &["customer_id"]);
}
