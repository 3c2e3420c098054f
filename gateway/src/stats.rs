//! The dashboard's measurements: requests, errors and latency of the whole cluster and of each
//! node, in [`BUCKET`]-long buckets over the last [`HISTORY`].
//!
//! The cluster's numbers are the client's view (one per prediction request, from arrival to
//! answer; an error is a 5xx the gateway answered); a node's are its attempts (an error is a
//! failed attempt: connect error, timeout, 5xx, or lost to a hedge; only answered attempts
//! have a latency). Latencies go into a log-scale histogram per bucket (bins ~25 % wide), from
//! which p50 and p99 are read.
//!
//! Memory is bounded: a fixed ring of buckets per series, and [`Stats::retain`] drops the
//! series of nodes that left the healthy set (the dashboard shows healthy nodes only).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use utoipa::ToSchema;

use crate::discovery::Endpoint;

/// Length of one bucket.
pub const BUCKET: Duration = Duration::from_secs(2);
/// How many buckets a series keeps: 150 × 2 s = the last 5 minutes.
pub const BUCKETS: usize = 150;
/// How far back a series goes.
pub const HISTORY: Duration = Duration::from_secs(BUCKET.as_secs() * BUCKETS as u64);
/// How many of the last complete buckets the "now" numbers cover (10 s).
pub const RECENT_BUCKETS: usize = 5;

/// Upper bound of the first latency bin; anything faster lands in it.
const MIN_LATENCY_US: f64 = 10.0;
/// Each bin's upper bound is this much larger than the one before.
const GROWTH: f64 = 1.25;
/// Number of bins: the last one starts at 10 µs × 1.25⁷⁸ ≈ 6 minutes and takes anything slower.
const BINS: usize = 80;

/// Requests, errors and latency of the whole cluster and of each node.
#[derive(Debug)]
pub struct Stats {
    origin: Instant,
    cluster: Mutex<Window>,
    nodes: Mutex<BTreeMap<String, Window>>,
}

/// What the dashboard shows of one series.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Series {
    /// Over the last [`RECENT_BUCKETS`] complete buckets (10 s).
    pub recent: Rates,
    /// One value per bucket, oldest first, the last one the most recent complete bucket.
    pub history: History,
}

/// Rates and latency percentiles over some time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Rates {
    /// Requests (or attempts) per second.
    pub requests_per_sec: f64,
    /// Errors per second.
    pub errors_per_sec: f64,
    /// Median latency in milliseconds; `null` with no answered request.
    pub p50_ms: Option<f64>,
    /// 99th-percentile latency in milliseconds; `null` with no answered request.
    pub p99_ms: Option<f64>,
}

/// Per-bucket columns, oldest first (all of the same length).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct History {
    /// Length of one bucket, seconds.
    pub bucket_secs: u64,
    /// Requests per second in each bucket.
    pub requests_per_sec: Vec<f64>,
    /// Errors per second in each bucket.
    pub errors_per_sec: Vec<f64>,
    /// Median latency in each bucket, ms (`null`: no answered request).
    pub p50_ms: Vec<Option<f64>>,
    /// 99th-percentile latency in each bucket, ms (`null`: no answered request).
    pub p99_ms: Vec<Option<f64>>,
}

/// A ring of buckets, indexed by the bucket's number since the origin.
#[derive(Debug)]
struct Window {
    buckets: Box<[Bucket]>,
}

#[derive(Debug, Clone)]
struct Bucket {
    /// Which bucket (number since the origin) this slot holds now.
    number: u64,
    requests: u32,
    errors: u32,
    latency: Histogram,
}

/// Latency counts in log-scale bins.
#[derive(Debug, Clone)]
struct Histogram {
    bins: [u32; BINS],
}

// === impl Stats ===

