//! Random sequences of assign / release / set_pools against a brute-force
//! model over a few tiny pools: the model enumerates every address, the
//! allocator keeps free spans and indexes, and both must agree on every
//! answer and every counter.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_config::{Family, FamilyPolicy, Pool, ServiceKey, ServiceRequest, TrafficPolicy};
use proptest::prelude::*;

use super::tests::{PoolBuilder, RequestBuilder, pool, svc, tcp, udp};
use super::*;

/// The pool sets a run switches between: renames, shrinks, reorders, flips
/// auto-assign and avoid-buggy-ips, pins pools to Service or namespace
/// labels with priorities, and to a namespace no Service is in.
fn configs() -> Vec<Vec<Pool>> {
    let r1 = "10.0.0.0-10.0.0.3";
    let r2 = "10.0.0.254-10.0.1.1";
    let r3 = "fd00::-fd00::3";
    let r4 = "fd00::10-fd00::11";
    let r5 = "10.0.2.0-10.0.2.1";
    let r6 = "fd00::20-fd00::21";
    vec![
        vec![
            pool("A", &[r1, r3]),
            pool("B", &[r2]).avoiding_buggy_ips(),
            pool("M", &[r4]).manual(),
            pool("P", &[r5])
                .for_services_labelled("tier", "gold")
                .priority(2),
        ],
        vec![
            pool("A", &["10.0.0.0-10.0.0.1"]),
            pool("B", &[r2, r3]).manual(),
            pool("C", &[r4]).for_namespaces_labelled("env", "prod"),
            pool("Q", &[r5]).for_namespaces(&["elsewhere"]),
        ],
        vec![
            pool("B", &[r3, r1]),
            pool("A", &[r2]).avoiding_buggy_ips(),
            pool("P", &[r5, r6])
                .for_services_labelled("tier", "gold")
                .priority(1),
            pool("C", &[r4]).for_namespaces(&["default"]).priority(3),
        ],
        vec![pool("D", &[r2, r1])],
    ]
}

const ADDRESSES: &[&str] = &[
    "10.0.0.0",
    "10.0.0.2",
    "10.0.0.255",
    "10.0.1.1",
    "fd00::1",
    "fd00::11",
    "10.0.2.0",
    "fd00::21",
    "192.0.2.1",
];

fn request_strategy() -> impl Strategy<Value = ServiceRequest> {
    let families = prop_oneof![
        3 => Just(FamilyPolicy::Single(Family::V4)),
        1 => Just(FamilyPolicy::Single(Family::V6)),
        1 => Just(FamilyPolicy::PreferDual(Family::V4)),
        1 => Just(FamilyPolicy::PreferDual(Family::V6)),
        1 => Just(FamilyPolicy::RequireDual(Family::V4)),
    ];
    let requested = prop_oneof![
        4 => Just(Vec::<&str>::new()),
        2 => proptest::sample::subsequence(ADDRESSES, 1),
        1 => proptest::sample::subsequence(ADDRESSES, 2),
    ];
    let pool = prop_oneof![
        5 => Just(None),
        1 => proptest::sample::select(&["A", "B", "C", "M", "P", "Q", "X"][..]).prop_map(Some),
    ];
    let sharing = prop_oneof![
        2 => Just(None),
        3 => Just(Some("k")),
        1 => Just(Some("j")),
    ];
    let ports = proptest::sample::subsequence(vec![tcp(80), udp(53), tcp(53)], 0..=2);
    let local = prop_oneof![3 => Just(None), 1 => Just(Some("a")), 1 => Just(Some("b"))];
    let (gold, prod) = (any::<bool>(), any::<bool>());
    let pool = (pool, gold, prod);
    (0..4usize, families, requested, pool, sharing, ports, local).prop_map(
        |(n, families, requested, (pool, gold, prod), sharing, ports, local)| {
            let mut request = svc(&format!("s{n}"))
                .families(families)
                .requesting(&requested)
                .ports(&ports);
            if let Some(pool) = pool {
                request = request.in_pool(pool);
            }
            if let Some(key) = sharing {
                request = request.sharing(key);
            }
            if let Some(app) = local {
                request = request.local(app);
            }
            if gold {
                request = request.labelled("tier", "gold");
            }
            if prod {
                request = request.namespace_labelled("env", "prod");
            }
            request
        },
    )
}

