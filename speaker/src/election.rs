//! Which node announces a Service's address: [`elect`] turns the facts every
//! speaker shares (nodes, their health and labels, where endpoints run) into
//! one owner, the same on every node. Pure: names and flags in, an
//! [`Election`] out; no Node or EndpointSlice types, no clock.
//!
//! The order is MetalLB's (`sortL2Candidates` in `speaker/layer2_controller.go`):
//! eligible nodes sorted by the SHA-256 digest of `node name + "#" + address`,
//! digests compared as bytes, ascending; the first wins. A cluster moving from
//! MetalLB therefore keeps its owners. Properties that follow: removing a node
//! that does not own an address never moves it; adding a node moves it only
//! to the new node; all Services sharing an address land on the same node.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use ferrolb_config::{NodeSelector, TrafficPolicy};
use sha2::{Digest, Sha256};

/// The label that takes a node out of every load balancer (Kubernetes
/// well-known label; its value does not matter).
pub const EXCLUDE_FROM_LOAD_BALANCERS: &str =
    "node.kubernetes.io/exclude-from-external-load-balancers";

/// One node that might announce, with the facts that decide whether it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// The Kubernetes node name.
    pub name: &'a str,
    /// The node's labels, matched against the pool's node selectors.
    pub labels: &'a BTreeMap<String, String>,
    /// Whether the node's speaker is alive, as the membership layer sees it.
    /// The Node's `Ready` condition is not a fact here, as in MetalLB: the
    /// control plane writes it about a node, and a node cut from the API
    /// server would never see it change, so two nodes would both own.
    pub speaker_live: bool,
    /// Whether the Node's `NetworkUnavailable` condition is `True`.
    pub network_unavailable: bool,
    /// Whether the node carries [`EXCLUDE_FROM_LOAD_BALANCERS`] (the caller
    /// may ignore the label on purpose, like MetalLB's `--ignore-exclude-lb`).
    pub excluded: bool,
    /// Whether a serving endpoint of the Service runs on this node; decides
    /// only for `externalTrafficPolicy: Local`.
    pub has_serving_endpoint: bool,
}

impl<'a> Candidate<'a> {
    /// A node in good health — speaker live, network available — with
    /// `excluded` read from its labels and no local endpoint. Adjust the
    /// fields for anything else.
    pub fn healthy(name: &'a str, labels: &'a BTreeMap<String, String>) -> Candidate<'a> {
        Candidate {
            name,
            labels,
            speaker_live: true,
            network_unavailable: false,
            excluded: labels.contains_key(EXCLUDE_FROM_LOAD_BALANCERS),
            has_serving_endpoint: false,
        }
    }
}

/// The Service address being elected for, with the Service and pool facts
/// that decide who may announce it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceAddress<'a> {
    /// The Service's first ingress address: the election key, so that every
    /// family of a dual-stack Service and every Service sharing the address
    /// get the same owner.
    pub address: IpAddr,
    /// `externalTrafficPolicy`.
    pub traffic_policy: TrafficPolicy,
    /// Whether any endpoint of the Service can serve: ready, or terminating
    /// but still serving. Without one, nobody announces.
    pub has_serving_endpoints: bool,
    /// The pool's node selectors; a node must match one. Empty: every node.
    pub node_selectors: &'a [NodeSelector],
}

/// Why a node may not announce an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ineligible {
    /// The node is not among the candidates at all.
    Unknown,
    /// Its speaker is not alive.
    SpeakerDown,
    /// The Node's network is unavailable.
    NetworkUnavailable,
    /// The Node carries [`EXCLUDE_FROM_LOAD_BALANCERS`].
    Excluded,
    /// None of the pool's node selectors matches the node.
    NotSelected,
    /// `externalTrafficPolicy: Local` and no serving endpoint on the node.
    NoLocalEndpoint,
}

impl Ineligible {
    /// A stable label for metrics and events.
    pub fn as_label(self) -> &'static str {
        match self {
            Ineligible::Unknown => "unknown_node",
            Ineligible::SpeakerDown => "speaker_down",
            Ineligible::NetworkUnavailable => "network_unavailable",
            Ineligible::Excluded => "excluded_from_load_balancers",
            Ineligible::NotSelected => "not_selected_by_pool",
            Ineligible::NoLocalEndpoint => "no_local_endpoint",
        }
    }
}

impl fmt::Display for Ineligible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ineligible::Unknown => "the node is not a candidate",
            Ineligible::SpeakerDown => "the node's speaker is down",
            Ineligible::NetworkUnavailable => "the node's network is unavailable",
            Ineligible::Excluded => "the node is excluded from external load balancers",
            Ineligible::NotSelected => "no node selector of the pool matches the node",
            Ineligible::NoLocalEndpoint => {
                "traffic policy is Local and no serving endpoint runs on the node"
            }
        })
    }
}

