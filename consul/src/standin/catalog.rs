//! The stand-in's state: one node, its services and checks, and a Raft-like index.
//!
//! Everything here is synchronous and takes the current time as an argument, so the rules
//! (upsert keeping check status, TTL expiry, the reaper, `?passing`) are tested without
//! sleeping. The HTTP layer and the check runners hold it behind a mutex.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::duration;
use crate::standin::registration::{CheckKind, CheckSpec, ServiceSpec};
use crate::types::{
    AgentService, CheckStatus, HealthCheck, HealthCheckDefinition, Node, ServiceEntry,
};

/// Check ID of the node's own health check, always passing while the agent runs.
pub const SERF_CHECK_ID: &str = "serfHealth";
/// Consul keeps at most this many bytes of check output.
pub const OUTPUT_MAX_SIZE: usize = 4096;

/// Who the node is.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Node UUID.
    pub id: String,
    /// Address the node advertises.
    pub address: String,
    /// Datacenter name.
    pub datacenter: String,
}

/// A registered check with its runtime state.
#[derive(Debug)]
pub struct CheckRecord {
    /// The check as the API shows it.
    pub check: HealthCheck,
    /// How it runs.
    pub spec: CheckSpec,
    /// Distinguishes this registration from earlier ones with the same ID, so a runner of a
    /// replaced check cannot write into its successor.
    pub generation: u64,
    /// When the check last turned critical (for the reaper).
    pub critical_since: Option<Instant>,
    /// When a TTL check expires unless updated.
    pub ttl_deadline: Option<Instant>,
    successes: u32,
    failures: u32,
    runner: Option<Runner>,
}

/// Aborts the check's runner task when the record is dropped (deregistered or replaced).
#[derive(Debug)]
struct Runner(AbortHandle);

impl Drop for Runner {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A new check whose runner the caller must start.
#[derive(Debug, Clone)]
pub struct NewCheck {
    /// Check ID.
    pub check_id: String,
    /// Its generation.
    pub generation: u64,
    /// How it runs.
    pub spec: CheckSpec,
}

/// Why a TTL update was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum TtlError {
    /// No check with that ID.
    UnknownCheck(String),
    /// The check exists but is not a TTL check.
    NotTtl(String),
}

/// The whole state of the stand-in agent.
#[derive(Debug)]
pub struct Catalog {
    node: NodeInfo,
    index: u64,
    node_index: u64,
    services: BTreeMap<String, AgentService>,
    checks: BTreeMap<String, CheckRecord>,
    /// Last index that touched each service name (kept after the last instance leaves, so a
    /// blocking query on that name sees the removal).
    name_index: HashMap<String, u64>,
    next_generation: u64,
}

// === impl Catalog ===

impl Catalog {
    /// Creates an empty catalog holding only the node (with its `serfHealth` check).
    pub fn new(node: NodeInfo) -> Catalog {
        Catalog {
            node,
            index: 1,
            node_index: 1,
            services: BTreeMap::new(),
            checks: BTreeMap::new(),
            name_index: HashMap::new(),
            next_generation: 1,
        }
    }

    /// Returns the current index (never 0).
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Returns the node description.
    pub fn node_info(&self) -> &NodeInfo {
        &self.node
    }

