//! The gRPC listener's TLS configuration, built from the settings.

use std::path::Path;
use std::time::Duration;

use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::settings::tls::{ClientAuth, TlsSettings};

/// The listener's TLS configuration, or `None` for plain HTTP/2; checked by building it, so a
/// wrong file stops the server at start-up. A TLS handshake must end within `handshake`.
pub fn server_config(
    settings: &TlsSettings,
    handshake: Duration,
) -> Result<Option<ServerTlsConfig>, String> {
    let (cert, key) = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) if settings.tls_client_ca.is_none() => return Ok(None),
        (None, None) => {
            return Err("--tls-client-ca needs --tls-cert and --tls-key".to_owned());
        }
        _ => return Err("TLS needs both --tls-cert and --tls-key".to_owned()),
    };
    let mut config = ServerTlsConfig::new()
        .identity(Identity::from_pem(read(cert)?, read(key)?))
        .timeout(handshake);
    if let Some(authorities) = &settings.tls_client_ca {
        config = config
            .client_ca_root(Certificate::from_pem(read(authorities)?))
            .client_auth_optional(settings.tls_client_auth == ClientAuth::Optional);
    }
    Server::builder()
        .tls_config(config.clone())
        .map_err(|err| format!("the TLS certificate or key is not usable: {err}"))?;
    Ok(Some(config))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()))
}
