//! A thin Consul HTTP client for the handful of endpoints this project uses.
//!
//! Plain HTTP (no TLS), an optional ACL token sent as `X-Consul-Token`, a short connect
//! timeout, and per-request timeouts: 10 s for ordinary calls, and for blocking queries the
//! wait plus Consul's jitter (wait/16) plus a margin, so the client never gives up before
//! Consul answers.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, Url};
use serde::de::DeserializeOwned;

use crate::error::ConsulError;
use crate::types::{AgentService, AgentServiceRegistration, HealthCheck, ServiceEntry};

/// Timeout for establishing a TCP connection to Consul.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Timeout for a whole non-blocking request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The wait Consul applies to a blocking query that names no `wait`.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5 * 60);
/// The longest wait Consul honours.
pub const MAX_WAIT: Duration = Duration::from_secs(10 * 60);

/// Options of a (possibly blocking) read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryOptions {
    /// Blocks until the data's index passes this value (`?index=`); `None` or `Some(0)`
    /// answers at once.
    pub index: Option<u64>,
    /// The longest time to block (`?wait=`); Consul's default is 5 minutes, its maximum 10.
    pub wait: Option<Duration>,
}

/// A read's value with the index to pass to the next blocking call.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryMeta<T> {
    /// The decoded response body.
    pub value: T,
    /// `X-Consul-Index` after the client rules: at least 1, and reset to 0 when it went
    /// backwards relative to the index that was asked for (see [`next_index`]).
    pub index: u64,
    /// `X-Consul-KnownLeader`.
    pub known_leader: bool,
}

/// A Consul HTTP API client; cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

// === impl Client ===