#[derive(Debug, Clone)]
enum Op {
    Assign(ServiceRequest),
    /// Sends the Service's last request again.
    Reassign(usize),
    Release(usize),
    SetPools(usize),
    /// Assigns a fresh Service and releases it at once.
    Probe(ServiceRequest),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => request_strategy().prop_map(Op::Assign),
        2 => (0..4usize).prop_map(Op::Reassign),
        2 => (0..4usize).prop_map(Op::Release),
        1 => (0..configs().len()).prop_map(Op::SetPools),
        1 => request_strategy().prop_map(|mut r| {
            r.key = ServiceKey::new("default", "probe");
            Op::Probe(r)
        }),
    ]
}

// ---- the model ------------------------------------------------------------

/// Every answer worked out by enumerating addresses.
struct Model {
    pools: Vec<Pool>,
    held: BTreeMap<ServiceKey, (ServiceRequest, Vec<IpAddr>, usize)>,
}

type Outcome = Result<(Vec<IpAddr>, String), &'static str>;

fn model_buggy(pool: &Pool, ip: IpAddr) -> bool {
    pool.avoid_buggy_ips && matches!(ip, IpAddr::V4(v4) if matches!(v4.octets()[3], 0 | 255))
}

fn share_reason(ours: &ServiceRequest, theirs: &ServiceRequest) -> Option<&'static str> {
    match (&ours.sharing, &theirs.sharing) {
        (Some(a), Some(b)) if a != b => return Some("sharing-conflict"),
        (Some(_), Some(_)) => {}
        _ => return Some("address-in-use"),
    }
    let backend =
        |r: &ServiceRequest| (r.traffic_policy == TrafficPolicy::Local).then(|| r.selector.clone());
    if backend(ours) != backend(theirs) {
        return Some("selector-mismatch");
    }
    ours.ports
        .iter()
        .any(|p| theirs.ports.contains(p))
        .then_some("port-conflict")
}

impl Model {
    fn holders(&self, ip: IpAddr) -> Vec<&ServiceRequest> {
        self.held
            .values()
            .filter(|(_, ips, _)| ips.contains(&ip))
            .map(|(r, ..)| r)
            .collect()
    }

