//! Upkeep of a Prometheus recorder: the recorder buffers histogram samples until they are
//! folded into their buckets (by a scrape of `/metrics`, or by `run_upkeep`), so with nobody
//! scraping the buffer would grow with every request. [`spawn`] folds them every
//! [`INTERVAL`].

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often the samples are folded. The buffer holds what arrived since the last upkeep, so
/// its memory is the request rate times this interval; an upkeep is one pass over the
/// recorder's series, cheap enough to run every second (the node's choice, where the gateway
/// used 5 s: a fifth of the buffer at the same rate).
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Runs `handle.run_upkeep()` every [`INTERVAL`] on a new task until `cancel` is cancelled.
pub fn spawn(handle: PrometheusHandle, cancel: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(INTERVAL) => handle.run_upkeep(),
            }
        }
    })
}
