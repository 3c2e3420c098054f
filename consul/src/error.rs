//! `ConsulError`: everything that can go wrong talking to Consul.

/// An error from the Consul client.
#[derive(Debug, thiserror::Error)]
pub enum ConsulError {
    /// The base URL or client settings were unusable.
    #[error("invalid Consul client configuration: {0}")]
    InvalidConfig(String),
    /// Consul could not be reached (connect error, reset, timeout).
    #[error("Consul at {url} is unreachable: {source}")]
    Unreachable {
        /// The URL that was requested.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// Consul answered with a non-success status (403 for a bad token, 400 for bad input...).
    #[error("Consul answered {code}: {body}")]
    Status {
        /// The HTTP status code.
        code: u16,
        /// The response body (Consul's plain-text message), trimmed.
        body: String,
    },
    /// Consul's answer was not the JSON we expected.
    #[error("cannot decode Consul's answer from {url}: {reason}")]
    Decode {
        /// The URL that was requested.
        url: String,
        /// What was wrong.
        reason: String,
    },
}
