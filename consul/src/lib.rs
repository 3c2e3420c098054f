//! Consul for this project: the wire types, a thin HTTP client that the inference nodes and
//! the gateway use, and, with the `standin` feature, `consul-dev`, a Consul-compatible
//! stand-in for development and tests (production runs real Consul, and the servers' builds
//! leave the stand-in out).
//!
//! # Layout
//! - [`types`]: Consul's JSON shapes with Consul's exact casing (`ID`, `HTTP`, `CheckID`, ...).
//! - [`duration`]: Go duration strings (`"10s"`, `"1m30s"`).
//! - [`client`]: [`Client`], the reqwest-based client (register, deregister, blocking health
//!   queries, TTL updates, ...).
//! - [`error`]: [`ConsulError`], the client's one error type.
//! - `standin` (feature `standin`): `consul-dev`, the stand-in agent (`serve`, and `spawn`
//!   for tests). It uses the client, the types and the durations; no other module uses it.

#![forbid(unsafe_code)]

pub mod client;
pub mod duration;
pub mod error;
#[cfg(feature = "standin")]
pub mod standin;
pub mod types;

pub use client::{Client, QueryMeta, QueryOptions};
pub use error::ConsulError;
pub use types::{
    AgentService, AgentServiceCheck, AgentServiceRegistration, CheckStatus, HealthCheck,
    HealthCheckDefinition, Node, ServiceAddress, ServiceEntry, Weights, host_port,
};
