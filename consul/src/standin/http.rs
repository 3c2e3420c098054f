//! The stand-in's HTTP routes, ACL handling and error mapping.
//!
//! ACLs, when a token is configured, behave like Consul's with `default_policy = "deny"` and
//! that token as the only (management) token: it is read from `?token=`, `X-Consul-Token` or
//! `Authorization: Bearer`, in Consul's order, and compared in constant time. A wrong token
//! gets 403 "ACL not found"; no token is the anonymous token, whose writes get 403
//! "Permission denied: anonymous token lacks permission ..." and whose reads come back empty;
//! `/v1/status/leader` needs no token. Unknown service and check IDs are 404 before any
//! permission check, as in Consul.
//!
//! Errors are plain text with Consul's wording and status; successful reads are JSON with
//! `X-Consul-Index`, `X-Consul-KnownLeader` and `X-Consul-LastContact` on the blocking ones.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, put};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::standin::catalog::TtlError;
use crate::standin::{Shared, blocking, checks, registration, ui};
use crate::types::CheckStatus;

type Params = Query<Vec<(String, String)>>;

/// Builds the stand-in's router.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/agent/service/register", put(register))
        .route(
            "/v1/agent/service/deregister/{*service_id}",
            put(deregister),
        )
        .route("/v1/agent/check/pass/{*check_id}", put(check_pass))
        .route("/v1/agent/check/warn/{*check_id}", put(check_warn))
        .route("/v1/agent/check/fail/{*check_id}", put(check_fail))
        .route("/v1/agent/services", get(agent_services))
        .route("/v1/agent/checks", get(agent_checks))
        .route("/v1/health/service/{*service}", get(health_service))
        .route("/v1/catalog/services", get(catalog_services))
        .route("/v1/status/leader", get(status_leader))
        .route("/ui", get(ui_page))
        .route("/ui/", get(ui_page))
        .route("/", get(|| async { Redirect::permanent("/ui/") }))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(shared)
}

/// An API failure, answered as Consul does: a status and a plain-text reason.
#[derive(Debug)]
pub enum ApiError {
    /// Malformed or invalid input.
    BadRequest(String),
    /// A wrong token ("ACL not found") or a missing permission ("Permission denied: ...").
    Forbidden(String),
    /// Unknown service or check.
    NotFound(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, reason) = match self {
            ApiError::BadRequest(reason) => (StatusCode::BAD_REQUEST, reason),
            ApiError::Forbidden(reason) => (StatusCode::FORBIDDEN, reason),
            ApiError::NotFound(reason) => (StatusCode::NOT_FOUND, reason),
        };
        tracing::debug!(%status, %reason, "request refused");
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            reason,
        )
            .into_response()
    }
}

/// Who is calling, as far as ACLs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// ACLs are off, or the caller presented the management token.
    Trusted,
    /// ACLs are on and no token was presented: Consul's anonymous token, which under the
    /// default-deny policy may write nothing and read nothing.
    Anonymous,
}

impl Caller {
    /// Allows a write on `resource` (`service`, `node`) named `name`: Consul's
    /// `Permission denied` for the anonymous token, in its wording.
    fn require_write(self, resource: &str, name: &str) -> Result<(), ApiError> {
        match self {
            Caller::Trusted => Ok(()),
            // NOTE: Consul quotes the name as `"` + name + `"`, without escaping.
            Caller::Anonymous => Err(ApiError::Forbidden(format!(
                "Permission denied: anonymous token lacks permission '{resource}:write' on \"{name}\". \
                 The anonymous token is used implicitly when a request does not specify a token."
            ))),
        }
    }

    /// Whether reads show anything: the anonymous token's reads come back empty, and, as in
    /// Consul, without `X-Consul-Results-Filtered-By-ACLs` (Consul sets it only for callers
    /// who presented a token, so as not to tell strangers that something is hidden).
    fn can_read(self) -> bool {
        self == Caller::Trusted
    }
}

