//! When a prediction is sent to a second node (a hedge), and how often.
//!
//! A prediction is idempotent and its body is buffered, so when an attempt has not answered
//! within the hedge delay the proxy sends the same request to another node and takes whichever
//! answers first ("The Tail at Scale"). A frozen or overloaded node then costs its callers the
//! hedge delay instead of the upstream timeout.
//!
//! - The delay is `GATEWAY_HEDGE_AFTER` when set; else it adapts: twice the p99 latency of the
//!   cluster's recent successful attempts ([`Latencies`]), clamped to [`FLOOR`]..[`CAP`]
//!   ([`CAP`] until [`MIN_SAMPLES`] answers are known).
//! - A budget ([`Budget`], after Finagle's retry budget) bounds hedges over any 10 s to
//!   `GATEWAY_HEDGE_BUDGET` percent of the requests plus [`RESERVE`], so when every node is slow
//!   the gateway adds at most that much load instead of doubling it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Shortest adaptive hedge delay.
pub const FLOOR: Duration = Duration::from_millis(50);
/// Longest adaptive hedge delay: a frozen node costs a caller at most this (plus the other
/// node's answer).
pub const CAP: Duration = Duration::from_millis(500);
/// Answers needed before the delay adapts.
pub const MIN_SAMPLES: u32 = 100;
/// Hedges the budget always allows over its window, however few the requests.
pub const RESERVE: u64 = 100;
/// The budget's window.
const WINDOW_SECS: u64 = 10;
/// The latency histogram halves its counts every this many samples, so it follows the
/// recent past (about the last two thousand answers).
const DECAY_EVERY: u32 = 1000;
/// Latency buckets: upper bounds of 100 µs × √2^i; the last bucket holds the rest.
const BUCKETS: usize = 28;

/// The hedging state the proxy shares: the delay and the budget.
#[derive(Debug)]
pub struct Hedging {
    fixed: Option<Duration>,
    latencies: Latencies,
    budget: Budget,
}

impl Hedging {
    /// `fixed` overrides the adaptive delay; `percent` is the budget (0 disables hedging).
    pub fn new(fixed: Option<Duration>, percent: u32) -> Hedging {
        Hedging {
            fixed,
            latencies: Latencies::new(),
            budget: Budget::new(percent),
        }
    }

    /// Returns how long an attempt may go unanswered before it is hedged (`None`: never).
    pub fn delay(&self) -> Option<Duration> {
        if self.budget.percent == 0 {
            return None;
        }
        Some(self.fixed.unwrap_or_else(|| self.latencies.hedge_delay()))
    }

    /// Counts a request (it earns budget for hedges).
    pub fn on_request(&self) {
        self.budget.deposit(Instant::now());
    }

    /// Takes one hedge from the budget; returns false when it is spent.
    pub fn try_hedge(&self) -> bool {
        self.budget.withdraw(Instant::now())
    }

    /// Records how long a successful attempt took.
    pub fn record(&self, latency: Duration) {
        self.latencies.record(latency);
    }
}

/// A decaying histogram of recent latencies and the hedge delay it implies.
#[derive(Debug)]
pub struct Latencies {
    window: Mutex<Histogram>,
    /// The current adaptive delay in nanoseconds (recomputed as samples come in).
    delay_nanos: AtomicU64,
}

#[derive(Debug)]
struct Histogram {
    counts: [u32; BUCKETS],
    total: u32,
    since_decay: u32,
}

impl Latencies {
    fn new() -> Latencies {
        Latencies {
            window: Mutex::new(Histogram {
                counts: [0; BUCKETS],
                total: 0,
                since_decay: 0,
            }),
            delay_nanos: AtomicU64::new(CAP.as_nanos() as u64),
        }
    }

    /// The adaptive delay: 2 × p99, clamped to `FLOOR..=CAP`.
    pub fn hedge_delay(&self) -> Duration {
        Duration::from_nanos(self.delay_nanos.load(Ordering::Relaxed))
    }

