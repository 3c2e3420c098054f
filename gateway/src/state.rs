//! Shared application state handed to every handler.

use std::ops::Deref;
use std::sync::{Arc, Weak};

use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::balance::{EjectPolicy, RandomBalancer};
use crate::config::Config;
use crate::discovery::{self, Discovery, consul::WatchConfig};
use crate::error::GatewayError;
use crate::hedge::Hedging;
use crate::runtime::Runtime;
use crate::stats::Stats;
use crate::telemetry::NodeMetrics;
use crate::upstream::{self, HttpClient};

/// Cheap-to-clone handle on the gateway's state.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// What the handlers share.
pub struct Inner {
    /// The configuration the gateway started with.
    pub config: Config,
    /// The healthy set of nodes, kept fresh by the Consul watcher.
    pub discovery: Discovery,
    /// Random choice among healthy nodes, with ejection of failing ones.
    pub balancer: RandomBalancer,
    /// The hedge delay and budget.
    pub hedging: Hedging,
    /// The per-node upstream series of `/metrics`.
    pub node_metrics: NodeMetrics,
    /// The dashboard's request, error and latency series, of the cluster and of each node.
    pub stats: Stats,
    /// Pooled keep-alive client for the nodes.
    pub http_client: HttpClient,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Cancelled on shutdown (or when the state is dropped): stops background tasks.
    pub background: CancellationToken,
    /// Launches, lists and stops nodes for the lifecycle endpoints (Docker or processes).
    pub runtime: Arc<Runtime>,
}

// === impl AppState ===

impl AppState {
    /// Builds the state and starts the Consul watcher (it stops when the state is dropped or
    /// `serve` returns). Must run inside a Tokio runtime.
    pub fn new(config: Config) -> Result<AppState, GatewayError> {
        config.check().map_err(GatewayError::InvalidConfig)?;
        let consul = consul::Client::new(
            config.discovery.service_discovery_url.as_str(),
            config.discovery.consul_token.clone(),
        )
        .map_err(|e| GatewayError::InvalidConfig(format!("SERVICE_DISCOVERY_URL: {e}")))?;
        let background = CancellationToken::new();
        let discovery = discovery::consul::spawn(
            consul,
            upstream::client(config.upstream.connect_timeout),
            WatchConfig {
                service: config.discovery.service_name.clone(),
                wait: config.discovery.discovery_wait,
                backoff_max: config.discovery.discovery_backoff_max,
                models_timeout: config.upstream.models_timeout,
                recovery_grace: config.discovery.discovery_recovery_grace,
            },
            background.clone(),
        );
        Ok(AppState::with_discovery(config, discovery, background))
    }

    /// Builds the state around an existing discovery; `background` stops its watcher. Inside a
    /// Tokio runtime, also starts the task that prunes per-node records when the set changes.
    pub fn with_discovery(
        config: Config,
        discovery: Discovery,
        background: CancellationToken,
    ) -> AppState {
        let balancer = RandomBalancer::new(
            EjectPolicy {
                after: config.eject.eject_after,
                base: config.eject.eject_base,
                max: config.eject.eject_max,
            },
            config.rng_seed,
        );
        let http_client = upstream::client(config.upstream.connect_timeout);
        let runtime = Arc::new(Runtime::new(
            &config.runtime,
            &config.discovery.node_registration(),
        ));
        // Choose (and log) the runtime at startup rather than at the first lifecycle request.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let runtime = runtime.clone();
            handle.spawn(async move { runtime.kind().await });
        }
        let state = AppState(Arc::new(Inner {
            hedging: Hedging::new(config.upstream.hedge_after, config.upstream.hedge_budget),
            node_metrics: NodeMetrics::new(config.upstream.node_metrics_retention),
            stats: Stats::new(),
            config,
            discovery,
            balancer,
            http_client,
            metrics: crate::telemetry::prometheus(),
            background,
            runtime,
        }));
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(forget_departed(Arc::downgrade(&state.0)));
        }
        state
    }
}

/// Drops the balancer's records, the dashboard's series and, after their retention, the metric
/// series of nodes that left the healthy set: at every new set, and every few seconds. Ends
/// with the state.
async fn forget_departed(state: Weak<Inner>) {
    let Some((mut sets, cancel)) = state
        .upgrade()
        .map(|s| (s.discovery.subscribe(), s.background.clone()))
    else {
        return;
    };
    let mut open = true;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = sets.changed(), if open => open = changed.is_ok(),
            () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
        }
        let Some(state) = state.upgrade() else { return };
        let healthy = state.discovery.endpoints();
        state.balancer.retain(&healthy);
        state.node_metrics.retain(&healthy);
        state.stats.retain(&healthy);
    }
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.background.cancel();
    }
}