impl FromRequestParts<Arc<Shared>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<Shared>,
    ) -> Result<Self, Self::Rejection> {
        let Some(required) = shared.config().token.as_deref() else {
            return Ok(Caller::Trusted);
        };
        match presented_token(&parts.headers, &parts.uri) {
            None => Ok(Caller::Anonymous),
            Some(token) if tokens_match(&token, required) => Ok(Caller::Trusted),
            Some(_) => Err(ApiError::Forbidden("ACL not found".to_string())),
        }
    }
}

/// Finds the token as Consul does: the first `?token=`, else `X-Consul-Token`, else
/// `Authorization: Bearer <token>` (scheme in any case, first word of the value). Empty
/// values count as no token (the anonymous token).
fn presented_token(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let query = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|Query(pairs)| pairs)
        .unwrap_or_default();
    if let Some((_, v)) = query.into_iter().find(|(k, _)| k == "token")
        && !v.is_empty()
    {
        return Some(v);
    }
    if let Some(v) = headers.get("X-Consul-Token").and_then(|v| v.to_str().ok())
        && !v.is_empty()
    {
        return Some(v.to_string());
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())?;
    let (scheme, value) = authorization.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = value.trim().split(' ').next().unwrap_or_default().trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// Compares in constant time: both sides are hashed first, so neither the position of the
/// first difference nor the token's length shows in the timing.
fn tokens_match(given: &str, required: &str) -> bool {
    let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
    let required: [u8; 32] = Sha256::digest(required.as_bytes()).into();
    constant_time_eq::constant_time_eq_32(&given, &required)
}

async fn register(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Query(params): Params,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let spec = registration::parse(&body, shared.config().deregister_floor)
        .map_err(ApiError::BadRequest)?;
    caller.require_write("service", &spec.service.service)?;
    let replace = bool_param(&params, "replace-existing-checks")?.unwrap_or(false);
    let service_id = spec.service.id.clone();
    let name = spec.service.service.clone();
    shared.mutate(|catalog| {
        let new = catalog.register(spec, replace, Instant::now());
        checks::start(&shared, catalog, new);
    });
    tracing::info!(%service_id, service = %name, "service registered");
    Ok(StatusCode::OK)
}

async fn deregister(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(service_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    // As in Consul, an unknown ID is 404 before permissions are looked at (they are
    // permissions on the service's name, which an unknown ID does not have).
    let name = shared
        .catalog()
        .agent_services()
        .get(&service_id)
        .map(|s| s.service.clone())
        .ok_or_else(|| unknown_service(&service_id))?;
    caller.require_write("service", &name)?;
    match shared.mutate(|catalog| catalog.deregister(&service_id)) {
        Some(_) => {
            tracing::info!(%service_id, "service deregistered");
            Ok(StatusCode::OK)
        }
        None => Err(unknown_service(&service_id)),
    }
}

fn unknown_service(service_id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "Unknown service ID {service_id:?}. Ensure that the service ID is passed, not the service name."
    ))
}

fn unknown_check(check_id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "Unknown check ID {check_id:?}. Ensure that the check ID is passed, not the check name."
    ))
}

async fn check_pass(
    state: State<Arc<Shared>>,
    caller: Caller,
    path: Path<String>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    update_ttl(state, caller, path, params, CheckStatus::Passing).await
}

async fn check_warn(
    state: State<Arc<Shared>>,
    caller: Caller,
    path: Path<String>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    update_ttl(state, caller, path, params, CheckStatus::Warning).await
}

async fn check_fail(
    state: State<Arc<Shared>>,
    caller: Caller,
    path: Path<String>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    update_ttl(state, caller, path, params, CheckStatus::Critical).await
}

