//! Real HTTP/TCP checks, TTL expiry and the reaper, against live sockets with sub-second
//! intervals (the paused-clock versions of the timing rules are unit tests in the crate).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{fast_config, spawn_target};
use consul::standin::{self, StandInConfig};
use consul::{
    AgentServiceCheck, AgentServiceRegistration, CheckStatus, Client, HealthCheck, QueryOptions,
};
use test_support::eventually;

fn http_registration(id: &str, url: &str) -> AgentServiceRegistration {
    AgentServiceRegistration {
        id: Some(id.into()),
        name: "web".into(),
        address: Some("127.0.0.1".into()),
        port: Some(80),
        check: Some(AgentServiceCheck {
            http: Some(url.into()),
            interval: Some("100ms".into()),
            timeout: Some("1s".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn check(client: &Client, id: &str) -> Option<HealthCheck> {
    client.agent_checks().await.unwrap().get(id).cloned()
}

async fn wait_status(client: &Client, id: &str, status: CheckStatus) -> HealthCheck {
    eventually(
        Duration::from_secs(5),
        &format!("{id} to be {status}"),
        || async { check(client, id).await.filter(|c| c.status == status) },
    )
    .await
}

#[tokio::test]
async fn http_check_maps_2xx_429_and_errors_like_consul() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let client = consul.client().unwrap();
    let target = spawn_target().await;
    client
        .register(&http_registration("w1", &target.url()))
        .await
        .unwrap();
    assert_eq!(
        check(&client, "service:w1").await.unwrap().status,
        CheckStatus::Critical,
        "critical until the first probe"
    );

    let passing = wait_status(&client, "service:w1", CheckStatus::Passing).await;
    assert_eq!(
        passing.output,
        format!("HTTP GET {}: 200 OK Output: ok", target.url())
    );
    let entries = client
        .health_service("web", true, &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(entries.value.len(), 1);

    target.set_status(429);
    let warning = wait_status(&client, "service:w1", CheckStatus::Warning).await;
    assert!(warning.output.contains("429 Too Many Requests"));
    let entries = client
        .health_service("web", true, &QueryOptions::default())
        .await
        .unwrap();
    assert!(entries.value.is_empty(), "warning is excluded by ?passing");

    target.set_status(503);
    wait_status(&client, "service:w1", CheckStatus::Critical).await;

    target.set_status(204);
    wait_status(&client, "service:w1", CheckStatus::Passing).await;
}

#[tokio::test]
async fn http_check_honours_timeout_and_reports_connection_errors() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let client = consul.client().unwrap();
    let target = spawn_target().await;
    target.set_delay(Duration::from_secs(3));
    let mut reg = http_registration("slow", &target.url());
    reg.check.as_mut().unwrap().timeout = Some("200ms".into());
    reg.check.as_mut().unwrap().status = Some(CheckStatus::Passing);
    client.register(&reg).await.unwrap();
    let slow = wait_status(&client, "service:slow", CheckStatus::Critical).await;
    assert!(slow.output.contains("Client.Timeout"), "{}", slow.output);

    // Nothing listens on a port we just released.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut reg = http_registration("gone", &format!("http://{closed}/health"));
    reg.check.as_mut().unwrap().status = Some(CheckStatus::Passing);
    client.register(&reg).await.unwrap();
    let gone = wait_status(&client, "service:gone", CheckStatus::Critical).await;
    assert!(
        gone.output
            .starts_with(&format!("Get \"http://{closed}/health\": ")),
        "{}",
        gone.output
    );
}

#[tokio::test]
async fn http_check_sends_method_headers_and_body() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let client = consul.client().unwrap();
    let target = spawn_target().await;
    let mut reg = http_registration("w1", &target.url());
    let c = reg.check.as_mut().unwrap();
    c.method = Some("POST".into());
    c.body = Some("{\"probe\":true}".into());
    c.header = BTreeMap::from([("X-Probe".to_string(), vec!["yes".to_string()])]);
    client.register(&reg).await.unwrap();
    wait_status(&client, "service:w1", CheckStatus::Passing).await;
    let seen = target.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.body, "{\"probe\":true}");
    let header = |name: &str| {
        seen.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("x-probe").as_deref(), Some("yes"));
    assert_eq!(header("user-agent").as_deref(), Some("Consul Health Check"));
}

#[tokio::test]
async fn first_probes_are_staggered_within_the_interval() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let client = consul.client().unwrap();
    let targets = [
        spawn_target().await,
        spawn_target().await,
        spawn_target().await,
    ];
    let registered = std::time::Instant::now();
    for (i, target) in targets.iter().enumerate() {
        let mut reg = http_registration(&format!("w{i}"), &target.url());
        reg.check.as_mut().unwrap().interval = Some("1s".into());
        client.register(&reg).await.unwrap();
    }
    let mut first_hits = Vec::new();
    for target in &targets {
        let at = eventually(Duration::from_secs(5), "a first probe", || async {
            (target.hits() > 0).then(|| registered.elapsed())
        })
        .await;
        first_hits.push(at);
    }
    // Each first probe lands within one interval (plus scheduling slack) ...
    assert!(
        first_hits.iter().all(|t| *t < Duration::from_millis(1500)),
        "{first_hits:?}"
    );
    // ... and not all at once: three uniform draws in [0, 1s) all below 50ms has a chance of
    // about 1 in 8000.
    assert!(
        first_hits.iter().any(|t| *t > Duration::from_millis(50)),
        "{first_hits:?}"
    );
}

#[tokio::test]
async fn checks_run_every_interval_and_stop_at_deregistration() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let client = consul.client().unwrap();
    let target = spawn_target().await;
    client
        .register(&http_registration("w1", &target.url()))
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "several probes", || async {
        (target.hits() >= 3).then_some(())
    })
    .await;
    client.deregister("w1").await.unwrap();
    // A probe may be in flight at deregistration; after that nothing more arrives.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let hits = target.hits();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(target.hits(), hits, "the runner stopped with the service");
}

