//! The lifecycle endpoints with the process runtime, end to end and all real: the gateway
//! binary (`RUNTIME=process`) in front of the Consul stand-in launches real inference-node
//! processes (real models, real ONNX Runtime); they register in Consul and serve predictions
//! through the gateway; delete stops them (SIGTERM → deregistered, reaped); SIGTERM to the
//! gateway stops the ones it started. Also: `GATEWAY_MAX_INSTANCES` under concurrent launches,
//! launches that answer only for nodes that serve (and 502 for ones that do not start), and
//! nodes that die with a gateway killed by SIGKILL.
//!
//! Needs the inference-node binary in the same target directory (`cargo build -p
//! inference-node`; `cargo test --workspace` builds it); fails with that hint when missing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use consul::standin::{self, StandInConfig};
use serde_json::Value;
use test_support::{eventually, models_dir};

const TOKEN: &str = "lifecycle-test-token";
const PREDICT_BODY: &str = r#"{"gdp_per_capita": 50000, "unemployment_rate": 5.2, "gdp_growth_rate_lag": 2.1, "gdp_growth_rate_ma": 2.3}"#;

/// The inference-node binary next to this test's target directory.
fn node_binary() -> PathBuf {
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
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The gateway binary as a child process; killed if the test fails before it is stopped.
struct GatewayProcess {
    child: Child,
    base: String,
}

impl GatewayProcess {
    fn start(consul: &str) -> GatewayProcess {
        GatewayProcess::start_with(consul, &[])
    }

    /// Starts the gateway with `extra` environment variables on top of the test settings.
    fn start_with(consul: &str, extra: &[(&str, &str)]) -> GatewayProcess {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
        command
            .env("GATEWAY_HOST", "127.0.0.1")
            .env("GATEWAY_PORT", port.to_string())
            .env("SERVICE_DISCOVERY_URL", consul)
            .env("GATEWAY_DISCOVERY_WAIT", "2s")
            .env("GATEWAY_DISCOVERY_BACKOFF_MAX", "200ms")
            .env("RUNTIME", "process")
            .env("NODE_BINARY", node_binary())
            .env("MODELS_DIR", models_dir())
            .env("GATEWAY_ADMIN_TOKEN", TOKEN)
            .env("GATEWAY_NODE_STOP_TIMEOUT", "5s")
            .env("CLUSTER_NAME", "lifecycletest")
            // Inherited by the launched nodes: fast health checks, so the test waits little.
            .env("INFERENCE_NODE_CHECK_INTERVAL", "500ms")
            .env("INFERENCE_NODE_CHECK_TIMEOUT", "500ms")
            .env("INFERENCE_NODE_REGISTRATION_REFRESH", "500ms")
            .env("INFERENCE_NODE_SHUTDOWN_GRACE", "2s")
            .env_remove("DOCKER_HOST")
            .env_remove("GATEWAY_MAX_INSTANCES")
            .env_remove("GATEWAY_NODE_START_TIMEOUT")
            .stdin(Stdio::null());
        command.envs(extra.iter().copied());
        let child = command.spawn().expect("start the gateway binary");
        GatewayProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // The nodes first: a test that fails must not leave them running.
            kill_all(&children_of(self.pid()));
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// SIGKILLs the processes it names when dropped (nodes a failing test would leave behind).
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill_all(&self.0);
    }
}

fn kill_all(pids: &[u32]) {
    for &pid in pids {
        if is_running(pid) {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid as i32).unwrap(),
                rustix::process::Signal::KILL,
            );
        }
    }
}

/// Whether `pid` exists and is not a zombie (an orphan's zombie waits for init to reap it).
fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

/// The value of `name` in the environment `pid` was started with.
fn env_of(pid: u32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ.split(|b| *b == 0).find_map(|entry| {
        let entry = String::from_utf8_lossy(entry);
        let (key, value) = entry.split_once('=')?;
        (key == name).then(|| value.to_string())
    })
}

/// The port a node process was told to listen on.
fn port_of(pid: u32) -> u16 {
    env_of(pid, "PORT")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("node process {pid} has no PORT"))
}

