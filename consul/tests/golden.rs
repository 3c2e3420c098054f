//! Golden tests: the sample responses from Consul's HTTP API documentation
//! (hashicorp/consul, website/content/api-docs/*.mdx), decoded with the structs the project's
//! client uses. The JSON below is reproduced from those pages as test data.

use std::collections::BTreeMap;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use consul::{AgentService, CheckStatus, Client, HealthCheck, QueryOptions, ServiceEntry};

/// api-docs/health.mdx, "List Nodes for Service" (`GET /v1/health/service/:service`).
const HEALTH_SERVICE: &str = r#"[
  {
    "Node": {
      "ID": "40e4a748-2192-161a-0510-9bf59fe950b5",
      "Node": "foobar",
      "Address": "10.1.10.12",
      "Datacenter": "dc1",
      "TaggedAddresses": {
        "lan": "10.1.10.12",
        "wan": "10.1.10.12"
      },
      "Meta": {
        "instance_type": "t2.medium"
      }
    },
    "Service": {
      "ID": "redis",
      "Service": "redis",
      "Tags": ["primary"],
      "Address": "10.1.10.12",
      "TaggedAddresses": {
        "lan": {
          "address": "10.1.10.12",
          "port": 8000
        },
        "wan": {
          "address": "198.18.1.2",
          "port": 80
        }
      },
      "Meta": {
        "redis_version": "4.0"
      },
      "Port": 8000,
      "Weights": {
        "Passing": 10,
        "Warning": 1
      },
      "Namespace": "default"
    },
    "Checks": [
      {
        "Node": "foobar",
        "CheckID": "service:redis",
        "Name": "Service 'redis' check",
        "Status": "passing",
        "Notes": "",
        "Output": "",
        "ServiceID": "redis",
        "ServiceName": "redis",
        "ServiceTags": ["primary"],
        "Namespace": "default"
      },
      {
        "Node": "foobar",
        "CheckID": "serfHealth",
        "Name": "Serf Health Status",
        "Status": "passing",
        "Notes": "",
        "Output": "",
        "ServiceID": "",
        "ServiceName": "",
        "ServiceTags": [],
        "Namespace": "default"
      }
    ]
  }
]"#;

/// api-docs/agent/service.mdx, "List Services" (`GET /v1/agent/services`).
const AGENT_SERVICES: &str = r#"{
  "redis": {
    "ID": "redis",
    "Service": "redis",
    "Tags": [],
    "TaggedAddresses": {
      "lan": {
        "address": "127.0.0.1",
        "port": 8000
      },
      "wan": {
        "address": "198.51.100.53",
        "port": 80
      }
    },
    "Meta": {
      "redis_version": "4.0"
    },
    "Namespace": "default",
    "Port": 8000,
    "Address": "",
    "EnableTagOverride": false,
    "Datacenter": "dc1",
    "Weights": {
      "Passing": 10,
      "Warning": 1
    }
  }
}"#;

/// api-docs/agent/check.mdx, "List Checks" (`GET /v1/agent/checks`).
const AGENT_CHECKS: &str = r#"{
  "service:redis": {
    "Node": "foobar",
    "CheckID": "service:redis",
    "Name": "Service 'redis' check",
    "Status": "passing",
    "Notes": "",
    "Output": "",
    "ServiceID": "redis",
    "ServiceName": "redis",
    "ServiceTags": ["primary"]
  }
}"#;

/// api-docs/catalog.mdx, "List Services" (`GET /v1/catalog/services`).
const CATALOG_SERVICES: &str = r#"{
  "consul": [],
  "redis": [],
  "postgresql": ["primary", "secondary"]
}"#;

/// api-docs/agent/service.mdx, "Get local service health": one check, with a full
/// `Definition` (including `"Header": null`).
const CHECK_WITH_DEFINITION: &str = r#"{
  "Node": "server1",
  "CheckID": "service:web2",
  "Name": "Service 'web' check",
  "Status": "critical",
  "Notes": "",
  "Output": "Get \"http://localhost/health\": dial tcp [::1]:80: connect: connection refused",
  "ServiceID": "web2",
  "ServiceName": "web",
  "ServiceTags": [
    "rails"
  ],
  "Type": "",
  "Namespace": "default",
  "Definition": {
    "Interval": "0s",
    "Timeout": "0s",
    "DeregisterCriticalServiceAfter": "0s",
    "HTTP": "",
    "Header": null,
    "Method": "",
    "Body": "",
    "TLSServerName": "",
    "TLSSkipVerify": false,
    "TCP": ""
  },
  "CreateIndex": 0,
  "ModifyIndex": 0
}"#;

