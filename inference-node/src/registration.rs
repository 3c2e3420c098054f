//! Consul registration: register at startup, stay registered, deregister at shutdown.
//!
//! [`maintain`] runs beside the server and never delays it. It registers the node (retrying
//! with jittered exponential backoff while Consul is unreachable), then every refresh interval
//! asks the agent whether it still knows the node's ID and re-registers when it does not (a
//! restarted Consul, or one that reaped the node). When cancelled it deregisters, bounded by
//! [`DEREGISTER_TIMEOUT`]. When the registration changes (the node's model set changed) it
//! registers the new one at once, so the gateway routes a new model only to nodes that
//! have it. Consul sits behind [`ServiceRegistry`] so the loop can be tested with a paused
//! clock.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use consul::{AgentServiceCheck, AgentServiceRegistration};
use node_contract::MODELS_META_KEY;
use rand::Rng;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Longest time shutdown waits for Consul to confirm deregistration.
pub const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(3);
/// First retry delay while Consul is unreachable.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
/// Longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The service-registry operations the node needs (Consul's agent API).
pub trait ServiceRegistry: Send + Sync + 'static {
    /// Registers or replaces the service.
    fn register(
        &self,
        service: &AgentServiceRegistration,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Removes the service with this ID.
    fn deregister(&self, id: &str) -> impl Future<Output = Result<(), String>> + Send;
    /// Returns whether the agent knows a service with this ID.
    fn is_registered(&self, id: &str) -> impl Future<Output = Result<bool, String>> + Send;
}

impl ServiceRegistry for consul::Client {
    async fn register(&self, service: &AgentServiceRegistration) -> Result<(), String> {
        consul::Client::register(self, service)
            .await
            .map_err(|e| e.to_string())
    }

    async fn deregister(&self, id: &str) -> Result<(), String> {
        consul::Client::deregister(self, id)
            .await
            .map_err(|e| e.to_string())
    }

    async fn is_registered(&self, id: &str) -> Result<bool, String> {
        let services = self.agent_services().await.map_err(|e| e.to_string())?;
        Ok(services.contains_key(id))
    }
}

/// Builds the node's registration: ID `host:port`, an HTTP check on `/health`, and `Meta`
/// listing the loaded models.
pub fn service_definition(
    config: &Config,
    host: &str,
    port: u16,
    models: &[&str],
    default_model: &str,
) -> AgentServiceRegistration {
    let id = format!("{host}:{port}");
    let meta = BTreeMap::from([
        (MODELS_META_KEY.to_string(), models.join(",")),
        ("default_model".to_string(), default_model.to_string()),
        ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
    ]);
    AgentServiceRegistration {
        id: Some(id.clone()),
        name: config.service_name.clone(),
        tags: vec!["inference-node".to_string()],
        address: Some(host.to_string()),
        port: Some(port),
        meta,
        check: Some(AgentServiceCheck {
            check_id: Some(format!("service:{id}")),
            name: Some(format!("{} /health on {id}", config.service_name)),
            http: Some(format!("http://{}/health", consul::host_port(host, port))),
            method: Some("GET".to_string()),
            interval: Some(consul::duration::format(config.check_interval)),
            timeout: Some(consul::duration::format(config.check_timeout)),
            deregister_critical_service_after: Some(consul::duration::format(
                config.deregister_after,
            )),
            ..AgentServiceCheck::default()
        }),
        ..AgentServiceRegistration::default()
    }
}

