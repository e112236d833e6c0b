//! Connections are bounded: sockets that never speak, or speak only the HTTP/2 preface, and
//! connections left idle are closed; new clients are served meanwhile; at most so many are
//! open; and a stopping server exits within its grace period whatever its clients do.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mandate::pb::RegisterCustomerRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{Backend, TestDatabase, channel_to, spawn_app_with, with_key};
use crate::process::ServerProcess;

/// The HTTP/2 client preface and an empty SETTINGS frame: a client that says hello and then
/// nothing more.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// A socket that says nothing, or only the HTTP/2 preface.
async fn idle_socket(address: SocketAddr, preface: bool) -> TcpStream {
    let mut socket = TcpStream::connect(address).await.expect("connect");
    if preface {
        socket.write_all(PREFACE).await.expect("send the preface");
    }
    socket
}

/// Reads until the server closes `socket`; how long that took.
async fn closed_by_server(mut socket: TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return started.elapsed(),
            Ok(_) => {}
        }
    }
}

/// Waits for every socket to be closed by the server, for at most a minute; the longest wait.
async fn all_closed(sockets: Vec<TcpStream>) -> Duration {
    let mut waits = JoinSet::new();
    for socket in sockets {
        waits.spawn(closed_by_server(socket));
    }
    let all = async {
        let mut longest = Duration::ZERO;
        while let Some(wait) = waits.join_next().await {
            longest = longest.max(wait.expect("the wait's task"));
        }
        longest
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("the server closed every idle socket")
}

async fn served(address: SocketAddr, key: &str) {
    let mut identity = mandate::pb::identity_service_client::IdentityServiceClient::new(with_key(
        channel_to(address).await,
        key,
    ));
    identity
        .register_customer(RegisterCustomerRequest {
            external_subject: format!("newcomer-{}", uuid::Uuid::now_v7()),
            display_name: "Newcomer".into(),
            email: "new@example.ca".into(),
        })
        .await
        .expect("a new client is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_preface_only_connections_are_closed_while_new_clients_are_served() {
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        settings.handshake_timeout_ms = 500;
        settings.idle_timeout_ms = 1000;
    })
    .await;
    let address = app.address();
    let mut sockets = Vec::new();
    for n in 0..600 {
        sockets.push(idle_socket(address, n % 2 == 1).await);
    }
    served(address, &app.key).await;
    let longest = all_closed(sockets).await;
    eprintln!("600 idle sockets closed, the last after {longest:?}");
    served(address, &app.key).await;
}

