//! Balancing and fault handling with real nodes: spread, unhealthy nodes, killed nodes, a
//! frozen node and a Consul outage.
//!
//! The frozen-node test runs the inference-node binary as child processes (a `SIGSTOP` needs a
//! process of its own); it needs that binary in the same target directory (`cargo build -p
//! inference-node`; `cargo test --workspace` builds it) and fails with that hint when missing.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// Requests from `workers` concurrent loops until stopped, counting successes and failures.
struct Load {
    ok: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<u16>>>,
}

impl Load {
    fn start(gw: &TestGateway, workers: usize) -> Load {
        let ok = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let url = gw.url("/api/predict/gdp_growth_rate");
        let tasks = (0..workers)
            .map(|_| {
                let (ok, stop, url) = (ok.clone(), stop.clone(), url.clone());
                tokio::spawn(async move {
                    let http = client();
                    let mut bad = Vec::new();
                    // Bounded: at most 20 000 requests per worker.
                    for _ in 0..20_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let status = match http
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(SEED_ROW)
                            .send()
                            .await
                        {
                            Ok(r) => r.status().as_u16(),
                            Err(_) => 0,
                        };
                        if status == 200 {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            bad.push(status);
                        }
                    }
                    bad
                })
            })
            .collect();
        Load { ok, stop, tasks }
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    async fn finish(self) -> (u64, Vec<u16>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut bad = Vec::new();
        for t in self.tasks {
            bad.extend(t.await.unwrap());
        }
        (self.ok.load(Ordering::Relaxed), bad)
    }
}

impl Load {
    /// Stops the load and checks that every request succeeded.
    async fn finish_without_failures(self) {
        let (ok, bad) = self.finish().await;
        assert!(
            bad.is_empty(),
            "{} failed requests (first: {:?}) of {}",
            bad.len(),
            &bad[..bad.len().min(10)],
            ok + bad.len() as u64
        );
    }
}

/// The gateway's `/health` answer.
async fn gateway_health(gw: &TestGateway) -> serde_json::Value {
    let resp = client().get(gw.url("/health")).send().await.unwrap();
    resp.json().await.unwrap()
}

/// Stops Consul and waits until the gateway has noticed.
async fn stop_consul(consul: consul::standin::StandIn, gw: &TestGateway) {
    consul.shutdown().await;
    eventually(
        Duration::from_secs(5),
        "the gateway to notice Consul is gone",
        || async { !gw.state.discovery.status().is_up() },
    )
    .await;
}

/// Starts a fresh Consul (one that knows no node) on `addr` and waits until the gateway
/// reaches it.
async fn restart_consul(addr: std::net::SocketAddr, gw: &TestGateway) -> consul::standin::StandIn {
    let consul = consul::standin::spawn_on(addr, consul::standin::StandInConfig::default())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the gateway to reach Consul again",
        || async { gw.state.discovery.status().is_up() },
    )
    .await;
    consul
}

/// Consul, two nodes that re-register every second, and a gateway on a 30 s blocking query
/// with the given recovery grace, both nodes listed.
struct RecoveryCluster {
    consul: consul::standin::StandIn,
    gw: TestGateway,
    a: TestNode,
    b: TestNode,
}

async fn recovery_cluster(grace: Duration) -> RecoveryCluster {
    let consul = spawn_consul().await;
    let url = consul.base_url();
    let a = spawn_node_refreshing(&url, "1s");
    let b = spawn_node_refreshing(&url, "1s");
    let mut config = gateway_config(&url, &[]);
    config.discovery.discovery_wait = Duration::from_secs(30);
    config.discovery.discovery_recovery_grace = grace;
    let gw = spawn_gateway(config).await;
    wait_for_set(&gw, &[&a, &b]).await;
    RecoveryCluster { consul, gw, a, b }
}

