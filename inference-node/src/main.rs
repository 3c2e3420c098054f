//! The `inference-node` binary: parses the configuration, starts logging, loads the models,
//! binds the listener and runs [`inference_node::serve`] until SIGINT/SIGTERM.
//! `inference-node --health-check` (or `healthcheck`) probes a running node instead.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use http_serve::telemetry;
use inference_node::{AppState, Config, probe, sched_policy, shutdown};

/// mimalloc rather than glibc's malloc: every request allocates and frees buffers above
/// glibc's per-thread cache sizes (hyper's 8 KiB read buffer among them), where glibc takes
/// its slow paths. 7% fewer instructions per `/predict` (callgrind); resident memory within
/// 2 MB of glibc's with all models loaded (benchmarks/node.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = Config::parse();
    if config.is_health_check() {
        return match probe::health(SocketAddr::new(config.host, config.port)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("unhealthy: {error}");
                ExitCode::FAILURE
            }
        };
    }
    telemetry::init(config.log_json);
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    Config::check_environment(std::env::vars())?;
    if let Some(parent) = config.exit_with_parent {
        shutdown::exit_with_parent(parent)?;
    }
    // Before any other thread exists: the runtime's and the inference threads inherit it.
    match sched_policy::apply(config.sched_policy) {
        Ok(()) => tracing::info!(policy = ?config.sched_policy, "CPU scheduling policy"),
        Err(reason) => tracing::warn!("INFERENCE_NODE_SCHED_POLICY: {reason}"),
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = config.worker_threads {
        runtime.worker_threads(threads);
    }
    let runtime = runtime.build().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let started = std::time::Instant::now();
        let addr = SocketAddr::new(config.host, config.port);
        let state = AppState::new(config).context("cannot start the inference node")?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (PORT/HOST)"))?;
        tracing::info!(took_ms = started.elapsed().as_millis() as u64, "ready");
        inference_node::serve(listener, state, http_serve::shutdown::signal()).await?;
        Ok(())
    })
}
