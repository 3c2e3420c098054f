//! Blocking queries: `?index=N&wait=D` holds a read until the data's index passes N or the
//! wait (default 5 minutes, at most 10, plus up to wait/16 of jitter) runs out.

use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use crate::duration;
use crate::standin::Shared;
use crate::standin::catalog::Catalog;
use crate::standin::checks::stagger;

/// Wait applied when `?wait` is absent or zero.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5 * 60);
/// Longest wait honoured; longer values are capped.
pub const MAX_WAIT: Duration = Duration::from_secs(10 * 60);

/// The blocking parameters of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocking {
    /// `?index`: block while the data's index is at most this. `None`/0 answers at once.
    pub index: Option<u64>,
    /// The effective wait, before jitter.
    pub wait: Duration,
}

/// Reads `index` and `wait` from the query string; errors are Consul's 400 messages.
pub fn parse(params: &[(String, String)]) -> Result<Blocking, String> {
    let mut blocking = Blocking {
        index: None,
        wait: DEFAULT_WAIT,
    };
    for (key, value) in params {
        match key.as_str() {
            "wait" if !value.is_empty() => {
                let wait = duration::parse(value).map_err(|_| "Invalid wait time".to_string())?;
                blocking.wait = if wait.is_zero() {
                    DEFAULT_WAIT
                } else {
                    wait.min(MAX_WAIT)
                };
            }
            "index" if !value.is_empty() => {
                let index = value
                    .parse::<u64>()
                    .map_err(|_| "Invalid index".to_string())?;
                blocking.index = Some(index).filter(|i| *i > 0);
            }
            _ => {}
        }
    }
    Ok(blocking)
}

/// Runs `query` now and, for a blocking read, again after each catalog change, until its index
/// exceeds the requested one or the wait (plus jitter) expires or the server shuts down.
/// Returns the last answer; the index is never 0.
pub async fn run<T>(
    shared: &Shared,
    blocking: &Blocking,
    query: impl Fn(&Catalog) -> (u64, T),
) -> (u64, T) {
    // Subscribe before the first read so a change in between is not missed.
    let mut changes = shared.subscribe();
    let (index, value) = query(&shared.catalog());
    let Some(min_index) = blocking.index else {
        return (index.max(1), value);
    };
    if index > min_index {
        return (index.max(1), value);
    }
    let deadline = Instant::now() + blocking.wait + stagger(blocking.wait / 16);
    loop {
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            () = sleep_until(deadline) => break,
            () = shared.shutdown_token().cancelled() => break,
        }
        let (index, value) = query(&shared.catalog());
        if index > min_index {
            return (index.max(1), value);
        }
    }
    let (index, value) = query(&shared.catalog());
    (index.max(1), value)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::standin::StandInConfig;
    use crate::standin::registration;

    fn blocking_on(index: u64, wait: Duration) -> Blocking {
        Blocking {
            index: Some(index),
            wait,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocking_read_returns_after_wait_plus_at_most_a_sixteenth() {
        let shared = Shared::new(StandInConfig::default());
        let start = Instant::now();
        let (index, ()) = run(&shared, &blocking_on(1, Duration::from_secs(160)), |c| {
            (c.index(), ())
        })
        .await;
        let waited = start.elapsed();
        assert_eq!(index, 1);
        assert!(waited >= Duration::from_secs(160), "{waited:?}");
        assert!(waited <= Duration::from_secs(170), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocking_read_returns_when_the_index_passes() {
        let shared = Arc::new(Shared::new(StandInConfig::default()));
        let writer = {
            let shared = shared.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                let spec =
                    registration::parse(br#"{"Name": "web"}"#, Duration::from_secs(60)).unwrap();
                shared.mutate(|c| c.register(spec, false, Instant::now()));
            })
        };
        let start = Instant::now();
        let (index, entries) = run(&shared, &blocking_on(1, Duration::from_secs(60)), |c| {
            c.health_service("web", false, &[])
        })
        .await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        assert!(index > 1);
        assert_eq!(entries.len(), 1);
        writer.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn unrelated_changes_do_not_end_a_blocking_read() {
        let shared = Arc::new(Shared::new(StandInConfig::default()));
        let spec = registration::parse(br#"{"Name": "web"}"#, Duration::from_secs(60)).unwrap();
        shared.mutate(|c| c.register(spec, false, Instant::now()));
        let (web_index, _) = shared.catalog().health_service("web", false, &[]);
        let writer = {
            let shared = shared.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let spec =
                    registration::parse(br#"{"Name": "other"}"#, Duration::from_secs(60)).unwrap();
                shared.mutate(|c| c.register(spec, false, Instant::now()));
            })
        };
        let start = Instant::now();
        let (index, _) = run(
            &shared,
            &blocking_on(web_index, Duration::from_secs(20)),
            |c| c.health_service("web", false, &[]),
        )
        .await;
        assert_eq!(index, web_index);
        assert!(start.elapsed() >= Duration::from_secs(20));
        writer.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_blocking_reads() {
        let shared = Shared::new(StandInConfig::default());
        shared.shutdown_token().cancel();
        let start = Instant::now();
        run(&shared, &blocking_on(1, MAX_WAIT), |c| (c.index(), ())).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_caps() {
        assert_eq!(
            parse(&[]).unwrap(),
            Blocking {
                index: None,
                wait: DEFAULT_WAIT
            }
        );
        let b = parse(&params(&[("index", "7"), ("wait", "1h")])).unwrap();
        assert_eq!(b.index, Some(7));
        assert_eq!(b.wait, MAX_WAIT);
        let b = parse(&params(&[("index", "0"), ("wait", "0s")])).unwrap();
        assert_eq!(b.index, None);
        assert_eq!(b.wait, DEFAULT_WAIT);
        let b = parse(&params(&[("wait", "250ms")])).unwrap();
        assert_eq!(b.wait, Duration::from_millis(250));
    }

    #[test]
    fn bad_values_are_rejected_with_consuls_messages() {
        assert_eq!(
            parse(&params(&[("wait", "soon")])).unwrap_err(),
            "Invalid wait time"
        );
        assert_eq!(
            parse(&params(&[("wait", "-1s")])).unwrap_err(),
            "Invalid wait time"
        );
        assert_eq!(
            parse(&params(&[("index", "-3")])).unwrap_err(),
            "Invalid index"
        );
        assert_eq!(
            parse(&params(&[("index", "abc")])).unwrap_err(),
            "Invalid index"
        );
    }
}
