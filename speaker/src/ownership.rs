//! Which addresses this node announces: for every Service holding ferrolb
//! addresses, the pool's rules and the nodes' facts go through
//! [`crate::election::elect`], and the addresses won by this node, with the
//! interfaces their pool allows, form the [`Announcements`]. Pure: views of
//! the cluster in, decisions out; the shell translates Kubernetes objects.
//!
//! A Service's status is not trusted: anyone allowed to write it could list a
//! gateway or a node's address. [`screen`] keeps only the addresses that lie
//! in a pool the Service may use and that are neither special-purpose nor a
//! node's own; [`refusals`] lists the others for the shell to report.
//!
//! Who is live comes from the LAN membership ([`crate::liveness`]), the rest
//! (pools, Services, endpoints, Node facts) from the API as last seen: while
//! the API cannot be reached the plan is made from the last views, which
//! never age anyone. [`plan`] adds what the shell must say about the
//! decisions (events, one per change of owner); the shell announces nothing
//! before the membership has settled.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use ferrolb_config::{
    Claimant, Config, Pool, PoolName, ServiceKey, SpecialPurpose, TrafficPolicy, pools_for,
};

use crate::announcer::Announcements;
use crate::election::{EXCLUDE_FROM_LOAD_BALANCERS, Election, NodeFacts, Rankings, ServiceAddress};

/// What the election needs to know of a Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The node name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its `NetworkUnavailable` condition is `True`.
    pub network_unavailable: bool,
    /// The addresses the Node reports as its own (`status.addresses`).
    pub addresses: BTreeSet<IpAddr>,
}

/// What the election needs to know of a Service with ferrolb addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    /// Which Service.
    pub key: ServiceKey,
    /// Its `status.loadBalancer.ingress` addresses, in order.
    pub addresses: Vec<IpAddr>,
    /// The pool it names, if any.
    pub pool: Option<String>,
    /// Its labels, for pools' `service-selectors`.
    pub labels: BTreeMap<String, String>,
    /// Its namespace's labels, for pools' `namespace-selectors`.
    pub namespace_labels: BTreeMap<String, String>,
    /// `spec.externalTrafficPolicy`.
    pub traffic_policy: TrafficPolicy,
    /// Whether any endpoint can serve (ready, or terminating but serving).
    pub has_serving_endpoints: bool,
    /// The nodes running a ready endpoint (for `Local` traffic).
    pub ready_endpoint_nodes: BTreeSet<String>,
}

/// The election for one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Which Service.
    pub service: ServiceKey,
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
    /// Who announces them, from this node's view.
    pub election: Election,
}

/// Why an address in a Service's status is not announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It is loopback, multicast, link-local, … : no host owns it on a LAN.
    SpecialPurpose(SpecialPurpose),
    /// A node reports it as its own.
    NodeAddress {
        /// That node.
        node: String,
    },
    /// It lies in no pool.
    NotInPool,
    /// Its pool is not one the Service may take addresses from
    /// ([`pools_for`]): it names another pool, or the pool's
    /// `service-allocation` does not admit it.
    PoolNotAllowed {
        /// The pool it lies in.
        pool: PoolName,
    },
}

impl Refusal {
    /// A stable label for metrics and events.
    pub fn as_label(&self) -> &'static str {
        match self {
            Refusal::SpecialPurpose(_) => "special_purpose",
            Refusal::NodeAddress { .. } => "node_address",
            Refusal::NotInPool => "not_in_pool",
            Refusal::PoolNotAllowed { .. } => "pool_not_allowed",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::SpecialPurpose(purpose) => {
                write!(f, "it is a special-purpose address ({purpose})")
            }
            Refusal::NodeAddress { node } => write!(f, "it is an address of node \"{node}\""),
            Refusal::NotInPool => f.write_str("it lies in no ferrolb pool"),
            Refusal::PoolNotAllowed { pool } => write!(
                f,
                "it lies in pool \"{}\", which this Service may not take addresses from",
                pool.0
            ),
        }
    }
}

/// A Service's addresses, sorted into those this node may announce (with
/// their pool) and those it must not (with why), each in status order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screened<'c> {
    /// The addresses that may be announced.
    pub announceable: Vec<(IpAddr, &'c Pool)>,
    /// The others.
    pub refused: Vec<(IpAddr, Refusal)>,
}