    /// Registers or replaces a service. Checks that already existed keep their status and
    /// output; without `replace_existing_checks`, the service's other checks stay too.
    /// Returns the checks whose runners must (re)start.
    pub fn register(
        &mut self,
        spec: ServiceSpec,
        replace_existing_checks: bool,
        now: Instant,
    ) -> Vec<NewCheck> {
        let ServiceSpec { service, checks } = spec;
        let id = service.id.clone();
        let new_check_ids: BTreeSet<&str> = checks.iter().map(|c| c.check_id.as_str()).collect();
        let stale: Vec<String> = self
            .checks
            .iter()
            .filter(|(cid, rec)| {
                rec.check.service_id == id
                    && replace_existing_checks
                    && !new_check_ids.contains(cid.as_str())
            })
            .map(|(cid, _)| cid.clone())
            .collect();

        let old = self.services.get(&id).cloned();
        let old_name = old.as_ref().map(|s| s.service.clone());
        let service_changed = old.as_ref().is_none_or(|o| !same_service(o, &service));
        let checks_changed = !stale.is_empty()
            || checks.iter().any(|c| {
                self.checks
                    .get(&c.check_id)
                    .is_none_or(|rec| rec.spec != *c || rec.check.service_id != id)
            });
        // Tags of the service are copied into its checks; keep them in step.
        let tags_changed = old.as_ref().is_some_and(|o| o.tags != service.tags);
        if !service_changed && !checks_changed && !tags_changed {
            return Vec::new();
        }

        let index = self.bump(&service.service);
        if let Some(old_name) = old_name.filter(|n| *n != service.service) {
            self.name_index.insert(old_name, index);
        }
        for cid in stale {
            self.checks.remove(&cid);
        }
        let mut stored = service.clone();
        stored.create_index = old.as_ref().map_or(index, |o| o.create_index);
        stored.modify_index = if service_changed || tags_changed {
            index
        } else {
            old.as_ref().map_or(index, |o| o.modify_index)
        };
        self.services.insert(id.clone(), stored);

        // Keep the service name and tags of checks that are not being re-registered.
        for rec in self.checks.values_mut() {
            if rec.check.service_id == id
                && (rec.check.service_name != service.service
                    || rec.check.service_tags != service.tags)
            {
                rec.check.service_name = service.service.clone();
                rec.check.service_tags = service.tags.clone();
                rec.check.modify_index = index;
            }
        }

        let mut started = Vec::new();
        for spec in checks {
            let previous = self.checks.remove(&spec.check_id);
            if let Some(prev) = &previous
                && prev.spec == spec
                && prev.check.service_id == id
            {
                // Unchanged definition: keep the record, and its runner, as they are.
                let mut prev = previous.expect("checked above");
                prev.check.service_name = service.service.clone();
                prev.check.service_tags = service.tags.clone();
                self.checks.insert(spec.check_id.clone(), prev);
                continue;
            }
            let generation = self.next_generation;
            self.next_generation += 1;
            let mut status = spec.initial_status.unwrap_or(CheckStatus::Critical);
            let mut output = String::new();
            let mut critical_since = None;
            let mut create_index = index;
            if let Some(prev) = &previous {
                // Consul restores status and output from the previous registration.
                status = prev.check.status;
                output = prev.check.output.clone();
                critical_since = prev.critical_since;
                create_index = prev.check.create_index;
            }
            if status == CheckStatus::Critical && critical_since.is_none() {
                critical_since = Some(now);
            }
            if status != CheckStatus::Critical {
                critical_since = None;
            }
            let ttl_deadline = spec.ttl.map(|ttl| now + ttl);
            let check = HealthCheck {
                node: self.node.name.clone(),
                check_id: spec.check_id.clone(),
                name: spec.name.clone(),
                status,
                notes: spec.notes.clone(),
                output,
                service_id: id.clone(),
                service_name: service.service.clone(),
                service_tags: service.tags.clone(),
                kind: spec.kind.type_name().to_string(),
                interval: spec.interval.map(duration::format).unwrap_or_default(),
                timeout: match spec.kind {
                    CheckKind::Ttl => String::new(),
                    _ => duration::format(spec.timeout),
                },
                definition: definition_of(&spec),
                create_index,
                modify_index: index,
            };
            started.push(NewCheck {
                check_id: spec.check_id.clone(),
                generation,
                spec: spec.clone(),
            });
            // `previous` (and its runner) is dropped here, which stops the old runner.
            drop(previous);
            self.checks.insert(
                spec.check_id.clone(),
                CheckRecord {
                    check,
                    spec,
                    generation,
                    critical_since,
                    ttl_deadline,
                    successes: 0,
                    failures: 0,
                    runner: None,
                },
            );
        }
        started
    }

    /// Attaches the runner task of a check; it is aborted when the check goes away. Returns
    /// false (and aborts the task) if the check was replaced or removed meanwhile.
    pub fn attach_runner(&mut self, check_id: &str, generation: u64, task: AbortHandle) -> bool {
        match self.checks.get_mut(check_id) {
            Some(rec) if rec.generation == generation => {
                rec.runner = Some(Runner(task));
                true
            }
            _ => {
                task.abort();
                false
            }
        }
    }