#[tokio::test]
async fn tcp_check_passes_on_connect_and_fails_on_refusal() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let client = consul.client().unwrap();
    let target = spawn_target().await;
    let tcp = |id: &str, addr: String| AgentServiceRegistration {
        id: Some(id.into()),
        name: "db".into(),
        check: Some(AgentServiceCheck {
            tcp: Some(addr),
            interval: Some("100ms".into()),
            status: Some(CheckStatus::Warning),
            ..Default::default()
        }),
        ..Default::default()
    };
    client
        .register(&tcp("up", target.addr.to_string()))
        .await
        .unwrap();
    let up = wait_status(&client, "service:up", CheckStatus::Passing).await;
    assert_eq!(up.output, format!("TCP connect {}: Success", target.addr));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    client
        .register(&tcp("down", closed.to_string()))
        .await
        .unwrap();
    let down = wait_status(&client, "service:down", CheckStatus::Critical).await;
    assert!(down.output.starts_with(&format!("dial tcp {closed}: ")));
}

#[tokio::test]
async fn ttl_check_expires_without_updates() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let client = consul.client().unwrap();
    client
        .register(&AgentServiceRegistration {
            id: Some("t".into()),
            name: "worker".into(),
            check: Some(AgentServiceCheck {
                ttl: Some("300ms".into()),
                status: Some(CheckStatus::Passing),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let expired = wait_status(&client, "service:t", CheckStatus::Critical).await;
    assert_eq!(expired.output, "TTL expired");
    client.check_pass("service:t", Some("back")).await.unwrap();
    assert_eq!(
        check(&client, "service:t").await.unwrap().status,
        CheckStatus::Passing
    );
    let again = wait_status(&client, "service:t", CheckStatus::Critical).await;
    assert_eq!(
        again.output,
        "TTL expired (last output before timeout follows): back"
    );
}

#[tokio::test]
async fn reaper_deregisters_services_critical_for_too_long() {
    let consul = standin::spawn(fast_config()).await;
    let client = consul.client().unwrap();
    let target = spawn_target().await;
    target.set_status(500);
    let mut failing = http_registration("bad", &target.url());
    // Below the (test) floor of 300ms: raised to it.
    failing
        .check
        .as_mut()
        .unwrap()
        .deregister_critical_service_after = Some("10ms".into());
    client.register(&failing).await.unwrap();
    let healthy_target = spawn_target().await;
    let mut healthy = http_registration("good", &healthy_target.url());
    healthy
        .check
        .as_mut()
        .unwrap()
        .deregister_critical_service_after = Some("10ms".into());
    client.register(&healthy).await.unwrap();
    let started = std::time::Instant::now();

    eventually(
        Duration::from_secs(5),
        "the failing service to be reaped",
        || async { (!client.agent_services().await.unwrap().contains_key("bad")).then_some(()) },
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "not before the floor"
    );
    assert!(check(&client, "service:bad").await.is_none());
    assert!(client.agent_services().await.unwrap().contains_key("good"));
    let definition = check(&client, "service:good").await.unwrap().definition;
    assert_eq!(definition.deregister_critical_service_after, "300ms");
}
