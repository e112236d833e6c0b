//! How connections are bounded.

use std::time::Duration;

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// The most connections open at once; past it a newcomer evicts the oldest connection that
    /// has not started a call, or is closed itself.
    pub max_connections: usize,
    /// How long a new connection may take to start its first call.
    pub handshake_timeout: Duration,
    /// How long a connection may stay open with no call in flight.
    pub idle_timeout: Duration,
}
