//! Scenario tables: each runs in order against one allocator, each row a
//! sentence saying what a user would expect.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ferrolb_config::{
    AddressRange, Family, FamilyPolicy, NodeSelector, Pool, PoolName, Port, Protocol, ServiceKey,
    ServiceRequest, SharingKey, TrafficPolicy,
};

use super::*;

// ---- fixtures -------------------------------------------------------------

/// `"10.0.0.0/30"`, `"fd00::/64"` or `"10.0.0.1-10.0.0.9"`.
pub(super) fn range(text: &str) -> AddressRange {
    if let Some((first, last)) = text.split_once('-') {
        let first: IpAddr = first.parse().expect("first address");
        let last: IpAddr = last.parse().expect("last address");
        return AddressRange::new(first, last).expect("ordered range");
    }
    let (addr, len) = text.split_once('/').expect("CIDR");
    let addr: IpAddr = addr.parse().expect("address");
    let len: u32 = len.parse().expect("prefix length");
    let family = Family::of(addr);
    let bits = if family == Family::V4 { 32 } else { 128 };
    let host = bits - len;
    let mask = if host == 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    };
    let first = to_u128(addr) & !mask;
    AddressRange::new(from_u128(first, family), from_u128(first | mask, family)).expect("range")
}

pub(super) fn pool(name: &str, ranges: &[&str]) -> Pool {
    Pool {
        name: PoolName(name.to_string()),
        ranges: ranges.iter().map(|r| range(r)).collect(),
        auto_assign: true,
        avoid_buggy_ips: false,
        node_selectors: Vec::new(),
        interfaces: Vec::new(),
        service_allocation: None,
    }
}

pub(super) trait PoolBuilder {
    fn manual(self) -> Self;
    fn avoiding_buggy_ips(self) -> Self;
    /// Only for Services of these namespaces (by name).
    fn for_namespaces(self, namespaces: &[&str]) -> Self;
    /// Only for Services of namespaces labelled `key: value`.
    fn for_namespaces_labelled(self, key: &str, value: &str) -> Self;
    /// Only for Services labelled `key: value`.
    fn for_services_labelled(self, key: &str, value: &str) -> Self;
    /// With this priority (and a service allocation admitting everyone).
    fn priority(self, priority: u32) -> Self;
}

impl PoolBuilder for Pool {
    fn for_namespaces(mut self, namespaces: &[&str]) -> Self {
        let allocation = self.service_allocation.get_or_insert_default();
        allocation.namespaces = namespaces.iter().map(|n| n.to_string()).collect();
        self
    }
    fn for_namespaces_labelled(mut self, key: &str, value: &str) -> Self {
        let allocation = self.service_allocation.get_or_insert_default();
        allocation.namespace_selectors.push(NodeSelector {
            match_labels: BTreeMap::from([(key.to_string(), value.to_string())]),
            match_expressions: Vec::new(),
        });
        self
    }
    fn for_services_labelled(mut self, key: &str, value: &str) -> Self {
        let allocation = self.service_allocation.get_or_insert_default();
        allocation.service_selectors.push(NodeSelector {
            match_labels: BTreeMap::from([(key.to_string(), value.to_string())]),
            match_expressions: Vec::new(),
        });
        self
    }
    fn priority(mut self, priority: u32) -> Self {
        self.service_allocation.get_or_insert_default().priority = Some(priority);
        self
    }
    fn manual(mut self) -> Self {
        self.auto_assign = false;
        self
    }
    fn avoiding_buggy_ips(mut self) -> Self {
        self.avoid_buggy_ips = true;
        self
    }
}

/// A Cluster-policy single-stack IPv4 Service exposing 80/TCP.
pub(super) fn svc(name: &str) -> ServiceRequest {
    ServiceRequest {
        key: ServiceKey::new("default", name),
        families: FamilyPolicy::Single(Family::V4),
        requested: Vec::new(),
        pool: None,
        sharing: None,
        ports: vec![tcp(80)],
        traffic_policy: TrafficPolicy::Cluster,
        selector: BTreeMap::new(),
        labels: BTreeMap::new(),
        namespace_labels: BTreeMap::new(),
    }
}

pub(super) fn tcp(port: u16) -> Port {
    Port {
        port,
        protocol: Protocol::Tcp,
    }
}

pub(super) fn udp(port: u16) -> Port {
    Port {
        port,
        protocol: Protocol::Udp,
    }
}

pub(super) trait RequestBuilder {
    fn requesting(self, ips: &[&str]) -> Self;
    fn in_pool(self, pool: &str) -> Self;
    fn sharing(self, key: &str) -> Self;
    fn ports(self, ports: &[Port]) -> Self;
    fn local(self, app: &str) -> Self;
    fn families(self, families: FamilyPolicy) -> Self;
    fn in_namespace(self, namespace: &str) -> Self;
    fn labelled(self, key: &str, value: &str) -> Self;
    fn namespace_labelled(self, key: &str, value: &str) -> Self;
}

