//! The shape every layer of the server shares: look at a call, perhaps answer it at once, and
//! otherwise pass it on to the next service, perhaps wrapping what comes back. A layer
//! implements [`Around`] for what it does; [`AroundLayer`] makes it a tower layer.

pub mod activity;
pub mod authenticate;
pub mod limits;
pub mod observe;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tower::{Layer, Service};

/// What a layer answers: a response, or the next service's error.
pub type Answer<E> = Pin<Box<dyn Future<Output = Result<http::Response<Body>, E>> + Send>>;

/// One layer's work on a call: answer `request` itself, or through `next`.
pub trait Around: Clone {
    fn around<S, B>(&self, request: http::Request<B>, next: &mut S) -> Answer<S::Error>
    where
        S: Service<http::Request<B>, Response = http::Response<Body>>,
        S::Future: Send + 'static;
}

/// An [`Around`] as a tower layer.
#[derive(Debug, Clone)]
pub struct AroundLayer<H>(pub H);

impl<S, H: Clone> Layer<S> for AroundLayer<H> {
    type Service = AroundService<S, H>;

    fn layer(&self, inner: S) -> Self::Service {
        AroundService {
            inner,
            hook: self.0.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AroundService<S, H> {
    inner: S,
    hook: H,
}

impl<S, B, H> Service<http::Request<B>> for AroundService<S, H>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    H: Around,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Answer<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.hook.around(request, &mut self.inner)
    }
}
