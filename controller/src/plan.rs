//! What one reconcile of one Service should do, decided without I/O: the
//! addresses its status should show, the events to emit, and whether
//! addresses were freed (so pending Services deserve another try).

use std::net::IpAddr;

use ferrolb_config::{ServiceKey, ServiceRequest};

use crate::allocator::{AllocError, Allocator};

/// What ferrolb makes of a Service, read from the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Desire {
    /// Not ferrolb's: not `type: LoadBalancer`, or another class. Anything it
    /// held is released.
    NotServed(ServiceKey),
    /// Ferrolb's, but its request cannot be read (a bad annotation, say):
    /// it gets no address until it is fixed.
    Invalid(ServiceKey, String),
    /// Ferrolb's, asking for this.
    Serve(ServiceRequest),
}

impl Desire {
    /// The Service concerned.
    pub fn key(&self) -> &ServiceKey {
        match self {
            Desire::NotServed(key) | Desire::Invalid(key, _) => key,
            Desire::Serve(request) => &request.key,
        }
    }
}

/// An event the reconcile should emit on the Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The Service got addresses (it had none).
    Allocated {
        /// Its addresses, IPv4 first.
        addresses: Vec<IpAddr>,
        /// The pool they came from.
        pool: String,
    },
    /// The Service kept its addresses and gained one of its other family
    /// (PreferDualStack, once its pool had one free).
    Extended {
        /// The addresses added.
        added: Vec<IpAddr>,
        /// The addresses it already had.
        kept: Vec<IpAddr>,
        /// The pool they came from.
        pool: String,
    },
    /// The Service's addresses changed (its request or the pools changed).
    Moved {
        /// What its status showed.
        from: Vec<IpAddr>,
        /// What it holds now.
        to: Vec<IpAddr>,
        /// The pool they came from.
        pool: String,
    },
    /// The Service gets no address.
    Failed {
        /// A stable label for metrics (`pool-exhausted`, …).
        reason: &'static str,
        /// The sentence for the event.
        message: String,
    },
}

/// The outcome of [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The addresses the Service's status should show (empty: none).
    pub addresses: Vec<IpAddr>,
    /// Events to emit, at most one.
    pub notice: Option<Notice>,
    /// Addresses were freed: pending Services may now get one.
    pub freed: bool,
}

/// Decides what the Service should hold, updating the allocator.
///
/// `observed` is what its status shows now. A Service the allocator does not
/// know yet but whose status shows addresses (a restart, or a status written
/// before a config change) first tries to keep them, so that a reconcile
/// never moves an address it can keep.
pub fn plan(desire: &Desire, observed: &[IpAddr], allocator: &mut Allocator) -> Plan {
    let request = match desire {
        Desire::NotServed(key) => {
            let released = allocator.release(key);
            return Plan {
                addresses: Vec::new(),
                notice: None,
                freed: released.is_some(),
            };
        }
        Desire::Invalid(key, why) => {
            let released = allocator.release(key);
            return Plan {
                addresses: Vec::new(),
                notice: Some(Notice::Failed {
                    reason: "invalid-request",
                    message: why.clone(),
                }),
                freed: released.is_some(),
            };
        }
        Desire::Serve(request) => request,
    };
    let held_before = allocator.allocation(&request.key).cloned();
    if held_before.is_none() && !observed.is_empty() {
        // Whether or not the old addresses are still allowed, `assign` below
        // decides what the Service gets.
        let _ = allocator.restore(request, observed);
    }
    match allocator.assign(request) {
        Ok(allocation) => {
            // What the Service had: what this allocator gave it, if it gave
            // it anything; only otherwise what its status shows. A status
            // read from a cache older than this controller's own write
            // shows less than the Service has, and is no news.
            let before: &[IpAddr] = match &held_before {
                Some(held) => &held.addresses,
                None => observed,
            };
            let gained: Vec<IpAddr> = allocation
                .addresses
                .iter()
                .filter(|ip| !before.contains(ip))
                .copied()
                .collect();
            let lost = before.iter().any(|ip| !allocation.addresses.contains(ip));
            let pool = allocation.pool.0.clone();
            let notice = if before.is_empty() {
                Some(Notice::Allocated {
                    addresses: allocation.addresses.clone(),
                    pool,
                })
            } else if lost {
                Some(Notice::Moved {
                    from: before.to_vec(),
                    to: allocation.addresses.clone(),
                    pool,
                })
            } else if !gained.is_empty() {
                // Nothing was taken away: not a move, and not worth a Warning.
                Some(Notice::Extended {
                    added: gained,
                    kept: before.to_vec(),
                    pool,
                })
            } else {
                // The same addresses, perhaps listed in another order: the
                // status is rewritten, there is nothing to tell.
                None
            };
            let freed = held_before.is_some_and(|before| {
                before
                    .addresses
                    .iter()
                    .any(|ip| !allocation.addresses.contains(ip))
            });
            Plan {
                addresses: allocation.addresses,
                notice,
                freed,
            }
        }
        Err(error) => Plan {
            addresses: Vec::new(),
            notice: Some(failure(&error, observed)),
            freed: held_before.is_some(),
        },
    }
}

