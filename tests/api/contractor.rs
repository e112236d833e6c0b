use mandate::pb::{
    self, AssociateByPinRequest, Contractor, GetContractorRequest, GetPinRequest,
    ListAssociatesRequest, ListMyContractorsRequest, UpdateContractorRequest,
};
use prost_types::FieldMask;
use tonic::{Code, Request};

use crate::helpers::{
    Backend, all_permissions, as_customer, contractor_request, expect_code, expect_invalid,
    spawn_app,
};
use crate::on_both_backends;

on_both_backends!(
    the_registering_customer_becomes_manager_with_every_permission,
    registering_without_x_customer_id_is_unauthenticated,
    registering_for_an_unknown_customer_is_not_found,
    registering_with_bad_fields_names_every_field_and_adds_nothing,
    registering_without_contact_or_address_names_them,
    a_contractor_can_be_read_back_and_an_unknown_one_is_not_found,
    a_manager_changes_only_the_masked_fields,
    an_associate_without_manage_cannot_update_the_contractor,
    a_bad_update_is_invalid_argument_and_changes_nothing,
    updating_an_unknown_contractor_is_not_found,
    a_customer_who_enters_the_pin_is_associated_with_no_permissions,
    associating_twice_returns_the_existing_membership_and_changes_nothing,
    a_pin_typed_loosely_is_understood,
    a_mistyped_pin_is_invalid_argument_saying_it_is_mistyped,
    a_well_formed_unknown_pin_is_not_found,
    the_manager_reads_the_pin_registration_returned,
    only_a_manager_may_read_the_pin,
    my_contractors_are_listed_page_by_page,
    a_bad_page_token_or_size_is_invalid_argument,
);

