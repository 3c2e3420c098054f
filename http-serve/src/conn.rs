//! JSON bodies for the errors hyper answers by itself.
//!
//! When a request head cannot be parsed (a malformed request line or header: 400; more than
//! hyper's 100 headers or a header section over its buffer: 431; a URI over 64 KiB: 414),
//! hyper writes a canned answer with an empty body and closes the connection; it has no hook
//! to change that answer, and the service never sees the request. So [`ConnIo`], the
//! connection's socket as hyper sees it, swaps that answer for the same status with a
//! `{"detail": "..."}` body, as every other error of these servers has.
//!
//! [`ConnIo`] also closes a connection the way a client can read: an answer given before the
//! request's body was read (a 413 at its `Content-Length`, say) would be lost if the socket
//! were closed with the rest of the body unread (the kernel answers that with a reset, and
//! most clients send their whole body before they read). So shutting down sends a FIN, then
//! reads and discards what the client still sends until it closes, for at most [`LINGER`]
//! (nginx's "lingering close").
//!
//! It recognises hyper's answer by two facts: it is a `4xx` status line, and it is written
//! while no request is being answered on the connection. [`Exchanges`] counts the requests
//! handed to the service and the answers hyper has finished writing (an answer is finished
//! once its body has been dropped, which hyper does after encoding it, and hyper's buffer has
//! then been flushed), so a handler's own `4xx` is never mistaken for hyper's.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use axum::body::{Body, Bytes};
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Duration, Sleep};

/// How long a closing connection keeps reading (and discarding) what its client still sends.
pub(crate) const LINGER: Duration = Duration::from_secs(2);

/// The statuses hyper answers by itself (status line, then our `detail`).
const AUTOMATIC_ERRORS: [(&str, &str); 3] = [
    (
        "400 Bad Request",
        "the request could not be parsed: check its request line and the syntax of its headers",
    ),
    ("414 URI Too Long", "the request URI is too long"),
    (
        "431 Request Header Fields Too Large",
        "the request head is too large: at most 100 headers, about 400 KB in all",
    ),
];

/// The requests of one connection, counted as they are handed to the service and as their
/// answers are written out.
#[derive(Debug, Default)]
pub(crate) struct Exchanges {
    /// Requests handed to the service.
    dispatched: AtomicU64,
    /// Answers whose body hyper has dropped (it has encoded the whole answer).
    encoded: AtomicU64,
    /// Answers encoded before the socket was last flushed: every byte of them is written.
    written: AtomicU64,
}

impl Exchanges {
    /// Called when hyper hands a request to the service.
    pub fn dispatched(&self) {
        self.dispatched.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether every request handed to the service has been answered in full.
    fn idle(&self) -> bool {
        self.written.load(Ordering::Relaxed) == self.dispatched.load(Ordering::Relaxed)
    }
}

/// An answer's body, counted in [`Exchanges`] when hyper drops it.
pub(crate) struct AnswerBody {
    inner: Body,
    exchanges: Arc<Exchanges>,
}

impl AnswerBody {
    pub fn new(inner: Body, exchanges: Arc<Exchanges>) -> AnswerBody {
        AnswerBody { inner, exchanges }
    }
}

impl Drop for AnswerBody {
    fn drop(&mut self) {
        self.exchanges.encoded.fetch_add(1, Ordering::Relaxed);
    }
}

impl hyper::body::Body for AnswerBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's socket, replacing hyper's empty-bodied answers to unparsable requests.
pub(crate) struct ConnIo {
    stream: TcpStream,
    exchanges: Arc<Exchanges>,
    /// The answer written instead of hyper's, and how much of it is written.
    replacement: Option<(Vec<u8>, usize)>,
    /// Set once the write side is shut down: the end of the lingering close.
    linger: Option<Pin<Box<Sleep>>>,
}

impl ConnIo {
    pub fn new(stream: TcpStream, exchanges: Arc<Exchanges>) -> ConnIo {
        ConnIo {
            stream,
            exchanges,
            replacement: None,
            linger: None,
        }
    }

    /// Starts replacing `first` (the start of what hyper writes) if it is hyper's own answer.
    fn check(&mut self, first: &[u8]) {
        if self.replacement.is_none()
            && self.exchanges.idle()
            && let Some(answer) = replacement_for(first)
        {
            self.replacement = Some((answer, 0));
        }
    }

    /// Writes the replacement; `Ready(Ok(()))` once all of it is written.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some((answer, written)) = &mut self.replacement else {
            return Poll::Ready(Ok(()));
        };
        while *written < answer.len() {
            let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &answer[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }
}

/// Our answer in place of `head`, when `head` starts hyper's answer to an unparsable request.
fn replacement_for(head: &[u8]) -> Option<Vec<u8>> {
    let rest = head
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| head.strip_prefix(b"HTTP/1.0 "))?;
    let (status, detail) = AUTOMATIC_ERRORS
        .iter()
        .find(|(status, _)| rest.starts_with(&status.as_bytes()[..4]))?;
    let body = format!("{{\"detail\":\"{detail}\"}}");
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    Some(answer.into_bytes())
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(buf);
        if this.replacement.is_some() {
            ready!(this.poll_replacement(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            this.check(first);
        }
        if this.replacement.is_some() {
            ready!(this.poll_replacement(cx))?;
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // hyper flushes the socket only once its own buffer is written out: every answer
        // encoded so far is now written.
        let encoded = this.exchanges.encoded.load(Ordering::Relaxed);
        this.exchanges.written.store(encoded, Ordering::Relaxed);
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    /// Sends a FIN, then discards what the client still sends until it closes or [`LINGER`]
    /// is over, so the answer already written is read rather than lost to a reset.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.linger.is_none() {
            ready!(Pin::new(&mut this.stream).poll_shutdown(cx))?;
            this.linger = Some(Box::pin(tokio::time::sleep(LINGER)));
        }
        let mut scratch = [0u8; 8192];
        loop {
            if let Some(deadline) = this.linger.as_mut()
                && deadline.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Ok(()));
            }
            let mut unread = ReadBuf::new(&mut scratch);
            match ready!(Pin::new(&mut this.stream).poll_read(cx, &mut unread)) {
                Ok(()) if !unread.filled().is_empty() => continue,
                // The client closed (or reset): nothing more to wait for.
                _ => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hyper_parse_error_statuses_are_replaced() {
        let answer = replacement_for(b"HTTP/1.1 431 Request Header Fields Too Large\r\n").unwrap();
        let text = String::from_utf8(answer).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert!(
            body.starts_with("{\"detail\":\"the request head is too large"),
            "{body}"
        );
        assert!(replacement_for(b"HTTP/1.1 400 Bad Request\r\n").is_some());
        assert!(replacement_for(b"HTTP/1.0 414 URI Too Long\r\n").is_some());
        assert!(replacement_for(b"HTTP/1.1 404 Not Found\r\n").is_none());
        assert!(replacement_for(b"HTTP/1.1 200 OK\r\n").is_none());
        assert!(replacement_for(b"{\"x\":1}").is_none());
    }
}
