//! Address pools: what an operator may hand out, and on which nodes and
//! interfaces it may be announced. No Services and no allocation state here.

use std::collections::BTreeMap;
use std::fmt;

use crate::range::{AddressRange, Family, to_u128};

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

    /// Whether the pool may hand out `ip`: it holds it, and `avoid-buggy-ips`
    /// does not exclude it.
    pub fn is_usable(&self, ip: std::net::IpAddr) -> bool {
        self.contains(ip) && !(self.avoid_buggy_ips && is_buggy(ip))
    }

    /// How many addresses of `family` the pool may hand out, without the
    /// ones `avoid-buggy-ips` excludes. Counted from range ends, never by
    /// enumeration. A pool holding every IPv6 address (2^128) counts
    /// `u128::MAX`.
    pub fn address_count(&self, family: Family) -> u128 {
        self.ranges
            .iter()
            .filter(|r| r.family() == family)
            .map(|r| {
                let buggy = if self.avoid_buggy_ips {
                    buggy_count(r)
                } else {
                    0
                };
                r.size() - buggy
            })
            .fold(0u128, u128::saturating_add)
    }
}

/// Whether `ip` is an IPv4 address ending in `.0` or `.255`, which some old
/// consumer equipment drops as a misguided smurf protection; a pool with
/// `avoid-buggy-ips` never hands these out. No IPv6 address is buggy.
pub fn is_buggy(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => matches!(v4.octets()[3], 0 | 255),
        std::net::IpAddr::V6(_) => false,
    }
}

/// How many buggy addresses (see [`is_buggy`]) `range` holds.
fn buggy_count(range: &AddressRange) -> u128 {
    if range.family() != Family::V4 {
        return 0;
    }
    // The number of n in 0..=upto with n % 256 == rest.
    let up_to = |upto: u128, rest: u128| {
        if upto < rest {
            0
        } else {
            (upto - rest) / 256 + 1
        }
    };
    let (first, last) = (to_u128(range.first()), to_u128(range.last()));
    [0, 255]
        .into_iter()
        .map(|rest| up_to(last, rest) - first.checked_sub(1).map_or(0, |below| up_to(below, rest)))
        .sum()
}

/// Two overlapping entries found by [`overlaps`]: their tags (earlier in
/// address order first) and the addresses they share, or at least the part
/// of the shared addresses that shows they overlap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Overlap<T> {
    pub(crate) earlier: T,
    pub(crate) later: T,
    pub(crate) shared: AddressRange,
}

/// Overlaps among tagged ranges, in O(n log n): sort by start, sweep while
/// remembering the range reaching furthest so far. Every range that overlaps
/// any other appears in at least one reported pair, and every reported pair
/// really overlaps; ranges of different families never overlap.
pub(crate) fn overlaps<T: Copy>(ranges: &[(AddressRange, T)]) -> Vec<Overlap<T>> {
    let mut sorted: Vec<&(AddressRange, T)> = ranges.iter().collect();
    sorted.sort_by_key(|(r, _)| (r.family(), to_u128(r.first()), to_u128(r.last())));
    let mut found = Vec::new();
    let mut furthest: Option<&(AddressRange, T)> = None;
    for entry in sorted {
        let (range, tag) = entry;
        match furthest {
            Some((reach, reach_tag)) if reach.family() == range.family() => {
                if let Some(shared) = reach.intersection(range) {
                    found.push(Overlap {
                        earlier: *reach_tag,
                        later: *tag,
                        shared,
                    });
                }
                if to_u128(range.last()) > to_u128(reach.last()) {
                    furthest = Some(entry);
                }
            }
            _ => furthest = Some(entry),
        }
    }
    found
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
