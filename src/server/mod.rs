//! Building and running the server: open the store and the PIN vault, bind the listeners first
//! (port 0 allowed), start the background tasks, then serve until told to stop, and stop
//! everything in order.

mod diagnose;
pub mod live;
mod tasks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mandate_store::{DeniedCheck, Store};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::server::NamedService;
use tonic::transport::{Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::util::BoxCloneSyncService;
use tower_http::cors::CorsLayer;

use crate::admin::{Probes, Routes};
use crate::api::alerts::PinFailures;
use crate::api::denials::{Denials, prune_denials, write_denials};
use crate::api::{ContractorApi, Feeds, IdentityApi, PermissionApi, Shared, State};
use crate::credentials::keys::{self, KEY_RELOAD, KeyError, KeyRing};
use crate::credentials::vault::{PinVault, SecretError, load_secret};
use crate::gateway::Gateway;
use crate::middleware::AroundLayer;
use crate::middleware::activity::TrackActivity;
use crate::middleware::authenticate::Authenticate;
use crate::middleware::limits::CallLimits;
use crate::middleware::observe::Observe;
use crate::pb::contractor_service_server::ContractorServiceServer;
use crate::pb::identity_service_server::IdentityServiceServer;
use crate::pb::permission_service_server::PermissionServiceServer;
use crate::server::live::Live;
use crate::server::tasks::Tasks;
use crate::settings::Settings;
use crate::settings::limits::ConnectionLimits;
use crate::settings::listen::HttpListen;
use crate::shutdown::{Shutdown, Stage};
use crate::telemetry::metrics::Metrics;
use crate::transport::connections;

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
    #[error(
        "the PIN secret file {file} is missing, but this database was set up with a PIN secret: \
         every stored PIN would be unreadable with a new one. Restore {file} from the backup \
         taken with the database (no new secret was written)"
    )]
    SecretMissing { file: String },
    #[error(
        "the database file {file} is missing, but {traces} beside it show that a database was \
         there: it may have been deleted or moved, and starting would create an empty one. \
         Restore it from a backup; or, to start a new, empty database on purpose, remove {traces}"
    )]
    DatabaseMissing { file: String, traces: String },
    #[error("cannot open the database: {0}")]
    Database(String),
    #[error("the database failed: {0}")]
    Store(#[from] mandate_store::Error),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error(
        "the HTTP listener (--http-listen {0}) serves plain HTTP, while the gRPC listener uses \
         TLS: keep it on loopback (127.0.0.1) behind a TLS-terminating proxy, or turn it off \
         with --http-listen off"
    )]
    PlainHttp(SocketAddr),
    #[error("the HTTP listener: {0}")]
    Http(String),
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("the server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// A server bound to its address, with its database migrated, ready to serve.
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    /// The metrics and probes listener, unless turned off.
    metrics_listener: Option<TcpListener>,
    probe_listener: Option<TcpListener>,
    probe_address: Option<SocketAddr>,
    metrics_address: Option<SocketAddr>,
    /// The HTTP/JSON and gRPC-Web listener, unless turned off, and its browser origins.
    http_listener: Option<TcpListener>,
    http_address: Option<SocketAddr>,
    cors: Option<CorsLayer>,
    limits: ConnectionLimits,
    keepalive: Duration,
    grace: Duration,
    database_wait: Duration,
    reflection: bool,
    keys: Arc<KeyRing>,
    max_calls: usize,
    max_streams: u32,
    tls: Option<ServerTlsConfig>,
    state: Shared,
    /// The queue of denied checks, for the task that writes them.
    denied: mpsc::Receiver<DeniedCheck>,
    /// How long identical denied checks fold into one row, and how long rows are kept.
    denied_window: Duration,
    denied_retention: Duration,
    /// The one stop signal (`crate::shutdown`).
    shutdown: Shutdown,
}

