//! The pooled HTTP/1 client that talks to the nodes, and one upstream exchange.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Pooled keep-alive HTTP client for the nodes (cheap to clone).
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A complete upstream answer.
#[derive(Debug)]
pub struct UpstreamResponse {
    /// The node's status.
    pub status: StatusCode,
    /// The node's `Content-Type`, if any.
    pub content_type: Option<HeaderValue>,
    /// The node's body, unchanged.
    pub body: Bytes,
}

/// Why one upstream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// Connecting, sending or reading failed.
    #[error("{0}")]
    Transport(String),
    /// The exchange did not finish in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// How long a pooled connection to a node may sit idle before the gateway drops it: below
/// the nodes' default client timeout (30 s), after which a node closes an idle connection,
/// so the gateway never picks a connection the node is closing.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// Builds the node client: keep-alive pool, `TCP_NODELAY`, bounded connect time.
pub fn client(connect_timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(1024)
        .build(connector)
}

/// Sends one request to `http://{addr}{path_and_query}` and reads the whole answer.
pub async fn exchange(
    client: &HttpClient,
    method: Method,
    addr: &str,
    path_and_query: &str,
    content_type: Option<&HeaderValue>,
    body: Bytes,
    timeout: Duration,
) -> Result<UpstreamResponse, AttemptError> {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path_and_query}"));
    if let Some(ct) = content_type {
        req = req.header(CONTENT_TYPE, ct);
    }
    let req = req
        .body(Full::new(body))
        .map_err(|e| AttemptError::Transport(format!("bad upstream request: {e}")))?;
    let call = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| AttemptError::Transport(describe(&e)))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| AttemptError::Transport(format!("reading the body: {e}")))?
            .to_bytes();
        Ok(UpstreamResponse {
            status: parts.status,
            content_type: parts.headers.get(CONTENT_TYPE).cloned(),
            body,
        })
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(AttemptError::Timeout(timeout)),
    }
}

/// Asks a node for the names of the models it serves (`GET /models`).
pub async fn fetch_models(
    client: &HttpClient,
    addr: &str,
    timeout: Duration,
) -> Result<Vec<String>, AttemptError> {
    let resp = exchange(
        client,
        Method::GET,
        addr,
        "/models",
        None,
        Bytes::new(),
        timeout,
    )
    .await?;
    if !resp.status.is_success() {
        return Err(AttemptError::Transport(format!(
            "/models answered {}",
            resp.status
        )));
    }
    let value: serde_json::Value = serde_json::from_slice(&resp.body)
        .map_err(|e| AttemptError::Transport(format!("/models is not JSON: {e}")))?;
    model_names(&value)
        .ok_or_else(|| AttemptError::Transport("/models has no list of models".to_string()))
}

/// Extracts model names from a `/models` answer: a list, or `{"models": [...]}`, whose items
/// are names or objects with a `name`.
pub fn model_names(value: &serde_json::Value) -> Option<Vec<String>> {
    let list = match value {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Object(map) => map.get("models")?.as_array()?,
        _ => return None,
    };
    list.iter()
        .map(|item| match item {
            serde_json::Value::String(name) => Some(name.clone()),
            serde_json::Value::Object(obj) => Some(obj.get("name")?.as_str()?.to_string()),
            _ => None,
        })
        .collect()
}

fn describe(e: &hyper_util::client::legacy::Error) -> String {
    use std::error::Error as _;
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_model_lists() {
        let names = |v| model_names(&v);
        let want = Some(vec!["A".to_string(), "B".to_string()]);
        assert_eq!(names(json!(["A", "B"])), want);
        assert_eq!(
            names(json!({"models": [{"name": "A", "x": 1}, {"name": "B"}]})),
            want
        );
        assert_eq!(names(json!([{"name": "A"}, {"name": "B"}])), want);
        assert_eq!(names(json!({"other": []})), None);
        assert_eq!(names(json!([1])), None);
    }
}
