//! The check runners: real HTTP and TCP probes every `Interval` (the first one after a random
//! stagger within the interval, as Consul does), TTL expiry, and the reaper that deregisters
//! services whose checks stayed critical past `DeregisterCriticalServiceAfter`.
//!
//! All waiting uses tokio's clock, so paused-time tests can drive it.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::header::{ACCEPT, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use tokio::time::{Instant, sleep, sleep_until};

use crate::standin::Shared;
use crate::standin::catalog::{Catalog, NewCheck, OUTPUT_MAX_SIZE};
use crate::standin::registration::{CheckKind, CheckSpec};
use crate::types::CheckStatus;

/// Starts the runners of newly registered checks and ties them to their records.
pub fn start(shared: &Arc<Shared>, catalog: &mut Catalog, new: Vec<NewCheck>) {
    for check in new {
        let id = check.check_id.clone();
        let generation = check.generation;
        let task = match check.spec.kind {
            CheckKind::Ttl => tokio::spawn(run_ttl(shared.clone(), id.clone(), generation)),
            _ => tokio::spawn(run_probe(shared.clone(), check)),
        };
        catalog.attach_runner(&id, generation, task.abort_handle());
    }
}

/// Probes an HTTP or TCP check every interval until the check goes away or shutdown.
async fn run_probe(shared: Arc<Shared>, check: NewCheck) {
    let Some(interval) = check.spec.interval else {
        return;
    };
    let stagger = random_below(interval);
    tokio::select! {
        () = sleep(stagger) => {}
        () = shared.shutdown_token().cancelled() => return,
    }
    loop {
        let (status, output) = tokio::select! {
            result = probe(&shared.prober, &check.spec) => result,
            () = shared.shutdown_token().cancelled() => return,
        };
        tracing::debug!(check_id = %check.check_id, %status, "check ran");
        shared.mutate(|c| {
            c.record_probe(
                &check.check_id,
                check.generation,
                status,
                output,
                Instant::now(),
            )
        });
        tokio::select! {
            () = sleep(interval) => {}
            () = shared.shutdown_token().cancelled() => return,
        }
    }
}

/// Turns a TTL check critical whenever its deadline passes without an update.
async fn run_ttl(shared: Arc<Shared>, check_id: String, generation: u64) {
    loop {
        // Register interest before reading the deadline, so an update in between is not lost.
        let updated = shared.ttl_updates.notified();
        tokio::pin!(updated);
        updated.as_mut().enable();
        let deadline = match shared.catalog().ttl_deadline(&check_id, generation) {
            None => return,
            Some(deadline) => deadline,
        };
        match deadline {
            Some(deadline) => {
                tokio::select! {
                    () = sleep_until(deadline) => {}
                    () = shared.shutdown_token().cancelled() => return,
                }
                let expired =
                    shared.mutate(|c| c.expire_ttl(&check_id, generation, Instant::now()));
                if expired {
                    tracing::warn!(%check_id, "Check missed TTL, is now critical");
                }
            }
            None => {
                tokio::select! {
                    () = updated => {}
                    () = shared.shutdown_token().cancelled() => return,
                }
            }
        }
    }
}

/// Tells TTL runners that a deadline moved.
pub fn ttl_updated(shared: &Shared) {
    shared.ttl_updates.notify_waiters();
}

/// Deregisters services whose checks have been critical too long, every `reaper_interval`.
pub async fn reaper(shared: Arc<Shared>) {
    let period = shared
        .config()
        .reaper_interval
        .max(Duration::from_millis(1));
    let mut tick = tokio::time::interval_at(Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.shutdown_token().cancelled() => return,
        }
        let reaped = shared.mutate(|c| c.reap(Instant::now()));
        for service_id in reaped {
            tracing::info!(
                %service_id,
                "Check for service has been critical for too long; deregistered service"
            );
        }
    }
}

/// Runs one probe and returns its status and output, in Consul's wording.
pub async fn probe(client: &reqwest::Client, spec: &CheckSpec) -> (CheckStatus, String) {
    match &spec.kind {
        CheckKind::Http {
            url,
            method,
            header,
            body,
            ..
        } => probe_http(client, url, method, header, body, spec.timeout).await,
        CheckKind::Tcp { address } => probe_tcp(address, spec.timeout).await,
        CheckKind::Ttl => (CheckStatus::Critical, String::new()),
    }
}

async fn probe_http(
    client: &reqwest::Client,
    url: &str,
    method: &str,
    header: &std::collections::BTreeMap<String, Vec<String>>,
    body: &str,
    timeout: Duration,
) -> (CheckStatus, String) {
    let method = if method.is_empty() { "GET" } else { method };
    let op = go_op(method);
    let fail = |reason: String| (CheckStatus::Critical, format!("{op} \"{url}\": {reason}"));
    let Ok(verb) = reqwest::Method::from_bytes(method.as_bytes()) else {
        return fail(format!("net/http: invalid method {method:?}"));
    };
    let mut headers = HeaderMap::new();
    headers.insert(USER_AGENT, HeaderValue::from_static("Consul Health Check"));
    headers.insert(ACCEPT, HeaderValue::from_static("text/plain, text/*, */*"));
    for (name, values) in header {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            return fail(format!("invalid header name {name:?}"));
        };
        headers.remove(&name);
        for value in values {
            let Ok(value) = HeaderValue::from_str(value) else {
                return fail(format!("invalid value for header {name}"));
            };
            headers.append(name.clone(), value);
        }
    }
    let mut request = client.request(verb, url).headers(headers).timeout(timeout);
    if !body.is_empty() {
        request = request.body(body.to_string());
    }
    let exchange = async {
        let mut response = request.send().await?;
        let status = response.status();
        let mut text = Vec::new();
        while text.len() < OUTPUT_MAX_SIZE {
            match response.chunk().await? {
                Some(chunk) => text.extend_from_slice(&chunk),
                None => break,
            }
        }
        text.truncate(OUTPUT_MAX_SIZE);
        Ok::<_, reqwest::Error>((status, String::from_utf8_lossy(&text).into_owned()))
    };
    match exchange.await {
        Ok((status, text)) => {
            let result = if status.is_success() {
                CheckStatus::Passing
            } else if status.as_u16() == 429 {
                CheckStatus::Warning
            } else {
                CheckStatus::Critical
            };
            (
                result,
                format!("HTTP {method} {url}: {status} Output: {text}"),
            )
        }
        Err(e) if e.is_timeout() => fail(format!(
            "context deadline exceeded (Client.Timeout {} exceeded)",
            crate::duration::format(timeout)
        )),
        Err(e) => fail(error_chain(&e)),
    }
}

