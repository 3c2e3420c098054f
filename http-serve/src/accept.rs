//! What the accept loop of [`serve`](crate::serve) waits for: a free connection permit before
//! accepting ([`ConnectionPermits`], the connection limit), and a growing pause after an accept
//! error that would repeat at once ([`AcceptBackoff`]).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The connection limit: one permit per open connection, taken before accepting it.
pub(crate) struct ConnectionPermits {
    semaphore: Arc<Semaphore>,
    limit: usize,
    /// Whether the limit was reached and has not eased since (logged once per episode).
    saturated: bool,
}

impl ConnectionPermits {
    pub(crate) fn new(limit: usize) -> ConnectionPermits {
        let limit = limit.max(1);
        ConnectionPermits {
            semaphore: Arc::new(Semaphore::new(limit)),
            limit,
            saturated: false,
        }
    }

    /// A permit for the next connection, waiting for one to close when the limit is reached.
    pub(crate) async fn acquire(&mut self) -> OwnedSemaphorePermit {
        let free = self.semaphore.available_permits();
        if let Ok(permit) = self.semaphore.clone().try_acquire_owned() {
            // The episode ends once a tenth of the limit is free again (counting the permit
            // taken now), so a server hovering at the limit does not log on every connection.
            if self.saturated && free >= (self.limit / 10).max(1) {
                self.saturated = false;
                tracing::info!(
                    limit = self.limit,
                    "open connections are below the connection limit again"
                );
            }
            return permit;
        }
        if !self.saturated {
            self.saturated = true;
            tracing::warn!(
                limit = self.limit,
                "connection limit reached: new connections wait in the listen backlog until one closes"
            );
        }
        self.semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }
}

/// The pause after an accept error: 1 ms after the first, doubling after each further one up
/// to 1 s, and back to 1 ms once a connection is accepted again.
#[derive(Debug, Default)]
pub(crate) struct AcceptBackoff {
    /// The last pause, if the last accept failed.
    last: Option<Duration>,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(1);
    const MAX: Duration = Duration::from_secs(1);

    /// A connection was accepted: the next error pauses for the first pause again.
    pub(crate) fn accepted(&mut self) {
        self.last = None;
    }

    /// How long to pause after one more accept error.
    fn next_pause(&mut self) -> Duration {
        let pause = match self.last {
            None => Self::FIRST,
            Some(last) => (last * 2).min(Self::MAX),
        };
        self.last = Some(pause);
        pause
    }

    /// An accept error on one connection (reset before it was accepted) is no reason to
    /// pause; anything else (out of file descriptors, say) would repeat at once, so pause,
    /// longer the longer it lasts.
    pub(crate) async fn after_error(&mut self, e: io::Error) {
        use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
        if matches!(
            e.kind(),
            ConnectionAborted | ConnectionRefused | ConnectionReset
        ) {
            return;
        }
        let pause = self.next_pause();
        tracing::error!(error = %e, retry_in = ?pause, "accepting a connection failed");
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_doubles_to_a_second_and_resets_after_an_accept() {
        let mut backoff = AcceptBackoff::default();
        let pauses: Vec<u64> = (0..12)
            .map(|_| backoff.next_pause().as_millis() as u64)
            .collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 1000]);
        backoff.accepted();
        assert_eq!(backoff.next_pause(), Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_of_one_connection_does_not_pause() {
        let mut backoff = AcceptBackoff::default();
        let started = tokio::time::Instant::now();
        backoff
            .after_error(io::ErrorKind::ConnectionReset.into())
            .await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        backoff
            .after_error(io::Error::other("too many open files"))
            .await;
        backoff
            .after_error(io::Error::other("too many open files"))
            .await;
        assert_eq!(started.elapsed(), Duration::from_millis(1 + 2));
    }
}
