//! `GET /api/models/available`: the models of every healthy node.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use futures::future::join_all;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;
use crate::upstream;

/// The models each healthy node serves.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "models_by_service": {"gdp-growth-model-1:5000": ["LinearRegression", "RandomForest"]},
    "services": ["gdp-growth-model-1:5000"]
}))]
pub struct AvailableModels {
    /// `host:port` → model names.
    pub models_by_service: BTreeMap<String, Vec<String>>,
    /// The nodes that answered, in discovery order.
    pub services: Vec<String>,
}

/// Lists the models of every healthy node.
///
/// Asks every healthy node's `/models` concurrently, each with its own timeout; a node that
/// does not answer in time is left out.
#[utoipa::path(
    get,
    path = "/api/models/available",
    tag = "models",
    responses((status = 200, description = "Models by node", body = AvailableModels))
)]
#[tracing::instrument(skip(state))]
pub async fn available(State(state): State<AppState>) -> Json<AvailableModels> {
    let endpoints = state.discovery.endpoints();
    let answers = join_all(endpoints.iter().map(|e| {
        let state = &state;
        async move {
            let result = upstream::fetch_models(
                &state.http_client,
                &e.addr,
                state.config.upstream.models_timeout,
            )
            .await;
            (e.addr.clone(), result)
        }
    }))
    .await;
    let mut out = AvailableModels {
        models_by_service: BTreeMap::new(),
        services: Vec::new(),
    };
    for (addr, result) in answers {
        match result {
            Ok(models) => {
                out.services.push(addr.clone());
                out.models_by_service.insert(addr, models);
            }
            Err(error) => {
                tracing::warn!(node = %addr, %error, "node left out of /api/models/available")
            }
        }
    }
    Json(out)
}
