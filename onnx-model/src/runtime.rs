//! Locating and initialising the ONNX Runtime shared library (`ort` with `load-dynamic`).
//!
//! The library is found, in order, at: an explicit path, the [`LIBRARY_ENV`] variable, the
//! repository-local `.ort/lib/libonnxruntime.so` that `scripts/setup-ort.sh` writes (searched
//! upwards from the current directory and from the executable), and
//! `/usr/local/lib/libonnxruntime.so` (where the container images put it).
//! ONNX Runtime allows one environment per process, so it is created once and shared.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

/// The environment variable naming the library (the node also takes it as a setting).
pub const LIBRARY_ENV: &str = "ORT_DYLIB_PATH";
/// The file name `scripts/setup-ort.sh` and the images install.
pub const LIBRARY_FILE: &str = "libonnxruntime.so";
/// Where the container images install the library.
pub const SYSTEM_LIBRARY: &str = "/usr/local/lib/libonnxruntime.so";

/// Why ONNX Runtime could not be initialised.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime library not found (looked at: {searched}); run scripts/setup-ort.sh or set {} to {}",
        LIBRARY_ENV,
        LIBRARY_FILE
    )]
    NotFound { searched: String },
    #[error("ONNX Runtime library {path} could not be loaded: {reason}")]
    Load { path: PathBuf, reason: String },
}

static ENVIRONMENT: OnceLock<Result<Environment, RuntimeError>> = OnceLock::new();

/// Initialises ONNX Runtime once per process and returns its environment.
///
/// `explicit` is a configured library path (see [`locate`]); later calls return the
/// environment created by the first call whatever they pass.
pub fn environment(explicit: Option<&Path>) -> Result<&'static Environment, RuntimeError> {
    ENVIRONMENT
        .get_or_init(|| init(explicit))
        .as_ref()
        .map_err(Clone::clone)
}

fn init(explicit: Option<&Path>) -> Result<Environment, RuntimeError> {
    let path = locate(explicit)?;
    let load_error = |reason: String| RuntimeError::Load {
        path: path.clone(),
        reason,
    };
    let builder = ort::init_from(&path).map_err(|e| load_error(e.to_string()))?;
    builder
        .with_name("gdp-serving")
        .build()
        .map_err(|e| load_error(e.to_string()))
}

/// Finds the library: the explicit path (or else [`LIBRARY_ENV`]) must exist when given;
/// otherwise the first existing default location wins.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    let from_env = std::env::var_os(LIBRARY_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    if let Some(path) = explicit.map(Path::to_path_buf).or(from_env) {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(RuntimeError::NotFound {
                searched: path.display().to_string(),
            })
        };
    }
    let candidates = default_candidates();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| RuntimeError::NotFound {
            searched: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn default_candidates() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        roots.extend(exe_dir.ancestors().map(Path::to_path_buf));
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    for root in roots {
        let candidate = root.join(".ort/lib").join(LIBRARY_FILE);
        if !candidates.contains(&candidate) {
            candidates.push(candidate);
        }
    }
    candidates.push(PathBuf::from(SYSTEM_LIBRARY));
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_missing_path_is_reported_by_name() {
        let err = locate(Some(Path::new("/nonexistent/libonnxruntime.so"))).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/libonnxruntime.so"), "{msg}");
        assert!(msg.contains("setup-ort.sh"), "{msg}");
    }

    #[test]
    fn defaults_end_with_the_system_location() {
        let candidates = default_candidates();
        assert_eq!(candidates.last().unwrap(), Path::new(SYSTEM_LIBRARY));
        assert!(
            candidates
                .iter()
                .any(|p| p.ends_with(".ort/lib/libonnxruntime.so"))
        );
    }
}
