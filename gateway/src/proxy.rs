//! Forwards a prediction to a random healthy node; hedges a slow attempt on another node,
//! retries a failed one elsewhere.
//!
//! A request tries at most `GATEWAY_RETRIES + 1` nodes. The first attempt goes to a random
//! node. An attempt that fails (connect error, timeout, 5xx) is retried on another node at once;
//! one that has not answered within the hedge delay ([`crate::hedge`]) is, once per request and
//! within the hedge budget, also sent to another node, and the first answer wins. An attempt
//! that loses to a later one counts as a failure of its node ("slow"), so a frozen node is
//! ejected after `GATEWAY_EJECT_AFTER` of them; the loser is cancelled (its connection closed).
//! An attempt to a node that discovery drops from the healthy set is cancelled and retried.

use std::pin::pin;

use axum::body::Body;
use axum::http::{HeaderValue, Method};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;

use crate::discovery::Endpoint;
use crate::error::GatewayError;
use crate::state::AppState;
use crate::telemetry::NodeEvent;
use crate::upstream::{self, AttemptError, UpstreamResponse};

/// Returns the instances that may serve `model` (all of them when no model is asked for).
///
/// Instances whose model list is unknown are used only when no instance is known to serve it.
pub fn candidates<'a>(
    endpoints: &'a [Endpoint],
    model: Option<&str>,
    service: &str,
) -> Result<Vec<&'a Endpoint>, GatewayError> {
    if endpoints.is_empty() {
        return Err(GatewayError::NoHealthyInstance(service.to_string()));
    }
    let Some(model) = model else {
        return Ok(endpoints.iter().collect());
    };
    let known: Vec<&Endpoint> = endpoints
        .iter()
        .filter(|e| e.serves(model) == Some(true))
        .collect();
    if !known.is_empty() {
        return Ok(known);
    }
    let unknown: Vec<&Endpoint> = endpoints
        .iter()
        .filter(|e| e.serves(model).is_none())
        .collect();
    if !unknown.is_empty() {
        return Ok(unknown);
    }
    Err(GatewayError::UnknownModel(model.to_string()))
}

/// How one attempt ended.
enum Outcome {
    /// The node answered (any status).
    Answered(UpstreamResponse),
    /// The exchange failed.
    Failed(AttemptError),
    /// Discovery dropped the node from the healthy set while the attempt was in flight.
    Left,
}

/// Why an attempt is started.
#[derive(Clone, Copy)]
enum Kind {
    First,
    Retry,
    Hedge,
}

