use mandate::pb::{
    AssociateByPinRequest, CheckPermissionRequest, ListAssociatesRequest, SetPermissionsRequest,
};
use tonic::Code;

use crate::helpers::{
    Backend, all_permissions, as_customer, expect_code, expect_invalid, spawn_app,
};
use crate::on_both_backends;

on_both_backends!(
    any_associate_may_list_the_associates,
    a_customer_not_associated_cannot_list_the_associates,
    listing_the_associates_of_an_unknown_contractor_is_not_found,
    associates_are_listed_page_by_page,
    the_rpcs_of_the_permissions_issue_say_they_are_not_implemented_yet,
);

async fn any_associate_may_list_the_associates(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let ben = app.customer("ben").await;
    let registered = app.contractor(&ana.customer_id).await;
    let contractor_id = registered.contractor.unwrap().contractor_id;
    app.contractors
        .associate_by_pin(as_customer(
            &ben.customer_id,
            AssociateByPinRequest {
                pin: registered.pin,
            },
        ))
        .await
        .unwrap();
    let listed = app
        .permissions
        .list_associates(as_customer(
            &ben.customer_id,
            ListAssociatesRequest {
                contractor_id,
                ..ListAssociatesRequest::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let manager = &listed.associates[0];
    assert_eq!(
        manager.customer.as_ref().unwrap().display_name,
        "Customer ana"
    );
    assert_eq!(manager.permissions, all_permissions());
    assert!(manager.expire_time.is_none());
    assert!(manager.associate_time.is_some());
    assert_eq!(listed.associates.len(), 2);
}

async fn a_customer_not_associated_cannot_list_the_associates(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let cy = app.customer("cy").await;
    let contractor_id = app
        .contractor(&ana.customer_id)
        .await
        .contractor
        .unwrap()
        .contractor_id;
    let result = app
        .permissions
        .list_associates(as_customer(
            &cy.customer_id,
            ListAssociatesRequest {
                contractor_id,
                ..ListAssociatesRequest::default()
            },
        ))
        .await;
    expect_code(result, Code::PermissionDenied);
}

async fn listing_the_associates_of_an_unknown_contractor_is_not_found(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let result = app
        .permissions
        .list_associates(as_customer(
            &ana.customer_id,
            ListAssociatesRequest {
                contractor_id: "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b".into(),
                ..ListAssociatesRequest::default()
            },
        ))
        .await;
    expect_code(result, Code::NotFound);
    let malformed = app
        .permissions
        .list_associates(as_customer(
            &ana.customer_id,
            ListAssociatesRequest {
                contractor_id: "acme".into(),
                ..ListAssociatesRequest::default()
            },
        ))
        .await;
    expect_invalid(malformed, &["contractor_id"]);
}

async fn associates_are_listed_page_by_page(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let registered = app.contractor(&ana.customer_id).await;
    let contractor_id = registered.contractor.unwrap().contractor_id;
    let mut expected = vec![ana.customer_id.clone()];
    for subject in ["ben", "cy", "dee", "eve"] {
        let customer = app.customer(subject).await;
        app.contractors
            .associate_by_pin(as_customer(
                &customer.customer_id,
                AssociateByPinRequest {
                    pin: registered.pin.clone(),
                },
            ))
            .await
            .unwrap();
        expected.push(customer.customer_id);
    }
    let mut listed = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = app
            .permissions
            .list_associates(as_customer(
                &ana.customer_id,
                ListAssociatesRequest {
                    contractor_id: contractor_id.clone(),
                    page_size: 2,
                    page_token: token,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.associates.len() <= 2);
        listed.extend(
            page.associates
                .into_iter()
                .map(|a| a.customer.unwrap().customer_id),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(listed, expected);
}

async fn the_rpcs_of_the_permissions_issue_say_they_are_not_implemented_yet(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let set = app
        .permissions
        .set_permissions(SetPermissionsRequest::default())
        .await;
    let status = expect_code(set, Code::Unimplemented);
    assert!(status.message().contains("issue #4"), "{status:?}");
    let check = app
        .permissions
        .check_permission(CheckPermissionRequest::default())
        .await;
    expect_code(check, Code::Unimplemented);
}
