//! `mandate probe`: a container's health check, with no HTTP client installed.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};

use crate::cli::CliError;
use crate::settings::Settings;
use crate::settings::listen::HttpListen;

/// `mandate probe`: `GET /readyz` on the probe listener, over plain HTTP/1.1.
pub fn run(settings: &Settings) -> Result<(), CliError> {
    let HttpListen::At(mut address) = settings.probe_listen else {
        return Err(CliError::Usage(
            "the probe asks the probe listener, and MANDATE_PROBE_LISTEN is off".into(),
        ));
    };
    // A server listening on every interface answers on loopback.
    if address.ip().is_unspecified() {
        address.set_ip(match address {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    let failed =
        |err: std::io::Error| CliError::Failed(format!("the probe could not ask {address}: {err}"));
    let mut stream = TcpStream::connect_timeout(&address, PROBE_TIMEOUT).map_err(failed)?;
    stream
        .set_read_timeout(Some(PROBE_TIMEOUT))
        .map_err(failed)?;
    stream
        .set_write_timeout(Some(PROBE_TIMEOUT))
        .map_err(failed)?;
    write!(
        stream,
        "GET /readyz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .map_err(failed)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(failed)?;
    let status = answer.lines().next().unwrap_or_default();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
    if status.split_whitespace().nth(1) == Some("200") {
        println!("{body}");
        Ok(())
    } else {
        Err(CliError::Failed(format!("not ready: {status}: {body}")))
    }
}

/// How long `mandate probe` waits for the server.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
