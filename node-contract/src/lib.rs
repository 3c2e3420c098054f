//! node-contract: the names the inference node and the gateway must agree on, written once.
//!
//! The node reads its settings from environment variables and lists its models in its Consul
//! registration; the gateway starts nodes by setting those variables (as a process or a
//! container) and finds their models in Consul. Both sides use the constants below, so a
//! rename breaks the build instead of a launch. The crate has no dependencies and no logic:
//! it is the contract, not a client of it.
//!
//! Layout: [`env`] holds the node's environment variable names; [`MODELS_META_KEY`] is the
//! Consul `Meta` key of the node's models.

#![forbid(unsafe_code)]

/// The Consul service `Meta` key under which a node lists the models it serves, comma-separated
/// (`"models": "LinearRegression,Lasso"`).
pub const MODELS_META_KEY: &str = "models";

/// The environment variables the inference node reads at start (the seed contract's names
/// first, then the node's own `INFERENCE_NODE_*` settings that the gateway sets).
pub mod env {
    /// The port the node listens on.
    pub const PORT: &str = "PORT";
    /// The address the node binds.
    pub const HOST: &str = "HOST";
    /// The address the node registers in Consul (where the gateway reaches it).
    pub const ADVERTISE_ADDRESS: &str = "ADVERTISE_ADDRESS";
    /// A subnet (CIDR, e.g. `10.231.0.0/16`): the node registers its own address in it, for a
    /// node whose hostname does not resolve where the gateway runs (a Swarm overlay network).
    pub const ADVERTISE_NETWORK: &str = "ADVERTISE_NETWORK";
    /// The model the node serves by default.
    pub const MODEL_NAME: &str = "GDP_MODEL_NAME";
    /// The directory of the node's ONNX models.
    pub const MODELS_DIR: &str = "MODELS_DIR";
    /// Consul's HTTP address; unset means the node does not register.
    pub const SERVICE_DISCOVERY_URL: &str = "SERVICE_DISCOVERY_URL";
    /// The Consul service name the node registers under.
    pub const SERVICE_NAME: &str = "SERVICE_NAME";
    /// The Consul ACL token the node registers with.
    pub const CONSUL_HTTP_TOKEN: &str = "CONSUL_HTTP_TOKEN";
    /// The process id of the parent whose death stops the node (set by the gateway's process
    /// runtime).
    pub const EXIT_WITH_PARENT: &str = "INFERENCE_NODE_EXIT_WITH_PARENT";
}
