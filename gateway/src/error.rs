//! The gateway's error type and its one mapping to HTTP statuses.
//!
//! Bodies keep the seed's FastAPI shape, `{"detail": "..."}`. A node's own 4xx answers never
//! become a `GatewayError`: the proxy passes them through unchanged.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Everything a gateway request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Consul lists no healthy instance of the service.
    #[error("no healthy instance of {0} is available")]
    NoHealthyInstance(String),
    /// Healthy instances exist, but none of them serves the requested model (a long name is
    /// echoed in part).
    #[error("model '{}' is not served by any healthy instance", http_serve::echo_name(.0))]
    UnknownModel(String),
    /// Every attempt failed with a connect error or a 5xx.
    #[error("upstream failed after {attempts} attempt(s): {reason}")]
    UpstreamFailed {
        /// Number of instances tried.
        attempts: u32,
        /// The last failure, for the log only.
        reason: String,
    },
    /// The last attempt ran out of time.
    #[error("upstream timed out after {attempts} attempt(s)")]
    UpstreamTimeout {
        /// Number of instances tried.
        attempts: u32,
    },
    /// No such route.
    #[error("Not Found")]
    RouteNotFound,
    /// The route exists but not with this method.
    #[error("Method Not Allowed")]
    MethodNotAllowed,
    /// The client stopped sending its body for longer than the client timeout.
    #[error("the request body stalled: no data within the client timeout")]
    BodyTimeout,
    /// The body was not complete within the body timeout of its request.
    #[error(
        "the request body was not complete within {} of its request",
        humantime::format_duration(*.0)
    )]
    BodyTooSlow(std::time::Duration),
    /// The request body is larger than the configured limit.
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(u64),
    /// A setting is unusable; raised at startup only.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The request could not be read (body or query string).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A path parameter does not match its pattern (a 422 in FastAPI's validation shape).
    #[error("{param} should match pattern '{pattern}'")]
    InvalidPathParam {
        /// Name of the parameter, as the route declares it.
        param: &'static str,
        /// The pattern it must match.
        pattern: &'static str,
        /// What the request sent.
        input: String,
    },
    /// A lifecycle endpoint needs `Authorization: Bearer <GATEWAY_ADMIN_TOKEN>`.
    #[error("Not authenticated")]
    Unauthorized,
    /// The bearer token is not the admin token.
    #[error("Invalid authentication credentials")]
    Forbidden,
    /// A launch names a model that cannot be launched (the rule is in `runtime`).
    #[error("model '{model}' is not known: {reason}")]
    ModelNotLaunchable {
        /// The model asked for.
        model: String,
        /// Why it is not known.
        reason: String,
    },
    /// No instance of this cluster has this id (or id prefix).
    #[error("no instance of this cluster has the id '{0}'")]
    InstanceNotFound(String),
    /// An id prefix matches several instances.
    #[error("'{prefix}' matches {matches} instances; give more of the id")]
    AmbiguousInstance {
        /// The prefix given.
        prefix: String,
        /// How many instances it matches.
        matches: usize,
    },
    /// The instance exists but this endpoint does not remove it (the message says what does).
    #[error("{0}")]
    InstanceNotRemovable(String),
    /// A launch would exceed `GATEWAY_MAX_INSTANCES`.
    #[error(
        "the limit of {0} launched instances is reached (GATEWAY_MAX_INSTANCES={0}); stop one (DELETE /api/models/instances/{{id}}) or raise GATEWAY_MAX_INSTANCES"
    )]
    TooManyInstances(u32),
    /// A launched instance did not start; it has been stopped and removed (the reason is
    /// safe to show).
    #[error("the new instance did not start: {0}")]
    LaunchFailed(String),
    /// The container runtime cannot be used right now (the message is safe to show).
    #[error("{0}")]
    RuntimeUnavailable(String),
    /// The container runtime refused or failed an operation (detail for the log only).
    #[error("container runtime error: {0}")]
    RuntimeFailed(String),
}