async fn update_ttl(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(check_id): Path<String>,
    Query(params): Params,
    status: CheckStatus,
) -> Result<StatusCode, ApiError> {
    // As in Consul: unknown → 404 first; a service's check needs `service:write` on the
    // service, a node check `node:write` on the node.
    let service = shared
        .catalog()
        .agent_checks()
        .get(&check_id)
        .map(|c| c.service_name.clone())
        .ok_or_else(|| unknown_check(&check_id))?;
    if service.is_empty() {
        caller.require_write("node", &shared.config().node_name)?;
    } else {
        caller.require_write("service", &service)?;
    }
    let note = params
        .iter()
        .find(|(k, _)| k == "note")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let result =
        shared.mutate(|catalog| catalog.update_ttl(&check_id, status, note, Instant::now()));
    match result {
        Ok(_) => {
            checks::ttl_updated(&shared);
            Ok(StatusCode::OK)
        }
        Err(TtlError::UnknownCheck(id)) => Err(unknown_check(&id)),
        Err(TtlError::NotTtl(id)) => Err(ApiError::BadRequest(format!(
            "CheckID {id:?} does not have associated TTL"
        ))),
    }
}

async fn health_service(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(service): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let blocking = blocking::parse(&params).map_err(ApiError::BadRequest)?;
    let passing = bool_param(&params, "passing")
        .map_err(|_| ApiError::BadRequest("Invalid value for ?passing".to_string()))?
        .unwrap_or(false);
    let tags: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| v.clone())
        .collect();
    let (index, mut entries) = blocking::run(&shared, &blocking, |catalog| {
        catalog.health_service(&service, passing, &tags)
    })
    .await;
    if !caller.can_read() {
        entries.clear();
    }
    Ok(blocking_json(index, &entries))
}

async fn catalog_services(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let blocking = blocking::parse(&params).map_err(ApiError::BadRequest)?;
    let (index, mut services) =
        blocking::run(&shared, &blocking, |catalog| catalog.catalog_services()).await;
    if !caller.can_read() {
        services.clear();
    }
    Ok(blocking_json(index, &services))
}

async fn agent_services(State(shared): State<Arc<Shared>>, caller: Caller) -> Response {
    let services = if caller.can_read() {
        shared.catalog().agent_services()
    } else {
        BTreeMap::new()
    };
    json(StatusCode::OK, &services)
}

async fn agent_checks(State(shared): State<Arc<Shared>>, caller: Caller) -> Response {
    let checks = if caller.can_read() {
        shared.catalog().agent_checks()
    } else {
        BTreeMap::new()
    };
    json(StatusCode::OK, &checks)
}

async fn status_leader(State(shared): State<Arc<Shared>>) -> Response {
    json(StatusCode::OK, &shared.leader())
}

async fn ui_page(State(shared): State<Arc<Shared>>, headers: HeaderMap, uri: Uri) -> Response {
    let token = presented_token(&headers, &uri);
    if let Some(required) = shared.config().token.as_deref()
        && !token.as_deref().is_some_and(|t| tokens_match(t, required))
    {
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            ui::token_required(),
        )
            .into_response();
    }
    let html = {
        let catalog = shared.catalog();
        ui::render(&catalog, token.as_deref())
    };
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

async fn method_not_allowed(method: Method) -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} not allowed"),
    )
        .into_response()
}

/// Reads a boolean query flag as Consul does: bare or empty means true.
fn bool_param(params: &[(String, String)], name: &str) -> Result<Option<bool>, ApiError> {
    let Some((_, value)) = params.iter().find(|(k, _)| k == name) else {
        return Ok(None);
    };
    match value.as_str() {
        "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(Some(true)),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(Some(false)),
        _ => Err(ApiError::BadRequest(format!("Invalid value for ?{name}"))),
    }
}

fn blocking_json<T: Serialize>(index: u64, value: &T) -> Response {
    let mut response = json(StatusCode::OK, value);
    let headers = response.headers_mut();
    headers.insert("X-Consul-Index", HeaderValue::from(index.max(1)));
    headers.insert("X-Consul-KnownLeader", HeaderValue::from_static("true"));
    headers.insert("X-Consul-LastContact", HeaderValue::from_static("0"));
    response
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot encode response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
