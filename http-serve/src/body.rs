//! Reading a request body whole: [`FullBody`], the extractor every handler that takes a body
//! uses, and [`BodyError`], why it failed.
//!
//! The body is copied, part by part as the connection delivers it, into one buffer sized from
//! its `Content-Length` (capped at the limit; grown by doubling, up to the limit, when the
//! length is not declared). Each part is dropped as soon as it is copied, so hyper reuses its
//! read buffer: a body costs its size in memory however finely the client splits it. (Keeping
//! the parts instead, as axum's `Bytes` extractor does, pins one hyper read buffer per part:
//! about 2 KB of memory per byte for a body sent one byte per TCP segment.)
//!
//! Reading fails with a 413 past the body limit (at once when `Content-Length` says so), a
//! 408 when the body stalls for the client timeout or is not complete by the body deadline
//! (counted from when its request head arrived), a 400 when the connection fails mid-body.

use std::fmt;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use tokio::time::Instant;

/// What the body of one request may be; [`serve`](crate::serve) puts it in every request's
/// extensions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyRules {
    /// The largest body accepted.
    pub max_bytes: usize,
    /// The longest wait for the next part of the body.
    pub stall: Duration,
    /// The whole body's time, counted from `received`.
    pub timeout: Duration,
    /// When the request head arrived.
    pub received: Instant,
}

impl BodyRules {
    /// The rules of a request that did not come through [`serve`](crate::serve) (a router
    /// driven by hand, in a test): the defaults of this project's servers.
    fn unserved() -> BodyRules {
        BodyRules {
            max_bytes: 1 << 20,
            stall: Duration::from_secs(30),
            timeout: Duration::from_secs(60),
            received: Instant::now(),
        }
    }
}

/// A request body, read whole into one buffer under [`serve`](crate::serve)'s limits. Take
/// it as `Result<FullBody, BodyError>` to answer its errors in the API's own shape.
#[derive(Debug, Clone)]
pub struct FullBody(pub Bytes);

/// Why a request body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The body is larger than the limit (413).
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// No part of the body arrived for the client timeout (408).
    Stalled {
        /// The client timeout.
        after: Duration,
    },
    /// The body was not complete within the body timeout of its request (408).
    TooSlow {
        /// The body timeout.
        timeout: Duration,
    },
    /// The connection failed mid-body, or its framing is invalid (400).
    Failed(String),
}

impl BodyError {
    /// The status this error answers with when a handler does not map it itself.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Stalled { .. } | BodyError::TooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
            BodyError::Failed(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge { limit } => {
                write!(f, "request body too large: the limit is {limit} bytes")
            }
            BodyError::Stalled { after } => write!(
                f,
                "the request body stalled: no data for {}",
                humantime::format_duration(*after)
            ),
            BodyError::TooSlow { timeout } => write!(
                f,
                "the request body was not complete within {} of its request",
                humantime::format_duration(*timeout)
            ),
            BodyError::Failed(reason) => write!(f, "the request body could not be read: {reason}"),
        }
    }
}

impl std::error::Error for BodyError {}

impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        (self.status(), self.to_string()).into_response()
    }
}

impl<S: Send + Sync> FromRequest<S> for FullBody {
    type Rejection = BodyError;

    async fn from_request(request: Request, _state: &S) -> Result<FullBody, BodyError> {
        let rules = request
            .extensions()
            .get::<BodyRules>()
            .copied()
            .unwrap_or_else(BodyRules::unserved);
        read(request.into_body(), rules).await.map(FullBody)
    }
}

/// Reads `body` whole under `rules`.
pub(crate) async fn read(body: Body, rules: BodyRules) -> Result<Bytes, BodyError> {
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let limit = rules.max_bytes;
    let declared = body.size_hint().lower();
    if declared > limit as u64 {
        return Err(BodyError::TooLarge { limit });
    }
    let mut buffer = Vec::with_capacity(declared as usize);
    let deadline = rules.received + rules.timeout;
    let next_wait = || deadline.min(Instant::now() + rules.stall);
    let timer = tokio::time::sleep_until(next_wait());
    let mut timer = std::pin::pin!(timer);
    let mut body = std::pin::pin!(body);
    loop {
        let frame = tokio::select! {
            biased;
            frame = body.frame() => frame,
            () = &mut timer => {
                return Err(if Instant::now() >= deadline {
                    BodyError::TooSlow { timeout: rules.timeout }
                } else {
                    BodyError::Stalled { after: rules.stall }
                });
            }
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => return Err(BodyError::Failed(e.to_string())),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_trailers) => continue,
            },
        };
        if data.len() > limit - buffer.len() {
            return Err(BodyError::TooLarge { limit });
        }
        let needed = buffer.len() + data.len();
        if needed > buffer.capacity() {
            // Doubling, as `Vec` would, but never past the limit.
            let grown = needed.max(buffer.capacity() * 2).max(8192).min(limit);
            buffer.reserve_exact(grown - buffer.len());
        }
        buffer.extend_from_slice(&data);
        drop(data);
        // A body that came whole (the usual case) never arms the timer.
        if body.is_end_stream() {
            break;
        }
        timer.as_mut().reset(next_wait());
    }
    Ok(Bytes::from(buffer))
}