    /// Drops every service and check (stopping their runners), at shutdown.
    pub fn clear(&mut self) {
        self.checks.clear();
        self.services.clear();
    }

    /// Removes a service and its checks; `None` if there is no such service.
    pub fn deregister(&mut self, service_id: &str) -> Option<AgentService> {
        let service = self.services.remove(service_id)?;
        self.bump(&service.service);
        self.checks
            .retain(|_, rec| rec.check.service_id != service_id);
        Some(service)
    }

    /// Records the result of one HTTP/TCP probe, honouring `SuccessBeforePassing` and
    /// `FailuresBeforeCritical`. Returns whether the catalog changed.
    pub fn record_probe(
        &mut self,
        check_id: &str,
        generation: u64,
        status: CheckStatus,
        output: String,
        now: Instant,
    ) -> bool {
        let Some(rec) = self.checks.get_mut(check_id) else {
            return false;
        };
        if rec.generation != generation {
            return false;
        }
        if status == CheckStatus::Critical {
            rec.failures = rec.failures.saturating_add(1);
            rec.successes = 0;
            if rec.failures < rec.spec.failures_before_critical {
                return false;
            }
        } else {
            rec.successes = rec.successes.saturating_add(1);
            rec.failures = 0;
            if rec.successes < rec.spec.success_before_passing {
                return false;
            }
        }
        self.set_status(check_id, status, output, now)
    }

    /// Updates a TTL check (`/v1/agent/check/pass|warn|fail`) and restarts its TTL.
    pub fn update_ttl(
        &mut self,
        check_id: &str,
        status: CheckStatus,
        note: String,
        now: Instant,
    ) -> Result<bool, TtlError> {
        let rec = self
            .checks
            .get_mut(check_id)
            .ok_or_else(|| TtlError::UnknownCheck(check_id.to_string()))?;
        let Some(ttl) = rec.spec.ttl else {
            return Err(TtlError::NotTtl(check_id.to_string()));
        };
        rec.ttl_deadline = Some(now + ttl);
        Ok(self.set_status(check_id, status, note, now))
    }

    /// Returns the TTL deadline of a check, if it is still the given generation.
    pub fn ttl_deadline(&self, check_id: &str, generation: u64) -> Option<Option<Instant>> {
        self.checks
            .get(check_id)
            .filter(|rec| rec.generation == generation)
            .map(|rec| rec.ttl_deadline)
    }

    /// Turns a TTL check critical if its deadline has passed. Returns whether it expired.
    pub fn expire_ttl(&mut self, check_id: &str, generation: u64, now: Instant) -> bool {
        let Some(rec) = self.checks.get_mut(check_id) else {
            return false;
        };
        if rec.generation != generation || rec.ttl_deadline.is_none_or(|d| d > now) {
            return false;
        }
        rec.ttl_deadline = None;
        let output = if rec.check.output.is_empty() {
            "TTL expired".to_string()
        } else {
            format!(
                "TTL expired (last output before timeout follows): {}",
                rec.check.output
            )
        };
        self.set_status(check_id, CheckStatus::Critical, output, now);
        true
    }

    /// Removes every service that has a check critical for longer than its
    /// `DeregisterCriticalServiceAfter`. Returns the removed service IDs.
    pub fn reap(&mut self, now: Instant) -> Vec<String> {
        let due: BTreeSet<String> = self
            .checks
            .values()
            .filter(
                |rec| match (rec.spec.deregister_after, rec.critical_since) {
                    (Some(after), Some(since)) => now.duration_since(since) > after,
                    _ => false,
                },
            )
            .map(|rec| rec.check.service_id.clone())
            .collect();
        due.into_iter()
            .filter(|id| self.deregister(id).is_some())
            .collect()
    }

