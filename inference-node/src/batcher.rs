//! Dynamic batching: one inference thread per model merges queued requests into one ONNX
//! Runtime call.
//!
//! Requests are queued on a channel. The model's thread takes the first queued job, then keeps
//! taking jobs while they fit in `max_rows` and either are already queued or arrive within
//! `max_wait`. It runs the model once on the concatenated rows and hands every job its slice
//! of the output. Under load the queue fills while the previous call runs, so batches grow
//! with concurrency; with one client they stay at one row and add no delay (`max_wait` 0).
//! Inference therefore never runs on the async workers. A model with string features gets
//! each job's strings beside its numbers (the model's second input).
//!
//! The caller allocates a job's output and gets its rows back with the predictions, so the
//! inference thread neither allocates nor frees per request: memory allocated on one thread
//! and freed on another is what makes the allocator slow (with glibc's, lock traffic on the
//! owner's arena).
//!
//! Failures are [`PredictError`]s; the node's error table (`crate::error`) decides their HTTP
//! status.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

use ndarray::ArrayView2;
use onnx_model::Model;
use tokio::sync::oneshot;

use crate::metrics;

/// How jobs are merged.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    /// Most rows per ONNX Runtime call (a larger single job still runs, alone).
    pub max_rows: usize,
    /// How long to wait for more jobs after the first one.
    pub max_wait: Duration,
    /// How long an idle thread polls for the next job, yielding its CPU, before it sleeps.
    pub idle_spin: Duration,
}

/// Handle to a model's inference thread.
#[derive(Clone)]
pub struct Batcher {
    queue: Sender<Job>,
    n_features: usize,
    n_strings: usize,
    n_targets: usize,
    series: Arc<metrics::InferenceSeries>,
}

struct Job {
    queued: Instant,
    rows: Vec<f64>,
    /// The rows' string features (row-major; empty for a model without string features).
    strings: Vec<String>,
    n_rows: usize,
    /// Empty, with room for `n_rows * n_targets` values; the inference thread fills it.
    output: Vec<f64>,
    reply: oneshot::Sender<Result<Prediction, PredictError>>,
}

/// Why a request got no predictions.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PredictError {
    /// The model's inference thread is gone.
    #[error("the inference thread has stopped")]
    Stopped,
    /// The inference thread dropped the request without answering.
    #[error("the inference thread dropped a request")]
    Dropped,
    /// ONNX Runtime failed on the batch that held the request (every job of it gets the
    /// message).
    #[error("{0}")]
    Failed(String),
    /// The model answered a value that is not finite for this row of the request (inputs far
    /// outside the model's range).
    #[error("the prediction for row {row} is not a finite number")]
    NonFinite { row: usize },
}

/// A job's answer: its rows, handed back, and their predictions.
#[derive(Debug)]
pub struct Prediction {
    /// The rows that were predicted (row-major, as given to [`Batcher::predict`]).
    pub rows: Vec<f64>,
    /// The rows' string features, as given to [`Batcher::predict_mixed`].
    pub strings: Vec<String>,
    /// `n_rows * n_targets` predictions, row-major, all finite.
    pub values: Vec<f64>,
}

impl Batcher {
    /// Starts the inference thread for `model` (version `version`, for its metrics); it
    /// stops once the last handle is dropped and every queued job is answered.
    pub fn spawn(model: Arc<Model>, version: u64, policy: BatchPolicy) -> std::io::Result<Batcher> {
        let (queue, jobs) = mpsc::channel();
        let n_features = model.info().n_number_features();
        let n_strings = model.info().n_string_features();
        let n_targets = model.info().n_targets;
        let series = Arc::new(metrics::InferenceSeries::new(model.name(), version));
        let thread_series = series.clone();
        std::thread::Builder::new()
            .name(format!("infer-{}-{version}", model.name()))
            .stack_size(256 * 1024)
            .spawn(move || run(&model, &thread_series, policy, &jobs))?;
        Ok(Batcher {
            queue,
            n_features,
            n_strings,
            n_targets,
            series,
        })
    }

    /// Predicts `rows` of a model without string features (row-major,
    /// `n_rows * n_features` values); answers them with their `n_rows * n_targets`
    /// predictions, all finite (JSON cannot carry anything else).
    pub async fn predict(&self, rows: Vec<f64>) -> Result<Prediction, PredictError> {
        self.predict_mixed(rows, Vec::new()).await
    }

    /// Predicts rows given as their numeric features (`rows`, row-major,
    /// `n_rows * n_number_features`) and string features (`strings`, row-major,
    /// `n_rows * n_string_features`; empty for a model without them), as
    /// [`Batcher::predict`] does.
    pub async fn predict_mixed(
        &self,
        rows: Vec<f64>,
        strings: Vec<String>,
    ) -> Result<Prediction, PredictError> {
        let n_rows = match (self.n_features, self.n_strings) {
            (0, 0) => 0,
            (0, s) => strings.len() / s,
            (k, _) => rows.len() / k,
        };
        if rows.len() != n_rows * self.n_features || strings.len() != n_rows * self.n_strings {
            return Err(PredictError::Failed(format!(
                "{} numbers and {} strings do not make rows of {} numbers and {} strings",
                rows.len(),
                strings.len(),
                self.n_features,
                self.n_strings
            )));
        }
        let (reply, answer) = oneshot::channel();
        let queued = Instant::now();
        let job = Job {
            queued,
            rows,
            strings,
            n_rows,
            output: Vec::with_capacity(n_rows * self.n_targets),
            reply,
        };
        let result = self.run_job(job, answer).await;
        self.series.answered(result.is_ok(), queued.elapsed());
        result
    }

