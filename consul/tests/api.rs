//! The stand-in's HTTP API, driven through the project's own `Client` and raw HTTP.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use consul::standin::{self, StandInConfig};
use consul::{
    AgentServiceCheck, AgentServiceRegistration, CheckStatus, Client, ConsulError, QueryOptions,
};
use serde_json::json;

fn ttl_registration(id: &str, name: &str) -> AgentServiceRegistration {
    AgentServiceRegistration {
        id: Some(id.into()),
        name: name.into(),
        tags: vec!["v1".into()],
        address: Some("10.0.0.7".into()),
        port: Some(8001),
        meta: BTreeMap::from([("model".to_string(), "housing".to_string())]),
        check: Some(AgentServiceCheck {
            ttl: Some("30s".into()),
            status: Some(CheckStatus::Passing),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn raw() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::test]
async fn a_registered_service_shows_up_on_every_read_endpoint() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let client = consul.client().unwrap();
    client
        .register(&ttl_registration("node-1", "inference"))
        .await
        .unwrap();

    let services = client.agent_services().await.unwrap();
    let s = &services["node-1"];
    assert_eq!(
        (s.service.as_str(), s.port, s.address.as_str()),
        ("inference", 8001, "10.0.0.7")
    );
    assert_eq!(s.datacenter, "dc1");
    assert_eq!(s.meta["model"], "housing");

    let checks = client.agent_checks().await.unwrap();
    let c = &checks["service:node-1"];
    assert_eq!(c.name, "Service 'inference' check");
    assert_eq!(c.status, CheckStatus::Passing);
    assert_eq!(c.kind, "ttl");
    assert_eq!(c.service_tags, ["v1"]);

    let catalog = client.catalog_services().await.unwrap();
    assert_eq!(catalog["inference"], ["v1"]);
    assert!(catalog.contains_key("consul"));

    let health = client
        .health_service("inference", true, &QueryOptions::default())
        .await
        .unwrap();
    assert!(health.index >= 1);
    assert!(health.known_leader);
    assert_eq!(health.value.len(), 1);
    let entry = &health.value[0];
    assert_eq!(entry.address(), "10.0.0.7");
    assert_eq!(entry.node.address, "127.0.0.1");
    let ids: Vec<_> = entry.checks.iter().map(|c| c.check_id.as_str()).collect();
    assert_eq!(ids, ["serfHealth", "service:node-1"]);

    assert_eq!(client.leader().await.unwrap(), "127.0.0.1:8300");
}

#[tokio::test]
async fn reads_never_return_null_lists_and_carry_consul_headers() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let url = format!("{}/v1/health/service/nothing-here", consul.base_url());
    let response = raw().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let index: u64 = response.headers()["X-Consul-Index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(index >= 1, "the index is never 0");
    assert_eq!(response.headers()["X-Consul-KnownLeader"], "true");
    assert_eq!(response.headers()["X-Consul-LastContact"], "0");
    assert_eq!(response.text().await.unwrap(), "[]");

    // Register without tags, meta or checks: lists and maps come back empty, not null.
    let put = raw()
        .put(format!("{}/v1/agent/service/register", consul.base_url()))
        .body(r#"{"Name": "bare"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    assert_eq!(put.text().await.unwrap(), "");
    let body: serde_json::Value = raw()
        .get(format!("{}/v1/health/service/bare", consul.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body[0]["Service"]["ID"], "bare");
    assert_eq!(body[0]["Service"]["Tags"], json!([]));
    assert_eq!(body[0]["Service"]["Meta"], json!({}));
    assert_eq!(body[0]["Service"]["Address"], "");
    assert_eq!(
        body[0]["Service"]["Weights"],
        json!({"Passing": 1, "Warning": 1})
    );
    assert_eq!(body[0]["Checks"][0]["ServiceTags"], json!([]));
}

#[tokio::test]
async fn lowercase_and_snake_case_keys_register_like_consul() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let body = json!({"name": "web", "id": "web-1", "port": 81, "tags": ["a"],
                      "check": {"ttl": "10s", "status": "warning", "notes": "n"}});
    let put = raw()
        .put(format!("{}/v1/agent/service/register", consul.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let checks = consul.client().unwrap().agent_checks().await.unwrap();
    assert_eq!(checks["service:web-1"].status, CheckStatus::Warning);
    assert_eq!(checks["service:web-1"].notes, "n");
}

#[tokio::test]
async fn invalid_registrations_get_400_with_consuls_message() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let client = consul.client().unwrap();
    let mut both = ttl_registration("a", "web");
    both.check.as_mut().unwrap().interval = Some("10s".into());
    let err = client.register(&both).await.unwrap_err();
    match err {
        ConsulError::Status { code, body } => {
            assert_eq!(code, 400);
            assert_eq!(
                body,
                "Invalid check: Interval and TTL cannot both be specified"
            );
        }
        other => panic!("expected a 400, got {other:?}"),
    }

    let cases = [
        ("{", "Request decode failed"),
        (r#"{"Port": 80}"#, "Missing service name"),
        (
            r#"{"Name": "w", "Check": {"HTTP": "http://127.0.0.1:1/"}}"#,
            "Invalid check: Interval must be > 0",
        ),
        (
            r#"{"Name": "w", "Check": {"TTL": "1s", "Status": "fine"}}"#,
            "Status for checks must 'passing', 'warning', 'critical'",
        ),
        (
            r#"{"Name": "w", "Check": {"TTL": "soon"}}"#,
            "Request decode failed: TTL",
        ),
        (r#"{"Name": "w", "Port": -1}"#, "Request decode failed"),
    ];
    for (body, message) in cases {
        let response = raw()
            .put(format!("{}/v1/agent/service/register", consul.base_url()))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let text = response.text().await.unwrap();
        assert!(text.contains(message), "{body}: {text}");
    }
    assert!(client.agent_services().await.unwrap().is_empty());
}

#[tokio::test]
async fn deregister_removes_the_service_and_unknown_ids_get_404() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let client = consul.client().unwrap();
    client
        .register(&ttl_registration("a", "web"))
        .await
        .unwrap();
    client.deregister("a").await.unwrap();
    assert!(client.agent_services().await.unwrap().is_empty());
    assert!(client.agent_checks().await.unwrap().is_empty());
    let health = client
        .health_service("web", false, &QueryOptions::default())
        .await
        .unwrap();
    assert!(health.value.is_empty());

    // The client treats "already gone" as success; on the wire it is a 404.
    client.deregister("a").await.unwrap();
    let response = raw()
        .put(format!(
            "{}/v1/agent/service/deregister/a",
            consul.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.text().await.unwrap(),
        "Unknown service ID \"a\". Ensure that the service ID is passed, not the service name."
    );
}

#[tokio::test]
async fn ttl_pass_warn_fail_set_status_and_output() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let client = consul.client().unwrap();
    let mut reg = ttl_registration("a", "web");
    reg.check.as_mut().unwrap().status = None;
    client.register(&reg).await.unwrap();
    let status = |checks: &BTreeMap<String, consul::HealthCheck>| {
        let c = &checks["service:a"];
        (c.status, c.output.clone())
    };
    assert_eq!(
        status(&client.agent_checks().await.unwrap()),
        (CheckStatus::Critical, String::new()),
        "checks start critical"
    );
    client
        .check_pass("service:a", Some("all good"))
        .await
        .unwrap();
    assert_eq!(
        status(&client.agent_checks().await.unwrap()),
        (CheckStatus::Passing, "all good".into())
    );
    client.check_warn("service:a", None).await.unwrap();
    assert_eq!(
        status(&client.agent_checks().await.unwrap()),
        (CheckStatus::Warning, String::new())
    );
    let passing = client
        .health_service("web", true, &QueryOptions::default())
        .await
        .unwrap();
    assert!(passing.value.is_empty(), "warning is not passing");
    client.check_fail("service:a", Some("down")).await.unwrap();
    assert_eq!(
        status(&client.agent_checks().await.unwrap()),
        (CheckStatus::Critical, "down".into())
    );

    match client.check_pass("nope", None).await.unwrap_err() {
        ConsulError::Status { code: 404, body } => assert!(body.contains("Unknown check ID")),
        other => panic!("expected 404, got {other:?}"),
    }
}

#[tokio::test]
async fn passing_accepts_bare_and_boolean_values_only() {
    let consul = standin::spawn(StandInConfig::default()).await;
    for (query, status) in [
        ("passing", 200),
        ("passing=true", 200),
        ("passing=false", 200),
        ("passing=maybe", 400),
        ("index=x", 400),
        ("index=1&wait=later", 400),
    ] {
        let response = raw()
            .get(format!(
                "{}/v1/health/service/web?{query}",
                consul.base_url()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{query}");
    }
}

#[tokio::test]
async fn acl_token_is_enforced_like_consul() {
    let consul = standin::spawn(StandInConfig {
        token: Some("s3cret".into()),
        ..StandInConfig::default()
    })
    .await;
    let good = consul.client().unwrap();
    let wrong = Client::new(&consul.base_url(), Some("guess".into())).unwrap();
    let anonymous = Client::new(&consul.base_url(), None).unwrap();

    good.register(&ttl_registration("a", "web")).await.unwrap();

    for result in [
        wrong
            .register(&ttl_registration("b", "web"))
            .await
            .map(|_| ()),
        wrong.agent_services().await.map(|_| ()),
        wrong
            .health_service("web", false, &QueryOptions::default())
            .await
            .map(|_| ()),
    ] {
        match result.unwrap_err() {
            ConsulError::Status { code: 403, body } => assert_eq!(body, "ACL not found"),
            other => panic!("expected 403, got {other:?}"),
        }
    }

    // The anonymous token may not write and sees nothing.
    match anonymous
        .register(&ttl_registration("b", "web"))
        .await
        .unwrap_err()
    {
        ConsulError::Status { code: 403, body } => {
            assert!(body.starts_with("Permission denied"), "{body}")
        }
        other => panic!("expected 403, got {other:?}"),
    }
    let seen = anonymous
        .health_service("web", false, &QueryOptions::default())
        .await
        .unwrap();
    assert!(seen.value.is_empty());
    assert!(anonymous.agent_services().await.unwrap().is_empty());
    // Status endpoints need no token.
    assert_eq!(anonymous.leader().await.unwrap(), "127.0.0.1:8300");

    // Authorization: Bearer works as well as X-Consul-Token.
    let response = raw()
        .get(format!("{}/v1/agent/services", consul.base_url()))
        .header("Authorization", "Bearer s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body.get("a").is_some());
}

/// Every write the agent API has, as an attacker would send it: (method, path and query,
/// body). The first five are the stand-in's write endpoints; the rest are Consul write
/// endpoints the stand-in does not implement, which must not change anything either.
const WRITES: &[(&str, &str, &str)] = &[
    (
        "PUT",
        "/v1/agent/service/register",
        r#"{"ID":"evil","Name":"web","Address":"127.0.0.1","Port":9}"#,
    ),
    ("PUT", "/v1/agent/service/deregister/a", ""),
    ("PUT", "/v1/agent/check/pass/service:a", ""),
    ("PUT", "/v1/agent/check/warn/service:a", ""),
    ("PUT", "/v1/agent/check/fail/service:a", ""),
    (
        "PUT",
        "/v1/agent/check/update/service:a",
        r#"{"Status":"critical"}"#,
    ),
    (
        "PUT",
        "/v1/agent/check/register",
        r#"{"Name":"x","TTL":"10s"}"#,
    ),
    ("PUT", "/v1/agent/check/deregister/service:a", ""),
    ("PUT", "/v1/agent/service/maintenance/a?enable=true", ""),
    ("PUT", "/v1/agent/maintenance?enable=true", ""),
    (
        "PUT",
        "/v1/catalog/register",
        r#"{"Node":"evil","Address":"127.0.0.1","Service":{"Service":"web","Port":9}}"#,
    ),
    (
        "PUT",
        "/v1/catalog/deregister",
        r#"{"Node":"consul-dev","ServiceID":"a"}"#,
    ),
    ("PUT", "/v1/kv/web", "x"),
    ("PUT", "/v1/txn", "[]"),
    ("POST", "/v1/agent/service/register", "{}"),
    ("DELETE", "/v1/agent/service/deregister/a", ""),
];

/// The stand-in's own write endpoints (the first entries of [`WRITES`]).
const IMPLEMENTED_WRITES: usize = 5;

async fn send_write(
    consul: &standin::StandIn,
    (method, path, body): (&str, &str, &str),
    token: Option<(&str, &str)>,
) -> (u16, String) {
    let mut url = format!("{}{path}", consul.base_url());
    let mut request = raw().request(method.parse().unwrap(), &url);
    match token {
        Some(("query", t)) => {
            url.push(if path.contains('?') { '&' } else { '?' });
            url.push_str(&format!("token={t}"));
            request = raw().request(method.parse().unwrap(), &url);
        }
        Some((name, t)) => request = request.header(name, t),
        None => {}
    }
    let response = request.body(body.to_string()).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn every_write_needs_the_token() {
    let consul = standin::spawn(StandInConfig {
        token: Some("s3cret".into()),
        ..StandInConfig::default()
    })
    .await;
    let good = consul.client().unwrap();
    good.register(&ttl_registration("a", "web")).await.unwrap();
    let before = good.agent_services().await.unwrap();
    let checks_before = good.agent_checks().await.unwrap();

    for (i, &write) in WRITES.iter().enumerate() {
        // No token: Consul's anonymous token, which the default-deny policy allows nothing.
        let (status, body) = send_write(&consul, write, None).await;
        if i < IMPLEMENTED_WRITES {
            assert_eq!(status, 403, "{write:?}: {body}");
            assert_eq!(
                body,
                "Permission denied: anonymous token lacks permission 'service:write' on \"web\". \
                 The anonymous token is used implicitly when a request does not specify a token.",
                "{write:?}"
            );
        } else {
            assert!((400..500).contains(&status), "{write:?}: {status} {body}");
        }
        // A wrong token in each place Consul reads one: "ACL not found".
        for place in ["X-Consul-Token", "Authorization", "query"] {
            let token = if place == "Authorization" {
                "Bearer guess"
            } else {
                "guess"
            };
            let (status, body) = send_write(&consul, write, Some((place, token))).await;
            if i < IMPLEMENTED_WRITES {
                assert_eq!(
                    (status, body.as_str()),
                    (403, "ACL not found"),
                    "{write:?} {place}"
                );
            } else {
                assert!((400..500).contains(&status), "{write:?} {place}: {status}");
            }
        }
    }

    // Nothing changed: the same service, the same check, still passing.
    assert_eq!(good.agent_services().await.unwrap(), before);
    let checks = good.agent_checks().await.unwrap();
    assert_eq!(checks, checks_before);
    assert_eq!(checks["service:a"].status, CheckStatus::Passing);
    let entries = good
        .health_service("web", false, &QueryOptions::default())
        .await
        .unwrap()
        .value;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].service.id, "a");
}

#[tokio::test]
async fn tokens_are_read_where_and_in_the_order_consul_reads_them() {
    let consul = standin::spawn(StandInConfig {
        token: Some("s3cret".into()),
        ..StandInConfig::default()
    })
    .await;
    let good = consul.client().unwrap();
    good.register(&ttl_registration("a", "web")).await.unwrap();
    let services = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    };
    let url = format!("{}/v1/agent/services", consul.base_url());

    // ?token= wins over the header, X-Consul-Token over Authorization.
    let (status, body) = services(
        raw()
            .get(format!("{url}?token=guess"))
            .header("X-Consul-Token", "s3cret"),
    )
    .await;
    assert_eq!((status, body.as_str()), (403, "ACL not found"));
    let (status, body) = services(
        raw()
            .get(format!("{url}?token=s3cret"))
            .header("X-Consul-Token", "guess"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"a\""), "{body}");
    let (status, _) = services(
        raw()
            .get(&url)
            .header("X-Consul-Token", "guess")
            .header("Authorization", "Bearer s3cret"),
    )
    .await;
    assert_eq!(status, 403);
    // The Bearer scheme in any case, surrounding spaces ignored, the first word taken.
    for value in ["bearer s3cret", "BEARER  s3cret ", "Bearer s3cret extra"] {
        let (status, body) = services(raw().get(&url).header("Authorization", value)).await;
        assert_eq!(status, 200, "{value:?}: {body}");
        assert!(body.contains("\"a\""), "{value:?}: {body}");
    }
    // Empty values and other schemes are no token at all: the anonymous token, whose reads
    // come back empty and, as in Consul, without X-Consul-Results-Filtered-By-ACLs (it is
    // only set for callers who presented a token).
    for request in [
        raw().get(format!("{url}?token=")),
        raw().get(&url).header("X-Consul-Token", ""),
        raw().get(&url).header("Authorization", "Bearer "),
        raw().get(&url).header("Authorization", "Basic czNjcmV0"),
        raw().get(format!("{}/v1/health/service/web", consul.base_url())),
        raw().get(format!("{}/v1/catalog/services", consul.base_url())),
        raw().get(format!("{}/v1/agent/checks", consul.base_url())),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response
                .headers()
                .get("X-Consul-Results-Filtered-By-ACLs")
                .is_none()
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(
            body == json!({}) || body == json!([]),
            "anonymous read shows {body}"
        );
    }
}

#[tokio::test]
async fn unknown_ids_are_404_before_permissions_as_in_consul() {
    let consul = standin::spawn(StandInConfig {
        token: Some("s3cret".into()),
        ..StandInConfig::default()
    })
    .await;
    for path in [
        "/v1/agent/service/deregister/nope",
        "/v1/agent/check/pass/nope",
    ] {
        let (status, body) = send_write(&consul, ("PUT", path, ""), None).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.starts_with("Unknown "), "{path}: {body}");
        // A wrong token is refused before the lookup.
        let (status, body) = send_write(
            &consul,
            ("PUT", path, ""),
            Some(("X-Consul-Token", "guess")),
        )
        .await;
        assert_eq!((status, body.as_str()), (403, "ACL not found"), "{path}");
    }
}

#[tokio::test]
async fn ui_lists_services_instances_and_checks() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let client = consul.client().unwrap();
    client
        .register(&ttl_registration("node-<1>", "inference"))
        .await
        .unwrap();
    client
        .check_fail("service:node-<1>", Some("model not loaded"))
        .await
        .unwrap();
    for path in ["/ui", "/ui/"] {
        let response = raw()
            .get(format!("{}{path}", consul.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let html = response.text().await.unwrap();
        assert!(html.contains("<h2>inference</h2>"), "{html}");
        assert!(html.contains("node-&lt;1&gt;"), "instance IDs are escaped");
        assert!(html.contains("10.0.0.7:8001"));
        assert!(html.contains("critical"));
        assert!(html.contains("model not loaded"));
        assert!(html.contains("http-equiv=\"refresh\""));
        assert!(html.contains("production uses real Consul"));
    }
    let root = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(consul.base_url())
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 308);
    assert_eq!(root.headers()["location"], "/ui/");
}

#[tokio::test]
async fn ui_requires_the_token_when_acls_are_on() {
    let consul = standin::spawn(StandInConfig {
        token: Some("s3cret".into()),
        ..StandInConfig::default()
    })
    .await;
    let without = raw()
        .get(format!("{}/ui/", consul.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), 403);
    let with = raw()
        .get(format!("{}/ui/?token=s3cret", consul.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), 200);
    assert!(with.text().await.unwrap().contains("url=/ui/?token=s3cret"));
}

#[tokio::test]
async fn unknown_paths_and_methods_are_refused() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let missing = raw()
        .get(format!("{}/v1/kv/x", consul.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let wrong_method = raw()
        .get(format!("{}/v1/agent/service/register", consul.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
}

#[tokio::test]
async fn the_client_reports_an_unreachable_consul() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let client = consul.client().unwrap();
    consul.shutdown().await;
    let started = std::time::Instant::now();
    match client.leader().await.unwrap_err() {
        ConsulError::Unreachable { .. } => {}
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}
