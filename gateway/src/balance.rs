//! Uniform random choice among healthy instances, with passive ejection of failing ones.
//!
//! The balancer owns its RNG (seedable for tests, like linkerd's p2c). A node that fails
//! `eject_after` times in a row is skipped for `eject_base`, doubling per ejection in a row up
//! to `eject_max`; one success clears its record. Failures while a node is ejected (attempts
//! still in flight when it was ejected) do not count. The records of nodes that leave the
//! healthy set are dropped when discovery publishes it ([`RandomBalancer::retain`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::discovery::Endpoint;

/// When failing nodes are ejected and for how long.
#[derive(Debug, Clone, Copy)]
pub struct EjectPolicy {
    /// Consecutive failures that trigger an ejection.
    pub after: u32,
    /// First ejection interval.
    pub base: Duration,
    /// Longest ejection interval.
    pub max: Duration,
}

/// Picks instances uniformly at random, skipping ejected ones.
#[derive(Debug)]
pub struct RandomBalancer {
    rng: Mutex<SmallRng>,
    failures: Mutex<HashMap<String, Failures>>,
    policy: EjectPolicy,
}

#[derive(Debug, Default)]
struct Failures {
    in_a_row: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
}

// === impl RandomBalancer ===

impl RandomBalancer {
    /// Creates a balancer; `seed` fixes the random sequence (tests), `None` seeds from the OS.
    pub fn new(policy: EjectPolicy, seed: Option<u64>) -> Self {
        let rng = match seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_os_rng(),
        };
        RandomBalancer {
            rng: Mutex::new(rng),
            failures: Mutex::new(HashMap::new()),
            policy,
        }
    }

    /// Picks one of `candidates` not in `tried`, uniformly at random among those not ejected.
    ///
    /// When every untried candidate is ejected, picks among them anyway: trying a node that
    /// may have recovered beats refusing the request.
    pub fn pick<'a>(&self, candidates: &[&'a Endpoint], tried: &[&str]) -> Option<&'a Endpoint> {
        let untried: Vec<&'a Endpoint> = candidates
            .iter()
            .copied()
            .filter(|e| !tried.contains(&e.addr.as_str()))
            .collect();
        let now = Instant::now();
        let ready: Vec<&'a Endpoint> = {
            let failures = self.failures.lock().expect("balancer lock");
            if failures.is_empty() {
                untried.clone()
            } else {
                untried
                    .iter()
                    .copied()
                    .filter(|e| {
                        failures
                            .get(&e.addr)
                            .and_then(|f| f.ejected_until)
                            .is_none_or(|until| until <= now)
                    })
                    .collect()
            }
        };
        let pool = if ready.is_empty() { &untried } else { &ready };
        if pool.is_empty() {
            return None;
        }
        let i = self
            .rng
            .lock()
            .expect("balancer lock")
            .random_range(0..pool.len());
        Some(pool[i])
    }

    /// Records that `addr` answered; clears its failure record.
    pub fn record_success(&self, addr: &str) {
        let mut failures = self.failures.lock().expect("balancer lock");
        if !failures.is_empty() {
            failures.remove(addr);
        }
    }

    /// Records that `addr` failed; returns the ejection interval if this failure ejects it.
    pub fn record_failure(&self, addr: &str) -> Option<Duration> {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("balancer lock");
        let f = failures.entry(addr.to_string()).or_default();
        if f.ejected_until.is_some_and(|until| until > now) {
            return None;
        }
        f.in_a_row += 1;
        if f.in_a_row < self.policy.after {
            return None;
        }
        let factor = 2u32.saturating_pow(f.ejections.min(16));
        let interval = self.policy.base.saturating_mul(factor).min(self.policy.max);
        f.ejections += 1;
        f.in_a_row = 0;
        f.ejected_until = Some(now + interval);
        Some(interval)
    }

    /// Forgets the records of nodes that are not in `healthy` (the newly published set).
    pub fn retain(&self, healthy: &[Endpoint]) {
        let mut failures = self.failures.lock().expect("balancer lock");
        failures.retain(|addr, _| healthy.iter().any(|e| &e.addr == addr));
    }

    /// Returns how many nodes have a failure record.
    pub fn tracked(&self) -> usize {
        self.failures.lock().expect("balancer lock").len()
    }

    /// Returns whether `addr` is ejected right now.
    pub fn is_ejected(&self, addr: &str) -> bool {
        let failures = self.failures.lock().expect("balancer lock");
        failures
            .get(addr)
            .and_then(|f| f.ejected_until)
            .is_some_and(|until| until > Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(n: usize) -> Vec<Endpoint> {
        (0..n)
            .map(|i| Endpoint {
                id: format!("n{i}"),
                addr: format!("10.0.0.{i}:5000"),
                models: None,
            })
            .collect()
    }

    fn policy() -> EjectPolicy {
        EjectPolicy {
            after: 2,
            base: Duration::from_secs(1),
            max: Duration::from_secs(4),
        }
    }

    #[test]
    fn picks_are_uniform() {
        let eps = endpoints(4);
        let refs: Vec<&Endpoint> = eps.iter().collect();
        let b = RandomBalancer::new(policy(), Some(7));
        let mut counts = HashMap::new();
        for _ in 0..40_000 {
            *counts
                .entry(b.pick(&refs, &[]).unwrap().addr.clone())
                .or_insert(0u32) += 1;
        }
        assert_eq!(counts.len(), 4);
        for (addr, n) in counts {
            assert!((9_000..=11_000).contains(&n), "{addr}: {n}");
        }
    }

    #[test]
    fn same_seed_same_sequence() {
        let eps = endpoints(5);
        let refs: Vec<&Endpoint> = eps.iter().collect();
        let seq = |seed| {
            let b = RandomBalancer::new(policy(), Some(seed));
            (0..50)
                .map(|_| b.pick(&refs, &[]).unwrap().addr.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(seq(1), seq(1));
        assert_ne!(seq(1), seq(2));
    }

    #[test]
    fn never_picks_a_tried_instance() {
        let eps = endpoints(3);
        let refs: Vec<&Endpoint> = eps.iter().collect();
        let b = RandomBalancer::new(policy(), Some(1));
        for _ in 0..1000 {
            let p = b.pick(&refs, &["10.0.0.0:5000", "10.0.0.2:5000"]).unwrap();
            assert_eq!(p.addr, "10.0.0.1:5000");
        }
        assert!(
            b.pick(&refs, &["10.0.0.0:5000", "10.0.0.1:5000", "10.0.0.2:5000"])
                .is_none()
        );
        assert!(b.pick(&[], &[]).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_grows_and_expires() {
        let eps = endpoints(2);
        let refs: Vec<&Endpoint> = eps.iter().collect();
        let b = RandomBalancer::new(policy(), Some(3));
        let bad = "10.0.0.0:5000";
        assert_eq!(b.record_failure(bad), None);
        assert_eq!(b.record_failure(bad), Some(Duration::from_secs(1)));
        assert!(b.is_ejected(bad));
        for _ in 0..200 {
            assert_eq!(b.pick(&refs, &[]).unwrap().addr, "10.0.0.1:5000");
        }
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(!b.is_ejected(bad));
        b.record_failure(bad);
        assert_eq!(b.record_failure(bad), Some(Duration::from_secs(2)));
        tokio::time::advance(Duration::from_millis(2001)).await;
        b.record_failure(bad);
        assert_eq!(b.record_failure(bad), Some(Duration::from_secs(4)));
        tokio::time::advance(Duration::from_millis(4001)).await;
        b.record_failure(bad);
        assert_eq!(
            b.record_failure(bad),
            Some(Duration::from_secs(4)),
            "capped at max"
        );
        b.record_success(bad);
        assert!(!b.is_ejected(bad));
        assert_eq!(b.record_failure(bad), None, "a success resets the count");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_while_ejected_do_not_stack() {
        let b = RandomBalancer::new(policy(), Some(3));
        let bad = "10.0.0.0:5000";
        b.record_failure(bad);
        assert_eq!(b.record_failure(bad), Some(Duration::from_secs(1)));
        // Two more attempts that were in flight fail: still the first ejection.
        assert_eq!(b.record_failure(bad), None);
        assert_eq!(b.record_failure(bad), None);
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(!b.is_ejected(bad));
    }

    #[test]
    fn records_of_departed_nodes_are_dropped() {
        let eps = endpoints(3);
        let b = RandomBalancer::new(policy(), Some(3));
        for e in &eps {
            b.record_failure(&e.addr);
        }
        assert_eq!(b.tracked(), 3);
        b.retain(&eps[1..2]);
        assert_eq!(b.tracked(), 1);
        assert_eq!(
            b.record_failure(&eps[1].addr),
            Some(Duration::from_secs(1)),
            "the kept node's record is intact"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn all_ejected_still_answers() {
        let eps = endpoints(2);
        let refs: Vec<&Endpoint> = eps.iter().collect();
        let b = RandomBalancer::new(policy(), Some(3));
        for e in &eps {
            b.record_failure(&e.addr);
            b.record_failure(&e.addr);
        }
        assert!(b.pick(&refs, &[]).is_some());
    }
}
