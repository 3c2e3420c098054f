//! http-serve: serves an axum [`Router`] on a bound listener the way both of this project's
//! servers (the inference node and the gateway) need it, with the protections a server open
//! to any client must have.
//!
//! [`serve`] accepts connections (`TCP_NODELAY` on: answers are small and written whole),
//! serves HTTP/1.1 through hyper, and:
//! - serves at most [`Limits::max_connections`] connections at once: past it, new connections
//!   wait in the listen backlog until one closes (logged once each time the limit is reached);
//! - closes a connection whose client does not send a complete request head within the
//!   client timeout, counted from the moment the connection is accepted or the previous
//!   answer was written (so a client that sends nothing, and keep-alive connections idle for
//!   that long, are closed too): slow or stalled clients cannot hold connections forever;
//! - lets handlers read request bodies with [`FullBody`] ([`body`]): into one buffer, at most
//!   the body limit (413), failing when the body stalls for the client timeout or is not
//!   complete by the body timeout (408), so a body costs its size in memory and a client
//!   trickling it cannot hold its connection for ever;
//! - answers requests hyper cannot parse (400, 414, 431) with a `{"detail": ...}` body like
//!   every other error, instead of hyper's empty one ([`conn`]);
//! - after an accept error that would repeat at once (out of file descriptors, say) pauses
//!   before the next accept, 1 ms doubling up to 1 s while the errors last;
//! - on shutdown stops accepting, lets every open connection finish its request in flight and
//!   closes it; [`serve_with_grace`] bounds how long that may take.
//!
//! The rest of what both servers' `main` and `serve` do the same way:
//! - [`shutdown`]: the SIGINT/SIGTERM future that starts the shutdown;
//! - [`telemetry`]: the log subscriber (`RUST_LOG`, text or JSON lines), and the tests' one;
//! - [`metrics_upkeep`]: the task that keeps a Prometheus recorder's memory flat.
//!
//! # Layout
//! `lib.rs` holds the accept loop ([`serve`], [`serve_with_grace`]) and the small request
//! helpers below; it uses [`body`] (request bodies), `conn` (the connection's socket as
//! hyper sees it) and `accept` (connection limit, accept-error pause). [`shutdown`],
//! [`telemetry`] and [`metrics_upkeep`] stand alone: no module of the crate uses them, and
//! they use none.
//!
//! [`method_label`] keeps metrics labels bounded whatever method a client sends,
//! [`last_query_value`] reads a query parameter the way FastAPI does, [`echo_name`] keeps a
//! name a client sent short when an error message repeats it, and [`local_address`] says
//! where a health probe on the same machine finds the server.

#![forbid(unsafe_code)]

mod accept;
pub mod body;
mod conn;
pub mod metrics_upkeep;
pub mod shutdown;
pub mod telemetry;

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use accept::{AcceptBackoff, ConnectionPermits};
use body::BodyRules;
pub use body::{BodyError, FullBody};
use conn::{AnswerBody, ConnIo, Exchanges};

/// What [`serve`] allows a client.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client may take to send a whole request head (counted from when the server
    /// starts waiting for it, so an idle keep-alive connection is closed after it too), and
    /// how long its body may stall between two parts.
    pub client_timeout: Duration,
    /// How long a request's whole body may take, counted from when its head arrived.
    pub body_timeout: Duration,
    /// The largest body [`FullBody`] (and axum's own body extractors) accept (`413` past it).
    pub max_body_bytes: usize,
    /// The most connections served at once (at least 1).
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and returns
/// once every connection has finished its request in flight and closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    // Around the router, not `Router::layer`: that wraps every route, and each wrapping costs
    // a boxed clone and a boxed future per request.
    let app = tower::ServiceBuilder::new()
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .service(app);
    // HTTP/1.1 only. hyper's HTTP/2 has no request-head timeout, and detecting the protocol
    // first (hyper-util's `auto`) reads the connection's first bytes with no timeout at all,
    // so either would let a silent client hold a connection for ever; no client of these
    // servers (the seed's, the gateway, Consul's checks, the V2 REST clients) speaks HTTP/2.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.client_timeout);
    let mut permits = ConnectionPermits::new(limits.max_connections);
    let mut backoff = AcceptBackoff::default();
    let connections = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.acquire() => permit,
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    backoff.accepted();
                    stream
                }
                Err(e) => {
                    backoff.after_error(e).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let exchanges = Arc::new(Exchanges::default());
        let on_request = exchanges.clone();
        let on_answer = exchanges.clone();
        let service = app
            .clone()
            .map_request(move |request: hyper::Request<Incoming>| {
                on_request.dispatched();
                let rules = BodyRules {
                    max_bytes: limits.max_body_bytes,
                    stall: limits.client_timeout,
                    timeout: limits.body_timeout,
                    received: tokio::time::Instant::now(),
                };
                let mut request = request.map(axum::body::Body::new);
                request.extensions_mut().insert(rules);
                request
            })
            .map_response(move |response: axum::response::Response| {
                response.map(|body| AnswerBody::new(body, on_answer.clone()))
            });
        let io = TokioIo::new(ConnIo::new(stream, exchanges));
        let connection = builder.serve_connection(io, TowerToHyperService::new(service));
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
    Ok(())
}