/// Sorts `service`'s status addresses: an address is announced only if it
/// is not special-purpose, is no node's own, and lies in a pool the Service
/// may use — [`pools_for`], the rule the controller's allocator holds
/// addresses by.
pub fn screen<'c>(config: &'c Config, service: &ServiceView, nodes: &[NodeView]) -> Screened<'c> {
    let mut screened = Screened {
        announceable: Vec::new(),
        refused: Vec::new(),
    };
    let claimant = Claimant {
        namespace: &service.key.namespace,
        labels: &service.labels,
        namespace_labels: &service.namespace_labels,
        pool: service.pool.as_deref(),
    };
    let admitted = pools_for(&config.pools, &claimant);
    for &ip in &service.addresses {
        let refusal = if let Some(purpose) = SpecialPurpose::of(ip) {
            Err(Refusal::SpecialPurpose(purpose))
        } else if let Some(node) = nodes.iter().find(|n| n.addresses.contains(&ip)) {
            Err(Refusal::NodeAddress {
                node: node.name.clone(),
            })
        } else {
            match config.pool_of(ip) {
                None => Err(Refusal::NotInPool),
                Some(pool) => {
                    if admitted.iter().any(|&i| config.pools[i].name == pool.name) {
                        Ok(pool)
                    } else {
                        Err(Refusal::PoolNotAllowed {
                            pool: pool.name.clone(),
                        })
                    }
                }
            }
        };
        match refusal {
            Ok(pool) => screened.announceable.push((ip, pool)),
            Err(refusal) => screened.refused.push((ip, refusal)),
        }
    }
    screened
}

/// An address of a Service's status that no node announces.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Refused {
    /// The Service.
    pub service: ServiceKey,
    /// The address.
    pub address: IpAddr,
    /// Why: [`Refusal::as_label`].
    pub reason: &'static str,
    /// Why, for people.
    pub why: String,
}

/// Every address of every Service that [`screen`] refuses, for the shell to
/// count and report.
pub fn refusals(config: &Config, services: &[ServiceView], nodes: &[NodeView]) -> Vec<Refused> {
    services
        .iter()
        .flat_map(|service| {
            screen(config, service, nodes)
                .refused
                .into_iter()
                .map(|(address, refusal)| Refused {
                    service: service.key.clone(),
                    address,
                    reason: refusal.as_label(),
                    why: refusal.to_string(),
                })
        })
        .collect()
}

/// The Services with addresses in their status that no node announces, from
/// one plan's `owners` (a Service the election left without an owner) and
/// its [`refusals`] (a Service all of whose addresses are refused, which the
/// election never sees). A Service with some addresses announced is not
/// among them: its refused ones are counted as addresses.
pub fn unannounced(
    owners: &BTreeMap<ServiceKey, Option<String>>,
    refused: &[Refused],
) -> BTreeSet<ServiceKey> {
    let without_owner = owners
        .iter()
        .filter(|(_, owner)| owner.is_none())
        .map(|(service, _)| service.clone());
    let all_refused = refused
        .iter()
        .filter(|r| !owners.contains_key(&r.service))
        .map(|r| r.service.clone());
    without_owner.chain(all_refused).collect()
}

