//! Turns a `PUT /v1/agent/service/register` body into a validated service and its checks,
//! applying Consul's defaults and rejecting what Consul rejects, with Consul's messages.
//!
//! Consul decodes request bodies with Go's case-insensitive field matching and also accepts
//! snake_case spellings (`enable_tag_override`, `deregister_critical_service_after`); py-consul,
//! for one, sends `name`, `id`, `check`, `http`, `interval`. So keys are first mapped onto
//! Consul's canonical names by comparing them lowercased and without underscores.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::duration;
use crate::types::{
    AgentService, AgentServiceCheck, AgentServiceRegistration, CheckStatus, ServiceAddress, Weights,
};

/// Consul's default HTTP/TCP check timeout.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// A validated service registration.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    /// The service as it will be stored (indexes still zero).
    pub service: AgentService,
    /// Its checks, with default IDs and names filled in.
    pub checks: Vec<CheckSpec>,
}

/// A validated check definition.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSpec {
    /// Check ID (default `service:<id>`, or `service:<id>:<n>` with several checks).
    pub check_id: String,
    /// Check name (default `Service '<name>' check`).
    pub name: String,
    /// Notes.
    pub notes: String,
    /// What the check probes.
    pub kind: CheckKind,
    /// Probe interval (HTTP and TCP checks).
    pub interval: Option<Duration>,
    /// Probe timeout.
    pub timeout: Duration,
    /// Time to live (TTL checks).
    pub ttl: Option<Duration>,
    /// Reap delay, already raised to the configured floor.
    pub deregister_after: Option<Duration>,
    /// `Status` given at registration.
    pub initial_status: Option<CheckStatus>,
    /// `SuccessBeforePassing`.
    pub success_before_passing: u32,
    /// `FailuresBeforeCritical`.
    pub failures_before_critical: u32,
}

/// The kinds of check the stand-in runs.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// An HTTP request every interval.
    Http {
        /// URL to request.
        url: String,
        /// Method (`GET` when empty).
        method: String,
        /// Extra headers.
        header: BTreeMap<String, Vec<String>>,
        /// Request body.
        body: String,
        /// Recorded but irrelevant: the stand-in's prober speaks plain HTTP only.
        tls_skip_verify: bool,
    },
    /// A TCP connect every interval.
    Tcp {
        /// `host:port`.
        address: String,
    },
    /// Updated by the application through `/v1/agent/check/pass|warn|fail`.
    Ttl,
}

impl CheckKind {
    /// Returns Consul's `Type` string.
    pub fn type_name(&self) -> &'static str {
        match self {
            CheckKind::Http { .. } => "http",
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Ttl => "ttl",
        }
    }
}

const SERVICE_FIELDS: &[&str] = &[
    "ID",
    "Name",
    "Tags",
    "Address",
    "Port",
    "Meta",
    "Weights",
    "EnableTagOverride",
    "Check",
    "Checks",
    "Kind",
    "TaggedAddresses",
];
const CHECK_FIELDS: &[&str] = &[
    "CheckID",
    "Name",
    "HTTP",
    "Method",
    "Header",
    "Body",
    "TCP",
    "TTL",
    "Interval",
    "Timeout",
    "Status",
    "Notes",
    "TLSSkipVerify",
    "DeregisterCriticalServiceAfter",
    "SuccessBeforePassing",
    "FailuresBeforeCritical",
    "ScriptArgs",
    "Args",
    "GRPC",
    "UDP",
    "H2PING",
    "OSService",
    "DockerContainerID",
    "AliasNode",
    "AliasService",
];
const WEIGHT_FIELDS: &[&str] = &["Passing", "Warning"];
const DURATION_FIELDS: &[&str] = &[
    "Interval",
    "Timeout",
    "TTL",
    "DeregisterCriticalServiceAfter",
];
/// Check kinds real Consul supports but the stand-in does not run.
const UNSUPPORTED_CHECK_FIELDS: &[&str] = &[
    "ScriptArgs",
    "Args",
    "GRPC",
    "UDP",
    "H2PING",
    "OSService",
    "DockerContainerID",
    "AliasNode",
    "AliasService",
];

