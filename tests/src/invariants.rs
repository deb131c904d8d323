//! An invariant checker any end-to-end test can run beside the controller:
//! it watches every Service and, at every change the API server reports,
//! checks what ferrolb promises users about addresses, with rules written
//! here from the user documentation, not taken from the allocator:
//!
//! - no address is held by two Services that may not share it (equal
//!   non-empty sharing keys, no common port, and equal selectors when
//!   either uses `externalTrafficPolicy: Local`);
//! - every address a Service gains lies in the pools of a config in force
//!   (a valid config applied within [`Checker::grace`], or the last good
//!   one while a bad one is refused);
//! - no Service loses an address without a cause: its own spec or
//!   annotations changed, or a config applied within the grace removed it.
//!
//! Each violation is recorded with the Services' names; the test asserts
//! there were none.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrolb_config::{Config, Pool};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};

/// The sharing-key annotation under every name ferrolb reads.
const SHARING_ANNOTATIONS: [&str; 3] = [
    "ferrolb.io/allow-shared-ip",
    "metallb.io/allow-shared-ip",
    "metallb.universe.tf/allow-shared-ip",
];

/// What went wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// `ip` is held by both Services, which may not share it.
    DoubleHolder {
        /// The address.
        ip: IpAddr,
        /// The Service that held it first.
        holder: String,
        /// The Service that was given it too.
        other: String,
        /// Why they may not share.
        why: String,
    },
    /// `service` holds `ip`, which no config in force contains.
    OutsidePools {
        /// The Service.
        service: String,
        /// The address.
        ip: IpAddr,
    },
    /// `service` lost `ip` although neither its request nor the config
    /// changed.
    ChangedWithoutCause {
        /// The Service.
        service: String,
        /// What it held.
        from: Vec<IpAddr>,
        /// What it holds now.
        to: Vec<IpAddr>,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::DoubleHolder {
                ip,
                holder,
                other,
                why,
            } => write!(
                f,
                "{ip} held by {holder} and {other}, which may not share it: {why}"
            ),
            Violation::OutsidePools { service, ip } => {
                write!(f, "{service} holds {ip}, outside every pool in force")
            }
            Violation::ChangedWithoutCause { service, from, to } => {
                write!(f, "{service} went from {from:?} to {to:?} without a cause")
            }
        }
    }
}

/// What the checker knows of one Service.
#[derive(Debug, Clone)]
struct Seen {
    addresses: Vec<IpAddr>,
    /// Spec and annotations: when they change, the Service asked for
    /// something else.
    request: String,
    /// The request as it was when the current addresses were first seen.
    request_at_grant: String,
    sharing: Option<String>,
    ports: BTreeSet<(i32, String)>,
    backend: Option<BTreeMap<String, String>>,
}

impl Seen {
    /// What the Service asked for when it was given its current addresses.
    fn as_granted(&self) -> Seen {
        let Ok(request) = serde_json::from_str::<serde_json::Value>(&self.request_at_grant) else {
            return self.clone();
        };
        let mut service = Service::default();
        service.metadata.annotations = serde_json::from_value(request["annotations"].clone()).ok();
        service.spec = serde_json::from_value(request["spec"].clone()).ok();
        Seen {
            addresses: self.addresses.clone(),
            ..seen(&service, None)
        }
    }
}

/// A config the test applied, valid or not, and when.
#[derive(Debug, Clone)]
struct Applied {
    at: Instant,
    pools: Vec<Pool>,
}

#[derive(Debug, Default)]
struct State {
    services: BTreeMap<String, Seen>,
    /// Valid configs applied, oldest first; the last is in force.
    configs: Vec<Applied>,
    violations: Vec<Violation>,
    reported: BTreeSet<String>,
    changes: usize,
}

