//! Address pools: what an operator may hand out, and on which nodes and
//! interfaces it may be announced. No Services and no allocation state here.

use std::collections::BTreeMap;
use std::fmt;

use crate::range::{AddressRange, Family};

/// A pool's name, unique within a config.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolName(pub String);

impl fmt::Display for PoolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One address pool, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Its unique name.
    pub name: PoolName,
    /// Its addresses, in the order the operator wrote them; no two overlap.
    pub ranges: Vec<AddressRange>,
    /// Whether Services that name no pool may be given addresses from it.
    pub auto_assign: bool,
    /// Never hand out an IPv4 address ending in `.0` or `.255`.
    pub avoid_buggy_ips: bool,
    /// Only nodes matching one of these may announce the pool's addresses;
    /// empty means every node.
    pub node_selectors: Vec<NodeSelector>,
    /// The interfaces a speaker may announce on; empty means every suitable one.
    pub interfaces: Vec<String>,
}

impl Pool {
    /// Whether any of the pool's ranges holds `ip`.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }

    /// Whether the pool has addresses of `family`.
    pub fn has_family(&self, family: Family) -> bool {
        self.ranges.iter().any(|r| r.family() == family)
    }
}

/// A Kubernetes-style label selector on Nodes. An empty selector matches
/// every node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeSelector {
    /// Labels that must be present with exactly these values.
    pub match_labels: BTreeMap<String, String>,
    /// Further requirements, all of which must hold.
    pub match_expressions: Vec<LabelRequirement>,
}

/// One `match-expressions` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequirement {
    /// The label key.
    pub key: String,
    /// How the key's value is tested.
    pub operator: LabelOperator,
}

/// The operators of a label requirement, with their values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelOperator {
    /// The value is one of these.
    In(Vec<String>),
    /// The label is absent or its value is none of these.
    NotIn(Vec<String>),
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl NodeSelector {
    /// Whether a node with these labels matches.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|req| {
                let value = labels.get(&req.key);
                match &req.operator {
                    LabelOperator::In(values) => value.is_some_and(|v| values.contains(v)),
                    LabelOperator::NotIn(values) => !value.is_some_and(|v| values.contains(v)),
                    LabelOperator::Exists => value.is_some(),
                    LabelOperator::DoesNotExist => value.is_none(),
                }
            })
    }
}
