//! `GET /api/cluster` and `GET /api/cluster/models`: what the dashboard (`/ui`) shows, as
//! documented JSON. Read-only and unauthenticated, like `/health`.
//!
//! The summary is the gateway's own view, and cheap (no node is asked): the healthy set, the
//! discovery state, and the request, error and latency series of [`crate::stats`]. The models
//! document asks every healthy node's `GET /models` (as `/api/models/available` does) and
//! passes on what each model's description holds: its features (name and type) and, for a
//! classifier, its classes.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use bytes::Bytes;
use futures::future::join_all;
use hyper::Method;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::http::health::discovery_state;
use crate::state::AppState;
use crate::stats::Series;
use crate::upstream;

/// The cluster at a glance.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterSummary {
    /// `ok`, `stale` or `recovering`, as `GET /health` reports it.
    pub discovery: &'static str,
    /// How old the healthy set may be, in seconds (0 while Consul answers).
    pub discovery_staleness_secs: f64,
    /// Whether the lifecycle endpoints need the admin token (`GATEWAY_ADMIN_TOKEN` is set).
    pub admin_token_required: bool,
    /// Prediction requests to the gateway, as clients saw them (an error is a 5xx answer).
    pub cluster: Series,
    /// The healthy nodes, in discovery order.
    pub nodes: Vec<NodeSummary>,
}

/// One healthy node.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeSummary {
    /// `host:port`.
    pub addr: String,
    /// Its Consul service ID.
    pub service_id: String,
    /// Name of its runtime instance when this gateway launched it as a process, else `null`.
    pub instance: Option<String>,
    /// The models it serves, when known.
    pub models: Option<Vec<String>>,
    /// `passing` while Consul answers (the healthy set holds the nodes whose checks pass);
    /// `last known` when discovery is stale or recovering (the node may be one kept from the
    /// last set Consul gave).
    pub consul: &'static str,
    /// Whether the gateway has ejected it for failing in a row (it gets no traffic for now).
    pub ejected: bool,
    /// The gateway's attempts on this node (an error is a failed attempt).
    pub stats: Series,
}

/// The models the healthy nodes serve.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterModels {
    /// By name.
    pub models: Vec<ModelSummary>,
}

/// One model, as its nodes describe it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({
    "name": "LinearRegression",
    "nodes": ["127.0.0.1:5001", "127.0.0.1:5002"],
    "estimator": "LinearRegression",
    "features": [{"name": "gdp_per_capita", "type": "number", "nullable": false}],
    "classes": null
}))]
pub struct ModelSummary {
    /// Model name (the `model` query parameter of a prediction).
    pub name: String,
    /// The healthy nodes that serve it.
    pub nodes: Vec<String>,
    /// What it is, when its node says (e.g. the estimator's class).
    pub estimator: Option<String>,
    /// The fields of one prediction row, in order; empty when no node described the model.
    pub features: Vec<Feature>,
    /// A classifier's classes, when its node lists them.
    #[schema(value_type = Option<Vec<Object>>)]
    pub classes: Option<Vec<Value>>,
}

/// One field of a prediction row.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Feature {
    /// Field name.
    pub name: String,
    /// Its type as the node describes it; `number` when the node lists names only.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether the model accepts `null` (a missing value) there; `false` when the node does
    /// not say.
    pub nullable: bool,
}

/// The cluster at a glance: the healthy nodes with their request, error and latency series.
///
/// Series are in 2-second buckets over the last 5 minutes (`history`), and over the last 10
/// seconds (`recent`). Nothing is asked of the nodes.
#[utoipa::path(
    get,
    path = "/api/cluster",
    tag = "ops",
    responses((status = 200, description = "The cluster summary", body = ClusterSummary))
)]
pub async fn summary(State(state): State<AppState>) -> Json<ClusterSummary> {
    let endpoints = state.discovery.endpoints();
    state.stats.retain(&endpoints);
    let discovery = discovery_state(&state);
    let nodes = endpoints
        .iter()
        .map(|e| NodeSummary {
            addr: e.addr.clone(),
            service_id: e.id.clone(),
            instance: state.runtime.launched_name(&e.addr),
            models: e.models.as_ref().map(|m| m.to_vec()),
            consul: if discovery == "ok" {
                "passing"
            } else {
                "last known"
            },
            ejected: state.balancer.is_ejected(&e.addr),
            stats: state.stats.node(&e.addr),
        })
        .collect();
    Json(ClusterSummary {
        discovery,
        discovery_staleness_secs: state.discovery.status().staleness_secs(),
        admin_token_required: state.config.admin_token.is_some(),
        cluster: state.stats.cluster(),
        nodes,
    })
}

