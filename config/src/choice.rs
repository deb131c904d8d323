//! Which pools a Service may take addresses from, and in which order
//! automatic allocation tries them: [`pools_for`], the one rule the
//! controller's allocator and the speaker's screen both apply, so that an
//! address the controller hands out is one the speakers announce.

use std::collections::BTreeMap;

use crate::pool::{NodeSelector, Pool, ServiceAllocation};

/// What a pool's `service-allocation` and a Service's pool annotation look
/// at: who the Service is and which pool it names.
#[derive(Debug, Clone, Copy)]
pub struct Claimant<'a> {
    /// The Service's namespace.
    pub namespace: &'a str,
    /// The Service's labels.
    pub labels: &'a BTreeMap<String, String>,
    /// Its namespace's labels, as last seen (empty if unknown).
    pub namespace_labels: &'a BTreeMap<String, String>,
    /// The pool the Service names, if any.
    pub pool: Option<&'a str>,
}

/// The pools a Service may hold addresses from, as indices into `pools`,
/// most preferred first. Automatic allocation tries them in this order,
/// skipping pools that do not auto-assign unless the Service names the pool;
/// an address the Service requests or already holds must lie in one of them.
///
/// * A pool with a `service-allocation` admits a Service whose namespace is
///   listed in `namespaces` or matches one of `namespace-selectors` (with both
///   empty, any namespace), and whose labels match one of
///   `service-selectors` (empty: any Service). A pool without one admits
///   every Service.
/// * A Service that names a pool may use that pool only, if it admits it.
/// * Order (MetalLB's): pools with a `service-allocation` first, by
///   `priority` (lowest first; no priority after every number), then pools
///   without one; ties in config order (MetalLB breaks them at random).
///
/// `auto-assign` is deliberately not part of this rule: it only keeps a
/// pool out of automatic choice, so a Service keeps an address it got
/// before the pool stopped auto-assigning, as in MetalLB.
pub fn pools_for(pools: &[Pool], claimant: &Claimant<'_>) -> Vec<usize> {
    let mut admitted: Vec<usize> = (0..pools.len())
        .filter(|&i| claimant.pool.is_none_or(|name| pools[i].name.0 == name))
        .filter(|&i| admits(pools[i].service_allocation.as_ref(), claimant))
        .collect();
    admitted.sort_by_key(|&i| {
        let allocation = pools[i].service_allocation.as_ref();
        let priority = allocation.and_then(|a| a.priority);
        (allocation.is_none(), priority.is_none(), priority, i)
    });
    admitted
}