    fn sharing_reason(&self, request: &ServiceRequest, ip: IpAddr) -> Option<&'static str> {
        self.holders(ip)
            .into_iter()
            .filter(|h| h.key != request.key)
            .find_map(|h| share_reason(request, h))
    }

    fn fits(policy: &FamilyPolicy, ips: &[IpAddr]) -> bool {
        let fams: Vec<Family> = ips.iter().map(|ip| Family::of(*ip)).collect();
        match policy {
            FamilyPolicy::Single(f) => fams == [*f],
            FamilyPolicy::PreferDual(_) => {
                fams == [Family::V4] || fams == [Family::V6] || fams == [Family::V4, Family::V6]
            }
            FamilyPolicy::RequireDual(_) => fams == [Family::V4, Family::V6],
        }
    }

    /// Whether pool `p`'s service allocation admits the Service, written
    /// out for the few selectors these configs use.
    fn admits(&self, p: usize, request: &ServiceRequest) -> bool {
        let Some(a) = &self.pools[p].service_allocation else {
            return true;
        };
        let has = |labels: &BTreeMap<String, String>, s: &ferrolb_config::NodeSelector| {
            s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
        };
        let namespace = (a.namespaces.is_empty() && a.namespace_selectors.is_empty())
            || a.namespaces.contains(&request.key.namespace)
            || a.namespace_selectors
                .iter()
                .any(|s| has(&request.namespace_labels, s));
        let service = a.service_selectors.is_empty()
            || a.service_selectors.iter().any(|s| has(&request.labels, s));
        namespace && service
    }

    fn named(&self, request: &ServiceRequest) -> Result<Option<usize>, &'static str> {
        match &request.pool {
            None => Ok(None),
            Some(n) => self
                .pools
                .iter()
                .position(|p| &p.name.0 == n)
                .map(Some)
                .ok_or("unknown-pool"),
        }
    }

    fn locate(&self, request: &ServiceRequest, ips: &[IpAddr]) -> Result<usize, &'static str> {
        let named = self.named(request)?;
        let mut found = None;
        for ip in ips {
            let p = self
                .pools
                .iter()
                .position(|p| p.contains(*ip))
                .ok_or("not-in-any-pool")?;
            if named.is_some_and(|n| n != p) {
                return Err("wrong-pool");
            }
            if !self.admits(p, request) {
                return Err("pool-not-allowed");
            }
            if model_buggy(&self.pools[p], *ip) {
                return Err("buggy-ip");
            }
            if found.is_some_and(|f| f != p) {
                return Err("mixed-pools");
            }
            found = Some(p);
        }
        found.ok_or("family-mismatch")
    }

    fn valid(&self, request: &ServiceRequest, ips: &[IpAddr]) -> Result<usize, &'static str> {
        if !Self::fits(&request.families, ips) {
            return Err("family-mismatch");
        }
        let p = self.locate(request, ips)?;
        if !request.requested.is_empty() && sorted(&request.requested) != ips {
            return Err("request-changed");
        }
        match ips.iter().find_map(|ip| self.sharing_reason(request, *ip)) {
            Some(reason) => Err(reason),
            None => Ok(p),
        }
    }

    fn addresses(&self, p: usize, family: Family) -> Vec<IpAddr> {
        let pool = &self.pools[p];
        pool.ranges
            .iter()
            .filter(|r| r.family() == family)
            .flat_map(|r| {
                (to_u128(r.first())..=to_u128(r.last())).map(move |n| from_u128(n, family))
            })
            .filter(|ip| !model_buggy(pool, *ip))
            .collect()
    }

    fn candidate(&self, p: usize, family: Family, request: &ServiceRequest) -> Option<IpAddr> {
        let all = self.addresses(p, family);
        if request.sharing.is_some() {
            let mut joinable: Vec<IpAddr> = all
                .iter()
                .copied()
                .filter(|ip| {
                    self.holders(*ip)
                        .iter()
                        .any(|h| h.sharing == request.sharing)
                        && self.sharing_reason(request, *ip).is_none()
                })
                .collect();
            joinable.sort();
            if let Some(ip) = joinable.first() {
                return Some(*ip);
            }
        }
        all.into_iter().find(|ip| self.holders(*ip).is_empty())
    }

    fn offers(&self, p: usize, family: Family) -> bool {
        self.pools[p].has_family(family)
    }

    fn choose(&self, request: &ServiceRequest) -> Result<(usize, Vec<IpAddr>), &'static str> {
        let named = self.named(request)?;
        if !request.requested.is_empty() {
            let ips = sorted(&request.requested);
            if !Self::fits(&request.families, &ips) {
                return Err("family-mismatch");
            }
            let p = self.locate(request, &ips)?;
            if let Some(reason) = ips.iter().find_map(|ip| self.sharing_reason(request, *ip)) {
                return Err(reason);
            }
            return Ok((p, ips));
        }
        let order: Vec<Vec<Family>> = match request.families {
            FamilyPolicy::Single(f) => vec![vec![f]],
            FamilyPolicy::RequireDual(_) => vec![vec![Family::V4, Family::V6]],
            FamilyPolicy::PreferDual(f) => {
                vec![vec![Family::V4, Family::V6], vec![f], vec![other(f)]]
            }
        };
        if let Some(p) = named {
            if !self.admits(p, request) {
                return Err("pool-not-allowed");
            }
            let want = |f: Family| {
                if !self.offers(p, f) {
                    return Err("family-not-offered");
                }
                self.candidate(p, f, request).ok_or("pool-exhausted")
            };
            return match request.families {
                FamilyPolicy::Single(f) => Ok((p, vec![want(f)?])),
                FamilyPolicy::RequireDual(_) => Ok((p, vec![want(Family::V4)?, want(Family::V6)?])),
                FamilyPolicy::PreferDual(f) => {
                    let (a, b) = (want(f), want(other(f)));
                    match (a, b) {
                        (Ok(a), Ok(b)) => Ok((p, sorted(&[a, b]))),
                        (Ok(a), Err(_)) | (Err(_), Ok(a)) => Ok((p, vec![a])),
                        (Err("family-not-offered"), Err(e)) | (Err(e), Err(_)) => Err(e),
                    }
                }
            };
        }
        let mut autos: Vec<usize> = (0..self.pools.len())
            .filter(|p| self.pools[*p].auto_assign && self.admits(*p, request))
            .collect();
        // Pinned pools by priority (none last), then the others; config
        // order within.
        autos.sort_by_key(|p| match &self.pools[*p].service_allocation {
            Some(a) => (0, a.priority.unwrap_or(u32::MAX), *p),
            None => (1, 0, *p),
        });
        if !order.iter().any(|fams| {
            autos
                .iter()
                .any(|p| fams.iter().all(|f| self.offers(*p, *f)))
        }) {
            return Err("no-pool-for-families");
        }
        for fams in &order {
            for &p in &autos {
                let picks: Option<Vec<IpAddr>> = fams
                    .iter()
                    .map(|f| self.candidate(p, *f, request))
                    .collect();
                if let Some(picks) = picks {
                    return Ok((p, sorted(&picks)));
                }
            }
        }
        Err("pool-exhausted")
    }

    fn outcome(&self, key: &ServiceKey) -> Outcome {
        let (_, ips, p) = &self.held[key];
        Ok((ips.clone(), self.pools[*p].name.0.clone()))
    }

    fn assign(&mut self, request: &ServiceRequest) -> Outcome {
        if let Some((_, ips, _)) = self.held.get(&request.key) {
            let ips = ips.clone();
            if let Ok(p) = self.valid(request, &ips) {
                let mut ips = ips;
                if matches!(request.families, FamilyPolicy::PreferDual(_))
                    && request.requested.is_empty()
                    && ips.len() == 1
                {
                    self.held
                        .insert(request.key.clone(), (request.clone(), ips.clone(), p));
                    if let Some(extra) = self.candidate(p, other(Family::of(ips[0])), request) {
                        ips = sorted(&[ips[0], extra]);
                    }
                }
                self.held
                    .insert(request.key.clone(), (request.clone(), ips, p));
                return self.outcome(&request.key);
            }
            self.held.remove(&request.key);
        }
        let (p, ips) = self.choose(request)?;
        self.held
            .insert(request.key.clone(), (request.clone(), ips, p));
        self.outcome(&request.key)
    }

    fn set_pools(&mut self, pools: Vec<Pool>) -> Vec<(ServiceKey, &'static str)> {
        self.pools = pools;
        let mut evicted = Vec::new();
        let held = std::mem::take(&mut self.held);
        for (key, (request, ips, _)) in held {
            match self.locate(&request, &ips) {
                Ok(p) => {
                    self.held.insert(key, (request, ips, p));
                }
                Err(reason) => evicted.push((key, reason)),
            }
        }
        evicted
    }

    fn stats(&self) -> Vec<(String, u128, u128)> {
        (0..self.pools.len())
            .map(|p| {
                let size =
                    self.addresses(p, Family::V4).len() + self.addresses(p, Family::V6).len();
                let in_use: BTreeSet<IpAddr> = self
                    .held
                    .values()
                    .filter(|(_, _, hp)| *hp == p)
                    .flat_map(|(_, ips, _)| ips.iter().copied())
                    .collect();
                (
                    self.pools[p].name.0.clone(),
                    size as u128,
                    in_use.len() as u128,
                )
            })
            .collect()
    }
}

