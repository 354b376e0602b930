//! Serving the example's router: command-line options, and HTTP/1 on hyper
//! with the limits a server facing the internet needs. `tests/http_server.rs`
//! drives this same code over real sockets.
//!
//! * **Slow senders are cut off.** A connection must send a request's whole
//!   head within [`Limits::header_read_timeout`] (hyper's
//!   `header_read_timeout`, the timer running from when the server starts
//!   reading a head: a new connection, or one idle between requests), or it
//!   is closed; a slowloris that trickles header bytes gains nothing. A
//!   request, body included, must be answered within
//!   [`Limits::request_timeout`] (tower-http's `TimeoutLayer`, 408), so a
//!   body trickled byte by byte is cut off too.
//! * **Slow readers are cut off.** A write to the socket that makes no
//!   progress for [`Limits::write_timeout`] fails and closes the connection
//!   (the connection's IO is wrapped in [`WriteTimeout`]): a client that
//!   pipelines requests and never reads the responses holds its connection
//!   that long, not forever.
//! * **Connections are recycled.** A connection takes at most
//!   [`Limits::max_requests_per_connection`] requests (the last response
//!   says `Connection: close`), and at [`Limits::max_connection_age`] it
//!   takes no more: it is closed once the response in progress is written,
//!   and dropped [`Limits::request_timeout`] later if it is still open, so a
//!   client reading a few bytes at a time (never stalled long enough for the
//!   write timeout) holds a connection for a bounded time too.
//! * **Connections are bounded.** At most [`Limits::max_connections`] are
//!   served at once: the server accepts the next one only when one closes
//!   (the rest wait in the kernel's accept queue). One client address
//!   (IPv6: its /64, as the throttles count it) holds at most
//!   [`Limits::max_connections_per_ip`] of them: a connection past that is
//!   closed as soon as it is accepted, so one address can not take every
//!   slot. Behind a reverse proxy every client shares the proxy's address:
//!   raise that limit there.
//! * Request bodies are bounded by the router (`app::MAX_BODY`).
//! * The peer address goes into each request as axum's
//!   `ConnectInfo<SocketAddr>`, which the login throttle and the
//!   `AuthLayer`'s failure throttle key by.
//!
//! The unauthenticated load-test baseline ([`Mode::UnauthenticatedBaseline`])
//! is only served with the flag [`BASELINE_FLAG`] and on a loopback address.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;
use tower_http::timeout::TimeoutLayer;

/// The flag that serves `GET /api/players` without authentication, for
/// `scripts/load.sh`'s baseline. Loopback addresses only.
pub(crate) const BASELINE_FLAG: &str = "--unauthenticated-load-test-baseline";

/// The address served when `KEYWARD_ADDR` is not set.
pub(crate) const DEFAULT_ADDR: &str = "127.0.0.1:3000";

/// What the server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The API, every route behind authentication: the default.
    Api,
    /// `GET /api/players` without authentication ([`BASELINE_FLAG`]).
    UnauthenticatedBaseline,
}

/// Bounds on what one client can hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The longest a client may take to send a request's head.
    pub(crate) header_read_timeout: Duration,
    /// The longest a request may take, from its head to the response,
    /// reading its body included.
    pub(crate) request_timeout: Duration,
    /// The longest a write to a client may make no progress (the client
    /// reads nothing) before the connection is closed.
    pub(crate) write_timeout: Duration,
    /// The age at which a connection takes no more requests; it is dropped
    /// `request_timeout` later if still open.
    pub(crate) max_connection_age: Duration,
    /// The most requests served on one connection.
    pub(crate) max_requests_per_connection: usize,
    /// The most connections served at once.
    pub(crate) max_connections: usize,
    /// The most connections served at once to one client address (IPv6:
    /// one /64).
    pub(crate) max_connections_per_ip: usize,
    /// How long shutdown waits for open connections.
    pub(crate) shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(5 * 60),
            max_requests_per_connection: 1000,
            max_connections: 1024,
            max_connections_per_ip: 64,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// The server's options, from its arguments and environment.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) addr: SocketAddr,
    pub(crate) mode: Mode,
}

