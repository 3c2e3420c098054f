//! Consul's wire types, with Consul's exact field casing.
//!
//! Consul spells acronyms in capitals (`ID`, `HTTP`, `TTL`, `TCP`, `CheckID`), so every such
//! field carries an explicit rename; `rename_all = "PascalCase"` alone would be wrong.
//!
//! Requests (`AgentServiceRegistration`, `AgentServiceCheck`) leave out empty optional fields,
//! as Consul's Go client does (`omitempty`). Responses (`ServiceEntry`, `Node`, `AgentService`,
//! `HealthCheck`) always write every field, lists and maps as `[]`/`{}`, never `null`, and read
//! tolerantly: unknown fields are ignored, missing fields take their defaults and `null` lists
//! or maps become empty.
//!
//! Durations stay Go duration strings (`"10s"`, `"1m30s"`) on the wire; [`crate::duration`]
//! parses and formats them.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// The status of a check: `passing`, `warning` or `critical` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// The check succeeded.
    Passing,
    /// The check reported a degraded but usable state (an HTTP 429, `check/warn`).
    Warning,
    /// The check failed, or has not run yet.
    #[default]
    Critical,
}

impl CheckStatus {
    /// Returns Consul's wire name for this status.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }

    /// Parses Consul's wire name (`passing`, `warning`, `critical`).
    pub fn parse(s: &str) -> Option<CheckStatus> {
        match s {
            "passing" => Some(CheckStatus::Passing),
            "warning" => Some(CheckStatus::Warning),
            "critical" => Some(CheckStatus::Critical),
            _ => None,
        }
    }
}

impl std::fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a service is weighted in DNS answers; Consul's default is `{"Passing":1,"Warning":1}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Weights {
    /// Weight while all checks pass.
    #[serde(rename = "Passing")]
    pub passing: i64,
    /// Weight while some check warns.
    #[serde(rename = "Warning")]
    pub warning: i64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

/// The body of `PUT /v1/agent/service/register`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentServiceRegistration {
    /// Instance ID, unique on the agent; defaults to `Name`.
    #[serde(rename = "ID", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Service name (required).
    #[serde(rename = "Name")]
    pub name: String,
    /// Tags for filtering.
    #[serde(
        rename = "Tags",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub tags: Vec<String>,
    /// Address of the instance; empty means "use the node's address".
    #[serde(rename = "Address", skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Port of the instance.
    #[serde(rename = "Port", skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Free-form string metadata.
    #[serde(
        rename = "Meta",
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub meta: BTreeMap<String, String>,
    /// DNS weights; Consul fills in `{"Passing":1,"Warning":1}` when absent.
    #[serde(rename = "Weights", skip_serializing_if = "Option::is_none")]
    pub weights: Option<Weights>,
    /// Lets anti-entropy keep tags changed from outside the agent.
    #[serde(rename = "EnableTagOverride", skip_serializing_if = "is_false")]
    pub enable_tag_override: bool,
    /// A single check.
    #[serde(rename = "Check", skip_serializing_if = "Option::is_none")]
    pub check: Option<AgentServiceCheck>,
    /// Several checks.
    #[serde(
        rename = "Checks",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub checks: Vec<AgentServiceCheck>,
}