/// An HTTP/2 connection over `io` that has made one call, a Health check by hand (gRPC over
/// HTTP/2); the client, to keep the connection open, and the connection's task.
async fn health_check_by_hand<T>(
    io: T,
    address: SocketAddr,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = h2::client::handshake(io).await.expect("HTTP/2");
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready for a call");
    let request = http::Request::post(format!("http://{address}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("a request");
    let (response, mut body) = client.send_request(request, false).expect("send");
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .expect("an empty HealthCheckRequest");
    let response = response.await.expect("an answer");
    assert_eq!(response.status(), 200);
    let mut answer = response.into_body();
    while answer.data().await.is_some() {}
    (client, connection)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_idle_after_its_calls_is_closed() {
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        settings.idle_timeout_ms = 500;
    })
    .await;
    let socket = TcpStream::connect(app.address()).await.expect("connect");
    let (client, connection) = health_check_by_hand(socket, app.address()).await;
    let quiet = Instant::now();
    // The client keeps its half open (`client` lives on): only the server can end it.
    tokio::time::timeout(Duration::from_secs(60), connection)
        .await
        .expect("the server closed the idle connection")
        .expect("the connection's task")
        .ok();
    let idle = quiet.elapsed();
    eprintln!("an idle connection closed {idle:?} after its last call");
    assert!(
        idle >= Duration::from_millis(400),
        "closed after {idle:?}, before the idle timeout of 500 ms"
    );
    drop(client);
}

/// A client that has made a call over a connection of its own, which it keeps.
async fn active_client(address: SocketAddr) -> HealthClient<tonic::transport::Channel> {
    let mut health = HealthClient::new(channel_to(address).await);
    health
        .check(HealthCheckRequest::default())
        .await
        .expect("health");
    health
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_maximum_silent_connections_make_room_for_new_clients() {
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        settings.max_connections = 20;
        settings.handshake_timeout_ms = 600_000;
    })
    .await;
    let address = app.address();
    // The test's own client holds one connection.
    let _own = active_client(address).await;
    let mut oldest = Vec::new();
    for _ in 0..19 {
        oldest.push(idle_socket(address, false).await);
    }
    // Every slot is taken: each newcomer evicts the oldest connection that never spoke.
    let mut newest = Vec::new();
    for n in 0..30 {
        newest.push(idle_socket(address, n % 2 == 1).await);
    }
    let longest = all_closed(oldest).await;
    eprintln!("19 silent connections evicted by newer ones, the last after {longest:?}");
    served(address, &app.key).await;
    drop(newest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_maximum_of_active_ones_are_closed_as_they_arrive() {
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        settings.max_connections = 5;
    })
    .await;
    let address = app.address();
    // The test's own client, and four more, have made calls: none of them is evicted.
    let _own = active_client(address).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(active_client(address).await);
    }
    let extra = idle_socket(address, true).await;
    let refused = tokio::time::timeout(Duration::from_secs(30), closed_by_server(extra))
        .await
        .expect("a connection over the maximum is closed at once");
    eprintln!("a connection over the maximum was closed after {refused:?}");
    for client in &mut clients {
        client
            .check(HealthCheckRequest::default())
            .await
            .expect("the clients already connected are still served");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_grace_period_despite_silent_clients() {
    let database = TestDatabase::new(Backend::Sqlite).await;
    let server = ServerProcess::start(
        &database,
        &[
            "--shutdown-grace-ms",
            "1000",
            "--handshake-timeout-ms",
            "600000",
            "--idle-timeout-ms",
            "600000",
        ],
    )
    .await;
    let address = server.address;
    served(address, &database.key()).await;
    let mut sockets = Vec::new();
    for n in 0..20 {
        sockets.push(idle_socket(address, n % 2 == 1).await);
    }
    let (status, took) = server.stop().await;
    eprintln!("SIGTERM with 20 silent clients: exited after {took:?}");
    assert!(status.success(), "the server exits cleanly: {status}");
    assert!(
        took < Duration::from_secs(10),
        "the server took {took:?} to exit with a 1 s grace period"
    );
    drop(sockets);
}

/// A socket for an HTTP/2 client that can be made to stop reading and writing, as a peer that
/// died without closing would; the test can still watch the socket itself.
struct Pausable {
    socket: std::sync::Arc<TcpStream>,
    paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Pausable {
    fn paused(&self) -> bool {
        self.paused.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl tokio::io::AsyncRead for Pausable {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        loop {
            if self.paused() {
                return Poll::Pending;
            }
            match self.socket.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Ready(Ok(())) => {}
            }
            match self.socket.try_read(buf.initialize_unfilled()) {
                Ok(read) => {
                    buf.advance(read);
                    return Poll::Ready(Ok(()));
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

impl tokio::io::AsyncWrite for Pausable {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        loop {
            if self.paused() {
                return Poll::Pending;
            }
            match self.socket.poll_write_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Ready(Ok(())) => {}
            }
            match self.socket.try_write(data) {
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                other => return Poll::Ready(other),
            }
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_answering_pings_is_disconnected() {
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        settings.keepalive_ms = 300;
        settings.idle_timeout_ms = 600_000;
    })
    .await;
    let socket = std::sync::Arc::new(TcpStream::connect(app.address()).await.expect("connect"));
    let paused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let io = Pausable {
        socket: socket.clone(),
        paused: paused.clone(),
    };
    let (client, _connection) = health_check_by_hand(io, app.address()).await;

    // The peer goes silent: it reads nothing more, so it answers no ping.
    paused.store(true, std::sync::atomic::Ordering::Relaxed);
    let silent = Instant::now();
    let closed = async {
        let mut buf = [0u8; 4096];
        loop {
            socket.readable().await.expect("readable");
            match socket.try_read(&mut buf) {
                // Closed, or reset.
                Ok(0) => return,
                Err(err) if err.kind() != std::io::ErrorKind::WouldBlock => return,
                // Pings and whatever else the server sends, unanswered.
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), closed)
        .await
        .expect("the server closed the connection of a peer that answers no ping");
    let took = silent.elapsed();
    eprintln!("a peer answering no ping was disconnected after {took:?}");
    assert!(
        took >= Duration::from_millis(300),
        "closed after {took:?}, before a ping could go unanswered"
    );
    drop(client);
}
