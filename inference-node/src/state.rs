//! Shared state of the HTTP handlers.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::batcher::BatchPolicy;
use crate::config::Config;
use crate::error::NodeError;
use crate::metrics::{self, InFlight};
use crate::registry::Registry;

/// Cheap-to-clone handle to the node's state.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// What every handler can see.
pub struct Inner {
    /// The configuration the node started with.
    pub config: Config,
    /// The model repository (what is served, and its changes).
    pub registry: Registry,
    /// Prometheus handle behind `/metrics`.
    pub metrics: PrometheusHandle,
    permits: Arc<Semaphore>,
    draining: AtomicBool,
}

/// Held while a prediction request is in progress.
pub struct Permit {
    _permit: OwnedSemaphorePermit,
    _in_flight: InFlight,
}

impl AppState {
    /// Loads the models named by `config` and builds the state.
    pub fn new(config: Config) -> Result<AppState, NodeError> {
        config.validate()?;
        let metrics = metrics::handle();
        let policy = BatchPolicy {
            max_rows: config.batch_max_rows,
            max_wait: config.batch_max_wait,
            idle_spin: config.batch_idle_spin,
        };
        let registry = Registry::load(
            &config.models_dir,
            &config.default_model,
            config.ort_dylib_path.as_deref(),
            policy,
            config.tree_kernel(),
        )?;
        Ok(AppState(Arc::new(Inner {
            permits: Arc::new(Semaphore::new(config.max_in_flight)),
            config,
            registry,
            metrics,
            draining: AtomicBool::new(false),
        })))
    }

    /// Takes an in-flight slot, or refuses at once when all are taken.
    ///
    /// Draining does not refuse: a request that reached a handler was accepted and is served.
    pub fn admit(&self) -> Result<Permit, NodeError> {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok(Permit {
                _permit: permit,
                _in_flight: InFlight::start(),
            }),
            Err(_) => {
                metrics::record_rejection("in_flight_limit");
                Err(NodeError::Overloaded {
                    limit: self.config.max_in_flight,
                })
            }
        }
    }

    /// Returns the number of prediction requests in progress.
    pub fn in_flight(&self) -> usize {
        self.config.max_in_flight - self.permits.available_permits()
    }

    /// Marks the node as draining: readiness turns false, `/health` answers 503.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Returns whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Returns whether the node takes predictions: models are loaded and it is not draining.
    pub fn is_ready(&self) -> bool {
        !self.registry.is_empty() && !self.is_draining()
    }
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
