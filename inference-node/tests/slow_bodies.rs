//! Bodies sent one byte per TCP segment cost the node about their size in memory, and that
//! memory comes back once the clients leave. Through the real binary, so that the resident
//! memory measured (`VmRSS`) is the node's alone. Numbers: `benchmarks/slow-bodies.md`.

use std::process::Command;

use test_support::slow_body::{Server, assert_cost_their_size, free_port};

/// The node's body limit in these tests.
const BODY_LIMIT: u64 = 1 << 20;

fn start() -> Server {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_inference-node"));
    command
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("MODELS_DIR", test_support::models_dir())
        .env("INFERENCE_NODE_MAX_BODY_BYTES", BODY_LIMIT.to_string())
        .env("RUST_LOG", "warn")
        .env_remove("SERVICE_DISCOVERY_URL")
        .env_remove("GDP_MODEL_NAME");
    Server::start(command, port)
}

#[test]
fn predict_bodies_sent_byte_by_byte_cost_their_size() {
    assert_cost_their_size(&start(), "/predict", BODY_LIMIT);
}

#[test]
fn v2_infer_bodies_sent_byte_by_byte_cost_their_size() {
    assert_cost_their_size(&start(), "/v2/models/LinearRegression/infer", BODY_LIMIT);
}