/// Parses and validates a registration body. `deregister_floor` is the minimum
/// `DeregisterCriticalServiceAfter` (1 minute in Consul). Errors are Consul's 400 messages.
pub fn parse(body: &[u8], deregister_floor: Duration) -> Result<ServiceSpec, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("Request decode failed: {e}"))?;
    let Value::Object(object) = value else {
        return Err("Request decode failed: body must be a JSON object".to_string());
    };
    let mut object = canonical_keys(object, SERVICE_FIELDS);
    if let Some(Value::Object(weights)) = object.remove("Weights") {
        object.insert(
            "Weights".into(),
            Value::Object(canonical_keys(weights, WEIGHT_FIELDS)),
        );
    }
    let mut raw_checks = Vec::new();
    if let Some(check) = object.remove("Check") {
        match check {
            Value::Null => {}
            Value::Object(c) => raw_checks.push(canonical_check(c)?),
            _ => return Err("Request decode failed: Check must be an object".to_string()),
        }
    }
    match object.remove("Checks") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for c in list {
                match c {
                    Value::Object(c) => raw_checks.push(canonical_check(c)?),
                    _ => {
                        return Err(
                            "Request decode failed: Checks must be a list of objects".to_string()
                        );
                    }
                }
            }
        }
        Some(_) => return Err("Request decode failed: Checks must be a list".to_string()),
    }
    // Consul ignores an all-empty `Check` object.
    raw_checks.retain(|c| !c.is_empty());

    let kind = object.remove("Kind");
    if let Some(Value::String(kind)) = &kind
        && !kind.is_empty()
    {
        return Err(format!(
            "Service kind {kind:?} is not supported by consul-dev (only typical services)"
        ));
    }
    object.remove("TaggedAddresses");

    let reg: AgentServiceRegistration = serde_json::from_value(Value::Object(object))
        .map_err(|e| format!("Request decode failed: {e}"))?;
    let mut checks_in = Vec::with_capacity(raw_checks.len());
    for raw in raw_checks {
        if let Some(field) = UNSUPPORTED_CHECK_FIELDS
            .iter()
            .find(|f| raw.get(**f).is_some_and(|v| !is_empty_json(v)))
        {
            return Err(format!(
                "Invalid check: {field} checks are not supported by consul-dev (HTTP, TCP and TTL are)"
            ));
        }
        if let Some(Value::String(status)) = raw.get("Status")
            && !status.is_empty()
            && CheckStatus::parse(status).is_none()
        {
            return Err("Status for checks must 'passing', 'warning', 'critical'".to_string());
        }
        let check: AgentServiceCheck = serde_json::from_value(Value::Object(raw))
            .map_err(|e| format!("Request decode failed: {e}"))?;
        checks_in.push(check);
    }

    if reg.name.is_empty() {
        return Err("Missing service name".to_string());
    }
    let address = reg.address.clone().unwrap_or_default();
    if address == "0.0.0.0" || address == "::" || address == "[::]" {
        return Err("Invalid service address".to_string());
    }
    let weights = reg.weights.unwrap_or_default();
    if weights.passing < 1 {
        return Err("Invalid Weights: Passing must be greater than 0".to_string());
    }
    if weights.warning < 0 {
        return Err("Invalid Weights: Warning must be greater or equal than 0".to_string());
    }
    validate_meta(&reg.meta).map_err(|e| format!("Invalid Service Meta: {e}"))?;

    let id = reg
        .id
        .clone()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| reg.name.clone());
    let port = reg.port.unwrap_or(0);
    // Consul tags an IP service address as lan/wan for its address family.
    let tagged_addresses = match address.parse::<std::net::IpAddr>() {
        Ok(ip) => {
            let family = if ip.is_ipv4() { "ipv4" } else { "ipv6" };
            ["lan", "wan"]
                .into_iter()
                .map(|net| {
                    let tagged = ServiceAddress {
                        address: address.clone(),
                        port,
                    };
                    (format!("{net}_{family}"), tagged)
                })
                .collect()
        }
        Err(_) => BTreeMap::new(),
    };
    let service = AgentService {
        id: id.clone(),
        service: reg.name.clone(),
        tags: reg.tags.clone(),
        meta: reg.meta.clone(),
        port,
        address,
        tagged_addresses,
        weights: Weights {
            passing: weights.passing,
            warning: weights.warning,
        },
        enable_tag_override: reg.enable_tag_override,
        ..AgentService::default()
    };

    let several = checks_in.len() > 1;
    let mut checks = Vec::with_capacity(checks_in.len());
    for (i, check) in checks_in.into_iter().enumerate() {
        let mut spec =
            check_spec(check, deregister_floor).map_err(|e| format!("Invalid check: {e}"))?;
        if spec.check_id.is_empty() {
            spec.check_id = if several {
                format!("service:{id}:{}", i + 1)
            } else {
                format!("service:{id}")
            };
        }
        if spec.name.is_empty() {
            spec.name = format!("Service '{}' check", reg.name);
        }
        checks.push(spec);
    }
    Ok(ServiceSpec { service, checks })
}