async fn the_registering_customer_becomes_manager_with_every_permission(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let registered = app.contractor(&ana.customer_id).await;
    assert_eq!(registered.permissions, all_permissions());
    assert_eq!(
        registered.pin.len(),
        12,
        "PIN {} is not XXXX-XXXX-XX",
        registered.pin
    );
    let contractor = registered.contractor.unwrap();
    assert_eq!(contractor.business_name, "Rideau Builders Inc.");
    assert_eq!(contractor.merged_into_contractor_id, "");

    let mine = app
        .contractors
        .list_my_contractors(as_customer(
            &ana.customer_id,
            ListMyContractorsRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.memberships.len(), 1);
    assert_eq!(mine.memberships[0].contractor.as_ref(), Some(&contractor));
    assert_eq!(mine.memberships[0].permissions, all_permissions());
    assert_eq!(mine.next_page_token, "");
}

async fn registering_without_x_customer_id_is_unauthenticated(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let result = app
        .contractors
        .register_contractor(Request::new(contractor_request("Acme")))
        .await;
    let status = expect_code(result, Code::Unauthenticated);
    assert!(status.message().contains("x-customer-id"), "{status:?}");
    let malformed = app
        .contractors
        .register_contractor(as_customer("not-an-id", contractor_request("Acme")))
        .await;
    expect_code(malformed, Code::Unauthenticated);
}

async fn registering_for_an_unknown_customer_is_not_found(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let result = app
        .contractors
        .register_contractor(as_customer(
            "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b",
            contractor_request("Acme"),
        ))
        .await;
    expect_code(result, Code::NotFound);
}

async fn registering_with_bad_fields_names_every_field_and_adds_nothing(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let mut request = contractor_request(" ");
    if let Some(contact) = request.contact.as_mut() {
        contact.phone = "call me".into();
        contact.email = "marie@".into();
    }
    if let Some(address) = request.mailing_address.as_mut() {
        address.province = "Ontario".into();
        address.postal_code = "90210".into();
    }
    let result = app
        .contractors
        .register_contractor(as_customer(&ana.customer_id, request))
        .await;
    expect_invalid(
        result,
        &[
            "business_name",
            "contact.phone",
            "contact.email",
            "mailing_address.province",
            "mailing_address.postal_code",
        ],
    );
    let mine = app
        .contractors
        .list_my_contractors(as_customer(
            &ana.customer_id,
            ListMyContractorsRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(mine.memberships.is_empty());
}

async fn registering_without_contact_or_address_names_them(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let request = pb::RegisterContractorRequest {
        business_name: "Acme".into(),
        contact: None,
        mailing_address: None,
    };
    let result = app
        .contractors
        .register_contractor(as_customer(&ana.customer_id, request))
        .await;
    expect_invalid(result, &["contact", "mailing_address"]);
}

async fn a_contractor_can_be_read_back_and_an_unknown_one_is_not_found(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let registered = app.contractor(&ana.customer_id).await.contractor.unwrap();
    let read = app
        .contractors
        .get_contractor(GetContractorRequest {
            contractor_id: registered.contractor_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.contractor.unwrap(), registered);

    let unknown = app
        .contractors
        .get_contractor(GetContractorRequest {
            contractor_id: "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b".into(),
        })
        .await;
    expect_code(unknown, Code::NotFound);
    let malformed = app
        .contractors
        .get_contractor(GetContractorRequest {
            contractor_id: String::new(),
        })
        .await;
    expect_invalid(malformed, &["contractor_id"]);
}

fn update(contractor: Contractor, paths: &[&str]) -> UpdateContractorRequest {
    UpdateContractorRequest {
        contractor: Some(contractor),
        update_mask: Some(FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
    }
}

async fn a_manager_changes_only_the_masked_fields(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let registered = app.contractor(&ana.customer_id).await;
    let original = registered.contractor.unwrap();
    let change = Contractor {
        contractor_id: original.contractor_id.clone(),
        business_name: "Rideau Homes Ltd.".into(),
        contact: Some(pb::Contact {
            name: "ignored: not in the mask".into(),
            phone: "613 555 0100".into(),
            email: String::new(),
        }),
        ..Contractor::default()
    };
    let updated = app
        .contractors
        .update_contractor(as_customer(
            &ana.customer_id,
            update(change, &["business_name", "contact.phone"]),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(updated.revision > registered.revision);
    let contractor = updated.contractor.unwrap();
    assert_eq!(contractor.business_name, "Rideau Homes Ltd.");
    let contact = contractor.contact.clone().unwrap();
    assert_eq!(contact.phone, "613 555 0100");
    assert_eq!(contact.name, "Marie Tremblay");
    assert_eq!(contractor.mailing_address, original.mailing_address);
    assert_eq!(contractor.create_time, original.create_time);

    let read = app
        .contractors
        .get_contractor(GetContractorRequest {
            contractor_id: original.contractor_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.contractor.unwrap(), contractor);
}

async fn an_associate_without_manage_cannot_update_the_contractor(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let ben = app.customer("ben").await;
    let cy = app.customer("cy").await;
    let registered = app.contractor(&ana.customer_id).await;
    app.contractors
        .associate_by_pin(as_customer(
            &ben.customer_id,
            AssociateByPinRequest {
                pin: registered.pin.clone(),
            },
        ))
        .await
        .unwrap();
    let change = Contractor {
        contractor_id: registered.contractor.unwrap().contractor_id,
        business_name: "Taken Over Inc.".into(),
        ..Contractor::default()
    };
    for customer in [&ben, &cy] {
        let result = app
            .contractors
            .update_contractor(as_customer(
                &customer.customer_id,
                update(change.clone(), &["business_name"]),
            ))
            .await;
        let status = expect_code(result, Code::PermissionDenied);
        assert!(status.message().contains("Manager"), "{status:?}");
    }
}

async fn a_bad_update_is_invalid_argument_and_changes_nothing(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let original = app.contractor(&ana.customer_id).await.contractor.unwrap();
    let blank = Contractor {
        contractor_id: original.contractor_id.clone(),
        ..Contractor::default()
    };
    let cases: [(&[&str], &[&str]); 4] = [
        (&["business_name"], &["contractor.business_name"]),
        (&["contact.email"], &["contractor.contact.email"]),
        (&["pin"], &["update_mask"]),
        (&[], &["update_mask"]),
    ];
    for (paths, fields) in cases {
        let result = app
            .contractors
            .update_contractor(as_customer(&ana.customer_id, update(blank.clone(), paths)))
            .await;
        expect_invalid(result, fields);
    }
    let missing = app
        .contractors
        .update_contractor(as_customer(
            &ana.customer_id,
            UpdateContractorRequest {
                contractor: None,
                update_mask: None,
            },
        ))
        .await;
    expect_invalid(missing, &["contractor"]);
    let read = app
        .contractors
        .get_contractor(GetContractorRequest {
            contractor_id: original.contractor_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.contractor.unwrap(), original);
}

async fn updating_an_unknown_contractor_is_not_found(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let change = Contractor {
        contractor_id: "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b".into(),
        business_name: "Ghost".into(),
        ..Contractor::default()
    };
    let result = app
        .contractors
        .update_contractor(as_customer(
            &ana.customer_id,
            update(change, &["business_name"]),
        ))
        .await;
    expect_code(result, Code::NotFound);
}

async fn a_customer_who_enters_the_pin_is_associated_with_no_permissions(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let ben = app.customer("ben").await;
    let registered = app.contractor(&ana.customer_id).await;
    let contractor = registered.contractor.clone().unwrap();
    let associated = app
        .contractors
        .associate_by_pin(as_customer(
            &ben.customer_id,
            AssociateByPinRequest {
                pin: registered.pin.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(associated.contractor.as_ref(), Some(&contractor));
    assert!(associated.permissions.is_empty());
    assert!(!associated.already_associated);
    assert!(associated.revision > registered.revision);

    let associates = app
        .permissions
        .list_associates(as_customer(
            &ana.customer_id,
            ListAssociatesRequest {
                contractor_id: contractor.contractor_id.clone(),
                ..ListAssociatesRequest::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .associates;
    let listed: Vec<(String, Vec<i32>)> = associates
        .into_iter()
        .map(|a| (a.customer.unwrap().customer_id, a.permissions))
        .collect();
    assert_eq!(
        listed,
        [
            (ana.customer_id.clone(), all_permissions()),
            (ben.customer_id.clone(), vec![]),
        ]
    );
}

async fn associating_twice_returns_the_existing_membership_and_changes_nothing(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let ben = app.customer("ben").await;
    let registered = app.contractor(&ana.customer_id).await;
    let associate = |customer_id: &str| {
        as_customer(
            customer_id,
            AssociateByPinRequest {
                pin: registered.pin.clone(),
            },
        )
    };
    let first = app
        .contractors
        .associate_by_pin(associate(&ben.customer_id))
        .await
        .unwrap()
        .into_inner();
    let second = app
        .contractors
        .associate_by_pin(associate(&ben.customer_id))
        .await
        .unwrap()
        .into_inner();
    assert!(second.already_associated);
    assert_eq!(second.revision, first.revision);
    assert_eq!(second.permissions, first.permissions);
    // The Manager entering its own PIN keeps Manage.
    let own = app
        .contractors
        .associate_by_pin(associate(&ana.customer_id))
        .await
        .unwrap()
        .into_inner();
    assert!(own.already_associated);
    assert_eq!(own.permissions, all_permissions());
}

async fn a_pin_typed_loosely_is_understood(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let ben = app.customer("ben").await;
    let registered = app.contractor(&ana.customer_id).await;
    let loose = format!(" {} ", registered.pin.replace('-', " ").to_lowercase());
    let associated = app
        .contractors
        .associate_by_pin(as_customer(
            &ben.customer_id,
            AssociateByPinRequest { pin: loose },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        associated.contractor.unwrap().contractor_id,
        registered.contractor.unwrap().contractor_id
    );
}

/// The PIN with its first character replaced by another PIN character.
fn mistype(pin: &str) -> String {
    let first = pin.chars().next().unwrap();
    let other = if first == '7' { '8' } else { '7' };
    format!("{other}{}", &pin[1..])
}

async fn a_mistyped_pin_is_invalid_argument_saying_it_is_mistyped(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let ben = app.customer("ben").await;
    let registered = app.contractor(&ana.customer_id).await;
    let result = app
        .contractors
        .associate_by_pin(as_customer(
            &ben.customer_id,
            AssociateByPinRequest {
                pin: mistype(&registered.pin),
            },
        ))
        .await;
    let status = expect_invalid(result, &["pin"]);
    assert!(status.message().contains("mistyped"), "{status:?}");
    let short = app
        .contractors
        .associate_by_pin(as_customer(
            &ben.customer_id,
            AssociateByPinRequest { pin: "1234".into() },
        ))
        .await;
    expect_invalid(short, &["pin"]);
}

async fn a_well_formed_unknown_pin_is_not_found(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ben = app.customer("ben").await;
    // All zeros is a well-formed PIN (its check character is 0) that no account holds here.
    let result = app
        .contractors
        .associate_by_pin(as_customer(
            &ben.customer_id,
            AssociateByPinRequest {
                pin: "0000-0000-00".into(),
            },
        ))
        .await;
    let status = expect_code(result, Code::NotFound);
    assert!(
        !status.message().contains("0000"),
        "the PIN is echoed: {status:?}"
    );
}

async fn the_manager_reads_the_pin_registration_returned(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let registered = app.contractor(&ana.customer_id).await;
    let read = app
        .contractors
        .get_pin(as_customer(
            &ana.customer_id,
            GetPinRequest {
                contractor_id: registered.contractor.unwrap().contractor_id,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.pin, registered.pin);
}

async fn only_a_manager_may_read_the_pin(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let ben = app.customer("ben").await;
    let cy = app.customer("cy").await;
    let registered = app.contractor(&ana.customer_id).await;
    let contractor_id = registered.contractor.unwrap().contractor_id;
    app.contractors
        .associate_by_pin(as_customer(
            &ben.customer_id,
            AssociateByPinRequest {
                pin: registered.pin.clone(),
            },
        ))
        .await
        .unwrap();
    for customer in [&ben, &cy] {
        let result = app
            .contractors
            .get_pin(as_customer(
                &customer.customer_id,
                GetPinRequest {
                    contractor_id: contractor_id.clone(),
                },
            ))
            .await;
        let status = expect_code(result, Code::PermissionDenied);
        assert!(!status.message().contains(&registered.pin), "{status:?}");
    }
    let unknown = app
        .contractors
        .get_pin(as_customer(
            &ana.customer_id,
            GetPinRequest {
                contractor_id: "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b".into(),
            },
        ))
        .await;
    expect_code(unknown, Code::NotFound);
}

async fn my_contractors_are_listed_page_by_page(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let mut registered = Vec::new();
    for name in ["One", "Two", "Three"] {
        let response = app
            .contractors
            .register_contractor(as_customer(&ana.customer_id, contractor_request(name)))
            .await
            .unwrap()
            .into_inner();
        registered.push(response.contractor.unwrap().contractor_id);
    }
    let page = |token: String| {
        as_customer(
            &ana.customer_id,
            ListMyContractorsRequest {
                page_size: 2,
                page_token: token,
            },
        )
    };
    let first = app
        .contractors
        .list_my_contractors(page(String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.memberships.len(), 2);
    assert_ne!(first.next_page_token, "");
    let second = app
        .contractors
        .list_my_contractors(page(first.next_page_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.next_page_token, "");
    let listed: Vec<String> = first
        .memberships
        .into_iter()
        .chain(second.memberships)
        .map(|m| m.contractor.unwrap().contractor_id)
        .collect();
    assert_eq!(listed, registered);
}

async fn a_bad_page_token_or_size_is_invalid_argument(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let token = app
        .contractors
        .list_my_contractors(as_customer(
            &ana.customer_id,
            ListMyContractorsRequest {
                page_size: 0,
                page_token: "page-2".into(),
            },
        ))
        .await;
    expect_invalid(token, &["page_token"]);
    let size = app
        .contractors
        .list_my_contractors(as_customer(
            &ana.customer_id,
            ListMyContractorsRequest {
                page_size: -5,
                page_token: String::new(),
            },
        ))
        .await;
    expect_invalid(size, &["page_size"]);
}