/// Decides, from node `me`'s view, who announces every Service's addresses
/// and which of them `me` announces. Only the addresses [`screen`] lets
/// through are elected and announced; a Service with none is left out.
///
/// `rankings` carries the election's per-address rankings from one decision
/// to the next, so that a pass walks each address's few best nodes instead
/// of hashing every address against every node; it is brought up to date
/// with `nodes` and `services` here, and its results equal
/// [`crate::election::elect`]'s over the same facts.
pub fn decide(
    config: &Config,
    services: &[ServiceView],
    nodes: &[NodeView],
    live: &BTreeSet<String>,
    me: &str,
    rankings: &mut Rankings,
) -> (Announcements, Vec<Decision>) {
    let names: BTreeSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    rankings.retain_nodes(|name| names.contains(name));
    for node in nodes {
        rankings.set_node(
            &node.name,
            NodeFacts {
                labels: node.labels.clone(),
                speaker_live: live.contains(&node.name),
                network_unavailable: node.network_unavailable,
                excluded: node.labels.contains_key(EXCLUDE_FROM_LOAD_BALANCERS),
            },
        );
    }
    let mut announcements = Announcements::new();
    let mut decisions = Vec::new();
    let mut elected = HashSet::new();
    for service in services {
        let screened = screen(config, service, nodes);
        let Some(&(first, pool)) = screened.announceable.first() else {
            continue;
        };
        let address = ServiceAddress {
            address: first,
            traffic_policy: service.traffic_policy,
            has_serving_endpoints: service.has_serving_endpoints,
            node_selectors: &pool.node_selectors,
        };
        elected.insert(first);
        let election = rankings.elect(&address, &service.ready_endpoint_nodes, me);
        if election.is_me() {
            for (ip, pool) in &screened.announceable {
                announcements.announce(*ip, pool.interfaces.clone());
            }
        }
        decisions.push(Decision {
            service: service.key.clone(),
            addresses: screened.announceable.iter().map(|(ip, _)| *ip).collect(),
            election,
        });
    }
    rankings.retain_addresses(|a| elected.contains(a));
    (announcements, decisions)
}

/// An event the shell publishes on a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    /// The event's reason (`nodeAssigned`, `NoAnnouncingNode`).
    pub reason: &'static str,
    /// The event's action; differs where the note's substance does.
    pub action: String,
    /// The note a user reads.
    pub note: String,
}

/// A change of owner for one Service, as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerChange {
    /// The decision behind it.
    pub decision: Decision,
    /// The event this node publishes about it, if any.
    pub event: Option<PlannedEvent>,
}

/// What the shell carries out after one look at the views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// What this node announces.
    pub announcements: Announcements,
    /// Services whose owner changed since `owners`.
    pub changes: Vec<OwnerChange>,
    /// The owner per Service now, for the next plan.
    pub owners: BTreeMap<ServiceKey, Option<String>>,
    /// Every Service's decision, for its status object
    /// ([`crate::l2_status`]).
    pub decisions: Vec<Decision>,
}

