//! Bodies sent one byte per TCP segment: a server binary must spend about the body's size on
//! them, and give that memory back once the clients leave. Measured on a server started as
//! its own process, so that the resident memory read (`VmRSS`) is the server's alone.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MB: u64 = 1 << 20;
/// Body bytes sent in all, one per TCP segment, over [`CONNECTIONS`] connections.
const BYTES: usize = 200_000;
const CONNECTIONS: usize = 8;

/// A server process listening on `port`, killed when dropped.
pub struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free at the time of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts `command` (which must make the server listen on 127.0.0.1:`port`) and waits
    /// until its `/health` answers 200.
    pub fn start(mut command: Command, port: u16) -> Server {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !get(port, "/health").starts_with("HTTP/1.1 200") {
            assert!(Instant::now() < deadline, "the server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

/// The answer to `GET path`, or "" when the server does not answer.
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
/// `content_length` bytes, then [`BYTES`] body bytes in all, one byte per write (one segment
/// each, `TCP_NODELAY`) in turn over the connections, pausing briefly after each round.
/// Returns the open connections and the peak resident memory of `pid` seen meanwhile.
fn trickle(port: u16, path: &str, content_length: u64, pid: u32) -> (Vec<TcpStream>, u64) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
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

/// Sends bodies byte by byte to `path` of `server`, whose body limit is `body_limit` (each
/// request declares just under it, so that it is not refused up front), and asserts that
/// the server grew by at most the limit plus 10 MB, came back within 5 MB of where it
/// started once the clients left, and still answers `/health`.
pub fn assert_cost_their_size(server: &Server, path: &str, body_limit: u64) {
    let pid = server.child.id();
    let before = rss(pid);
    let (streams, peak) = trickle(server.port, path, body_limit - 1000, pid);
    drop(streams);
    // The server notices the closed connections and frees their buffers.
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
        peak <= before + body_limit + 10 * MB,
        "{BYTES} bytes sent one by one grew the server from {:.1} to {:.1} MB",
        mb(before),
        mb(peak)
    );
    assert!(
        after <= before + 5 * MB,
        "the memory did not come back: {:.1} MB before, {:.1} MB after",
        mb(before),
        mb(after)
    );
    assert!(get(server.port, "/health").starts_with("HTTP/1.1 200"));
}
