//! The healthy set of inference nodes, kept in memory so that no request waits on Consul.
//!
//! A Consul blocking query always returns the whole healthy set, so every update is a reset
//! (linkerd's `Update::Reset`): the watcher in [`consul`] publishes a fresh `Arc<[Endpoint]>`
//! through a `tokio::sync::watch`, and requests read a snapshot without holding a lock.

pub mod consul;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::time::Instant;

/// One healthy node instance as Consul lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Consul service ID of the instance.
    pub id: String,
    /// `host:port`, the form the seed's API shows (`gdp-growth-model-1:5000`).
    pub addr: String,
    /// Models the instance serves (from its Consul `Meta` or its `/models`); `None` = unknown.
    pub models: Option<Arc<[String]>>,
}

/// A snapshot of the healthy set.
pub type Endpoints = Arc<[Endpoint]>;

/// Read side of discovery: the latest healthy set and how fresh it is.
#[derive(Debug, Clone)]
pub struct Discovery {
    endpoints: watch::Receiver<Endpoints>,
    status: Arc<Status>,
}

/// Freshness of the healthy set, shared between the watcher and the readers.
#[derive(Debug)]
pub struct Status {
    started: Instant,
    last_ok: Mutex<Option<Instant>>,
    up: AtomicBool,
    recovering: AtomicBool,
    updates: AtomicU64,
}

// === impl Endpoint ===

impl Endpoint {
    /// Returns whether the instance serves `model`, or `None` when its models are unknown.
    pub fn serves(&self, model: &str) -> Option<bool> {
        self.models
            .as_ref()
            .map(|models| models.iter().any(|m| m == model))
    }
}

// === impl Discovery ===

impl Discovery {
    /// Creates a discovery handle fed by `endpoints`, with a fresh status.
    pub fn new(endpoints: watch::Receiver<Endpoints>, status: Arc<Status>) -> Self {
        Discovery { endpoints, status }
    }

    /// Creates a discovery that always answers `endpoints` (for tests and static setups).
    pub fn fixed(endpoints: Vec<Endpoint>) -> Self {
        let (tx, rx) = watch::channel(Endpoints::from(endpoints));
        // NOTE: the receiver keeps the last value after the sender is gone.
        drop(tx);
        let status = Arc::new(Status::new());
        status.mark_ok();
        Discovery::new(rx, status)
    }

    /// Returns the current healthy set; cheap (an `Arc` clone), never waits on Consul.
    pub fn endpoints(&self) -> Endpoints {
        self.endpoints.borrow().clone()
    }

    /// Returns a receiver that sees every published healthy set.
    pub fn subscribe(&self) -> watch::Receiver<Endpoints> {
        self.endpoints.clone()
    }

    /// Returns the freshness status.
    pub fn status(&self) -> &Status {
        &self.status
    }
}

// === impl Status ===

impl Status {
    /// Creates a status for a watcher that has not heard from Consul yet.
    pub fn new() -> Self {
        Status {
            started: Instant::now(),
            last_ok: Mutex::new(None),
            up: AtomicBool::new(false),
            recovering: AtomicBool::new(false),
            updates: AtomicU64::new(0),
        }
    }

    /// Records a successful answer from Consul; returns whether Consul was down before.
    pub fn mark_ok(&self) -> bool {
        *self.last_ok.lock().expect("status lock") = Some(Instant::now());
        self.updates.fetch_add(1, Ordering::Relaxed);
        !self.up.swap(true, Ordering::Relaxed)
    }

    /// Records a failed Consul call; returns whether Consul was up before.
    pub fn mark_down(&self) -> bool {
        self.up.swap(false, Ordering::Relaxed)
    }

    /// Returns whether the last Consul call succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Records whether the set holds nodes Consul no longer lists, kept after an outage.
    pub fn set_recovering(&self, recovering: bool) {
        self.recovering.store(recovering, Ordering::Relaxed);
    }

    /// Returns whether the set holds nodes Consul no longer lists, kept after an outage.
    pub fn is_recovering(&self) -> bool {
        self.recovering.load(Ordering::Relaxed)
    }

    /// Returns the number of successful Consul answers so far.
    pub fn updates(&self) -> u64 {
        self.updates.load(Ordering::Relaxed)
    }

    /// Returns how old the healthy set may be, in seconds: 0 while Consul answers (a pending
    /// blocking query returns as soon as the set changes), else the time since its last
    /// answer (since start if none).
    pub fn staleness_secs(&self) -> f64 {
        if self.is_up() {
            return 0.0;
        }
        let since = self
            .last_ok
            .lock()
            .expect("status lock")
            .unwrap_or(self.started);
        since.elapsed().as_secs_f64()
    }
}

impl Default for Status {
    fn default() -> Self {
        Status::new()
    }
}
