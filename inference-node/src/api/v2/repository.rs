//! The Open Inference Protocol's model repository extension (Triton's names):
//! `POST /v2/repository/index`, `POST /v2/repository/models/{name}/load` and `.../unload`.
//!
//! - `index` looks at `MODELS_DIR` again (as a poll does) and lists every model version
//!   with its state: `READY`, or `UNAVAILABLE` with the reason (a file that did not load, a
//!   model unloaded here).
//! - `load` loads the model's new and changed files (also after an `unload`); 400 naming the
//!   file when one does not load (the serving version stays), 404 when it has no file.
//! - `unload` stops routing requests to the model; requests in progress finish on it. It
//!   stays unloaded, even while the directory is polled, until a `load`. The default model
//!   cannot be unloaded (409).
//!
//! Loading runs on a blocking thread, never on the async workers. These endpoints are not
//! authenticated, as the node's other endpoints are not: a node must only be reachable by
//! the gateway and its operators.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::handlers::V2Path;
use crate::error::{NodeError, V2Error};
use crate::registry::Scope;
use crate::state::AppState;

/// One entry of the repository index.
#[derive(Debug, Serialize, PartialEq)]
pub struct IndexEntry {
    /// The model's name.
    pub name: String,
    /// The version (empty for a file that did not load and has none yet).
    pub version: String,
    /// `READY` or `UNAVAILABLE`.
    pub state: &'static str,
    /// Why it is unavailable (empty when ready).
    pub reason: String,
}

/// `POST /v2/repository/index`: looks at the directory again, then lists the models.
pub async fn index(State(state): State<AppState>) -> Result<Json<Vec<IndexEntry>>, V2Error> {
    let registry = state.clone();
    tokio::task::spawn_blocking(move || registry.registry.sync(Scope::All))
        .await
        .map_err(|e| NodeError::Inference(format!("repository scan panicked: {e}")))?
        .map_err(NodeError::Models)?;
    let snapshot = state.registry.snapshot();
    let mut entries = Vec::new();
    for name in snapshot.names() {
        for version in snapshot.versions(name) {
            entries.push(IndexEntry {
                name: name.to_string(),
                version: version.to_string(),
                state: "READY",
                reason: String::new(),
            });
        }
    }
    for failure in state.registry.load_errors() {
        entries.push(IndexEntry {
            name: failure.model,
            version: String::new(),
            state: "UNAVAILABLE",
            reason: format!("{}: {}", failure.path, failure.error),
        });
    }
    for name in state.registry.unloaded() {
        entries.push(IndexEntry {
            name,
            version: String::new(),
            state: "UNAVAILABLE",
            reason: "unloaded".to_string(),
        });
    }
    Ok(Json(entries))
}

/// `POST /v2/repository/models/{name}/load`.
pub async fn load(
    State(state): State<AppState>,
    V2Path(name): V2Path<String>,
) -> Result<Json<serde_json::Value>, V2Error> {
    let registry = state.clone();
    tokio::task::spawn_blocking(move || registry.registry.sync(Scope::Load(&name)))
        .await
        .map_err(|e| NodeError::Inference(format!("model load panicked: {e}")))?
        .map_err(NodeError::Repository)?;
    Ok(Json(serde_json::json!({})))
}

/// `POST /v2/repository/models/{name}/unload`.
pub async fn unload(
    State(state): State<AppState>,
    V2Path(name): V2Path<String>,
) -> Result<Json<serde_json::Value>, V2Error> {
    state
        .registry
        .unload(&name)
        .map_err(NodeError::Repository)?;
    Ok(Json(serde_json::json!({})))
}
