//! Forwards a prediction to a random healthy node, retrying once elsewhere on failure.

use axum::body::Body;
use axum::http::{HeaderValue, Method};
use axum::response::Response;
use bytes::Bytes;

use crate::discovery::Endpoint;
use crate::error::GatewayError;
use crate::state::AppState;
use crate::upstream::{self, AttemptError};

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

/// Sends `body` to `path_and_query` on a picked node; on a connect error, timeout or 5xx,
/// retries on a different node up to the configured budget. A node's 2xx/4xx is returned as is.
/// When every attempt failed: 504 if any of them timed out, else 502.
pub async fn forward(
    state: &AppState,
    model: Option<&str>,
    path_and_query: &str,
    content_type: Option<&HeaderValue>,
    body: Bytes,
) -> Result<Response, GatewayError> {
    let endpoints = state.discovery.endpoints();
    let candidates = candidates(&endpoints, model, &state.config.service_name)?;
    let max_attempts = state.config.retries + 1;
    let mut tried: Vec<&str> = Vec::with_capacity(max_attempts as usize);
    let mut failures = Vec::with_capacity(max_attempts as usize);
    while (tried.len() as u32) < max_attempts {
        let Some(node) = state.balancer.pick(&candidates, &tried) else {
            break;
        };
        if !tried.is_empty() {
            metrics::counter!("gateway_upstream_retries_total", "node" => node.addr.clone())
                .increment(1);
        }
        tried.push(&node.addr);
        metrics::counter!("gateway_upstream_attempts_total", "node" => node.addr.clone())
            .increment(1);
        let result = upstream::exchange(
            &state.http_client,
            Method::POST,
            &node.addr,
            path_and_query,
            content_type,
            body.clone(),
            upstream::Limits {
                timeout: state.config.upstream_timeout,
                max_answer_bytes: state.config.answer_limit(),
            },
        )
        .await;
        let failure = match result {
            Ok(resp) if !resp.status.is_server_error() => {
                state.balancer.record_success(&node.addr);
                return Ok(into_response(resp));
            }
            Ok(resp) => (
                "status",
                AttemptError::Transport(format!("answered {}", resp.status)),
            ),
            Err(e @ AttemptError::Timeout(_)) => ("timeout", e),
            Err(e) => ("transport", e),
        };
        let (reason, error) = failure;
        metrics::counter!("gateway_upstream_failures_total", "node" => node.addr.clone(), "reason" => reason)
            .increment(1);
        tracing::warn!(node = %node.addr, %error, "upstream attempt failed");
        if let Some(interval) = state.balancer.record_failure(&node.addr) {
            metrics::counter!("gateway_upstream_ejections_total", "node" => node.addr.clone())
                .increment(1);
            tracing::warn!(node = %node.addr, ?interval, "node ejected");
        }
        failures.push(error);
    }
    Err(give_up(failures, &state.config.service_name))
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
