//! Mandate: may this customer act for this professional/contractor account, with this
//! permission? The gRPC server, its configuration and its start-up; the rules live in
//! `mandate-domain` and the data in `mandate-store`.

mod alerts;
pub mod auth;
mod codec;
pub mod config;
pub mod config_report;
mod connections;
mod convert;
mod denials;
mod diagnose;
mod error;
pub mod keys;
pub mod legacy;
mod limits;
pub mod metrics;
mod middleware;
mod observe;
mod redact;
pub mod secrets;
pub mod seed;
mod services;
pub mod spreadsheet;
pub mod startup;
pub mod telemetry;
pub mod tls;

/// The generated `mandate.v1` messages, clients and servers.
pub mod pb {
    tonic::include_proto!("mandate.v1");

    /// The encoded descriptors of `proto/`, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/mandate_descriptor.bin"));
}

pub use auth::CUSTOMER_HEADER;
