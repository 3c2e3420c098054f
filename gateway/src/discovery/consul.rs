//! The Consul watcher: blocking queries on `/v1/health/service/<name>?passing`.
//!
//! One background task asks Consul, publishes the healthy set, and asks again with the
//! returned index (`index`/`wait`), so it hears about changes as they happen. While Consul is
//! unreachable it keeps the last published set, logs the outage once, and retries with a
//! growing backoff; it catches up on the first answer after Consul returns, with a fresh
//! index (a restarted Consul counts from 1 again). A Consul that comes back without some of
//! the nodes has most likely forgotten them (a dev agent keeps no state; nodes re-register
//! within their refresh interval and pass their first check), so for a grace the nodes it
//! does not list stay in the set beside the ones it does (retry and ejection cover a node
//! that really died); after the grace, Consul's answer alone counts. A node is kept for one
//! grace in all, however often Consul fails and comes back meanwhile.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use consul::{Client, QueryOptions, ServiceEntry, host_port};
use node_contract::MODELS_META_KEY;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Discovery, Endpoint, Endpoints, Status};
use crate::upstream::{self, HttpClient};

const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Consul's rule: rate-limit the loop, a return is not a promise of change.
const MIN_INTERVAL: Duration = Duration::from_millis(50);
/// Shortest `wait` the watcher asks for.
const MIN_WAIT: Duration = Duration::from_millis(100);

/// What the watcher watches and how patiently.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Consul service name.
    pub service: String,
    /// `wait` of each blocking query.
    pub wait: Duration,
    /// Longest pause between retries while Consul is unreachable.
    pub backoff_max: Duration,
    /// Time allowed for a node's `/models` when its `Meta` does not list its models.
    pub models_timeout: Duration,
    /// After an outage, how long nodes of the last set that Consul does not list are kept.
    pub recovery_grace: Duration,
}

/// Starts the watcher task; it runs until `cancel` fires.
pub fn spawn(
    client: Client,
    http: HttpClient,
    config: WatchConfig,
    cancel: CancellationToken,
) -> Discovery {
    let (tx, rx) = watch::channel(Endpoints::from(Vec::new()));
    let status = Arc::new(Status::new());
    let watcher = Watcher {
        client,
        http,
        config,
        tx,
        status: status.clone(),
        models: HashMap::new(),
        kept_since: HashMap::new(),
    };
    tokio::spawn(watcher.run(cancel));
    Discovery::new(rx, status)
}

struct Watcher {
    client: Client,
    http: HttpClient,
    config: WatchConfig,
    tx: watch::Sender<Endpoints>,
    status: Arc<Status>,
    /// Models of the listed nodes (from their `Meta` or `/models`), by (service ID, address).
    models: HashMap<(String, String), Arc<[String]>>,
    /// Nodes kept in the set by a recovery grace although Consul does not list them, by
    /// address, with when that began (not reset by a further outage).
    kept_since: HashMap<String, Instant>,
}

// === impl Watcher ===

impl Watcher {
    async fn run(mut self, cancel: CancellationToken) {
        let mut index = 0;
        let mut backoff = BACKOFF_MIN;
        let mut outage = false;
        // When Consul answered again after an outage (while a set was being served).
        let mut recovered_at: Option<Instant> = None;
        loop {
            let started = Instant::now();
            let options = QueryOptions {
                index: Some(index),
                wait: Some(self.query_wait(recovered_at)),
            };
            let answer = tokio::select! {
                () = cancel.cancelled() => return,
                answer = self.client.health_service(&self.config.service, true, &options) => answer,
            };
            match answer {
                Ok(meta) => {
                    // QueryMeta applies the client rules: never 0, reset when it goes backwards.
                    index = meta.index;
                    backoff = BACKOFF_MIN;
                    let first = self.status.updates() == 0;
                    if self.status.mark_ok() && !first {
                        tracing::info!("Consul is reachable again; refreshing the healthy set");
                    }
                    if std::mem::take(&mut outage) && !self.tx.borrow().is_empty() {
                        recovered_at = Some(started);
                    }
                    let mut endpoints = self.resolve(meta.value).await;
                    let in_grace =
                        recovered_at.is_some_and(|at| at.elapsed() < self.config.recovery_grace);
                    if in_grace {
                        let kept = self.keep_unlisted(&mut endpoints);
                        if kept > 0 && !self.status.is_recovering() {
                            tracing::info!(kept, grace = ?self.config.recovery_grace,
                                "Consul does not list every node of the last known set right \
                                 after an outage (a restarted agent forgets nodes until they \
                                 re-register); keeping them meanwhile");
                        }
                        self.status.set_recovering(kept > 0);
                    } else {
                        recovered_at = None;
                        self.kept_since.clear();
                        self.status.set_recovering(false);
                    }
                    self.publish(endpoints);
                    pause(MIN_INTERVAL.saturating_sub(started.elapsed()), &cancel).await;
                }
                Err(error) => {
                    metrics::counter!("gateway_discovery_errors_total").increment(1);
                    if self.status.mark_down() || self.status.updates() == 0 {
                        tracing::warn!(%error, kept = self.tx.borrow().len(),
                            "Consul is unreachable; serving from the last known healthy set");
                    } else {
                        tracing::debug!(%error, "Consul still unreachable");
                    }
                    // A restarted Consul counts its index from 1 again: a query with the old
                    // index would block for the whole wait before seeing the current set.
                    index = 0;
                    outage = true;
                    recovered_at = None;
                    self.status.set_recovering(false);
                    pause(backoff, &cancel).await;
                    backoff = (backoff * 2).min(self.config.backoff_max);
                }
            }
        }
    }

