//! Registration against the project's Consul stand-in (which speaks Consul's HTTP API and runs
//! the HTTP health checks for real): register with a passing /health check, survive Consul
//! going away, re-register when it comes back empty, deregister on shutdown.

mod common;

use std::time::Duration;

use common::{client, config, seed_example, spawn_node};
use consul::standin::{self, StandInConfig};
use consul::{CheckStatus, QueryOptions};
use test_support::eventually;

fn fast_consul_flags(url: &str) -> Vec<String> {
    [
        "--service-discovery-url",
        url,
        "--advertise-address",
        "127.0.0.1",
        "--check-interval",
        "200ms",
        "--check-timeout",
        "150ms",
        "--registration-refresh",
        "200ms",
    ]
    .map(String::from)
    .to_vec()
}

fn node_config(url: &str) -> inference_node::Config {
    let flags = fast_consul_flags(url);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    config(&flags)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_passes_its_check_and_deregisters() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let agent = consul.client().unwrap();
    let node = spawn_node(node_config(&consul.base_url())).await;
    let id = format!("127.0.0.1:{}", node.addr.port());

    eventually(Duration::from_secs(5), "the node is registered", || async {
        agent.agent_services().await.unwrap().contains_key(&id)
    })
    .await;
    let services = agent.agent_services().await.unwrap();
    let service = &services[&id];
    assert_eq!(service.service, "gdp-growth-model");
    assert_eq!(service.address, "127.0.0.1");
    assert_eq!(service.port, node.addr.port());
    assert!(
        service.meta["models"]
            .split(',')
            .any(|m| m == "RandomForest"),
        "{:?}",
        service.meta
    );
    assert_eq!(service.meta["default_model"], "LinearRegression");

    let checks = agent.agent_checks().await.unwrap();
    let check = checks
        .values()
        .find(|c| c.service_id == id)
        .expect("a check for the node");
    assert_eq!(check.definition.http, format!("http://{id}/health"));
    assert_eq!(check.definition.deregister_critical_service_after, "1m0s");

    eventually(
        Duration::from_secs(5),
        "the /health check passes",
        || async {
            let entries = agent
                .health_service("gdp-growth-model", true, &QueryOptions::default())
                .await
                .unwrap()
                .value;
            entries
                .iter()
                .any(|e| e.service.id == id && e.aggregated_status() == CheckStatus::Passing)
        },
    )
    .await;

    node.shutdown().await.unwrap();
    let services = agent.agent_services().await.unwrap();
    assert!(
        !services.contains_key(&id),
        "still registered after shutdown: {services:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_without_consul_and_registers_when_it_appears_or_forgets() {
    // An address where no Consul runs yet.
    let placeholder = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let consul_addr = placeholder.local_addr().unwrap();
    drop(placeholder);

    let node = spawn_node(node_config(&format!("http://{consul_addr}"))).await;
    let id = format!("127.0.0.1:{}", node.addr.port());
    let http = client();
    // Serving does not wait for Consul.
    let response = http
        .post(node.url("/predict"))
        .json(&seed_example())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Consul appears: the node registers (backoff is capped, so this is quick).
    let consul = standin::spawn_on(consul_addr, StandInConfig::default())
        .await
        .unwrap();
    let agent = consul.client().unwrap();
    eventually(
        Duration::from_secs(15),
        "registered once Consul is up",
        || async {
            agent
                .agent_services()
                .await
                .is_ok_and(|s| s.contains_key(&id))
        },
    )
    .await;

    // Consul goes away: the node keeps serving.
    consul.shutdown().await;
    for _ in 0..5 {
        let response = http
            .post(node.url("/predict"))
            .json(&seed_example())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    // Consul comes back with an empty catalog: the node registers again.
    let consul = standin::spawn_on(consul_addr, StandInConfig::default())
        .await
        .unwrap();
    let agent = consul.client().unwrap();
    eventually(
        Duration::from_secs(15),
        "registered again after Consul forgot it",
        || async {
            agent
                .agent_services()
                .await
                .is_ok_and(|s| s.contains_key(&id))
        },
    )
    .await;

    node.shutdown().await.unwrap();
    assert!(!agent.agent_services().await.unwrap().contains_key(&id));
}
