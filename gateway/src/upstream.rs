//! The pooled HTTP/1 client that talks to the nodes, and one upstream exchange.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::HeaderMap;
use hyper::header::{
    CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
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
    /// The node's end-to-end headers (`Content-Type`, `Retry-After`, ...); hop-by-hop ones and
    /// `Content-Length` (the gateway frames the body itself) are removed.
    pub headers: HeaderMap,
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

/// What one exchange may take: time for the whole of it, and bytes of answer (a larger answer
/// is a failed attempt, so that nothing that registers in Consul can make the gateway buffer
/// without bound).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time from sending the request to the end of the answer.
    pub timeout: Duration,
    /// Largest answer body read.
    pub max_answer_bytes: usize,
}

impl Limits {
    /// Limits for a `/models` or `/health` answer (a few hundred bytes in practice).
    pub fn small(timeout: Duration) -> Limits {
        Limits {
            timeout,
            max_answer_bytes: 1 << 20,
        }
    }
}

/// Sends one request to `http://{addr}{path_and_query}` and reads the whole answer within
/// `limits`.
pub async fn exchange(
    client: &HttpClient,
    method: Method,
    addr: &str,
    path_and_query: &str,
    content_type: Option<&HeaderValue>,
    body: Bytes,
    limits: Limits,
) -> Result<UpstreamResponse, AttemptError> {
    let Limits {
        timeout,
        max_answer_bytes,
    } = limits;
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
        let (mut parts, body) = resp.into_parts();
        let body = Limited::new(body, max_answer_bytes)
            .collect()
            .await
            .map_err(|e| {
                AttemptError::Transport(if e.is::<LengthLimitError>() {
                    format!("answer larger than {max_answer_bytes} bytes")
                } else {
                    format!("reading the body: {e}")
                })
            })?
            .to_bytes();
        strip_hop_by_hop(&mut parts.headers);
        Ok(UpstreamResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(AttemptError::Timeout(timeout)),
    }
}

/// Removes the headers that describe one connection rather than the response (RFC 9110
/// §7.6.1), including any the `Connection` header names, and `Content-Length`.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        CONNECTION,
        CONTENT_LENGTH,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
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
        Limits::small(timeout),
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
    fn hop_by_hop_headers_are_dropped() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("content-type", "application/json"),
            ("retry-after", "1"),
            ("connection", "keep-alive, x-conn"),
            ("keep-alive", "timeout=5"),
            ("x-conn", "1"),
            ("content-length", "12"),
            ("transfer-encoding", "chunked"),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "retry-after"]);
    }

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
