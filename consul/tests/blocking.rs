//! Blocking queries through the project's client, including a stand-in restart on the same
//! port (the index goes backwards and the client starts over).

mod common;

use std::time::{Duration, Instant};

use consul::standin::{self, StandInConfig};
use consul::{AgentServiceRegistration, QueryOptions};

fn service(id: &str) -> AgentServiceRegistration {
    AgentServiceRegistration {
        id: Some(id.into()),
        name: "web".into(),
        port: Some(80),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_blocking_health_query_returns_when_the_service_changes() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let client = consul.client().unwrap();
    let first = client
        .health_service("web", false, &QueryOptions::default())
        .await
        .unwrap();
    assert!(first.value.is_empty());

    let waiting = {
        let client = client.clone();
        let options = QueryOptions {
            index: Some(first.index),
            wait: Some(Duration::from_secs(30)),
        };
        tokio::spawn(async move { client.health_service("web", false, &options).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "blocks while nothing changes");
    let registered = Instant::now();
    client.register(&service("w1")).await.unwrap();
    let second = waiting.await.unwrap().unwrap();
    assert!(registered.elapsed() < Duration::from_secs(5));
    assert!(second.index > first.index);
    assert_eq!(second.value.len(), 1);
}

#[tokio::test]
async fn a_blocking_query_returns_the_same_index_when_wait_expires() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let client = consul.client().unwrap();
    client.register(&service("w1")).await.unwrap();
    let first = client
        .health_service("web", false, &QueryOptions::default())
        .await
        .unwrap();
    let started = Instant::now();
    let second = client
        .health_service(
            "web",
            false,
            &QueryOptions {
                index: Some(first.index),
                wait: Some(Duration::from_millis(300)),
            },
        )
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    assert_eq!(second.index, first.index);
    assert_eq!(second.value, first.value);
}

#[tokio::test]
async fn catalog_services_blocks_too() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let client = consul.client().unwrap();
    let url = format!("{}/v1/catalog/services", consul.base_url());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let first = http.get(&url).send().await.unwrap();
    let index = first.headers()["X-Consul-Index"]
        .to_str()
        .unwrap()
        .to_string();
    let waiting = {
        let url = format!("{url}?index={index}&wait=20s");
        tokio::spawn(async move { http.get(url).send().await.unwrap().text().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!waiting.is_finished());
    client.register(&service("w1")).await.unwrap();
    let body = waiting.await.unwrap();
    assert_eq!(body, r#"{"consul":[],"web":[]}"#);
}

#[tokio::test]
async fn restarting_on_the_same_port_resets_the_clients_index() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let addr = consul.addr();
    let client = consul.client().unwrap();
    for id in ["a", "b", "c", "d"] {
        client.register(&service(id)).await.unwrap();
    }
    let before = client
        .health_service("web", false, &QueryOptions::default())
        .await
        .unwrap();
    assert!(before.index >= 5);

    // A blocking query in flight ends promptly when the stand-in stops.
    let waiting = {
        let client = client.clone();
        let options = QueryOptions {
            index: Some(before.index),
            wait: Some(Duration::from_secs(600)),
        };
        tokio::spawn(async move { client.health_service("web", false, &options).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = Instant::now();
    consul.shutdown().await;
    let _ = waiting.await.unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(5));

    let restarted = standin::spawn_on(addr, StandInConfig::default())
        .await
        .unwrap();
    assert_eq!(restarted.addr(), addr);
    // The new agent's index (1) is below the one we hold: the client resets to 0 ...
    let after = client
        .health_service(
            "web",
            false,
            &QueryOptions {
                index: Some(before.index),
                wait: Some(Duration::from_millis(200)),
            },
        )
        .await
        .unwrap();
    assert_eq!(after.index, 0);
    assert!(after.value.is_empty(), "a restarted dev agent starts empty");
    // ... so the next call answers at once with the new index.
    let fresh = client
        .health_service(
            "web",
            false,
            &QueryOptions {
                index: Some(after.index),
                wait: Some(Duration::from_secs(30)),
            },
        )
        .await
        .unwrap();
    assert_eq!(fresh.index, 1);
    restarted.shutdown().await;
}
