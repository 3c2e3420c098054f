//! Logging setup of this project's servers: a `RUST_LOG` filter (default `info`), text or JSON
//! lines, each naming its target (the module that logged it, which is what `RUST_LOG`
//! directives such as `tower_http=debug` select).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `json` switches to one JSON object per line.
///
/// Panics if a global subscriber is installed already (call it once, first thing in `main`).
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Installs a subscriber that writes through the test harness, so a test's logs show only when
/// it fails: `RUST_LOG` filter, default `warn`. Does nothing when one is installed already
/// (every test of a process may call it).
pub fn init_for_test() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
