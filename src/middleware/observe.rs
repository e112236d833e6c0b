//! Every call, observed: its request id, returned in the `x-request-id` response metadata, and
//! the call counted and timed in the metrics. The id is the caller's own `x-request-id` when it
//! sends a usable one (1 to 128 visible ASCII characters), and a new one otherwise.
//!
//! The call's span (`rpc`, with its method, request id, client system and status code) is made
//! by `authenticate::Authenticate`, which is the first to know the client: so the span is made whole, at
//! once, rather than formatted again as each field arrives (the JSON log re-parses a span's
//! fields on every change). Its code is added here, at the end, only when spans are exported
//! (`telemetry`): the log has the code on the "call answered" line.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::HeaderValue;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::Code;
use tonic::body::Body;
use tower::Service;

use crate::middleware::{Answer, Around};
use crate::telemetry::metrics::{MethodLabels, Metrics, Transport, code_name};

/// The metadata that carries a call's request id, both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
const LONGEST_REQUEST_ID: usize = 128;

/// A call's request id, for the layers inside `Observe`.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

/// A call's span, handed back with the response by the layer that made it.
#[derive(Debug, Clone)]
pub struct CallSpan(pub tracing::Span);

/// The outermost layer: request ids and call metrics.
#[derive(Debug, Clone)]
pub struct Observe {
    metrics: Arc<Metrics>,
    ids: Arc<RequestIds>,
}

impl Observe {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            ids: Arc::new(RequestIds::new()),
        }
    }
}

/// New request ids: this process's random prefix and a count, unique across replicas without
/// a system call per call.
#[derive(Debug)]
struct RequestIds {
    prefix: String,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let mut bytes = [0u8; 6];
        // Without the system's randomness the prefix is the process id: still unique on a host.
        let prefix = match getrandom::fill(&mut bytes) {
            Ok(()) => hex::encode(bytes),
            Err(_) => format!("p{}", std::process::id()),
        };
        Self {
            prefix,
            next: AtomicU64::new(1),
        }
    }

    fn next(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n:x}", self.prefix))
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
    }
}

/// The caller's request id, when it is one worth repeating in logs and back to it.
fn callers_id<B>(request: &http::Request<B>) -> Option<HeaderValue> {
    let value = request.headers().get(REQUEST_ID_HEADER)?;
    let bytes = value.as_bytes();
    let usable = !bytes.is_empty()
        && bytes.len() <= LONGEST_REQUEST_ID
        && bytes.iter().all(|b| b.is_ascii_graphic());
    usable.then(|| value.clone())
}

impl Around for Observe {
    fn around<S, B>(&self, mut request: http::Request<B>, next: &mut S) -> Answer<S::Error>
    where
        S: Service<http::Request<B>, Response = http::Response<Body>>,
        S::Future: Send + 'static,
    {
        let started = Instant::now();
        let request_id = callers_id(&request).unwrap_or_else(|| self.ids.next());
        request
            .extensions_mut()
            .insert(RequestId(request_id.clone()));
        let transport = request
            .extensions()
            .get::<Transport>()
            .copied()
            .unwrap_or(Transport::Grpc);
        let method = self.metrics.method(request.uri().path(), transport);
        self.metrics.call_started(&method);
        let mut call = Call {
            metrics: self.metrics.clone(),
            method,
            started,
            request_id: RequestId(request_id.clone()),
            span: None,
            finished: false,
        };
        let response = next.call(request);
        Box::pin(async move {
            let mut response = match response.await {
                Ok(response) => response,
                Err(err) => {
                    call.finish(Code::Unknown);
                    return Err(err);
                }
            };
            if crate::telemetry::exporting() {
                call.span = response
                    .extensions_mut()
                    .remove::<CallSpan>()
                    .map(|span| span.0);
            }
            response.headers_mut().insert(REQUEST_ID_HEADER, request_id);
            // A call that fails before its first message answers with its status in the
            // headers; the others, in the trailers at the end of the body.
            Ok(match status_of(response.headers()) {
                Some(code) => {
                    call.finish(code);
                    response
                }
                None => response.map(|body| {
                    Body::new(Observed {
                        body,
                        call: Some(call),
                    })
                }),
            })
        })
    }
}

/// The status code in `headers` (or trailers), if any.
fn status_of(headers: &http::HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?;
    let code = value.to_str().ok()?.parse::<i32>().ok()?;
    Some(Code::from_i32(code))
}

/// A call being answered, to count once its status is known.
struct Call {
    metrics: Arc<Metrics>,
    method: MethodLabels,
    started: Instant,
    request_id: RequestId,
    /// The call's span, when spans are exported: its code is added at the end.
    span: Option<tracing::Span>,
    finished: bool,
}

/// A call dropped before its status went out was cut off: by its client's deadline (tonic
/// answers `CANCELLED` for it), or by its client going away.
impl Drop for Call {
    fn drop(&mut self) {
        if !self.finished {
            self.record(Code::Cancelled);
        }
    }
}

impl Call {
    fn finish(mut self, code: Code) {
        self.record(code);
        self.finished = true;
    }

    fn record(&self, code: Code) {
        let elapsed = self.started.elapsed();
        self.metrics.call_handled(&self.method, code, elapsed);
        if let Some(span) = &self.span {
            span.record("code", code_name(code));
        }
        tracing::debug!(
            method = %self.method,
            request_id = self.request_id.as_str(),
            code = code_name(code),
            elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "call answered"
        );
    }
}

/// A response body that counts its call when the status goes out in the trailers, or (as its
/// call is dropped unfinished) as `CANCELLED` when it is dropped before that.
struct Observed {
    body: Body,
    call: Option<Call>,
}

impl HttpBody for Observed {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        let code = match &polled {
            Poll::Ready(Some(Ok(frame))) => frame.trailers_ref().and_then(status_of),
            Poll::Ready(Some(Err(status))) => Some(status.code()),
            _ => None,
        };
        if let Some(code) = code
            && let Some(call) = self.call.take()
        {
            call.finish(code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