    /// Adds the nodes of the published set that `endpoints` (Consul's answer) does not list,
    /// each for at most one grace since it was first kept; returns how many were kept.
    fn keep_unlisted(&mut self, endpoints: &mut Vec<Endpoint>) -> usize {
        let current = self.tx.borrow().clone();
        let now = Instant::now();
        let listed = |addr: &str, endpoints: &[Endpoint]| endpoints.iter().any(|e| e.addr == addr);
        self.kept_since.retain(|addr, _| !listed(addr, endpoints));
        let before = endpoints.len();
        for node in current.iter() {
            if listed(&node.addr, endpoints) {
                continue;
            }
            let since = *self.kept_since.entry(node.addr.clone()).or_insert(now);
            if now.duration_since(since) < self.config.recovery_grace {
                endpoints.push(node.clone());
            } else {
                self.kept_since.remove(&node.addr);
            }
        }
        endpoints.len() - before
    }

    /// The blocking query's wait: during a recovery, no longer than until the grace (or a
    /// kept node's own grace) ends, so that the set changes as soon as it does.
    fn query_wait(&self, recovered_at: Option<Instant>) -> Duration {
        let Some(at) = recovered_at else {
            return self.config.wait;
        };
        let first = self.kept_since.values().copied().fold(at, Instant::min);
        let left = (first + self.config.recovery_grace).saturating_duration_since(Instant::now());
        self.config.wait.min(left.max(MIN_WAIT))
    }

    /// Turns Consul entries into endpoints, learning unknown model lists from the nodes'
    /// `/models`, all at once.
    async fn resolve(&mut self, entries: Vec<ServiceEntry>) -> Vec<Endpoint> {
        let mut endpoints: Vec<Endpoint> = distinct_addresses(&entries)
            .into_iter()
            .map(|entry| {
                let id = entry.service.id.clone();
                let addr = host_port(entry.address(), entry.service.port);
                let models = models_from_meta(entry)
                    .or_else(|| self.models.get(&(id.clone(), addr.clone())).cloned());
                Endpoint { id, addr, models }
            })
            .collect();
        let (http, timeout) = (&self.http, self.config.models_timeout);
        let asks = endpoints
            .iter_mut()
            .filter(|e| e.models.is_none())
            .map(|e| async move {
                match upstream::fetch_models(http, &e.addr, timeout).await {
                    Ok(models) => e.models = Some(models.into()),
                    Err(error) => {
                        tracing::warn!(node = %e.addr, %error, "cannot learn the node's models");
                    }
                }
            });
        futures::future::join_all(asks).await;
        // Remember the listed nodes' models (a node's `Meta` still wins next time); nodes that
        // left are forgotten, so a reused address is asked again.
        self.models = endpoints
            .iter()
            .filter_map(|e| Some(((e.id.clone(), e.addr.clone()), e.models.clone()?)))
            .collect();
        endpoints
    }

    fn publish(&self, endpoints: Vec<Endpoint>) {
        let changed = self.tx.send_if_modified(|current| {
            if current[..] == endpoints[..] {
                return false;
            }
            *current = endpoints.into();
            true
        });
        if changed {
            let current = self.tx.borrow();
            let addrs: Vec<&str> = current.iter().map(|e| e.addr.as_str()).collect();
            tracing::info!(healthy = ?addrs, "healthy set changed");
        }
    }
}

/// Keeps one entry per address: the same node registered under two IDs (say, an old and a
/// new one across a restart) is one node, listed and picked once.
fn distinct_addresses(entries: &[ServiceEntry]) -> Vec<&ServiceEntry> {
    let mut seen = std::collections::HashSet::new();
    entries
        .iter()
        .filter(|e| seen.insert((e.address(), e.service.port)))
        .collect()
}

/// Reads the models a node lists in its Consul `Meta` (`"models": "A,B"`).
fn models_from_meta(entry: &ServiceEntry) -> Option<Arc<[String]>> {
    let raw = entry.service.meta.get(MODELS_META_KEY)?;
    let models: Vec<String> = match serde_json::from_str::<Vec<String>>(raw) {
        Ok(list) => list,
        Err(_) => raw
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(String::from)
            .collect(),
    };
    Some(models.into())
}

async fn pause(duration: Duration, cancel: &CancellationToken) {
    if duration.is_zero() {
        return;
    }
    tokio::select! {
        () = cancel.cancelled() => {},
        () = tokio::time::sleep(duration) => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(meta: &[(&str, &str)]) -> ServiceEntry {
        let mut e = ServiceEntry::default();
        e.service.meta = meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        e
    }

    #[test]
    fn one_entry_per_address() {
        let at = |id: &str, address: &str, port| {
            let mut e = ServiceEntry::default();
            e.service.id = id.to_string();
            e.service.address = address.to_string();
            e.service.port = port;
            e
        };
        let entries = [
            at("a", "10.0.0.1", 5000),
            at("a-again", "10.0.0.1", 5000),
            at("b", "10.0.0.1", 5001),
            at("c", "10.0.0.2", 5000),
        ];
        let ids: Vec<&str> = distinct_addresses(&entries)
            .iter()
            .map(|e| e.service.id.as_str())
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn reads_models_from_meta() {
        let names = |e: &ServiceEntry| models_from_meta(e).map(|m| m.to_vec());
        let want = Some(vec!["LinearRegression".to_string(), "Lasso".to_string()]);
        assert_eq!(
            names(&entry(&[("models", "LinearRegression, Lasso")])),
            want
        );
        assert_eq!(
            names(&entry(&[("models", r#"["LinearRegression","Lasso"]"#)])),
            want
        );
        assert_eq!(names(&entry(&[("other", "x")])), None);
    }
}