fn failure(error: &AllocError, observed: &[IpAddr]) -> Notice {
    let message = if observed.is_empty() {
        error.to_string()
    } else {
        let shown: Vec<String> = observed.iter().map(IpAddr::to_string).collect();
        format!("{error}; {} withdrawn", shown.join(", "))
    };
    Notice::Failed {
        reason: error.reason(),
        message,
    }
}

/// Builders shared by this crate's tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use ferrolb_config::{Family, FamilyPolicy, ServiceKey, ServiceRequest, TrafficPolicy};

    /// A single-stack IPv4 request of `default/<name>` with no preferences.
    pub(crate) fn lb(name: &str) -> ServiceRequest {
        ServiceRequest {
            key: ServiceKey::new("default", name),
            families: FamilyPolicy::Single(Family::V4),
            requested: Vec::new(),
            pool: None,
            sharing: None,
            ports: Vec::new(),
            traffic_policy: TrafficPolicy::Cluster,
            selector: Default::default(),
            labels: Default::default(),
            namespace_labels: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::lb;
    use super::*;
    use ferrolb_config::{Config, Family, FamilyPolicy};

    fn pools(yaml: &str) -> Allocator {
        let config: Config = Config::from_yaml(yaml).expect("valid config").config;
        Allocator::new(&config.pools)
    }

    const ONE_POOL: &str = "address-pools:\n- name: a\n  protocol: layer2\n  addresses: [198.51.100.10-198.51.100.11]\n";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_new_service_is_allocated_and_says_so() {
        let mut alloc = pools(ONE_POOL);
        let plan = plan(&Desire::Serve(lb("web")), &[], &mut alloc);
        assert_eq!(plan.addresses, vec![ip("198.51.100.10")]);
        assert_eq!(
            plan.notice,
            Some(Notice::Allocated {
                addresses: vec![ip("198.51.100.10")],
                pool: "a".into()
            })
        );
    }

    #[test]
    fn a_reconcile_that_changes_nothing_emits_nothing() {
        let mut alloc = pools(ONE_POOL);
        let first = plan(&Desire::Serve(lb("web")), &[], &mut alloc);
        let again = plan(&Desire::Serve(lb("web")), &first.addresses, &mut alloc);
        assert_eq!(again.addresses, first.addresses);
        assert_eq!(again.notice, None);
        assert!(!again.freed);
    }

    #[test]
    fn a_status_read_before_this_controllers_own_write_is_no_news() {
        let mut alloc = pools(ONE_POOL);
        let first = plan(&Desire::Serve(lb("web")), &[], &mut alloc);
        assert!(matches!(first.notice, Some(Notice::Allocated { .. })));
        // The cache still shows the Service as it was before the write.
        let stale = plan(&Desire::Serve(lb("web")), &[], &mut alloc);
        assert_eq!(stale.addresses, first.addresses);
        assert_eq!(stale.notice, None);
    }

    #[test]
    fn an_unknown_service_keeps_the_address_its_status_shows() {
        let mut alloc = pools(ONE_POOL);
        let plan = plan(
            &Desire::Serve(lb("web")),
            &[ip("198.51.100.11")],
            &mut alloc,
        );
        assert_eq!(plan.addresses, vec![ip("198.51.100.11")]);
        assert_eq!(plan.notice, None);
    }

    #[test]
    fn a_status_address_outside_every_pool_is_replaced_with_a_warning() {
        let mut alloc = pools(ONE_POOL);
        let plan = plan(&Desire::Serve(lb("web")), &[ip("203.0.113.9")], &mut alloc);
        assert_eq!(plan.addresses, vec![ip("198.51.100.10")]);
        assert_eq!(
            plan.notice,
            Some(Notice::Moved {
                from: vec![ip("203.0.113.9")],
                to: vec![ip("198.51.100.10")],
                pool: "a".into()
            })
        );
    }

    #[test]
    fn an_exhausted_pool_leaves_the_service_pending_with_the_reason() {
        let mut alloc = pools(ONE_POOL);
        plan(&Desire::Serve(lb("s1")), &[], &mut alloc);
        plan(&Desire::Serve(lb("s2")), &[], &mut alloc);
        let third = plan(&Desire::Serve(lb("s3")), &[], &mut alloc);
        assert!(third.addresses.is_empty());
        match third.notice {
            Some(Notice::Failed { reason, .. }) => assert_eq!(reason, "pool-exhausted"),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_service_leaving_ferrolb_frees_its_address_for_the_next() {
        let mut alloc = pools(ONE_POOL);
        plan(&Desire::Serve(lb("s1")), &[], &mut alloc);
        plan(&Desire::Serve(lb("s2")), &[], &mut alloc);
        let gone = plan(
            &Desire::NotServed(ServiceKey::new("default", "s1")),
            &[],
            &mut alloc,
        );
        assert!(gone.freed);
        assert!(gone.addresses.is_empty());
        let third = plan(&Desire::Serve(lb("s3")), &[], &mut alloc);
        assert_eq!(third.addresses, vec![ip("198.51.100.10")]);
    }

    #[test]
    fn a_prefer_dual_stack_service_gaining_a_family_is_told_so_not_warned() {
        let mut alloc = pools(
            "address-pools:\n- name: d\n  protocol: layer2\n  addresses: [198.51.100.10/32, 2001:db8::10/128]\n",
        );
        let mut v6 = lb("v6");
        v6.families = FamilyPolicy::Single(Family::V6);
        plan(&Desire::Serve(v6), &[], &mut alloc);
        let mut prefer = lb("prefer");
        prefer.families = FamilyPolicy::PreferDual(Family::V4);
        let first = plan(&Desire::Serve(prefer.clone()), &[], &mut alloc);
        assert_eq!(first.addresses, vec![ip("198.51.100.10")]);

        plan(
            &Desire::NotServed(ServiceKey::new("default", "v6")),
            &[],
            &mut alloc,
        );
        let gained = plan(&Desire::Serve(prefer), &first.addresses, &mut alloc);
        assert_eq!(
            gained.addresses,
            vec![ip("198.51.100.10"), ip("2001:db8::10")]
        );
        assert_eq!(
            gained.notice,
            Some(Notice::Extended {
                added: vec![ip("2001:db8::10")],
                kept: vec![ip("198.51.100.10")],
                pool: "d".into()
            })
        );
    }

    #[test]
    fn a_status_listing_the_same_addresses_in_another_order_is_no_news() {
        let mut alloc = pools(
            "address-pools:\n- name: d\n  protocol: layer2\n  addresses: [198.51.100.10/32, 2001:db8::10/128]\n",
        );
        let mut dual = lb("dual");
        dual.families = FamilyPolicy::RequireDual(Family::V4);
        let first = plan(&Desire::Serve(dual.clone()), &[], &mut alloc);
        let reversed: Vec<IpAddr> = first.addresses.iter().rev().copied().collect();
        let again = plan(&Desire::Serve(dual), &reversed, &mut alloc);
        assert_eq!(again.addresses, first.addresses);
        assert_eq!(again.notice, None);
    }

    #[test]
    fn a_requested_address_that_is_taken_is_refused_not_substituted() {
        let mut alloc = pools(ONE_POOL);
        plan(&Desire::Serve(lb("s1")), &[], &mut alloc);
        let mut s2 = lb("s2");
        s2.requested = vec![ip("198.51.100.10")];
        let refused = plan(&Desire::Serve(s2), &[], &mut alloc);
        assert!(refused.addresses.is_empty());
        match refused.notice {
            Some(Notice::Failed { reason, message }) => {
                assert_eq!(reason, "address-in-use");
                assert!(message.contains("default/s1"), "{message}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}
