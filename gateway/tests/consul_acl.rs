//! The cluster against a Consul with ACLs on (the stand-in with a management token, as
//! `scripts/run.sh` and compose run it): a node and a gateway given `CONSUL_HTTP_TOKEN` send
//! it on every Consul call (registration, refresh, blocking health queries, deregistration);
//! without it the node cannot register and the gateway sees no node.

mod common;

use std::time::Duration;

use common::*;
use consul::standin::{self, StandInConfig};
use consul::{Client, QueryOptions};

const TOKEN: &str = "acl-test-token";

async fn registered(consul: &Client) -> Vec<String> {
    consul
        .health_service("gdp-growth-model", false, &QueryOptions::default())
        .await
        .unwrap()
        .value
        .into_iter()
        .map(|e| e.service.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_and_gateway_send_the_consul_token_on_every_call() {
    gateway::telemetry::prometheus();
    let consul = standin::spawn(StandInConfig {
        token: Some(TOKEN.into()),
        ..StandInConfig::default()
    })
    .await;
    let admin = consul.client().unwrap();
    let url = consul.base_url();

    // A node without the token is refused; one with it registers and passes its check.
    let stranger = spawn_node_with(&url, "200ms", &[]);
    let node = spawn_node_with(&url, "200ms", &["--consul-token", TOKEN]);
    eventually(
        Duration::from_secs(15),
        "the node with the token registered",
        || async { registered(&admin).await == vec![node.addr()] },
    )
    .await;

    // The gateway with the token finds it (blocking queries) and routes to it.
    let gw = spawn_gateway(gateway_config(&url, &["--consul-token", TOKEN])).await;
    wait_for_set(&gw, &[&node]).await;
    let http = client();
    assert_eq!(predict(&http, &gw).await, 200);
    // A gateway without the token sees no node at all.
    let blind = spawn_gateway(gateway_config(&url, &[])).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(services(&blind).await.is_empty());
    assert_eq!(predict(&http, &blind).await, 503);
    assert_eq!(
        registered(&admin).await,
        vec![node.addr()],
        "the stranger never got in"
    );

    // A second node with the token joins the gateway's set (the gateway's blocking query is
    // woken by the change), and leaves it when it stops (its deregistration carries the token).
    let second = spawn_node_with(&url, "200ms", &["--consul-token", TOKEN]);
    wait_for_set(&gw, &[&node, &second]).await;
    let second_addr = second.addr();
    drop(second);
    wait_for_set(&gw, &[&node]).await;
    eventually(
        Duration::from_secs(10),
        "the stopped node deregistered",
        || async { !registered(&admin).await.contains(&second_addr) },
    )
    .await;
    drop(stranger);
}