/// Sends `body` to `path_and_query` on a picked node, hedging and retrying as the module doc
/// says. A node's 2xx/4xx is returned as is. When every attempt failed: 504 if any of them
/// timed out, else 502.
pub async fn forward(
    state: &AppState,
    model: Option<&str>,
    path_and_query: &str,
    content_type: Option<&HeaderValue>,
    body: Bytes,
) -> Result<Response, GatewayError> {
    let endpoints = state.discovery.endpoints();
    let candidates = candidates(&endpoints, model, &state.config.discovery.service_name)?;
    let max_attempts = state.config.upstream.retries as usize + 1;
    state.hedging.on_request();
    let mut tried: Vec<&str> = Vec::with_capacity(max_attempts);
    let mut failures = Vec::with_capacity(max_attempts);
    // Attempts in flight, with when each started (the futures themselves are in `pending`).
    let mut running: Vec<(&Endpoint, Instant)> = Vec::with_capacity(2);
    let mut pending = FuturesUnordered::new();
    let mut hedge_at: Option<Instant> = None;
    let mut hedged = false;
    let mut due = Some(Kind::First);
    loop {
        // Start the attempt that is due, if a node is left to try.
        let node = due
            .take()
            .filter(|_| tried.len() < max_attempts)
            .and_then(|kind| Some((kind, state.balancer.pick(&candidates, &tried)?)));
        if let Some((kind, node)) = node {
            tried.push(&node.addr);
            state.node_metrics.count(&node.addr, NodeEvent::Attempt);
            match kind {
                Kind::First => {}
                Kind::Retry => state.node_metrics.count(&node.addr, NodeEvent::Retry),
                Kind::Hedge => {
                    hedged = true;
                    state.node_metrics.count(&node.addr, NodeEvent::Hedge);
                }
            }
            let started = Instant::now();
            running.push((node, started));
            // Another node is left to try: a retry (or hedge) is possible.
            let more = tried.len() < max_attempts && tried.len() < candidates.len();
            pending.push(attempt(
                state,
                node,
                path_and_query,
                content_type,
                body.clone(),
                more,
            ));
            let can_hedge = !hedged && more;
            hedge_at = match state.hedging.delay() {
                Some(delay) if can_hedge => Some(started + delay),
                _ => None,
            };
        }
        if pending.is_empty() {
            return Err(give_up(failures, &state.config.discovery.service_name));
        }
        let hedge_timer = async {
            match hedge_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let (node, outcome) = tokio::select! {
            Some(done) = pending.next() => done,
            () = hedge_timer => {
                hedge_at = None;
                if state.hedging.try_hedge() {
                    due = Some(Kind::Hedge);
                } else {
                    metrics::counter!("gateway_hedge_budget_exhausted_total").increment(1);
                }
                continue;
            }
        };
        let started = running
            .iter()
            .position(|(n, _)| n.addr == node.addr)
            .map(|i| running.swap_remove(i).1)
            .unwrap_or_else(Instant::now);
        let (reason, error) = match outcome {
            Outcome::Answered(resp) if !resp.status.is_server_error() => {
                state.balancer.record_success(&node.addr);
                state.hedging.record(started.elapsed());
                state
                    .stats
                    .record_attempt(&node.addr, Some(started.elapsed()), false);
                // Attempts started before this one lost the race: their nodes were slow.
                for (slow, since) in running.iter().filter(|(_, s)| *s < started) {
                    fail(state, slow, "slow", &AttemptError::Timeout(since.elapsed()));
                }
                return Ok(into_response(resp));
            }
            Outcome::Answered(resp) => (
                "status",
                AttemptError::Transport(format!("answered {}", resp.status)),
            ),
            Outcome::Failed(e @ AttemptError::Timeout(_)) => ("timeout", e),
            Outcome::Failed(e) => ("transport", e),
            Outcome::Left => {
                state
                    .node_metrics
                    .count(&node.addr, NodeEvent::Failure("left"));
                tracing::info!(node = %node.addr, "node left the healthy set; its attempt is cancelled");
                failures.push(AttemptError::Transport(
                    "the node left the healthy set".into(),
                ));
                due = Some(Kind::Retry);
                continue;
            }
        };
        fail(state, node, reason, &error);
        failures.push(error);
        due = Some(Kind::Retry);
    }
}

/// Counts a failed attempt of `node` and ejects the node when that makes too many in a row.
fn fail(state: &AppState, node: &Endpoint, reason: &'static str, error: &AttemptError) {
    state
        .node_metrics
        .count(&node.addr, NodeEvent::Failure(reason));
    state.stats.record_attempt(&node.addr, None, true);
    tracing::warn!(node = %node.addr, reason, %error, "upstream attempt failed");
    if let Some(interval) = state.balancer.record_failure(&node.addr) {
        state.node_metrics.count(&node.addr, NodeEvent::Ejection);
        tracing::warn!(node = %node.addr, ?interval, "node ejected");
    }
}

/// One exchange with `node`; when `cancel_if_left`, cancelled if discovery drops the node from
/// the healthy set (else, with no other node to try, a draining node may still answer).
async fn attempt<'a>(
    state: &AppState,
    node: &'a Endpoint,
    path_and_query: &str,
    content_type: Option<&HeaderValue>,
    body: Bytes,
    cancel_if_left: bool,
) -> (&'a Endpoint, Outcome) {
    let exchange = pin!(upstream::exchange(
        &state.http_client,
        Method::POST,
        &node.addr,
        path_and_query,
        content_type,
        body,
        upstream::Limits {
            timeout: state.config.upstream.upstream_timeout,
            max_answer_bytes: state.config.answer_limit(),
        },
    ));
    let mut sets = state.discovery.subscribe();
    let left = async {
        // An error means the set can no longer change (a fixed discovery): never.
        if !cancel_if_left
            || sets
                .wait_for(|set| !set.iter().any(|e| e.addr == node.addr))
                .await
                .is_err()
        {
            std::future::pending::<()>().await;
        }
    };
    let outcome = tokio::select! {
        result = exchange => match result {
            Ok(resp) => Outcome::Answered(resp),
            Err(e) => Outcome::Failed(e),
        },
        () = left => Outcome::Left,
    };
    (node, outcome)
}