/// Plans, from node `me`'s view, what it announces and which events it
/// publishes, given the owner per Service it saw last (`owners`). Only the
/// new owner reports `nodeAssigned`; when nobody can announce, the first live
/// node by name reports `NoAnnouncingNode`, so one event is raised, not one
/// per node. An address won from another node is marked as a takeover (no
/// conflict probe). `reannounce` is the membership's re-announce epoch.
#[allow(clippy::too_many_arguments)] // the views, and what carries over from the last plan
pub fn plan(
    config: &Config,
    services: &[ServiceView],
    nodes: &[NodeView],
    live: &BTreeSet<String>,
    me: &str,
    owners: &BTreeMap<ServiceKey, Option<String>>,
    reannounce: u64,
    rankings: &mut Rankings,
) -> Plan {
    let (mut announcements, decisions) = decide(config, services, nodes, live, me, rankings);
    let mut now_owners = BTreeMap::new();
    let mut changes = Vec::new();
    for decision in decisions.iter().cloned() {
        let owner = decision.election.owner.clone();
        now_owners.insert(decision.service.clone(), owner.clone());
        // An address another speaker held is taken over at once: the
        // conflict probe is for first announcements only.
        let held_by_other = matches!(
            owners.get(&decision.service),
            Some(Some(previous)) if previous != me
        );
        if decision.election.is_me() && held_by_other {
            for address in &decision.addresses {
                announcements.take_over(*address);
            }
        }
        if owners.get(&decision.service) == Some(&owner) {
            continue;
        }
        let shown = decision
            .addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let event = match (&owner, decision.election.reason()) {
            (Some(node), _) if decision.election.is_me() => Some(PlannedEvent {
                warning: false,
                reason: "nodeAssigned",
                action: "Announce".into(),
                note: format!("announcing from node \"{node}\""),
            }),
            (None, Some(reason)) if live.iter().next().map(String::as_str) == Some(me) => {
                Some(PlannedEvent {
                    warning: true,
                    reason: "NoAnnouncingNode",
                    action: reason.as_label().into(),
                    note: format!("no node announces {shown}: {reason}"),
                })
            }
            _ => None,
        };
        changes.push(OwnerChange { decision, event });
    }
    Plan {
        announcements: announcements.reannounced(reannounce),
        changes,
        owners: now_owners,
        decisions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::election::Reason;

    fn config() -> Config {
        Config::from_yaml(
            "address-pools:\n- name: a\n  protocol: layer2\n  addresses: [198.51.100.0/24, 2001:db8:1::/64]\n  interfaces: [eth0]\n",
        )
        .expect("valid")
        .config
    }

    fn node(name: &str) -> NodeView {
        NodeView {
            name: name.into(),
            labels: BTreeMap::new(),
            network_unavailable: false,
            addresses: BTreeSet::new(),
        }
    }

    fn service(name: &str, addresses: &[&str]) -> ServiceView {
        ServiceView {
            key: ServiceKey::new("default", name),
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            pool: None,
            labels: BTreeMap::new(),
            namespace_labels: BTreeMap::new(),
            traffic_policy: TrafficPolicy::Cluster,
            has_serving_endpoints: true,
            ready_endpoint_nodes: BTreeSet::new(),
        }
    }

    fn live(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn exactly_one_node_announces_each_address_and_both_families_together() {
        let nodes = [node("node-1"), node("node-2"), node("node-3")];
        let services = [service("web", &["198.51.100.10", "2001:db8:1::10"])];
        let all = live(&["node-1", "node-2", "node-3"]);
        let owners: Vec<&str> = ["node-1", "node-2", "node-3"]
            .into_iter()
            .filter(|me| {
                let (announced, _) =
                    decide(&config(), &services, &nodes, &all, me, &mut Rankings::new());
                let both = announced.contains("198.51.100.10".parse().unwrap())
                    && announced.contains("2001:db8:1::10".parse().unwrap());
                let none = announced.is_empty();
                assert!(both || none, "{me} announces one family only");
                both
            })
            .collect();
        assert_eq!(owners.len(), 1, "owners: {owners:?}");
    }

    #[test]
    fn a_service_is_unannounced_without_an_owner_or_with_every_address_refused() {
        let nodes = [node("node-1")];
        let mut local = service("local", &["198.51.100.11"]);
        local.traffic_policy = TrafficPolicy::Local;
        local.has_serving_endpoints = false;
        let services = [
            service("web", &["198.51.100.10"]),
            local,
            service("outside", &["203.0.113.7"]),
            service("half", &["198.51.100.12", "203.0.113.8"]),
        ];
        let plan = plan(
            &config(),
            &services,
            &nodes,
            &live(&["node-1"]),
            "node-1",
            &BTreeMap::new(),
            0,
            &mut Rankings::new(),
        );
        let refused = refusals(&config(), &services, &nodes);
        assert_eq!(
            unannounced(&plan.owners, &refused),
            BTreeSet::from([
                ServiceKey::new("default", "local"),
                ServiceKey::new("default", "outside"),
            ])
        );
    }

    #[test]
    fn the_pool_interfaces_go_with_the_announcement() {
        let nodes = [node("node-1")];
        let services = [service("web", &["198.51.100.10"])];
        let (announced, _) = decide(
            &config(),
            &services,
            &nodes,
            &live(&["node-1"]),
            "node-1",
            &mut Rankings::new(),
        );
        let interfaces = announced
            .interfaces("198.51.100.10".parse().unwrap())
            .unwrap();
        assert_eq!(interfaces.iter().collect::<Vec<_>>(), vec!["eth0"]);
    }

    #[test]
    fn an_address_in_no_pool_is_not_ours_to_announce() {
        let nodes = [node("node-1")];
        let services = [service("other", &["203.0.113.7"])];
        let (announced, decisions) = decide(
            &config(),
            &services,
            &nodes,
            &live(&["node-1"]),
            "node-1",
            &mut Rankings::new(),
        );
        assert!(announced.is_empty());
        assert!(decisions.is_empty());
    }

    #[test]
    fn a_dead_owner_hands_the_address_to_the_next_node() {
        let nodes = [node("node-1"), node("node-2")];
        let services = [service("web", &["198.51.100.10"])];
        let (_, decisions) = decide(
            &config(),
            &services,
            &nodes,
            &live(&["node-1", "node-2"]),
            "node-1",
            &mut Rankings::new(),
        );
        let first = decisions[0].election.owner.clone().unwrap();
        let survivor = if first == "node-1" {
            "node-2"
        } else {
            "node-1"
        };
        let (announced, decisions) = decide(
            &config(),
            &services,
            &nodes,
            &live(&[survivor]),
            survivor,
            &mut Rankings::new(),
        );
        assert_eq!(decisions[0].election.owner.as_deref(), Some(survivor));
        assert!(announced.contains("198.51.100.10".parse().unwrap()));
    }

    #[test]
    fn local_traffic_goes_to_a_node_with_a_ready_endpoint() {
        let nodes = [node("node-1"), node("node-2"), node("node-3")];
        let mut svc = service("web", &["198.51.100.10"]);
        svc.traffic_policy = TrafficPolicy::Local;
        svc.ready_endpoint_nodes = live(&["node-3"]);
        let (_, decisions) = decide(
            &config(),
            &[svc],
            &nodes,
            &live(&["node-1", "node-2", "node-3"]),
            "node-1",
            &mut Rankings::new(),
        );
        assert_eq!(decisions[0].election.owner.as_deref(), Some("node-3"));
    }

    #[test]
    fn a_service_without_serving_endpoints_is_announced_by_nobody() {
        let nodes = [node("node-1")];
        let mut svc = service("web", &["198.51.100.10"]);
        svc.has_serving_endpoints = false;
        let (announced, decisions) = decide(
            &config(),
            &[svc],
            &nodes,
            &live(&["node-1"]),
            "node-1",
            &mut Rankings::new(),
        );
        assert!(announced.is_empty());
        assert_eq!(
            decisions[0].election.reason(),
            Some(Reason::NoServingEndpoints)
        );
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    /// Pools `a` (auto-assign), `b` (auto-assign) and `manual` (not).
    #[test]
    fn every_ingress_address_is_checked_not_only_the_first() {
        let nodes = [node("node-1")];
        // A status patched with the gateway next to the pool address.
        let svc = service("web", &["198.51.100.10", "198.51.101.1"]);
        let (announced, decisions) = decide(
            &config(),
            std::slice::from_ref(&svc),
            &nodes,
            &live(&["node-1"]),
            "node-1",
            &mut Rankings::new(),
        );
        assert!(announced.contains("198.51.100.10".parse().unwrap()));
        assert!(!announced.contains("198.51.101.1".parse().unwrap()));
        assert_eq!(announced.len(), 1);
        assert_eq!(decisions[0].addresses, ips(&["198.51.100.10"]));
        // The gateway first changes nothing.
        let svc = service("web", &["198.51.101.1", "198.51.100.10"]);
        let (announced, _) = decide(
            &config(),
            &[svc],
            &nodes,
            &live(&["node-1"]),
            "node-1",
            &mut Rankings::new(),
        );
        assert_eq!(
            announced.iter().map(|(ip, _)| ip).collect::<Vec<_>>(),
            ips(&["198.51.100.10"])
        );
    }

    #[test]
    fn special_purpose_and_node_addresses_are_never_announced() {
        let mut nodes = [node("node-1"), node("node-2")];
        nodes[1].addresses = ips(&["198.51.100.20"]).into_iter().collect();
        let svc = service(
            "web",
            &[
                "198.51.100.20",
                "127.0.0.1",
                "224.0.0.1",
                "::ffff:198.51.100.10",
                "fe80::1",
            ],
        );
        let refused = screen(&config(), &svc, &nodes).refused;
        assert_eq!(
            refused
                .iter()
                .map(|(ip, r)| format!("{ip}: {r}"))
                .collect::<Vec<_>>(),
            vec![
                "198.51.100.20: it is an address of node \"node-2\"",
                "127.0.0.1: it is a special-purpose address (loopback)",
                "224.0.0.1: it is a special-purpose address (multicast)",
                "::ffff:198.51.100.10: it is a special-purpose address (IPv4-mapped)",
                "fe80::1: it is a special-purpose address (link-local)",
            ]
        );
        for me in ["node-1", "node-2"] {
            let (announced, decisions) = decide(
                &config(),
                std::slice::from_ref(&svc),
                &nodes,
                &live(&["node-1", "node-2"]),
                me,
                &mut Rankings::new(),
            );
            assert!(announced.is_empty(), "{me}");
            assert!(decisions.is_empty(), "{me}");
        }
    }

    #[test]
    fn only_pools_the_service_may_use_count() {
        let config = Config::from_yaml(
            "address-pools:\n\
             - {name: a, protocol: layer2, addresses: [198.51.100.0/26]}\n\
             - {name: manual, protocol: layer2, addresses: [203.0.113.0/24], auto-assign: false}\n\
             - name: team\n  protocol: layer2\n  addresses: [198.51.100.64/26]\n\
             \x20 service-allocation: {namespaces: [team-a], service-selectors: [{match-labels: {tier: gold}}]}\n\
             - name: prod\n  protocol: layer2\n  addresses: [198.51.100.128/26]\n\
             \x20 service-allocation: {namespace-selectors: [{match-labels: {env: prod}}]}\n",
        )
        .expect("valid")
        .config;
        let nodes = [node("node-1")];
        let announceable = |svc: &ServiceView| {
            screen(&config, svc, &nodes)
                .announceable
                .iter()
                .map(|(ip, pool)| format!("{ip} from {}", pool.name.0))
                .collect::<Vec<_>>()
        };
        let all = [
            "198.51.100.1",
            "203.0.113.1",
            "198.51.100.65",
            "198.51.100.129",
        ];
        // No pool named: every pool that admits it, auto-assign or not (a
        // Service keeps an address of a pool that stopped auto-assigning).
        let plain = service("web", &all);
        assert_eq!(
            announceable(&plain),
            vec!["198.51.100.1 from a", "203.0.113.1 from manual"]
        );
        assert_eq!(
            screen(&config, &plain, &nodes).refused,
            vec![
                (
                    "198.51.100.65".parse().unwrap(),
                    Refusal::PoolNotAllowed {
                        pool: PoolName("team".into())
                    }
                ),
                (
                    "198.51.100.129".parse().unwrap(),
                    Refusal::PoolNotAllowed {
                        pool: PoolName("prod".into())
                    }
                ),
            ]
        );
        // The pinned pools admit their namespace and labels.
        let mut gold = service("web", &all);
        gold.key.namespace = "team-a".into();
        gold.labels = [("tier".to_owned(), "gold".to_owned())].into();
        gold.namespace_labels = [("env".to_owned(), "prod".to_owned())].into();
        assert_eq!(
            announceable(&gold),
            vec![
                "198.51.100.1 from a",
                "203.0.113.1 from manual",
                "198.51.100.65 from team",
                "198.51.100.129 from prod"
            ]
        );
        // Naming a pool: only that pool, auto-assign or not, if it admits it.
        let mut named = plain.clone();
        named.pool = Some("manual".into());
        assert_eq!(announceable(&named), vec!["203.0.113.1 from manual"]);
        named.pool = Some("team".into());
        assert!(announceable(&named).is_empty());
    }

    #[test]
    fn refusals_name_the_service_the_address_and_why() {
        let nodes = [node("node-1")];
        let services = [
            service("web", &["198.51.100.10", "198.51.101.1"]),
            service("ok", &["198.51.100.11"]),
        ];
        assert_eq!(
            refusals(&config(), &services, &nodes),
            vec![Refused {
                service: ServiceKey::new("default", "web"),
                address: "198.51.101.1".parse().unwrap(),
                reason: "not_in_pool",
                why: "it lies in no ferrolb pool".into(),
            }]
        );
    }

    #[test]
    fn only_the_new_owner_reports_node_assigned_and_only_once() {
        let nodes = [node("node-1"), node("node-2")];
        let services = [service("web", &["198.51.100.10"])];
        let all = live(&["node-1", "node-2"]);
        let plans: Vec<Plan> = ["node-1", "node-2"]
            .iter()
            .map(|me| {
                plan(
                    &config(),
                    &services,
                    &nodes,
                    &all,
                    me,
                    &BTreeMap::new(),
                    0,
                    &mut Rankings::new(),
                )
            })
            .collect();
        let reporting: Vec<&Plan> = plans
            .iter()
            .filter(|p| p.changes[0].event.is_some())
            .collect();
        assert_eq!(reporting.len(), 1);
        let event = reporting[0].changes[0].event.clone().unwrap();
        assert_eq!(event.reason, "nodeAssigned");
        let again = plan(
            &config(),
            &services,
            &nodes,
            &all,
            "node-1",
            &plans[0].owners,
            0,
            &mut Rankings::new(),
        );
        assert!(again.changes.is_empty(), "{:?}", again.changes);
    }

    #[test]
    fn with_nobody_to_announce_the_first_live_node_alone_warns() {
        let nodes = [node("node-1"), node("node-2")];
        let mut svc = service("web", &["198.51.100.10"]);
        svc.has_serving_endpoints = false;
        let all = live(&["node-1", "node-2"]);
        let first = plan(
            &config(),
            &[svc.clone()],
            &nodes,
            &all,
            "node-1",
            &BTreeMap::new(),
            0,
            &mut Rankings::new(),
        );
        let second = plan(
            &config(),
            &[svc],
            &nodes,
            &all,
            "node-2",
            &BTreeMap::new(),
            0,
            &mut Rankings::new(),
        );
        let event = first.changes[0].event.clone().unwrap();
        assert_eq!((event.warning, event.reason), (true, "NoAnnouncingNode"));
        assert_eq!(event.action, Reason::NoServingEndpoints.as_label());
        assert!(second.changes[0].event.is_none());
    }

    #[test]
    fn a_raised_reannounce_epoch_changes_the_announcements_so_the_announcer_bursts() {
        let nodes = [node("node-1")];
        let services = [service("web", &["198.51.100.10"])];
        let one = live(&["node-1"]);
        let before = plan(
            &config(),
            &services,
            &nodes,
            &one,
            "node-1",
            &BTreeMap::new(),
            0,
            &mut Rankings::new(),
        );
        let after = plan(
            &config(),
            &services,
            &nodes,
            &one,
            "node-1",
            &before.owners,
            1,
            &mut Rankings::new(),
        );
        assert_ne!(before.announcements, after.announcements);
        assert!(after.changes.is_empty());
    }

    #[test]
    fn an_address_won_from_another_node_is_a_takeover_and_a_first_one_is_not() {
        let nodes = [node("node-1")];
        let services = [service("web", &["198.51.100.10"])];
        let one = live(&["node-1"]);
        let ip = "198.51.100.10".parse().unwrap();
        let first = plan(
            &config(),
            &services,
            &nodes,
            &one,
            "node-1",
            &BTreeMap::new(),
            0,
            &mut Rankings::new(),
        );
        assert!(!first.announcements.is_takeover(ip));
        let held = BTreeMap::from([(ServiceKey::new("default", "web"), Some("node-2".to_owned()))]);
        let taken = plan(
            &config(),
            &services,
            &nodes,
            &one,
            "node-1",
            &held,
            0,
            &mut Rankings::new(),
        );
        assert!(taken.announcements.is_takeover(ip));
    }

    proptest::proptest! {
        /// Rankings kept across decisions, while Nodes come and go, speakers
        /// die and revive and Services change, decide exactly as a fresh
        /// election over the same facts.
        #[test]
        fn kept_rankings_decide_as_a_fresh_election(
            steps in proptest::collection::vec(
                (
                    proptest::collection::btree_set(0..6u8, 0..6),
                    proptest::collection::btree_set(0..6u8, 0..6),
                    proptest::collection::btree_set(1..40u8, 0..8),
                ),
                1..8,
            )
        ) {
            let mut kept = Rankings::new();
            for (present, alive, octets) in steps {
                let nodes: Vec<NodeView> =
                    present.iter().map(|i| node(&format!("node-{i}"))).collect();
                let live: BTreeSet<String> = alive.iter().map(|i| format!("node-{i}")).collect();
                let services: Vec<ServiceView> = octets
                    .iter()
                    .map(|o| service(&format!("s{o}"), &[&format!("198.51.100.{o}")]))
                    .collect();
                for me in (0..6u8).map(|i| format!("node-{i}")) {
                    let with_kept = decide(&config(), &services, &nodes, &live, &me, &mut kept);
                    let fresh =
                        decide(&config(), &services, &nodes, &live, &me, &mut Rankings::new());
                    proptest::prop_assert_eq!(with_kept, fresh);
                }
            }
        }
    }
}
