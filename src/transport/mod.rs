//! The gRPC listener's sockets: bounded, guarded client connections (`connections`) and TLS
//! (`tls`).

pub mod connections;
pub mod tls;
