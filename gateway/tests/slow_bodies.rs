//! Bodies sent one byte per TCP segment cost the gateway about their size in memory, and
//! that memory comes back once the clients leave. Through the real binary, so that the
//! resident memory measured (`VmRSS`) is the gateway's alone; it reads the body whole before
//! picking a node, so no node is needed. Numbers: `benchmarks/slow-bodies.md`.

use std::process::Command;

use test_support::slow_body::{Server, assert_cost_their_size, free_port};

/// The gateway's body limit in this test.
const BODY_LIMIT: u64 = 1 << 20;

#[test]
fn prediction_bodies_sent_byte_by_byte_cost_their_size() {
    let port = free_port();
    // Consul is a closed port: discovery keeps retrying, which the bodies do not need.
    let consul_url = format!("http://127.0.0.1:{}", free_port());
    let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
    command
        .env("GATEWAY_HOST", "127.0.0.1")
        .env("GATEWAY_PORT", port.to_string())
        .env("GATEWAY_BODY_LIMIT", BODY_LIMIT.to_string())
        .env("SERVICE_DISCOVERY_URL", consul_url)
        .env("RUNTIME", "process")
        .env("RUST_LOG", "error");
    let gateway = Server::start(command, port);
    assert_cost_their_size(&gateway, "/api/predict/gdp_growth_rate", BODY_LIMIT);
}
