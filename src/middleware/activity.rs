//! Tells each connection when its calls start and end.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tower::Service;

use crate::middleware::{Answer, Around};
use crate::transport::connections::{CallGuard, ConnectionInfo};
/// Tells each call's connection when the call starts and ends, and gives the call the TCP
/// details tonic's `remote_addr` reads.
#[derive(Debug, Clone, Default)]
pub struct TrackActivity;

impl Around for TrackActivity {
    fn around<S, B>(&self, mut request: http::Request<B>, next: &mut S) -> Answer<S::Error>
    where
        S: Service<http::Request<B>, Response = http::Response<Body>>,
        S::Future: Send + 'static,
    {
        let guard = request
            .extensions()
            .get::<ConnectionInfo>()
            .cloned()
            .map(|info| {
                request.extensions_mut().insert(info.tcp);
                info.activity.begin()
            });
        let response = next.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(match guard {
                Some(guard) => response.map(|body| Body::new(Tracked { body, _call: guard })),
                None => response,
            })
        })
    }
}

/// A response body that keeps its call in flight until it is dropped.
struct Tracked {
    body: Body,
    /// Only held, for its `Drop`.
    _call: CallGuard,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
