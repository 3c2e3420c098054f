//! `consul-dev`: a Consul-compatible stand-in for development and tests. Production uses a
//! real Consul agent; this speaks the subset of its HTTP API the project uses, with the same
//! JSON shapes and behaviour (consul/README.md lists what it covers).
//!
//! - [`catalog`]: the node, services, checks and the index (synchronous, time passed in).
//! - [`registration`]: decoding and validating `PUT /v1/agent/service/register` bodies.
//! - [`checks`]: the runners that execute HTTP/TCP checks, expire TTL checks and reap
//!   services whose checks stayed critical.
//! - [`blocking`]: `?index=&wait=` blocking queries.
//! - [`http`]: the routes, ACL handling and error mapping.
//! - [`ui`]: the read-only `/ui` page.

pub mod blocking;
pub mod catalog;
pub mod checks;
pub mod http;
pub mod registration;
pub mod ui;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::error::ConsulError;
use catalog::{Catalog, NodeInfo};

/// Settings of the stand-in agent.
#[derive(Debug, Clone)]
pub struct StandInConfig {
    /// When set, ACLs are on with Consul's default-deny policy and this is the one
    /// (management) token: writes need it (else 403 "Permission denied"), reads without it
    /// come back empty, a wrong token gets 403 "ACL not found" (see `http`).
    pub token: Option<String>,
    /// How often the reaper looks for services to deregister (Consul: 30 s).
    pub reaper_interval: Duration,
    /// Minimum `DeregisterCriticalServiceAfter` (Consul: 1 minute).
    pub deregister_floor: Duration,
    /// Node name.
    pub node_name: String,
    /// Datacenter name.
    pub datacenter: String,
    /// Address the node advertises (`Node.Address`; the leader is this address on port 8300).
    pub advertise_addr: IpAddr,
}

impl Default for StandInConfig {
    fn default() -> Self {
        StandInConfig {
            token: None,
            reaper_interval: Duration::from_secs(30),
            deregister_floor: Duration::from_secs(60),
            node_name: "consul-dev".to_string(),
            datacenter: "dc1".to_string(),
            advertise_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

/// State shared by the HTTP handlers and the check runners.
#[derive(Debug)]
pub struct Shared {
    catalog: Mutex<Catalog>,
    /// Carries the catalog index after every change, to wake blocking queries.
    changes: watch::Sender<u64>,
    /// Wakes TTL runners after a pass/warn/fail.
    ttl_updates: Notify,
    config: StandInConfig,
    prober: reqwest::Client,
    shutdown: CancellationToken,
}

// === impl Shared ===

impl Shared {
    /// Creates the state for a fresh agent.
    pub fn new(config: StandInConfig) -> Shared {
        let node = NodeInfo {
            name: config.node_name.clone(),
            id: random_uuid(),
            address: config.advertise_addr.to_string(),
            datacenter: config.datacenter.clone(),
        };
        let catalog = Catalog::new(node);
        let (changes, _) = watch::channel(catalog.index());
        let prober = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("a plain-HTTP reqwest client always builds");
        Shared {
            catalog: Mutex::new(catalog),
            changes,
            ttl_updates: Notify::new(),
            config,
            prober,
            shutdown: CancellationToken::new(),
        }
    }

    /// Returns the configuration.
    pub fn config(&self) -> &StandInConfig {
        &self.config
    }

    /// Locks the catalog for reading.
    pub fn catalog(&self) -> MutexGuard<'_, Catalog> {
        // A panic while holding the lock leaves consistent data (every mutation is applied
        // in one step), so a poisoned lock is still usable.
        self.catalog.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the catalog and wakes blocking queries if the index moved.
    pub fn mutate<R>(&self, f: impl FnOnce(&mut Catalog) -> R) -> R {
        let mut catalog = self.catalog();
        let before = catalog.index();
        let result = f(&mut catalog);
        let after = catalog.index();
        drop(catalog);
        if after != before {
            self.changes.send_replace(after);
        }
        result
    }

    /// Subscribes to index changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Returns the token cancelled at shutdown.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Returns the Raft leader address this agent reports.
    pub fn leader(&self) -> String {
        SocketAddr::new(self.config.advertise_addr, 8300).to_string()
    }
}

/// Serves the stand-in on `listener` until `shutdown` completes; then blocking queries return
/// at once, check runners stop and open connections are closed.
pub async fn serve(
    listener: TcpListener,
    config: StandInConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared::new(config));
    let reaper = tokio::spawn(checks::reaper(shared.clone()));
    let token = shared.shutdown.clone();
    let result = axum::serve(listener, http::router(shared.clone()))
        .with_graceful_shutdown(async move {
            tokio::select! {
                () = shutdown => {}
                () = token.cancelled() => {}
            }
            token.cancel();
        })
        .await;
    shared.shutdown.cancel();
    reaper.abort();
    // Dropping the records aborts their runners, which hold references to `shared`.
    shared.mutate(|catalog| catalog.clear());
    result
}

/// A stand-in running in the current process, for tests. Dropping it stops it too.
#[derive(Debug)]
pub struct StandIn {
    addr: SocketAddr,
    token: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

// === impl StandIn ===

impl StandIn {
    /// Returns the address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Returns its base URL, e.g. `http://127.0.0.1:41234`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Returns a [`Client`] for it, carrying the configured token.
    pub fn client(&self) -> Result<Client, ConsulError> {
        Client::new(&self.base_url(), self.token.clone())
    }

    /// Stops it and waits until the port is released (so it can be restarted on the same
    /// address with [`spawn_on`]).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a stand-in on `127.0.0.1:0`.
///
/// # Panics
/// If no loopback port can be bound (a test environment problem).
pub async fn spawn(config: StandInConfig) -> StandIn {
    spawn_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config)
        .await
        .expect("bind a loopback port for the Consul stand-in")
}

/// Starts a stand-in on `addr` (e.g. the address of one that was just shut down).
pub async fn spawn_on(addr: SocketAddr, config: StandInConfig) -> std::io::Result<StandIn> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let token = config.token.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, config, async {
        let _ = stopped.await;
    }));
    Ok(StandIn {
        addr,
        token,
        stop: Some(stop),
        task: Some(task),
    })
}

fn random_uuid() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[0],
        b[1],
        b[2],
        b[3],
        b[4],
        b[5],
        b[6],
        b[7],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    )
}
