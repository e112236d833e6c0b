//! TLS on the gRPC listener, and mutual TLS: a client certificate signed by one of the
//! configured authorities, and registered for a client system (`mandate keys create
//! --certificate`), stands for that client system instead of an API key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

/// How the listener uses TLS.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsSettings {
    /// The certificate chain the server presents, as PEM; with `--tls-key`, the listener speaks
    /// TLS only.
    #[arg(long, global = true, env = "MANDATE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of `--tls-cert`, as PEM.
    #[arg(long, global = true, env = "MANDATE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// The certificates, as PEM, of the authorities that sign client certificates: turns on
    /// mutual TLS.
    #[arg(long, global = true, env = "MANDATE_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,

    /// With `--tls-client-ca`: whether every connection must present a client certificate
    /// (`required`), or may come without one and authenticate with an API key (`optional`).
    #[arg(
        long,
        global = true,
        env = "MANDATE_TLS_CLIENT_AUTH",
        value_enum,
        default_value_t
    )]
    pub tls_client_auth: ClientAuth,
}

/// The `--tls-client-auth` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ClientAuth {
    /// A connection without a certificate from a configured authority is refused.
    #[default]
    Required,
    /// A certificate is checked when presented; without one, calls need an API key.
    Optional,
}

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
