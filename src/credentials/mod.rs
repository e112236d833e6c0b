//! Who may call: client systems' API keys and registered client certificates (`keys`), the
//! scope each RPC needs (`scopes`), and the PIN vault that hashes and seals PINs under the
//! server's secret (`vault`).

pub mod keys;
pub mod scopes;
pub mod vault;
