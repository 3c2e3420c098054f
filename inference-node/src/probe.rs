//! `--health-check`: a dependency-free HTTP probe of the local node, for container health
//! checks (the images have no shell or curl).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long the probe waits for connecting, and then for the answer.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// GETs `/health` from the node listening on `listen` (on this machine); succeeds on a 200
/// answer.
pub fn health(listen: SocketAddr) -> Result<(), String> {
    let addr = http_serve::local_address(listen);
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot send the request to {addr}: {e}"))?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        match stream.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(format!("no answer from {addr}: {e}")),
        }
    }
    let status_line = String::from_utf8_lossy(&head[..read]);
    let status = status_line.split_whitespace().nth(1).unwrap_or("");
    if status == "200" {
        Ok(())
    } else {
        let first = status_line.lines().next().unwrap_or("").to_string();
        Err(format!("http://{addr}/health answered {first:?}"))
    }
}
