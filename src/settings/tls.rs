//! TLS on the gRPC listener, and mutual TLS: a client certificate signed by one of the
//! configured authorities, and registered for a client system (`mandate keys create
//! --certificate`), stands for that client system instead of an API key.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

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