impl Stats {
    /// Creates empty series; bucket boundaries count from now.
    pub fn new() -> Stats {
        Stats {
            origin: Instant::now(),
            cluster: Mutex::new(Window::new()),
            nodes: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records one prediction request as the client saw it.
    pub fn record_request(&self, latency: Duration, error: bool) {
        let now = self.bucket_now();
        self.cluster
            .lock()
            .expect("stats lock")
            .record(now, Some(latency), error);
    }

    /// Records one attempt on the node at `addr`: its latency when it answered, whether it
    /// failed.
    pub fn record_attempt(&self, addr: &str, latency: Option<Duration>, error: bool) {
        let now = self.bucket_now();
        let mut nodes = self.nodes.lock().expect("stats lock");
        let window = match nodes.get_mut(addr) {
            Some(window) => window,
            None => nodes.entry(addr.to_string()).or_insert_with(Window::new),
        };
        window.record(now, latency, error);
    }

    /// Drops the series of the nodes not in `healthy`.
    pub fn retain(&self, healthy: &[Endpoint]) {
        self.nodes
            .lock()
            .expect("stats lock")
            .retain(|addr, _| healthy.iter().any(|e| &e.addr == addr));
    }

    /// Returns how many nodes have series.
    pub fn nodes(&self) -> usize {
        self.nodes.lock().expect("stats lock").len()
    }

    /// The whole cluster's series.
    pub fn cluster(&self) -> Series {
        let now = self.bucket_now();
        self.cluster.lock().expect("stats lock").series(now)
    }

    /// The series of the node at `addr` (all zero when it has none yet).
    pub fn node(&self, addr: &str) -> Series {
        let now = self.bucket_now();
        match self.nodes.lock().expect("stats lock").get(addr) {
            Some(window) => window.series(now),
            None => Window::new().series(now),
        }
    }

    /// Number of the bucket that holds this instant.
    fn bucket_now(&self) -> u64 {
        // NOTE: +BUCKETS, so that the complete buckets before the first one exist (empty).
        self.origin.elapsed().as_secs() / BUCKET.as_secs() + BUCKETS as u64
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

// === impl Window ===

impl Window {
    fn new() -> Window {
        Window {
            buckets: vec![Bucket::empty(u64::MAX); BUCKETS].into_boxed_slice(),
        }
    }

    fn record(&mut self, now: u64, latency: Option<Duration>, error: bool) {
        let slot = &mut self.buckets[(now % BUCKETS as u64) as usize];
        if slot.number != now {
            *slot = Bucket::empty(now);
        }
        slot.requests = slot.requests.saturating_add(1);
        if error {
            slot.errors = slot.errors.saturating_add(1);
        }
        if let Some(latency) = latency {
            slot.latency.record(latency);
        }
    }

    /// The bucket numbered `number`, or `None` when it is empty (never filled, or overwritten).
    fn bucket(&self, number: u64) -> Option<&Bucket> {
        let slot = &self.buckets[(number % BUCKETS as u64) as usize];
        (slot.number == number).then_some(slot)
    }

    /// The complete buckets (those before `now`), the last [`BUCKETS`] - 1 of them.
    fn series(&self, now: u64) -> Series {
        let secs = BUCKET.as_secs_f64();
        let first = now - (BUCKETS as u64 - 1);
        let mut history = History {
            bucket_secs: BUCKET.as_secs(),
            requests_per_sec: Vec::with_capacity(BUCKETS - 1),
            errors_per_sec: Vec::with_capacity(BUCKETS - 1),
            p50_ms: Vec::with_capacity(BUCKETS - 1),
            p99_ms: Vec::with_capacity(BUCKETS - 1),
        };
        let mut recent = Bucket::empty(now);
        for number in first..now {
            let bucket = self.bucket(number);
            let rates = bucket.map_or(Rates::zero(), |b| b.rates(secs));
            history.requests_per_sec.push(rates.requests_per_sec);
            history.errors_per_sec.push(rates.errors_per_sec);
            history.p50_ms.push(rates.p50_ms);
            history.p99_ms.push(rates.p99_ms);
            if let Some(b) = bucket.filter(|_| number + RECENT_BUCKETS as u64 >= now) {
                recent.add(b);
            }
        }
        Series {
            recent: recent.rates(secs * RECENT_BUCKETS as f64),
            history,
        }
    }
}

// === impl Bucket ===

impl Bucket {
    fn empty(number: u64) -> Bucket {
        Bucket {
            number,
            requests: 0,
            errors: 0,
            latency: Histogram { bins: [0; BINS] },
        }
    }

    fn add(&mut self, other: &Bucket) {
        self.requests = self.requests.saturating_add(other.requests);
        self.errors = self.errors.saturating_add(other.errors);
        for (a, b) in self.latency.bins.iter_mut().zip(other.latency.bins.iter()) {
            *a = a.saturating_add(*b);
        }
    }

    /// The bucket's numbers as rates over `secs`.
    fn rates(&self, secs: f64) -> Rates {
        Rates {
            requests_per_sec: f64::from(self.requests) / secs,
            errors_per_sec: f64::from(self.errors) / secs,
            p50_ms: self.latency.quantile(0.5),
            p99_ms: self.latency.quantile(0.99),
        }
    }
}

impl Rates {
    fn zero() -> Rates {
        Rates {
            requests_per_sec: 0.0,
            errors_per_sec: 0.0,
            p50_ms: None,
            p99_ms: None,
        }
    }
}

// === impl Histogram ===

impl Histogram {
    fn record(&mut self, latency: Duration) {
        let bin = bin_of(latency.as_secs_f64() * 1e6);
        self.bins[bin] = self.bins[bin].saturating_add(1);
    }

    /// The `q` quantile in milliseconds (the middle of its bin), or `None` when empty.
    fn quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.bins.iter().map(|&n| u64::from(n)).sum();
        if total == 0 {
            return None;
        }
        // The rank of the q-quantile among `total` samples, 1-based (nearest-rank method).
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        for (bin, &n) in self.bins.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                return Some(middle_of(bin) / 1000.0);
            }
        }
        unreachable!("rank <= total")
    }
}

/// The bin of a latency in microseconds: 0 up to [`MIN_LATENCY_US`], then bin `i` up to
/// `MIN_LATENCY_US * GROWTH^i`; the last bin takes anything slower.
fn bin_of(us: f64) -> usize {
    if us.is_nan() || us <= MIN_LATENCY_US {
        return 0;
    }
    let bin = ((us / MIN_LATENCY_US).ln() / GROWTH.ln()).ceil();
    (bin as usize).min(BINS - 1)
}

/// The value that stands for `bin`, in microseconds: the geometric middle of its bounds.
fn middle_of(bin: usize) -> f64 {
    if bin == 0 {
        return MIN_LATENCY_US;
    }
    MIN_LATENCY_US * GROWTH.powf(bin as f64 - 0.5)
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

    fn ms(n: f64) -> Duration {
        Duration::from_secs_f64(n / 1000.0)
    }

    /// Within the histogram's resolution (half a bin, ~12 %).
    fn close(got: Option<f64>, want: f64) -> bool {
        got.is_some_and(|g| (g / want - 1.0).abs() < 0.13)
    }

    #[test]
    fn percentiles_come_from_the_histogram_within_a_bin() {
        let mut h = Histogram { bins: [0; BINS] };
        assert_eq!(h.quantile(0.5), None);
        // 1..=100 ms, one each: p50 = 50 ms, p99 = 99 ms.
        for i in 1..=100 {
            h.record(ms(f64::from(i)));
        }
        assert!(close(h.quantile(0.5), 50.0), "{:?}", h.quantile(0.5));
        assert!(close(h.quantile(0.99), 99.0), "{:?}", h.quantile(0.99));
        // One slow request in a hundred shows in p99, not p50.
        let mut h = Histogram { bins: [0; BINS] };
        for _ in 0..98 {
            h.record(ms(0.3));
        }
        h.record(ms(2000.0));
        h.record(ms(2000.0));
        assert!(close(h.quantile(0.5), 0.3), "{:?}", h.quantile(0.5));
        assert!(close(h.quantile(0.99), 2000.0), "{:?}", h.quantile(0.99));
    }

    #[test]
    fn bins_cover_every_latency() {
        assert_eq!(bin_of(0.0), 0);
        assert_eq!(bin_of(f64::NAN), 0);
        assert_eq!(bin_of(10.0), 0);
        assert_eq!(bin_of(10.1), 1);
        assert_eq!(bin_of(1e12), BINS - 1);
        // Each value falls within its bin's bounds.
        for us in [11.0, 99.0, 250.0, 1234.5, 1e5, 3e7] {
            let bin = bin_of(us);
            let upper = MIN_LATENCY_US * GROWTH.powi(bin as i32);
            assert!(us <= upper && us > upper / GROWTH, "{us} in bin {bin}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn buckets_fill_in_time_and_age_out_after_the_history() {
        let stats = Stats::new();
        // 20 requests in one bucket, 2 of them errors.
        for i in 0..20 {
            stats.record_request(ms(4.0), i < 2);
        }
        // Not complete yet: nothing shows.
        let s = stats.cluster();
        assert_eq!(s.history.requests_per_sec.len(), BUCKETS - 1);
        assert!(s.history.requests_per_sec.iter().all(|&r| r == 0.0));
        assert_eq!(s.recent.p50_ms, None);
        // Complete: the last bucket has 20 requests in 2 s, the recent window 20 in 10 s.
        tokio::time::advance(BUCKET).await;
        let s = stats.cluster();
        assert_eq!(s.history.requests_per_sec.last(), Some(&10.0));
        assert_eq!(s.history.errors_per_sec.last(), Some(&1.0));
        assert!(close(*s.history.p50_ms.last().unwrap(), 4.0));
        assert_eq!(s.recent.requests_per_sec, 2.0);
        assert_eq!(s.recent.errors_per_sec, 0.2);
        assert!(close(s.recent.p99_ms, 4.0));
        // The bucket moves left as time passes, and leaves the recent window after 10 s.
        tokio::time::advance(BUCKET * RECENT_BUCKETS as u32).await;
        let s = stats.cluster();
        let n = s.history.requests_per_sec.len();
        assert_eq!(s.history.requests_per_sec[n - 1 - RECENT_BUCKETS], 10.0);
        assert_eq!(s.recent.requests_per_sec, 0.0);
        assert_eq!(s.recent.p50_ms, None);
        // After the whole history it is gone, and its slot holds new requests only.
        tokio::time::advance(HISTORY).await;
        stats.record_request(ms(1.0), false);
        tokio::time::advance(BUCKET).await;
        let s = stats.cluster();
        assert_eq!(s.history.requests_per_sec.iter().sum::<f64>(), 0.5);
    }

    #[tokio::test(start_paused = true)]
    async fn nodes_have_their_own_series_and_departed_ones_are_dropped() {
        let stats = Stats::new();
        stats.record_attempt("a:1", Some(ms(1.0)), false);
        stats.record_attempt("a:1", None, true);
        stats.record_attempt("b:1", Some(ms(50.0)), false);
        tokio::time::advance(BUCKET).await;
        let a = stats.node("a:1");
        assert_eq!(a.history.requests_per_sec.last(), Some(&1.0));
        assert_eq!(a.history.errors_per_sec.last(), Some(&0.5));
        assert!(
            close(a.recent.p50_ms, 1.0),
            "failed attempts have no latency"
        );
        assert!(close(stats.node("b:1").recent.p99_ms, 50.0));
        assert_eq!(stats.node("c:1").recent.requests_per_sec, 0.0);
        assert_eq!(stats.nodes(), 2);
        stats.retain(&[ep("b:1")]);
        assert_eq!(stats.nodes(), 1);
        assert_eq!(stats.node("a:1").recent.requests_per_sec, 0.0);
        stats.retain(&[]);
        assert_eq!(stats.nodes(), 0);
    }
}
