//! `serve` against real TCP clients on 127.0.0.1: a normal request, a silent client, a stalled
//! request head, an HTTP/2 client, a stalled body, a trickled body, the connection limit,
//! requests hyper cannot parse, and a graceful shutdown with a request in flight, finished or
//! (past the grace period of `serve_with_grace`) abandoned.

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use http_serve::{BodyError, FullBody, Limits, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const CLIENT_TIMEOUT: Duration = Duration::from_millis(300);
const MAX_BODY_BYTES: usize = 1000;

/// The limits of most tests: a body timeout long enough that the client timeout cuts a stalled
/// body first.
const LIMITS: Limits = Limits {
    client_timeout: CLIENT_TIMEOUT,
    body_timeout: Duration::from_secs(3),
    max_body_bytes: MAX_BODY_BYTES,
    max_connections: 64,
};

/// How long a test waits for something that should happen after a timeout of 300 ms.
const PATIENCE: Duration = Duration::from_secs(5);

async fn echo(body: Result<FullBody, BodyError>) -> (StatusCode, String) {
    match body {
        Ok(FullBody(bytes)) => (StatusCode::OK, format!("got {} bytes", bytes.len())),
        Err(BodyError::Stalled { .. }) => (StatusCode::REQUEST_TIMEOUT, "body timed out".into()),
        Err(e) => (e.status(), e.to_string()),
    }
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_millis(500)).await;
    "done"
}

struct Server {
    addr: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start() -> Server {
    start_with(LIMITS).await
}

async fn start_with(limits: Limits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/echo", post(echo))
        .route("/slow", get(slow))
        .route("/hello", get(|| async { "hello" }))
        .route("/empty-400", get(|| async { StatusCode::BAD_REQUEST }));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, app, limits, async {
        let _ = stopped.await;
    }));
    Server { addr, stop, task }
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused() {
    let server = start().await;
    let post = |len: usize| {
        reqwest::Client::new()
            .post(format!("http://{}/echo", server.addr))
            .body(vec![b'x'; len])
            .send()
    };
    assert_eq!(post(MAX_BODY_BYTES).await.unwrap().status(), 200);
    let answer = post(MAX_BODY_BYTES + 1).await.unwrap();
    assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

/// A client that sends its whole body before it reads (as most do) gets the 413, not a reset:
/// the server, having answered early, reads and discards the rest before it closes.
#[tokio::test]
async fn a_client_writing_a_large_body_before_reading_gets_the_413() {
    let server = start().await;
    for _ in 0..20 {
        let body = vec![b'x'; 4 << 20];
        let head = format!(
            "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream
            .write_all(&body)
            .await
            .expect("the server reset the connection while the body was being sent");
        let mut answer = Vec::new();
        tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
            .await
            .expect("the server kept the connection open")
            .expect("the server reset the connection instead of closing it");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    }
}

/// Sends `request` as is and reads until the server closes the connection.
async fn exchange_raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the server kept the connection open past its timeout")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_complete_request_is_served() {
    let server = start().await;
    let answer = reqwest::Client::new()
        .post(format!("http://{}/echo", server.addr))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "got 5 bytes");
}