/// Writes an executable shell script `name` into `dir` and returns its path.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Waits until the gateway answers `/health`.
async fn wait_for_gateway(http: &reqwest::Client, gw: &GatewayProcess) {
    eventually(Duration::from_secs(30), "gateway answers /health", || {
        let http = http.clone();
        let url = gw.url("/health");
        async move {
            let ok = http.get(url).send().await.ok()?.status().is_success();
            ok.then_some(())
        }
    })
    .await;
}

/// SIGTERMs the gateway and waits for it to exit (it stops its nodes first).
async fn stop_gateway(gw: &mut GatewayProcess) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(gw.pid() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while gw.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "gateway did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pids of `pid`'s child processes (zombies included: they are children until reaped).
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out.sort_unstable();
    out
}

fn process_exists(pid: u32) -> bool {
    PathBuf::from(format!("/proc/{pid}")).exists()
}

fn client() -> reqwest::Client {
    test_support::client(Duration::from_secs(30))
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let mut req = client.request(method, url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// Consul's instances of the node service: (service id, port, passing).
async fn consul_instances(client: &reqwest::Client, consul: &str) -> Vec<(String, u64, bool)> {
    let body: Value = client
        .get(format!("{consul}/v1/health/service/gdp-growth-model"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let passing = e["Checks"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["Status"] == "passing");
            (
                e["Service"]["ID"].as_str().unwrap().to_string(),
                e["Service"]["Port"].as_u64().unwrap(),
                passing,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_list_predict_delete_and_stop_with_the_gateway() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let consul_url = consul.base_url();
    let gw = GatewayProcess::start(&consul_url);
    let http = client();
    eventually(Duration::from_secs(30), "gateway answers /health", || {
        let http = http.clone();
        let url = gw.url("/health");
        async move {
            let ok = http.get(url).send().await.ok()?.status().is_success();
            ok.then_some(())
        }
    })
    .await;
    assert!(children_of(gw.pid()).is_empty(), "no node before a launch");

    // === guardrails first: nothing may be started by these ===
    let launch = |model: &str| gw.url(&format!("/api/models/launch/{model}"));
    let (status, body) = call(
        &http,
        reqwest::Method::POST,
        &launch("LinearRegression"),
        None,
    )
    .await;
    assert_eq!(status, 401, "no token: {body}");
    assert_eq!(body["detail"], "Not authenticated");
    let (status, body) = call(
        &http,
        reqwest::Method::POST,
        &launch("LinearRegression"),
        Some("wrong"),
    )
    .await;
    assert_eq!(status, 403, "wrong token: {body}");
    let (status, _) = call(
        &http,
        reqwest::Method::GET,
        &gw.url("/api/models/instances/LinearRegression"),
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = call(
        &http,
        reqwest::Method::DELETE,
        &gw.url("/api/models/instances/abc"),
        Some("wrong"),
    )
    .await;
    assert_eq!(status, 403);

    let (status, body) = call(
        &http,
        reqwest::Method::POST,
        &launch("bad%20name%21"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 422, "bad name: {body}");
    assert_eq!(
        body["detail"][0]["loc"],
        serde_json::json!(["path", "model_name"])
    );
    assert_eq!(body["detail"][0]["input"], "bad name!");
    let (status, _) = call(
        &http,
        reqwest::Method::POST,
        &launch("..%2F..%2Fetc"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 422, "path-like name");
    let (status, body) = call(
        &http,
        reqwest::Method::POST,
        &launch("NoSuchModel"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 404, "unknown model: {body}");
    assert!(
        body["detail"].as_str().unwrap().contains("NoSuchModel"),
        "{body}"
    );
    // The scheme is case-insensitive: `bearer` and the right token get as far as that 404.
    let lowercase = http
        .post(launch("NoSuchModel"))
        .header("Authorization", format!("bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(lowercase.status(), 404, "lowercase scheme");
    let (status, body) = call(
        &http,
        reqwest::Method::DELETE,
        &gw.url("/api/models/instances/0123456789ab"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 404, "unknown id: {body}");
    let (status, _) = call(
        &http,
        reqwest::Method::DELETE,
        &gw.url("/api/models/instances/not-hex"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 422, "non-hex id");
    assert!(
        children_of(gw.pid()).is_empty(),
        "a rejected request started a process"
    );

    // === launch two nodes ===
    let (status, first) = call(
        &http,
        reqwest::Method::POST,
        &launch("LinearRegression"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200, "launch: {first}");
    assert_eq!(first["status"], "success");
    assert_eq!(
        first["message"],
        "Launched new instance for model: LinearRegression"
    );
    assert_eq!(first["container_name"], "lifecycletest-gdp-growth-model-1");
    let first_id = first["container_id"].as_str().unwrap().to_string();
    assert_eq!(first_id.len(), 32, "{first_id}");
    let (status, second) = call(&http, reqwest::Method::POST, &launch("Ridge"), Some(TOKEN)).await;
    assert_eq!(status, 200, "launch: {second}");
    assert_eq!(second["container_name"], "lifecycletest-gdp-growth-model-2");
    let second_id = second["container_id"].as_str().unwrap().to_string();
    let pids = children_of(gw.pid());
    assert_eq!(pids.len(), 2, "two node processes: {pids:?}");

    // Both register in Consul and pass their checks; the gateway routes predictions to them.
    eventually(Duration::from_secs(60), "2 passing nodes in Consul", || {
        let http = http.clone();
        let consul_url = consul_url.clone();
        async move {
            let nodes = consul_instances(&http, &consul_url).await;
            (nodes.len() == 2 && nodes.iter().all(|n| n.2)).then_some(())
        }
    })
    .await;
    eventually(
        Duration::from_secs(30),
        "the gateway sees both nodes",
        || {
            let http = http.clone();
            let url = gw.url("/api/predict/services");
            async move {
                let body: Value = http.get(url).send().await.ok()?.json().await.ok()?;
                (body["Services:"].as_array()?.len() == 2).then_some(())
            }
        },
    )
    .await;
    for _ in 0..10 {
        let resp = http
            .post(gw.url("/api/predict/gdp_growth_rate"))
            .header("content-type", "application/json")
            .body(PREDICT_BODY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert!(body["prediction"][0].is_number(), "{body}");
    }

    // === instances lists each node under its own model ===
    let (status, list) = call(
        &http,
        reqwest::Method::GET,
        &gw.url("/api/models/instances/LinearRegression"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["model"], "LinearRegression");
    assert_eq!(
        list["instances"],
        serde_json::json!([{
            "id": first_id,
            "name": "lifecycletest-gdp-growth-model-1",
            "status": "running",
            "image": ["inference-node"],
        }])
    );
    let (_, list) = call(
        &http,
        reqwest::Method::GET,
        &gw.url("/api/models/instances/Ridge"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(list["instances"][0]["id"], second_id.as_str());
    let (_, list) = call(
        &http,
        reqwest::Method::GET,
        &gw.url("/api/models/instances/Lasso"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(list["instances"], serde_json::json!([]));

    // === delete the first by a unique prefix: stopped, reaped, deregistered ===
    let prefix = if first_id[..1] != second_id[..1] {
        &first_id[..1]
    } else {
        &first_id[..12]
    };
    let (status, body) = call(
        &http,
        reqwest::Method::DELETE,
        &gw.url(&format!("/api/models/instances/{prefix}")),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200, "delete: {body}");
    assert_eq!(
        body,
        serde_json::json!({"status": "success", "message": format!("Shutdown container: {prefix}")})
    );
    // The answer comes after the exit: the process is gone and reaped (no zombie child).
    let left = children_of(gw.pid());
    assert_eq!(left.len(), 1, "one node process left: {left:?}");
    let gone: Vec<u32> = pids.iter().copied().filter(|p| !left.contains(p)).collect();
    assert_eq!(gone.len(), 1);
    assert!(
        !process_exists(gone[0]),
        "stopped node {} still exists",
        gone[0]
    );
    // SIGTERM made it deregister (not wait for Consul's critical-check reaper).
    let nodes = consul_instances(&http, &consul_url).await;
    assert_eq!(nodes.len(), 1, "one instance left in Consul: {nodes:?}");
    let (_, list) = call(
        &http,
        reqwest::Method::GET,
        &gw.url("/api/models/instances/LinearRegression"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(list["instances"], serde_json::json!([]));
    let (status, _) = call(
        &http,
        reqwest::Method::DELETE,
        &gw.url(&format!("/api/models/instances/{first_id}")),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 404, "deleting twice");

    // === the next launch reuses the free name ===
    let (status, third) = call(
        &http,
        reqwest::Method::POST,
        &launch("LinearRegression"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{third}");
    assert_eq!(third["container_name"], "lifecycletest-gdp-growth-model-1");
    let running = children_of(gw.pid());
    assert_eq!(running.len(), 2, "{running:?}");

    // === SIGTERM to the gateway stops the nodes it started ===
    let mut gw = gw;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(gw.pid() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = gw.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "gateway did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "gateway exit: {status}");
    for pid in running {
        assert!(!process_exists(pid), "node {pid} outlived the gateway");
    }
    let nodes = consul_instances(&http, &consul_url).await;
    assert!(
        nodes.is_empty(),
        "nodes still registered after the gateway stopped: {nodes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_launches_stop_at_the_limit_and_each_success_serves() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let mut gw = GatewayProcess::start_with(&consul.base_url(), &[("GATEWAY_MAX_INSTANCES", "3")]);
    let http = client();
    wait_for_gateway(&http, &gw).await;
    let launch = gw.url("/api/models/launch/LinearRegression");

    // 20 launches at once, limit 3: exactly 3 succeed, the rest are refused.
    let answers = futures::future::join_all(
        (0..20).map(|_| call(&http, reqwest::Method::POST, &launch, Some(TOKEN))),
    )
    .await;
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    let launched: Vec<String> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body["container_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(launched.len(), 3, "statuses: {statuses:?}");
    for (status, body) in answers.iter().filter(|(status, _)| *status != 200) {
        assert_eq!(*status, 429, "{body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("GATEWAY_MAX_INSTANCES") && detail.contains('3'),
            "{detail}"
        );
    }

    // Every success is a node that serves right away, each on a port of its own.
    let pids = children_of(gw.pid());
    assert_eq!(pids.len(), 3, "node processes: {pids:?}");
    let ports: BTreeSet<u16> = pids.iter().map(|&pid| port_of(pid)).collect();
    assert_eq!(ports.len(), 3, "ports: {ports:?}");
    for port in &ports {
        let health = http
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("node on port {port} does not answer: {e}"));
        assert_eq!(health.status(), 200, "node on port {port}");
    }
    let (status, list) = call(
        &http,
        reqwest::Method::GET,
        &gw.url("/api/models/instances/LinearRegression"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    let listed: BTreeSet<&str> = list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        launched.iter().map(String::as_str).collect(),
        "{list}"
    );

    // The limit holds; a stopped instance frees its slot.
    let (status, _) = call(&http, reqwest::Method::POST, &launch, Some(TOKEN)).await;
    assert_eq!(status, 429);
    let (status, body) = call(
        &http,
        reqwest::Method::DELETE,
        &gw.url(&format!("/api/models/instances/{}", launched[0])),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&http, reqwest::Method::POST, &launch, Some(TOKEN)).await;
    assert_eq!(status, 200, "after a delete: {body}");
    assert_eq!(children_of(gw.pid()).len(), 3);

    stop_gateway(&mut gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_does_not_start_is_a_502_and_leaves_nothing() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let http = client();
    let launch = "/api/models/launch/LinearRegression";
    let instances = "/api/models/instances/LinearRegression";

    // A node binary that exits at once.
    let exits = script(dir.path(), "exits", "echo 'cannot start' >&2\nexit 3");
    let gw = GatewayProcess::start_with(
        &consul.base_url(),
        &[
            ("NODE_BINARY", exits.to_str().unwrap()),
            ("GATEWAY_MAX_INSTANCES", "1"),
        ],
    );
    wait_for_gateway(&http, &gw).await;
    // Twice: the failed launch freed its slot (else the second would be a 429).
    for attempt in 1..=2 {
        let (status, body) = call(&http, reqwest::Method::POST, &gw.url(launch), Some(TOKEN)).await;
        assert_eq!(status, 502, "attempt {attempt}: {body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("did not start") && detail.contains("exit status: 3"),
            "{detail}"
        );
        assert!(children_of(gw.pid()).is_empty(), "a process is left");
        let (_, list) = call(&http, reqwest::Method::GET, &gw.url(instances), Some(TOKEN)).await;
        assert_eq!(list["instances"], serde_json::json!([]));
    }
    drop(gw);

    // A node binary that runs but never answers /health: stopped after the start timeout.
    let hangs = script(dir.path(), "hangs", "exec sleep 60");
    let gw = GatewayProcess::start_with(
        &consul.base_url(),
        &[
            ("NODE_BINARY", hangs.to_str().unwrap()),
            ("GATEWAY_NODE_START_TIMEOUT", "1s"),
        ],
    );
    wait_for_gateway(&http, &gw).await;
    let (status, body) = call(&http, reqwest::Method::POST, &gw.url(launch), Some(TOKEN)).await;
    assert_eq!(status, 502, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("GATEWAY_NODE_START_TIMEOUT"), "{detail}");
    assert!(children_of(gw.pid()).is_empty(), "the hanging node is left");
    let (_, list) = call(&http, reqwest::Method::GET, &gw.url(instances), Some(TOKEN)).await;
    assert_eq!(list["instances"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_stop_and_deregister_when_the_gateway_is_killed() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let consul_url = consul.base_url();
    let mut gw = GatewayProcess::start(&consul_url);
    let http = client();
    wait_for_gateway(&http, &gw).await;
    let (status, body) = call(
        &http,
        reqwest::Method::POST,
        &gw.url("/api/models/launch/LinearRegression"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let nodes = children_of(gw.pid());
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let _leftovers = KillOnDrop(nodes.clone());
    eventually(Duration::from_secs(30), "the node passes in Consul", || {
        let http = http.clone();
        let consul_url = consul_url.clone();
        async move {
            let nodes = consul_instances(&http, &consul_url).await;
            (nodes.len() == 1 && nodes[0].2).then_some(())
        }
    })
    .await;

    gw.child.kill().unwrap(); // SIGKILL: no shutdown code runs in the gateway
    gw.child.wait().unwrap();
    eventually(
        Duration::from_secs(10),
        "the node exits after the gateway was killed",
        || async { (!is_running(nodes[0])).then_some(()) },
    )
    .await;
    let left = consul_instances(&http, &consul_url).await;
    assert!(left.is_empty(), "the node did not deregister: {left:?}");
}

/// Linux sends a parent-death signal when the *thread* that forked the child exits: a node
/// launched from a short-lived thread must survive that thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_outlive_the_thread_that_launched_them() {
    use clap::Parser;
    use gateway::runtime::process::ProcessRuntime;

    let consul = standin::spawn(StandInConfig::default()).await;
    let service = format!("threadtest{:08x}", rand::random::<u32>());
    let config = gateway::Config::try_parse_from([
        "gateway",
        "--runtime",
        "process",
        "--service-discovery-url",
        &consul.base_url(),
        "--service-name",
        &service,
        "--node-binary",
        node_binary().to_str().unwrap(),
        "--models-dir",
        models_dir().to_str().unwrap(),
        "--node-stop-timeout",
        "5s",
    ])
    .unwrap();
    let runtime = Arc::new(ProcessRuntime::new(
        &config.runtime,
        &config.discovery.node_registration(),
    ));
    let handle = tokio::runtime::Handle::current();
    let launcher = runtime.clone();
    let launched = std::thread::spawn(move || handle.block_on(launcher.launch("LinearRegression")))
        .join()
        .unwrap()
        .expect("launch");
    // That thread is gone. Find the node: this process's child started for `service`.
    let me = std::process::id();
    let node = eventually(Duration::from_secs(5), "the node process", || {
        let service = service.clone();
        async move {
            children_of(me)
                .into_iter()
                .find(|&pid| env_of(pid, "SERVICE_NAME").as_deref() == Some(service.as_str()))
        }
    })
    .await;
    let _leftovers = KillOnDrop(vec![node]);
    let http = client();
    let url = format!("http://127.0.0.1:{}/health", port_of(node));
    // The launch answered once the node served. A parent-death signal would have arrived by
    // now (the node then drains: 503, and exits).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(is_running(node), "the node died with the launching thread");
    let health = http.get(&url).send().await.expect("the node answers");
    assert_eq!(health.status(), 200, "the node is draining");

    assert_eq!(runtime.stop(&launched.id).await.unwrap(), launched.id);
    assert!(!is_running(node));
}
