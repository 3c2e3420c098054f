//! Consul for this project: the wire types, a thin HTTP client that the inference nodes and
//! the gateway use, and `consul-dev`, a Consul-compatible stand-in for development and tests
//! (production runs real Consul).
//!
//! # Layout
//! - [`types`]: Consul's JSON shapes with Consul's exact casing (`ID`, `HTTP`, `CheckID`, ...).
//! - [`duration`]: Go duration strings (`"10s"`, `"1m30s"`).
//! - [`client`]: [`Client`], the reqwest-based client (register, deregister, blocking health
//!   queries, TTL updates, ...).
//! - [`error`]: [`ConsulError`], the client's one error type.
//! - [`standin`]: `consul-dev`, the stand-in agent (`serve`, and `spawn` for tests).

#![forbid(unsafe_code)]

pub mod client;
pub mod duration;
pub mod error;
pub mod standin;
pub mod types;

pub use client::{Client, QueryMeta, QueryOptions};
pub use error::ConsulError;
pub use types::{
    AgentService, AgentServiceCheck, AgentServiceRegistration, CheckStatus, HealthCheck,
    HealthCheckDefinition, Node, ServiceAddress, ServiceEntry, Weights, host_port,
};