/// Keeps the latest of `services` registered until `cancel` fires, then deregisters it.
/// A new registration (same ID) replaces the old one at once.
pub async fn maintain<R: ServiceRegistry>(
    registry: R,
    mut services: watch::Receiver<AgentServiceRegistration>,
    refresh: Duration,
    cancel: CancellationToken,
) {
    let first = services.borrow_and_update().clone();
    let id = first.id.clone().unwrap_or_else(|| first.name.clone());
    let mut backoff = INITIAL_BACKOFF;
    let mut registered = false;
    let mut reachable = true;
    loop {
        let service = services.borrow_and_update().clone();
        let outcome = tokio::select! {
            _ = cancel.cancelled() => break,
            outcome = step(&registry, &service, &id, registered) => outcome,
        };
        let wait = match outcome {
            Ok(now_registered) => {
                if !reachable {
                    tracing::info!(consul = "reachable", "Consul answers again");
                }
                if now_registered && !registered {
                    tracing::info!(service_id = %id, "registered in Consul");
                }
                reachable = true;
                registered = now_registered;
                backoff = INITIAL_BACKOFF;
                if registered { refresh } else { Duration::ZERO }
            }
            Err(error) => {
                if reachable {
                    tracing::warn!(%error, service_id = %id, "Consul registration failed; retrying with backoff");
                }
                reachable = false;
                let wait = jitter(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
            () = changed(&mut services) => {
                tracing::info!(service_id = %id, "the node's models changed; registering again");
                registered = false;
            }
        }
    }
    match tokio::time::timeout(DEREGISTER_TIMEOUT, registry.deregister(&id)).await {
        Ok(Ok(())) => tracing::info!(service_id = %id, "deregistered from Consul"),
        Ok(Err(error)) => tracing::warn!(%error, service_id = %id, "Consul deregistration failed"),
        Err(_) => tracing::warn!(service_id = %id, "Consul deregistration timed out"),
    }
}

/// Completes when the registration changes; never when it cannot any more.
async fn changed(services: &mut watch::Receiver<AgentServiceRegistration>) {
    if services.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One round: register when not registered; otherwise confirm the agent still knows `id`.
/// Returns whether the node is registered afterwards.
async fn step<R: ServiceRegistry>(
    registry: &R,
    service: &AgentServiceRegistration,
    id: &str,
    registered: bool,
) -> Result<bool, String> {
    if registered {
        let known = registry.is_registered(id).await?;
        if !known {
            tracing::warn!(service_id = %id, "Consul no longer knows this node; registering again");
        }
        return Ok(known);
    }
    registry.register(service).await?;
    Ok(true)
}

/// Spreads retries of many nodes: a delay between 50% and 100% of `base`.
fn jitter(base: Duration) -> Duration {
    let factor = rand::rng().random_range(0.5..=1.0);
    base.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use clap::Parser;

    /// An in-memory agent that can be made unreachable and can forget services.
    #[derive(Clone, Default)]
    struct FakeAgent(Arc<Mutex<FakeState>>);

    #[derive(Default)]
    struct FakeState {
        down: bool,
        services: Vec<String>,
        attempts: usize,
        registrations: usize,
        deregistrations: usize,
        last_models: String,
    }

    impl ServiceRegistry for FakeAgent {
        async fn register(&self, service: &AgentServiceRegistration) -> Result<(), String> {
            let mut state = self.0.lock().unwrap();
            state.attempts += 1;
            if state.down {
                return Err("connection refused".into());
            }
            state.registrations += 1;
            state.last_models = service.meta[MODELS_META_KEY].clone();
            let id = service.id.clone().unwrap();
            state.services.retain(|s| *s != id);
            state.services.push(id);
            Ok(())
        }

        async fn deregister(&self, id: &str) -> Result<(), String> {
            let mut state = self.0.lock().unwrap();
            if state.down {
                return Err("connection refused".into());
            }
            state.deregistrations += 1;
            state.services.retain(|s| s != id);
            Ok(())
        }

        async fn is_registered(&self, id: &str) -> Result<bool, String> {
            let state = self.0.lock().unwrap();
            if state.down {
                return Err("connection refused".into());
            }
            Ok(state.services.iter().any(|s| s == id))
        }
    }

    fn service() -> AgentServiceRegistration {
        let config = Config::try_parse_from(["inference-node"]).unwrap();
        service_definition(&config, "node-1", 5000, &["A", "B"], "A")
    }

    #[test]
    fn definition_has_check_id_and_meta() {
        let s = service();
        assert_eq!(s.id.as_deref(), Some("node-1:5000"));
        assert_eq!(s.name, "gdp-growth-model");
        assert_eq!(s.meta["models"], "A,B");
        let check = s.check.unwrap();
        assert_eq!(check.http.as_deref(), Some("http://node-1:5000/health"));
        assert_eq!(check.interval.as_deref(), Some("10s"));
        assert_eq!(check.timeout.as_deref(), Some("2s"));
        assert_eq!(
            check.deregister_critical_service_after,
            Some(consul::duration::format(Duration::from_secs(60)))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_consul_answers_then_reregisters_when_forgotten() {
        let agent = FakeAgent::default();
        agent.0.lock().unwrap().down = true;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(maintain(
            agent.clone(),
            watch::channel(service()).1,
            Duration::from_secs(5),
            cancel.clone(),
        ));

        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(agent.0.lock().unwrap().registrations, 0);
        agent.0.lock().unwrap().down = false;
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(agent.0.lock().unwrap().registrations, 1);

        // Consul restarts and forgets the node: the next refresh registers it again.
        agent.0.lock().unwrap().services.clear();
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(agent.0.lock().unwrap().registrations, 2);
        assert_eq!(
            agent.0.lock().unwrap().services,
            vec!["node-1:5000".to_string()]
        );

        cancel.cancel();
        task.await.unwrap();
        let state = agent.0.lock().unwrap();
        assert_eq!(state.deregistrations, 1);
        assert!(state.services.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_registration_is_registered_at_once() {
        let agent = FakeAgent::default();
        let (tx, rx) = watch::channel(service());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(maintain(
            agent.clone(),
            rx,
            Duration::from_secs(60),
            cancel.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(agent.0.lock().unwrap().registrations, 1);
        let config = Config::try_parse_from(["inference-node"]).unwrap();
        tx.send(service_definition(
            &config,
            "node-1",
            5000,
            &["A", "B", "C"],
            "A",
        ))
        .unwrap();
        // Well within one refresh interval (60 s).
        tokio::time::sleep(Duration::from_secs(1)).await;
        {
            let state = agent.0.lock().unwrap();
            assert_eq!(state.registrations, 2);
            assert_eq!(state.last_models, "A,B,C");
        }
        cancel.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_to_the_cap() {
        let agent = FakeAgent::default();
        agent.0.lock().unwrap().down = true;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(maintain(
            agent.clone(),
            watch::channel(service()).1,
            Duration::from_secs(5),
            cancel.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(120)).await;
        cancel.cancel();
        task.await.unwrap();
        // 0.2 s doubling to a 10 s cap, with 50-100% jitter: 12 to 25 attempts in 120 s.
        let attempts = agent.0.lock().unwrap().attempts;
        assert!((12..=25).contains(&attempts), "{attempts} attempts");
        // Shutdown with Consul down still finishes (the deregistration fails, bounded).
        assert_eq!(agent.0.lock().unwrap().deregistrations, 0);
    }
}
