//! inference-node: serves converted scikit-learn models (ONNX) through ONNX Runtime, speaking
//! the seed's API (`/health`, `/predict`) and the Open Inference Protocol (`/v2/...`), and
//! registering itself in Consul.
//!
//! # Layout
//! - [`api`]: the router and what both API families share; one folder per family:
//!   - [`api::seed`]: the seed's `/health`, `/predict`, `/models` (handlers, body validation);
//!   - [`api::v2`]: the Open Inference Protocol under `/v2` (handlers, wire types, the binary
//!     tensor data extension, the model repository extension).
//! - [`error`]: `NodeError`, the one table from every error to its HTTP status and body.
//! - [`state`]: `AppState` (models, in-flight bound, draining flag).
//! - [`registry`]: the model repository: every model of `MODELS_DIR` by name and version,
//!   swapped atomically when files are added, replaced or removed (polling,
//!   `INFERENCE_NODE_MODEL_POLL`, or the repository API).
//! - [`batcher`]: one inference thread per model, merging concurrent requests (dynamic batching).
//! - The models themselves (the ONNX contract with `convert-models`, loading, `predict`, finding
//!   ONNX Runtime) are the `onnx_model` crate's.
//! - [`config`]: `Config` (clap derive, every setting also from the environment).
//! - [`advertise`]: `ADVERTISE_NETWORK`'s subnet and this machine's address in it.
//! - [`metrics`]: Prometheus recorder and request middleware.
//! - [`registration`]: Consul register / refresh / deregister loop.
//! - [`shutdown`], [`probe`]: exiting with the parent process, `--health-check`.
//! - [`sched_policy`]: the CPU scheduling policy of the node's threads.
//!
//! Layers point down: `api` → `state` → `registry` → `batcher` → `onnx_model`, and nothing
//! imports `api` but the crate root. `registry` and `batcher` know nothing of HTTP: they return
//! their own errors, and `error` (used by `api`, `state`, `config`, `shutdown`) turns those into
//! `NodeError`s and statuses, so `error` points down to them and never the other way.
//! Beside them: `config` imports `error`, `advertise` and `sched_policy`, `shutdown` `error`,
//! `registration` `config`; `registry` and `batcher` import `metrics`; `metrics`,
//! `sched_policy`, `probe`, `advertise` import nothing of the crate. The crate root starts the
//! polling of the models directory and makes the Consul registration follow the model set.
//!
//! [`serve`] runs the whole node on a bound listener until a shutdown future completes. The
//! shutdown signal, the log setup, the metrics upkeep and the grace period come from
//! `http-serve`.

#![forbid(unsafe_code)]

pub mod advertise;
pub mod api;
pub mod batcher;
pub mod config;
pub mod error;
pub mod metrics;
pub mod probe;
pub mod registration;
pub mod registry;
pub mod sched_policy;
pub mod shutdown;
pub mod state;

use std::future::Future;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use api::router;
pub use config::Config;
pub use error::NodeError;
pub use state::AppState;

/// Serves the node on `listener` until `shutdown` completes, then: marks the node draining
/// (`/health` 503), deregisters from Consul, stops accepting, and waits for in-flight requests
/// up to the configured grace period.
///
/// Registers in Consul when `SERVICE_DISCOVERY_URL` is set, advertising `listener`'s port.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let local = listener
        .local_addr()
        .map_err(|e| NodeError::Config(format!("listener has no address: {e}")))?;
    let background = CancellationToken::new();
    let registration = start_registration(&state, local.port())?;
    http_serve::metrics_upkeep::spawn(state.metrics.clone(), background.clone());
    if let Some(every) = state.config.model_poll {
        tokio::spawn(poll_models(state.clone(), every, background.clone()));
    }

    let signal_state = state.clone();
    let signal = async move {
        shutdown.await;
        signal_state.start_draining();
        tracing::info!("shutting down: deregistering, then finishing in-flight requests");
        if let Some((cancel, task)) = registration {
            cancel.cancel();
            let _ = task.await;
        }
    };
    tracing::info!(address = %local, models = state.registry.len(), "serving");
    let result = http_serve::serve_with_grace(
        listener,
        router(state.clone()),
        http_serve::Limits {
            client_timeout: state.config.client_timeout,
            body_timeout: state.config.body_timeout,
            max_body_bytes: state.config.max_body_bytes,
            max_connections: state.config.max_connections,
        },
        signal,
        state.config.shutdown_grace,
    )
    .await
    .map_err(|e| NodeError::Config(format!("server failed: {e}")));
    background.cancel();
    tracing::info!("stopped");
    result
}

type Registration = (CancellationToken, tokio::task::JoinHandle<()>);

fn start_registration(state: &AppState, port: u16) -> Result<Option<Registration>, NodeError> {
    let config = &state.config;
    let Some(url) = &config.service_discovery_url else {
        tracing::info!("SERVICE_DISCOVERY_URL is not set: not registering in Consul");
        return Ok(None);
    };
    let client = consul::Client::new(url.as_str(), config.consul_token.clone())
        .map_err(|e| NodeError::Config(format!("SERVICE_DISCOVERY_URL: {e}")))?;
    let host = config.registered_host()?;
    let definition = {
        let state = state.clone();
        move |models: &[String]| {
            let models: Vec<&str> = models.iter().map(String::as_str).collect();
            registration::service_definition(
                &state.config,
                &host,
                port,
                &models,
                state.registry.default_name(),
            )
        }
    };
    let mut names = state.registry.watch_names();
    let (services, follower) = tokio::sync::watch::channel(definition(&names.borrow_and_update()));
    let cancel = CancellationToken::new();
    // Follows the model set: ends when the registration loop ends (no receiver left).
    tokio::spawn(async move {
        while names.changed().await.is_ok() {
            let service = definition(&names.borrow_and_update());
            if services.send(service).is_err() {
                break;
            }
        }
    });
    let task = tokio::spawn(registration::maintain(
        client,
        follower,
        config.registration_refresh,
        cancel.clone(),
    ));
    Ok(Some((cancel, task)))
}

/// Looks at the models directory every `every` until `stop` fires (`INFERENCE_NODE_MODEL_POLL`).
async fn poll_models(state: AppState, every: std::time::Duration, stop: CancellationToken) {
    tracing::info!(every = %humantime::format_duration(every), "polling the models directory");
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let scanning = state.clone();
        let result =
            tokio::task::spawn_blocking(move || scanning.registry.sync(registry::Scope::All)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot look at the models directory"),
            Err(error) => tracing::error!(%error, "the models directory scan panicked"),
        }
    }
}
