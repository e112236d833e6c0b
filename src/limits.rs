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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;

use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};

/// Bounds the calls in flight, and each call by the database wait.
#[derive(Debug, Clone)]
pub struct CallLimitLayer {
    pub wait: Duration,
    pub max_calls: usize,
    calls: Arc<Semaphore>,
}

impl CallLimitLayer {
    pub fn new(wait: Duration, max_calls: usize) -> Self {
        Self {
            wait,
            max_calls,
            calls: Arc::new(Semaphore::new(max_calls)),
        }
    }
}

impl<S> Layer<S> for CallLimitLayer {
    type Service = CallLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallLimit {
            inner,
            limits: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CallLimit<S> {
    inner: S,
    limits: CallLimitLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<http::Request<B>> for CallLimit<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let wait = self.limits.wait;
        let path = request.uri().path().to_owned();
        let slot = if path.starts_with("/grpc.health.") {
            None
        } else {
            match self.limits.calls.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    let max = self.limits.max_calls;
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
        let response = self.inner.call(request);
        Box::pin(async move {
            let _slot = slot;
            match tokio::time::timeout(wait, response).await {
                Ok(response) => response,
                Err(_) => {
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
