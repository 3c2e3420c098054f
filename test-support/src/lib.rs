//! test-support: what the integration tests of several crates need alike, written once. A
//! dev-dependency only: nothing that ships depends on it.
//!
//! Layout: this file has the shipped models' directory ([`models_dir`]), an HTTP client for
//! tests ([`client`]) and polling until a condition holds ([`eventually`]); [`slow_body`]
//! sends a request body one byte per TCP segment to a server binary and measures what that
//! costs it in resident memory. It depends on no crate of the workspace, so every crate's
//! tests may use it.

#![forbid(unsafe_code)]

pub mod slow_body;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

/// The shipped models directory (absolute); fails (never skips) when the ONNX files are
/// missing.
pub fn models_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/gdp_growth_rate");
    let probe = dir.join("LinearRegression.onnx");
    assert!(
        probe.is_file(),
        "{} is missing: run `cargo run -p tools --bin convert-models` to convert the shipped models",
        probe.display()
    );
    dir.canonicalize().unwrap()
}

/// An HTTP client that ignores proxy settings and gives up on a request after `timeout`.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .unwrap()
}

/// What a condition polled by [`eventually`] returns: `true`/`false`, or `Some(value)` once
/// it holds.
pub trait Outcome {
    /// What [`eventually`] returns once the condition holds.
    type Value;
    /// `Some` once the condition holds.
    fn reached(self) -> Option<Self::Value>;
}

impl Outcome for bool {
    type Value = ();
    fn reached(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn reached(self) -> Option<T> {
        self
    }
}

/// How often [`eventually`] polls.
const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it holds and returns what it returned; panics naming `what` once
/// `limit` has passed.
pub async fn eventually<F, Fut>(
    limit: Duration,
    what: &str,
    mut check: F,
) -> <Fut::Output as Outcome>::Value
where
    F: FnMut() -> Fut,
    Fut: Future,
    Fut::Output: Outcome,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await.reached() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}
