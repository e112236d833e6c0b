//! The metrics registry, in the OpenMetrics text format that Prometheus scrapes (served by
//! `crate::admin`). Calls are counted by the `Observe` layer under the names other gRPC
//! servers use (`grpc_server_started_total`, `grpc_server_handled_total`,
//! `grpc_server_handling_seconds`); what only Mandate knows is named `mandate_…`. Each part of
//! the server reports into it; series that a part keeps itself (the cache, the pool, the change
//! tail, open feeds, the denied-check trail) are read at each scrape by a collector the server
//! registers (`crate::server::live`). This module imports no other module of the server.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use prost::Message;
use tonic::Code;

/// A call's method, as the `grpc_service` and `grpc_method` labels, and the transport it came
/// by. Calls to a path that names no served method share one label set, so that a caller cannot
/// grow the series without bound.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    grpc_service: Arc<String>,
    grpc_method: Arc<String>,
    transport: &'static str,
}

/// How a call reached the server: the `transport` label of the call metrics. A call carries
/// it as a request extension when it came through the HTTP listener (`crate::gateway`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// gRPC over HTTP/2, on the gRPC listener.
    Grpc,
    /// gRPC-Web, on the HTTP listener.
    GrpcWeb,
    /// JSON over HTTP/1.1 or HTTP/2, on the HTTP listener.
    Http,
}

impl Transport {
    fn label(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::GrpcWeb => "grpc-web",
            Self::Http => "http",
        }
    }
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
    transport: &'static str,
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
    /// served, whose methods become the `grpc_method` labels, and `live` reads at each scrape
    /// the series the server's parts keep themselves.
    pub fn new(descriptors: &[&[u8]], live: Box<dyn Collector>) -> Self {
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
                                transport: Transport::Grpc.label(),
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
                    transport: Transport::Grpc.label(),
                },
            );
        }
        let unknown = MethodLabels {
            grpc_service: Arc::new("unknown".to_owned()),
            grpc_method: Arc::new("unknown".to_owned()),
            transport: Transport::Grpc.label(),
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

    fn register(mut self, live: Box<dyn Collector>) -> Self {
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
        registry.register_collector(live);
        self
    }

    /// The labels of the method at `path`, called by `transport`.
    pub fn method(&self, path: &str, transport: Transport) -> MethodLabels {
        let mut labels = self
            .methods
            .get(path)
            .cloned()
            .unwrap_or_else(|| self.unknown.clone());
        labels.transport = transport.label();
        labels
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
                transport: method.transport,
                grpc_code: code_name(code),
            })
            .inc();
        self.handling
            .get_or_create(method)
            .observe(elapsed.as_secs_f64());
    }

    /// A check of `permission` was answered for `reason` (each as the API spells it).
    pub fn decided(&self, permission: &'static str, reason: &'static str) {
        self.decisions
            .get_or_create(&DecisionLabels { permission, reason })
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