impl RequestBuilder for ServiceRequest {
    fn requesting(mut self, ips: &[&str]) -> Self {
        self.requested = ips.iter().map(|ip| ip.parse().expect("address")).collect();
        self
    }
    fn in_pool(mut self, pool: &str) -> Self {
        self.pool = Some(pool.to_string());
        self
    }
    fn sharing(mut self, key: &str) -> Self {
        self.sharing = Some(SharingKey(key.to_string()));
        self
    }
    fn ports(mut self, ports: &[Port]) -> Self {
        self.ports = ports.to_vec();
        self
    }
    fn local(mut self, app: &str) -> Self {
        self.traffic_policy = TrafficPolicy::Local;
        self.selector = BTreeMap::from([("app".to_string(), app.to_string())]);
        self
    }
    fn families(mut self, families: FamilyPolicy) -> Self {
        self.families = families;
        self
    }
    fn in_namespace(mut self, namespace: &str) -> Self {
        self.key.namespace = namespace.to_string();
        self
    }
    fn labelled(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }
    fn namespace_labelled(mut self, key: &str, value: &str) -> Self {
        self.namespace_labels
            .insert(key.to_string(), value.to_string());
        self
    }
}

fn key(name: &str) -> ServiceKey {
    ServiceKey::new("default", name)
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|ip| ip.parse().expect("address")).collect()
}

// ---- the table runner -----------------------------------------------------

