//! Building and running the server: bind first (port 0 allowed), then serve until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use mandate_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::config::Settings;
use crate::pb::contractor_service_server::ContractorServiceServer;
use crate::pb::identity_service_server::IdentityServiceServer;
use crate::pb::permission_service_server::PermissionServiceServer;
use crate::secrets::{PinVault, SecretError, load_secret};
use crate::services::{ContractorApi, IdentityApi, PermissionApi, Shared, State};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(
        "the PIN secret differs from the one this database was set up with: every stored PIN \
         would be unreadable; configure the original MANDATE_PIN_SECRET or secret file"
    )]
    WrongSecret,
    #[error("cannot open the database: {0}")]
    Store(#[from] mandate_store::Error),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("the server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// A server bound to its address, with its database migrated, ready to serve.
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    state: Shared,
}

impl Application {
    /// Loads the PIN secret, opens and migrates the database, and binds the listen address.
    pub async fn build(settings: &Settings) -> Result<Self, StartupError> {
        let secret = load_secret(settings)?;
        let store = Store::connect(&settings.database_url, settings.store_options()).await?;
        store.migrate().await?;
        let vault = PinVault::new(&secret);
        if !store.matches_key_fingerprint(&vault.fingerprint()).await? {
            return Err(StartupError::WrongSecret);
        }
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| StartupError::Bind {
                    address: settings.listen,
                    source,
                })?;
        let address = listener.local_addr().map_err(|source| StartupError::Bind {
            address: settings.listen,
            source,
        })?;
        Ok(Self {
            listener,
            address,
            state: Arc::new(State {
                store,
                vault,
                stopping: watch::Sender::new(false),
            }),
        })
    }

    /// The address actually bound (the real port when port 0 was asked for).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until SIGINT or SIGTERM, then lets calls in flight finish.
    pub async fn run_until_stopped(self) -> Result<(), StartupError> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `stop` completes, then lets calls in flight finish.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send,
    ) -> Result<(), StartupError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<IdentityServiceServer<IdentityApi>>()
            .await;
        health
            .set_serving::<ContractorServiceServer<ContractorApi>>()
            .await;
        health
            .set_serving::<PermissionServiceServer<PermissionApi>>()
            .await;
        let descriptors = [
            crate::pb::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ];
        let mut v1 = tonic_reflection::server::Builder::configure();
        let mut v1alpha = tonic_reflection::server::Builder::configure();
        for set in descriptors {
            v1 = v1.register_encoded_file_descriptor_set(set);
            v1alpha = v1alpha.register_encoded_file_descriptor_set(set);
        }
        let state = self.state.clone();
        let stop = async move {
            stop.await;
            tracing::info!("stopping: finishing calls in flight");
            state.stopping.send_replace(true);
        };
        tracing::info!(address = %self.address, "serving mandate.v1");
        Server::builder()
            .trace_fn(|request| tracing::info_span!("rpc", path = %request.uri().path()))
            .add_service(health_service)
            .add_service(v1.build_v1()?)
            .add_service(v1alpha.build_v1alpha()?)
            .add_service(IdentityServiceServer::new(IdentityApi(self.state.clone())))
            .add_service(ContractorServiceServer::new(ContractorApi(
                self.state.clone(),
            )))
            .add_service(PermissionServiceServer::new(PermissionApi(self.state)))
            .serve_with_incoming_shutdown(
                // No Nagle delay: a reply's frames leave as soon as they are written.
                TcpIncoming::from(self.listener).with_nodelay(Some(true)),
                stop,
            )
            .await?;
        tracing::info!("stopped");
        Ok(())
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot watch for SIGTERM; stop with Ctrl-C");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// Applies pending migrations to the configured database (`mandate migrate`).
pub async fn migrate(settings: &Settings) -> Result<(), StartupError> {
    let store = Store::connect(&settings.database_url, settings.store_options()).await?;
    store.migrate().await?;
    tracing::info!("migrations applied");
    Ok(())
}
