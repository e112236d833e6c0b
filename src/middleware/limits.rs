//! The server's bounds on calls. At most `max_calls` are in flight at once: past it a call
//! answers `UNAVAILABLE` at once instead of queueing without bound (Health excepted, so probes
//! still see the truth). And every call answers within the database wait, `UNAVAILABLE`
//! when the database has not answered by then, also when it went silent with the call already
//! in flight. A call the client gives less time (`grpc-timeout`) is cut off at its own
//! deadline by tonic. Either way the call's future is dropped, which rolls back its
//! transaction; its connection is checked before reuse (`mandate-store`'s hygiene).
//!
//! Every unary RPC here is bound by the database, so its whole handler is what is timed;
//! streams are timed until their first response headers, and each of their own database reads
//! is bounded where it is made.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tonic::Status;
use tonic::body::Body;
use tower::Service;

use crate::middleware::{Answer, Around};
use crate::telemetry::metrics::{Metrics, Refusal};

/// Bounds the calls in flight, and each call by the database wait.
#[derive(Debug, Clone)]
pub struct CallLimits {
    wait: Duration,
    max_calls: usize,
    calls: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl CallLimits {
    pub fn new(wait: Duration, max_calls: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            wait,
            max_calls,
            calls: Arc::new(Semaphore::new(max_calls)),
            metrics,
        }
    }
}

impl Around for CallLimits {
    fn around<S, B>(&self, request: http::Request<B>, next: &mut S) -> Answer<S::Error>
    where
        S: Service<http::Request<B>, Response = http::Response<Body>>,
        S::Future: Send + 'static,
    {
        let wait = self.wait;
        let path = request.uri().path().to_owned();
        let slot = if path.starts_with("/grpc.health.") {
            None
        } else {
            match self.calls.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    self.metrics.refused(Refusal::Overloaded);
                    let max = self.max_calls;
                    tracing::warn!(%path, max_calls = max, "shedding a call: too many in flight");
                    return Box::pin(async move {
                        Ok(Status::unavailable(format!(
                            "the server has {max} calls in flight, its maximum; retry shortly"
                        ))
                        .into_http())
                    });
                }
            }
        };
        let response = next.call(request);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let _slot = slot;
            match tokio::time::timeout(wait, response).await {
                Ok(response) => response,
                Err(_) => {
                    metrics.refused(Refusal::DatabaseWait);
                    tracing::warn!(%path, ?wait, "a call outlived the database wait");
                    Ok(Status::unavailable(format!(
                        "the database did not answer within {} ms; retry shortly",
                        wait.as_millis()
                    ))
                    .into_http())
                }
            }
        })
    }
}