/// Validates one check the way Consul's `CheckType.Validate` does.
fn check_spec(check: AgentServiceCheck, deregister_floor: Duration) -> Result<CheckSpec, String> {
    let parse = |field: &str, v: &Option<String>| -> Result<Option<Duration>, String> {
        match v.as_deref() {
            None | Some("") => Ok(None),
            Some(s) => duration::parse(s)
                .map(Some)
                .map_err(|e| format!("{field}: {e}")),
        }
    };
    let interval = parse("Interval", &check.interval)?.filter(|d| !d.is_zero());
    let ttl = parse("TTL", &check.ttl)?.filter(|d| !d.is_zero());
    let timeout = parse("Timeout", &check.timeout)?
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_CHECK_TIMEOUT);
    let deregister_after = parse(
        "DeregisterCriticalServiceAfter",
        &check.deregister_critical_service_after,
    )?
    .filter(|d| !d.is_zero());

    let http = check.http.clone().filter(|s| !s.is_empty());
    let tcp = check.tcp.clone().filter(|s| !s.is_empty());
    let interval_check = http.is_some() || tcp.is_some();
    if interval.is_some() && ttl.is_some() {
        return Err("Interval and TTL cannot both be specified".to_string());
    }
    if interval_check && interval.is_none() {
        return Err(
            "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or GRPC checks".to_string(),
        );
    }
    if !interval_check && ttl.is_none() {
        return Err("TTL must be > 0 for TTL checks".to_string());
    }
    let kind = if let Some(url) = http {
        if let Err(e) = reqwest::Url::parse(&url) {
            return Err(format!("HTTP: invalid URL {url:?}: {e}"));
        }
        CheckKind::Http {
            url,
            method: check
                .method
                .clone()
                .filter(|m| !m.is_empty())
                .unwrap_or_default(),
            header: check.header.clone(),
            body: check.body.clone().unwrap_or_default(),
            tls_skip_verify: check.tls_skip_verify,
        }
    } else if let Some(address) = tcp {
        CheckKind::Tcp { address }
    } else {
        CheckKind::Ttl
    };
    let deregister_after = deregister_after.map(|after| {
        if after < deregister_floor {
            tracing::warn!(
                check_id = check.check_id.as_deref().unwrap_or(""),
                requested = %duration::format(after),
                minimum = %duration::format(deregister_floor),
                "check has deregister interval below minimum"
            );
            deregister_floor
        } else {
            after
        }
    });
    Ok(CheckSpec {
        check_id: check.check_id.unwrap_or_default(),
        name: check.name.unwrap_or_default(),
        notes: check.notes.unwrap_or_default(),
        kind,
        interval,
        timeout,
        ttl,
        deregister_after,
        initial_status: check.status,
        success_before_passing: check.success_before_passing,
        failures_before_critical: check.failures_before_critical,
    })
}

/// Consul's rules for service metadata (`structs.ValidateMetadata`).
fn validate_meta(meta: &BTreeMap<String, String>) -> Result<(), String> {
    if meta.len() > 64 {
        return Err("Node metadata cannot contain more than 64 key/value pairs".to_string());
    }
    for (key, value) in meta {
        if key.is_empty() {
            return Err("Key cannot be blank".to_string());
        }
        if key.len() > 128 {
            return Err("Key is too long (limit: 128 characters)".to_string());
        }
        if !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!("Key contains invalid characters: {key:?}"));
        }
        if key.starts_with("consul-") {
            return Err(format!(
                "Key prefix 'consul-' is reserved for internal use: {key:?}"
            ));
        }
        if value.len() > 512 {
            return Err(format!(
                "Value is too long (limit: 512 characters): key {key:?}"
            ));
        }
    }
    Ok(())
}

/// Maps a check object's keys onto Consul's names; numeric durations (nanoseconds, as Go's
/// time.Duration marshals) become Go duration strings.
fn canonical_check(object: Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut object = canonical_keys(object, CHECK_FIELDS);
    if object.get("Status").is_some_and(|s| s.is_null() || s == "") {
        object.remove("Status");
    }
    for field in DURATION_FIELDS {
        match object.get(*field) {
            Some(Value::Number(n)) => {
                let nanos = n.as_u64().ok_or_else(|| {
                    format!("Request decode failed: {field}: invalid duration {n}")
                })?;
                let text = duration::format(Duration::from_nanos(nanos));
                object.insert((*field).to_string(), Value::String(text));
            }
            Some(Value::Null) => {
                object.remove(*field);
            }
            // Consul fails these while decoding, before validation.
            Some(Value::String(text)) if !text.is_empty() && duration::parse(text).is_err() => {
                return Err(format!(
                    "Request decode failed: {field}: time: invalid duration {text:?}"
                ));
            }
            _ => {}
        }
    }
    Ok(object)
}

/// Renames keys that match one of `fields` ignoring case and underscores; drops unknown keys.
fn canonical_keys(object: Map<String, Value>, fields: &[&str]) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in object {
        let folded = fold(&key);
        if let Some(field) = fields.iter().find(|f| fold(f) == folded) {
            out.insert((*field).to_string(), value);
        }
    }
    out
}