impl Application {
    /// Binds the listen address, loads the PIN secret, and opens and migrates the database.
    pub async fn build(settings: &Settings) -> Result<Self, StartupError> {
        require_existing_database(settings)?;
        let limits = settings.connection_limits();
        let tls = crate::transport::tls::server_config(&settings.tls, limits.handshake_timeout)
            .map_err(StartupError::Tls)?;
        if let (Some(_), HttpListen::At(address)) = (&tls, settings.http_listen)
            && !address.ip().is_loopback()
        {
            return Err(StartupError::PlainHttp(address));
        }
        let cors = crate::gateway::cors(&settings.cors_origins).map_err(StartupError::Http)?;
        // The port first: a server that cannot listen creates no database, secret or key file.
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| StartupError::Bind {
                    address: settings.listen,
                    source,
                })?;
        let metrics_listener = bind_http(settings.metrics_listen).await?;
        let metrics_address = metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok());
        let probe_listener = bind_http(settings.probe_listen).await?;
        let probe_address = probe_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok());
        let http_listener = bind_http(settings.http_listen).await?;
        let http_address = http_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok());
        // The database file first, then its secret file: a replica starting at the same moment
        // never sees a secret file without its database.
        let store = connect(settings).await?;
        store.migrate().await?;
        let secret = load_secret_for(settings, &store).await?;
        let vault = checked_vault(&store, &secret).await?;
        let key_file = settings.bootstrap_key_file();
        if let Some(key) = keys::bootstrap(&store, &key_file).await? {
            tracing::info!(
                file = %key_file.display(),
                key_id = %key.key_id,
                "no API key existed: created a bootstrap key with every scope; create keys for \
                 each client system with `mandate keys create` and revoke this one"
            );
        }
        store.start_changes().await?;
        let keys = Arc::new(KeyRing::default());
        keys.reload(&store).await?;
        let (denials, denied) = Denials::new(settings.denied_check_queue);
        let denials = Arc::new(denials);
        let feeds = Arc::new(Feeds::new(settings.max_feeds_per_client));
        let shutdown = Shutdown::default();
        let signal = shutdown.signal();
        let metrics = Arc::new(Metrics::new(
            &DESCRIPTORS,
            Box::new(Live {
                store: store.clone(),
                feeds: feeds.clone(),
                denials: denials.clone(),
            }),
        ));
        // Weak: the metrics read the store, which must not keep them alive in turn.
        let observer = Arc::downgrade(&metrics);
        store.observe_write_waits(Box::new(move |wait| {
            if let Some(metrics) = observer.upgrade() {
                metrics.write_waited(wait);
            }
        }));
        let address = listener.local_addr().map_err(|source| StartupError::Bind {
            address: settings.listen,
            source,
        })?;
        Ok(Self {
            listener,
            address,
            shutdown,
            metrics_listener,
            probe_listener,
            probe_address,
            metrics_address,
            http_listener,
            http_address,
            cors,
            limits,
            keepalive: Duration::from_millis(settings.keepalive_ms),
            grace: Duration::from_millis(settings.shutdown_grace_ms),
            database_wait: Duration::from_millis(settings.database_wait_ms),
            reflection: settings.reflection,
            keys: keys.clone(),
            max_calls: usize::try_from(settings.max_calls).unwrap_or(usize::MAX),
            max_streams: settings.max_streams_per_connection,
            tls,
            denied,
            denied_window: Duration::from_secs(settings.denied_check_window_secs),
            denied_retention: Duration::from_secs(
                u64::from(settings.denied_check_retention_days) * 86_400,
            ),
            state: Arc::new(State {
                store,
                vault,
                lockout: settings.pin_lockout(),
                client_budget: settings.client_pin_budget(),
                feeds,
                pin_failures: Arc::new(PinFailures::new(
                    settings.pin_failure_alert,
                    Duration::from_secs(settings.pin_failure_window_secs),
                )),
                shutdown: signal,
                denials,
                metrics,
                database_answers: Arc::new(AtomicBool::new(true)),
                keys: keys.clone(),
            }),
        })
    }

    /// The store the server uses, for tests that inject faults into its connections.
    pub fn store(&self) -> Store {
        self.state.store.clone()
    }

    /// The live API keys the server checks calls against, for tests that reload them at once.
    pub fn keys(&self) -> Arc<KeyRing> {
        self.keys.clone()
    }

    /// The address actually bound (the real port when port 0 was asked for).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The address of the metrics and probes listener, unless it is off.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_address
    }

    /// Where the HTTP/JSON API is served, when it is (the real port when port 0 was asked for).
    pub fn http_address(&self) -> Option<SocketAddr> {
        self.http_address
    }

    /// Where the probes are served, when they are (the real port when port 0 was asked for).
    pub fn probe_address(&self) -> Option<SocketAddr> {
        self.probe_address
    }

    /// Serves until SIGINT or SIGTERM, then lets calls in flight finish.
    pub async fn run_until_stopped(self) -> Result<(), StartupError> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `stop` completes, then lets calls in flight finish for the grace period
    /// and cuts the connections still open after it.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send,
    ) -> Result<(), StartupError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        let descriptors = DESCRIPTORS;
        let mut v1 = tonic_reflection::server::Builder::configure();
        let mut v1alpha = tonic_reflection::server::Builder::configure();
        for set in descriptors {
            v1 = v1.register_encoded_file_descriptor_set(set);
            v1alpha = v1alpha.register_encoded_file_descriptor_set(set);
        }
        // The database answered as the server was built; the watch takes over from here.
        for service in SERVICES {
            health
                .set_service_status(service, ServingStatus::Serving)
                .await;
        }
        let shutdown = self.shutdown;
        let signal = shutdown.signal();
        let stage = |stage: Stage| {
            let signal = signal.clone();
            async move { signal.wait(stage).await }
        };
        // Every background task, and the stage of the stop at which it ends (see
        // `crate::shutdown` for the order).
        let mut tasks = Tasks::default();
        tasks.spawn(
            "database watch",
            watch_database(self.state.clone(), health, stage(Stage::Draining)),
        );
        tasks.spawn(
            "API key reload",
            reload_keys(
                self.state.clone(),
                self.keys.clone(),
                stage(Stage::Draining),
            ),
        );
        let listeners = [
            (self.metrics_listener, self.metrics_address, Routes::Metrics),
            (self.probe_listener, self.probe_address, Routes::Probes),
        ];
        for (listener, address, routes) in listeners {
            let Some(listener) = listener else { continue };
            let name = match routes {
                Routes::Metrics => "metrics listener",
                Routes::Probes => "probe listener",
            };
            match (address, routes) {
                (Some(address), Routes::Metrics) => {
                    tracing::info!(%address, "serving metrics over HTTP");
                }
                (Some(address), Routes::Probes) => {
                    tracing::info!(%address, "serving the probes over HTTP");
                }
                (None, _) => {}
            }
            tasks.spawn(
                name,
                crate::admin::serve(
                    listener,
                    routes,
                    Probes {
                        metrics: self.state.metrics.clone(),
                        database: self.state.database_answers.clone(),
                        shutdown: signal.clone(),
                    },
                    stage(Stage::Closing),
                ),
            );
        }
        {
            let (state, stop) = (self.state.clone(), stage(Stage::Closing));
            let window = self.denied_window;
            tasks.spawn("denied-check writer", async move {
                let store = state.store.clone();
                write_denials(store, &state.denials, self.denied, stop, window).await;
            });
        }
        {
            let (state, stop) = (self.state.clone(), stage(Stage::Draining));
            let retention = self.denied_retention;
            tasks.spawn("denied-check pruning", async move {
                prune_denials(state.store.clone(), &state.denials, retention, stop).await;
            });
        }
        {
            let (store, stop) = (self.state.store.clone(), stage(Stage::Draining));
            tasks.spawn(
                "change tail",
                async move { store.follow_changes(stop).await },
            );
        }
        {
            let (failures, stop) = (self.state.pin_failures.clone(), stage(Stage::Draining));
            tasks.spawn("PIN failure reports", async move {
                failures.report_every_window(stop).await;
            });
        }
        let stop = {
            let (shutdown, stop) = (&shutdown, stop);
            async move {
                stop.await;
                tracing::info!("stopping: finishing calls in flight");
                shutdown.advance(Stage::Draining);
            }
        };
        let cut = {
            let signal = signal.clone();
            move || {
                let signal = signal.clone();
                async move { signal.wait(Stage::Cutting).await }
            }
        };
        // One stack of layers and services for every transport: the gRPC listener serves it,
        // and the HTTP listener hands it the calls it transcodes.
        let layers = tower::ServiceBuilder::new()
            .layer(AroundLayer(Observe::new(self.state.metrics.clone())))
            .layer(AroundLayer(TrackActivity))
            .layer(AroundLayer(Authenticate {
                keys: self.keys.clone(),
                metrics: self.state.metrics.clone(),
            }))
            .layer(AroundLayer(CallLimits::new(
                self.database_wait,
                self.max_calls,
                self.state.metrics.clone(),
            )));
        let mut routes = tonic::service::Routes::builder();
        routes.add_service(health_service);
        if self.reflection {
            routes.add_service(v1.build_v1()?);
            routes.add_service(v1alpha.build_v1alpha()?);
        }
        routes
            .add_service(
                IdentityServiceServer::new(IdentityApi(self.state.clone()))
                    .max_decoding_message_size(MAX_REQUEST_BYTES),
            )
            .add_service(
                ContractorServiceServer::new(ContractorApi(self.state.clone()))
                    .max_decoding_message_size(MAX_REQUEST_BYTES),
            )
            .add_service(
                PermissionServiceServer::new(PermissionApi(self.state.clone()))
                    .max_decoding_message_size(MAX_REQUEST_BYTES),
            );
        let routes = routes.routes();
        if let Some(listener) = self.http_listener {
            let stack = BoxCloneSyncService::new(layers.service(routes.clone().prepare()));
            let gateway = Arc::new(Gateway::new(stack).map_err(StartupError::Http)?);
            if let Some(address) = self.http_address {
                tracing::info!(%address, "serving the HTTP/JSON API and gRPC-Web");
            }
            let draining = {
                let signal = signal.clone();
                move || {
                    let signal = signal.clone();
                    async move { signal.wait(Stage::Draining).await }
                }
            };
            tasks.spawn(
                "HTTP listener",
                crate::gateway::serve(
                    listener,
                    self.limits,
                    self.max_streams,
                    gateway,
                    self.cors,
                    cut.clone(),
                    draining,
                ),
            );
        }
        let incoming = connections::accept(self.listener, self.limits, cut);
        tracing::info!(address = %self.address, tls = self.tls.is_some(), "serving mandate.v1");
        let mut server = Server::builder();
        if let Some(tls) = self.tls {
            server = server.tls_config(tls)?;
        }
        let serve = server
            .max_concurrent_streams(Some(self.max_streams))
            .http2_keepalive_interval(Some(self.keepalive))
            .http2_keepalive_timeout(Some(self.keepalive.min(KEEPALIVE_TIMEOUT_MAX)))
            .layer(layers)
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, stop);
        tokio::pin!(serve);
        let grace = self.grace;
        let grace_over = async {
            signal.wait(Stage::Draining).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            served = &mut serve => served?,
            () = grace_over => {
                tracing::warn!(
                    grace_ms = grace.as_millis(),
                    "connections still open after the shutdown grace period: closing them"
                );
                shutdown.advance(Stage::Cutting);
                // Cut connections end at their next poll; a task that never polls again is not
                // waited for.
                if let Ok(served) = tokio::time::timeout(CUT_WAIT, &mut serve).await {
                    served?;
                }
            }
        }
        // The window cut short by the stop is reported too; the tasks end (the denied checks
        // still queued are written) and are awaited; the pool closes last.
        self.state.pin_failures.report();
        shutdown.advance(Stage::Closing);
        tasks.join(grace).await;
        self.state.store.close(CUT_WAIT).await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The longest the server waits for a keep-alive ping's answer.
