//! Where a plain-HTTP listener listens.

use std::fmt;
use std::net::SocketAddr;

/// Where the metrics and probes listen, or nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpListen {
    Off,
    At(SocketAddr),
}

impl std::str::FromStr for HttpListen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        text.parse().map(Self::At).map_err(|_| {
            format!("`{text}` is neither an address (HOST:PORT, such as 0.0.0.0:9464) nor `off`")
        })
    }
}

impl fmt::Display for HttpListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::At(address) => address.fmt(f),
        }
    }
}
