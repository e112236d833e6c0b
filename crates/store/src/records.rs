//! What the store hands back: validated domain values with their stored metadata.

use chrono::{DateTime, Utc};
use mandate_domain::contractor::{Contact, ContractorDetails, MailingAddress};
use mandate_domain::permission::PermissionSet;

use crate::entity::{contractor, customer};

/// A position in the history of changes; strictly increasing, in commit order.
pub type Revision = i64;

/// Who makes a change: the acting customer, if any, through which client system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub customer_id: Option<String>,
    /// The client system's name, recorded in the audit trail.
    pub client: String,
}

/// Who reads an account's associates or audit trail: a customer, whose place on the account
/// decides what it sees, or staff, who see everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer<'a> {
    Customer(&'a str),
    Staff,
}

/// What a revision changed; recorded in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    CustomerRegistered,
    ContractorRegistered,
    ContractorUpdated,
    Associated,
    PermissionsSet,
    AssociateRemoved,
    Left,
    ApplicationLinked,
    ApplicationUnlinked,
    PinRead,
    PinRotated,
    PinLockoutCleared,
    ContractorsMerged,
    ManagerAppointed,
    LegacyImported,
    LegacyCustomerLinked,
    /// `mandate seed` wrote a generated data set (test data) into an empty database.
    Seeded,
    /// Staff retired the alias PINs of the accounts merged into an account.
    AliasPinsRetired,
    /// Staff gave a legacy customer record a new one-time customer PIN.
    CustomerPinReissued,
}

impl ChangeKind {
    pub(crate) const ALL: [ChangeKind; 19] = [
        ChangeKind::CustomerRegistered,
        ChangeKind::ContractorRegistered,
        ChangeKind::ContractorUpdated,
        ChangeKind::Associated,
        ChangeKind::PermissionsSet,
        ChangeKind::AssociateRemoved,
        ChangeKind::Left,
        ChangeKind::ApplicationLinked,
        ChangeKind::ApplicationUnlinked,
        ChangeKind::PinRead,
        ChangeKind::PinRotated,
        ChangeKind::PinLockoutCleared,
        ChangeKind::ContractorsMerged,
        ChangeKind::ManagerAppointed,
        ChangeKind::LegacyImported,
        ChangeKind::LegacyCustomerLinked,
        ChangeKind::Seeded,
        ChangeKind::AliasPinsRetired,
        ChangeKind::CustomerPinReissued,
    ];

    /// The name stored in the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::CustomerRegistered => "customer_registered",
            ChangeKind::ContractorRegistered => "contractor_registered",
            ChangeKind::ContractorUpdated => "contractor_updated",
            ChangeKind::Associated => "associated",
            ChangeKind::PermissionsSet => "permissions_set",
            ChangeKind::AssociateRemoved => "associate_removed",
            ChangeKind::Left => "left",
            ChangeKind::ApplicationLinked => "application_linked",
            ChangeKind::ApplicationUnlinked => "application_unlinked",
            ChangeKind::PinRead => "pin_read",
            ChangeKind::PinRotated => "pin_rotated",
            ChangeKind::PinLockoutCleared => "pin_lockout_cleared",
            ChangeKind::ContractorsMerged => "contractors_merged",
            ChangeKind::ManagerAppointed => "manager_appointed",
            ChangeKind::LegacyImported => "legacy_imported",
            ChangeKind::LegacyCustomerLinked => "legacy_customer_linked",
            ChangeKind::Seeded => "seeded",
            ChangeKind::AliasPinsRetired => "alias_pins_retired",
            ChangeKind::CustomerPinReissued => "customer_pin_reissued",
        }
    }

    /// The kind stored as `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub revision: Revision,
    pub time: DateTime<Utc>,
    pub kind: ChangeKind,
    pub actor: Actor,
    pub contractor_id: Option<String>,
    pub customer_id: Option<String>,
    pub permissions_before: Option<PermissionSet>,
    pub permissions_after: Option<PermissionSet>,
    pub expire_time: Option<DateTime<Utc>>,
    pub application_id: Option<String>,
    /// The accounts a merge absorbed into `contractor_id`.
    pub absorbed_contractor_ids: Vec<String>,
    /// What a bulk change (an import run) did, in words.
    pub detail: Option<String>,
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    pub reason: mandate_domain::decision::Reason,
    /// The account that decided it, if any.
    pub contractor_id: Option<String>,
    /// The decision reflects every change up to at least this revision.
    pub revision: Revision,
}

/// An application a customer may act on, and the account it acts through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessibleApplication {
    pub application_id: String,
    pub contractor_id: String,
}

/// A customer account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub customer_id: String,
    pub external_subject: String,
    pub display_name: String,
    pub email: String,
    pub create_time: DateTime<Utc>,
}

impl From<customer::Model> for Customer {
    fn from(m: customer::Model) -> Self {
        Self {
            customer_id: m.customer_id,
            external_subject: m.external_subject,
            display_name: m.display_name,
            email: m.email,
            create_time: m.create_time,
        }
    }
}

/// A professional/contractor account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contractor {
    pub contractor_id: String,
    pub details: ContractorDetails,
    /// The surviving account when staff merged this one into it.
    pub merged_into: Option<String>,
    /// The previous permit system's contact this account was imported from.
    pub legacy_contractor_id: Option<String>,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

impl From<contractor::Model> for Contractor {
    fn from(m: contractor::Model) -> Self {
        Self {
            contractor_id: m.contractor_id,
            details: ContractorDetails {
                business_name: m.business_name,
                contact: Contact {
                    name: m.contact_name,
                    phone: m.contact_phone,
                    email: m.contact_email,
                },
                mailing_address: MailingAddress {
                    street: m.street,
                    city: m.city,
                    province: m.province,
                    postal_code: m.postal_code,
                    country: m.country,
                },
            },
            merged_into: m.merged_into,
            legacy_contractor_id: m.legacy_contractor_id,
            create_time: m.create_time,
            update_time: m.update_time,
        }
    }
}

/// A customer's membership in an account, seen from the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub contractor: Contractor,
    pub permissions: PermissionSet,
    pub expire_time: Option<DateTime<Utc>>,
    pub associate_time: DateTime<Utc>,
}

/// A customer's membership in an account, seen from the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Associate {
    pub customer: Customer,
    pub permissions: PermissionSet,
    pub expire_time: Option<DateTime<Utc>>,
    pub associate_time: DateTime<Utc>,
}

/// A PIN as it is stored: a keyed hash to find it by, a ciphertext to show it to a Manager.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedPin {
    /// Hex HMAC-SHA256 of the canonical PIN.
    pub hash: String,
    /// Nonce, ciphertext and tag of the canonical PIN.
    pub ciphertext: Vec<u8>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next_page_token: Option<String>,
}
