//! Bodies sent one byte per TCP segment cost the node about their size in memory, and that
//! memory comes back once the clients leave. Through the real binary, so that the resident
//! memory measured (`VmRSS`) is the node's alone. Numbers: `benchmarks/slow-bodies.md`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_inference-node");
const MB: u64 = 1 << 20;
/// The node's body limit in these tests.
const BODY_LIMIT: u64 = MB;
/// Body bytes sent in all, one per TCP segment, over [`CONNECTIONS`] connections.
const BYTES: usize = 200_000;
const CONNECTIONS: usize = 8;
/// What each request declares: just under the limit, so that it is not refused up front.
const CONTENT_LENGTH: u64 = BODY_LIMIT - 1000;

/// The node binary, killed when dropped.
struct Node {
    child: Child,
    port: u16,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Node {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(BIN)
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("MODELS_DIR", common::models_dir())
        .env("INFERENCE_NODE_MAX_BODY_BYTES", BODY_LIMIT.to_string())
        .env("RUST_LOG", "warn")
        .env_remove("SERVICE_DISCOVERY_URL")
        .env_remove("GDP_MODEL_NAME")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let node = Node { child, port };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !get(port, "/health").starts_with("HTTP/1.1 200") {
        assert!(Instant::now() < deadline, "the node did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    node
}

/// The answer to `GET path`, or "" when the node does not answer.
fn get(port: u16, path: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    let _ = stream.write_all(request.as_bytes());
    let _ = stream.read_to_string(&mut answer);
    answer
}

/// The resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// Opens [`CONNECTIONS`] connections, sends on each a `POST path` head declaring
/// [`CONTENT_LENGTH`] bytes, then [`BYTES`] body bytes in all, one byte per write (one
/// segment each, `TCP_NODELAY`) in turn over the connections, pausing briefly after each round. Returns the open connections
/// and the peak resident memory of `pid` seen meanwhile.
fn trickle(port: u16, path: &str, pid: u32) -> (Vec<TcpStream>, u64) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {CONTENT_LENGTH}\r\n\r\n"
    );
    let mut streams: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.set_nodelay(true).unwrap();
            stream.write_all(head.as_bytes()).unwrap();
            stream
        })
        .collect();
    let mut peak = 0;
    for i in 0..BYTES {
        streams[i % CONNECTIONS].write_all(b" ").unwrap();
        if i % CONNECTIONS == CONNECTIONS - 1 {
            // A short pause per round: the server then reads most bytes one by one, as
            // from a real slow client, instead of finding several queued.
            std::thread::sleep(Duration::from_micros(20));
        }
        if i % 10_000 == 0 {
            peak = peak.max(rss(pid));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    (streams, peak.max(rss(pid)))
}

fn check(path: &str) {
    let node = start();
    let pid = node.child.id();
    let before = rss(pid);
    let (streams, peak) = trickle(node.port, path, pid);
    drop(streams);
    // The node notices the closed connections and frees their buffers.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = rss(pid);
    while after > before + 5 * MB && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        after = rss(pid);
    }
    let mb = |bytes: u64| bytes as f64 / MB as f64;
    eprintln!(
        "{path}: RSS {:.1} MB before, {:.1} MB at the peak, {:.1} MB after",
        mb(before),
        mb(peak),
        mb(after)
    );
    assert!(
        peak <= before + BODY_LIMIT + 10 * MB,
        "{BYTES} bytes sent one by one grew the node from {:.1} to {:.1} MB",
        mb(before),
        mb(peak)
    );
    assert!(
        after <= before + 5 * MB,
        "the memory did not come back: {:.1} MB before, {:.1} MB after",
        mb(before),
        mb(after)
    );
    assert!(get(node.port, "/health").starts_with("HTTP/1.1 200"));
}

#[test]
fn predict_bodies_sent_byte_by_byte_cost_their_size() {
    check("/predict");
}

#[test]
fn v2_infer_bodies_sent_byte_by_byte_cost_their_size() {
    check("/v2/models/LinearRegression/infer");
}