    /// Adds one sample.
    pub fn record(&self, latency: Duration) {
        let mut h = self.window.lock().expect("latency lock");
        h.counts[bucket(latency)] += 1;
        h.total += 1;
        h.since_decay += 1;
        if h.since_decay >= DECAY_EVERY {
            h.since_decay = 0;
            for c in &mut h.counts {
                *c /= 2;
            }
            h.total = h.counts.iter().sum();
        }
        let delay = if h.total < MIN_SAMPLES {
            CAP
        } else {
            (2 * quantile(&h.counts, h.total, 0.99)).clamp(FLOOR, CAP)
        };
        self.delay_nanos
            .store(delay.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// Upper bound of bucket `i`: 100 µs × √2^i.
fn upper_bound(i: usize) -> Duration {
    Duration::from_secs_f64(100e-6 * 2f64.powf(i as f64 / 2.0))
}

fn bucket(latency: Duration) -> usize {
    (0..BUCKETS - 1)
        .find(|&i| latency <= upper_bound(i))
        .unwrap_or(BUCKETS - 1)
}

/// The upper bound of the bucket holding quantile `q` (the last bucket counts as its lower
/// bound's double).
fn quantile(counts: &[u32; BUCKETS], total: u32, q: f64) -> Duration {
    let rank = (f64::from(total) * q).ceil() as u32;
    let mut seen = 0;
    for (i, &c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return upper_bound(i);
        }
    }
    upper_bound(BUCKETS - 1)
}

/// Hedges allowed over any [`WINDOW_SECS`]: `percent` of the requests plus [`RESERVE`].
#[derive(Debug)]
pub struct Budget {
    percent: u32,
    start: Instant,
    /// Per second of the window: (second since `start`, requests, hedges).
    slots: Mutex<[(u64, u64, u64); WINDOW_SECS as usize]>,
}

impl Budget {
    fn new(percent: u32) -> Budget {
        Budget {
            percent,
            start: Instant::now(),
            slots: Mutex::new([(0, 0, 0); WINDOW_SECS as usize]),
        }
    }

    fn slot<'a>(
        &self,
        slots: &'a mut [(u64, u64, u64); WINDOW_SECS as usize],
        now: Instant,
    ) -> &'a mut (u64, u64, u64) {
        let second = now.duration_since(self.start).as_secs();
        let slot = &mut slots[(second % WINDOW_SECS) as usize];
        if slot.0 != second {
            *slot = (second, 0, 0);
        }
        slot
    }

    fn deposit(&self, now: Instant) {
        let mut slots = self.slots.lock().expect("budget lock");
        self.slot(&mut slots, now).1 += 1;
    }

    fn withdraw(&self, now: Instant) -> bool {
        let mut slots = self.slots.lock().expect("budget lock");
        let second = now.duration_since(self.start).as_secs();
        let (requests, hedges) = slots
            .iter()
            .filter(|s| s.0 + WINDOW_SECS > second)
            .fold((0, 0), |(r, h), s| (r + s.1, h + s.2));
        let allowed = requests * u64::from(self.percent) / 100 + RESERVE;
        if hedges >= allowed {
            return false;
        }
        self.slot(&mut slots, now).2 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_follows_the_p99() {
        let l = Latencies::new();
        assert_eq!(l.hedge_delay(), CAP, "no samples yet");
        for i in 0..1000 {
            // 98% at 10 ms, 2% at 60 ms: the delay is twice the 60 ms bucket's bound.
            let ms = if i % 50 == 0 { 60 } else { 10 };
            l.record(Duration::from_millis(ms));
        }
        let d = l.hedge_delay();
        assert!(
            d >= Duration::from_millis(120) && d <= Duration::from_millis(170),
            "{d:?}"
        );
        // Fast answers only: the floor.
        for _ in 0..3000 {
            l.record(Duration::from_micros(200));
        }
        assert_eq!(l.hedge_delay(), FLOOR);
        // Slow answers only: the cap.
        for _ in 0..3000 {
            l.record(Duration::from_secs(2));
        }
        assert_eq!(l.hedge_delay(), CAP);
    }

    #[test]
    fn buckets_are_ordered() {
        assert_eq!(bucket(Duration::ZERO), 0);
        assert_eq!(bucket(Duration::from_secs(100)), BUCKETS - 1);
        let mut last = 0;
        for ms in 1..2000 {
            let b = bucket(Duration::from_millis(ms));
            assert!(b >= last);
            assert!(ms > 1100 || upper_bound(b) >= Duration::from_millis(ms));
            last = b;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_bounds_hedges_to_a_share_of_requests() {
        let b = Budget::new(10);
        let now = Instant::now();
        // The reserve, then nothing more without requests.
        assert_eq!(
            (0..1000).filter(|_| b.withdraw(now)).count() as u64,
            RESERVE
        );
        // 1 000 requests earn 100 more.
        for _ in 0..1000 {
            b.deposit(now);
        }
        assert_eq!((0..1000).filter(|_| b.withdraw(now)).count(), 100);
        // Once the window has passed, the reserve is back.
        let later = now + Duration::from_secs(WINDOW_SECS);
        assert_eq!(
            (0..1000).filter(|_| b.withdraw(later)).count() as u64,
            RESERVE
        );
        // A budget of 0 never hedges.
        assert_eq!(Hedging::new(None, 0).delay(), None);
        assert_eq!(
            Hedging::new(Some(Duration::from_millis(70)), 10).delay(),
            Some(Duration::from_millis(70))
        );
    }
}