/// The running checker; its watch stops when it drops.
pub struct Checker {
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
    grace: Duration,
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Checker {
    /// How long after a config change an address it removed may still be
    /// shown, and an address of the previous config handed out: a takeover
    /// of a killed leader plus the time to reconcile.
    pub const DEFAULT_GRACE: Duration = Duration::from_secs(40);

    /// Starts watching every Service; `config` is the config in force now.
    pub fn start(client: Client, config: &str) -> Checker {
        let state = Arc::new(Mutex::new(State::default()));
        let checker = Checker {
            state: state.clone(),
            task: tokio::spawn(watch(client, state)),
            grace: Checker::DEFAULT_GRACE,
        };
        checker.config_applied(config);
        checker
    }

    /// How long a config change may take to show.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Tells the checker the test applied `config` to the ConfigMap now. An
    /// invalid config changes nothing: the last good one stays in force.
    pub fn config_applied(&self, config: &str) {
        if let Ok(validated) = Config::from_yaml(config) {
            self.lock().configs.push(Applied {
                at: Instant::now(),
                pools: validated.config.pools,
            });
        }
    }

    /// Every violation seen so far.
    pub fn violations(&self) -> Vec<Violation> {
        self.lock().violations.clone()
    }

    /// How many Service changes the checker has examined.
    pub fn changes(&self) -> usize {
        self.lock().changes
    }

    /// The addresses every Service holds now, as the checker saw them.
    pub fn addresses(&self) -> BTreeMap<String, Vec<IpAddr>> {
        self.lock()
            .services
            .iter()
            .map(|(k, s)| (k.clone(), s.addresses.clone()))
            .collect()
    }

    /// Checks every held address against the config in force alone (the
    /// grace is over: the test has stopped changing things and waited).
    pub fn check_settled(&self) {
        let mut state = self.lock();
        let Some(pools) = state.configs.last().map(|c| c.pools.clone()) else {
            return;
        };
        let held: Vec<(String, IpAddr)> = state
            .services
            .iter()
            .flat_map(|(k, s)| s.addresses.iter().map(move |ip| (k.clone(), *ip)))
            .collect();
        for (service, ip) in held {
            if !pools.iter().any(|p| p.contains(ip)) {
                state.record(Violation::OutsidePools { service, ip });
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn watch(client: Client, state: Arc<Mutex<State>>) {
    let api = Api::<Service>::all(client);
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut relisted: Option<BTreeSet<String>> = None;
    while let Some(event) = events.next().await {
        let Ok(event) = event else { continue };
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Init => relisted = Some(BTreeSet::new()),
            watcher::Event::InitApply(service) => {
                if let Some(seen) = relisted.as_mut() {
                    seen.insert(key(&service));
                }
                state.observe(&service);
            }
            watcher::Event::InitDone => {
                // Services deleted while the watch was down.
                if let Some(present) = relisted.take() {
                    state.services.retain(|k, _| present.contains(k));
                }
            }
            watcher::Event::Apply(service) => state.observe(&service),
            watcher::Event::Delete(service) => {
                state.services.remove(&key(&service));
            }
        }
    }
}

fn key(service: &Service) -> String {
    format!(
        "{}/{}",
        service.metadata.namespace.as_deref().unwrap_or_default(),
        service.metadata.name.as_deref().unwrap_or_default()
    )
}

fn addresses(service: &Service) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect();
    ips.sort();
    ips
}

fn seen(service: &Service, previous: Option<&Seen>) -> Seen {
    let annotations = service.metadata.annotations.clone().unwrap_or_default();
    let spec = service.spec.clone().unwrap_or_default();
    let request = serde_json::json!({ "spec": spec, "annotations": annotations }).to_string();
    let addresses = addresses(service);
    let request_at_grant = match previous {
        Some(p) if p.addresses == addresses => p.request_at_grant.clone(),
        _ => request.clone(),
    };
    Seen {
        addresses,
        request_at_grant,
        sharing: SHARING_ANNOTATIONS
            .iter()
            .find_map(|a| annotations.get(*a).filter(|v| !v.is_empty()).cloned()),
        ports: spec
            .ports
            .iter()
            .flatten()
            .map(|p| (p.port, p.protocol.clone().unwrap_or_else(|| "TCP".into())))
            .collect(),
        backend: (spec.external_traffic_policy.as_deref() == Some("Local"))
            .then(|| spec.selector.clone().unwrap_or_default()),
        request,
    }
}

/// Why Services `a` and `b` may not hold one address, if they may not.
pub fn why_not_shared(a: &Service, b: &Service) -> Option<String> {
    may_not_share(&seen(a, None), &seen(b, None))
}

fn may_not_share(a: &Seen, b: &Seen) -> Option<String> {
    match (&a.sharing, &b.sharing) {
        (Some(x), Some(y)) if x == y => {}
        (x, y) => return Some(format!("sharing keys {x:?} and {y:?}")),
    }
    if a.backend != b.backend {
        return Some("different backends (Local traffic with different selectors)".into());
    }
    a.ports
        .intersection(&b.ports)
        .next()
        .map(|(port, proto)| format!("both use port {port}/{proto}"))
}

impl State {
    fn record(&mut self, violation: Violation) {
        if self.reported.insert(violation.to_string()) {
            self.violations.push(violation);
        }
    }

    /// Pools of the configs in force within the last `grace`, and whether a
    /// config changed within it.
    fn pools_in_force(&self, now: Instant, grace: Duration) -> (Vec<&Pool>, bool) {
        let mut pools = Vec::new();
        let mut recent_change = false;
        for (i, applied) in self.configs.iter().enumerate() {
            let superseded_at = self.configs.get(i + 1).map(|next| next.at);
            let in_force = superseded_at.is_none_or(|at| now.duration_since(at) < grace);
            if in_force {
                pools.extend(applied.pools.iter());
            }
            if i > 0 && now.duration_since(applied.at) < grace {
                recent_change = true;
            }
        }
        (pools, recent_change)
    }

    fn observe(&mut self, service: &Service) {
        self.changes += 1;
        let name = key(service);
        let now = Instant::now();
        let previous = self.services.get(&name).cloned();
        let current = seen(service, previous.as_ref());
        let grace = Checker::DEFAULT_GRACE;

        // Lost an address: only for a cause.
        if let Some(previous) = &previous {
            let lost = previous
                .addresses
                .iter()
                .any(|ip| !current.addresses.contains(ip));
            let asked = current.request != previous.request_at_grant;
            let (_, config_changed) = self.pools_in_force(now, grace);
            if lost && !asked && !config_changed {
                self.record(Violation::ChangedWithoutCause {
                    service: name.clone(),
                    from: previous.addresses.clone(),
                    to: current.addresses.clone(),
                });
            }
        }
        // Gained addresses: from a pool in force.
        let gained: Vec<IpAddr> = current
            .addresses
            .iter()
            .filter(|ip| previous.as_ref().is_none_or(|p| !p.addresses.contains(ip)))
            .copied()
            .collect();
        let (pools, _) = self.pools_in_force(now, grace);
        let outside: Vec<IpAddr> = gained
            .iter()
            .filter(|ip| !pools.iter().any(|p| p.contains(**ip)))
            .copied()
            .collect();
        for ip in outside {
            self.record(Violation::OutsidePools {
                service: name.clone(),
                ip,
            });
        }
        // Given an address another holds: only if they may share, by the
        // other's request now or as it stood when it was given the address.
        // (A user who changes the sharing key of a Service holding a shared
        // address makes the two disagree until the controller moves it: that
        // is the user's change, not an address handed out twice; and a
        // holder whose new request still lets it keep its address keeps it
        // under the new one.)
        let mut doubles = Vec::new();
        for ip in &gained {
            for (other, theirs) in &self.services {
                if *other == name || !theirs.addresses.contains(ip) {
                    continue;
                }
                if let (Some(why), Some(_)) = (
                    may_not_share(&current, &theirs.as_granted()),
                    may_not_share(&current, theirs),
                ) {
                    doubles.push(Violation::DoubleHolder {
                        ip: *ip,
                        holder: other.clone(),
                        other: name.clone(),
                        why,
                    });
                }
            }
        }
        for v in doubles {
            self.record(v);
        }
        self.services.insert(name, current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::LoadBalancer;
    use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};

    const POOL: &str = "address-pools:\n- name: a\n  protocol: layer2\n  addresses: [198.51.100.10-198.51.100.20]\n";

    fn holding(lb: LoadBalancer, ns: &str, ips: &[&str]) -> Service {
        let mut s = lb.build();
        s.metadata.namespace = Some(ns.into());
        s.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(
                    ips.iter()
                        .map(|ip| LoadBalancerIngress {
                            ip: Some((*ip).into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }),
            ..Default::default()
        });
        s
    }

    fn state() -> State {
        let mut state = State::default();
        state.configs.push(Applied {
            at: Instant::now() - Duration::from_secs(3600),
            pools: Config::from_yaml(POOL).unwrap().config.pools,
        });
        state
    }

    #[test]
    fn two_services_without_a_sharing_key_on_one_address_are_a_violation() {
        let mut state = state();
        state.observe(&holding(LoadBalancer::new("a"), "ns", &["198.51.100.10"]));
        state.observe(&holding(LoadBalancer::new("b"), "ns", &["198.51.100.10"]));
        assert!(
            matches!(&state.violations[..], [Violation::DoubleHolder { holder, other, .. }] if holder == "ns/a" && other == "ns/b"),
            "{:?}",
            state.violations
        );
    }

    #[test]
    fn sharing_needs_equal_keys_and_distinct_ports() {
        let mut state = state();
        let shared = |name: &str, port: i32| {
            LoadBalancer::new(name)
                .annotation("metallb.universe.tf/allow-shared-ip", "k")
                .ports(&[(port, "TCP")])
        };
        state.observe(&holding(shared("a", 80), "ns", &["198.51.100.10"]));
        state.observe(&holding(shared("b", 443), "ns", &["198.51.100.10"]));
        assert!(state.violations.is_empty(), "{:?}", state.violations);
        state.observe(&holding(shared("c", 80), "ns", &["198.51.100.10"]));
        assert_eq!(state.violations.len(), 1, "{:?}", state.violations);
    }

    #[test]
    fn a_holder_changing_its_own_sharing_key_is_not_a_double_hand_out() {
        let mut state = state();
        let keyed = |name: &str, key: &str, port: i32| {
            LoadBalancer::new(name)
                .annotation("ferrolb.io/allow-shared-ip", key)
                .ports(&[(port, "TCP")])
        };
        state.observe(&holding(keyed("a", "k", 80), "ns", &["198.51.100.10"]));
        state.observe(&holding(keyed("b", "k", 443), "ns", &["198.51.100.10"]));
        // The user changes b's key; until the controller moves b, its
        // status still shows the shared address.
        state.observe(&holding(keyed("b", "other", 443), "ns", &["198.51.100.10"]));
        assert!(state.violations.is_empty(), "{:?}", state.violations);
        // But handing the address to a Service of b's new key is a double:
        // a still holds it under the old key.
        state.observe(&holding(
            keyed("c", "other", 8080),
            "ns",
            &["198.51.100.10"],
        ));
        assert!(
            matches!(&state.violations[..], [Violation::DoubleHolder { holder, other, .. }] if holder == "ns/a" && other == "ns/c"),
            "{:?}",
            state.violations
        );
    }

    #[test]
    fn an_address_outside_the_pools_or_lost_without_cause_is_a_violation() {
        let mut state = state();
        state.observe(&holding(LoadBalancer::new("a"), "ns", &["203.0.113.5"]));
        assert!(matches!(
            &state.violations[..],
            [Violation::OutsidePools { .. }]
        ));
        state.observe(&holding(LoadBalancer::new("b"), "ns", &["198.51.100.11"]));
        state.observe(&holding(LoadBalancer::new("b"), "ns", &["198.51.100.12"]));
        assert!(
            matches!(&state.violations[1..], [Violation::ChangedWithoutCause { service, .. }] if service == "ns/b"),
            "{:?}",
            state.violations
        );
        // Its own request changing is a cause.
        state.observe(&holding(
            LoadBalancer::new("b").ports(&[(8080, "TCP")]),
            "ns",
            &["198.51.100.13"],
        ));
        assert_eq!(state.violations.len(), 2, "{:?}", state.violations);
    }
}