/// Serves `app` like [`serve`] until `shutdown` completes, then gives the open connections
/// `grace` to finish their requests in flight: returns when they have, or when `grace` is over
/// (logged), abandoning those still open (they end with the runtime).
pub async fn serve_with_grace(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> io::Result<()> {
    let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
    let server = serve(listener, app, limits, async move {
        shutdown.await;
        let _ = signalled.send(());
    });
    let grace_over = async move {
        // An error means `serve` has returned, which ends the race first.
        let _ = on_signal.await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result,
        () = grace_over => {
            tracing::warn!(?grace, "grace period over; abandoning the requests still in flight");
            Ok(())
        }
    }
}

/// Where a process on this machine reaches a server listening on `listen`: that address, or
/// the loopback address of its family when the server listens on every address (`0.0.0.0`,
/// `::`). The `--health-check` probes of the container images use it.
pub fn local_address(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, listen.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, listen.port()).into(),
        _ => listen,
    }
}

/// The value of query parameter `key` among `pairs` (a decoded query string, in order): a
/// repeated parameter counts once, with its last value, as in FastAPI.
pub fn last_query_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Characters of a client-supplied name that an error message repeats.
pub const ECHOED_NAME_CHARS: usize = 64;

/// A name a client sent (a model name, say), as an error message repeats it: whole up to
/// [`ECHOED_NAME_CHARS`] characters, else its first ones and its size, `Abc…(61440 bytes)`;
/// so a huge name cannot make a huge answer.
pub fn echo_name(name: &str) -> std::borrow::Cow<'_, str> {
    match name.char_indices().nth(ECHOED_NAME_CHARS) {
        None => name.into(),
        Some((cut, _)) => format!("{}…({} bytes)", &name[..cut], name.len()).into(),
    }
}

/// The `method` label of a request metric: the method's name for the standard methods,
/// `other` for anything else (a client may send any token as a method, and every new label
/// value would be a new series kept for the life of the process).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_on_every_address_is_probed_on_loopback() {
        let probe = |listen: &str| local_address(listen.parse().unwrap()).to_string();
        assert_eq!(probe("0.0.0.0:8000"), "127.0.0.1:8000");
        assert_eq!(probe("[::]:8000"), "[::1]:8000");
        assert_eq!(probe("10.1.2.3:5000"), "10.1.2.3:5000");
        assert_eq!(probe("127.0.0.2:5000"), "127.0.0.2:5000");
    }

    #[test]
    fn long_names_are_echoed_in_part() {
        assert_eq!(echo_name("LinearRegression"), "LinearRegression");
        let exact = "é".repeat(ECHOED_NAME_CHARS);
        assert_eq!(echo_name(&exact), exact);
        let long = "é".repeat(30_000);
        assert_eq!(
            echo_name(&long),
            format!("{}…(60000 bytes)", "é".repeat(ECHOED_NAME_CHARS))
        );
    }

    #[test]
    fn a_repeated_query_parameter_keeps_its_last_value() {
        let pairs: Vec<(String, String)> = [("model", "A"), ("x", "1"), ("model", "B")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(last_query_value(&pairs, "model"), Some("B"));
        assert_eq!(last_query_value(&pairs, "x"), Some("1"));
        assert_eq!(last_query_value(&pairs, "y"), None);
    }
}