/// Whether `candidate` may announce `service`'s address, and if not why.
/// The checks run in the order of [`Ineligible`]'s variants, so the first
/// reason found is reported.
pub fn eligibility(
    candidate: &Candidate<'_>,
    service: &ServiceAddress<'_>,
) -> Result<(), Ineligible> {
    if !candidate.speaker_live {
        return Err(Ineligible::SpeakerDown);
    }
    if candidate.network_unavailable {
        return Err(Ineligible::NetworkUnavailable);
    }
    if candidate.excluded {
        return Err(Ineligible::Excluded);
    }
    if !service.node_selectors.is_empty()
        && !service
            .node_selectors
            .iter()
            .any(|s| s.matches(candidate.labels))
    {
        return Err(Ineligible::NotSelected);
    }
    if service.traffic_policy == TrafficPolicy::Local && !candidate.has_serving_endpoint {
        return Err(Ineligible::NoLocalEndpoint);
    }
    Ok(())
}

/// Why this node does not announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The Service has no endpoint that can serve: nobody announces.
    NoServingEndpoints,
    /// No node is eligible: nobody announces.
    NoEligibleNode,
    /// This node may not announce; another one does.
    Ineligible(Ineligible),
    /// This node is eligible, but another sorts first.
    Outranked,
}

impl Reason {
    /// A stable label for metrics and events.
    pub fn as_label(self) -> &'static str {
        match self {
            Reason::NoServingEndpoints => "no_serving_endpoints",
            Reason::NoEligibleNode => "no_eligible_node",
            Reason::Ineligible(why) => why.as_label(),
            Reason::Outranked => "outranked",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoServingEndpoints => f.write_str("the Service has no serving endpoint"),
            Reason::NoEligibleNode => f.write_str("no node is eligible to announce"),
            Reason::Ineligible(why) => why.fmt(f),
            Reason::Outranked => f.write_str("another eligible node sorts first"),
        }
    }
}

/// Whether this node announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// This node announces the address.
    Owner,
    /// This node does not.
    NotOwner(Reason),
}

/// The result of an election, the same on every speaker that shares its
/// inputs, except for [`Election::outcome`], which is from `me`'s view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Election {
    /// The node that announces the address, if any (for the `nodeAssigned`
    /// event and logs).
    pub owner: Option<String>,
    /// Whether that is this node, and if not why.
    pub outcome: Outcome,
}

impl Election {
    /// Whether this node announces the address.
    pub fn is_me(&self) -> bool {
        self.outcome == Outcome::Owner
    }

    /// Why this node does not announce, if it does not.
    pub fn reason(&self) -> Option<Reason> {
        match self.outcome {
            Outcome::Owner => None,
            Outcome::NotOwner(reason) => Some(reason),
        }
    }
}

/// Elects the node that announces `service`'s address among `candidates`,
/// from the view of the node named `me`.
///
/// Every speaker given the same candidates and Service facts elects the same
/// owner, whatever the order of `candidates`.
pub fn elect(service: &ServiceAddress<'_>, candidates: &[Candidate<'_>], me: &str) -> Election {
    if !service.has_serving_endpoints {
        return Election {
            owner: None,
            outcome: Outcome::NotOwner(Reason::NoServingEndpoints),
        };
    }
    let key = address_key(service.address);
    let owner = candidates
        .iter()
        .filter(|c| eligibility(c, service).is_ok())
        .map(|c| (rank(c.name, &key), c.name))
        .min()
        .map(|(_, name)| name);
    let Some(owner) = owner else {
        return Election {
            owner: None,
            outcome: Outcome::NotOwner(Reason::NoEligibleNode),
        };
    };
    let outcome = if owner == me {
        Outcome::Owner
    } else {
        let mine = candidates
            .iter()
            .find(|c| c.name == me)
            .map_or(Err(Ineligible::Unknown), |c| eligibility(c, service));
        Outcome::NotOwner(match mine {
            Ok(()) => Reason::Outranked,
            Err(why) => Reason::Ineligible(why),
        })
    };
    Election {
        owner: Some(owner.to_owned()),
        outcome,
    }
}

/// A node's place in the order for `key`: lower sorts first.
fn rank(node: &str, key: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(node.as_bytes());
    hasher.update(b"#");
    hasher.update(key.as_bytes());
    hasher.finalize().into()
}

/// The address as MetalLB hashes it: Go's `net.IP.String()`. It matches
/// Rust's `Display` (RFC 5952 form) except for IPv4-mapped IPv6 addresses,
/// which Go prints as plain IPv4.
fn address_key(address: IpAddr) -> String {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// How many of an address's best-ranked nodes a [`Rankings`] keeps: enough
/// that a few dead or ineligible nodes at the top never force a rescan, few
/// enough that 50,000 addresses hold a few megabytes.
pub const TOP: usize = 8;

/// A node's number in a [`Rankings`]; stable while the node is known.
type NodeId = u32;

/// One address's best-ranked nodes, ascending, and its election key.
#[derive(Debug, Clone)]
struct Ranking {
    key: String,
    /// The [`TOP`] lowest `(rank, node)` pairs among all known nodes (all of
    /// them when fewer are known), sorted.
    top: Vec<([u8; 32], NodeId)>,
}

/// What a node is, for eligibility, apart from a Service's endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    /// The node's labels, matched against the pool's node selectors.
    pub labels: BTreeMap<String, String>,
    /// Whether the node's speaker is alive.
    pub speaker_live: bool,
    /// Whether the Node's network is unavailable.
    pub network_unavailable: bool,
    /// Whether the node is excluded from external load balancers.
    pub excluded: bool,
}

