//! Load bounds, graceful shutdown and startup failures (the last through the real binary).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{client, config, models_dir, seed_example, spawn_node};
use serde_json::Value;

async fn wait_in_flight(state: &inference_node::AppState, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while state.in_flight() < n {
        assert!(
            Instant::now() < deadline,
            "only {} requests in flight",
            state.in_flight()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_loses_no_accepted_request() {
    // The batcher holds requests for up to 500 ms, so they are in flight when shutdown starts.
    let mut node = spawn_node(config(&[
        "--batch-max-wait",
        "500ms",
        "--batch-max-rows",
        "1000",
    ]))
    .await;
    let http = client();
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let request = http.post(node.url("/predict")).json(&seed_example()).send();
            tokio::spawn(request)
        })
        .collect();
    wait_in_flight(&node.state, 20).await;
    node.begin_shutdown();
    for request in requests {
        let response = request
            .await
            .unwrap()
            .expect("an accepted request is answered");
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert!(body["prediction"][0].is_f64());
    }
    let addr = node.addr;
    node.shutdown().await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_in_flight_bound_requests_get_429_at_once() {
    let node = spawn_node(config(&[
        "--max-in-flight",
        "2",
        "--batch-max-wait",
        "500ms",
        "--batch-max-rows",
        "1000",
    ]))
    .await;
    let http = client();
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(http.post(node.url("/predict")).json(&seed_example()).send()))
        .collect();
    wait_in_flight(&node.state, 2).await;
    let started = Instant::now();
    let response = http
        .post(node.url("/predict"))
        .json(&seed_example())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "429 was not immediate"
    );
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("in flight"),
        "{body}"
    );
    for request in held {
        assert_eq!(request.await.unwrap().unwrap().status(), 200);
    }
}

const BIN: &str = env!("CARGO_BIN_EXE_inference-node");

fn node_command(port: u16) -> Command {
    let mut command = Command::new(BIN);
    command
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("MODELS_DIR", models_dir())
        .env_remove("SERVICE_DISCOVERY_URL")
        .env_remove("GDP_MODEL_NAME")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs the binary expecting a startup failure; returns its stderr.
fn startup_failure(command: &mut Command) -> String {
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr).to_string();
            assert!(!status.success(), "exited 0: {stderr}");
            return stderr;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the node did not fail fast");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn startup_fails_fast_naming_the_problem() {
    let port = free_port();
    let only_ridge = tempfile::tempdir().unwrap();
    std::fs::copy(
        models_dir().join("Ridge.onnx"),
        only_ridge.path().join("Ridge.onnx"),
    )
    .unwrap();
    let stderr = startup_failure(node_command(port).env("MODELS_DIR", only_ridge.path()));
    assert!(
        stderr.contains("GDP_MODEL_NAME=LinearRegression"),
        "{stderr}"
    );

    let corrupt = tempfile::tempdir().unwrap();
    std::fs::write(
        corrupt.path().join("LinearRegression.onnx"),
        b"not an onnx file",
    )
    .unwrap();
    let stderr = startup_failure(node_command(port).env("MODELS_DIR", corrupt.path()));
    assert!(stderr.contains("LinearRegression.onnx"), "{stderr}");

    let stderr =
        startup_failure(node_command(port).env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so"));
    assert!(
        stderr.contains("/nonexistent/libonnxruntime.so"),
        "{stderr}"
    );

    let stderr = startup_failure(node_command(port).env("INFERENCE_NODE_MAX_IN_FLIGHT", "0"));
    assert!(stderr.contains("INFERENCE_NODE_MAX_IN_FLIGHT"), "{stderr}");
    let stderr = startup_failure(node_command(port).env("INFERENCE_NODE_MAX_INFLIGHT", "8"));
    assert!(stderr.contains("INFERENCE_NODE_MAX_INFLIGHT"), "{stderr}");
    let stderr = startup_failure(node_command(port).env("PORT", "five thousand"));
    assert!(stderr.contains("--port"), "{stderr}");
}

#[test]
fn binary_serves_probes_and_exits_zero_on_sigterm() {
    let port = free_port();
    let mut child = node_command(port).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let probe = Command::new(BIN)
            .args(["--port", &port.to_string(), "healthcheck"])
            .status()
            .unwrap();
        if probe.success() {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the node exited early");
        assert!(Instant::now() < deadline, "never became healthy");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
    // Nothing listens any more: the probe now fails.
    let probe = Command::new(BIN)
        .args(["--health-check", "--port", &port.to_string()])
        .output()
        .unwrap();
    assert!(!probe.status.success());
    assert!(String::from_utf8_lossy(&probe.stderr).contains("unhealthy"));
}
