//! Helpers for the stand-in's integration tests: a tiny HTTP target for checks to probe,
//! fast stand-in settings and a bounded polling helper.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, Method, StatusCode};
use consul::standin::StandInConfig;
use tokio::sync::oneshot;

/// What the target saw in its last request.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Debug, Default)]
struct TargetState {
    status: AtomicU16,
    delay_ms: AtomicU64,
    hits: AtomicUsize,
    last: Mutex<Seen>,
}

/// A local HTTP server that answers every request with a settable status and body "ok".
pub struct Target {
    pub addr: SocketAddr,
    state: Arc<TargetState>,
    _stop: oneshot::Sender<()>,
}

impl Target {
    pub fn url(&self) -> String {
        format!("http://{}/health", self.addr)
    }
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }
    pub fn set_delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }
    pub fn last(&self) -> Seen {
        self.state.last.lock().unwrap().clone()
    }
}

pub async fn spawn_target() -> Target {
    let state = Arc::new(TargetState::default());
    state.status.store(200, Ordering::SeqCst);
    let handler_state = state.clone();
    let app = Router::new().fallback(move |method: Method, headers: HeaderMap, body: String| {
        let state = handler_state.clone();
        async move {
            state.hits.fetch_add(1, Ordering::SeqCst);
            *state.last.lock().unwrap() = Seen {
                method: method.to_string(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect(),
                body,
            };
            let delay = state.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            let status = StatusCode::from_u16(state.status.load(Ordering::SeqCst)).unwrap();
            (status, "ok")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Target {
        addr,
        state,
        _stop: stop,
    }
}

/// Stand-in settings with sub-second reaper timings, so time-based tests stay short.
pub fn fast_config() -> StandInConfig {
    StandInConfig {
        reaper_interval: Duration::from_millis(100),
        deregister_floor: Duration::from_millis(300),
        ..StandInConfig::default()
    }
}