    /// Answers `/v1/health/service/:name`: `(index, entries)`.
    pub fn health_service(
        &self,
        name: &str,
        passing_only: bool,
        tags: &[String],
    ) -> (u64, Vec<ServiceEntry>) {
        let index = self.name_index.get(name).copied().unwrap_or(self.index);
        let node = self.node();
        let serf = self.serf_check();
        let entries = self
            .services
            .values()
            .filter(|s| s.service == name)
            .filter(|s| tags.iter().all(|t| s.tags.contains(t)))
            .map(|s| {
                let mut checks = vec![serf.clone()];
                checks.extend(
                    self.checks
                        .values()
                        .filter(|rec| rec.check.service_id == s.id)
                        .map(|rec| catalog_check(&rec.check)),
                );
                ServiceEntry {
                    node: node.clone(),
                    service: s.clone(),
                    checks,
                }
            })
            .filter(|e| !passing_only || e.checks.iter().all(|c| c.status == CheckStatus::Passing))
            .collect();
        (index.max(1), entries)
    }

    /// Answers `/v1/catalog/services`: `(index, name → tags)`, including the `consul`
    /// service every Consul server registers.
    pub fn catalog_services(&self) -> (u64, BTreeMap<String, Vec<String>>) {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        out.insert("consul".to_string(), BTreeSet::new());
        for s in self.services.values() {
            out.entry(s.service.clone())
                .or_default()
                .extend(s.tags.iter().cloned());
        }
        let out = out
            .into_iter()
            .map(|(name, tags)| (name, tags.into_iter().collect()))
            .collect();
        (self.index, out)
    }

    /// Answers `/v1/agent/services`: services keyed by ID, as the agent shows them.
    pub fn agent_services(&self) -> BTreeMap<String, AgentService> {
        self.services
            .iter()
            .map(|(id, s)| {
                let mut s = s.clone();
                s.create_index = 0;
                s.modify_index = 0;
                s.datacenter = self.node.datacenter.clone();
                (id.clone(), s)
            })
            .collect()
    }

    /// Answers `/v1/agent/checks`: the agent's checks keyed by check ID.
    pub fn agent_checks(&self) -> BTreeMap<String, HealthCheck> {
        self.checks
            .iter()
            .map(|(id, rec)| {
                let mut c = rec.check.clone();
                c.create_index = 0;
                c.modify_index = 0;
                (id.clone(), c)
            })
            .collect()
    }

    /// Returns every service with its checks, ordered by name then ID (for the UI).
    pub fn snapshot(&self) -> Vec<(AgentService, Vec<HealthCheck>)> {
        let mut out: Vec<(AgentService, Vec<HealthCheck>)> = self
            .services
            .values()
            .map(|s| {
                let checks = self
                    .checks
                    .values()
                    .filter(|rec| rec.check.service_id == s.id)
                    .map(|rec| rec.check.clone())
                    .collect();
                (s.clone(), checks)
            })
            .collect();
        out.sort_by(|a, b| (&a.0.service, &a.0.id).cmp(&(&b.0.service, &b.0.id)));
        out
    }

    /// Returns the node as the catalog shows it.
    pub fn node(&self) -> Node {
        Node {
            id: self.node.id.clone(),
            node: self.node.name.clone(),
            address: self.node.address.clone(),
            datacenter: self.node.datacenter.clone(),
            tagged_addresses: [
                ("lan".to_string(), self.node.address.clone()),
                ("wan".to_string(), self.node.address.clone()),
            ]
            .into(),
            meta: [("consul-network-segment".to_string(), String::new())].into(),
            create_index: self.node_index,
            modify_index: self.node_index,
        }
    }

    /// Returns the node's `serfHealth` check (always passing: the agent is this process).
    pub fn serf_check(&self) -> HealthCheck {
        HealthCheck {
            node: self.node.name.clone(),
            check_id: SERF_CHECK_ID.to_string(),
            name: "Serf Health Status".to_string(),
            status: CheckStatus::Passing,
            output: "Agent alive and reachable".to_string(),
            create_index: self.node_index,
            modify_index: self.node_index,
            ..HealthCheck::default()
        }
    }

    fn set_status(
        &mut self,
        check_id: &str,
        status: CheckStatus,
        output: String,
        now: Instant,
    ) -> bool {
        let output = truncate_output(output);
        let Some(rec) = self.checks.get(check_id) else {
            return false;
        };
        if rec.check.status == status && rec.check.output == output {
            return false;
        }
        let service_name = rec.check.service_name.clone();
        let status_changed = rec.check.status != status;
        // NOTE: like Consul's check_update_interval, an output-only change is stored but
        // does not move the index, so blocking queries do not wake for it.
        let index = if status_changed {
            Some(self.bump(&service_name))
        } else {
            None
        };
        let rec = self.checks.get_mut(check_id).expect("present above");
        if status_changed {
            rec.critical_since = (status == CheckStatus::Critical).then_some(now);
        }
        rec.check.status = status;
        rec.check.output = output;
        if let Some(index) = index {
            rec.check.modify_index = index;
        }
        true
    }

