//! Upstream failures mapped to the documented statuses: 502 after the retry, 504 on timeout,
//! and a 5xx from one node retried on another, a silent node hedged past, an attempt to a node
//! that leaves the healthy set retried at once. The "nodes" here are deliberately broken servers (closed ports, a socket
//! that never answers, a server that answers 500).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::post;
use common::*;
use gateway::discovery::{Discovery, Endpoint};
use gateway::{AppState, Config};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn endpoint(addr: String) -> Endpoint {
    Endpoint {
        id: addr.clone(),
        addr,
        models: None,
    }
}

async fn gateway_over(endpoints: Vec<Endpoint>) -> TestGateway {
    serve_gateway(config(), Discovery::fixed(endpoints)).await
}

async fn serve_gateway(config: Config, discovery: Discovery) -> TestGateway {
    http_serve::telemetry::init_for_test();
    let state = AppState::with_discovery(config, discovery, CancellationToken::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(gateway::serve(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    TestGateway::new(addr, state, stop)
}

/// A gateway configuration with a short upstream timeout and a fixed seed.
fn config() -> Config {
    use clap::Parser;
    Config::try_parse_from([
        "gateway",
        "--rng-seed",
        "7",
        "--upstream-timeout",
        "300ms",
        "--client-timeout",
        "300ms",
        "--body-timeout",
        "1s",
    ])
    .unwrap()
}

/// A node that accepts connections and never answers; returns its address.
async fn silent_node() -> String {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    addr
}

fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

async fn post_seed(gw: &TestGateway) -> (u16, Value) {
    let resp = send_seed_row(&client(), gw, "").await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_nodes_give_502_after_the_retry() {
    let gw = gateway_over(vec![endpoint(closed_port()), endpoint(closed_port())]).await;
    let (status, body) = post_seed(&gw).await;
    assert_eq!(status, 502);
    assert_eq!(
        body,
        json!({"detail": "upstream instances failed to answer the request"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_nodes_give_504() {
    let addr = silent_node().await;
    let gw = gateway_over(vec![endpoint(addr.clone())]).await;
    let (status, body) = post_seed(&gw).await;
    assert_eq!(status, 504);
    assert_eq!(
        body,
        json!({"detail": "upstream instance did not answer in time"})
    );

    // A silent node and a closed port: 504, the timeout being what the client waited for
    // (both orders of attempts: `proxy::give_up`'s unit test).
    let gw = gateway_over(vec![endpoint(addr), endpoint(closed_port())]).await;
    for _ in 0..4 {
        assert_eq!(post_seed(&gw).await.0, 504);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_answering_5xx_is_retried_elsewhere_and_ejected() {
    async fn serve(status: u16, hits: Arc<AtomicU64>) -> String {
        let app = Router::new().route(
            "/predict",
            post(move || {
                let hits = hits.clone();
                async move {
                    hits.fetch_add(1, Ordering::Relaxed);
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        axum::Json(json!({"status": status})),
                    )
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }
    let broken_hits = Arc::new(AtomicU64::new(0));
    let good_hits = Arc::new(AtomicU64::new(0));
    let broken = serve(500, broken_hits.clone()).await;
    let good = serve(200, good_hits.clone()).await;
    let gw = gateway_over(vec![endpoint(broken.clone()), endpoint(good)]).await;
    for _ in 0..50 {
        let (status, body) = post_seed(&gw).await;
        assert_eq!((status, body), (200, json!({"status": 200})));
    }
    assert_eq!(good_hits.load(Ordering::Relaxed), 50);
    // Two failures in a row eject it for a while: it sees only the first few requests.
    let broken = broken_hits.load(Ordering::Relaxed);
    assert!(
        (1..=3).contains(&broken),
        "the failing node got {broken} requests"
    );
    assert!(gw.state.balancer.is_ejected(&endpoint_addr(&gw, 0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_over_the_limit_is_a_failed_attempt() {
    // 16 times the request limit (1 MiB by default), plus one byte.
    let oversized = vec![b' '; (16 << 20) + 1];
    let app = Router::new().route("/predict", post(move || async move { oversized }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let gw = gateway_over(vec![endpoint(addr)]).await;
    let (status, body) = post_seed(&gw).await;
    assert_eq!(status, 502, "{body}");
}

fn endpoint_addr(gw: &TestGateway, i: usize) -> String {
    gw.state.discovery.endpoints()[i].addr.clone()
}

/// A client that stops sending its body mid-way gets a 408 once the client timeout passes;
/// nothing reaches a node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = gateway_over(vec![endpoint(closed_port())]).await;
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(
            b"POST /api/predict/gdp_growth_rate HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/json\r\nContent-Length: 200\r\nConnection: close\r\n\r\n{",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the gateway kept waiting for the body")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains(r#"{"detail":"the request body stalled"#),
        "{answer}"
    );
}

/// A client trickling its body (a byte every 100 ms, so never stalled) gets a 408 once the
/// body timeout passes, instead of holding its connection and buffer for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_gets_408_at_the_body_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = gateway_over(vec![endpoint(closed_port())]).await;
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .write_all(
            b"POST /api/predict/gdp_growth_rate HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let give_up = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while tokio::time::Instant::now() < give_up && !answer.ends_with(b"}") {
        // Sending fails once the gateway has answered and closed: the answer is read below.
        let _ = stream.write_all(b" ").await;
        let wait = std::time::Duration::from_millis(100);
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains(r#"{"detail":"the request body was not complete within 1s"#),
        "{answer}"
    );
}

/// A node's 4xx reaches the client unchanged: status, body and end-to-end headers such as
/// the `Retry-After` of an overloaded node's 429. It is not retried elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_4xx_passes_through_with_its_headers() {
    let hits = Arc::new(AtomicU64::new(0));
    let counted = hits.clone();
    let app = Router::new().route(
        "/predict",
        post(move || {
            counted.fetch_add(1, Ordering::Relaxed);
            async {
                (
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "1"), ("x-node", "a")],
                    axum::Json(json!({"detail": "too many requests in flight"})),
                )
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let gw = gateway_over(vec![endpoint(addr)]).await;

    let resp = send_seed_row(&client(), &gw, "").await.unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let header = |name| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(header("retry-after").as_deref(), Some("1"));
    assert_eq!(header("x-node").as_deref(), Some("a"));
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"detail": "too many requests in flight"})
    );
    assert_eq!(hits.load(Ordering::Relaxed), 1, "a 4xx is not retried");
}

/// A model no node serves is named in the 404, but a 60 KB name only in part (it came back
/// whole before): its first 64 characters and its size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_unknown_model_name_is_echoed_in_part() {
    let node = Endpoint {
        models: Some(vec!["LinearRegression".to_string()].into()),
        ..endpoint(closed_port())
    };
    let gw = gateway_over(vec![node]).await;
    let name = format!("Huge{}", "x".repeat(60 * 1024 - 4));
    let resp = send_seed_row(&client(), &gw, &format!("?model={name}"))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let body: Value = resp.json().await.unwrap();
    let prefix = &name[..64];
    assert_eq!(
        body,
        json!({"detail": format!(
            "model '{prefix}…(61440 bytes)' is not served by any healthy instance"
        )})
    );
}

/// Issue 24: an attempt in flight to a node that discovery drops from the healthy set is
/// cancelled and retried on another node at once, instead of waiting out the upstream timeout
/// (10 s here; hedging is off, so only the set's change can help).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_to_a_node_that_leaves_the_set_are_retried_at_once() {
    use clap::Parser;
    let good = Router::new().route("/predict", post(|| async { axum::Json(json!({"ok": 1})) }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let good_addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, good).await });
    let silent = silent_node().await;
    let (sets, rx) = tokio::sync::watch::channel(gateway::discovery::Endpoints::from(vec![
        endpoint(silent.clone()),
        endpoint(good_addr.clone()),
    ]));
    let status = Arc::new(gateway::discovery::Status::new());
    status.mark_ok();
    let config = Config::try_parse_from([
        "gateway",
        "--rng-seed",
        "7",
        "--upstream-timeout",
        "10s",
        "--hedge-budget",
        "0",
    ])
    .unwrap();
    let gw = serve_gateway(config, Discovery::new(rx, status)).await;

    let requests: Vec<_> = (0..8)
        .map(|_| {
            let url = gw.url("/api/predict/gdp_growth_rate");
            tokio::spawn(async move {
                let resp = client()
                    .post(url)
                    .header("content-type", "application/json")
                    .body(SEED_ROW)
                    .send()
                    .await
                    .unwrap();
                resp.status().as_u16()
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let removed = std::time::Instant::now();
    sets.send_replace(vec![endpoint(good_addr)].into());
    for r in requests {
        assert_eq!(r.await.unwrap(), 200);
    }
    let waited = removed.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(3),
        "requests waited {waited:?} after the silent node left the set"
    );
    let metrics = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "gateway_upstream_failures_total{{node=\"{silent}\",reason=\"left\"}}"
        )),
        "no attempt to the silent node was cancelled: {metrics}"
    );
}

/// Issue 24: a node that never answers costs each caller the hedge delay, not the upstream
/// timeout: the request also goes to the other node, whose answer wins; after two such
/// attempts the silent node is ejected and sees no more requests for a while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_is_hedged_past_and_ejected() {
    use clap::Parser;
    let good = Router::new().route("/predict", post(|| async { axum::Json(json!({"ok": 1})) }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let good_addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, good).await });
    let silent = silent_node().await;
    let config = Config::try_parse_from([
        "gateway",
        "--rng-seed",
        "7",
        "--upstream-timeout",
        "10s",
        "--hedge-after",
        "100ms",
    ])
    .unwrap();
    let gw = serve_gateway(
        config,
        Discovery::fixed(vec![endpoint(silent.clone()), endpoint(good_addr)]),
    )
    .await;
    let mut slowest = std::time::Duration::ZERO;
    for _ in 0..20 {
        let sent = std::time::Instant::now();
        let (status, body) = post_seed(&gw).await;
        assert_eq!((status, body), (200, json!({"ok": 1})));
        slowest = slowest.max(sent.elapsed());
    }
    assert!(slowest < std::time::Duration::from_secs(1), "{slowest:?}");
    assert!(gw.state.balancer.is_ejected(&silent));
    let metrics = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |needle: String| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&needle))
            .map(|v| v.trim().parse::<f64>().unwrap() as u64)
    };
    let slow = value(format!(
        "gateway_upstream_failures_total{{node=\"{silent}\",reason=\"slow\"}} "
    ));
    let tried = value(format!(
        "gateway_upstream_attempts_total{{node=\"{silent}\"}} "
    ));
    // Ejected after 2 (for 1 s; the 20 requests take far less unless the machine stalls).
    assert!(
        slow.is_some_and(|n| n >= 2) && tried.is_some_and(|n| n <= 4),
        "slow {slow:?}, attempts {tried:?}: {metrics}"
    );
}