/// The error once every attempt failed: 504 if any attempt timed out (what the client waited
/// for), whichever came last; else 502 with the last failure's reason.
fn give_up(mut failures: Vec<AttemptError>, service: &str) -> GatewayError {
    let attempts = failures.len() as u32;
    let timed_out = failures
        .iter()
        .any(|f| matches!(f, AttemptError::Timeout(_)));
    match failures.pop() {
        None => GatewayError::NoHealthyInstance(service.to_string()),
        Some(AttemptError::Transport(reason)) if !timed_out => {
            GatewayError::UpstreamFailed { attempts, reason }
        }
        Some(_) => GatewayError::UpstreamTimeout { attempts },
    }
}

fn into_response(resp: upstream::UpstreamResponse) -> Response {
    let mut out = Response::new(Body::from(resp.body));
    *out.status_mut() = resp.status;
    *out.headers_mut() = resp.headers;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ep(addr: &str, models: Option<&[&str]>) -> Endpoint {
        Endpoint {
            id: addr.to_string(),
            addr: addr.to_string(),
            models: models.map(|m| m.iter().map(|s| s.to_string()).collect::<Arc<[String]>>()),
        }
    }

    #[test]
    fn any_timeout_makes_a_504_in_either_order() {
        let timeout = || AttemptError::Timeout(std::time::Duration::from_secs(1));
        let refused = || AttemptError::Transport("connection refused".into());
        for failures in [vec![timeout(), refused()], vec![refused(), timeout()]] {
            assert!(matches!(
                give_up(failures, "svc"),
                GatewayError::UpstreamTimeout { attempts: 2 }
            ));
        }
        assert!(matches!(
            give_up(vec![refused(), refused()], "svc"),
            GatewayError::UpstreamFailed { attempts: 2, .. }
        ));
        assert!(matches!(
            give_up(Vec::new(), "svc"),
            GatewayError::NoHealthyInstance(_)
        ));
    }

    #[test]
    fn candidates_follow_the_model() {
        let eps = vec![
            ep("a:1", Some(&["LinearRegression", "RandomForest"])),
            ep("b:1", Some(&["LinearRegression"])),
            ep("c:1", None),
        ];
        let addrs = |model| {
            candidates(&eps, model, "svc")
                .map(|c| c.iter().map(|e| e.addr.as_str()).collect::<Vec<_>>())
        };
        assert_eq!(addrs(None).unwrap(), ["a:1", "b:1", "c:1"]);
        assert_eq!(addrs(Some("RandomForest")).unwrap(), ["a:1"]);
        assert_eq!(
            addrs(Some("Lasso")).unwrap(),
            ["c:1"],
            "unknown lists are a fallback"
        );
        let only_known = &eps[..2];
        assert!(matches!(
            candidates(only_known, Some("Lasso"), "svc"),
            Err(GatewayError::UnknownModel(_))
        ));
        assert!(matches!(
            candidates(&[], None, "svc"),
            Err(GatewayError::NoHealthyInstance(_))
        ));
    }
}