// ---- checks ---------------------------------------------------------------

fn outcome(result: Result<Allocation, AllocError>) -> Outcome {
    result
        .map(|a| (a.addresses, a.pool.0))
        .map_err(|e| e.reason())
}

fn holdings(allocator: &Allocator) -> Vec<(ServiceKey, Vec<IpAddr>, String)> {
    allocator
        .allocations()
        .map(|(k, a)| (k.clone(), a.addresses.clone(), a.pool.0.clone()))
        .collect()
}

fn stats(allocator: &Allocator) -> Vec<(String, u128, u128)> {
    allocator
        .stats()
        .into_iter()
        .inspect(|s| assert_eq!(s.available, s.size - s.in_use, "available = size - in use"))
        .map(|s| (s.pool.0, s.size, s.in_use))
        .collect()
}

/// No address is held by two Services that may not share it, judged from
/// the requests they were last assigned with.
fn no_forbidden_sharing(allocator: &Allocator, requests: &BTreeMap<ServiceKey, ServiceRequest>) {
    let mut by_ip: BTreeMap<IpAddr, Vec<&ServiceKey>> = BTreeMap::new();
    for (key, allocation) in allocator.allocations() {
        for ip in &allocation.addresses {
            by_ip.entry(*ip).or_default().push(key);
        }
    }
    for (ip, holders) in by_ip {
        let owners: Vec<&ServiceKey> = allocator.owners(ip).collect();
        assert_eq!(owners, holders, "owners of {ip}");
        for (i, a) in holders.iter().enumerate() {
            for b in &holders[i + 1..] {
                let reason = share_reason(&requests[*a], &requests[*b]);
                assert_eq!(reason, None, "{a} and {b} both hold {ip}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_allocator_agrees_with_a_brute_force_model(
        ops in proptest::collection::vec(op_strategy(), 1..40),
        order in any::<proptest::sample::Index>(),
    ) {
        let configs = configs();
        let mut allocator = Allocator::new(&configs[0]);
        let mut model = Model { pools: configs[0].clone(), held: BTreeMap::new() };
        let mut last: BTreeMap<usize, ServiceRequest> = BTreeMap::new();
        // The request each holder was last assigned with.
        let mut requests: BTreeMap<ServiceKey, ServiceRequest> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Assign(request) => {
                    let n: usize = request.key.name[1..].parse().expect("s<n>");
                    last.insert(n, request.clone());
                    let got = outcome(allocator.assign(&request));
                    prop_assert_eq!(&got, &model.assign(&request), "assign {:?}", request);
                    requests.insert(request.key.clone(), request);
                }
                Op::Reassign(n) => {
                    if let Some(request) = last.get(&n) {
                        let got = outcome(allocator.assign(request));
                        prop_assert_eq!(&got, &model.assign(request), "reassign {:?}", request);
                        requests.insert(request.key.clone(), request.clone());
                    }
                }
                Op::Release(n) => {
                    let key = ServiceKey::new("default", format!("s{n}"));
                    let got = allocator.release(&key).map(|a| a.addresses);
                    let want = model.held.remove(&key).map(|(_, ips, _)| ips);
                    prop_assert_eq!(got, want);
                }
                Op::SetPools(c) => {
                    let got: Vec<(ServiceKey, &str)> = allocator
                        .set_pools(&configs[c])
                        .into_iter()
                        .map(|e| (e.service, e.reason.reason()))
                        .collect();
                    prop_assert_eq!(got, model.set_pools(configs[c].clone()));
                }
                Op::Probe(request) => {
                    let before = (holdings(&allocator), stats(&allocator));
                    let got = outcome(allocator.assign(&request));
                    let want = Model { pools: model.pools.clone(), held: model.held.clone() }.assign(&request);
                    prop_assert_eq!(&got, &want, "probe {:?}", request);
                    allocator.release(&request.key);
                    prop_assert_eq!(before, (holdings(&allocator), stats(&allocator)), "release restores capacity");
                }
            }
            let held: Vec<(ServiceKey, Vec<IpAddr>, String)> = model
                .held
                .iter()
                .map(|(k, (_, ips, p))| (k.clone(), ips.clone(), model.pools[*p].name.0.clone()))
                .collect();
            prop_assert_eq!(holdings(&allocator), held);
            prop_assert_eq!(stats(&allocator), model.stats());
            no_forbidden_sharing(&allocator, &requests);
        }

        // Rebuilding from the Services' statuses, in any order, reproduces
        // the allocation exactly.
        let mut statuses: Vec<(ServiceRequest, Vec<IpAddr>)> = allocator
            .allocations()
            .map(|(k, a)| (requests[k].clone(), a.addresses.clone()))
            .collect();
        if !statuses.is_empty() {
            let shift = order.index(statuses.len());
            statuses.rotate_left(shift);
        }
        let mut rebuilt = Allocator::new(&model.pools);
        for (request, addresses) in &statuses {
            let restored = rebuilt.restore(request, addresses);
            prop_assert!(restored.is_ok(), "restore {:?} {:?}: {:?}", request.key, addresses, restored);
        }
        prop_assert_eq!(holdings(&rebuilt), holdings(&allocator));
        prop_assert_eq!(stats(&rebuilt), stats(&allocator));
        // And the rebuilt allocator answers the next reconcile pass alike.
        for (request, _) in &statuses {
            prop_assert_eq!(rebuilt.assign(request), allocator.assign(request));
        }
    }
}