/// What a row expects.
enum Expect {
    /// These addresses (IPv4 first) from this pool.
    Got(&'static [&'static str], &'static str),
    /// An error with this label.
    Refused(&'static str),
}
use Expect::{Got, Refused};

enum Step {
    Assign(ServiceRequest, Expect),
    Restore(ServiceRequest, &'static [&'static str], Expect),
    /// Releases the Service; expects what it held (`None` if nothing).
    Release(&'static str, Option<&'static [&'static str]>),
    /// New pools; expects these Services evicted, with these reasons.
    SetPools(Vec<Pool>, &'static [(&'static str, &'static str)]),
    /// The Services holding the address.
    Owners(&'static str, &'static [&'static str]),
    /// `(pool, size, in_use, available)` of every pool in config order.
    Stats(&'static [(&'static str, u128, u128, u128)]),
    /// `check_held` for this request gives this label, or `None` for Ok.
    CheckHeld(ServiceRequest, Option<&'static str>),
}
use Step::*;

fn run(pools: &[Pool], rows: Vec<(&str, Step)>) {
    let mut allocator = Allocator::new(pools);
    for (desc, step) in rows {
        match step {
            Assign(request, expect) => {
                let got = allocator.assign(&request);
                match &got {
                    Ok(allocation) => {
                        let again = allocator.assign(&request);
                        assert_eq!(
                            again.as_ref(),
                            Ok(allocation),
                            "{desc}: assigning again changes nothing"
                        );
                    }
                    Err(_) => assert_eq!(
                        allocator.allocation(&request.key),
                        None,
                        "{desc}: a refused Service holds nothing"
                    ),
                }
                check(desc, got, &expect);
            }
            Restore(request, addresses, expect) => {
                let got = allocator.restore(&request, &ips(addresses));
                check(desc, got, &expect);
            }
            Release(name, expected) => {
                let got = allocator.release(&key(name)).map(|a| a.addresses);
                assert_eq!(got, expected.map(ips), "{desc}");
            }
            SetPools(pools, expected) => {
                let evicted: Vec<(String, &str)> = allocator
                    .set_pools(&pools)
                    .iter()
                    .map(|e| (e.service.name.clone(), e.reason.reason()))
                    .collect();
                let expected: Vec<(String, &str)> = expected
                    .iter()
                    .map(|(name, reason)| (name.to_string(), *reason))
                    .collect();
                assert_eq!(evicted, expected, "{desc}");
            }
            Owners(ip, expected) => {
                let owners: Vec<&str> = allocator
                    .owners(ip.parse().expect("address"))
                    .map(|k| k.name.as_str())
                    .collect();
                assert_eq!(owners, expected, "{desc}");
            }
            Stats(expected) => {
                let stats: Vec<(&str, u128, u128, u128)> = allocator
                    .stats()
                    .iter()
                    .map(|s| {
                        let name: &str = expected
                            .iter()
                            .find(|(n, ..)| *n == s.pool.0)
                            .map_or("?", |(n, ..)| n);
                        (name, s.size, s.in_use, s.available)
                    })
                    .collect();
                assert_eq!(stats, expected.to_vec(), "{desc}");
            }
            CheckHeld(request, expected) => {
                let got = allocator.check_held(&request).err().map(|e| e.reason());
                assert_eq!(got, expected, "{desc}");
            }
        }
    }
}

fn check(desc: &str, got: Result<Allocation, AllocError>, expect: &Expect) {
    match (got, expect) {
        (Ok(allocation), Got(addresses, pool)) => {
            assert_eq!(allocation.addresses, ips(addresses), "{desc}");
            assert_eq!(allocation.pool.0, *pool, "{desc}");
        }
        (Err(e), Refused(reason)) => assert_eq!(e.reason(), *reason, "{desc}: {e}"),
        (Ok(allocation), Refused(reason)) => {
            panic!("{desc}: expected {reason}, got {allocation:?}")
        }
        (Err(e), Got(addresses, _)) => panic!("{desc}: expected {addresses:?}, got {e}"),
    }
}

// ---- scenarios ------------------------------------------------------------

#[test]
fn auto_assignment_takes_the_lowest_free_address_of_the_first_auto_pool() {
    let pools = [
        pool("manual", &["10.0.9.0/30"]).manual(),
        pool("small", &["10.0.0.0/31"]),
        pool("big", &["10.0.1.10-10.0.1.20", "10.0.1.0/30"]),
    ];
    run(
        &pools,
        vec![
            (
                "s1 gets the first address of the first auto-assign pool",
                Assign(svc("s1"), Got(&["10.0.0.0"], "small")),
            ),
            (
                "s2 gets the next one",
                Assign(svc("s2"), Got(&["10.0.0.1"], "small")),
            ),
            (
                "s3 spills into the next pool, whose ranges are walked in config order",
                Assign(svc("s3"), Got(&["10.0.1.10"], "big")),
            ),
            (
                "releasing s1 frees its address",
                Release("s1", Some(&["10.0.0.0"])),
            ),
            ("releasing twice frees nothing", Release("s1", None)),
            (
                "s4 reuses the freed address: lowest free, first pool",
                Assign(svc("s4"), Got(&["10.0.0.0"], "small")),
            ),
            (
                "a Service naming a manual pool gets an address from it",
                Assign(svc("s5").in_pool("manual"), Got(&["10.0.9.0"], "manual")),
            ),
            (
                "a Service naming a pool that does not exist gets nothing",
                Assign(svc("s6").in_pool("nope"), Refused("unknown-pool")),
            ),
            (
                "no auto-assign pool offers IPv6",
                Assign(
                    svc("s7").families(FamilyPolicy::Single(Family::V6)),
                    Refused("no-pool-for-families"),
                ),
            ),
            (
                "the manual pool has no IPv6 either",
                Assign(
                    svc("s7")
                        .families(FamilyPolicy::Single(Family::V6))
                        .in_pool("manual"),
                    Refused("family-not-offered"),
                ),
            ),
            (
                "counters: size, in use and available per pool",
                Stats(&[("manual", 4, 1, 3), ("small", 2, 2, 0), ("big", 15, 1, 14)]),
            ),
        ],
    );
}

#[test]
fn exhausted_pools_say_so() {
    let pools = [
        pool("one", &["10.0.0.7/32"]),
        pool("two", &["10.0.1.7/32"]).manual(),
    ];
    run(
        &pools,
        vec![
            (
                "s1 takes the only auto address",
                Assign(svc("s1"), Got(&["10.0.0.7"], "one")),
            ),
            (
                "s2 finds every auto-assign pool full",
                Assign(svc("s2"), Refused("pool-exhausted")),
            ),
            (
                "s3 takes the only manual address",
                Assign(svc("s3").in_pool("two"), Got(&["10.0.1.7"], "two")),
            ),
            (
                "s4 finds the named pool full",
                Assign(svc("s4").in_pool("two"), Refused("pool-exhausted")),
            ),
            ("s2 still holds nothing", Release("s2", None)),
        ],
    );
}

#[test]
fn avoid_buggy_ips_skips_dot0_and_dot255_and_refuses_them_on_request() {
    let pools = [
        pool("careful", &["10.0.0.254-10.0.1.1"]).avoiding_buggy_ips(),
        pool("careless", &["10.0.2.255-10.0.3.0"]),
    ];
    run(
        &pools,
        vec![
            (
                "only 10.0.0.254 and 10.0.1.1 count",
                Stats(&[("careful", 2, 0, 2), ("careless", 2, 0, 2)]),
            ),
            (
                "s1 gets .254",
                Assign(svc("s1"), Got(&["10.0.0.254"], "careful")),
            ),
            (
                "s2 skips .255 and .0",
                Assign(svc("s2"), Got(&["10.0.1.1"], "careful")),
            ),
            (
                "s3 goes to the pool that does not avoid them",
                Assign(svc("s3"), Got(&["10.0.2.255"], "careless")),
            ),
            (
                "requesting a .0 of a careful pool is refused",
                Assign(svc("s4").requesting(&["10.0.1.0"]), Refused("buggy-ip")),
            ),
            (
                "requesting a .0 of a careless pool works",
                Assign(
                    svc("s4").requesting(&["10.0.3.0"]),
                    Got(&["10.0.3.0"], "careless"),
                ),
            ),
            (
                "turning avoid-buggy-ips on evicts the Services on .255 and .0",
                SetPools(
                    vec![
                        pool("careful", &["10.0.0.254-10.0.1.1"]).avoiding_buggy_ips(),
                        pool("careless", &["10.0.2.255-10.0.3.0"]).avoiding_buggy_ips(),
                    ],
                    &[("s3", "buggy-ip"), ("s4", "buggy-ip")],
                ),
            ),
            (
                "the careless pool now has nothing to hand out",
                Stats(&[("careful", 2, 2, 0), ("careless", 0, 0, 0)]),
            ),
        ],
    );
}

#[test]
fn requested_addresses_are_honoured_or_refused_never_replaced() {
    let pools = [
        pool("auto", &["10.0.0.0/29"]),
        pool("manual", &["10.0.9.0/29"]).manual(),
        pool("v6", &["fd00::/126"]),
    ];
    run(
        &pools,
        vec![
            (
                "s1 gets the address it requests",
                Assign(
                    svc("s1").requesting(&["10.0.0.5"]),
                    Got(&["10.0.0.5"], "auto"),
                ),
            ),
            (
                "s2 can't grab s1's IP",
                Assign(
                    svc("s2").requesting(&["10.0.0.5"]),
                    Refused("address-in-use"),
                ),
            ),
            (
                "s2 holds nothing rather than another address",
                Owners("10.0.0.5", &["s1"]),
            ),
            (
                "a requested address in a manual pool is honoured",
                Assign(
                    svc("s3").requesting(&["10.0.9.3"]),
                    Got(&["10.0.9.3"], "manual"),
                ),
            ),
            (
                "a requested address in no pool is refused",
                Assign(
                    svc("s4").requesting(&["192.0.2.1"]),
                    Refused("not-in-any-pool"),
                ),
            ),
            (
                "a requested address outside the named pool is refused",
                Assign(
                    svc("s5").requesting(&["10.0.0.6"]).in_pool("manual"),
                    Refused("wrong-pool"),
                ),
            ),
            (
                "a requested address inside the named pool is honoured",
                Assign(
                    svc("s5").requesting(&["10.0.9.6"]).in_pool("manual"),
                    Got(&["10.0.9.6"], "manual"),
                ),
            ),
            (
                "an IPv6 address for an IPv4 Service is refused",
                Assign(
                    svc("s6").requesting(&["fd00::1"]),
                    Refused("family-mismatch"),
                ),
            ),
            (
                "two IPv4 addresses for one Service are refused",
                Assign(
                    svc("s6")
                        .requesting(&["10.0.0.1", "10.0.0.2"])
                        .families(FamilyPolicy::PreferDual(Family::V4)),
                    Refused("family-mismatch"),
                ),
            ),
            (
                "dual-stack addresses from two pools are refused",
                Assign(
                    svc("s6")
                        .requesting(&["fd00::1", "10.0.0.1"])
                        .families(FamilyPolicy::RequireDual(Family::V4)),
                    Refused("mixed-pools"),
                ),
            ),
            (
                "auto-assignment skips requested addresses held by others",
                Assign(svc("s7"), Got(&["10.0.0.0"], "auto")),
            ),
            (
                "s1 changing its request moves it",
                Assign(
                    svc("s1").requesting(&["10.0.0.4"]),
                    Got(&["10.0.0.4"], "auto"),
                ),
            ),
            ("its old address is free again", Owners("10.0.0.5", &[])),
            (
                "s7 asking for s1's address gets nothing, and loses its own",
                Assign(
                    svc("s7").requesting(&["10.0.0.4"]),
                    Refused("address-in-use"),
                ),
            ),
            ("s7's old address was released", Owners("10.0.0.0", &[])),
            (
                "s1 dropping the request keeps the address it has",
                Assign(svc("s1"), Got(&["10.0.0.4"], "auto")),
            ),
        ],
    );
}

#[test]
fn sharing_needs_the_same_key_disjoint_ports_and_the_same_pods() {
    let pools = [pool("p", &["10.0.0.0/29"])];
    run(
        &pools,
        vec![
            (
                "s1 takes .1 and allows sharing under k",
                Assign(
                    svc("s1").requesting(&["10.0.0.1"]).sharing("k"),
                    Got(&["10.0.0.1"], "p"),
                ),
            ),
            (
                "s2 joins it on another port",
                Assign(
                    svc("s2")
                        .requesting(&["10.0.0.1"])
                        .sharing("k")
                        .ports(&[tcp(443)]),
                    Got(&["10.0.0.1"], "p"),
                ),
            ),
            (
                "s3 can't join on a port already exposed",
                Assign(
                    svc("s3")
                        .requesting(&["10.0.0.1"])
                        .sharing("k")
                        .ports(&[tcp(443)]),
                    Refused("port-conflict"),
                ),
            ),
            (
                "the same number on another protocol does not collide",
                Assign(
                    svc("s3")
                        .requesting(&["10.0.0.1"])
                        .sharing("k")
                        .ports(&[udp(443)]),
                    Got(&["10.0.0.1"], "p"),
                ),
            ),
            (
                "another key may not join",
                Assign(
                    svc("s4")
                        .requesting(&["10.0.0.1"])
                        .sharing("other")
                        .ports(&[tcp(8080)]),
                    Refused("sharing-conflict"),
                ),
            ),
            (
                "no key may not join",
                Assign(
                    svc("s4").requesting(&["10.0.0.1"]).ports(&[tcp(8080)]),
                    Refused("address-in-use"),
                ),
            ),
            (
                "a Local Service may not join Cluster ones",
                Assign(
                    svc("s4")
                        .requesting(&["10.0.0.1"])
                        .sharing("k")
                        .ports(&[tcp(8080)])
                        .local("a"),
                    Refused("selector-mismatch"),
                ),
            ),
            (
                "three Services hold .1",
                Owners("10.0.0.1", &["s1", "s2", "s3"]),
            ),
            ("one address in use", Stats(&[("p", 8, 1, 7)])),
            (
                "s5 with key k auto-joins the shared address rather than a fresh one",
                Assign(
                    svc("s5").sharing("k").ports(&[tcp(22)]),
                    Got(&["10.0.0.1"], "p"),
                ),
            ),
            (
                "s6 with key k but a colliding port gets a fresh address",
                Assign(svc("s6").sharing("k"), Got(&["10.0.0.0"], "p")),
            ),
            (
                "l1, Local, takes .3 under key l",
                Assign(
                    svc("l1").requesting(&["10.0.0.3"]).sharing("l").local("a"),
                    Got(&["10.0.0.3"], "p"),
                ),
            ),
            (
                "l2 selecting the same pods joins",
                Assign(
                    svc("l2")
                        .requesting(&["10.0.0.3"])
                        .sharing("l")
                        .local("a")
                        .ports(&[tcp(81)]),
                    Got(&["10.0.0.3"], "p"),
                ),
            ),
            (
                "l3 selecting other pods may not",
                Assign(
                    svc("l3")
                        .requesting(&["10.0.0.3"])
                        .sharing("l")
                        .local("b")
                        .ports(&[tcp(82)]),
                    Refused("selector-mismatch"),
                ),
            ),
            (
                "releasing one sharer keeps the address for the others",
                Release("s1", Some(&["10.0.0.1"])),
            ),
            (
                "s2 and s3 and s5 remain",
                Owners("10.0.0.1", &["s2", "s3", "s5"]),
            ),
            (
                "s2 changing its ports to collide with s3 moves, joining s6's address of the same key",
                Assign(
                    svc("s2").sharing("k").ports(&[udp(443)]),
                    Got(&["10.0.0.0"], "p"),
                ),
            ),
            (
                "s3 may not change its key while s5 shares its address",
                CheckHeld(
                    svc("s3")
                        .requesting(&["10.0.0.1"])
                        .sharing("new")
                        .ports(&[udp(443)]),
                    Some("sharing-conflict"),
                ),
            ),
        ],
    );
}

#[test]
fn a_sole_owner_may_change_its_sharing_key_in_place() {
    let pools = [pool("p", &["10.0.0.0/30"])];
    run(
        &pools,
        vec![
            (
                "s1 shares under a",
                Assign(svc("s1").sharing("a"), Got(&["10.0.0.0"], "p")),
            ),
            (
                "s1 switching to b keeps its address: nobody else holds it",
                Assign(svc("s1").sharing("b"), Got(&["10.0.0.0"], "p")),
            ),
            (
                "s2 under b joins it",
                Assign(
                    svc("s2").sharing("b").ports(&[tcp(81)]),
                    Got(&["10.0.0.0"], "p"),
                ),
            ),
            (
                "s3 under a no longer finds it",
                Assign(
                    svc("s3").sharing("a").ports(&[tcp(82)]),
                    Got(&["10.0.0.1"], "p"),
                ),
            ),
            (
                "s1 dropping its key would now conflict with s2",
                CheckHeld(svc("s1"), Some("address-in-use")),
            ),
            (
                "so assigning it moves it",
                Assign(svc("s1"), Got(&["10.0.0.2"], "p")),
            ),
        ],
    );
}

#[test]
fn dual_stack_policies_take_one_or_two_addresses_from_one_pool() {
    let pools = [
        pool("v4only", &["10.0.0.0/32"]),
        pool("dual", &["fd00::/127", "10.0.1.0/31"]),
        pool("v6only", &["fd00:6::/127"]),
    ];
    let prefer4 = FamilyPolicy::PreferDual(Family::V4);
    let prefer6 = FamilyPolicy::PreferDual(Family::V6);
    let require = FamilyPolicy::RequireDual(Family::V6);
    run(
        &pools,
        vec![
            (
                "PreferDual takes both families from the first pool offering both, IPv4 first",
                Assign(
                    svc("d1").families(prefer6.clone()),
                    Got(&["10.0.1.0", "fd00::"], "dual"),
                ),
            ),
            (
                "RequireDual too",
                Assign(
                    svc("d2").families(require.clone()),
                    Got(&["10.0.1.1", "fd00::1"], "dual"),
                ),
            ),
            (
                "RequireDual fails once no pool has both",
                Assign(
                    svc("d3").families(require.clone()),
                    Refused("pool-exhausted"),
                ),
            ),
            (
                "PreferDual with IPv6 first falls back to the first pool with IPv6",
                Assign(
                    svc("d4").families(prefer6.clone()),
                    Got(&["fd00:6::"], "v6only"),
                ),
            ),
            (
                "PreferDual with IPv4 first falls back to the first pool with IPv4",
                Assign(
                    svc("d5").families(prefer4.clone()),
                    Got(&["10.0.0.0"], "v4only"),
                ),
            ),
            (
                "d1 leaves the dual pool",
                Release("d1", Some(&["10.0.1.0", "fd00::"])),
            ),
            (
                "d4 stays where it is: assigning again keeps its pool",
                Assign(
                    svc("d4").families(prefer6.clone()),
                    Got(&["fd00:6::"], "v6only"),
                ),
            ),
            (
                "d6 holds only IPv6 of the dual pool",
                Assign(
                    svc("d6").families(prefer6.clone()).requesting(&["fd00::"]),
                    Got(&["fd00::"], "dual"),
                ),
            ),
            (
                "d6 dropping its request gains the free IPv4 of its pool, keeping its IPv6",
                Assign(
                    svc("d6").families(prefer6.clone()),
                    Got(&["10.0.1.0", "fd00::"], "dual"),
                ),
            ),
            (
                "RequireDual from a single-family pool is refused",
                Assign(
                    svc("d7").families(require.clone()).in_pool("v6only"),
                    Refused("family-not-offered"),
                ),
            ),
            (
                "Single IPv6 from the named dual pool, which is full",
                Assign(
                    svc("d7")
                        .families(FamilyPolicy::Single(Family::V6))
                        .in_pool("dual"),
                    Refused("pool-exhausted"),
                ),
            ),
            (
                "a dual Service turned single-stack keeps nothing of the wrong family",
                CheckHeld(
                    svc("d2").families(FamilyPolicy::Single(Family::V4)),
                    Some("family-mismatch"),
                ),
            ),
            (
                "and is reassigned a single address, lowest first",
                Assign(
                    svc("d2").families(FamilyPolicy::Single(Family::V4)),
                    Got(&["10.0.1.1"], "dual"),
                ),
            ),
            (
                "requested dual-stack addresses must come from one pool",
                Assign(
                    svc("d8")
                        .families(require.clone())
                        .requesting(&["fd00::1", "10.0.0.0"]),
                    Refused("mixed-pools"),
                ),
            ),
        ],
    );
}

#[test]
fn prefer_dual_gains_its_missing_family_when_it_frees_up() {
    let pools = [pool("dual", &["10.0.0.0/32", "fd00::/128"])];
    let prefer = FamilyPolicy::PreferDual(Family::V4);
    run(
        &pools,
        vec![
            (
                "s1 takes the only IPv6",
                Assign(
                    svc("s1").families(FamilyPolicy::Single(Family::V6)),
                    Got(&["fd00::"], "dual"),
                ),
            ),
            (
                "d1 gets only IPv4",
                Assign(
                    svc("d1").families(prefer.clone()),
                    Got(&["10.0.0.0"], "dual"),
                ),
            ),
            ("s1 leaves", Release("s1", Some(&["fd00::"]))),
            (
                "d1's next assign adds the IPv6 without changing its IPv4",
                Assign(
                    svc("d1").families(prefer.clone()),
                    Got(&["10.0.0.0", "fd00::"], "dual"),
                ),
            ),
            ("both are counted", Stats(&[("dual", 2, 2, 0)])),
        ],
    );
}

#[test]
fn restore_rebuilds_from_status_and_refuses_conflicts() {
    let pools = [
        pool("p", &["10.0.0.0/29"]),
        pool("q", &["10.0.1.0/29"]).manual(),
    ];
    run(
        &pools,
        vec![
            (
                "s1's status address is restored",
                Restore(svc("s1"), &["10.0.0.3"], Got(&["10.0.0.3"], "p")),
            ),
            (
                "s2 claiming the same address is refused",
                Restore(svc("s2"), &["10.0.0.3"], Refused("address-in-use")),
            ),
            (
                "s3 with an address in no pool is refused",
                Restore(svc("s3"), &["192.0.2.7"], Refused("not-in-any-pool")),
            ),
            (
                "s4 in a manual pool it doesn't name is still restored",
                Restore(svc("s4"), &["10.0.1.1"], Got(&["10.0.1.1"], "q")),
            ),
            (
                "s5 now naming another pool is refused",
                Restore(svc("s5").in_pool("q"), &["10.0.0.5"], Refused("wrong-pool")),
            ),
            (
                "s6 now requesting another address is refused",
                Restore(
                    svc("s6").requesting(&["10.0.0.6"]),
                    &["10.0.0.5"],
                    Refused("request-changed"),
                ),
            ),
            (
                "sharers are restored together",
                Restore(
                    svc("a").sharing("k").ports(&[tcp(1)]),
                    &["10.0.0.4"],
                    Got(&["10.0.0.4"], "p"),
                ),
            ),
            (
                "the second sharer joins",
                Restore(
                    svc("b").sharing("k").ports(&[tcp(2)]),
                    &["10.0.0.4"],
                    Got(&["10.0.0.4"], "p"),
                ),
            ),
            (
                "the first pending Service fills in around restored ones",
                Assign(svc("s2"), Got(&["10.0.0.0"], "p")),
            ),
            (
                "counters include restored addresses",
                Stats(&[("p", 8, 3, 5), ("q", 8, 1, 7)]),
            ),
        ],
    );
}

#[test]
fn config_changes_keep_what_still_fits_and_evict_the_rest() {
    let pools = [
        pool("a", &["10.0.0.0/30"]),
        pool("b", &["10.0.1.0/30"]).manual(),
    ];
    run(
        &pools,
        vec![
            ("s1 in a", Assign(svc("s1"), Got(&["10.0.0.0"], "a"))),
            ("s2 in a", Assign(svc("s2"), Got(&["10.0.0.1"], "a"))),
            (
                "s3 names b",
                Assign(svc("s3").in_pool("b"), Got(&["10.0.1.0"], "b")),
            ),
            (
                "s4 requests .1.3",
                Assign(svc("s4").requesting(&["10.0.1.3"]), Got(&["10.0.1.3"], "b")),
            ),
            (
                "shrinking a to one address evicts s2; b renamed evicts s3 which names it, not s4",
                SetPools(
                    vec![pool("a", &["10.0.0.0/32"]), pool("c", &["10.0.1.0/30"])],
                    &[("s2", "not-in-any-pool"), ("s3", "unknown-pool")],
                ),
            ),
            (
                "s4 keeps its address under the new pool name",
                Assign(svc("s4").requesting(&["10.0.1.3"]), Got(&["10.0.1.3"], "c")),
            ),
            (
                "s2 finds auto-assignment now goes to c",
                Assign(svc("s2"), Got(&["10.0.1.0"], "c")),
            ),
            (
                "counters follow the new pools",
                Stats(&[("a", 1, 1, 0), ("c", 4, 2, 2)]),
            ),
            (
                "splitting c's range between two pools keeps both",
                SetPools(
                    vec![
                        pool("a", &["10.0.0.0/32"]),
                        pool("c", &["10.0.1.0/31"]),
                        pool("d", &["10.0.1.2/31"]),
                    ],
                    &[],
                ),
            ),
            (
                "s4 is now in d",
                Assign(svc("s4").requesting(&["10.0.1.3"]), Got(&["10.0.1.3"], "d")),
            ),
            (
                "removing every pool evicts everybody",
                SetPools(
                    vec![],
                    &[
                        ("s1", "not-in-any-pool"),
                        ("s2", "not-in-any-pool"),
                        ("s4", "not-in-any-pool"),
                    ],
                ),
            ),
            ("nothing is counted", Stats(&[])),
        ],
    );
}

#[test]
fn pinned_pools_serve_only_the_services_they_admit_lowest_priority_first() {
    let pools = [
        pool("shared", &["10.0.0.0/31"]),
        pool("team-a", &["10.0.1.0/31"]).for_namespaces(&["team-a"]),
        pool("gold", &["10.0.2.0/32"])
            .for_services_labelled("tier", "gold")
            .priority(5),
        pool("prod", &["10.0.3.0/32"])
            .for_namespaces_labelled("env", "prod")
            .priority(10),
        pool("reserved", &["10.0.4.0/32"])
            .for_namespaces(&["team-a"])
            .manual(),
    ];
    run(
        &pools,
        vec![
            (
                "a Service of another namespace, unlabelled, skips every pinned pool",
                Assign(svc("plain"), Got(&["10.0.0.0"], "shared")),
            ),
            (
                "a Service of team-a prefers its pinned pool over the shared one",
                Assign(
                    svc("a1").in_namespace("team-a"),
                    Got(&["10.0.1.0"], "team-a"),
                ),
            ),
            (
                "a gold Service in a prod namespace gets priority 5 before 10",
                Assign(
                    svc("g1")
                        .labelled("tier", "gold")
                        .namespace_labelled("env", "prod"),
                    Got(&["10.0.2.0"], "gold"),
                ),
            ),
            (
                "the next one spills into priority 10",
                Assign(
                    svc("g2")
                        .labelled("tier", "gold")
                        .namespace_labelled("env", "prod"),
                    Got(&["10.0.3.0"], "prod"),
                ),
            ),
            (
                "and then into the pool open to everyone",
                Assign(
                    svc("g3")
                        .labelled("tier", "gold")
                        .namespace_labelled("env", "prod"),
                    Got(&["10.0.0.1"], "shared"),
                ),
            ),
            (
                "naming a pool that does not admit the Service is refused",
                Assign(svc("n1").in_pool("team-a"), Refused("pool-not-allowed")),
            ),
            (
                "requesting an address of such a pool is refused",
                Assign(
                    svc("n2").requesting(&["10.0.1.1"]),
                    Refused("pool-not-allowed"),
                ),
            ),
            (
                "a manual pinned pool is never chosen automatically",
                Assign(
                    svc("a2").in_namespace("team-a"),
                    Got(&["10.0.1.1"], "team-a"),
                ),
            ),
            (
                "but serves its namespace when named",
                Assign(
                    svc("a3").in_namespace("team-a").in_pool("reserved"),
                    Got(&["10.0.4.0"], "reserved"),
                ),
            ),
            (
                "a Service whose labels no longer match its pool would lose its address",
                CheckHeld(
                    svc("g1").namespace_labelled("env", "prod"),
                    Some("pool-not-allowed"),
                ),
            ),
            (
                "assigning it again moves it to a pool that admits it",
                Assign(
                    svc("g1").namespace_labelled("env", "prod"),
                    Refused("pool-exhausted"),
                ),
            ),
            (
                "restoring a status address from a pool that does not admit the Service is refused",
                Restore(svc("r1"), &["10.0.3.0"], Refused("pool-not-allowed")),
            ),
        ],
    );
}

#[test]
fn a_pool_that_stops_admitting_a_service_evicts_it_like_a_removed_pool() {
    let pools = [
        pool("open", &["10.0.0.0/30"]),
        pool("team", &["10.0.1.0/30"]).for_namespaces(&["team-a", "team-b"]),
    ];
    let narrowed = vec![
        pool("open", &["10.0.0.0/30"]),
        pool("team", &["10.0.1.0/30"]).for_namespaces(&["team-a"]),
    ];
    run(
        &pools,
        vec![
            (
                "a Service of team-a takes the pinned pool",
                Assign(svc("a").in_namespace("team-a"), Got(&["10.0.1.0"], "team")),
            ),
            (
                "so does one of team-b",
                Assign(svc("b").in_namespace("team-b"), Got(&["10.0.1.1"], "team")),
            ),
            (
                "a pool turning manual keeps what it handed out",
                SetPools(
                    vec![
                        pool("open", &["10.0.0.0/30"]),
                        pool("team", &["10.0.1.0/30"])
                            .for_namespaces(&["team-a", "team-b"])
                            .manual(),
                    ],
                    &[],
                ),
            ),
            (
                "the pool dropping team-b evicts only team-b's Service",
                SetPools(narrowed, &[("b", "pool-not-allowed")]),
            ),
            (
                "which is then assigned from the pool open to it",
                Assign(svc("b").in_namespace("team-b"), Got(&["10.0.0.0"], "open")),
            ),
        ],
    );
}

#[test]
fn a_whole_ipv6_slash_64_costs_nothing_and_counts_exactly() {
    let pools = [pool("big", &["fd00::/64"])];
    let v6 = FamilyPolicy::Single(Family::V6);
    run(
        &pools,
        vec![
            (
                "the pool counts 2^64 addresses",
                Stats(&[("big", 1 << 64, 0, 1 << 64)]),
            ),
            (
                "s1 gets the first",
                Assign(svc("s1").families(v6.clone()), Got(&["fd00::"], "big")),
            ),
            (
                "s2 requests the last",
                Assign(
                    svc("s2")
                        .families(v6.clone())
                        .requesting(&["fd00::ffff:ffff:ffff:ffff"]),
                    Got(&["fd00::ffff:ffff:ffff:ffff"], "big"),
                ),
            ),
            (
                "s3 gets the second",
                Assign(svc("s3").families(v6.clone()), Got(&["fd00::1"], "big")),
            ),
            ("three in use", Stats(&[("big", 1 << 64, 3, (1 << 64) - 3)])),
        ],
    );
}

#[test]
fn errors_name_what_is_in_the_way() {
    let pools = [pool("p", &["10.0.0.0/30"])];
    let mut allocator = Allocator::new(&pools);
    allocator
        .assign(&svc("web").requesting(&["10.0.0.1"]).sharing("k"))
        .expect("free address");
    let err = allocator
        .assign(&svc("api").requesting(&["10.0.0.1"]).sharing("k"))
        .expect_err("port 80 collides");
    assert_eq!(
        err.to_string(),
        "10.0.0.1 already exposes 80/TCP for default/web"
    );
    let err = allocator
        .assign(&svc("api").requesting(&["10.0.0.1"]).sharing("x"))
        .expect_err("other key");
    assert_eq!(
        err.to_string(),
        "10.0.0.1 is shared under key \"k\" by default/web, not under \"x\""
    );
    let err = allocator
        .assign(&svc("api").families(FamilyPolicy::RequireDual(Family::V4)))
        .expect_err("no IPv6");
    assert_eq!(
        err.to_string(),
        "no auto-assign pool offers IPv4 and IPv6 addresses"
    );
}