/// Reads the options: `KEYWARD_ADDR` (an `ip:port`, default
/// [`DEFAULT_ADDR`]) and no argument but [`BASELINE_FLAG`], which is refused
/// on any address but a loopback one.
pub(crate) fn options(
    args: impl IntoIterator<Item = String>,
    addr: Option<String>,
) -> Result<Options, String> {
    let mut mode = Mode::Api;
    for arg in args {
        match arg.as_str() {
            BASELINE_FLAG => mode = Mode::UnauthenticatedBaseline,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let addr = addr.unwrap_or_else(|| DEFAULT_ADDR.to_owned());
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("KEYWARD_ADDR must be an ip:port, not {addr:?}"))?;
    if mode == Mode::UnauthenticatedBaseline && !addr.ip().is_loopback() {
        return Err(format!(
            "{BASELINE_FLAG} serves without authentication: refusing to bind {addr}, \
             which is not a loopback address"
        ));
    }
    Ok(Options { addr, mode })
}

/// Serves `router` on `listener` within `limits` until `shutdown`
/// completes, then waits up to `limits.shutdown_grace` for open
/// connections to finish.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let router = router.layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    ));
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let per_client = PerClient::default();
    let (closing, closing_rx) = watch::channel(false);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        // A slot first: past the bound, connections wait to be accepted.
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.expect("never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(client_slot) = per_client.take(peer.ip(), limits.max_connections_per_ip) else {
            // Dropped: closed at once, its slot free for another client.
            tracing::debug!(%peer, "connection refused: too many from this client");
            continue;
        };
        let served = Arc::new(AtomicUsize::new(0));
        let max_requests = limits.max_requests_per_connection;
        let service = router
            .clone()
            .map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            })
            .map_response(move |mut res: Response| {
                // HTTP/1 answers in order: this counts the responses.
                if served.fetch_add(1, Ordering::Relaxed) + 1 >= max_requests {
                    res.headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                res
            });
        let io = TokioIo::new(WriteTimeout::new(stream, limits.write_timeout));
        let connection = http.serve_connection(io, TowerToHyperService::new(service));
        let closing = closing_rx.clone();
        tokio::spawn(async move {
            drive(connection, limits, closing, peer).await;
            drop(client_slot);
            drop(permit);
        });
    }
    drop(listener);
    // Open connections finish their responses and close.
    let _ = closing.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = connections.acquire_many(all) => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("connections still open after the shutdown grace period");
        }
    }
}

/// Runs one connection until it ends: at its age limit, or when the server
/// shuts down, it takes no more requests and is dropped `request_timeout`
/// later if still open.
async fn drive<C>(
    connection: C,
    limits: Limits,
    mut closing: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    C: GracefulShutdown,
{
    tokio::pin!(connection);
    let age = tokio::time::sleep(limits.max_connection_age);
    tokio::pin!(age);
    let mut deadline: Option<Instant> = None;
    let result = loop {
        let hard = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now));
        tokio::select! {
            result = connection.as_mut() => break result,
            () = &mut age, if deadline.is_none() => {}
            changed = closing.changed(), if deadline.is_none() => {
                // The server is shutting down (or gone).
                if changed.is_ok() && !*closing.borrow_and_update() {
                    continue;
                }
            }
            () = hard, if deadline.is_some() => {
                tracing::debug!(%peer, "connection dropped past its age or the shutdown");
                return;
            }
        }
        connection.as_mut().shut_down();
        deadline = Some(Instant::now() + limits.request_timeout);
    };
    if let Err(err) = result {
        // Timeouts and resets end connections all the time.
        tracing::debug!(%peer, %err, "connection closed");
    }
}

/// A connection that can be told to finish its response in progress and
/// close: hyper's HTTP/1 connection.
trait GracefulShutdown: Future<Output = Result<(), hyper::Error>> {
    fn shut_down(self: Pin<&mut Self>);
}

impl<I, S> GracefulShutdown for http1::Connection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: hyper::body::Body + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shut_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// A socket whose writes fail with `TimedOut` once one has made no
/// progress for the timeout: the peer has stopped reading.
pub(crate) struct WriteTimeout {
    stream: TcpStream,
    timeout: Duration,
    /// Armed while a write waits for the peer; reset by any progress.
    stalled: Pin<Box<Sleep>>,
    armed: bool,
}

impl WriteTimeout {
    pub(crate) fn new(stream: TcpStream, timeout: Duration) -> Self {
        WriteTimeout {
            stream,
            timeout,
            stalled: Box::pin(tokio::time::sleep(timeout)),
            armed: false,
        }
    }

    /// The outcome of a write: progress disarms the timer; waiting arms it,
    /// or fails once it has run out.
    fn check<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.armed = false;
            return poll;
        }
        if !self.armed {
            self.armed = true;
            let deadline = Instant::now() + self.timeout;
            self.stalled.as_mut().reset(deadline);
        }
        match self.stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing within the write timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for WriteTimeout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteTimeout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.check(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.check(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    // A TCP socket flushes and shuts down without waiting for the peer.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The client a connection counts against: its address, IPv6 by its /64
/// (an IPv4-mapped IPv6 address as the IPv4 one).
pub(crate) fn client_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Open connections per client.
#[derive(Default, Clone)]
struct PerClient {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerClient {
    /// A slot for one more connection of `ip`'s client, if it has fewer
    /// than `max` open.
    fn take(&self, ip: IpAddr, max: usize) -> Option<ClientSlot> {
        let client = client_of(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.get(&client).copied().unwrap_or(0);
        if count >= max {
            return None;
        }
        open.insert(client, count + 1);
        Some(ClientSlot {
            open: self.open.clone(),
            client,
        })
    }
}

/// One open connection of a client, given back on drop.
struct ClientSlot {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    client: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}