impl NodeFacts {
    /// A healthy node with `labels` (exclusion read from them).
    pub fn healthy(labels: BTreeMap<String, String>) -> NodeFacts {
        NodeFacts {
            excluded: labels.contains_key(EXCLUDE_FROM_LOAD_BALANCERS),
            labels,
            speaker_live: true,
            network_unavailable: false,
        }
    }
}

/// The election kept up to date as nodes and addresses come and go, so that
/// no pass rehashes every address against every node.
///
/// Each address keeps its [`TOP`] best-ranked nodes (MetalLB's SHA-256 order,
/// as [`elect`]); electing walks them and takes the first eligible one, and
/// only when all of them are ineligible falls back to hashing the eligible
/// nodes. Each address also remembers its last owner, so that when a node
/// dies [`Rankings::owned_by`] names the only addresses that may move
/// (removing a node that owns nothing never moves an address). Results equal
/// [`elect`]'s for the same facts; the cost of a new node is one hash per
/// address, of a new address one hash per node.
#[derive(Debug, Clone, Default)]
pub struct Rankings {
    names: Vec<String>,
    facts: Vec<Option<NodeFacts>>,
    ids: HashMap<String, NodeId>,
    free: Vec<NodeId>,
    by_address: HashMap<IpAddr, Ranking>,
    owner_of: HashMap<IpAddr, NodeId>,
    owned: HashMap<NodeId, HashSet<IpAddr>>,
}

impl Rankings {
    /// Nothing known.
    pub fn new() -> Rankings {
        Rankings::default()
    }

