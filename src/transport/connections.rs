//! Client connections, bounded: at most so many at once; a connection that sends no request
//! within the handshake timeout, or that has had no call in flight for the idle timeout, is
//! closed; and when the server stops, connections still open after the grace period are cut.
//! When every slot is taken, the oldest connection that has not started a call yet makes room
//! for the newcomer: sockets that never speak cannot lock real clients out.
//!
//! Each accepted socket is wrapped in [`Guarded`], which fails its reads once the connection
//! has expired, so that hyper closes it; `crate::middleware::activity::TrackActivity` tells each connection when calls
//! start and end (a streamed call lasts until its response body is dropped).

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, Sleep};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::settings::limits::ConnectionLimits;

/// What a connection's calls tell its socket: how many are in flight, and since when none is.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// When the last call ended (or the connection was accepted), as an offset from `epoch`.
    quiet_since_ms: AtomicU64,
    /// Whether any call has started: until then the handshake timeout applies.
    started: AtomicBool,
    epoch: Instant,
    /// `LIVE`, then `EVICTED` (told to close, its slot given away) or `ENDED`.
    state: AtomicU8,
    eviction: Notify,
}

const LIVE: u8 = 0;
const EVICTED: u8 = 1;
const ENDED: u8 = 2;

impl Activity {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            quiet_since_ms: AtomicU64::new(0),
            started: AtomicBool::new(false),
            epoch: Instant::now(),
            state: AtomicU8::new(LIVE),
            eviction: Notify::new(),
        }
    }

    /// Tells a live connection to close, and whether it was live: its slot is then handed to
    /// a newcomer at once, and the connection forfeits it when it ends.
    fn evict(&self) -> bool {
        let evicted = self
            .state
            .compare_exchange(LIVE, EVICTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if evicted {
            self.eviction.notify_one();
        }
        evicted
    }

    fn has_started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    pub fn begin(self: &Arc<Self>) -> CallGuard {
        self.started.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        CallGuard(self.clone())
    }

    /// When the connection expires if nothing happens meanwhile; `None` if it has expired.
    fn expiry(&self, limits: &ConnectionLimits) -> Option<Instant> {
        let now = Instant::now();
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Some(now + limits.idle_timeout);
        }
        let quiet_since =
            self.epoch + Duration::from_millis(self.quiet_since_ms.load(Ordering::Acquire));
        let allowed = if self.has_started() {
            limits.idle_timeout
        } else {
            limits.handshake_timeout
        };
        let deadline = quiet_since + allowed;
        (deadline > now).then_some(deadline)
    }
}

