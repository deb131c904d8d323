//! Which addresses this node announces: for every Service holding ferrolb
//! addresses, the pool's rules and the nodes' facts go through
//! [`election::elect`], and the addresses won by this node, with the
//! interfaces their pool allows, form the [`Announcements`]. Pure: views of
//! the cluster in, decisions out; the shell translates Kubernetes objects.

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
}