    /// How many nodes and addresses are known.
    pub fn len(&self) -> (usize, usize) {
        (self.ids.len(), self.by_address.len())
    }

    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.by_address.is_empty()
    }

    /// Adds node `name` or updates its facts. A new node is ranked against
    /// every known address (one hash each).
    pub fn set_node(&mut self, name: &str, facts: NodeFacts) {
        if let Some(&id) = self.ids.get(name) {
            self.facts[id as usize] = Some(facts);
            return;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.names[id as usize] = name.to_owned();
                self.facts[id as usize] = Some(facts);
                id
            }
            None => {
                self.names.push(name.to_owned());
                self.facts.push(Some(facts));
                NodeId::try_from(self.names.len() - 1).expect("fewer than 2^32 nodes")
            }
        };
        self.ids.insert(name.to_owned(), id);
        for ranking in self.by_address.values_mut() {
            let entry = (rank(name, &ranking.key), id);
            if ranking.top.len() < TOP || entry < ranking.top[TOP - 1] {
                let at = ranking.top.partition_point(|e| *e < entry);
                ranking.top.insert(at, entry);
                ranking.top.truncate(TOP);
            }
        }
    }

    /// Whether node `name` is known.
    pub fn has_node(&self, name: &str) -> bool {
        self.ids.contains_key(name)
    }

    /// The facts known of node `name`.
    pub fn node(&self, name: &str) -> Option<&NodeFacts> {
        let id = *self.ids.get(name)?;
        self.facts[id as usize].as_ref()
    }

    /// Marks node `name`'s speaker live or dead; returns the addresses it
    /// owned at their last election, the only ones whose owner may change
    /// when it dies. Unknown nodes own nothing.
    pub fn set_live(&mut self, name: &str, live: bool) -> Vec<IpAddr> {
        let Some(&id) = self.ids.get(name) else {
            return Vec::new();
        };
        if let Some(facts) = self.facts[id as usize].as_mut() {
            facts.speaker_live = live;
        }
        self.owned_by(name)
    }

    /// The addresses whose last election `name` won.
    pub fn owned_by(&self, name: &str) -> Vec<IpAddr> {
        self.ids
            .get(name)
            .and_then(|id| self.owned.get(id))
            .map(|set| set.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Forgets node `name` (the Node was deleted). Addresses that ranked it
    /// among their best are re-ranked against every node.
    pub fn remove_node(&mut self, name: &str) {
        let Some(id) = self.ids.remove(name) else {
            return;
        };
        self.facts[id as usize] = None;
        self.free.push(id);
        if let Some(addresses) = self.owned.remove(&id) {
            for address in addresses {
                self.owner_of.remove(&address);
            }
        }
        let stale: Vec<IpAddr> = self
            .by_address
            .iter()
            .filter(|(_, r)| r.top.iter().any(|&(_, n)| n == id))
            .map(|(a, _)| *a)
            .collect();
        for address in stale {
            let ranking = self.full_ranking(address);
            self.by_address.insert(address, ranking);
        }
    }

    /// Forgets every node that `keep` rejects (the Nodes deleted since the
    /// last look).
    pub fn retain_nodes(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self.ids.keys().filter(|n| !keep(n)).cloned().collect();
        for name in gone {
            self.remove_node(&name);
        }
    }

    /// Forgets every address that `keep` rejects (no Service holds it any
    /// more).
    pub fn retain_addresses(&mut self, keep: impl Fn(&IpAddr) -> bool) {
        let gone: Vec<IpAddr> = self
            .by_address
            .keys()
            .filter(|a| !keep(a))
            .copied()
            .collect();
        for address in gone {
            self.remove_address(address);
        }
    }

    /// Adds an address to elect for (one hash per known node); a known one
    /// is left as it is.
    pub fn add_address(&mut self, address: IpAddr) {
        if !self.by_address.contains_key(&address) {
            let ranking = self.full_ranking(address);
            self.by_address.insert(address, ranking);
        }
    }

    /// Forgets an address.
    pub fn remove_address(&mut self, address: IpAddr) {
        self.by_address.remove(&address);
        self.forget_owner(address);
    }

    /// Elects the owner of `service`'s address from `me`'s view, as [`elect`]
    /// would over every known node, where the nodes with a serving endpoint
    /// of the Service are `endpoint_nodes`; the address is added if it was
    /// unknown. Remembers the owner for [`Rankings::owned_by`].
    pub fn elect(
        &mut self,
        service: &ServiceAddress<'_>,
        endpoint_nodes: &BTreeSet<String>,
        me: &str,
    ) -> Election {
        self.add_address(service.address);
        let owner = if service.has_serving_endpoints {
            self.find_owner(service, endpoint_nodes)
        } else {
            None
        };
        match owner {
            Some(id) => {
                let previous = self.owner_of.insert(service.address, id);
                if previous != Some(id) {
                    if let Some(previous) = previous
                        && let Some(set) = self.owned.get_mut(&previous)
                    {
                        set.remove(&service.address);
                    }
                    self.owned.entry(id).or_default().insert(service.address);
                }
            }
            None => self.forget_owner(service.address),
        }
        if !service.has_serving_endpoints {
            return Election {
                owner: None,
                outcome: Outcome::NotOwner(Reason::NoServingEndpoints),
            };
        }
        let Some(owner) = owner else {
            return Election {
                owner: None,
                outcome: Outcome::NotOwner(Reason::NoEligibleNode),
            };
        };
        let owner = &self.names[owner as usize];
        let outcome = if owner == me {
            Outcome::Owner
        } else {
            let mine = self.ids.get(me).map_or(Err(Ineligible::Unknown), |&id| {
                self.eligibility_of(id, service, endpoint_nodes)
            });
            Outcome::NotOwner(match mine {
                Ok(()) => Reason::Outranked,
                Err(why) => Reason::Ineligible(why),
            })
        };
        Election {
            owner: Some(owner.clone()),
            outcome,
        }
    }

    /// The memory the rankings hold, in bytes (an estimate from capacities).
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        let rankings: usize = self
            .by_address
            .values()
            .map(|r| r.key.capacity() + r.top.capacity() * size_of::<([u8; 32], NodeId)>())
            .sum();
        let names: usize = self.names.iter().map(|n| n.capacity() * 2).sum();
        let labels: usize = self
            .facts
            .iter()
            .flatten()
            .flat_map(|f| f.labels.iter())
            .map(|(k, v)| k.capacity() + v.capacity() + 2 * size_of::<String>())
            .sum();
        let owned: usize = self
            .owned
            .values()
            .map(|s| s.capacity() * (size_of::<IpAddr>() + 8))
            .sum();
        rankings
            + self.by_address.capacity() * (size_of::<IpAddr>() + size_of::<Ranking>() + 8)
            + self.owner_of.capacity() * (size_of::<IpAddr>() + size_of::<NodeId>() + 8)
            + self.ids.capacity() * (size_of::<String>() + size_of::<NodeId>() + 8)
            + self.facts.capacity() * size_of::<Option<NodeFacts>>()
            + self.names.capacity() * size_of::<String>()
            + names
            + labels
            + owned
    }

    fn forget_owner(&mut self, address: IpAddr) {
        if let Some(previous) = self.owner_of.remove(&address)
            && let Some(set) = self.owned.get_mut(&previous)
        {
            set.remove(&address);
        }
    }

    fn full_ranking(&self, address: IpAddr) -> Ranking {
        let key = address_key(address);
        let mut top: Vec<([u8; 32], NodeId)> = Vec::with_capacity(TOP + 1);
        for (name, &id) in &self.ids {
            let entry = (rank(name, &key), id);
            if top.len() < TOP || entry < top[TOP - 1] {
                let at = top.partition_point(|e| *e < entry);
                top.insert(at, entry);
                top.truncate(TOP);
            }
        }
        top.shrink_to_fit();
        Ranking { key, top }
    }

    fn eligibility_of(
        &self,
        id: NodeId,
        service: &ServiceAddress<'_>,
        endpoint_nodes: &BTreeSet<String>,
    ) -> Result<(), Ineligible> {
        let Some(facts) = self.facts[id as usize].as_ref() else {
            return Err(Ineligible::Unknown);
        };
        let name = &self.names[id as usize];
        let candidate = Candidate {
            name,
            labels: &facts.labels,
            speaker_live: facts.speaker_live,
            network_unavailable: facts.network_unavailable,
            excluded: facts.excluded,
            has_serving_endpoint: service.traffic_policy == TrafficPolicy::Local
                && endpoint_nodes.contains(name),
        };
        eligibility(&candidate, service)
    }

    fn find_owner(
        &self,
        service: &ServiceAddress<'_>,
        endpoint_nodes: &BTreeSet<String>,
    ) -> Option<NodeId> {
        let ranking = self.by_address.get(&service.address)?;
        if let Some(&(_, id)) = ranking
            .top
            .iter()
            .find(|&&(_, id)| self.eligibility_of(id, service, endpoint_nodes).is_ok())
        {
            return Some(id);
        }
        if ranking.top.len() == self.ids.len() {
            return None;
        }
        // Every one of the best-ranked nodes is ineligible: hash the eligible
        // ones. With Local traffic only nodes with an endpoint can be.
        let eligible = |&id: &NodeId| self.eligibility_of(id, service, endpoint_nodes).is_ok();
        let ranked = |id: NodeId| (rank(&self.names[id as usize], &ranking.key), id);
        if service.traffic_policy == TrafficPolicy::Local {
            endpoint_nodes
                .iter()
                .filter_map(|n| self.ids.get(n).copied())
                .filter(eligible)
                .map(ranked)
                .min()
                .map(|(_, id)| id)
        } else {
            self.ids
                .values()
                .copied()
                .filter(eligible)
                .map(ranked)
                .min()
                .map(|(_, id)| id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrolb_config::{LabelOperator, LabelRequirement};
    use proptest::prelude::*;

    const V4: &str = "198.51.100.10";
    const V6: &str = "2001:db8:100::10";
    const NODES: [&str; 5] = ["node1", "node2", "node3", "node4", "node5"];

    fn no_labels() -> &'static BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        &EMPTY
    }

    fn cluster() -> Vec<Candidate<'static>> {
        NODES
            .iter()
            .map(|n| Candidate::healthy(n, no_labels()))
            .collect()
    }

    fn service(address: &str) -> ServiceAddress<'static> {
        ServiceAddress {
            address: address.parse().expect("test address"),
            traffic_policy: TrafficPolicy::Cluster,
            has_serving_endpoints: true,
            node_selectors: &[],
        }
    }

    fn with<'a>(
        mut nodes: Vec<Candidate<'a>>,
        name: &str,
        edit: impl Fn(&mut Candidate<'a>),
    ) -> Vec<Candidate<'a>> {
        for node in nodes.iter_mut().filter(|n| n.name == name) {
            edit(node);
        }
        nodes
    }

    /// The digests, as `printf 'node1#198.51.100.10' | sha256sum` prints
    /// them, sorted; the same order Go's sort in MetalLB produced for these
    /// names and addresses.
    #[test]
    fn the_order_is_metallbs_sha256_of_node_hash_address() {
        assert_eq!(
            hex(&rank("node4", V4)),
            "6e55a5d090b9cf7d68e215db161d13fbc171ddfafb24d0b230430cbd47e80f5c"
        );
        assert_eq!(
            hex(&rank("node1", V4)),
            "ea2d0ecde80c446e3d12aa2a2306c95b912c063256ff42fa61c6f5dcda1192d7"
        );
        let order = |address: &str| {
            let key = address_key(address.parse().expect("address"));
            let mut nodes = NODES.to_vec();
            nodes.sort_by_key(|n| rank(n, &key));
            nodes
        };
        assert_eq!(order(V4), ["node4", "node3", "node5", "node2", "node1"]);
        assert_eq!(order(V6), ["node3", "node2", "node5", "node1", "node4"]);
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn addresses_are_hashed_as_go_prints_them() {
        let key = |s: &str| address_key(s.parse().expect("address"));
        assert_eq!(key("2001:DB8:100::A"), "2001:db8:100::a");
        assert_eq!(key("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1");
        assert_eq!(key("2001:0:0:1:0:0:0:1"), "2001:0:0:1::1");
        assert_eq!(key("::ffff:198.51.100.10"), "198.51.100.10");
        assert_eq!(key("::198.51.100.10"), "::c633:640a");
    }

    #[test]
    fn election_scenarios() {
        struct Case {
            desc: &'static str,
            service: ServiceAddress<'static>,
            nodes: Vec<Candidate<'static>>,
            me: &'static str,
            owner: Option<&'static str>,
            outcome: Outcome,
        }
        let local = ServiceAddress {
            traffic_policy: TrafficPolicy::Local,
            ..service(V4)
        };
        let cases = vec![
            Case {
                desc: "node4 sorts first for the IPv4 address and announces it",
                service: service(V4),
                nodes: cluster(),
                me: "node4",
                owner: Some("node4"),
                outcome: Outcome::Owner,
            },
            Case {
                desc: "node1 sorts last and does not",
                service: service(V4),
                nodes: cluster(),
                me: "node1",
                owner: Some("node4"),
                outcome: Outcome::NotOwner(Reason::Outranked),
            },
            Case {
                desc: "the IPv6 address has its own order: node3 wins",
                service: service(V6),
                nodes: cluster(),
                me: "node3",
                owner: Some("node3"),
                outcome: Outcome::Owner,
            },
            Case {
                desc: "node4's speaker dies: node3, next in order, takes over",
                service: service(V4),
                nodes: with(cluster(), "node4", |n| n.speaker_live = false),
                me: "node3",
                owner: Some("node3"),
                outcome: Outcome::Owner,
            },
            Case {
                desc: "node4 itself learns it lost the address because its speaker is seen down",
                service: service(V4),
                nodes: with(cluster(), "node4", |n| n.speaker_live = false),
                me: "node4",
                owner: Some("node3"),
                outcome: Outcome::NotOwner(Reason::Ineligible(Ineligible::SpeakerDown)),
            },
            Case {
                desc: "node4's network is unavailable: node3 takes over",
                service: service(V4),
                nodes: with(cluster(), "node4", |n| n.network_unavailable = true),
                me: "node3",
                owner: Some("node3"),
                outcome: Outcome::Owner,
            },
            Case {
                desc: "node4 carries the exclude-from-load-balancers label",
                service: service(V4),
                nodes: with(cluster(), "node4", |n| n.excluded = true),
                me: "node4",
                owner: Some("node3"),
                outcome: Outcome::NotOwner(Reason::Ineligible(Ineligible::Excluded)),
            },
            Case {
                desc: "a node that fails after the owner changes nothing: node1 leaves, node4 keeps it",
                service: service(V4),
                nodes: with(cluster(), "node1", |n| n.speaker_live = false),
                me: "node4",
                owner: Some("node4"),
                outcome: Outcome::Owner,
            },
            Case {
                desc: "a Service without a serving endpoint is announced by no one",
                service: ServiceAddress {
                    has_serving_endpoints: false,
                    ..service(V4)
                },
                nodes: cluster(),
                me: "node4",
                owner: None,
                outcome: Outcome::NotOwner(Reason::NoServingEndpoints),
            },
            Case {
                desc: "with every speaker down nobody announces",
                service: service(V4),
                nodes: cluster()
                    .into_iter()
                    .map(|n| Candidate {
                        speaker_live: false,
                        ..n
                    })
                    .collect(),
                me: "node4",
                owner: None,
                outcome: Outcome::NotOwner(Reason::NoEligibleNode),
            },
            Case {
                desc: "Local policy: only nodes with a serving endpoint, node2 and node1; node2 sorts first",
                service: local,
                nodes: with(
                    with(cluster(), "node2", |n| n.has_serving_endpoint = true),
                    "node1",
                    |n| n.has_serving_endpoint = true,
                ),
                me: "node2",
                owner: Some("node2"),
                outcome: Outcome::Owner,
            },
            Case {
                desc: "Local policy: node4 sorts first but runs no endpoint",
                service: local,
                nodes: with(cluster(), "node2", |n| n.has_serving_endpoint = true),
                me: "node4",
                owner: Some("node2"),
                outcome: Outcome::NotOwner(Reason::Ineligible(Ineligible::NoLocalEndpoint)),
            },
            Case {
                desc: "Local policy with endpoints only on nodes without a speaker: nobody",
                service: local,
                nodes: with(cluster(), "node2", |n| {
                    n.has_serving_endpoint = true;
                    n.speaker_live = false;
                }),
                me: "node2",
                owner: None,
                outcome: Outcome::NotOwner(Reason::NoEligibleNode),
            },
            Case {
                desc: "Cluster policy ignores where endpoints run",
                service: service(V4),
                nodes: with(cluster(), "node2", |n| n.has_serving_endpoint = true),
                me: "node4",
                owner: Some("node4"),
                outcome: Outcome::Owner,
            },
            Case {
                desc: "a speaker that is not in the candidate list knows the owner but never owns",
                service: service(V4),
                nodes: cluster(),
                me: "node9",
                owner: Some("node4"),
                outcome: Outcome::NotOwner(Reason::Ineligible(Ineligible::Unknown)),
            },
        ];
        for case in cases {
            let election = elect(&case.service, &case.nodes, case.me);
            assert_eq!(election.owner.as_deref(), case.owner, "{}", case.desc);
            assert_eq!(election.outcome, case.outcome, "{}", case.desc);
            assert_eq!(
                election.is_me(),
                case.outcome == Outcome::Owner,
                "{}",
                case.desc
            );
        }
    }

    #[test]
    fn pool_node_selectors_limit_the_candidates() {
        let rack = |r: &str| BTreeMap::from([("rack".to_owned(), r.to_owned())]);
        let (a, b) = (rack("a"), rack("b"));
        let nodes = vec![
            Candidate::healthy("node4", &a),
            Candidate::healthy("node3", &b),
            Candidate::healthy("node5", no_labels()),
        ];
        let rack_b = [NodeSelector {
            match_labels: BTreeMap::from([("rack".to_owned(), "b".to_owned())]),
            match_expressions: vec![],
        }];
        let svc = ServiceAddress {
            node_selectors: &rack_b,
            ..service(V4)
        };
        let election = elect(&svc, &nodes, "node4");
        assert_eq!(election.owner.as_deref(), Some("node3"));
        assert_eq!(
            election.reason(),
            Some(Reason::Ineligible(Ineligible::NotSelected))
        );

        // A node matching any one selector is enough.
        let any_rack = [
            rack_b[0].clone(),
            NodeSelector {
                match_labels: BTreeMap::new(),
                match_expressions: vec![LabelRequirement {
                    key: "rack".to_owned(),
                    operator: LabelOperator::In(vec!["a".to_owned()]),
                }],
            },
        ];
        let svc = ServiceAddress {
            node_selectors: &any_rack,
            ..service(V4)
        };
        assert!(elect(&svc, &nodes, "node4").is_me());
    }

    #[test]
    fn the_exclude_label_is_read_by_the_healthy_constructor() {
        let labels = BTreeMap::from([(EXCLUDE_FROM_LOAD_BALANCERS.to_owned(), String::new())]);
        let node = Candidate::healthy("node4", &labels);
        assert_eq!(eligibility(&node, &service(V4)), Err(Ineligible::Excluded));
    }

    #[test]
    fn reasons_have_labels_and_sentences() {
        let reason = Reason::Ineligible(Ineligible::NoLocalEndpoint);
        assert_eq!(reason.as_label(), "no_local_endpoint");
        assert_eq!(
            reason.to_string(),
            "traffic policy is Local and no serving endpoint runs on the node"
        );
        assert_eq!(
            Reason::NoServingEndpoints.as_label(),
            "no_serving_endpoints"
        );
    }

    fn any_cluster() -> impl Strategy<Value = Vec<(String, bool, bool)>> {
        proptest::collection::btree_map(
            "[a-z]{1,3}[0-9]{0,2}",
            (any::<bool>(), any::<bool>()),
            0..12,
        )
        .prop_map(|m| {
            m.into_iter()
                .map(|(name, (live, network_unavailable))| (name, live, network_unavailable))
                .collect()
        })
    }

    fn candidates(nodes: &[(String, bool, bool)]) -> Vec<Candidate<'_>> {
        nodes
            .iter()
            .map(|(name, live, network_unavailable)| Candidate {
                speaker_live: *live,
                network_unavailable: *network_unavailable,
                ..Candidate::healthy(name, no_labels())
            })
            .collect()
    }

    /// The candidates [`elect`] sees for the facts a [`Rankings`] holds.
    fn candidates_of<'a>(
        nodes: &'a BTreeMap<String, NodeFacts>,
        endpoint_nodes: &BTreeSet<String>,
    ) -> Vec<Candidate<'a>> {
        nodes
            .iter()
            .map(|(name, f)| Candidate {
                name,
                labels: &f.labels,
                speaker_live: f.speaker_live,
                network_unavailable: f.network_unavailable,
                excluded: f.excluded,
                has_serving_endpoint: endpoint_nodes.contains(name),
            })
            .collect()
    }

    #[test]
    fn rankings_walk_past_ineligible_best_nodes_and_fall_back_beyond_the_top() {
        let mut rankings = Rankings::new();
        let mut nodes = BTreeMap::new();
        for i in 0..(TOP * 3) {
            let name = format!("node{i}");
            rankings.set_node(&name, NodeFacts::healthy(BTreeMap::new()));
            nodes.insert(name, NodeFacts::healthy(BTreeMap::new()));
        }
        let svc = service(V4);
        let none = BTreeSet::new();
        let first = rankings.elect(&svc, &none, "").owner.unwrap();
        assert_eq!(
            first,
            elect(&svc, &candidates_of(&nodes, &none), "")
                .owner
                .unwrap()
        );
        // Kill the best TOP nodes one after another: each time only the
        // dead owner's address is named, and the result is elect's.
        for _ in 0..TOP + 2 {
            let owner = rankings.elect(&svc, &none, "").owner.unwrap();
            assert_eq!(rankings.set_live(&owner, false), vec![svc.address]);
            nodes.get_mut(&owner).unwrap().speaker_live = false;
            let expected = elect(&svc, &candidates_of(&nodes, &none), "node0");
            assert_eq!(rankings.elect(&svc, &none, "node0"), expected);
            assert!(rankings.owned_by(&owner).is_empty());
        }
    }

    #[test]
    fn rankings_keep_metallbs_order() {
        let mut rankings = Rankings::new();
        for n in NODES {
            rankings.set_node(n, NodeFacts::healthy(BTreeMap::new()));
        }
        let none = BTreeSet::new();
        assert_eq!(
            rankings.elect(&service(V4), &none, "node4").outcome,
            Outcome::Owner
        );
        assert_eq!(
            rankings
                .elect(&service(V6), &none, "node4")
                .owner
                .as_deref(),
            Some("node3")
        );
        rankings.set_live("node3", false);
        assert_eq!(
            rankings.elect(&service(V6), &none, "node3"),
            Election {
                owner: Some("node2".into()),
                outcome: Outcome::NotOwner(Reason::Ineligible(Ineligible::SpeakerDown)),
            }
        );
    }

    /// A change to the cluster, applied to a [`Rankings`] incrementally.
    #[derive(Debug, Clone)]
    enum Change {
        Kill(prop::sample::Index),
        Revive(prop::sample::Index),
        Remove(prop::sample::Index),
        Add(String),
    }

    fn any_change() -> impl Strategy<Value = Change> {
        prop_oneof![
            3 => any::<prop::sample::Index>().prop_map(Change::Kill),
            1 => any::<prop::sample::Index>().prop_map(Change::Revive),
            1 => any::<prop::sample::Index>().prop_map(Change::Remove),
            1 => "[a-z]{1,3}[0-9]{0,2}".prop_map(Change::Add),
        ]
    }

    proptest! {
        #[test]
        fn every_speaker_elects_the_same_owner_whatever_the_order(
            nodes in any_cluster(),
            octet in any::<u8>(),
            rotate in 0usize..12,
        ) {
            let svc = ServiceAddress {
                address: IpAddr::from([198, 51, 100, octet]),
                ..service(V4)
            };
            let forward = candidates(&nodes);
            let mut shuffled = forward.clone();
            shuffled.reverse();
            if !shuffled.is_empty() {
                let by = rotate % shuffled.len();
                shuffled.rotate_left(by);
            }
            let owners: Vec<Option<String>> = nodes
                .iter()
                .map(|(me, _, _)| elect(&svc, &forward, me).owner)
                .chain(nodes.iter().map(|(me, _, _)| elect(&svc, &shuffled, me).owner))
                .collect();
            prop_assert!(owners.windows(2).all(|w| w[0] == w[1]));
            // Exactly the owner considers itself the owner.
            let claimants = nodes.iter().filter(|(me, _, _)| elect(&svc, &forward, me).is_me()).count();
            prop_assert_eq!(claimants, usize::from(owners.first().is_some_and(Option::is_some)));
        }

        #[test]
        fn removing_a_node_that_does_not_own_never_moves_the_address(
            nodes in any_cluster(),
            octet in any::<u8>(),
            victim in any::<prop::sample::Index>(),
        ) {
            prop_assume!(!nodes.is_empty());
            let svc = ServiceAddress {
                address: IpAddr::from([198, 51, 100, octet]),
                ..service(V4)
            };
            let before = elect(&svc, &candidates(&nodes), "").owner;
            let victim = victim.index(nodes.len());
            prop_assume!(before.as_deref() != Some(nodes[victim].0.as_str()));
            let mut fewer = nodes.clone();
            fewer.remove(victim);
            prop_assert_eq!(elect(&svc, &candidates(&fewer), "").owner, before);
        }

        #[test]
        fn incremental_rankings_equal_a_full_recomputation(
            nodes in proptest::collection::btree_map("[a-z]{1,3}[0-9]{0,2}", (any::<bool>(), any::<bool>()), 0..24),
            octets in proptest::collection::btree_set(any::<u8>(), 1..24),
            local in any::<bool>(),
            endpoints in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
            changes in proptest::collection::vec(any_change(), 0..12),
        ) {
            let mut facts: BTreeMap<String, NodeFacts> = nodes
                .into_iter()
                .map(|(name, (live, network_unavailable))| {
                    (name, NodeFacts { speaker_live: live, network_unavailable, ..NodeFacts::healthy(BTreeMap::new()) })
                })
                .collect();
            let names: Vec<String> = facts.keys().cloned().collect();
            let endpoint_nodes: BTreeSet<String> = if names.is_empty() {
                BTreeSet::new()
            } else {
                endpoints.iter().map(|i| names[i.index(names.len())].clone()).collect()
            };
            let policy = if local { TrafficPolicy::Local } else { TrafficPolicy::Cluster };
            let services: Vec<ServiceAddress<'static>> = octets
                .iter()
                .map(|&o| ServiceAddress {
                    address: IpAddr::from([198, 51, 100, o]),
                    traffic_policy: policy,
                    ..service(V4)
                })
                .collect();
            let mut rankings = Rankings::new();
            for (name, f) in &facts {
                rankings.set_node(name, f.clone());
            }
            let mut owners: BTreeMap<IpAddr, Option<String>> = services
                .iter()
                .map(|s| (s.address, rankings.elect(s, &endpoint_nodes, "").owner))
                .collect();
            for change in changes {
                let names: Vec<String> = facts.keys().cloned().collect();
                // Which addresses to re-elect: after a death only the ones the
                // dead node owned; after anything else, all.
                let touched: Vec<IpAddr> = match change {
                    Change::Kill(i) if !names.is_empty() => {
                        let name = &names[i.index(names.len())];
                        facts.get_mut(name).unwrap().speaker_live = false;
                        rankings.set_live(name, false)
                    }
                    Change::Revive(i) if !names.is_empty() => {
                        let name = &names[i.index(names.len())];
                        facts.get_mut(name).unwrap().speaker_live = true;
                        rankings.set_live(name, true);
                        owners.keys().copied().collect()
                    }
                    Change::Remove(i) if !names.is_empty() => {
                        let name = &names[i.index(names.len())];
                        facts.remove(name);
                        rankings.remove_node(name);
                        owners.keys().copied().collect()
                    }
                    Change::Add(name) => {
                        let f = NodeFacts::healthy(BTreeMap::new());
                        facts.insert(name.clone(), f.clone());
                        rankings.set_node(&name, f);
                        owners.keys().copied().collect()
                    }
                    _ => Vec::new(),
                };
                for s in services.iter().filter(|s| touched.contains(&s.address)) {
                    owners.insert(s.address, rankings.elect(s, &endpoint_nodes, "").owner);
                }
                let candidates = candidates_of(&facts, &endpoint_nodes);
                for s in &services {
                    prop_assert_eq!(&owners[&s.address], &elect(s, &candidates, "").owner);
                    for me in facts.keys() {
                        prop_assert_eq!(
                            rankings.elect(s, &endpoint_nodes, me),
                            elect(s, &candidates, me)
                        );
                    }
                }
            }
        }
    }
}