const KEEPALIVE_TIMEOUT_MAX: Duration = Duration::from_secs(20);
/// How long cut connections get to close, and the database pool to close, at the end.
const CUT_WAIT: Duration = Duration::from_secs(1);
/// The largest request any `mandate.v1` RPC takes: a full `CheckPermissions` batch (100 items
/// of at most about 350 bytes) fits; a larger message answers `OUT_OF_RANGE` unread, so no
/// request decodes into more than a few megabytes.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// The services served, as encoded descriptor sets: for reflection, and the metrics' method
/// labels.
const DESCRIPTORS: [&[u8]; 2] = [
    crate::pb::FILE_DESCRIPTOR_SET,
    tonic_health::pb::FILE_DESCRIPTOR_SET,
];
/// What Health reports on: the server as a whole, and each `mandate.v1` service.
const SERVICES: [&str; 4] = [
    "",
    <IdentityServiceServer<IdentityApi> as NamedService>::NAME,
    <ContractorServiceServer<ContractorApi> as NamedService>::NAME,
    <PermissionServiceServer<PermissionApi> as NamedService>::NAME,
];
/// How often the health check asks the database.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Keeps Health true to the database: `NOT_SERVING` while it does not answer within its wait
/// (or its SQLite file is gone), `SERVING` again as soon as it does. Ends when the server stops.
async fn watch_database(state: Shared, health: HealthReporter, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut serving = true;
    loop {
        let probe = state.store.within(state.store.probe()).await;
        if serving != probe.is_ok() {
            serving = probe.is_ok();
            state.database_answers.store(serving, Ordering::Relaxed);
            let status = match probe {
                Ok(()) => {
                    tracing::info!("health: the database answers again");
                    ServingStatus::Serving
                }
                Err(err) => {
                    tracing::warn!(error = %err, "health: the database does not answer");
                    ServingStatus::NotServing
                }
            };
            for service in SERVICES {
                health.set_service_status(service, status).await;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(PROBE_EVERY) => {}
            () = &mut stop => break,
        }
    }
    // A stopping server takes no new work: load balancers and probes hear it at once (as
    // `/readyz` says 503), while the calls in flight finish.
    for service in SERVICES {
        health
            .set_service_status(service, ServingStatus::NotServing)
            .await;
    }
}

/// Reloads the live API keys every `KEY_RELOAD`, so that keys created or revoked through any
/// replica take effect here within a second. While the database does not answer, the keys last
/// loaded stay in force. Ends when the server stops.
async fn reload_keys(state: Shared, keys: Arc<KeyRing>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut failing = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep(KEY_RELOAD) => {}
            () = &mut stop => return,
        }
        match keys.reload(&state.store).await {
            Ok(_) if failing => {
                tracing::info!("API keys reloaded again");
                failing = false;
            }
            Ok(_) => {}
            Err(err) if !failing => {
                tracing::warn!(error = %err, "cannot reload the API keys; the last ones loaded stay in force");
                failing = true;
                keys.announce();
            }
            Err(_) => keys.announce(),
        }
    }
}