async fn probe_tcp(address: &str, timeout: Duration) -> (CheckStatus, String) {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
        Ok(Ok(_stream)) => (
            CheckStatus::Passing,
            format!("TCP connect {address}: Success"),
        ),
        Ok(Err(e)) => (CheckStatus::Critical, format!("dial tcp {address}: {e}")),
        Err(_) => (
            CheckStatus::Critical,
            format!("dial tcp {address}: i/o timeout"),
        ),
    }
}

/// Go's `url.Error` names the operation like `Get`, `Post`.
fn go_op(method: &str) -> String {
    let lower = method.to_ascii_lowercase();
    let mut chars = lower.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// Formats an error with its sources, innermost last, like Go's wrapped errors.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

fn random_below(limit: Duration) -> Duration {
    let nanos = limit.as_nanos().min(u64::MAX as u128) as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::rng().random_range(0..nanos))
}

/// Returns a random duration in `[0, limit)` (used for blocking-query jitter as well).
pub fn stagger(limit: Duration) -> Duration {
    random_below(limit)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::standin::{StandInConfig, registration};

    fn register(shared: &Arc<Shared>, body: serde_json::Value) {
        let spec = registration::parse(
            &serde_json::to_vec(&body).unwrap(),
            shared.config().deregister_floor,
        )
        .unwrap();
        shared.mutate(|c| {
            let new = c.register(spec, false, Instant::now());
            start(shared, c, new);
        });
    }

    fn check(shared: &Shared, id: &str) -> Option<crate::types::HealthCheck> {
        shared.catalog().agent_checks().get(id).cloned()
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_expiry_and_reaper_follow_the_clock() {
        let shared = Arc::new(Shared::new(StandInConfig::default()));
        let reaper_task = tokio::spawn(reaper(shared.clone()));
        register(
            &shared,
            json!({"ID": "a", "Name": "web", "Check": {"TTL": "10s", "Status": "passing",
                   "DeregisterCriticalServiceAfter": "30s"}}),
        );
        sleep(Duration::from_secs(9)).await;
        assert_eq!(
            check(&shared, "service:a").unwrap().status,
            CheckStatus::Passing
        );
        // An update restarts the TTL.
        shared
            .mutate(|c| {
                c.update_ttl(
                    "service:a",
                    CheckStatus::Passing,
                    "alive".into(),
                    Instant::now(),
                )
            })
            .unwrap();
        ttl_updated(&shared);
        sleep(Duration::from_secs(9)).await;
        assert_eq!(
            check(&shared, "service:a").unwrap().status,
            CheckStatus::Passing
        );
        sleep(Duration::from_secs(2)).await;
        let expired = check(&shared, "service:a").unwrap();
        assert_eq!(expired.status, CheckStatus::Critical);
        assert_eq!(
            expired.output,
            "TTL expired (last output before timeout follows): alive"
        );
        // Critical since t=19s; the 30s limit is raised to the 60s floor, so the service must
        // outlive t=79s; the reaper ticks every 30s (t=30, 60, 90).
        sleep(Duration::from_secs(65)).await; // t=85s
        assert!(shared.catalog().agent_services().contains_key("a"));
        sleep(Duration::from_secs(6)).await; // t=91s
        assert!(!shared.catalog().agent_services().contains_key("a"));
        assert!(check(&shared, "service:a").is_none());
        reaper_task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_ttl_check_comes_back_and_expires_again() {
        let shared = Arc::new(Shared::new(StandInConfig::default()));
        register(
            &shared,
            json!({"ID": "a", "Name": "web", "Check": {"TTL": "5s"}}),
        );
        sleep(Duration::from_secs(6)).await;
        assert_eq!(check(&shared, "service:a").unwrap().output, "TTL expired");
        shared
            .mutate(|c| {
                c.update_ttl(
                    "service:a",
                    CheckStatus::Warning,
                    "busy".into(),
                    Instant::now(),
                )
            })
            .unwrap();
        ttl_updated(&shared);
        sleep(Duration::from_secs(4)).await;
        assert_eq!(
            check(&shared, "service:a").unwrap().status,
            CheckStatus::Warning
        );
        sleep(Duration::from_secs(2)).await;
        assert_eq!(
            check(&shared, "service:a").unwrap().status,
            CheckStatus::Critical
        );
    }

    #[test]
    fn go_op_title_cases_the_method() {
        assert_eq!(go_op("GET"), "Get");
        assert_eq!(go_op("post"), "Post");
    }

    #[test]
    fn stagger_stays_below_the_limit() {
        for _ in 0..100 {
            assert!(stagger(Duration::from_millis(10)) < Duration::from_millis(10));
        }
        assert_eq!(stagger(Duration::ZERO), Duration::ZERO);
    }
}
