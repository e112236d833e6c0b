//! Between the wire (`pb`) and the domain and store types.

use chrono::{DateTime, Utc};
use mandate_domain::contractor::{RawAddress, RawContact, RawDetails};
use mandate_domain::permission::{Permission, PermissionSet};
use mandate_store::{Associate, Contractor, Customer, Membership};

use crate::pb;

pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub fn customer(c: Customer) -> pb::Customer {
    pb::Customer {
        customer_id: c.customer_id,
        external_subject: c.external_subject,
        display_name: c.display_name,
        email: c.email,
        create_time: Some(timestamp(c.create_time)),
    }
}

pub fn contractor(c: Contractor) -> pb::Contractor {
    let d = c.details;
    pb::Contractor {
        contractor_id: c.contractor_id,
        business_name: d.business_name,
        contact: Some(pb::Contact {
            name: d.contact.name,
            phone: d.contact.phone,
            email: d.contact.email,
        }),
        mailing_address: Some(pb::MailingAddress {
            street: d.mailing_address.street,
            city: d.mailing_address.city,
            province: d.mailing_address.province,
            postal_code: d.mailing_address.postal_code,
            country: d.mailing_address.country,
        }),
        create_time: Some(timestamp(c.create_time)),
        update_time: Some(timestamp(c.update_time)),
        merged_into_contractor_id: c.merged_into.unwrap_or_default(),
    }
}

pub fn membership(m: Membership) -> pb::Membership {
    pb::Membership {
        contractor: Some(contractor(m.contractor)),
        permissions: permissions(m.permissions),
        expire_time: m.expire_time.map(timestamp),
        associate_time: Some(timestamp(m.associate_time)),
    }
}

pub fn associate(a: Associate) -> pb::Associate {
    pb::Associate {
        customer: Some(customer(a.customer)),
        permissions: permissions(a.permissions),
        expire_time: a.expire_time.map(timestamp),
        associate_time: Some(timestamp(a.associate_time)),
    }
}

/// The wire form of a permission set: each permission held, in the guide's order.
pub fn permissions(set: PermissionSet) -> Vec<i32> {
    set.iter().map(|p| permission(p) as i32).collect()
}

fn permission(p: Permission) -> pb::Permission {
    match p {
        Permission::Apply => pb::Permission::Apply,
        Permission::Pay => pb::Permission::Pay,
        Permission::Inspections => pb::Permission::Inspections,
        Permission::UploadFiles => pb::Permission::UploadFiles,
        Permission::Manage => pb::Permission::Manage,
    }
}

/// Contractor details as sent, for the domain to validate.
pub fn raw_details(
    business_name: String,
    contact: Option<pb::Contact>,
    mailing_address: Option<pb::MailingAddress>,
) -> RawDetails {
    RawDetails {
        business_name,
        contact: contact.map(|c| RawContact {
            name: c.name,
            phone: c.phone,
            email: c.email,
        }),
        mailing_address: mailing_address.map(|a| RawAddress {
            street: a.street,
            city: a.city,
            province: a.province,
            postal_code: a.postal_code,
            country: a.country,
        }),
    }
}
