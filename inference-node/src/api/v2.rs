//! The Open Inference Protocol (KServe V2) REST API under `/v2`. Errors answer in the
//! protocol's shape (`{"error": ...}`, [`V2Error`](crate::error::V2Error)).
//!
//! - [`handlers`]: the endpoints.
//! - [`binary`]: the binary tensor data extension's framing (the JSON part, then the bytes).
//! - [`wire`]: the protocol's JSON: request and response types, tensor decoding.
//! - [`repository`]: the model repository extension (index, load, unload).
//!
//! `handlers` uses `binary` and `wire`; `binary` uses `wire`; `wire` uses neither;
//! `repository` uses `handlers` (its path extractor).

pub mod binary;
pub mod handlers;
pub mod repository;
pub mod wire;