    async fn run_job(
        &self,
        job: Job,
        answer: oneshot::Receiver<Result<Prediction, PredictError>>,
    ) -> Result<Prediction, PredictError> {
        self.queue.send(job).map_err(|_| PredictError::Stopped)?;
        let prediction = answer.await.map_err(|_| PredictError::Dropped)??;
        match prediction.values.iter().position(|v| !v.is_finite()) {
            Some(i) => Err(PredictError::NonFinite {
                row: i / self.n_targets,
            }),
            None => Ok(prediction),
        }
    }

    /// Returns the number of outputs per row.
    pub fn n_targets(&self) -> usize {
        self.n_targets
    }
}

fn run(
    model: &Model,
    series: &metrics::InferenceSeries,
    policy: BatchPolicy,
    jobs: &Receiver<Job>,
) {
    let mut carried: Option<Job> = None;
    // Reused across batches, so that merging allocates nothing once they have grown.
    let mut batch: Vec<Job> = Vec::new();
    let mut merged = Merged::default();
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match next_job(jobs, policy.idle_spin) {
                Some(job) => job,
                None => return,
            },
        };
        let mut rows = first.n_rows;
        batch.push(first);
        let deadline = Instant::now() + policy.max_wait;
        while rows < policy.max_rows {
            let next = match jobs.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    match jobs.recv_timeout(deadline - now) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            if rows + next.n_rows > policy.max_rows {
                carried = Some(next);
                break;
            }
            rows += next.n_rows;
            batch.push(next);
        }
        execute(model, series, &mut batch, &mut merged, rows);
    }
}

/// Waits for the next job: first by yielding for up to `idle_spin` (under load the next job
/// arrives within microseconds, and a parked thread costs a futex wake-up per request), then
/// by blocking. Returns `None` once every handle is gone.
fn next_job(jobs: &Receiver<Job>, idle_spin: Duration) -> Option<Job> {
    let spin_until = Instant::now() + idle_spin;
    loop {
        match jobs.try_recv() {
            Ok(job) => return Some(job),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if Instant::now() < spin_until => std::thread::yield_now(),
            Err(TryRecvError::Empty) => return jobs.recv().ok(),
        }
    }
}

/// The buffers of a merged batch: its rows, concatenated, and their predictions.
#[derive(Default)]
struct Merged {
    rows: Vec<f64>,
    strings: Vec<String>,
    output: Vec<f64>,
}

/// Runs one ONNX Runtime call for `batch` (`total_rows` rows) and answers, and so empties,
/// every job.
fn execute(
    model: &Model,
    series: &metrics::InferenceSeries,
    batch: &mut Vec<Job>,
    merged: &mut Merged,
    total_rows: usize,
) {
    let n_targets = model.info().n_targets;
    let started = Instant::now();
    for job in batch.iter() {
        series.queued(started.saturating_duration_since(job.queued));
    }
    let result = if let [job] = batch.as_mut_slice() {
        predict_into(model, &job.rows, &job.strings, job.n_rows, &mut job.output)
    } else {
        merged.rows.clear();
        merged.strings.clear();
        merged.output.clear();
        for job in batch.iter() {
            merged.rows.extend_from_slice(&job.rows);
        }
        // Moved, not copied, and moved back below: each job hands its strings to its caller.
        for job in batch.iter_mut() {
            merged.strings.append(&mut job.strings);
        }
        let result = predict_into(
            model,
            &merged.rows,
            &merged.strings,
            total_rows,
            &mut merged.output,
        );
        let mut strings = merged.strings.drain(..);
        for job in batch.iter_mut() {
            job.strings.extend(
                strings
                    .by_ref()
                    .take(job.n_rows * model.info().n_string_features()),
            );
        }
        drop(strings);
        if result.is_ok() {
            let mut offset = 0;
            for job in batch.iter_mut() {
                let len = job.n_rows * n_targets;
                job.output
                    .extend_from_slice(&merged.output[offset..offset + len]);
                offset += len;
            }
        }
        result
    };
    series.record(total_rows, started.elapsed());
    for job in batch.drain(..) {
        let answer = match &result {
            Ok(()) => Ok(Prediction {
                rows: job.rows,
                strings: job.strings,
                values: job.output,
            }),
            Err(message) => Err(PredictError::Failed(message.clone())),
        };
        let _ = job.reply.send(answer);
    }
}

fn predict_into(
    model: &Model,
    rows: &[f64],
    strings: &[String],
    n_rows: usize,
    out: &mut Vec<f64>,
) -> Result<(), String> {
    let view = ArrayView2::from_shape((n_rows, model.info().n_number_features()), rows)
        .map_err(|e| e.to_string())?;
    model
        .predict_mixed_into(view, strings, out)
        .map_err(|e| e.to_string())
}