/// Refuses to start on a missing SQLite file whose companions (its secret file, migration lock
/// or write-ahead log) show it existed: creating an empty database in its place would quietly
/// lose every account.
fn require_existing_database(settings: &Settings) -> Result<(), StartupError> {
    let Some(file) = settings.sqlite_file() else {
        return Ok(());
    };
    if file.exists() {
        return Ok(());
    }
    let traces: Vec<String> = [".secret", ".migrate-lock", "-wal", "-shm"]
        .iter()
        .map(|suffix| crate::settings::beside(&file, suffix))
        .filter(|trace| trace.exists())
        .map(|trace| trace.display().to_string())
        .collect();
    if traces.is_empty() {
        return Ok(());
    }
    Err(StartupError::DatabaseMissing {
        file: file.display().to_string(),
        traces: traces.join(" and "),
    })
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

/// Connects to the configured database; a failure names its cause as far as it can be found.
async fn connect(settings: &Settings) -> Result<Store, StartupError> {
    match Store::connect(&settings.database_url, settings.store_options()).await {
        Ok(store) => Ok(store),
        Err(err) => {
            let (url, _) = mandate_store::split_password(&settings.database_url);
            let wait = Duration::from_millis(settings.database_wait_ms);
            // The diagnosis resolves names and dials the database's address: blocking work.
            let cause = tokio::task::spawn_blocking(move || {
                crate::server::diagnose::database_failure(&url, &err.to_string(), wait)
            })
            .await
            .unwrap_or_else(|_| "the cause could not be found".to_owned());
            Err(StartupError::Database(cause))
        }
    }
}

/// Applies pending migrations to the configured database (`mandate migrate`).
pub async fn migrate(settings: &Settings) -> Result<(), StartupError> {
    open_store(settings).await?;
    tracing::info!("migrations applied");
    Ok(())
}

/// The PIN keys of `secret`, once the database confirms it is the secret it was set up with.
async fn checked_vault(
    store: &Store,
    secret: &crate::settings::Secret,
) -> Result<PinVault, StartupError> {
    let vault = PinVault::new(secret);
    if !store.matches_key_fingerprint(&vault.fingerprint()).await? {
        return Err(StartupError::WrongSecret);
    }
    Ok(vault)
}

/// The PIN keys configured, for the operator's commands that make PINs.
pub async fn open_vault(settings: &Settings, store: &Store) -> Result<PinVault, StartupError> {
    checked_vault(store, &load_secret_for(settings, store).await?).await
}

/// The configured PIN secret for `store`'s database. A secret file is made when there is none,
/// but not for a database set up with a secret already: a new one could open none of its PINs,
/// so the start is refused before anything is written.
async fn load_secret_for(
    settings: &Settings,
    store: &Store,
) -> Result<crate::settings::Secret, StartupError> {
    // The database is asked first and the file looked for after: a replica starting at the
    // same moment writes the file before it records the fingerprint.
    if settings.pin_secret.is_none()
        && let Some(file) = settings.pin_secret_path()
        && !file.exists()
        && store.has_key_fingerprint().await?
        && !file.exists()
    {
        return Err(StartupError::SecretMissing {
            file: file.display().to_string(),
        });
    }
    Ok(load_secret(settings)?)
}

/// The configured database as it is, not migrated, for commands that only read it.
pub async fn open_unmigrated(settings: &Settings) -> Result<Store, StartupError> {
    require_existing_database(settings)?;
    connect(settings).await
}

/// The configured database, migrated, for the operator's commands.
pub async fn open_store(settings: &Settings) -> Result<Store, StartupError> {
    require_existing_database(settings)?;
    let store = connect(settings).await?;
    store.migrate().await?;
    Ok(store)
}

/// Binds a plain-HTTP listener, unless it is off.
async fn bind_http(listen: HttpListen) -> Result<Option<TcpListener>, StartupError> {
    match listen {
        HttpListen::Off => Ok(None),
        HttpListen::At(address) => TcpListener::bind(address)
            .await
            .map(Some)
            .map_err(|source| StartupError::Bind { address, source }),
    }
}
