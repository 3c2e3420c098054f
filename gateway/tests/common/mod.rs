//! Helpers for the integration tests: the Consul stand-in, real inference nodes (real models,
//! real ONNX Runtime) and the gateway, all on `127.0.0.1:0`.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use clap::Parser;
use consul::standin::{self, StandIn, StandInConfig};
use gateway::{AppState, Config};
use serde_json::Value;
pub use test_support::{eventually, models_dir};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Starts a Consul stand-in. Also installs the gateway's metrics recorder first: the nodes
/// in this process would otherwise install theirs, and the gateway's `/metrics` would be empty.
pub async fn spawn_consul() -> StandIn {
    gateway::telemetry::prometheus();
    standin::spawn(StandInConfig::default()).await
}

/// How an isolated server stops.
enum Stop {
    Graceful,
    Kill,
}

type ShutdownFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A server running on its own thread and Tokio runtime, so that it can be killed: dropping
/// the runtime drops its sockets at once, like a process dying.
pub struct Isolated {
    pub addr: SocketAddr,
    control: Option<oneshot::Sender<Stop>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Isolated {
    /// Binds `127.0.0.1:0` and runs `make(listener, shutdown)` on a fresh runtime.
    pub fn spawn<F, Fut>(name: &str, make: F) -> Isolated
    where
        F: FnOnce(TcpListener, ShutdownFuture) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (control, control_rx) = oneshot::channel::<Stop>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).unwrap();
                    let (grace_tx, grace_rx) = oneshot::channel::<()>();
                    let server = make(
                        listener,
                        Box::pin(async move {
                            let _ = grace_rx.await;
                        }),
                    );
                    tokio::pin!(server);
                    tokio::select! {
                        () = &mut server => {}
                        stop = control_rx => match stop {
                            Ok(Stop::Kill) => {}
                            Ok(Stop::Graceful) | Err(_) => {
                                let _ = grace_tx.send(());
                                (&mut server).await;
                            }
                        }
                    }
                });
                rt.shutdown_background();
            })
            .unwrap();
        Isolated {
            addr,
            control: Some(control),
            thread: Some(thread),
        }
    }

    /// Kills it: every socket closes at once, nothing is deregistered.
    pub fn kill(mut self) {
        self.stop(Stop::Kill);
    }

    fn stop(&mut self, how: Stop) {
        if let Some(control) = self.control.take() {
            let _ = control.send(how);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        self.stop(Stop::Graceful);
    }
}

/// A real inference node registered in Consul as `127.0.0.1:<port>`.
pub struct TestNode {
    pub server: Isolated,
    pub state: inference_node::AppState,
}

impl TestNode {
    /// `host:port`, as the gateway lists it.
    pub fn addr(&self) -> String {
        self.server.addr.to_string()
    }
}

/// Starts a node with the shipped models, registering in `consul` with a fast health check.
pub fn spawn_node(consul: &str) -> TestNode {
    spawn_node_refreshing(consul, "200ms")
}

/// Starts a node like [`spawn_node`] that checks its registration every `refresh` (and
/// registers again when Consul has forgotten it).
pub fn spawn_node_refreshing(consul: &str, refresh: &str) -> TestNode {
    spawn_node_with(consul, refresh, &[])
}

/// Starts a node like [`spawn_node_refreshing`] with `extra` flags (a Consul token, say).
pub fn spawn_node_with(consul: &str, refresh: &str, extra: &[&str]) -> TestNode {
    spawn_node_in(&models_dir(), consul, refresh, extra)
}