/// The JSON error body: `{"detail": "..."}`, as FastAPI writes it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub detail: String,
}

// === impl GatewayError ===

impl GatewayError {
    /// Returns the HTTP status this error maps to (the one table of the crate).
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoHealthyInstance(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::UnknownModel(_) => StatusCode::NOT_FOUND,
            GatewayError::UpstreamFailed { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::BodyTimeout | GatewayError::BodyTooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            GatewayError::RouteNotFound => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::InvalidPathParam { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            GatewayError::Unauthorized => StatusCode::UNAUTHORIZED,
            GatewayError::Forbidden => StatusCode::FORBIDDEN,
            GatewayError::ModelNotLaunchable { .. } => StatusCode::NOT_FOUND,
            GatewayError::InstanceNotFound(_) => StatusCode::NOT_FOUND,
            GatewayError::AmbiguousInstance { .. } => StatusCode::BAD_REQUEST,
            GatewayError::InstanceNotRemovable(_) => StatusCode::CONFLICT,
            GatewayError::TooManyInstances(_) => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::LaunchFailed(_) => StatusCode::BAD_GATEWAY,
            GatewayError::RuntimeUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::RuntimeFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::InvalidConfig(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Returns the client-facing message; 5xx bodies leave out internal detail.
    fn detail(&self) -> String {
        match self {
            GatewayError::UpstreamFailed { .. } => {
                "upstream instances failed to answer the request".to_string()
            }
            GatewayError::UpstreamTimeout { .. } => {
                "upstream instance did not answer in time".to_string()
            }
            GatewayError::InvalidConfig(_) => "internal error".to_string(),
            GatewayError::RuntimeFailed(_) => {
                "the container runtime failed; see the gateway log".to_string()
            }
            other => other.to_string(),
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, status = status.as_u16(), "request failed");
        }
        // FastAPI's request-validation body: `{"detail": [{"type", "loc", "msg", ...}]}`.
        if let GatewayError::InvalidPathParam {
            param,
            pattern,
            input,
        } = &self
        {
            let body = serde_json::json!({"detail": [{
                "type": "string_pattern_mismatch",
                "loc": ["path", param],
                "msg": format!("String should match pattern '{pattern}'"),
                "input": input,
                "ctx": {"pattern": pattern},
            }]});
            return (status, Json(body)).into_response();
        }
        if let GatewayError::Unauthorized = &self {
            let body = Json(ErrorBody {
                detail: self.detail(),
            });
            return (
                status,
                [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                body,
            )
                .into_response();
        }
        (
            status,
            Json(ErrorBody {
                detail: self.detail(),
            }),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_gateway_table() {
        let cases = [
            (GatewayError::NoHealthyInstance("s".into()), 503),
            (GatewayError::UnknownModel("m".into()), 404),
            (
                GatewayError::UpstreamFailed {
                    attempts: 2,
                    reason: "x".into(),
                },
                502,
            ),
            (GatewayError::UpstreamTimeout { attempts: 2 }, 504),
            (GatewayError::PayloadTooLarge(1), 413),
            (GatewayError::BodyTimeout, 408),
            (
                GatewayError::BodyTooSlow(std::time::Duration::from_secs(60)),
                408,
            ),
            (GatewayError::RouteNotFound, 404),
            (GatewayError::MethodNotAllowed, 405),
            (GatewayError::BadRequest("x".into()), 400),
            (GatewayError::InvalidConfig("x".into()), 500),
        ];
        for (err, status) in cases {
            assert_eq!(err.status().as_u16(), status, "{err}");
        }
    }

    #[test]
    fn server_errors_hide_internal_detail() {
        let err = GatewayError::UpstreamFailed {
            attempts: 2,
            reason: "connection refused at 10.0.0.7:5000".into(),
        };
        assert!(!err.detail().contains("10.0.0.7"));
    }
}