/// Whether a pool with this `service-allocation` admits the Service.
fn admits(allocation: Option<&ServiceAllocation>, claimant: &Claimant<'_>) -> bool {
    let Some(allocation) = allocation else {
        return true;
    };
    let any_match =
        |selectors: &[NodeSelector], labels| selectors.iter().any(|s| s.matches(labels));
    let open_to_every_namespace =
        allocation.namespaces.is_empty() && allocation.namespace_selectors.is_empty();
    let namespace = open_to_every_namespace
        || allocation
            .namespaces
            .iter()
            .any(|n| n == claimant.namespace)
        || any_match(&allocation.namespace_selectors, claimant.namespace_labels);
    let service = allocation.service_selectors.is_empty()
        || any_match(&allocation.service_selectors, claimant.labels);
    namespace && service
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::pool::PoolName;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn pool(name: &str, allocation: Option<ServiceAllocation>) -> Pool {
        Pool {
            name: PoolName(name.into()),
            ranges: vec!["198.51.100.0/30".parse().unwrap()],
            auto_assign: true,
            avoid_buggy_ips: false,
            node_selectors: vec![],
            interfaces: vec![],
            service_allocation: allocation,
        }
    }

    fn names(pools: &[Pool], claimant: &Claimant<'_>) -> Vec<String> {
        pools_for(pools, claimant)
            .into_iter()
            .map(|i| pools[i].name.0.clone())
            .collect()
    }

    #[test]
    fn metallbs_documented_example_admits_by_namespace_name_or_label_and_service_label() {
        let pools = [pool("pinned", Some(crate::pool::documented_allocation()))];
        let app_bar = labels(&[("app", "bar")]);
        let foo_bar = labels(&[("foo", "bar")]);
        let none = BTreeMap::new();
        let who = |namespace, labels, namespace_labels| Claimant {
            namespace,
            labels,
            namespace_labels,
            pool: None,
        };
        assert_eq!(
            names(&pools, &who("namespace-a", &app_bar, &none)),
            ["pinned"]
        );
        assert_eq!(
            names(&pools, &who("namespace-b", &app_bar, &none)),
            ["pinned"]
        );
        assert_eq!(names(&pools, &who("other", &app_bar, &foo_bar)), ["pinned"]);
        assert!(names(&pools, &who("other", &app_bar, &none)).is_empty());
        assert!(names(&pools, &who("namespace-a", &none, &none)).is_empty());
        assert!(names(&pools, &who("namespace-a", &foo_bar, &foo_bar)).is_empty());
    }

    #[test]
    fn lower_priority_first_then_no_priority_then_pools_without_allocation() {
        let with = |priority| {
            Some(ServiceAllocation {
                priority,
                ..ServiceAllocation::default()
            })
        };
        let pools = [
            pool("open", None),
            pool("unranked", with(None)),
            pool("ten", with(Some(10))),
            pool("one", with(Some(1))),
            pool("also-ten", with(Some(10))),
            pool("open-too", None),
        ];
        let none = BTreeMap::new();
        let mut who = Claimant {
            namespace: "default",
            labels: &none,
            namespace_labels: &none,
            pool: None,
        };
        assert_eq!(
            names(&pools, &who),
            ["one", "ten", "also-ten", "unranked", "open", "open-too"]
        );
        who.pool = Some("ten");
        assert_eq!(names(&pools, &who), ["ten"]);
        who.pool = Some("missing");
        assert!(names(&pools, &who).is_empty());
    }

    #[test]
    fn a_named_pool_that_does_not_admit_the_service_is_not_offered() {
        let pools = [pool(
            "team-a",
            Some(ServiceAllocation {
                namespaces: vec!["team-a".into()],
                ..ServiceAllocation::default()
            }),
        )];
        let none = BTreeMap::new();
        let who = Claimant {
            namespace: "team-b",
            labels: &none,
            namespace_labels: &none,
            pool: Some("team-a"),
        };
        assert!(names(&pools, &who).is_empty());
    }

    fn small_labels() -> impl Strategy<Value = BTreeMap<String, String>> {
        proptest::collection::btree_map("[ab]", "[xy]", 0..3)
    }

    fn small_selector() -> impl Strategy<Value = NodeSelector> {
        small_labels().prop_map(|match_labels| NodeSelector {
            match_labels,
            match_expressions: vec![],
        })
    }

    fn any_pools() -> impl Strategy<Value = Vec<Pool>> {
        let allocation = (
            proptest::option::of(1u32..4),
            proptest::collection::vec("ns[12]", 0..2),
            proptest::collection::vec(small_selector(), 0..2),
            proptest::collection::vec(small_selector(), 0..2),
        )
            .prop_map(
                |(priority, namespaces, namespace_selectors, service_selectors)| {
                    ServiceAllocation {
                        priority,
                        namespaces,
                        namespace_selectors,
                        service_selectors,
                    }
                },
            );
        proptest::collection::vec(proptest::option::of(allocation), 0..6).prop_map(|all| {
            all.into_iter()
                .enumerate()
                .map(|(i, a)| pool(&format!("p{i}"), a))
                .collect()
        })
    }

    proptest! {
        /// Checked against the rule written out per pool and per pair.
        #[test]
        fn the_choice_is_every_admitting_pool_in_preference_order(
            pools in any_pools(),
            namespace in "ns[123]",
            service_labels in small_labels(),
            namespace_labels in small_labels(),
            named in proptest::option::of(0usize..7),
        ) {
            let name = named.map(|i| format!("p{i}"));
            let claimant = Claimant {
                namespace: &namespace,
                labels: &service_labels,
                namespace_labels: &namespace_labels,
                pool: name.as_deref(),
            };
            let chosen = pools_for(&pools, &claimant);
            let contains_all = |selector: &NodeSelector, labels: &BTreeMap<String, String>| {
                selector.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            };
            for (i, pool) in pools.iter().enumerate() {
                let admitted = match &pool.service_allocation {
                    None => true,
                    Some(a) => {
                        let by_namespace = (a.namespaces.is_empty() && a.namespace_selectors.is_empty())
                            || a.namespaces.contains(&namespace)
                            || a.namespace_selectors.iter().any(|s| contains_all(s, &namespace_labels));
                        let by_service = a.service_selectors.is_empty()
                            || a.service_selectors.iter().any(|s| contains_all(s, &service_labels));
                        by_namespace && by_service
                    }
                };
                let named_ok = name.as_ref().is_none_or(|n| *n == pool.name.0);
                prop_assert_eq!(chosen.contains(&i), admitted && named_ok, "pool {}", i);
            }
            // Each pool comes before the next by priority class, then
            // priority, then config order.
            let rank = |i: usize| match &pools[i].service_allocation {
                Some(a) => match a.priority {
                    Some(p) => (0u8, p, i),
                    None => (1, 0, i),
                },
                None => (2, 0, i),
            };
            for pair in chosen.windows(2) {
                prop_assert!(rank(pair[0]) < rank(pair[1]), "{:?}", chosen);
            }
        }
    }
}