impl Client {
    /// Creates a client for Consul at `base_url` (e.g. `http://127.0.0.1:8500`), sending `token`
    /// as `X-Consul-Token` when given.
    pub fn new(base_url: &str, token: Option<String>) -> Result<Client, ConsulError> {
        let base = Url::parse(base_url)
            .map_err(|e| ConsulError::InvalidConfig(format!("base URL {base_url:?}: {e}")))?;
        if base.scheme() != "http" {
            return Err(ConsulError::InvalidConfig(format!(
                "base URL {base_url:?}: only http:// is supported"
            )));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(ConsulError::InvalidConfig(format!(
                "base URL {base_url:?} has no host"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| ConsulError::InvalidConfig(format!("HTTP client: {e}")))?;
        let token = token.filter(|t| !t.is_empty());
        Ok(Client { http, base, token })
    }

    /// Returns the base URL this client talks to.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// Registers (or replaces) a service on the agent: `PUT /v1/agent/service/register`.
    pub async fn register(
        &self,
        registration: &AgentServiceRegistration,
    ) -> Result<(), ConsulError> {
        let url = self.url(&["agent", "service", "register"], &[]);
        let body = serde_json::to_vec(registration).map_err(|e| ConsulError::Decode {
            url: url.to_string(),
            reason: format!("cannot encode registration: {e}"),
        })?;
        self.send(Method::PUT, url, Some(body), REQUEST_TIMEOUT)
            .await?;
        Ok(())
    }

    /// Deregisters a service: `PUT /v1/agent/service/deregister/:id`. An unknown ID (404) is
    /// already gone and counts as success.
    pub async fn deregister(&self, service_id: &str) -> Result<(), ConsulError> {
        let url = self.url(&["agent", "service", "deregister", service_id], &[]);
        match self.send(Method::PUT, url, None, REQUEST_TIMEOUT).await {
            Ok(_) | Err(ConsulError::Status { code: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Lists the instances of `service` with their node and checks:
    /// `GET /v1/health/service/:service[?passing]`, blocking per `options`.
    pub async fn health_service(
        &self,
        service: &str,
        passing: bool,
        options: &QueryOptions,
    ) -> Result<QueryMeta<Vec<ServiceEntry>>, ConsulError> {
        let mut query = blocking_query(options);
        if passing {
            query.push(("passing", "true".to_string()));
        }
        let url = self.url(&["health", "service", service], &query);
        self.get_blocking(url, options).await
    }

    /// Lists the services registered on the agent, keyed by ID: `GET /v1/agent/services`.
    pub async fn agent_services(&self) -> Result<BTreeMap<String, AgentService>, ConsulError> {
        let url = self.url(&["agent", "services"], &[]);
        self.get_json(url).await
    }

    /// Lists the checks registered on the agent, keyed by check ID: `GET /v1/agent/checks`.
    pub async fn agent_checks(&self) -> Result<BTreeMap<String, HealthCheck>, ConsulError> {
        let url = self.url(&["agent", "checks"], &[]);
        self.get_json(url).await
    }

    /// Lists service names with their tags: `GET /v1/catalog/services`.
    pub async fn catalog_services(&self) -> Result<BTreeMap<String, Vec<String>>, ConsulError> {
        let url = self.url(&["catalog", "services"], &[]);
        self.get_json(url).await
    }

    /// Returns the Raft leader's address (e.g. `"10.1.10.12:8300"`): `GET /v1/status/leader`.
    pub async fn leader(&self) -> Result<String, ConsulError> {
        let url = self.url(&["status", "leader"], &[]);
        self.get_json(url).await
    }

    /// Marks a TTL check passing: `PUT /v1/agent/check/pass/:check_id[?note=]`.
    pub async fn check_pass(&self, check_id: &str, note: Option<&str>) -> Result<(), ConsulError> {
        self.update_ttl("pass", check_id, note).await
    }

    /// Marks a TTL check warning: `PUT /v1/agent/check/warn/:check_id[?note=]`.
    pub async fn check_warn(&self, check_id: &str, note: Option<&str>) -> Result<(), ConsulError> {
        self.update_ttl("warn", check_id, note).await
    }

    /// Marks a TTL check critical: `PUT /v1/agent/check/fail/:check_id[?note=]`.
    pub async fn check_fail(&self, check_id: &str, note: Option<&str>) -> Result<(), ConsulError> {
        self.update_ttl("fail", check_id, note).await
    }

    async fn update_ttl(
        &self,
        verb: &str,
        check_id: &str,
        note: Option<&str>,
    ) -> Result<(), ConsulError> {
        let query: Vec<(&str, String)> =
            note.map(|n| ("note", n.to_string())).into_iter().collect();
        let url = self.url(&["agent", "check", verb, check_id], &query);
        self.send(Method::PUT, url, None, REQUEST_TIMEOUT).await?;
        Ok(())
    }

    async fn get_json<T: DeserializeOwned>(&self, url: Url) -> Result<T, ConsulError> {
        let response = self
            .send(Method::GET, url.clone(), None, REQUEST_TIMEOUT)
            .await?;
        decode(&url, response).await
    }

    async fn get_blocking<T: DeserializeOwned>(
        &self,
        url: Url,
        options: &QueryOptions,
    ) -> Result<QueryMeta<T>, ConsulError> {
        let timeout = match options.index {
            Some(index) if index > 0 => blocking_timeout(options.wait),
            _ => REQUEST_TIMEOUT,
        };
        let response = self.send(Method::GET, url.clone(), None, timeout).await?;
        let headers = response.headers();
        let returned = headers
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let known_leader = headers
            .get("X-Consul-KnownLeader")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let value = decode(&url, response).await?;
        Ok(QueryMeta {
            value,
            index: next_index(options.index, returned),
            known_leader,
        })
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<reqwest::Response, ConsulError> {
        let mut request = self.http.request(method, url.clone()).timeout(timeout);
        if let Some(token) = &self.token {
            request = request.header("X-Consul-Token", token);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|source| ConsulError::Unreachable {
                url: url.to_string(),
                source,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(ConsulError::Status {
            code: status.as_u16(),
            body: truncate(body.trim(), 1024),
        })
    }

    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        {
            // NOTE: `cannot_be_a_base` was ruled out in `new`, so this cannot fail.
            let mut path = url.path_segments_mut().expect("base URL can be a base");
            path.pop_if_empty().push("v1").extend(segments);
        }
        url.set_query(None);
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in query {
                pairs.append_pair(key, value);
            }
        }
        url
    }
}

/// Applies Consul's client rules to a returned `X-Consul-Index`: if it went backwards relative
/// to the index asked for, start over from 0 (the next call answers at once); otherwise keep
/// it at least 1.
pub fn next_index(requested: Option<u64>, returned: u64) -> u64 {
    match requested {
        Some(previous) if returned < previous => 0,
        _ => returned.max(1),
    }
}

/// Returns the HTTP timeout a blocking query with this `wait` needs: the effective wait plus
/// Consul's jitter (wait/16) plus a 10 s margin.
pub fn blocking_timeout(wait: Option<Duration>) -> Duration {
    let wait = wait.unwrap_or(DEFAULT_WAIT).min(MAX_WAIT);
    wait + wait / 16 + REQUEST_TIMEOUT
}

fn blocking_query(options: &QueryOptions) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if let Some(index) = options.index.filter(|i| *i > 0) {
        query.push(("index", index.to_string()));
        if let Some(wait) = options.wait {
            // Consul takes Go durations; whole milliseconds are precise enough.
            query.push(("wait", format!("{}ms", wait.as_millis().max(1))));
        }
    }
    query
}

async fn decode<T: DeserializeOwned>(
    url: &Url,
    response: reqwest::Response,
) -> Result<T, ConsulError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|source| ConsulError::Unreachable {
            url: url.to_string(),
            source,
        })?;
    serde_json::from_slice(&bytes).map_err(|e| ConsulError::Decode {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_index_follows_consuls_client_rules() {
        assert_eq!(next_index(None, 0), 1);
        assert_eq!(next_index(None, 42), 42);
        assert_eq!(next_index(Some(10), 12), 12);
        assert_eq!(next_index(Some(10), 10), 10);
        assert_eq!(
            next_index(Some(10), 3),
            0,
            "an index going backwards resets"
        );
    }

    #[test]
    fn blocking_timeout_exceeds_wait_and_jitter() {
        let t = blocking_timeout(Some(Duration::from_secs(32)));
        assert_eq!(t, Duration::from_secs(32 + 2 + 10));
        assert!(blocking_timeout(None) > DEFAULT_WAIT + DEFAULT_WAIT / 16);
        assert!(blocking_timeout(Some(Duration::from_secs(3600))) > MAX_WAIT + MAX_WAIT / 16);
    }

    #[test]
    fn urls_escape_segments_and_keep_base_path() {
        let c = Client::new("http://127.0.0.1:8500/", None).unwrap();
        let u = c.url(
            &["health", "service", "a b/c"],
            &[("passing", "true".into())],
        );
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:8500/v1/health/service/a%20b%2Fc?passing=true"
        );
        let c = Client::new("http://consul:8500/prefix", None).unwrap();
        assert_eq!(
            c.url(&["status", "leader"], &[]).as_str(),
            "http://consul:8500/prefix/v1/status/leader"
        );
    }

    #[test]
    fn rejects_unusable_base_urls() {
        for bad in ["", "127.0.0.1:8500", "https://consul:8501", "mailto:x@y"] {
            assert!(
                matches!(Client::new(bad, None), Err(ConsulError::InvalidConfig(_))),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn blocking_query_only_sends_wait_with_an_index() {
        let none = blocking_query(&QueryOptions {
            index: None,
            wait: Some(Duration::from_secs(5)),
        });
        assert!(none.is_empty());
        let some = blocking_query(&QueryOptions {
            index: Some(7),
            wait: Some(Duration::from_secs(5)),
        });
        assert_eq!(
            some,
            vec![("index", "7".to_string()), ("wait", "5000ms".to_string())]
        );
    }
}