#[tokio::test]
async fn a_client_that_sends_nothing_is_closed_after_the_client_timeout() {
    let server = start().await;
    let started = std::time::Instant::now();
    let answer = exchange_raw(server.addr, b"").await;
    assert!(answer.is_empty(), "{answer}");
    assert!(
        started.elapsed() >= CLIENT_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_http2_preface_is_refused_not_kept_open() {
    let server = start().await;
    // An h2c client with prior knowledge: the preface, then an empty SETTINGS frame.
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    let answer = exchange_raw(server.addr, preface).await;
    assert!(!answer.contains("200"), "{answer}");
}

#[tokio::test]
async fn a_stalled_request_head_closes_the_connection() {
    let server = start().await;
    let answer = exchange_raw(server.addr, b"POST /echo HTTP/1.1\r\nHost: x\r\n").await;
    assert!(!answer.contains("200"), "{answer}");
}

#[tokio::test]
async fn a_stalled_body_is_answered_408() {
    let server = start().await;
    let answer = exchange_raw(
        server.addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.ends_with("body timed out"), "{answer}");
}

#[tokio::test]
async fn a_trickled_body_is_cut_at_the_body_timeout() {
    // A byte every 200 ms never stalls for the client timeout (300 ms), and the body would
    // take 200 s to complete: only the body timeout (1 s) can end it.
    let server = start_with(Limits {
        body_timeout: Duration::from_secs(1),
        ..LIMITS
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < give_up {
        // Sending may fail once the server has answered and closed: the answer is read below.
        let _ = stream.write_all(b" ").await;
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if answer.ends_with(b"of its request") {
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("not complete within 1s"), "{answer}");
}

/// Sends `GET /hello` on `stream` and reads the answer (keeping the connection open).
async fn hello(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn past_the_connection_limit_a_connection_waits_until_one_closes() {
    // Idle connections stay open for the client timeout: long enough for the test.
    let server = start_with(Limits {
        client_timeout: Duration::from_secs(30),
        max_connections: 2,
        ..LIMITS
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        assert!(hello(&mut stream).await.ends_with("hello"));
        open.push(stream);
    }
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    let waiting = tokio::spawn(async move { hello(&mut third).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection was served while two were open"
    );
    drop(open.pop());
    let answer = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("the waiting connection was not served once one closed")
        .unwrap();
    assert!(answer.ends_with("hello"), "{answer}");
}

/// The status and JSON body of a raw answer.
fn status_and_json(answer: &str) -> (u16, serde_json::Value) {
    let status = answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer:?}"));
    let (_, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head: {answer:?}"));
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer:?}"));
    (status, json)
}

#[tokio::test]
async fn requests_hyper_cannot_parse_get_a_json_detail() {
    let server = start().await;
    let mut too_many = String::from("GET /hello HTTP/1.1\r\nHost: x\r\n");
    for i in 0..120 {
        too_many.push_str(&format!("X-Header-{i}: v\r\n"));
    }
    too_many.push_str("\r\n");
    let bad_name = "GET /hello HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n";
    let bad_line = "GET /hello\x01 HTTP/1.1\r\nHost: x\r\n\r\n";
    for (request, want) in [(too_many.as_str(), 431), (bad_name, 400), (bad_line, 400)] {
        let answer = exchange_raw(server.addr, request.as_bytes()).await;
        let (status, json) = status_and_json(&answer);
        assert_eq!(status, want, "{answer}");
        assert!(
            json["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn a_parse_error_after_answers_is_detailed_and_handler_answers_are_untouched() {
    let server = start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // A handler's own empty 400, twice on one connection: passed through as written.
    for _ in 0..2 {
        stream
            .write_all(b"GET /empty-400 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("content-length: 0"), "{answer}");
        assert!(!answer.contains("detail"), "{answer}");
    }
    assert!(hello(&mut stream).await.ends_with("hello"));
    // Then a request hyper cannot parse, on the same connection.
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nBad Name: v\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the connection was not closed")
        .ok();
    let answer = String::from_utf8_lossy(&answer);
    let (status, json) = status_and_json(&answer);
    assert_eq!(status, 400, "{answer}");
    assert!(json["detail"].is_string(), "{answer}");
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight_then_returns() {
    let server = start().await;
    let url = format!("http://{}/slow", server.addr);
    let in_flight = tokio::spawn(async move { reqwest::get(url).await?.text().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.stop.send(()).unwrap();
    let answer = in_flight
        .await
        .unwrap()
        .expect("the request in flight was lost");
    assert_eq!(answer, "done");
    tokio::time::timeout(PATIENCE, server.task)
        .await
        .expect("serve did not return after its connections closed")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "still accepting"
    );
}

#[tokio::test]
async fn past_the_grace_period_serve_with_grace_returns_with_a_request_in_flight() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let request_time = Duration::from_secs(10);
    let app = Router::new().route(
        "/slower",
        get(move || async move {
            tokio::time::sleep(request_time).await;
            "done"
        }),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let grace = Duration::from_millis(100);
    let task = tokio::spawn(http_serve::serve_with_grace(
        listener,
        app,
        LIMITS,
        async {
            let _ = stopped.await;
        },
        grace,
    ));
    let url = format!("http://{addr}/slower");
    let in_flight = tokio::spawn(async move { reqwest::get(url).await?.text().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let signalled = tokio::time::Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("serve_with_grace did not return after the grace period")
        .unwrap()
        .unwrap();
    let waited = signalled.elapsed();
    assert!(
        waited >= grace,
        "returned before the grace period: {waited:?}"
    );
    assert!(waited < request_time, "waited for the request: {waited:?}");
    assert!(
        !in_flight.is_finished(),
        "the request in flight (10 s) finished within the grace period (100 ms)"
    );
}

#[test]
fn method_labels_are_bounded() {
    use axum::http::Method;
    assert_eq!(http_serve::method_label(&Method::POST), "POST");
    assert_eq!(http_serve::method_label(&Method::DELETE), "DELETE");
    let made_up = Method::from_bytes(b"M12345").unwrap();
    assert_eq!(http_serve::method_label(&made_up), "other");
}
