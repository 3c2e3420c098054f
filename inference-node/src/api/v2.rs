//! The Open Inference Protocol (KServe V2) REST API under `/v2`. Errors answer in the
//! protocol's shape (`{"error": ...}`, [`V2Error`](crate::error::V2Error)).
//!
//! - [`handlers`]: the endpoints.
//! - [`wire`]: the protocol's JSON: request and response types, tensor decoding.

pub mod handlers;
pub mod wire;
