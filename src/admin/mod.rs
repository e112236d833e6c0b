//! The plain-HTTP listeners: `GET /metrics` for scrapers (`--metrics-listen`), and the probes,
//! on a listener of their own (`--probe-listen`), so that no number of scrapers can crowd them
//! out:
//!
//! - `GET /healthz`: 200 while the process serves (liveness);
//! - `GET /readyz`: 200 while the database answers and the server is not stopping, 503
//!   otherwise (readiness, the same truth as gRPC Health).
//!
//! A probe's answer closes its connection, so that no client holds a place on the probe
//! listener between two probes: the only connections there that last are ones that have not
//! asked yet, and a newcomer displaces the oldest of those.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinSet};

use crate::shutdown::{Signal, Stage};
use crate::telemetry::metrics::Metrics;

/// The content type of `/metrics`.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A call's method, as the `grpc_service` and `grpc_method` labels. Calls to a path that names
/// What the listeners answer from.
#[derive(Debug, Clone)]
pub struct Probes {
    pub metrics: Arc<Metrics>,
    /// Whether the database answered the last health probe.
    pub database: Arc<AtomicBool>,
    /// The server's stop: `/readyz` answers 503 from the moment it drains.
    pub shutdown: Signal,
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
            (Routes::Probes, "/readyz") if self.shutdown.reached(Stage::Draining) => {
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
