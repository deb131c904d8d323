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
    /// Which Services may take addresses from the pool, and its priority
    /// among the pools a Service may use (MetalLB's `serviceAllocation`).
    /// `None`: every Service, after the pools that have one.
    pub service_allocation: Option<ServiceAllocation>,
}

/// A pool's `service-allocation`: it limits the pool to some Services and
/// ranks it before pools without one. See [`crate::choice::pools_for`] for
/// how it decides.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceAllocation {
    /// Lower is tried first by automatic allocation; `None` comes after every
    /// number (MetalLB's unset or `0`).
    pub priority: Option<u32>,
    /// Namespaces whose Services may use the pool, by name.
    pub namespaces: Vec<String>,
    /// Namespaces whose Services may use the pool, by their labels. A Service
    /// may use the pool if its namespace is named in `namespaces` or matches
    /// one of these; with both empty, every namespace may.
    pub namespace_selectors: Vec<NodeSelector>,
    /// Services that may use the pool, by their labels: one must match;
    /// empty means every Service (of the admitted namespaces).
    pub service_selectors: Vec<NodeSelector>,
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

/// A Kubernetes-style label selector, on Nodes, Namespaces or Services. An
/// empty selector matches everything.
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

/// The `serviceAllocation` of MetalLB's documented IPAddressPool example:
/// Services labelled `app: bar` (an `In` expression) in namespace-a,
/// namespace-b or any namespace labelled `foo: bar`, at priority 50.
#[cfg(test)]
pub(crate) fn documented_allocation() -> ServiceAllocation {
    ServiceAllocation {
        priority: Some(50),
        namespaces: vec!["namespace-a".into(), "namespace-b".into()],
        namespace_selectors: vec![NodeSelector {
            match_labels: [("foo".to_owned(), "bar".to_owned())].into(),
            match_expressions: vec![],
        }],
        service_selectors: vec![NodeSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![LabelRequirement {
                key: "app".into(),
                operator: LabelOperator::In(vec!["bar".into()]),
            }],
        }],
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    fn pool(ranges: &[&str], avoid_buggy_ips: bool) -> Pool {
        Pool {
            name: PoolName("p".into()),
            ranges: ranges.iter().map(|r| r.parse().unwrap()).collect(),
            auto_assign: true,
            avoid_buggy_ips,
            node_selectors: vec![],
            interfaces: vec![],
            service_allocation: None,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn buggy_addresses_are_ipv4_ones_ending_in_0_or_255() {
        assert!(is_buggy(ip("198.51.100.0")));
        assert!(is_buggy(ip("198.51.100.255")));
        assert!(!is_buggy(ip("198.51.100.1")));
        assert!(!is_buggy(ip("198.51.100.254")));
        assert!(!is_buggy(ip("2001:db8::ff")));
        assert!(!is_buggy(ip("2001:db8::")));
    }

    #[test]
    fn avoid_buggy_ips_makes_0_and_255_unusable_anywhere_in_the_pool() {
        let p = pool(&["198.51.100.250-198.51.101.5"], true);
        assert!(p.contains(ip("198.51.100.255")));
        assert!(!p.is_usable(ip("198.51.100.255")));
        assert!(!p.is_usable(ip("198.51.101.0")));
        assert!(p.is_usable(ip("198.51.101.1")));
        assert_eq!(p.address_count(Family::V4), 12 - 2);
        let without = pool(&["198.51.100.250-198.51.101.5"], false);
        assert!(without.is_usable(ip("198.51.100.255")));
        assert_eq!(without.address_count(Family::V4), 12);
    }

    #[test]
    fn address_counts_are_per_family_and_exact_for_a_slash_64() {
        let p = pool(
            &["198.51.100.0/24", "2001:db8:1::/64", "2001:db8:2::/127"],
            true,
        );
        assert_eq!(p.address_count(Family::V4), 254);
        assert_eq!(p.address_count(Family::V6), 18_446_744_073_709_551_618);
    }

    #[test]
    fn node_selectors_follow_kubernetes_label_selector_semantics() {
        let labels: BTreeMap<String, String> = [("rack", "frontend"), ("zone", "a")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let req = |key: &str, operator| LabelRequirement {
            key: key.to_owned(),
            operator,
        };
        let selector = |reqs| NodeSelector {
            match_labels: BTreeMap::new(),
            match_expressions: reqs,
        };
        assert!(NodeSelector::default().matches(&labels));
        assert!(
            selector(vec![req(
                "rack",
                LabelOperator::In(vec!["frontend".into()])
            )])
            .matches(&labels)
        );
        assert!(
            !selector(vec![req(
                "rack",
                LabelOperator::NotIn(vec!["frontend".into()])
            )])
            .matches(&labels)
        );
        assert!(
            selector(vec![req(
                "speed",
                LabelOperator::NotIn(vec!["slow".into()])
            )])
            .matches(&labels)
        );
        assert!(selector(vec![req("zone", LabelOperator::Exists)]).matches(&labels));
        assert!(!selector(vec![req("zone", LabelOperator::DoesNotExist)]).matches(&labels));
        let by_label = NodeSelector {
            match_labels: [("rack".to_owned(), "backend".to_owned())].into(),
            match_expressions: vec![],
        };
        assert!(!by_label.matches(&labels));
    }

    #[test]
    fn overlaps_name_the_shared_addresses() {
        let a: AddressRange = "198.51.100.0/28".parse().unwrap();
        let b: AddressRange = "198.51.100.8-198.51.100.40".parse().unwrap();
        let c: AddressRange = "2001:db8::/64".parse().unwrap();
        let found = overlaps(&[(b, 'b'), (c, 'c'), (a, 'a')]);
        assert_eq!(
            found,
            vec![Overlap {
                earlier: 'a',
                later: 'b',
                shared: "198.51.100.8-198.51.100.15".parse().unwrap(),
            }]
        );
    }

    #[test]
    fn ranges_that_touch_do_not_overlap() {
        let a: AddressRange = "198.51.100.0/28".parse().unwrap();
        let b: AddressRange = "198.51.100.16/28".parse().unwrap();
        assert_eq!(overlaps(&[(a, 0), (b, 1)]), vec![]);
    }

    /// Small spans of either family, so that overlaps are frequent.
    fn small_range() -> impl Strategy<Value = AddressRange> {
        (any::<bool>(), 0u8..40, 0u8..12).prop_map(|(v6, start, len)| {
            let (first, last) = (u32::from(start), u32::from(start) + u32::from(len));
            if v6 {
                AddressRange::new(
                    Ipv6Addr::from(u128::from(first)).into(),
                    Ipv6Addr::from(u128::from(last)).into(),
                )
            } else {
                AddressRange::new(Ipv4Addr::from(first).into(), Ipv4Addr::from(last).into())
            }
            .unwrap()
        })
    }

    proptest! {
        #[test]
        fn the_sweep_agrees_with_comparing_every_pair(
            ranges in proptest::collection::vec(small_range(), 0..12)
        ) {
            let tagged: Vec<(AddressRange, usize)> =
                ranges.iter().copied().enumerate().map(|(i, r)| (r, i)).collect();
            let found = overlaps(&tagged);
            // Every reported pair really shares exactly the reported span.
            for o in &found {
                prop_assert_ne!(o.earlier, o.later);
                prop_assert_eq!(ranges[o.earlier].intersection(&ranges[o.later]), Some(o.shared));
            }
            // Every range overlapping another is named in some reported pair.
            for i in 0..ranges.len() {
                let overlapping = (0..ranges.len())
                    .any(|j| j != i && ranges[i].intersection(&ranges[j]).is_some());
                let named = found.iter().any(|o| o.earlier == i || o.later == i);
                prop_assert_eq!(overlapping, named, "range {} ({})", i, ranges[i]);
            }
        }

        #[test]
        fn buggy_counts_agree_with_enumeration(start in 0u32..2000, len in 0u32..700) {
            let range = AddressRange::new(
                Ipv4Addr::from(start).into(),
                Ipv4Addr::from(start + len).into(),
            ).unwrap();
            let enumerated = (start..=start + len)
                .filter(|&n| is_buggy(Ipv4Addr::from(n).into()))
                .count();
            prop_assert_eq!(buggy_count(&range), enumerated as u128);
        }
    }
}