/// A check definition inside a service registration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentServiceCheck {
    /// Check ID; defaults to `service:<service id>` (`service:<id>:<n>` with several checks).
    #[serde(rename = "CheckID", skip_serializing_if = "Option::is_none")]
    pub check_id: Option<String>,
    /// Check name; defaults to `Service '<name>' check`.
    #[serde(rename = "Name", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// URL probed by an HTTP check.
    #[serde(rename = "HTTP", skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// HTTP method of an HTTP check (default `GET`).
    #[serde(rename = "Method", skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Extra request headers of an HTTP check.
    #[serde(
        rename = "Header",
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub header: BTreeMap<String, Vec<String>>,
    /// Request body of an HTTP check.
    #[serde(rename = "Body", skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// `host:port` probed by a TCP check.
    #[serde(rename = "TCP", skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    /// Time to live of a TTL check (Go duration, e.g. `"15s"`).
    #[serde(rename = "TTL", skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// How often an HTTP/TCP check runs (Go duration).
    #[serde(rename = "Interval", skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Per-probe timeout (Go duration; Consul's default is 10s).
    #[serde(rename = "Timeout", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Initial status; checks start `critical` without it.
    #[serde(rename = "Status", skip_serializing_if = "Option::is_none")]
    pub status: Option<CheckStatus>,
    /// Human-readable notes.
    #[serde(rename = "Notes", skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Skips TLS verification for HTTPS checks.
    #[serde(rename = "TLSSkipVerify", skip_serializing_if = "is_false")]
    pub tls_skip_verify: bool,
    /// Removes the service once this check has been critical this long (floor: 1 minute).
    #[serde(
        rename = "DeregisterCriticalServiceAfter",
        skip_serializing_if = "Option::is_none"
    )]
    pub deregister_critical_service_after: Option<String>,
    /// Consecutive successes needed before the check turns passing.
    #[serde(rename = "SuccessBeforePassing", skip_serializing_if = "is_zero")]
    pub success_before_passing: u32,
    /// Consecutive failures needed before the check turns critical.
    #[serde(rename = "FailuresBeforeCritical", skip_serializing_if = "is_zero")]
    pub failures_before_critical: u32,
}

/// One entry of `GET /v1/health/service/:service`: an instance with its node and checks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceEntry {
    /// The node the instance runs on.
    #[serde(rename = "Node", deserialize_with = "null_default")]
    pub node: Node,
    /// The instance.
    #[serde(rename = "Service", deserialize_with = "null_default")]
    pub service: AgentService,
    /// The node's checks and the instance's checks.
    #[serde(rename = "Checks", deserialize_with = "null_default")]
    pub checks: Vec<HealthCheck>,
}

impl ServiceEntry {
    /// Returns the address to reach the instance: `Service.Address`, or `Node.Address` when
    /// the service did not register one (Consul sends `""` then).
    pub fn address(&self) -> &str {
        if self.service.address.is_empty() {
            &self.node.address
        } else {
            &self.service.address
        }
    }

    /// Returns the worst status among the entry's checks (`passing` when it has none).
    pub fn aggregated_status(&self) -> CheckStatus {
        aggregate(self.checks.iter().map(|c| c.status))
    }
}

/// A catalog node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Node {
    /// Node UUID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name.
    #[serde(rename = "Node")]
    pub node: String,
    /// Node address.
    #[serde(rename = "Address")]
    pub address: String,
    /// Datacenter of the node.
    #[serde(rename = "Datacenter")]
    pub datacenter: String,
    /// Extra addresses (`lan`, `wan`, ...).
    #[serde(rename = "TaggedAddresses", deserialize_with = "null_default")]
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    #[serde(rename = "Meta", deserialize_with = "null_default")]
    pub meta: BTreeMap<String, String>,
    /// Raft index at creation.
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    /// Raft index of the last change.
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

/// A registered service instance, as `/v1/agent/services` and `/v1/health/service` show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentService {
    /// Instance ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Service name (Consul calls this field `Service`, not `Name`).
    #[serde(rename = "Service")]
    pub service: String,
    /// Tags.
    #[serde(rename = "Tags", deserialize_with = "null_default")]
    pub tags: Vec<String>,
    /// Metadata.
    #[serde(rename = "Meta", deserialize_with = "null_default")]
    pub meta: BTreeMap<String, String>,
    /// Port.
    #[serde(rename = "Port")]
    pub port: u16,
    /// Address; `""` means "use the node's address".
    #[serde(rename = "Address")]
    pub address: String,
    /// Extra addresses (`lan_ipv4`, `wan_ipv4`, ...); Consul derives the IPv4/IPv6 ones from
    /// `Address`.
    #[serde(
        rename = "TaggedAddresses",
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    /// DNS weights.
    #[serde(rename = "Weights", deserialize_with = "null_default")]
    pub weights: Weights,
    /// Whether tag override is enabled.
    #[serde(rename = "EnableTagOverride")]
    pub enable_tag_override: bool,
    /// Datacenter (the agent endpoints include it).
    #[serde(rename = "Datacenter", skip_serializing_if = "String::is_empty")]
    pub datacenter: String,
    /// Raft index at creation (catalog views only).
    #[serde(rename = "CreateIndex", skip_serializing_if = "is_zero_u64")]
    pub create_index: u64,
    /// Raft index of the last change (catalog views only).
    #[serde(rename = "ModifyIndex", skip_serializing_if = "is_zero_u64")]
    pub modify_index: u64,
}

