//! Between the wire (`pb`) and the domain and store types.

use chrono::{DateTime, Datelike, SubsecRound, Utc};
use mandate_domain::contractor::{RawAddress, RawContact, RawDetails};
use mandate_domain::decision::Reason;
use mandate_domain::permission::{Permission, PermissionSet};
use mandate_store::{Associate, AuditEvent, ChangeKind, Contractor, Customer, Membership};

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
        legacy_contractor_id: c.legacy_contractor_id.unwrap_or_default(),
    }
}

pub fn membership(m: Membership) -> pb::Membership {
    pb::Membership {
        contractor: Some(contractor(m.contractor)),
        permissions: permissions(m.permissions),
        expired: is_past(m.expire_time),
        expire_time: m.expire_time.map(timestamp),
        associate_time: Some(timestamp(m.associate_time)),
    }
}

pub fn associate(a: Associate) -> pb::Associate {
    pb::Associate {
        customer: Some(customer(a.customer)),
        permissions: permissions(a.permissions),
        expired: is_past(a.expire_time),
        expire_time: a.expire_time.map(timestamp),
        associate_time: Some(timestamp(a.associate_time)),
    }
}

/// Whether an expiry has come.
fn is_past(expire_time: Option<DateTime<Utc>>) -> bool {
    expire_time.is_some_and(|end| end <= Utc::now())
}

/// The wire form of a permission set: each permission held, in the guide's order.
pub fn permissions(set: PermissionSet) -> Vec<i32> {
    set.iter().map(|p| permission(p) as i32).collect()
}

pub fn permission(p: Permission) -> pb::Permission {
    p.into()
}