    fn bump(&mut self, service_name: &str) -> u64 {
        self.index += 1;
        self.name_index.insert(service_name.to_string(), self.index);
        self.index
    }
}

/// The catalog view of a check leaves out the agent-only `Interval`/`Timeout` fields.
fn catalog_check(check: &HealthCheck) -> HealthCheck {
    HealthCheck {
        interval: String::new(),
        timeout: String::new(),
        ..check.clone()
    }
}

fn same_service(a: &AgentService, b: &AgentService) -> bool {
    a.service == b.service
        && a.tags == b.tags
        && a.meta == b.meta
        && a.port == b.port
        && a.address == b.address
        && a.tagged_addresses == b.tagged_addresses
        && a.weights == b.weights
        && a.enable_tag_override == b.enable_tag_override
}

fn definition_of(spec: &CheckSpec) -> HealthCheckDefinition {
    let mut def = HealthCheckDefinition {
        interval: spec.interval.map(duration::format).unwrap_or_default(),
        deregister_critical_service_after: spec
            .deregister_after
            .map(duration::format)
            .unwrap_or_default(),
        ..HealthCheckDefinition::default()
    };
    match &spec.kind {
        CheckKind::Http {
            url,
            method,
            header,
            body,
            tls_skip_verify,
        } => {
            def.http = url.clone();
            def.method = method.clone();
            def.header = header.clone();
            def.body = body.clone();
            def.tls_skip_verify = *tls_skip_verify;
            def.timeout = duration::format(spec.timeout);
        }
        CheckKind::Tcp { address } => {
            def.tcp = address.clone();
            def.timeout = duration::format(spec.timeout);
        }
        CheckKind::Ttl => {
            def.ttl = spec.ttl.map(duration::format).unwrap_or_default();
        }
    }
    def
}

