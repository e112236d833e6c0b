//! What an operator watches: the server's metrics in the OpenMetrics text format that
//! Prometheus scrapes (`GET /metrics`, on `--metrics-listen`), and the plain-HTTP probes, on a
//! listener of their own (`--probe-listen`), so that no number of scrapers can crowd them out:
//!
//! - `GET /healthz`: 200 while the process serves (liveness);
//! - `GET /readyz`: 200 while the database answers and the server is not stopping, 503
//!   otherwise (readiness, the same truth as gRPC Health).
//!
//! A probe's answer closes its connection, so that no client holds a place on the probe
//! listener between two probes: the only connections there that last are ones that have not
//! asked yet, and a newcomer displaces the oldest of those.
//!
//! Calls are counted by the [`crate::observe::Observe`] layer under the names other gRPC
//! servers use (`grpc_server_started_total`, `grpc_server_handled_total`,
//! `grpc_server_handling_seconds`); what only Mandate knows is named `mandate_…`. Series read
//! from elsewhere (the cache, the pool, the change tail, open feeds) are read at each scrape.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use mandate_domain::decision::Reason;
use mandate_domain::permission::Permission;
use mandate_store::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};
use tonic::Code;

use crate::convert;
use crate::denials::Denials;
use crate::services::Feeds;

/// The content type of `/metrics`.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A call's method, as the `grpc_service` and `grpc_method` labels. Calls to a path that names
/// no served method share one label set, so that a caller cannot grow the series without bound.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    grpc_service: Arc<String>,
    grpc_method: Arc<String>,
}

impl fmt::Display for MethodLabels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.grpc_service, self.grpc_method)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    grpc_service: Arc<String>,
    grpc_method: Arc<String>,
    grpc_code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    permission: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

/// Why a call was refused before it reached its service.
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    /// No credential, or one that is unknown, revoked or expired.
    Unauthenticated,
    /// A live credential without the scope the RPC needs.
    MissingScope,
    /// The server had `--max-calls` in flight.
    Overloaded,
    /// The database did not answer within `--database-wait-ms`.
    DatabaseWait,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::MissingScope => "missing_scope",
            Self::Overloaded => "overloaded",
            Self::DatabaseWait => "database_wait",
        }
    }
}

/// Why a PIN entry was refused.
#[derive(Debug, Clone, Copy)]
pub enum PinRefusal {
    /// The PIN matched nothing: one attempt of the customer's allowance spent.
    Wrong,
    /// The customer is locked out: the PIN was not looked at.
    LockedOut,
    /// The client system's wrong-PIN budget is spent and the customer has no standing: the PIN
    /// was not looked at.
    ClientThrottled,
}

/// The server's metrics, registered once; shared by the layers and services that count.
pub struct Metrics {
    registry: Registry,
    methods: HashMap<String, MethodLabels>,
    unknown: MethodLabels,
    started: Family<MethodLabels, Counter>,
    handled: Family<HandledLabels, Counter>,
    handling: Family<MethodLabels, Histogram, fn() -> Histogram>,
    decisions: Family<DecisionLabels, Counter>,
    refused: Family<CauseLabels, Counter>,
    pins_refused: Family<CauseLabels, Counter>,
    write_waits: Histogram,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Call latencies: 0.1 ms to about 6.6 s, doubling (past the default database wait, 5 s).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Metrics {
    /// Registers every series; `descriptors` are the encoded descriptor sets of the services
    /// served, whose methods become the `grpc_method` labels.
    pub fn new(descriptors: &[&[u8]], live: Live) -> Self {
        let mut methods = HashMap::new();
        for set in descriptors {
            let Ok(set) = prost_types::FileDescriptorSet::decode(*set) else {
                continue;
            };
            for file in set.file {
                let package = file.package().to_owned();
                for service in file.service {
                    let service_name = Arc::new(format!("{package}.{}", service.name()));
                    for method in service.method {
                        methods.insert(
                            format!("/{service_name}/{}", method.name()),
                            MethodLabels {
                                grpc_service: service_name.clone(),
                                grpc_method: Arc::new(method.name().to_owned()),
                            },
                        );
                    }
                }
            }
        }
        for service in [
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ] {
            methods.insert(
                format!("/{service}/ServerReflectionInfo"),
                MethodLabels {
                    grpc_service: Arc::new(service.to_owned()),
                    grpc_method: Arc::new("ServerReflectionInfo".to_owned()),
                },
            );
        }
        let unknown = MethodLabels {
            grpc_service: Arc::new("unknown".to_owned()),
            grpc_method: Arc::new("unknown".to_owned()),
        };
        let metrics = Self {
            registry: Registry::default(),
            methods,
            unknown,
            started: Family::default(),
            handled: Family::default(),
            handling: Family::new_with_constructor(latency_histogram),
            decisions: Family::default(),
            refused: Family::default(),
            pins_refused: Family::default(),
            write_waits: latency_histogram(),
        };
        metrics.register(live)
    }

    fn register(mut self, live: Live) -> Self {
        let registry = &mut self.registry;
        registry.register(
            "grpc_server_started",
            "RPCs started on the server",
            self.started.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "RPCs completed on the server, by status code (CANCELLED: the client went away)",
            self.handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Time from an RPC's arrival to its status (a stream's: to its end)",
            self.handling.clone(),
        );
        registry.register(
            "mandate_decisions",
            "Permission checks answered, by permission and reason (batch items each count)",
            self.decisions.clone(),
        );
        registry.register(
            "mandate_refused_calls",
            "Calls refused by cause: before their service ran (unauthenticated, missing_scope, \
             overloaded), or cut off after the database wait (database_wait)",
            self.refused.clone(),
        );
        registry.register(
            "mandate_pin_entries_refused",
            "PIN entries refused: wrong_pin, or locked_out (the customer's lockout in force)",
            self.pins_refused.clone(),
        );
        registry.register(
            "mandate_db_write_wait_seconds",
            "Time a write waited to begin its transaction: for a pooled connection, then BEGIN \
             (on SQLite, the write lock too)",
            self.write_waits.clone(),
        );
        registry.register_collector(Box::new(live));
        self
    }

