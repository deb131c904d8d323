//! Which addresses this node announces: for every Service holding ferrolb
//! addresses, the pool's rules and the nodes' facts go through
//! [`election::elect`], and the addresses won by this node, with the
//! interfaces their pool allows, form the [`Announcements`]. [`plan`] adds
//! what the shell must say about it (events, one per change of owner). Pure:
//! views of the cluster in, decisions out; the shell translates Kubernetes
//! objects and carries the plan out.
//!
//! Who is live comes from the LAN membership ([`crate::liveness`]), the rest
//! (pools, Services, endpoints, Node facts) from the API as last seen: while
//! the API cannot be reached the plan is made from the last views, which
//! never age anyone. Nothing is announced before the membership has settled.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_config::{Config, ServiceKey, TrafficPolicy};

use crate::announcer::Announcements;
use crate::election::{self, Candidate, EXCLUDE_FROM_LOAD_BALANCERS, Election, ServiceAddress};

/// What the election needs to know of a Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The node name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its `Ready` condition is `True`.
    pub ready: bool,
    /// Its `NetworkUnavailable` condition is `True`.
    pub network_unavailable: bool,
}

/// What the election needs to know of a Service with ferrolb addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    /// Which Service.
    pub key: ServiceKey,
    /// Its `status.loadBalancer.ingress` addresses, in order.
    pub addresses: Vec<IpAddr>,
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

/// Decides, from node `me`'s view, who announces every Service's addresses
/// and which of them `me` announces. Services whose first address lies in no
/// pool of `config` are not ferrolb's to announce and are left out.
pub fn decide(
    config: &Config,
    services: &[ServiceView],
    nodes: &[NodeView],
    live: &BTreeSet<String>,
    me: &str,
) -> (Announcements, Vec<Decision>) {
    let mut announcements = Announcements::new();
    let mut decisions = Vec::new();
    for service in services {
        let Some(&first) = service.addresses.first() else {
            continue;
        };
        let Some(pool) = config.pool_of(first) else {
            continue;
        };
        let candidates: Vec<Candidate<'_>> = nodes
            .iter()
            .map(|node| Candidate {
                name: &node.name,
                labels: &node.labels,
                speaker_live: live.contains(&node.name),
                ready: node.ready,
                network_unavailable: node.network_unavailable,
                excluded: node.labels.contains_key(EXCLUDE_FROM_LOAD_BALANCERS),
                has_serving_endpoint: service.ready_endpoint_nodes.contains(&node.name),
            })
            .collect();
        let address = ServiceAddress {
            address: first,
            traffic_policy: service.traffic_policy,
            has_serving_endpoints: service.has_serving_endpoints,
            node_selectors: &pool.node_selectors,
        };
        let election = election::elect(&address, &candidates, me);
        if election.is_me() {
            for ip in &service.addresses {
                let interfaces = config
                    .pool_of(*ip)
                    .map(|p| p.interfaces.clone())
                    .unwrap_or_default();
                announcements.announce(*ip, interfaces);
            }
        }
        decisions.push(Decision {
            service: service.key.clone(),
            addresses: service.addresses.clone(),
            election,
        });
    }
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
}

/// Plans, from node `me`'s view, what it announces and which events it
/// publishes, given the owner per Service it saw last (`owners`). Only the
/// new owner reports `nodeAssigned`; when nobody can announce, the first live
/// node by name reports `NoAnnouncingNode`, so one event is raised, not one
/// per node. `reannounce` is the membership's re-announce epoch.
pub fn plan(
    config: &Config,
    services: &[ServiceView],
    nodes: &[NodeView],
    live: &BTreeSet<String>,
    me: &str,
    owners: &BTreeMap<ServiceKey, Option<String>>,
    reannounce: u64,
) -> Plan {
    let (announcements, decisions) = decide(config, services, nodes, live, me);
    let mut now_owners = BTreeMap::new();
    let mut changes = Vec::new();
    for decision in decisions {
        let owner = decision.election.owner.clone();
        now_owners.insert(decision.service.clone(), owner.clone());
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
            ready: true,
            network_unavailable: false,
        }
    }

    fn service(name: &str, addresses: &[&str]) -> ServiceView {
        ServiceView {
            key: ServiceKey::new("default", name),
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
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
                let (announced, _) = decide(&config(), &services, &nodes, &all, me);
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
    fn the_pool_interfaces_go_with_the_announcement() {
        let nodes = [node("node-1")];
        let services = [service("web", &["198.51.100.10"])];
        let (announced, _) = decide(&config(), &services, &nodes, &live(&["node-1"]), "node-1");
        let interfaces = announced
            .interfaces("198.51.100.10".parse().unwrap())
            .unwrap();
        assert_eq!(interfaces.iter().collect::<Vec<_>>(), vec!["eth0"]);
    }

    #[test]
    fn an_address_in_no_pool_is_not_ours_to_announce() {
        let nodes = [node("node-1")];
        let services = [service("other", &["203.0.113.7"])];
        let (announced, decisions) =
            decide(&config(), &services, &nodes, &live(&["node-1"]), "node-1");
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
        );
        let first = decisions[0].election.owner.clone().unwrap();
        let survivor = if first == "node-1" {
            "node-2"
        } else {
            "node-1"
        };
        let (announced, decisions) =
            decide(&config(), &services, &nodes, &live(&[survivor]), survivor);
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
        );
        assert_eq!(decisions[0].election.owner.as_deref(), Some("node-3"));
    }

    #[test]
    fn a_service_without_serving_endpoints_is_announced_by_nobody() {
        let nodes = [node("node-1")];
        let mut svc = service("web", &["198.51.100.10"]);
        svc.has_serving_endpoints = false;
        let (announced, decisions) =
            decide(&config(), &[svc], &nodes, &live(&["node-1"]), "node-1");
        assert!(announced.is_empty());
        assert_eq!(
            decisions[0].election.reason(),
            Some(Reason::NoServingEndpoints)
        );
    }

    #[test]
    fn only_the_new_owner_reports_node_assigned_and_only_once() {
        let nodes = [node("node-1"), node("node-2")];
        let services = [service("web", &["198.51.100.10"])];
        let all = live(&["node-1", "node-2"]);
        let plans: Vec<Plan> = ["node-1", "node-2"]
            .iter()
            .map(|me| plan(&config(), &services, &nodes, &all, me, &BTreeMap::new(), 0))
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
        );
        let second = plan(
            &config(),
            &[svc],
            &nodes,
            &all,
            "node-2",
            &BTreeMap::new(),
            0,
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
        );
        let after = plan(
            &config(),
            &services,
            &nodes,
            &one,
            "node-1",
            &before.owners,
            1,
        );
        assert_ne!(before.announcements, after.announcements);
        assert!(after.changes.is_empty());
    }
}