#[test]
fn health_service_sample_decodes() {
    let entries: Vec<ServiceEntry> = serde_json::from_str(HEALTH_SERVICE).unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e.node.node, "foobar");
    assert_eq!(e.node.id, "40e4a748-2192-161a-0510-9bf59fe950b5");
    assert_eq!(e.node.tagged_addresses["wan"], "10.1.10.12");
    assert_eq!(e.node.meta["instance_type"], "t2.medium");
    assert_eq!(e.service.id, "redis");
    assert_eq!(e.service.service, "redis");
    assert_eq!(e.service.tags, ["primary"]);
    assert_eq!(e.service.port, 8000);
    assert_eq!(e.service.weights.passing, 10);
    assert_eq!(e.service.meta["redis_version"], "4.0");
    assert_eq!(e.address(), "10.1.10.12");
    assert_eq!(e.checks.len(), 2);
    assert_eq!(e.checks[1].check_id, "serfHealth");
    assert!(e.checks.iter().all(|c| c.status == CheckStatus::Passing));
    assert_eq!(e.aggregated_status(), CheckStatus::Passing);
}

#[test]
fn agent_services_sample_decodes() {
    let services: BTreeMap<String, AgentService> = serde_json::from_str(AGENT_SERVICES).unwrap();
    let redis = &services["redis"];
    assert_eq!(redis.service, "redis");
    assert!(redis.tags.is_empty());
    assert_eq!(redis.address, "");
    assert_eq!(redis.port, 8000);
    assert_eq!(redis.datacenter, "dc1");
    assert_eq!((redis.weights.passing, redis.weights.warning), (10, 1));
}

#[test]
fn agent_checks_sample_decodes() {
    let checks: BTreeMap<String, HealthCheck> = serde_json::from_str(AGENT_CHECKS).unwrap();
    let c = &checks["service:redis"];
    assert_eq!(c.name, "Service 'redis' check");
    assert_eq!(c.status, CheckStatus::Passing);
    assert_eq!(c.service_id, "redis");
    assert_eq!(c.service_tags, ["primary"]);
}

#[test]
fn catalog_services_sample_decodes() {
    let services: BTreeMap<String, Vec<String>> = serde_json::from_str(CATALOG_SERVICES).unwrap();
    assert_eq!(services.len(), 3);
    assert!(services["consul"].is_empty());
    assert_eq!(services["postgresql"], ["primary", "secondary"]);
}

#[test]
fn check_with_null_header_in_definition_decodes() {
    let c: HealthCheck = serde_json::from_str(CHECK_WITH_DEFINITION).unwrap();
    assert_eq!(c.status, CheckStatus::Critical);
    assert!(c.definition.header.is_empty());
    assert_eq!(c.definition.interval, "0s");
    assert!(c.output.contains("connection refused"));
}

/// The client decodes the documented body end to end, and applies the "never 0" rule to an
/// `X-Consul-Index: 0` header.
#[tokio::test]
async fn client_decodes_the_documented_health_response() {
    let app = Router::new().route(
        "/v1/health/service/redis",
        get(|| async {
            (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::HeaderName::from_static("x-consul-index"), "0"),
                ],
                HEALTH_SERVICE,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = Client::new(&format!("http://{addr}"), None).unwrap();
    let answer = client
        .health_service("redis", true, &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(answer.index, 1);
    assert!(!answer.known_leader);
    assert_eq!(answer.value[0].address(), "10.1.10.12");
}

/// Collects the object key paths of a JSON value (array elements share the path `[]`).
fn key_paths(
    value: &serde_json::Value,
    prefix: &str,
    out: &mut std::collections::BTreeSet<String>,
) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let path = format!("{prefix}.{k}");
                out.insert(path.clone());
                key_paths(v, &path, out);
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                key_paths(v, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

/// Every field the documentation shows (minus Enterprise namespaces and tagged addresses,
/// which the stand-in does not model) is present in the stand-in's own answers.
#[tokio::test]
async fn the_stand_in_answers_with_the_documented_fields() {
    let consul = consul::standin::spawn(consul::standin::StandInConfig::default()).await;
    let client = consul.client().unwrap();
    client
        .register(&consul::AgentServiceRegistration {
            id: Some("redis".into()),
            name: "redis".into(),
            tags: vec!["primary".into()],
            address: Some("10.1.10.12".into()),
            port: Some(8000),
            meta: BTreeMap::from([("redis_version".to_string(), "4.0".to_string())]),
            check: Some(consul::AgentServiceCheck {
                ttl: Some("30s".into()),
                status: Some(CheckStatus::Passing),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    // Enterprise namespaces aside, and user data (metadata keys, tag names) aside.
    let ignored = |path: &str| {
        path.contains("Namespace") || path.contains("Meta.") || path.contains("TaggedAddresses.")
    };
    for (path, documented) in [
        ("/v1/health/service/redis", HEALTH_SERVICE),
        ("/v1/agent/services", AGENT_SERVICES),
        ("/v1/agent/checks", AGENT_CHECKS),
    ] {
        let ours: serde_json::Value = http
            .get(format!("{}{path}", consul.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut ours_paths = Default::default();
        key_paths(&ours, "", &mut ours_paths);
        let mut doc_paths = Default::default();
        key_paths(
            &serde_json::from_str(documented).unwrap(),
            "",
            &mut doc_paths,
        );
        let missing: Vec<_> = doc_paths
            .iter()
            .filter(|p| !ignored(p) && !ours_paths.contains(*p))
            .collect();
        assert!(missing.is_empty(), "{path}: missing {missing:?}");
    }
}
