//! The lifecycle endpoints with the process runtime, end to end and all real: the gateway
//! binary (`RUNTIME=process`) in front of the Consul stand-in launches real inference-node
//! processes (real models, real ONNX Runtime); they register in Consul and serve predictions
//! through the gateway; delete stops them (SIGTERM → deregistered, reaped); SIGTERM to the
//! gateway stops the ones it started.
//!
//! Needs the inference-node binary in the same target directory (`cargo build -p
//! inference-node`; `cargo test --workspace` builds it); fails with that hint when missing.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use consul::standin::{self, StandInConfig};
use serde_json::Value;

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

fn models_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/gdp_growth_rate");
    assert!(
        dir.join("LinearRegression.onnx").is_file(),
        "{}/LinearRegression.onnx is missing: run `cargo run -p tools --bin convert-models`",
        dir.display()
    );
    dir.canonicalize().unwrap()
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
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
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
            .stdin(Stdio::null())
            .spawn()
            .expect("start the gateway binary");
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
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
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
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Polls `check` every 100 ms until it returns `Some`; panics with `what` after `limit`.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
