//! The container-lifecycle endpoints: `POST /api/models/launch/{model_name}`,
//! `GET /api/models/instances/{model_name}` and `DELETE /api/models/instances/{container_id}`.
//!
//! Each one checks, in order: the admin token (when `GATEWAY_ADMIN_TOKEN` is set), the path
//! parameter (422 in FastAPI's shape), then asks the [`crate::runtime::Runtime`]. A launch
//! also checks that the model is launchable (404) before anything is created, and answers 429
//! past `GATEWAY_MAX_INSTANCES` and 502 when the new instance does not start.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, ToSchema};

use crate::error::{ErrorBody, GatewayError};
use crate::runtime::Instance;
use crate::state::AppState;

/// Pattern a model name must match.
const MODEL_NAME_PATTERN: &str = "^[A-Za-z][A-Za-z0-9_-]{0,63}$";

/// Pattern an instance id must match: a Docker container id or process id (or a unique prefix
/// of one; lowercase hex), or a whole Swarm task id (25 lowercase letters and digits).
const INSTANCE_ID_PATTERN: &str = "^([0-9a-f]{1,64}|[0-9a-z]{25})$";

/// Length of a Swarm task id.
const TASK_ID_LEN: usize = 25;

/// The answer to a launch, as the seed documents it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "status": "success",
    "message": "Launched new instance for model: LinearRegression",
    "container_id": "3f2c9a...",
    "container_name": "microservices-gdp-growth-model-3"
}))]
pub struct LaunchResponse {
    /// Always `success`.
    pub status: &'static str,
    /// `Launched new instance for model: <model>`.
    pub message: String,
    /// Full id of the new container (or process).
    pub container_id: String,
    /// Name of the new container (or process), `<cluster>-<service>-<n>`.
    pub container_name: String,
}

/// The instances of one model.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstancesResponse {
    /// The model asked for.
    pub model: String,
    /// This cluster's instances whose default model it is.
    pub instances: Vec<Instance>,
}

/// The answer to a delete, as the seed documents it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "success", "message": "Shutdown container: abc123"}))]
pub struct ShutdownResponse {
    /// Always `success`.
    pub status: &'static str,
    /// `Shutdown container: <id as given>`.
    pub message: String,
}

/// Proof that the request may use the lifecycle endpoints: the admin token matched, or none
/// is configured. Missing or non-Bearer credentials → 401; a wrong token → 403.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = GatewayError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(expected) = state.config.admin_token.as_deref() else {
            return Ok(Admin);
        };
        let given = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            // The scheme is case-insensitive (RFC 9110 §11.1), as FastAPI's HTTPBearer reads it.
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
            .map(|(_, token)| token.trim())
            .ok_or(GatewayError::Unauthorized)?;
        if tokens_match(given, expected) {
            Ok(Admin)
        } else {
            Err(GatewayError::Forbidden)
        }
    }
}

/// Compares in constant time: both sides are hashed first, so neither the position of the
/// first difference nor the token's length shows in the timing.
fn tokens_match(given: &str, expected: &str) -> bool {
    let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
    let expected: [u8; 32] = Sha256::digest(expected.as_bytes()).into();
    constant_time_eq::constant_time_eq_32(&given, &expected)
}

/// Adds the Bearer scheme the lifecycle endpoints use to the OpenAPI document.
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Launches a new instance serving `model_name` by default.
///
/// Docker: a container from the configured node image on the cluster's network; process
/// runtime: an inference-node process on a free local port. Answers once the node has started
/// (the process answers `/health`; the container runs and is healthy); a node that does not
/// start is removed and the answer is 502. At most `GATEWAY_MAX_INSTANCES` launched instances
/// exist at once (429 past it). The new node registers itself in Consul and receives traffic
/// once its health check passes.
#[utoipa::path(
    post,
    path = "/api/models/launch/{model_name}",
    tag = "lifecycle",
    params(("model_name" = String, Path, description = "Model the new node serves by default", pattern = "^[A-Za-z][A-Za-z0-9_-]{0,63}$")),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "Launched", body = LaunchResponse),
        (status = 401, description = "Admin token required", body = ErrorBody),
        (status = 403, description = "Wrong admin token", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 422, description = "Not a plain model name"),
        (status = 429, description = "GATEWAY_MAX_INSTANCES launched instances exist already", body = ErrorBody),
        (status = 502, description = "The new instance did not start (it has been removed)", body = ErrorBody),
        (status = 503, description = "Runtime unavailable", body = ErrorBody),
    )
)]
#[tracing::instrument(skip(state, _admin, model_name))]
pub async fn launch(
    _admin: Admin,
    State(state): State<AppState>,
    model_name: Result<Path<String>, PathRejection>,
) -> Result<Json<LaunchResponse>, GatewayError> {
    let model = path_param(model_name)?;
    validate_model_name(&model)?;
    state
        .runtime
        .check_launchable(&model, &state.discovery)
        .await?;
    let launched = state.runtime.launch(&model).await?;
    Ok(Json(LaunchResponse {
        status: "success",
        message: format!("Launched new instance for model: {model}"),
        container_id: launched.id,
        container_name: launched.name,
    }))
}