fn truncate_output(mut output: String) -> String {
    if output.len() > OUTPUT_MAX_SIZE {
        let mut end = OUTPUT_MAX_SIZE;
        while !output.is_char_boundary(end) {
            end -= 1;
        }
        output.truncate(end);
    }
    output
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::standin::registration;

    fn catalog() -> Catalog {
        Catalog::new(NodeInfo {
            name: "n1".into(),
            id: "id".into(),
            address: "127.0.0.1".into(),
            datacenter: "dc1".into(),
        })
    }

    fn spec(v: serde_json::Value) -> ServiceSpec {
        registration::parse(&serde_json::to_vec(&v).unwrap(), Duration::from_secs(60)).unwrap()
    }

    fn ttl_service(id: &str, extra: serde_json::Value) -> ServiceSpec {
        let mut check = json!({"TTL": "10s"});
        check
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        spec(json!({"ID": id, "Name": "web", "Port": 80, "Check": check}))
    }

    fn status(c: &Catalog, check_id: &str) -> CheckStatus {
        c.agent_checks()[check_id].status
    }

    #[test]
    fn checks_start_critical_unless_status_is_given() {
        let now = Instant::now();
        let mut c = catalog();
        c.register(ttl_service("a", json!({})), false, now);
        c.register(ttl_service("b", json!({"Status": "passing"})), false, now);
        assert_eq!(status(&c, "service:a"), CheckStatus::Critical);
        assert_eq!(status(&c, "service:b"), CheckStatus::Passing);
    }

    #[test]
    fn reregistering_keeps_check_status_and_output() {
        let now = Instant::now();
        let mut c = catalog();
        c.register(ttl_service("a", json!({})), false, now);
        c.update_ttl("service:a", CheckStatus::Passing, "ok".into(), now)
            .unwrap();
        let mut changed = ttl_service("a", json!({"TTL": "20s"}));
        changed.service.port = 81;
        c.register(changed, false, now);
        let check = &c.agent_checks()["service:a"];
        assert_eq!(check.status, CheckStatus::Passing);
        assert_eq!(check.output, "ok");
        assert_eq!(c.agent_services()["a"].port, 81);
    }

    #[test]
    fn identical_reregistration_does_not_move_the_index() {
        let now = Instant::now();
        let mut c = catalog();
        c.register(ttl_service("a", json!({})), false, now);
        let index = c.index();
        let new = c.register(ttl_service("a", json!({})), false, now);
        assert!(new.is_empty());
        assert_eq!(c.index(), index);
    }

    #[test]
    fn index_starts_at_one_and_grows_with_each_change() {
        let now = Instant::now();
        let mut c = catalog();
        assert_eq!(c.index(), 1);
        assert_eq!(c.health_service("web", false, &[]).0, 1);
        c.register(ttl_service("a", json!({})), false, now);
        let after_register = c.health_service("web", false, &[]).0;
        assert!(after_register > 1);
        c.update_ttl("service:a", CheckStatus::Passing, String::new(), now)
            .unwrap();
        let after_pass = c.health_service("web", false, &[]).0;
        assert!(after_pass > after_register);
        // The same status and output again is not a change.
        c.update_ttl("service:a", CheckStatus::Passing, String::new(), now)
            .unwrap();
        assert_eq!(c.health_service("web", false, &[]).0, after_pass);
        c.deregister("a").unwrap();
        assert!(c.health_service("web", false, &[]).0 > after_pass);
    }

    #[test]
    fn passing_filter_drops_warning_and_critical_and_includes_serf_health() {
        let now = Instant::now();
        let mut c = catalog();
        for (id, s) in [("p", "passing"), ("w", "warning"), ("c", "critical")] {
            c.register(ttl_service(id, json!({"Status": s})), false, now);
        }
        let (_, all) = c.health_service("web", false, &[]);
        assert_eq!(all.len(), 3);
        let (_, passing) = c.health_service("web", true, &[]);
        assert_eq!(passing.len(), 1);
        assert_eq!(passing[0].service.id, "p");
        let check_ids: Vec<_> = passing[0]
            .checks
            .iter()
            .map(|c| c.check_id.as_str())
            .collect();
        assert_eq!(check_ids, [SERF_CHECK_ID, "service:p"]);
        assert_eq!(
            passing[0].address(),
            "127.0.0.1",
            "falls back to the node address"
        );
    }

    #[test]
    fn tag_filter_requires_every_tag() {
        let now = Instant::now();
        let mut c = catalog();
        c.register(
            spec(json!({"ID": "a", "Name": "web", "Tags": ["x", "y"]})),
            false,
            now,
        );
        c.register(
            spec(json!({"ID": "b", "Name": "web", "Tags": ["x"]})),
            false,
            now,
        );
        let (_, e) = c.health_service("web", false, &["x".into(), "y".into()]);
        assert_eq!(e.len(), 1);
        assert_eq!(c.catalog_services().1["web"], ["x", "y"]);
        assert_eq!(c.catalog_services().1["consul"], Vec::<String>::new());
    }

    #[test]
    fn ttl_expires_with_consuls_output() {
        let now = Instant::now();
        let mut c = catalog();
        c.register(ttl_service("a", json!({"Status": "passing"})), false, now);
        let generation = c.checks["service:a"].generation;
        assert!(!c.expire_ttl("service:a", generation, now + Duration::from_secs(9)));
        c.update_ttl(
            "service:a",
            CheckStatus::Passing,
            "fine".into(),
            now + Duration::from_secs(9),
        )
        .unwrap();
        assert!(!c.expire_ttl("service:a", generation, now + Duration::from_secs(18)));
        assert!(c.expire_ttl("service:a", generation, now + Duration::from_secs(19)));
        let check = &c.agent_checks()["service:a"];
        assert_eq!(check.status, CheckStatus::Critical);
        assert_eq!(
            check.output,
            "TTL expired (last output before timeout follows): fine"
        );
    }

    #[test]
    fn ttl_updates_need_a_ttl_check() {
        let now = Instant::now();
        let mut c = catalog();
        c.register(
            spec(json!({"ID": "h", "Name": "web", "Check": {"TCP": "127.0.0.1:1", "Interval": "1s"}})),
            false,
            now,
        );
        assert_eq!(
            c.update_ttl("service:h", CheckStatus::Passing, String::new(), now),
            Err(TtlError::NotTtl("service:h".into()))
        );
        assert_eq!(
            c.update_ttl("nope", CheckStatus::Passing, String::new(), now),
            Err(TtlError::UnknownCheck("nope".into()))
        );
    }

    #[test]
    fn reaper_removes_services_critical_longer_than_the_limit() {
        let now = Instant::now();
        let mut c = catalog();
        // 10s is raised to the 60s floor.
        c.register(
            ttl_service("a", json!({"DeregisterCriticalServiceAfter": "10s"})),
            false,
            now,
        );
        c.register(
            ttl_service(
                "b",
                json!({"DeregisterCriticalServiceAfter": "10m", "CheckID": "b"}),
            ),
            false,
            now,
        );
        assert!(
            c.reap(now + Duration::from_secs(60)).is_empty(),
            "not longer than 60s yet"
        );
        assert_eq!(c.reap(now + Duration::from_secs(61)), ["a"]);
        assert!(
            !c.agent_checks().contains_key("service:a"),
            "checks go with the service"
        );
        assert!(c.agent_services().contains_key("b"));
    }

    #[test]
    fn a_passing_check_resets_the_reaper_clock() {
        let now = Instant::now();
        let mut c = catalog();
        c.register(
            ttl_service("a", json!({"DeregisterCriticalServiceAfter": "1m"})),
            false,
            now,
        );
        let t = now + Duration::from_secs(50);
        c.update_ttl("service:a", CheckStatus::Passing, String::new(), t)
            .unwrap();
        c.update_ttl("service:a", CheckStatus::Critical, String::new(), t)
            .unwrap();
        assert!(c.reap(now + Duration::from_secs(100)).is_empty());
        assert_eq!(c.reap(t + Duration::from_secs(61)), ["a"]);
    }

    #[test]
    fn probe_thresholds_delay_transitions() {
        let now = Instant::now();
        let mut c = catalog();
        c.register(
            spec(
                json!({"ID": "h", "Name": "web", "Check": {"TCP": "127.0.0.1:1", "Interval": "1s",
                         "SuccessBeforePassing": 2, "FailuresBeforeCritical": 2}}),
            ),
            false,
            now,
        );
        let generation = c.checks["service:h"].generation;
        let ok = |c: &mut Catalog| {
            c.record_probe(
                "service:h",
                generation,
                CheckStatus::Passing,
                "ok".into(),
                now,
            )
        };
        let bad = |c: &mut Catalog| {
            c.record_probe(
                "service:h",
                generation,
                CheckStatus::Critical,
                "no".into(),
                now,
            )
        };
        assert!(!ok(&mut c));
        assert_eq!(status(&c, "service:h"), CheckStatus::Critical);
        assert!(ok(&mut c));
        assert_eq!(status(&c, "service:h"), CheckStatus::Passing);
        assert!(!bad(&mut c));
        assert_eq!(status(&c, "service:h"), CheckStatus::Passing);
        assert!(bad(&mut c));
        assert_eq!(status(&c, "service:h"), CheckStatus::Critical);
        // A stale runner (older generation) cannot write.
        assert!(!c.record_probe(
            "service:h",
            generation + 99,
            CheckStatus::Passing,
            String::new(),
            now
        ));
    }

    #[test]
    fn replace_existing_checks_drops_checks_left_out() {
        let now = Instant::now();
        let mut c = catalog();
        c.register(
            spec(json!({"ID": "a", "Name": "web", "Checks": [{"TTL": "5s", "CheckID": "one"}, {"TTL": "5s", "CheckID": "two"}]})),
            false,
            now,
        );
        let only_one =
            spec(json!({"ID": "a", "Name": "web", "Checks": [{"TTL": "5s", "CheckID": "one"}]}));
        c.register(only_one.clone(), false, now);
        assert!(
            c.agent_checks().contains_key("two"),
            "kept without replace-existing-checks"
        );
        c.register(only_one, true, now);
        assert!(!c.agent_checks().contains_key("two"));
    }
}
