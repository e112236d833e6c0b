//! sea-orm entities, one per table.

pub mod api_key;
pub mod application_link;
pub mod audit_event;
pub mod contractor;
pub mod customer;
pub mod denied_check;
pub mod legacy_application;
pub mod legacy_customer;
pub mod membership;