    /// The labels of the method at `path`.
    pub fn method(&self, path: &str) -> MethodLabels {
        self.methods
            .get(path)
            .cloned()
            .unwrap_or_else(|| self.unknown.clone())
    }

    /// A call to `method` began.
    pub fn call_started(&self, method: &MethodLabels) {
        self.started.get_or_create(method).inc();
    }

    /// A call to `method` answered `code` after `elapsed`.
    pub fn call_handled(&self, method: &MethodLabels, code: Code, elapsed: Duration) {
        self.handled
            .get_or_create(&HandledLabels {
                grpc_service: method.grpc_service.clone(),
                grpc_method: method.grpc_method.clone(),
                grpc_code: code_name(code),
            })
            .inc();
        self.handling
            .get_or_create(method)
            .observe(elapsed.as_secs_f64());
    }

    /// A check was answered for `reason`.
    pub fn decided(&self, permission: Permission, reason: Reason) {
        self.decisions
            .get_or_create(&DecisionLabels {
                permission: convert::permission(permission).as_str_name(),
                reason: convert::reason(reason).as_str_name(),
            })
            .inc();
    }

    /// A call was refused for `refusal`; how many have been refused for it, this one included.
    pub fn refused(&self, refusal: Refusal) -> u64 {
        self.refused
            .get_or_create(&CauseLabels {
                cause: refusal.label(),
            })
            .inc()
            + 1
    }

    /// A PIN entry was refused.
    pub fn pin_refused(&self, refusal: PinRefusal) {
        let cause = match refusal {
            PinRefusal::Wrong => "wrong_pin",
            PinRefusal::LockedOut => "locked_out",
            PinRefusal::ClientThrottled => "client_throttled",
        };
        self.pins_refused
            .get_or_create(&CauseLabels { cause })
            .inc();
    }

    /// A write waited `wait` to begin its transaction.
    pub fn write_waited(&self, wait: Duration) {
        self.write_waits.observe(wait.as_secs_f64());
    }

    /// Every series, in the OpenMetrics text format.
    pub fn render(&self) -> Result<String, fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The series read at each scrape from what keeps them.
pub struct Live {
    pub store: Store,
    pub feeds: Arc<Feeds>,
    pub denials: Arc<Denials>,
}

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let cache = self.store.cache_stats();
        counter(
            &mut encoder,
            "mandate_cache_hits",
            "Checks answered from the check cache",
            cache.hits,
        )?;
        counter(
            &mut encoder,
            "mandate_cache_misses",
            "Checks the check cache could not answer, read from the database",
            cache.misses,
        )?;
        gauge(
            &mut encoder,
            "mandate_cache_entries",
            "Grants held in the check cache",
            i64::try_from(cache.entries).unwrap_or(i64::MAX),
        )?;
        let pool = self.store.pool_stats();
        let connections = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "mandate_db_pool_connections",
            "Database connections open, by state (in_use, idle)",
            None,
            connections.metric_type(),
        )?;
        for (state, count) in [
            ("in_use", pool.open.saturating_sub(pool.idle)),
            ("idle", pool.idle),
        ] {
            ConstGauge::new(i64::from(count)).encode(family.encode_family(&[("state", state)])?)?;
        }
        gauge(
            &mut encoder,
            "mandate_db_pool_max_connections",
            "The most database connections this server opens (--database-pool-size)",
            i64::from(pool.max),
        )?;
        gauge(
            &mut encoder,
            "mandate_watch_streams_open",
            "WatchChanges streams open",
            i64::from(self.feeds.open_count()),
        )?;
        gauge(
            &mut encoder,
            "mandate_change_tail_revision",
            "The latest revision this server's change tail has applied to its cache",
            self.store.applied_revision(),
        )?;
        let trail = self.denials.stats();
        counter(
            &mut encoder,
            "mandate_denied_checks_dropped",
            "Denied checks not written to the trail: its queue was full, or the database \
             refused their rows",
            trail.dropped,
        )?;
        counter(
            &mut encoder,
            "mandate_denied_check_rows_written",
            "Rows this server wrote to the denied-check trail (identical denials within a \
             window share one row)",
            trail.written,
        )?;
        counter(
            &mut encoder,
            "mandate_denied_checks_folded",
            "Denied checks written as part of an identical one's row instead of a row of their \
             own",
            trail.folded,
        )?;
        counter(
            &mut encoder,
            "mandate_denied_check_write_failures",
            "Writes to the denied-check trail the database refused (their rows are dropped)",
            trail.failures,
        )?;
        counter(
            &mut encoder,
            "mandate_denied_check_rows_pruned",
            "Rows this server deleted from the denied-check trail for being older than the \
             retention",
            trail.pruned,
        )?;
        gauge(
            &mut encoder,
            "mandate_denied_check_rows",
            "Rows in the denied-check trail: as counted at the last pruning (hourly), plus \
             those this server wrote since",
            i64::try_from(trail.rows).unwrap_or(i64::MAX),
        )
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), fmt::Error> {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

/// A status code as gRPC spells it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// What the listeners answer from.
#[derive(Debug, Clone)]
pub struct Probes {
    pub metrics: Arc<Metrics>,
    /// Whether the database answered the last health probe.
    pub database: Arc<AtomicBool>,
    pub stopping: watch::Receiver<bool>,
}

/// What a plain-HTTP listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routes {
    /// `/metrics`, for scrapers.
    Metrics,
    /// `/healthz` and `/readyz`, each answer closing its connection.
    Probes,
}