/// Starts a node like [`spawn_node_with`] serving the models in `dir`.
pub fn spawn_node_in(
    dir: &std::path::Path,
    consul: &str,
    refresh: &str,
    extra: &[&str],
) -> TestNode {
    let mut args: Vec<String> = [
        "inference-node",
        "--models-dir",
        dir.to_str().unwrap(),
        "--service-discovery-url",
        consul,
        "--advertise-address",
        "127.0.0.1",
        // Generous enough that a loaded node on a shared 2-core machine still passes.
        "--check-interval",
        "500ms",
        "--check-timeout",
        "500ms",
        "--registration-refresh",
        refresh,
        "--shutdown-grace",
        "2s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let config = inference_node::Config::try_parse_from(args).unwrap();
    let (state_tx, state_rx) = std::sync::mpsc::channel();
    let server = Isolated::spawn("node", move |listener, shutdown| async move {
        let state = inference_node::AppState::new(config).expect("node state");
        state_tx.send(state.clone()).unwrap();
        inference_node::serve(listener, state, shutdown)
            .await
            .expect("node serve");
    });
    let state = state_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("node started");
    TestNode { server, state }
}

/// A gateway serving on a loopback port; dropping it shuts it down.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub state: AppState,
    _stop: oneshot::Sender<()>,
}

impl TestGateway {
    /// Wraps a gateway started elsewhere; dropping `stop` shuts it down.
    pub fn new(addr: SocketAddr, state: AppState, stop: oneshot::Sender<()>) -> TestGateway {
        TestGateway {
            addr,
            state,
            _stop: stop,
        }
    }

    /// Returns `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// The gateway configuration for tests: fast discovery retries, a fixed RNG seed.
pub fn gateway_config(consul: &str, extra: &[&str]) -> Config {
    let mut args: Vec<String> = [
        "gateway",
        "--service-discovery-url",
        consul,
        "--discovery-wait",
        "2s",
        "--discovery-backoff-max",
        "200ms",
        "--upstream-timeout",
        "2s",
        "--rng-seed",
        "42",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    Config::try_parse_from(args).unwrap()
}

/// Starts a gateway in this runtime.
pub async fn spawn_gateway(config: Config) -> TestGateway {
    http_serve::telemetry::init_for_test();
    let state = AppState::new(config).expect("gateway state");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(gateway::serve(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    TestGateway {
        addr,
        state,
        _stop: stop,
    }
}

/// A plain HTTP client for the tests.
pub fn client() -> reqwest::Client {
    test_support::client(Duration::from_secs(10))
}

/// POSTs the JSON text `body` to `url`; returns the status and the JSON answer.
pub async fn post(url: &str, body: &str) -> (u16, Value) {
    let resp = client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// Returns the gateway's healthy set as `/api/predict/services` lists it.
pub async fn services(gw: &TestGateway) -> Vec<String> {
    let v: Value = client()
        .get(gw.url("/api/predict/services"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut list: Vec<String> = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    list.sort();
    list
}

/// Waits until the gateway's healthy set is exactly `nodes`.
pub async fn wait_for_set(gw: &TestGateway, nodes: &[&TestNode]) {
    let mut want: Vec<String> = nodes.iter().map(|n| n.addr()).collect();
    want.sort();
    eventually(
        Duration::from_secs(15),
        &format!("healthy set {want:?}"),
        || {
            let want = want.clone();
            async move { services(gw).await == want }
        },
    )
    .await;
}

/// The seed README's prediction body.
pub const SEED_ROW: &str = r#"{"gdp_per_capita": 50000, "unemployment_rate": 5.2, "gdp_growth_rate_lag": 2.1, "gdp_growth_rate_ma": 2.3}"#;

/// Sends the seed row to the gateway's prediction endpoint; `query` is appended to the path
/// (`""` or `"?model=..."`).
pub async fn send_seed_row(
    client: &reqwest::Client,
    gw: &TestGateway,
    query: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(gw.url(&format!("/api/predict/gdp_growth_rate{query}")))
        .header("content-type", "application/json")
        .body(SEED_ROW)
        .send()
        .await
}

/// Posts the seed row to the gateway; returns the status (0 when no answer came).
pub async fn predict(client: &reqwest::Client, gw: &TestGateway) -> u16 {
    match send_seed_row(client, gw, "").await {
        Ok(resp) => resp.status().as_u16(),
        Err(_) => 0,
    }
}

/// Reads the gateway's `gateway_upstream_attempts_total` for `node` from `/metrics`.
pub async fn attempts(gw: &TestGateway, node: &str) -> u64 {
    let text = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let needle = format!("gateway_upstream_attempts_total{{node=\"{node}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map(|v| v.trim().parse::<f64>().unwrap() as u64)
        .unwrap_or(0)
}