impl From<Permission> for pb::Permission {
    fn from(p: Permission) -> Self {
        match p {
            Permission::Apply => pb::Permission::Apply,
            Permission::Pay => pb::Permission::Pay,
            Permission::Inspections => pb::Permission::Inspections,
            Permission::UploadFiles => pb::Permission::UploadFiles,
            Permission::Manage => pb::Permission::Manage,
        }
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

/// A permission a request names in `field`; `PERMISSION_UNSPECIFIED` and unknown values are refused.
pub fn parse_permission(field: &str, value: i32) -> mandate_domain::Result<Permission> {
    match pb::Permission::try_from(value) {
        Ok(pb::Permission::Apply) => Ok(Permission::Apply),
        Ok(pb::Permission::Pay) => Ok(Permission::Pay),
        Ok(pb::Permission::Inspections) => Ok(Permission::Inspections),
        Ok(pb::Permission::UploadFiles) => Ok(Permission::UploadFiles),
        Ok(pb::Permission::Manage) => Ok(Permission::Manage),
        Ok(pb::Permission::Unspecified) | Err(_) => Err(mandate_domain::Error::invalid(
            field,
            "must be one of PERMISSION_APPLY, PERMISSION_PAY, PERMISSION_INSPECTIONS, \
             PERMISSION_UPLOAD_FILES, PERMISSION_MANAGE",
        )),
    }
}

/// The permission set a request lists in `field`, naming each bad entry as `field[i]`.
pub fn parse_permissions(field: &str, values: &[i32]) -> mandate_domain::Result<PermissionSet> {
    let mut permissions = Vec::with_capacity(values.len());
    let mut violations = Vec::new();
    for (i, value) in values.iter().enumerate() {
        match parse_permission(&format!("{field}[{i}]"), *value) {
            Ok(p) => permissions.push(p),
            Err(mandate_domain::Error::Invalid(v)) => violations.extend(v),
            Err(other) => return Err(other),
        }
    }
    if violations.is_empty() {
        Ok(PermissionSet::of(permissions))
    } else {
        Err(mandate_domain::Error::Invalid(violations))
    }
}

/// A time a request names in `field`, if set: between the years 1 and 9999 (what every
/// database keeps), at the microsecond precision the databases store.
pub fn parse_time(
    field: &str,
    value: Option<&prost_types::Timestamp>,
) -> mandate_domain::Result<Option<DateTime<Utc>>> {
    value
        .map(|t| {
            u32::try_from(t.nanos)
                .ok()
                .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
                .filter(|time| (1..=9999).contains(&time.year()))
                .map(|time| time.trunc_subsecs(6))
                .ok_or_else(|| {
                    mandate_domain::Error::invalid(
                        field,
                        "is not a valid time between the years 1 and 9999",
                    )
                })
        })
        .transpose()
}

pub fn reason(reason: Reason) -> pb::CheckReason {
    match reason {
        Reason::GrantedDirectly => pb::CheckReason::GrantedDirectly,
        Reason::GrantedThroughManage => pb::CheckReason::GrantedThroughManage,
        Reason::NotAssociated => pb::CheckReason::NotAssociated,
        Reason::PermissionNotHeld => pb::CheckReason::PermissionNotHeld,
        Reason::GrantExpired => pb::CheckReason::GrantExpired,
        Reason::ApplicationNotLinked => pb::CheckReason::ApplicationNotLinked,
        Reason::OwnApplication => pb::CheckReason::OwnApplication,
    }
}

fn change_kind(kind: ChangeKind) -> pb::ChangeKind {
    match kind {
        ChangeKind::CustomerRegistered => pb::ChangeKind::CustomerRegistered,
        ChangeKind::ContractorRegistered => pb::ChangeKind::ContractorRegistered,
        ChangeKind::ContractorUpdated => pb::ChangeKind::ContractorUpdated,
        ChangeKind::Associated => pb::ChangeKind::Associated,
        ChangeKind::PermissionsSet => pb::ChangeKind::PermissionsSet,
        ChangeKind::AssociateRemoved => pb::ChangeKind::AssociateRemoved,
        ChangeKind::Left => pb::ChangeKind::Left,
        ChangeKind::ApplicationLinked => pb::ChangeKind::ApplicationLinked,
        ChangeKind::ApplicationUnlinked => pb::ChangeKind::ApplicationUnlinked,
        ChangeKind::PinRead => pb::ChangeKind::PinRead,
        ChangeKind::PinRotated => pb::ChangeKind::PinRotated,
        ChangeKind::PinLockoutCleared => pb::ChangeKind::PinLockoutCleared,
        ChangeKind::ContractorsMerged => pb::ChangeKind::ContractorsMerged,
        ChangeKind::ManagerAppointed => pb::ChangeKind::ManagerAppointed,
        ChangeKind::LegacyImported => pb::ChangeKind::LegacyImported,
        ChangeKind::LegacyCustomerLinked => pb::ChangeKind::LegacyCustomerLinked,
        ChangeKind::Seeded => pb::ChangeKind::Seeded,
        ChangeKind::AliasPinsRetired => pb::ChangeKind::AliasPinsRetired,
        ChangeKind::CustomerPinReissued => pb::ChangeKind::CustomerPinReissued,
    }
}

pub fn audit_event(e: AuditEvent) -> pb::AuditEvent {
    pb::AuditEvent {
        revision: e.revision,
        time: Some(timestamp(e.time)),
        kind: change_kind(e.kind) as i32,
        actor_customer_id: e.actor.customer_id.unwrap_or_default(),
        actor_client: e.actor.client,
        contractor_id: e.contractor_id.unwrap_or_default(),
        customer_id: e.customer_id.unwrap_or_default(),
        permissions_before: e.permissions_before.map(permissions).unwrap_or_default(),
        permissions_after: e.permissions_after.map(permissions).unwrap_or_default(),
        expire_time: e.expire_time.map(timestamp),
        application_id: e.application_id.unwrap_or_default(),
        absorbed_contractor_ids: e.absorbed_contractor_ids,
        detail: e.detail.unwrap_or_default(),
    }
}
