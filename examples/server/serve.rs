//! Serving the example's router: command-line options, and HTTP/1 on hyper
//! with the limits a server facing the internet needs. `tests/http_server.rs`
//! drives this same code over real sockets.
//!
//! * **Slow clients are cut off.** A connection must send a request's whole
//!   head within [`Limits::header_read_timeout`] (hyper's
//!   `header_read_timeout`, the timer running from when the server starts
//!   reading a head: a new connection, or one idle between requests), or it
//!   is closed; a slowloris that trickles header bytes gains nothing. A
//!   request, body included, must be answered within
//!   [`Limits::request_timeout`] (tower-http's `TimeoutLayer`, 408), so a
//!   body trickled byte by byte is cut off too.
//! * **Connections are bounded.** At most [`Limits::max_connections`] are
//!   served at once: the server accepts the next one only when one closes
//!   (the rest wait in the kernel's accept queue), so slow clients hold at
//!   most that many, each for at most the header timeout.
//! * Request bodies are bounded by the router (`app::MAX_BODY`).
//! * The peer address goes into each request as axum's
//!   `ConnectInfo<SocketAddr>`, which the login throttle and the
//!   `AuthLayer`'s failure throttle key by.
//!
//! The unauthenticated load-test baseline ([`Mode::UnauthenticatedBaseline`])
//! is only served with the flag [`BASELINE_FLAG`] and on a loopback address.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
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
    /// The most connections served at once.
    pub(crate) max_connections: usize,
    /// How long shutdown waits for open connections.
    pub(crate) shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
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
    let graceful = GracefulShutdown::new();
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
        let service = router
            .clone()
            .map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Timeouts and resets end connections all the time.
            if let Err(err) = connection.await {
                tracing::debug!(%peer, %err, "connection closed");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("connections still open after the shutdown grace period");
        }
    }
}