/// A connection that has not sent a whole request head within this is closed: a client that
/// connects and says nothing (or a byte a minute) holds no socket for long.
const HEADER_WAIT: Duration = Duration::from_secs(5);
/// The longest any connection stays open, however it is used; scrapers reconnect.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// The most connections open at once, so that a flood cannot take the file descriptors the gRPC
/// listener shares: past it, a newcomer closes the oldest connection that has sent nothing.
const MAX_CONNECTIONS: usize = 64;
/// How long accepting pauses after the process ran out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `routes` over HTTP/1.1 on `listener` until `stop` completes.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    probes: Probes,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let mut connections = JoinSet::new();
    // Oldest first: each task's handle, and whether its client has sent a request yet.
    let mut open: VecDeque<(AbortHandle, Arc<AtomicBool>)> = VecDeque::new();
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "the metrics listener cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        open.retain(|(task, _)| !task.is_finished());
        if open.len() >= MAX_CONNECTIONS {
            // Room for the newcomer: the oldest connection that has not said anything goes
            // (a probe or a scraper speaks at once); when every one has, the newcomer goes.
            match open
                .iter()
                .position(|(_, spoke)| !spoke.load(Ordering::Relaxed))
            {
                Some(silent) => {
                    if let Some((task, _)) = open.remove(silent) {
                        task.abort();
                    }
                }
                None => {
                    drop(stream);
                    continue;
                }
            }
        }
        let spoke = Arc::new(AtomicBool::new(false));
        let heard = spoke.clone();
        let probes = probes.clone();
        let task = connections.spawn(async move {
            let answer = service_fn(move |request: Request<Incoming>| {
                heard.store(true, Ordering::Relaxed);
                let response = probes.answer(routes, request.method(), request.uri().path());
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_WAIT)
                .serve_connection(TokioIo::new(stream), answer);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
        });
        open.push_back((task, spoke));
    }
}

impl Probes {
    fn answer(&self, routes: Routes, method: &Method, path: &str) -> Response<String> {
        let mut response = self.route(routes, method, path);
        if routes == Routes::Probes {
            // Nobody keeps a place on the probe listener between two probes.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    fn route(&self, routes: Routes, method: &Method, path: &str) -> Response<String> {
        if method != Method::GET && method != Method::HEAD {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        }
        match (routes, path) {
            (Routes::Metrics, "/metrics") => match self.metrics.render() {
                Ok(text) => {
                    let mut response = Response::new(text);
                    response
                        .headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
                    response
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot render the metrics");
                    plain(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "cannot render the metrics\n",
                    )
                }
            },
            (Routes::Probes, "/healthz") => plain(StatusCode::OK, "ok\n"),
            (Routes::Probes, "/readyz") if *self.stopping.borrow() => {
                plain(StatusCode::SERVICE_UNAVAILABLE, "stopping\n")
            }
            (Routes::Probes, "/readyz") if self.database.load(Ordering::Relaxed) => {
                plain(StatusCode::OK, "ready\n")
            }
            (Routes::Probes, "/readyz") => plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database does not answer\n",
            ),
            (Routes::Metrics, _) => plain(
                StatusCode::NOT_FOUND,
                "not found: /metrics is served here; /healthz and /readyz on --probe-listen\n",
            ),
            (Routes::Probes, _) => plain(
                StatusCode::NOT_FOUND,
                "not found: /healthz and /readyz are served here; /metrics on --metrics-listen\n",
            ),
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<String> {
    let mut response = Response::new(text.to_owned());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

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
