//! Mandate's rules, free of I/O: who may act for which professional/contractor account, with
//! which permission, and what makes an account, a customer or a PIN valid.
//!
//! Every value that crosses this crate's edge is parsed into a validated type, so an invalid PIN,
//! email or postal code cannot exist past it.

pub mod application;
pub mod client;
pub mod contractor;
pub mod customer;
pub mod decision;
mod error;
pub mod legacy;
pub mod lockout;
pub mod membership;
pub mod paging;
pub mod permission;
pub mod pin;
mod text;

pub use error::{Error, FieldViolation, Result};