/// A call in flight on a connection; its end is recorded when dropped.
pub struct CallGuard(Arc<Activity>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        let activity = &self.0;
        let elapsed = u64::try_from(activity.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        activity.quiet_since_ms.store(elapsed, Ordering::Release);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a call learns of its connection (in the request's extensions).
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub tcp: TcpConnectInfo,
    pub activity: Arc<Activity>,
}

/// An accepted socket that fails its reads once the connection has expired, was evicted, or the
/// server cuts remaining connections, so that the HTTP/2 connection on it closes.
pub struct Guarded {
    io: TcpStream,
    activity: Arc<Activity>,
    limits: ConnectionLimits,
    timer: Pin<Box<Sleep>>,
    cut: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// The connection's place among the maximum; `None` only while being dropped.
    slot: Option<OwnedSemaphorePermit>,
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if self.activity.state.swap(ENDED, Ordering::AcqRel) == EVICTED
            && let Some(slot) = self.slot.take()
        {
            // Its newcomer holds a slot made for it already.
            slot.forget();
        }
    }
}

impl Guarded {
    /// An error once the connection should close; registers the wake-ups that tell when.
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if self.cut.as_mut().poll(cx).is_ready() {
            return Some(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed by the server: stopping, or making room for a newer connection",
            ));
        }
        loop {
            // A call that started since the timer was set may bring the expiry forward (from
            // the handshake timeout to the idle timeout); a call in flight pushes it back,
            // which the timer learns when it fires.
            let Some(at) = self.activity.expiry(&self.limits) else {
                return Some(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection was idle too long",
                ));
            };
            if at < self.timer.deadline() || self.timer.is_elapsed() {
                self.timer.as_mut().reset(at);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return None;
            }
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(err) = self.expired(cx) {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl Connected for Guarded {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        ConnectionInfo {
            tcp: self.io.connect_info(),
            activity: self.activity.clone(),
        }
    }
}

/// Accepts connections on `listener` within `limits` until the stream is dropped. Each
/// connection is closed when the future `cut` makes for it completes.
pub fn accept<C, F>(
    listener: TcpListener,
    limits: ConnectionLimits,
    cut: C,
) -> ReceiverStream<io::Result<Guarded>>
where
    C: Fn() -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = mpsc::channel(1);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::spawn(async move {
        let mut refusals = RefusalLog::default();
        let mut waiting = Handshakes::default();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = sender.closed() => return,
            };
            let (io, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, typically: give connections time to close
                    // rather than spin.
                    tracing::warn!(error = %err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => match waiting.make_room(&slots) {
                    Some(slot) => {
                        refusals.note(peer, limits.max_connections, Full::Evicted);
                        slot
                    }
                    None => {
                        refusals.note(peer, limits.max_connections, Full::Refused);
                        continue;
                    }
                },
            };
            // No Nagle delay: a reply's frames leave as soon as they are written.
            if let Err(err) = io.set_nodelay(true) {
                tracing::debug!(error = %err, "cannot set TCP_NODELAY");
            }
            let activity = Arc::new(Activity::new());
            waiting.push(&activity, limits.max_connections);
            let first_deadline = Instant::now() + limits.handshake_timeout;
            let cut = cut();
            let closing = activity.clone();
            let guarded = Guarded {
                io,
                activity,
                limits,
                timer: Box::pin(tokio::time::sleep_until(first_deadline)),
                cut: Box::pin(async move {
                    tokio::select! {
                        () = cut => {}
                        () = closing.eviction.notified() => {}
                    }
                }),
                slot: Some(slot),
            };
            if sender.send(Ok(guarded)).await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(receiver)
}

/// The connections that have not started a call yet, oldest first.
#[derive(Default)]
struct Handshakes(VecDeque<Weak<Activity>>);

impl Handshakes {
    fn push(&mut self, activity: &Arc<Activity>, max: usize) {
        if self.0.len() >= max.saturating_mul(2) {
            self.0
                .retain(|waiting| waiting.upgrade().is_some_and(|a| !a.has_started()));
        }
        self.0.push_back(Arc::downgrade(activity));
    }

    /// Evicts the oldest connection still waiting for its first call, and gives its slot to
    /// the newcomer; `None` when every connection has started calls.
    fn make_room(&mut self, slots: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
        while let Some(oldest) = self.0.pop_front() {
            let Some(activity) = oldest.upgrade() else {
                continue;
            };
            if activity.has_started() || !activity.evict() {
                continue;
            }
            slots.add_permits(1);
            return slots.clone().try_acquire_owned().ok();
        }
        None
    }
}

/// What happened to a connection that arrived with every slot taken.
#[derive(Debug, Clone, Copy)]
enum Full {
    /// It took the slot of the oldest connection that never started a call.
    Evicted,
    /// It was closed: every connection has started calls.
    Refused,
}

/// Logs what happens at the maximum at most every few seconds, with counts.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    evicted: u64,
    refused: u64,
}

impl RefusalLog {
    const EVERY: Duration = Duration::from_secs(5);

    fn note(&mut self, peer: SocketAddr, max: usize, what: Full) {
        match what {
            Full::Evicted => self.evicted += 1,
            Full::Refused => self.refused += 1,
        }
        if self.last.is_none_or(|last| last.elapsed() >= Self::EVERY) {
            tracing::warn!(
                %peer,
                evicted = self.evicted,
                refused = self.refused,
                max_connections = max,
                "at the connection maximum: evicting connections that never started a call, \
                 refusing newcomers when none is left"
            );
            self.last = Some(Instant::now());
            self.evicted = 0;
            self.refused = 0;
        }
    }
}