async fn wait_for_progress(load: &Load, more: u64) {
    let target = load.ok() + more;
    eventually(Duration::from_secs(10), "requests to succeed", || async {
        load.ok() >= target
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_balancing_spreads_over_all_healthy_nodes() {
    let consul = spawn_consul().await;
    let nodes: Vec<TestNode> = (0..3).map(|_| spawn_node(&consul.base_url())).collect();
    let gw = spawn_gateway(gateway_config(&consul.base_url(), &[])).await;
    wait_for_set(&gw, &nodes.iter().collect::<Vec<_>>()).await;

    let mut before = Vec::new();
    for n in &nodes {
        before.push(attempts(&gw, &n.addr()).await);
    }
    let http = client();
    const N: u64 = 600;
    for _ in 0..N {
        assert_eq!(predict(&http, &gw).await, 200);
    }
    let mut total = 0;
    for (n, before) in nodes.iter().zip(before) {
        let got = attempts(&gw, &n.addr()).await - before;
        total += got;
        // Expected 200 each; the standard deviation is ~11.5, so 140..=260 is > 5 sigma.
        assert!((140..=260).contains(&got), "{} got {got} of {N}", n.addr());
    }
    assert_eq!(total, N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_unhealthy_in_consul_stops_receiving_traffic() {
    let consul = spawn_consul().await;
    let a = spawn_node(&consul.base_url());
    let b = spawn_node(&consul.base_url());
    let gw = spawn_gateway(gateway_config(&consul.base_url(), &[])).await;
    wait_for_set(&gw, &[&a, &b]).await;

    // The node's /health turns 503; Consul's HTTP check marks it critical.
    a.state.start_draining();
    wait_for_set(&gw, &[&b]).await;
    let before = attempts(&gw, &a.addr()).await;
    let http = client();
    for _ in 0..200 {
        assert_eq!(predict(&http, &gw).await, 200);
    }
    assert_eq!(
        attempts(&gw, &a.addr()).await,
        before,
        "traffic reached the unhealthy node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_causes_no_failed_request() {
    let consul = spawn_consul().await;
    let a = spawn_node(&consul.base_url());
    let b = spawn_node(&consul.base_url());
    let gw = spawn_gateway(gateway_config(&consul.base_url(), &[])).await;
    wait_for_set(&gw, &[&a, &b]).await;

    let load = Load::start(&gw, 8);
    wait_for_progress(&load, 200).await;
    let killed = a.addr();
    a.server.kill();
    wait_for_progress(&load, 300).await;
    // Consul's check notices; the gateway drops the node from its set.
    wait_for_set(&gw, &[&b]).await;
    wait_for_progress(&load, 200).await;
    load.finish_without_failures().await;
    assert!(attempts(&gw, &killed).await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_stopped_mid_run_loses_no_request_and_discovery_catches_up() {
    let consul = spawn_consul().await;
    let consul_addr = consul.addr();
    let url = consul.base_url();
    let a = spawn_node(&url);
    let b = spawn_node(&url);
    let gw = spawn_gateway(gateway_config(&url, &[])).await;
    wait_for_set(&gw, &[&a, &b]).await;

    let load = Load::start(&gw, 8);
    wait_for_progress(&load, 200).await;
    stop_consul(consul, &gw).await;
    wait_for_progress(&load, 500).await;
    load.finish_without_failures().await;

    // It says so in /health and /metrics, and still lists the last known set.
    let health = gateway_health(&gw).await;
    assert_eq!(health["discovery"], "stale");
    assert_eq!(health["healthy_instances"], 2);
    let metrics = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("gateway_discovery_up 0"), "{metrics}");

    // Consul comes back (empty, like a fresh agent); nodes re-register and the gateway catches up.
    let _consul = restart_consul(consul_addr, &gw).await;
    wait_for_set(&gw, &[&a, &b]).await;
    assert_eq!(predict(&client(), &gw).await, 200);
}

/// Consul restarts as a fresh agent that has forgotten every node, while the gateway waits on
/// a 30 s blocking query. The gateway asks the new Consul with a fresh index at once, keeps
/// the last set's nodes beside Consul's first (empty, then partial) answers for the recovery
/// grace (4 s here), then takes Consul's answer alone: here without the node that died
/// during the outage, long before the old query's wait would have run out. No client
/// request fails meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_consul_is_followed_at_once_and_its_empty_start_is_ridden_out() {
    let RecoveryCluster { consul, gw, a, b } = recovery_cluster(Duration::from_secs(4)).await;
    let consul_addr = consul.addr();

    let load = Load::start(&gw, 4);
    wait_for_progress(&load, 100).await;
    stop_consul(consul, &gw).await;
    b.server.kill();
    let restarted = std::time::Instant::now();
    let _consul = restart_consul(consul_addr, &gw).await;
    // For the grace, the nodes Consul does not list (yet) stay, and /health says so.
    eventually(
        Duration::from_secs(2),
        "/health to report the recovery",
        || async {
            let health = gateway_health(&gw).await;
            health["discovery"] == "recovering" && health["healthy_instances"] == 2
        },
    )
    .await;
    // After it, Consul's answer alone: the node that died is gone.
    wait_for_set(&gw, &[&a]).await;
    let caught_up = restarted.elapsed();
    wait_for_progress(&load, 200).await;
    load.finish_without_failures().await;
    assert!(
        caught_up < Duration::from_secs(15),
        "the new set took {caught_up:?} (the blocking query waits 30s)"
    );
}

/// A Consul that fails again during the recovery grace does not give a node it no longer
/// lists a second grace: the dead node leaves one grace after Consul first came back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_consul_keeps_a_dead_node_for_one_grace_only() {
    let grace = Duration::from_secs(4);
    let RecoveryCluster { consul, gw, a, b } = recovery_cluster(grace).await;
    let consul_addr = consul.addr();

    stop_consul(consul, &gw).await;
    b.server.kill();
    let consul = restart_consul(consul_addr, &gw).await;
    let first_recovery = std::time::Instant::now();
    assert_eq!(
        services(&gw).await.len(),
        2,
        "the dead node is kept for the grace"
    );
    tokio::time::sleep(grace / 2).await;
    stop_consul(consul, &gw).await;
    let _consul = restart_consul(consul_addr, &gw).await;
    let second_recovery = first_recovery.elapsed();
    wait_for_set(&gw, &[&a]).await;
    let gone = first_recovery.elapsed();
    assert!(
        gone < grace + Duration::from_millis(1500),
        "the dead node left {gone:?} after Consul first came back (grace {grace:?}; Consul \
         came back again after {second_recovery:?})"
    );
}

/// Nodes registered without their models in `Meta` are asked for `/models`; a node that
/// never answers it is still listed, with its models unknown. `?model=` then routes by what
/// was learned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_missing_from_meta_are_learned_from_the_nodes() {
    use axum::routing::{get, post};
    let consul = spawn_consul().await;
    // A node that lists only RandomForest and answers every prediction with its name.
    let app = axum::Router::new()
        .route(
            "/models",
            get(|| async { axum::Json(serde_json::json!({"models": [{"name": "RandomForest"}]})) }),
        )
        .route("/predict", post(|| async { "forest" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let forest = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    // A node that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let registry = consul::Client::new(&consul.base_url(), None).unwrap();
    for (id, addr) in [("forest", forest), ("silent", silent_addr)] {
        let registration = consul::AgentServiceRegistration {
            id: Some(id.to_string()),
            name: "gdp-growth-model".to_string(),
            address: Some(addr.ip().to_string()),
            port: Some(addr.port()),
            ..Default::default()
        };
        registry.register(&registration).await.unwrap();
    }

    let gw = spawn_gateway(gateway_config(
        &consul.base_url(),
        &["--models-timeout", "1s"],
    ))
    .await;
    eventually(Duration::from_secs(10), "both nodes listed", || async {
        services(&gw).await.len() == 2
    })
    .await;
    let models = |addr: std::net::SocketAddr| {
        gw.state
            .discovery
            .endpoints()
            .iter()
            .find(|e| e.addr == addr.to_string())
            .map(|e| e.models.as_deref().map(<[String]>::to_vec))
    };
    assert_eq!(models(forest), Some(Some(vec!["RandomForest".to_string()])));
    assert_eq!(models(silent_addr), Some(None), "unknown, still listed");

    // RandomForest goes only to the node known to serve it.
    for _ in 0..5 {
        let resp = send_seed_row(&client(), &gw, "?model=RandomForest")
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.text().await.unwrap(), "forest");
    }
}

/// An inference-node binary as a child process (real models, real ONNX Runtime), registered in
/// Consul as `127.0.0.1:<port>`; killed when dropped (stopped or not).
struct NodeProcess {
    child: Child,
    port: u16,
}

impl NodeProcess {
    /// Starts a node whose Consul check runs every second with a 1 s timeout, so Consul marks
    /// it critical 1-2 s after it stops answering.
    fn start(consul: &str) -> NodeProcess {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> → target/<profile>/inference-node
        let bin = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("target directory")
            .join("inference-node");
        assert!(
            bin.is_file(),
            "{} is missing: build it first with `cargo build -p inference-node` (same CARGO_TARGET_DIR)",
            bin.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let models: PathBuf = models_dir().canonicalize().unwrap();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--models-dir")
            .arg(models)
            .args(["--service-discovery-url", consul])
            .args(["--advertise-address", "127.0.0.1"])
            .args(["--check-interval", "1s", "--check-timeout", "1s"])
            .args(["--registration-refresh", "1s", "--shutdown-grace", "1s"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the inference-node binary");
        NodeProcess { child, port }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("a child pid");
        rustix::process::kill_process(pid, signal).expect("signal the node");
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too; nothing is left frozen.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One finished request of a [`TimedLoad`]: when it ended (since the load started), how long
/// it took, and its status (0 when no answer came).
struct Timed {
    ended: Duration,
    took: Duration,
    status: u16,
}

/// Runs `workers` clients of the prediction endpoint until `stop` is set, each sending one
/// request at a time and at most one per `every` (a missed turn is skipped, so a stalled request
/// shows in the count), timing every request.
async fn timed_load(
    url: String,
    workers: usize,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<Timed> {
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (stop, url) = (stop.clone(), url.clone());
            tokio::spawn(async move {
                let http = client();
                let mut done = Vec::new();
                let mut turns = tokio::time::interval(every);
                turns.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                // Bounded: at most 5 000 requests per client.
                for _ in 0..5_000 {
                    turns.tick().await;
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let sent = Instant::now();
                    let status = match http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(SEED_ROW)
                        .send()
                        .await
                    {
                        Ok(r) => r.status().as_u16(),
                        Err(_) => 0,
                    };
                    done.push(Timed {
                        ended: start.elapsed(),
                        took: sent.elapsed(),
                        status,
                    });
                }
                done
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// Issue 24: with one of two nodes frozen (`SIGSTOP`: it accepts connections, answers nothing)
/// under a steady load, the gateway keeps serving from the other. Before, every client ended up waiting
/// on the frozen node for the whole upstream timeout (10 s): zero completions until Consul
/// dropped it. Now an attempt that has not answered within the hedge delay is sent to the other
/// node too, and the node is ejected: no second completes fewer than half the requests of the
/// seconds before, and no request takes more than 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_costs_callers_little() {
    let consul = spawn_consul().await;
    let url = consul.base_url();
    let a = NodeProcess::start(&url);
    let b = NodeProcess::start(&url);
    // The default upstream timeout, as in the issue.
    let mut config = gateway_config(&url, &[]);
    config.upstream.upstream_timeout = Duration::from_secs(10);
    let gw = spawn_gateway(config).await;
    let mut want = vec![a.addr(), b.addr()];
    want.sort();
    eventually(
        Duration::from_secs(30),
        "both node processes listed",
        || {
            let want = want.clone();
            let gw = &gw;
            async move { services(gw).await == want }
        },
    )
    .await;

    const FREEZE_AT: u64 = 3;
    const END_AT: u64 = 9;
    let stop = Arc::new(AtomicBool::new(false));
    // 8 clients at 20 requests/s each: a load one node can carry alone on a small shared
    // machine, so that the count measures how long clients wait, not the nodes' capacity.
    let load = tokio::spawn(timed_load(
        gw.url("/api/predict/gdp_growth_rate"),
        8,
        Duration::from_millis(50),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(FREEZE_AT)).await;
    a.signal(rustix::process::Signal::STOP);
    tokio::time::sleep(Duration::from_secs(END_AT - FREEZE_AT)).await;
    stop.store(true, Ordering::Relaxed);
    let done = load.await.unwrap();
    a.signal(rustix::process::Signal::CONT);

    let failed: Vec<u16> = done
        .iter()
        .filter(|t| t.status != 200)
        .map(|t| t.status)
        .collect();
    // Whole seconds only: the load stops around END_AT.
    let mut per_second = vec![0u32; END_AT as usize - 1];
    for t in &done {
        if let Some(n) = per_second.get_mut(t.ended.as_secs() as usize) {
            *n += 1;
        }
    }
    let slowest = done.iter().map(|t| t.took).max().unwrap();
    // Second 0 warms up; seconds 1 and 2 are the steady state before the freeze.
    let before = f64::from(per_second[1] + per_second[2]) / 2.0;
    let report = format!(
        "completed per second {per_second:?} (frozen from second {FREEZE_AT}), slowest \
         request {slowest:?}, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "{report}; statuses {failed:?}");
    for (second, &n) in per_second.iter().enumerate().skip(FREEZE_AT as usize) {
        assert!(
            f64::from(n) >= before / 2.0,
            "second {second} completed {n}, under half of {before}: {report}"
        );
    }
    assert!(slowest <= Duration::from_secs(1), "{report}");
    // The frozen node's attempts were passed by hedges on the other node.
    let metrics = metrics_text(&gw).await;
    let needle = format!(
        "gateway_upstream_failures_total{{node=\"{}\",reason=\"slow\"}} ",
        a.addr()
    );
    assert!(metrics.contains(&needle), "no {needle:?} in {metrics}");
    assert!(
        series(&metrics, "gateway_upstream_hedges_total", &b.addr()).is_some_and(|n| n > 0),
        "{metrics}"
    );
}

/// The gateway's `/metrics` page.
async fn metrics_text(gw: &TestGateway) -> String {
    client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of `name{node="<node>"}` on a `/metrics` page, if it is there.
fn series(metrics: &str, name: &str, node: &str) -> Option<u64> {
    let needle = format!("{name}{{node=\"{node}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map(|v| v.trim().parse::<f64>().unwrap() as u64)
}

/// Issue 24 (and issue 20 item 8): what the gateway keeps per node does not outlive the node.
/// A node that dies has a failure record in the balancer and series in `/metrics`; once
/// discovery drops it, the record goes at once, and the series once the retention (2 s here)
/// has passed. The live node's series stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_departed_node_is_forgotten_after_the_retention() {
    let consul = spawn_consul().await;
    let a = spawn_node(&consul.base_url());
    let b = spawn_node(&consul.base_url());
    let mut config = gateway_config(&consul.base_url(), &[]);
    config.upstream.node_metrics_retention = Duration::from_secs(2);
    let gw = spawn_gateway(config).await;
    wait_for_set(&gw, &[&a, &b]).await;
    let http = client();
    for _ in 0..20 {
        assert_eq!(predict(&http, &gw).await, 200);
    }
    let (gone, kept) = (a.addr(), b.addr());
    a.server.kill();
    // Connection refused on the dead node: retried on the live one, recorded as a failure.
    for _ in 0..20 {
        assert_eq!(predict(&http, &gw).await, 200);
    }
    assert_eq!(gw.state.balancer.tracked(), 1, "the dead node's failures");
    wait_for_set(&gw, &[&b]).await;
    eventually(
        Duration::from_secs(2),
        "the failure record to go",
        || async { gw.state.balancer.tracked() == 0 },
    )
    .await;
    let metrics = metrics_text(&gw).await;
    assert!(series(&metrics, "gateway_upstream_attempts_total", &gone).is_some());
    eventually(
        Duration::from_secs(10),
        "the dead node's series to go",
        || async { !metrics_text(&gw).await.contains(&gone) },
    )
    .await;
    let metrics = metrics_text(&gw).await;
    assert!(
        series(&metrics, "gateway_upstream_attempts_total", &kept).is_some_and(|n| n >= 20),
        "{metrics}"
    );
}
