//! Mandate: may this customer act for this professional/contractor account, with this
//! permission? The gRPC server, its configuration and its start-up; the rules live in
//! `mandate-domain` and the data in `mandate-store`.

pub mod admin;
mod api;
pub mod cli;
pub mod credentials;
pub mod gateway;
mod middleware;
pub mod ops;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod transport;

/// The generated `mandate.v1` messages, clients and servers.
pub mod pb {
    tonic::include_proto!("mandate.v1");

    /// The encoded descriptors of `proto/`, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/mandate_descriptor.bin"));
}

pub use credentials::scopes::CUSTOMER_HEADER;