/// Lists this cluster's instances whose default model is `model_name`.
///
/// Docker: containers with the cluster's labels in any state (compose replicas included);
/// process runtime: the running processes this gateway started.
#[utoipa::path(
    get,
    path = "/api/models/instances/{id}",
    tag = "lifecycle",
    params(("id" = String, Path, description = "Model name (the seed calls it `model_name`)", pattern = "^[A-Za-z][A-Za-z0-9_-]{0,63}$")),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "Instances", body = InstancesResponse),
        (status = 401, description = "Admin token required", body = ErrorBody),
        (status = 403, description = "Wrong admin token", body = ErrorBody),
        (status = 422, description = "Not a plain model name"),
        (status = 503, description = "Runtime unavailable", body = ErrorBody),
    )
)]
#[tracing::instrument(skip(state, _admin, model_name))]
pub async fn instances(
    _admin: Admin,
    State(state): State<AppState>,
    model_name: Result<Path<String>, PathRejection>,
) -> Result<Json<InstancesResponse>, GatewayError> {
    let model = path_param(model_name)?;
    validate_model_name(&model)?;
    let instances = state.runtime.instances(&model).await?;
    Ok(Json(InstancesResponse { model, instances }))
}

/// Stops and removes one of this cluster's instances, by full id or unique id prefix.
///
/// The node gets SIGTERM (it deregisters from Consul), and SIGKILL after the stop timeout.
/// Anything that is not this cluster's node instance is 404, even if the id exists. Swarm: the
/// id is a task id; the service of a launched instance is removed, and a replica of the stack's
/// node service is a 409 (scale that service instead).
#[utoipa::path(
    delete,
    path = "/api/models/instances/{id}",
    tag = "lifecycle",
    params(("id" = String, Path, description = "Instance id, full or a unique prefix (the seed calls it `container_id`); Swarm task ids are 25 letters and digits", pattern = "^([0-9a-f]{1,64}|[0-9a-z]{25})$")),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "Stopped and removed", body = ShutdownResponse),
        (status = 400, description = "Prefix matches several instances", body = ErrorBody),
        (status = 401, description = "Admin token required", body = ErrorBody),
        (status = 403, description = "Wrong admin token", body = ErrorBody),
        (status = 404, description = "No such instance in this cluster", body = ErrorBody),
        (status = 409, description = "Swarm: a replica of the stack's node service (scale the service instead)", body = ErrorBody),
        (status = 422, description = "Not a hex id or a Swarm task id"),
        (status = 503, description = "Runtime unavailable", body = ErrorBody),
    )
)]
#[tracing::instrument(skip(state, _admin, container_id))]
pub async fn shutdown(
    _admin: Admin,
    State(state): State<AppState>,
    container_id: Result<Path<String>, PathRejection>,
) -> Result<Json<ShutdownResponse>, GatewayError> {
    let id = path_param(container_id)?;
    validate_instance_id(&id)?;
    state.runtime.stop(&id).await?;
    Ok(Json(ShutdownResponse {
        status: "success",
        message: format!("Shutdown container: {id}"),
    }))
}

/// Unwraps a path parameter; a rejection (e.g. invalid UTF-8) is a 400 in the usual shape.
pub(super) fn path_param(
    param: Result<Path<String>, PathRejection>,
) -> Result<String, GatewayError> {
    param
        .map(|Path(p)| p)
        .map_err(|rejection| GatewayError::BadRequest(rejection.body_text()))
}

/// Checks a model name from a path; a mismatch is a 422 in FastAPI's shape.
pub(super) fn validate_model_name(name: &str) -> Result<(), GatewayError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if first_ok && rest_ok && name.len() <= 64 {
        Ok(())
    } else {
        Err(GatewayError::InvalidPathParam {
            param: "model_name",
            pattern: MODEL_NAME_PATTERN,
            input: name.to_string(),
        })
    }
}

/// Checks an instance id (or prefix) from a path; a mismatch is a 422 in FastAPI's shape.
fn validate_instance_id(id: &str) -> Result<(), GatewayError> {
    let hex = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let task = id.len() == TASK_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
    if hex || task {
        Ok(())
    } else {
        Err(GatewayError::InvalidPathParam {
            param: "container_id",
            pattern: INSTANCE_ID_PATTERN,
            input: id.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_by_value() {
        assert!(tokens_match("s3cret", "s3cret"));
        assert!(!tokens_match("s3cre", "s3cret"));
        assert!(!tokens_match("", "s3cret"));
        assert!(!tokens_match("S3cret", "s3cret"));
    }

    #[test]
    fn model_names_are_plain_identifiers() {
        for ok in ["LinearRegression", "a", "Ridge_2", "x-y", &"a".repeat(64)] {
            assert!(validate_model_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1abc",
            "bad name!",
            "../../etc",
            "a/b",
            "a.onnx",
            "_x",
            "Linéaire",
            &"a".repeat(65),
        ] {
            let err = validate_model_name(bad).unwrap_err();
            assert_eq!(err.status().as_u16(), 422, "{bad}");
        }
    }

    #[test]
    fn instance_ids_are_lowercase_hex() {
        assert!(validate_instance_id("abc123").is_ok());
        assert!(validate_instance_id(&"f".repeat(64)).is_ok());
        for bad in ["", "ABC", "xyz", "../x", &"a".repeat(65)] {
            assert!(validate_instance_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn swarm_task_ids_are_whole_ids_of_25_letters_and_digits() {
        assert!(validate_instance_id("k3j9x0q2m7w1v8z4t6y5r0p2n").is_ok());
        for bad in [
            "k3j9x0q2m7w1v8z4t6y5r0p2",
            "k3j9x0q2m7w1v8z4t6y5r0p2nn",
            "K3J9X0Q2M7W1V8Z4T6Y5R0P2N",
            "k3j9x0q2m7w1v8z4t6y5r0p2-",
        ] {
            assert!(validate_instance_id(bad).is_err(), "{bad}");
        }
    }
}