/// The models the healthy nodes serve, with the nodes serving each, its features and classes.
///
/// Asks every healthy node's `/models` concurrently, each with its own timeout. A node that
/// does not answer still counts as serving the models Consul lists for it; a model no node
/// described has no features.
#[utoipa::path(
    get,
    path = "/api/cluster/models",
    tag = "models",
    responses((status = 200, description = "Models with their nodes and features", body = ClusterModels))
)]
#[tracing::instrument(skip(state))]
pub async fn models(State(state): State<AppState>) -> Json<ClusterModels> {
    let endpoints = state.discovery.endpoints();
    let timeout = state.config.upstream.models_timeout;
    let answers = join_all(endpoints.iter().map(|e| {
        let client = &state.http_client;
        async move {
            let answer = upstream::exchange(
                client,
                Method::GET,
                &e.addr,
                "/models",
                None,
                Bytes::new(),
                upstream::Limits::small(timeout),
            )
            .await;
            let described = match answer {
                Ok(resp) if resp.status.is_success() => serde_json::from_slice::<Value>(&resp.body)
                    .ok()
                    .and_then(|doc| describe(&doc)),
                Ok(resp) => {
                    tracing::warn!(node = %e.addr, status = %resp.status, "/models failed");
                    None
                }
                Err(error) => {
                    tracing::warn!(node = %e.addr, %error, "/models failed");
                    None
                }
            };
            (e, described)
        }
    }))
    .await;
    let mut by_name: BTreeMap<String, ModelSummary> = BTreeMap::new();
    for (endpoint, described) in answers {
        let listed = endpoint
            .models
            .iter()
            .flat_map(|m| m.iter())
            .map(|name| ModelSummary {
                name: name.clone(),
                nodes: Vec::new(),
                estimator: None,
                features: Vec::new(),
                classes: None,
            });
        for model in described.into_iter().flatten().chain(listed) {
            let entry = by_name
                .entry(model.name.clone())
                .or_insert_with(|| ModelSummary {
                    nodes: Vec::new(),
                    ..model.clone()
                });
            // A model first seen without a description takes the first one that comes.
            if entry.features.is_empty() && !model.features.is_empty() {
                let nodes = std::mem::take(&mut entry.nodes);
                *entry = ModelSummary { nodes, ..model };
            }
            if !entry.nodes.contains(&endpoint.addr) {
                entry.nodes.push(endpoint.addr.clone());
            }
        }
    }
    Json(ClusterModels {
        models: by_name.into_values().collect(),
    })
}

/// Reads a node's `/models` document: a list, or `{"models": [...]}`, whose items are names or
/// objects with a `name`. An object's features come from `features` (names, or objects with a
/// `name` and a `type`) or else `feature_names` (names; today's nodes take numbers), its classes
/// from `classes`, what it is from `estimator`. `None` when the document has no list of models.
fn describe(doc: &Value) -> Option<Vec<ModelSummary>> {
    let list = match doc {
        Value::Array(items) => items,
        Value::Object(map) => map.get("models")?.as_array()?,
        _ => return None,
    };
    let models = list
        .iter()
        .filter_map(|item| {
            let (name, obj) = match item {
                Value::String(name) => (name.clone(), None),
                Value::Object(obj) => (obj.get("name")?.as_str()?.to_string(), Some(obj)),
                _ => return None,
            };
            let field = |key: &str| obj.and_then(|o| o.get(key));
            let features = field("features")
                .or_else(|| field("feature_names"))
                .and_then(Value::as_array)
                .map(|items| items.iter().filter_map(feature).collect())
                .unwrap_or_default();
            let classes = field("classes").and_then(Value::as_array).map(|items| {
                items
                    .iter()
                    .filter(|c| c.is_string() || c.is_number() || c.is_boolean())
                    .cloned()
                    .collect()
            });
            Some(ModelSummary {
                name,
                nodes: Vec::new(),
                estimator: field("estimator").and_then(Value::as_str).map(String::from),
                features,
                classes,
            })
        })
        .collect();
    Some(models)
}

/// One feature: a name (a number), or `{"name": ..., "type": ..., "nullable": ...}`.
fn feature(item: &Value) -> Option<Feature> {
    let (name, kind, nullable) = match item {
        Value::String(name) => (name.as_str(), "number", false),
        Value::Object(obj) => (
            obj.get("name")?.as_str()?,
            obj.get("type").and_then(Value::as_str).unwrap_or("number"),
            obj.get("nullable")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        ),
        _ => return None,
    };
    Some(Feature {
        name: name.to_string(),
        kind: kind.to_string(),
        nullable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn feature(name: &str, kind: &str) -> Feature {
        Feature {
            name: name.into(),
            kind: kind.into(),
            nullable: false,
        }
    }

    #[test]
    fn todays_node_documents_give_numeric_features() {
        let doc = json!({
            "default_model": "LinearRegression",
            "models": [{
                "name": "LinearRegression",
                "feature_names": ["a", "b"],
                "n_targets": 1,
                "estimator": "LinearRegression"
            }]
        });
        let models = describe(&doc).unwrap();
        assert_eq!(models.len(), 1);
        assert_eq!(models[0].name, "LinearRegression");
        assert_eq!(models[0].estimator.as_deref(), Some("LinearRegression"));
        assert_eq!(
            models[0].features,
            [feature("a", "number"), feature("b", "number")]
        );
        assert_eq!(models[0].classes, None);
    }

    #[test]
    fn typed_features_and_classes_pass_through() {
        let doc = json!([
            {
                "name": "Iris",
                "features": [{"name": "petal", "type": "number"}, {"name": "colour", "type": "string"}, 7],
                "feature_names": ["ignored"],
                "classes": ["setosa", 2, {"not": "a class"}]
            },
            "Bare",
            42
        ]);
        let models = describe(&doc).unwrap();
        assert_eq!(models.len(), 2);
        assert_eq!(
            models[0].features,
            [feature("petal", "number"), feature("colour", "string")]
        );
        assert_eq!(models[0].classes, Some(vec![json!("setosa"), json!(2)]));
        assert_eq!(models[1].name, "Bare");
        assert!(models[1].features.is_empty());
        assert_eq!(describe(&json!({"nope": 1})), None);
    }
}
