//! The server's bound on a call: every call answers within the database wait, `UNAVAILABLE`
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
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};

/// Bounds each call by the database wait.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    pub wait: Duration,
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            wait: self.wait,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    wait: Duration,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<http::Request<B>> for Deadline<S>
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
        let wait = self.wait;
        let path = request.uri().path().to_owned();
        let response = self.inner.call(request);
        Box::pin(async move {
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