/// An address and port in a service's `TaggedAddresses`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceAddress {
    /// Address.
    #[serde(rename = "Address", alias = "address")]
    pub address: String,
    /// Port.
    #[serde(rename = "Port", alias = "port")]
    pub port: u16,
}

/// The state of one check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthCheck {
    /// Node the check runs on.
    #[serde(rename = "Node")]
    pub node: String,
    /// Check ID.
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// Check name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Current status.
    #[serde(rename = "Status")]
    pub status: CheckStatus,
    /// Notes given at registration.
    #[serde(rename = "Notes")]
    pub notes: String,
    /// Output of the last run (or the note of the last TTL update).
    #[serde(rename = "Output")]
    pub output: String,
    /// ID of the service the check belongs to (`""` for node checks).
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Name of that service.
    #[serde(rename = "ServiceName")]
    pub service_name: String,
    /// Tags of that service.
    #[serde(rename = "ServiceTags", deserialize_with = "null_default")]
    pub service_tags: Vec<String>,
    /// Check type: `http`, `ttl`, `tcp`, `serf`, ...
    #[serde(rename = "Type")]
    pub kind: String,
    /// Interval (only in `/v1/agent/checks` answers).
    #[serde(rename = "Interval", skip_serializing_if = "String::is_empty")]
    pub interval: String,
    /// Timeout (only in `/v1/agent/checks` answers).
    #[serde(rename = "Timeout", skip_serializing_if = "String::is_empty")]
    pub timeout: String,
    /// How the check is defined.
    #[serde(rename = "Definition", deserialize_with = "null_default")]
    pub definition: HealthCheckDefinition,
    /// Raft index at creation.
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    /// Raft index of the last change.
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

/// The definition part of a [`HealthCheck`]; Consul leaves out empty fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthCheckDefinition {
    /// URL of an HTTP check.
    #[serde(rename = "HTTP", skip_serializing_if = "String::is_empty")]
    pub http: String,
    /// Method of an HTTP check.
    #[serde(rename = "Method", skip_serializing_if = "String::is_empty")]
    pub method: String,
    /// Headers of an HTTP check.
    #[serde(
        rename = "Header",
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub header: BTreeMap<String, Vec<String>>,
    /// Body of an HTTP check.
    #[serde(rename = "Body", skip_serializing_if = "String::is_empty")]
    pub body: String,
    /// Whether TLS verification is skipped.
    #[serde(rename = "TLSSkipVerify", skip_serializing_if = "is_false")]
    pub tls_skip_verify: bool,
    /// Address of a TCP check.
    #[serde(rename = "TCP", skip_serializing_if = "String::is_empty")]
    pub tcp: String,
    /// Interval (Go duration).
    #[serde(rename = "Interval", skip_serializing_if = "String::is_empty")]
    pub interval: String,
    /// Timeout (Go duration).
    #[serde(rename = "Timeout", skip_serializing_if = "String::is_empty")]
    pub timeout: String,
    /// TTL of a TTL check (Go duration).
    #[serde(rename = "TTL", skip_serializing_if = "String::is_empty")]
    pub ttl: String,
    /// Reap delay (Go duration).
    #[serde(
        rename = "DeregisterCriticalServiceAfter",
        skip_serializing_if = "String::is_empty"
    )]
    pub deregister_critical_service_after: String,
}

