//! The process-wide Prometheus recorder, and the per-node upstream series. (The log setup is
//! `http_serve::telemetry`.)
//!
//! The per-node series (`gateway_upstream_*_total{node=...}`) are kept here rather than in the
//! recorder, which cannot forget a series: a node that has been out of the healthy set for the
//! retention (`GATEWAY_NODE_METRICS_RETENTION`) loses its series, so a churning cluster does not
//! grow `/metrics` without bound.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::discovery::Endpoint;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Returns the handle of the process-wide Prometheus recorder, installing it on first use.
///
/// `metrics` has one global recorder per process, so several gateways in one test process
/// share it; when another recorder was installed first, the handle renders an empty page.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".to_string()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ],
                )
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
            }
            handle
        })
        .clone()
}

/// Something that happened to one node, counted in its series.
#[derive(Debug, Clone, Copy)]
pub enum NodeEvent {
    /// An attempt was sent (`gateway_upstream_attempts_total`).
    Attempt,
    /// The attempt was a retry after another node failed (`gateway_upstream_retries_total`).
    Retry,
    /// The attempt was a hedge after another node was slow (`gateway_upstream_hedges_total`).
    Hedge,
    /// An attempt failed, for this reason (`gateway_upstream_failures_total`).
    Failure(&'static str),
    /// The node was ejected (`gateway_upstream_ejections_total`).
    Ejection,
}

/// The per-node upstream counters, rendered at the end of `/metrics`.
#[derive(Debug)]
pub struct NodeMetrics {
    retention: Duration,
    nodes: Mutex<BTreeMap<String, NodeSeries>>,
}

#[derive(Debug, Default)]
struct NodeSeries {
    attempts: u64,
    retries: u64,
    hedges: u64,
    ejections: u64,
    failures: BTreeMap<&'static str, u64>,
    /// When the node was first seen missing from the healthy set.
    absent_since: Option<Instant>,
}

impl NodeMetrics {
    /// Series of a node absent from the healthy set for `retention` are dropped.
    pub fn new(retention: Duration) -> NodeMetrics {
        NodeMetrics {
            retention,
            nodes: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts `event` for the node at `addr`.
    pub fn count(&self, addr: &str, event: NodeEvent) {
        let mut nodes = self.nodes.lock().expect("node metrics lock");
        let series = match nodes.get_mut(addr) {
            Some(series) => series,
            None => nodes.entry(addr.to_string()).or_default(),
        };
        match event {
            NodeEvent::Attempt => series.attempts += 1,
            NodeEvent::Retry => series.retries += 1,
            NodeEvent::Hedge => series.hedges += 1,
            NodeEvent::Ejection => series.ejections += 1,
            NodeEvent::Failure(reason) => *series.failures.entry(reason).or_default() += 1,
        }
    }

    /// Notes which nodes are in the healthy set, and drops the series of the nodes that have
    /// been out of it for the retention.
    pub fn retain(&self, healthy: &[Endpoint]) {
        let now = Instant::now();
        let mut nodes = self.nodes.lock().expect("node metrics lock");
        nodes.retain(|addr, series| {
            if healthy.iter().any(|e| &e.addr == addr) {
                series.absent_since = None;
                return true;
            }
            let since = *series.absent_since.get_or_insert(now);
            now.duration_since(since) < self.retention
        });
    }

    /// Returns how many nodes have series.
    pub fn len(&self) -> usize {
        self.nodes.lock().expect("node metrics lock").len()
    }

    /// Returns whether no node has series.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the series in Prometheus' text format.
    pub fn render(&self, out: &mut String) {
        let nodes = self.nodes.lock().expect("node metrics lock");
        if nodes.is_empty() {
            return;
        }
        type Family = (&'static str, fn(&NodeSeries) -> u64);
        let families: [Family; 4] = [
            ("gateway_upstream_attempts_total", |s| s.attempts),
            ("gateway_upstream_retries_total", |s| s.retries),
            ("gateway_upstream_hedges_total", |s| s.hedges),
            ("gateway_upstream_ejections_total", |s| s.ejections),
        ];
        for (name, value) in families {
            let _ = writeln!(out, "# TYPE {name} counter");
            for (addr, series) in nodes.iter() {
                let _ = writeln!(out, "{name}{{node=\"{}\"}} {}", escape(addr), value(series));
            }
            out.push('\n');
        }
        let _ = writeln!(out, "# TYPE gateway_upstream_failures_total counter");
        for (addr, series) in nodes.iter() {
            for (reason, n) in &series.failures {
                let _ = writeln!(
                    out,
                    "gateway_upstream_failures_total{{node=\"{}\",reason=\"{reason}\"}} {n}",
                    escape(addr)
                );
            }
        }
        out.push('\n');
    }
}

/// Escapes a label value (`\`, `"` and newlines), as the text format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(addr: &str) -> Endpoint {
        Endpoint {
            id: addr.to_string(),
            addr: addr.to_string(),
            models: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn series_of_departed_nodes_go_after_the_retention() {
        let m = NodeMetrics::new(Duration::from_secs(60));
        m.count("a:1", NodeEvent::Attempt);
        m.count("a:1", NodeEvent::Failure("timeout"));
        m.count("b:1", NodeEvent::Attempt);
        m.count("b:1", NodeEvent::Attempt);
        let mut text = String::new();
        m.render(&mut text);
        assert!(
            text.contains("gateway_upstream_attempts_total{node=\"b:1\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("gateway_upstream_failures_total{node=\"a:1\",reason=\"timeout\"} 1\n"),
            "{text}"
        );
        // a leaves; it keeps its series for the retention, then loses them.
        m.retain(&[ep("b:1")]);
        tokio::time::advance(Duration::from_secs(59)).await;
        m.retain(&[ep("b:1")]);
        assert_eq!(m.len(), 2);
        tokio::time::advance(Duration::from_secs(1)).await;
        m.retain(&[ep("b:1")]);
        assert_eq!(m.len(), 1);
        let mut text = String::new();
        m.render(&mut text);
        assert!(!text.contains("a:1"), "{text}");
        // A node that comes back within the retention starts its absence anew later.
        m.retain(&[]);
        tokio::time::advance(Duration::from_secs(30)).await;
        m.retain(&[ep("b:1")]);
        tokio::time::advance(Duration::from_secs(40)).await;
        m.retain(&[]);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
    }
}