fn fold(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn is_empty_json(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const FLOOR: Duration = Duration::from_secs(60);

    fn parse_json(v: Value) -> Result<ServiceSpec, String> {
        parse(&serde_json::to_vec(&v).unwrap(), FLOOR)
    }

    #[test]
    fn defaults_id_check_id_and_check_name() {
        let spec = parse_json(json!({
            "Name": "web", "Port": 80,
            "Check": {"HTTP": "http://127.0.0.1:80/health", "Interval": "10s"}
        }))
        .unwrap();
        assert_eq!(spec.service.id, "web");
        assert_eq!(
            spec.service.weights,
            Weights {
                passing: 1,
                warning: 1
            }
        );
        assert_eq!(spec.checks[0].check_id, "service:web");
        assert_eq!(spec.checks[0].name, "Service 'web' check");
        assert_eq!(spec.checks[0].timeout, DEFAULT_CHECK_TIMEOUT);
    }

    #[test]
    fn several_checks_get_numbered_ids() {
        let spec = parse_json(json!({
            "ID": "web-1", "Name": "web",
            "Checks": [{"TTL": "10s"}, {"TCP": "127.0.0.1:80", "Interval": "5s", "CheckID": "mine"}, {"TTL": "1m"}]
        }))
        .unwrap();
        let ids: Vec<_> = spec.checks.iter().map(|c| c.check_id.as_str()).collect();
        assert_eq!(ids, ["service:web-1:1", "mine", "service:web-1:3"]);
    }

    #[test]
    fn keys_match_case_insensitively_and_snake_case() {
        // What py-consul sends.
        let spec = parse_json(json!({
            "name": "web", "id": "w1", "address": "10.0.0.1", "port": 81, "tags": ["a"],
            "enabletagoverride": true,
            "check": {"http": "http://10.0.0.1:81/", "interval": "1s", "timeout": "1s",
                      "deregister_critical_service_after": "10s"}
        }))
        .unwrap();
        assert_eq!(spec.service.id, "w1");
        assert_eq!(spec.service.address, "10.0.0.1");
        assert!(spec.service.enable_tag_override);
        assert_eq!(spec.service.tags, ["a"]);
        let check = &spec.checks[0];
        assert_eq!(check.interval, Some(Duration::from_secs(1)));
        assert_eq!(check.deregister_after, Some(FLOOR), "raised to the floor");
    }

    #[test]
    fn numeric_durations_are_nanoseconds() {
        let spec = parse_json(json!({"Name": "w", "Check": {"TTL": 15_000_000_000u64}})).unwrap();
        assert_eq!(spec.checks[0].ttl, Some(Duration::from_secs(15)));
    }

    #[test]
    fn rejects_what_consul_rejects() {
        let cases = [
            (json!({"Port": 1}), "Missing service name"),
            (
                json!({"Name": "w", "Address": "0.0.0.0"}),
                "Invalid service address",
            ),
            (
                json!({"Name": "w", "Weights": {"Passing": 0}}),
                "Invalid Weights: Passing must be greater than 0",
            ),
            (
                json!({"Name": "w", "Check": {"TTL": "5s", "Interval": "5s"}}),
                "Invalid check: Interval and TTL cannot both be specified",
            ),
            (
                json!({"Name": "w", "Check": {"HTTP": "http://x/"}}),
                "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or GRPC checks",
            ),
            (
                json!({"Name": "w", "Check": {"Notes": "n"}}),
                "Invalid check: TTL must be > 0 for TTL checks",
            ),
            (
                json!({"Name": "w", "Check": {"TTL": "5s", "Status": "ok"}}),
                "Status for checks must 'passing', 'warning', 'critical'",
            ),
            (
                json!({"Name": "w", "Meta": {"bad key": "v"}}),
                "Invalid Service Meta: Key contains invalid characters: \"bad key\"",
            ),
        ];
        for (body, message) in cases {
            assert_eq!(parse_json(body.clone()).unwrap_err(), message, "{body}");
        }
    }

    #[test]
    fn rejects_malformed_bodies_with_decode_errors() {
        for body in [
            &b"not json"[..],
            b"[]",
            br#"{"Name": "w", "Port": "80"}"#,
            br#"{"Name":"w","Check":{"TTL":"ten"}}"#,
        ] {
            let err = parse(body, FLOOR).unwrap_err();
            assert!(
                err.starts_with("Request decode failed") || err.starts_with("Invalid check"),
                "{err}"
            );
        }
    }

    #[test]
    fn unsupported_check_kinds_are_named() {
        let err =
            parse_json(json!({"Name": "w", "Check": {"GRPC": "127.0.0.1:1", "Interval": "1s"}}))
                .unwrap_err();
        assert!(err.contains("GRPC"), "{err}");
    }

    #[test]
    fn empty_check_object_is_ignored() {
        let spec = parse_json(json!({"Name": "w", "Check": {}})).unwrap();
        assert!(spec.checks.is_empty());
    }
}