/// Returns the worst of `statuses` (critical > warning > passing); `passing` for none.
pub fn aggregate(statuses: impl IntoIterator<Item = CheckStatus>) -> CheckStatus {
    statuses
        .into_iter()
        .fold(CheckStatus::Passing, |worst, s| match (worst, s) {
            (CheckStatus::Critical, _) | (_, CheckStatus::Critical) => CheckStatus::Critical,
            (CheckStatus::Warning, _) | (_, CheckStatus::Warning) => CheckStatus::Warning,
            _ => CheckStatus::Passing,
        })
}

/// Reads `null` as the type's default, so `"Tags": null` becomes an empty list.
fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// `host:port`, with an IPv6 host in brackets (`[::1]:5000`), as a URL authority needs it.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(host_port("10.0.0.5", 5000), "10.0.0.5:5000");
        assert_eq!(
            host_port("gdp-growth-model-1", 5000),
            "gdp-growth-model-1:5000"
        );
        assert_eq!(host_port("::1", 5000), "[::1]:5000");
        assert_eq!(host_port("[fe80::1]", 5000), "[fe80::1]:5000");
    }

    #[test]
    fn registration_uses_consul_casing_and_omits_empty_fields() {
        let reg = AgentServiceRegistration {
            id: Some("node-1".into()),
            name: "inference".into(),
            address: Some("10.0.0.5".into()),
            port: Some(8001),
            check: Some(AgentServiceCheck {
                http: Some("http://10.0.0.5:8001/health".into()),
                interval: Some("10s".into()),
                timeout: Some("2s".into()),
                deregister_critical_service_after: Some("1m".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&reg).unwrap(),
            json!({
                "ID": "node-1", "Name": "inference", "Address": "10.0.0.5", "Port": 8001,
                "Check": {"HTTP": "http://10.0.0.5:8001/health", "Interval": "10s",
                          "Timeout": "2s", "DeregisterCriticalServiceAfter": "1m"}
            })
        );
    }

    #[test]
    fn check_acronym_fields_are_capitalised() {
        let check = AgentServiceCheck {
            check_id: Some("c".into()),
            ttl: Some("5s".into()),
            tcp: Some("h:1".into()),
            tls_skip_verify: true,
            status: Some(CheckStatus::Passing),
            ..Default::default()
        };
        let v = serde_json::to_value(&check).unwrap();
        assert_eq!(
            v,
            json!({"CheckID": "c", "TTL": "5s", "TCP": "h:1", "TLSSkipVerify": true,
                   "Status": "passing"})
        );
    }

    #[test]
    fn null_lists_and_unknown_fields_are_tolerated() {
        let entry: ServiceEntry = serde_json::from_value(json!({
            "Node": {"Node": "n1", "Address": "10.0.0.1", "TaggedAddresses": null, "Meta": null,
                     "Partition": "default"},
            "Service": {"ID": "a", "Service": "web", "Tags": null, "Meta": null, "Port": 80,
                        "Address": "", "Weights": null, "Kind": "", "Proxy": {}},
            "Checks": null
        }))
        .unwrap();
        assert!(entry.checks.is_empty());
        assert!(entry.service.tags.is_empty());
        assert_eq!(entry.service.weights, Weights::default());
        assert_eq!(entry.address(), "10.0.0.1");
    }

    #[test]
    fn address_prefers_the_service_address() {
        let mut entry = ServiceEntry::default();
        entry.node.address = "10.0.0.1".into();
        entry.service.address = "10.0.0.9".into();
        assert_eq!(entry.address(), "10.0.0.9");
    }

    #[test]
    fn aggregate_takes_the_worst_status() {
        use CheckStatus::*;
        assert_eq!(aggregate([]), Passing);
        assert_eq!(aggregate([Passing, Warning]), Warning);
        assert_eq!(aggregate([Warning, Critical, Passing]), Critical);
    }

    #[test]
    fn response_types_never_write_null_lists() {
        let v = serde_json::to_value(ServiceEntry::default()).unwrap();
        assert_eq!(v["Checks"], json!([]));
        assert_eq!(v["Service"]["Tags"], json!([]));
        assert_eq!(v["Service"]["Meta"], json!({}));
        assert_eq!(v["Service"]["Weights"], json!({"Passing": 1, "Warning": 1}));
        assert_eq!(v["Node"]["TaggedAddresses"], json!({}));
    }
}
