//! The HTTP ceiling for the benchmark: a minimal axum server that parses the `/predict` JSON
//! and answers a constant, with no model, validation, metrics or batching. Whatever the node
//! reaches relative to this server is the cost of its real work.
//!
//! Run: `cargo run --release -p inference-node --example http_ceiling -- 127.0.0.1:18200`

use axum::Json;
use axum::Router;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[allow(dead_code)]
struct Features {
    gdp_per_capita: f64,
    unemployment_rate: f64,
    gdp_growth_rate_lag: f64,
    gdp_growth_rate_ma: f64,
}

async fn predict(Json(_features): Json<Features>) -> Json<Value> {
    Json(json!({ "prediction": [2.45] }))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18200".to_string());
    let app = Router::new()
        .route("/predict", post(predict))
        .route("/health", get(|| async { Json(json!({ "status": "ok" })) }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("http_ceiling listening on {addr}");
    axum::serve(listener, app).await
}
