//! The address allocator: which Service holds which external address. It owns
//! the pools' free space, the sharing rules and the per-pool counters; it is
//! pure (no Kubernetes types, no async, no clock, no logging). Start with
//! [`Allocator::assign`]; the controller rebuilds it at start-up with
//! [`Allocator::restore`].
//!
//! Promises: an address is never held by two Services that may not share it,
//! and the state changes only through `assign`, `restore`, `release` and
//! `set_pools`.
//!
//! # Cost
//!
//! With `n` allocations, `P` pools and `R` ranges in the config:
//! memory is O(n + R), whatever the pools' sizes (a whole IPv6 /64 costs as
//! much as a /30). Each range keeps its free addresses as maximal free spans,
//! so finding the lowest free address is O(log n) even in a nearly full /16,
//! and with avoid-buggy-ips a second index of the spans holding a usable
//! address keeps it O(log n) (spans made only of `.255`/`.0` are never
//! walked). Auto-assignment tries pools in [`pools_for`]'s order (O(P log P)
//! to find) and their ranges in config order: O(P·R·log n). Finding a requested address's pool is O(R). Joining a shared
//! address scans the addresses carrying the same sharing key, checking each
//! holder's ports: O(m·h·p) for m such addresses, h holders, p ports.
//! `release` is O(log n) per address; `set_pools` rebuilds: O(n log n + R).

mod error;
mod spans;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ferrolb_config::range::{from_u128, to_u128};
use ferrolb_config::{
    AddressRange, Family, FamilyPolicy, Pool, PoolName, ServiceKey, ServiceRequest, SharingKey,
    TrafficPolicy, pools_for,
};

pub use error::AllocError;
use spans::{FreeSpans, buggy_count};

/// What a Service holds: its addresses (IPv4 first) and the pool they came
/// from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// One address, or one per family; IPv4 first.
    pub addresses: Vec<IpAddr>,
    /// The pool holding every one of them.
    pub pool: PoolName,
}

/// A Service whose addresses a config change made invalid: the allocator has
/// released them, and the caller should assign the Service again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evicted {
    /// The Service.
    pub service: ServiceKey,
    /// What it held before the change.
    pub previous: Allocation,
    /// Why it may no longer hold it.
    pub reason: AllocError,
}

/// Address counts of one pool, or of one family of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddressCounts {
    /// Addresses that may be handed out (`.0`/`.255` excluded when the pool
    /// avoids them). Saturates at `u128::MAX`.
    pub size: u128,
    /// Distinct addresses held by at least one Service.
    pub in_use: u128,
    /// `size - in_use`.
    pub available: u128,
}

/// The counters of one pool, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStats {
    /// The pool.
    pub pool: PoolName,
    /// Addresses that may be handed out, both families.
    pub size: u128,
    /// Distinct addresses in use, both families.
    pub in_use: u128,
    /// Addresses still free, both families.
    pub available: u128,
    /// The IPv4 part.
    pub ipv4: AddressCounts,
    /// The IPv6 part.
    pub ipv6: AddressCounts,
    /// Services holding addresses of the pool.
    pub services: usize,
}

/// The allocation state of every Service, over the pools of the current
/// config.
#[derive(Debug, Clone, Default)]
pub struct Allocator {
    /// The pools as configured, for [`pools_for`]: which a Service may use.
    config: Vec<Pool>,
    /// In config order, beside `config`.
    pools: Vec<PoolState>,
    services: BTreeMap<ServiceKey, Holding>,
    /// Every address held by at least one Service.
    addresses: BTreeMap<IpAddr, Slot>,
    /// For each sharing key, the addresses held under it (with how many of
    /// their holders carry the key), so auto-assignment can join them.
    shared: BTreeMap<SharingKey, BTreeMap<IpAddr, usize>>,
}

#[derive(Debug, Clone)]
struct PoolState {
    name: PoolName,
    auto_assign: bool,
    avoid_buggy_ips: bool,
    ranges: Vec<RangeState>,
    /// Distinct addresses in use, IPv4 then IPv6.
    in_use: [u128; 2],
    services: usize,
}

#[derive(Debug, Clone)]
struct RangeState {
    range: AddressRange,
    free: FreeSpans,
}

#[derive(Debug, Clone)]
struct Slot {
    pool: usize,
    range: usize,
    holders: BTreeSet<ServiceKey>,
}

#[derive(Debug, Clone)]
struct Holding {
    /// The request the allocation was last checked against: sharing checks
    /// compare against it.
    request: ServiceRequest,
    allocation: Allocation,
    pool: usize,
}

/// One address picked for a Service: the address, and its range in the pool.
type Pick = (IpAddr, usize);

fn family_index(family: Family) -> usize {
    match family {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

fn other(family: Family) -> Family {
    match family {
        Family::V4 => Family::V6,
        Family::V6 => Family::V4,
    }
}

/// The smallest and largest address of a family, as `IpAddr`s: bounds for
/// range queries over maps keyed by address.
fn family_bounds(family: Family) -> (IpAddr, IpAddr) {
    match family {
        Family::V4 => (
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::BROADCAST),
        ),
        Family::V6 => (
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::from(u128::MAX)),
        ),
    }
}

/// Which pods must serve a Service: sharing Services must agree on it.
/// `Cluster` Services agree with each other; `Local` ones need equal
/// selectors (MetalLB's "backend key").
fn backend(request: &ServiceRequest) -> Option<&BTreeMap<String, String>> {
    match request.traffic_policy {
        TrafficPolicy::Cluster => None,
        TrafficPolicy::Local => Some(&request.selector),
    }
}

/// Whether `ours` may hold `ip` alongside `theirs`, which holds it.
fn may_share(ours: &ServiceRequest, theirs: &ServiceRequest, ip: IpAddr) -> Result<(), AllocError> {
    let owner = theirs.key.clone();
    match (&ours.sharing, &theirs.sharing) {
        (Some(a), Some(b)) if a == b => {}
        (Some(a), Some(b)) => {
            return Err(AllocError::SharingKeyMismatch {
                ip,
                ours: a.clone(),
                theirs: b.clone(),
                owner,
            });
        }
        _ => return Err(AllocError::AddressInUse { ip, owner }),
    }
    if backend(ours) != backend(theirs) {
        return Err(AllocError::SelectorMismatch { ip, owner });
    }
    match ours.ports.iter().find(|p| theirs.ports.contains(p)) {
        Some(port) => Err(AllocError::PortConflict {
            ip,
            port: *port,
            owner,
        }),
        None => Ok(()),
    }
}

/// Whether `addresses` (sorted) fit the family policy: at most one per
/// family, the single family, or both for RequireDual.
fn check_families(families: &FamilyPolicy, addresses: &[IpAddr]) -> Result<(), AllocError> {
    let of: Vec<Family> = addresses.iter().map(|ip| Family::of(*ip)).collect();
    let fits = match (families, of.as_slice()) {
        (FamilyPolicy::Single(f), [a]) => a == f,
        (FamilyPolicy::PreferDual(_), [_]) => true,
        (FamilyPolicy::PreferDual(_) | FamilyPolicy::RequireDual(_), [a, b]) => a != b,
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        Err(AllocError::FamilyMismatch {
            addresses: addresses.to_vec(),
            families: families.clone(),
        })
    }
}

fn sorted(addresses: &[IpAddr]) -> Vec<IpAddr> {
    let mut out = addresses.to_vec();
    // IpAddr orders every IPv4 address before every IPv6 one.
    out.sort();
    out
}

impl PoolState {
    fn new(pool: &Pool) -> PoolState {
        PoolState {
            name: pool.name.clone(),
            auto_assign: pool.auto_assign,
            avoid_buggy_ips: pool.avoid_buggy_ips,
            ranges: pool
                .ranges
                .iter()
                .map(|range| RangeState {
                    range: *range,
                    free: FreeSpans::new(
                        to_u128(range.first()),
                        to_u128(range.last()),
                        range.family(),
                        pool.avoid_buggy_ips,
                    ),
                })
                .collect(),
            in_use: [0, 0],
            services: 0,
        }
    }

    fn offers(&self, family: Family) -> bool {
        self.ranges.iter().any(|r| r.range.family() == family)
    }

    /// The lowest free address of `family`, ranges in config order.
    fn lowest_free(&self, family: Family) -> Option<Pick> {
        self.ranges.iter().enumerate().find_map(|(i, r)| {
            if r.range.family() != family {
                return None;
            }
            r.free.lowest().map(|a| (from_u128(a, family), i))
        })
    }

    fn size(&self, family: Family) -> u128 {
        self.ranges
            .iter()
            .filter(|r| r.range.family() == family)
            .map(|r| {
                let (first, last) = (to_u128(r.range.first()), to_u128(r.range.last()));
                let buggy = if self.avoid_buggy_ips && family == Family::V4 {
                    buggy_count(first, last)
                } else {
                    0
                };
                r.range.size().saturating_sub(buggy)
            })
            .fold(0u128, u128::saturating_add)
    }
}

impl Allocator {
    /// An allocator over `pools` (in config order) holding nothing.
    pub fn new(pools: &[Pool]) -> Allocator {
        Allocator {
            config: pools.to_vec(),
            pools: pools.iter().map(PoolState::new).collect(),
            ..Allocator::default()
        }
    }

    /// Gives the Service its addresses, or says why it gets none.
    ///
    /// If the Service already holds addresses that its request still allows,
    /// it keeps them (and with PreferDualStack gains the missing family if
    /// its pool now has one free): calling `assign` again is a no-op. If the
    /// request no longer allows them (see [`check_held`](Self::check_held)),
    /// they are released first. Then:
    ///
    /// The pools a Service may use at all are [`pools_for`]'s: a pool whose
    /// `service-allocation` does not admit the Service is never used for it,
    /// however the Service asks. Among those:
    ///
    /// * requested addresses are honoured exactly, from any pool (auto-assign
    ///   or not), if they are free or may be shared; otherwise the Service gets
    ///   nothing, never a different address;
    /// * else from the named pool, whether it auto-assigns or not;
    /// * else from the first auto-assign pool, in [`pools_for`]'s order
    ///   (priority, then config order), with a free address of each family
    ///   the Service needs (PreferDualStack: the first with both, else the
    ///   first with its primary family, else the first with the other).
    ///
    /// A Service holding addresses from a pool that no longer admits it (its
    /// namespace, labels or the pool's `service-allocation` changed) is
    /// treated as one holding addresses of a removed pool: they are released
    /// and it is assigned anew, so its address changes.
    ///
    /// Within a pool, a Service with a sharing key first joins the lowest
    /// address already shared under that key that it may share; otherwise it
    /// takes the lowest free address, ranges in config order, skipping `.0`
    /// and `.255` when the pool avoids buggy IPs.
    pub fn assign(&mut self, request: &ServiceRequest) -> Result<Allocation, AllocError> {
        if let Some(holding) = self.services.get(&request.key) {
            if self
                .check_holding(request, &holding.allocation.addresses)
                .is_ok()
            {
                self.update_request(request);
                self.add_missing_family(request);
                return Ok(self.services[&request.key].allocation.clone());
            }
            self.release(&request.key);
        }
        let (pool, picks) = self.choose(request)?;
        Ok(self.hold(request.clone(), pool, picks))
    }

    /// Records addresses a Service already had before the controller started
    /// (from its status), if its request still allows them: in a pool, in
    /// the pool it names, the ones it requests, and shareable with what is
    /// already restored. Replaces any allocation the Service had.
    pub fn restore(
        &mut self,
        request: &ServiceRequest,
        addresses: &[IpAddr],
    ) -> Result<Allocation, AllocError> {
        self.release(&request.key);
        let addresses = sorted(addresses);
        let (pool, ranges) = self.check_holding(request, &addresses)?;
        let picks = addresses.into_iter().zip(ranges).collect();
        Ok(self.hold(request.clone(), pool, picks))
    }

    /// Why [`assign`](Self::assign) would release what the Service holds, if
    /// it would: the Service now requests other addresses, names another pool,
    /// wants other families, or its sharing key, ports or selector no longer
    /// let it share its address. `Ok` if it holds nothing. Changes nothing.
    pub fn check_held(&self, request: &ServiceRequest) -> Result<(), AllocError> {
        match self.services.get(&request.key) {
            Some(holding) => self
                .check_holding(request, &holding.allocation.addresses)
                .map(|_| ()),
            None => Ok(()),
        }
    }

    /// Frees whatever the Service holds and returns it. An address shared
    /// with other Services stays theirs.
    pub fn release(&mut self, key: &ServiceKey) -> Option<Allocation> {
        let holding = self.services.remove(key)?;
        for ip in &holding.allocation.addresses {
            self.unhold_address(key, holding.request.sharing.as_ref(), *ip);
        }
        self.pools[holding.pool].services -= 1;
        Some(holding.allocation)
    }

    /// Replaces the pools after a config change. Every allocation still
    /// inside one pool (the one the Service names, if it names one, one that
    /// admits the Service, and avoiding `.0`/`.255` if that pool does) is kept, under its pool's
    /// possibly new name; the others are released and returned, in Service
    /// order, so the caller can assign those Services again.
    pub fn set_pools(&mut self, pools: &[Pool]) -> Vec<Evicted> {
        let services = std::mem::take(&mut self.services);
        *self = Allocator::new(pools);
        let mut evicted = Vec::new();
        for (service, holding) in services {
            let addresses = holding.allocation.addresses;
            match self.locate(&holding.request, &addresses) {
                Ok((pool, ranges)) => {
                    let picks = addresses.into_iter().zip(ranges).collect();
                    self.hold(holding.request, pool, picks);
                }
                Err(reason) => evicted.push(Evicted {
                    service,
                    previous: Allocation {
                        addresses,
                        pool: holding.allocation.pool,
                    },
                    reason,
                }),
            }
        }
        evicted
    }

    /// What the Service holds, if anything.
    pub fn allocation(&self, key: &ServiceKey) -> Option<&Allocation> {
        self.services.get(key).map(|h| &h.allocation)
    }

    /// Every Service holding addresses, in Service order.
    pub fn allocations(&self) -> impl Iterator<Item = (&ServiceKey, &Allocation)> {
        self.services.iter().map(|(k, h)| (k, &h.allocation))
    }

    /// The Services holding `ip`, in Service order.
    pub fn owners(&self, ip: IpAddr) -> impl Iterator<Item = &ServiceKey> {
        self.addresses.get(&ip).into_iter().flat_map(|s| &s.holders)
    }

    /// The counters of every pool, in config order.
    pub fn stats(&self) -> Vec<PoolStats> {
        self.pools
            .iter()
            .map(|pool| {
                let counts = |family: Family| {
                    let size = pool.size(family);
                    let in_use = pool.in_use[family_index(family)];
                    AddressCounts {
                        size,
                        in_use,
                        available: size.saturating_sub(in_use),
                    }
                };
                let (ipv4, ipv6) = (counts(Family::V4), counts(Family::V6));
                PoolStats {
                    pool: pool.name.clone(),
                    size: ipv4.size.saturating_add(ipv6.size),
                    in_use: ipv4.in_use + ipv6.in_use,
                    available: ipv4.available.saturating_add(ipv6.available),
                    ipv4,
                    ipv6,
                    services: pool.services,
                }
            })
            .collect()
    }

    fn pool_index(&self, name: &str) -> Option<usize> {
        self.pools.iter().position(|p| p.name.0 == name)
    }

    /// The pool and range holding `ip`: O(R).
    fn pool_of(&self, ip: IpAddr) -> Option<(usize, usize)> {
        self.pools.iter().enumerate().find_map(|(p, pool)| {
            let r = pool.ranges.iter().position(|r| r.range.contains(ip))?;
            Some((p, r))
        })
    }

    /// Where `addresses` live, if a Service with `request` may hold them as
    /// far as the pools go: each in a pool, all in one, the named one if any,
    /// one that admits the Service, and not a `.0`/`.255` its pool avoids.
    fn locate(
        &self,
        request: &ServiceRequest,
        addresses: &[IpAddr],
    ) -> Result<(usize, Vec<usize>), AllocError> {
        let named = match &request.pool {
            Some(name) => Some(
                self.pool_index(name)
                    .ok_or_else(|| AllocError::UnknownPool { pool: name.clone() })?,
            ),
            None => None,
        };
        let admitted = pools_for(&self.config, &request.claimant());
        let mut first: Option<(usize, IpAddr)> = None;
        let mut ranges = Vec::with_capacity(addresses.len());
        for &ip in addresses {
            let (p, r) = self.pool_of(ip).ok_or(AllocError::NotInAnyPool { ip })?;
            let pool = &self.pools[p];
            if let Some(n) = named
                && n != p
            {
                return Err(AllocError::WrongPool {
                    ip,
                    requested_pool: self.pools[n].name.clone(),
                    actual_pool: pool.name.clone(),
                });
            }
            if !admitted.contains(&p) {
                return Err(AllocError::PoolNotAllowed {
                    service: request.key.clone(),
                    pool: pool.name.clone(),
                });
            }
            if !pool.ranges[r].free.allocatable(to_u128(ip)) {
                return Err(AllocError::BuggyAddress {
                    ip,
                    pool: pool.name.clone(),
                });
            }
            match first {
                Some((fp, fip)) if fp != p => {
                    return Err(AllocError::MixedPools {
                        first: fip,
                        first_pool: self.pools[fp].name.clone(),
                        second: ip,
                        second_pool: pool.name.clone(),
                    });
                }
                Some(_) => {}
                None => first = Some((p, ip)),
            }
            ranges.push(r);
        }
        match first {
            Some((p, _)) => Ok((p, ranges)),
            None => Err(AllocError::FamilyMismatch {
                addresses: Vec::new(),
                families: request.families.clone(),
            }),
        }
    }

    /// Whether `ip` may be held by `request`'s Service next to its current
    /// holders.
    fn check_sharing(&self, request: &ServiceRequest, ip: IpAddr) -> Result<(), AllocError> {
        let Some(slot) = self.addresses.get(&ip) else {
            return Ok(());
        };
        slot.holders
            .iter()
            .filter(|owner| **owner != request.key)
            .try_for_each(|owner| may_share(request, &self.services[owner].request, ip))
    }

    /// Whether the Service may hold `addresses` (sorted) under `request`; if
    /// so, their pool and ranges.
    fn check_holding(
        &self,
        request: &ServiceRequest,
        addresses: &[IpAddr],
    ) -> Result<(usize, Vec<usize>), AllocError> {
        check_families(&request.families, addresses)?;
        let located = self.locate(request, addresses)?;
        if !request.requested.is_empty() {
            let requested = sorted(&request.requested);
            if requested != addresses {
                return Err(AllocError::RequestChanged {
                    held: addresses.to_vec(),
                    requested,
                });
            }
        }
        for ip in addresses {
            self.check_sharing(request, *ip)?;
        }
        Ok(located)
    }

    /// The pool and addresses a Service holding nothing gets.
    fn choose(&self, request: &ServiceRequest) -> Result<(usize, Vec<Pick>), AllocError> {
        let named = match &request.pool {
            Some(name) => Some(
                self.pool_index(name)
                    .ok_or_else(|| AllocError::UnknownPool { pool: name.clone() })?,
            ),
            None => None,
        };
        if !request.requested.is_empty() {
            let addresses = sorted(&request.requested);
            check_families(&request.families, &addresses)?;
            let (pool, ranges) = self.locate(request, &addresses)?;
            for ip in &addresses {
                self.check_sharing(request, *ip)?;
            }
            return Ok((pool, addresses.into_iter().zip(ranges).collect()));
        }
        let admitted = pools_for(&self.config, &request.claimant());
        match named {
            Some(pool) if !admitted.contains(&pool) => Err(AllocError::PoolNotAllowed {
                service: request.key.clone(),
                pool: self.pools[pool].name.clone(),
            }),
            Some(pool) => Ok((pool, self.pick_from_named(pool, request)?)),
            None => self.pick_auto(request, &admitted),
        }
    }

    /// A free or shareable address of `family` in `pool` for `request`.
    fn candidate(&self, pool: usize, family: Family, request: &ServiceRequest) -> Option<Pick> {
        if let Some(shared) = request.sharing.as_ref().and_then(|k| self.shared.get(k)) {
            let (lo, hi) = family_bounds(family);
            for ip in shared.range(lo..=hi).map(|(ip, _)| *ip) {
                let slot = &self.addresses[&ip];
                if slot.pool == pool && self.check_sharing(request, ip).is_ok() {
                    return Some((ip, slot.range));
                }
            }
        }
        self.pools[pool].lowest_free(family)
    }

    fn pick_from_named(
        &self,
        pool: usize,
        request: &ServiceRequest,
    ) -> Result<Vec<Pick>, AllocError> {
        let state = &self.pools[pool];
        let want = |family: Family| {
            if !state.offers(family) {
                return Err(AllocError::FamilyNotOffered {
                    pool: state.name.clone(),
                    family,
                });
            }
            self.candidate(pool, family, request)
                .ok_or_else(|| AllocError::PoolExhausted {
                    pool: state.name.clone(),
                    family,
                })
        };
        match request.families {
            FamilyPolicy::Single(f) => Ok(vec![want(f)?]),
            FamilyPolicy::RequireDual(_) => Ok(vec![want(Family::V4)?, want(Family::V6)?]),
            FamilyPolicy::PreferDual(primary) => {
                match (want(primary), want(other(primary))) {
                    (Ok(a), Ok(b)) => {
                        let mut both = vec![a, b];
                        both.sort();
                        Ok(both)
                    }
                    (Ok(a), Err(_)) | (Err(_), Ok(a)) => Ok(vec![a]),
                    // Name the first family the pool offers at all.
                    (Err(AllocError::FamilyNotOffered { .. }), Err(e)) | (Err(e), Err(_)) => Err(e),
                }
            }
        }
    }

    /// From the auto-assign pools among `admitted` (the Service's
    /// [`pools_for`], in its order).
    fn pick_auto(
        &self,
        request: &ServiceRequest,
        admitted: &[usize],
    ) -> Result<(usize, Vec<Pick>), AllocError> {
        let autos: Vec<usize> = admitted
            .iter()
            .copied()
            .filter(|p| self.pools[*p].auto_assign)
            .collect();
        let needed: &[&[Family]] = match request.families {
            FamilyPolicy::Single(Family::V4) => &[&[Family::V4]],
            FamilyPolicy::Single(Family::V6) => &[&[Family::V6]],
            FamilyPolicy::RequireDual(_) => &[&[Family::V4, Family::V6]],
            FamilyPolicy::PreferDual(Family::V4) => {
                &[&[Family::V4, Family::V6], &[Family::V4], &[Family::V6]]
            }
            FamilyPolicy::PreferDual(Family::V6) => {
                &[&[Family::V4, Family::V6], &[Family::V6], &[Family::V4]]
            }
        };
        let offered =
            |p: usize, families: &[Family]| families.iter().all(|f| self.pools[p].offers(*f));
        if !needed
            .iter()
            .any(|families| autos.iter().any(|p| offered(*p, families)))
        {
            return Err(AllocError::NoPoolForFamilies {
                families: request.families.clone(),
            });
        }
        for families in needed {
            for &p in &autos {
                let picks: Option<Vec<Pick>> = families
                    .iter()
                    .map(|f| self.candidate(p, *f, request))
                    .collect();
                if let Some(picks) = picks {
                    return Ok((p, picks));
                }
            }
        }
        Err(AllocError::NoFreeAddress {
            families: request.families.clone(),
        })
    }

    /// PreferDualStack without requested addresses: add the missing family
    /// from the Service's pool if it now has one.
    fn add_missing_family(&mut self, request: &ServiceRequest) {
        if !matches!(request.families, FamilyPolicy::PreferDual(_)) || !request.requested.is_empty()
        {
            return;
        }
        let holding = &self.services[&request.key];
        let [held] = holding.allocation.addresses[..] else {
            return;
        };
        let pool = holding.pool;
        let Some((ip, range)) = self.candidate(pool, other(Family::of(held)), request) else {
            return;
        };
        self.hold_address(&request.key, request.sharing.as_ref(), ip, pool, range);
        if let Some(holding) = self.services.get_mut(&request.key) {
            holding.allocation.addresses.push(ip);
            holding.allocation.addresses.sort();
        }
    }

    /// Stores a still-valid Service's latest request, moving its addresses
    /// to its new sharing key if that changed.
    fn update_request(&mut self, request: &ServiceRequest) {
        let Some(holding) = self.services.get_mut(&request.key) else {
            return;
        };
        let old = std::mem::replace(&mut holding.request, request.clone());
        if old.sharing != request.sharing {
            let addresses = holding.allocation.addresses.clone();
            for ip in addresses {
                self.unindex(old.sharing.as_ref(), ip);
                self.index(request.sharing.as_ref(), ip);
            }
        }
    }

    fn hold(&mut self, request: ServiceRequest, pool: usize, picks: Vec<Pick>) -> Allocation {
        let mut addresses = Vec::with_capacity(picks.len());
        for (ip, range) in picks {
            self.hold_address(&request.key, request.sharing.as_ref(), ip, pool, range);
            addresses.push(ip);
        }
        addresses.sort();
        let allocation = Allocation {
            addresses,
            pool: self.pools[pool].name.clone(),
        };
        self.pools[pool].services += 1;
        self.services.insert(
            request.key.clone(),
            Holding {
                request,
                allocation: allocation.clone(),
                pool,
            },
        );
        allocation
    }

    fn hold_address(
        &mut self,
        key: &ServiceKey,
        sharing: Option<&SharingKey>,
        ip: IpAddr,
        pool: usize,
        range: usize,
    ) {
        let slot = self.addresses.entry(ip).or_insert_with(|| {
            let state = &mut self.pools[pool];
            state.ranges[range].free.take(to_u128(ip));
            state.in_use[family_index(Family::of(ip))] += 1;
            Slot {
                pool,
                range,
                holders: BTreeSet::new(),
            }
        });
        slot.holders.insert(key.clone());
        self.index(sharing, ip);
    }

    fn unhold_address(&mut self, key: &ServiceKey, sharing: Option<&SharingKey>, ip: IpAddr) {
        self.unindex(sharing, ip);
        let Some(slot) = self.addresses.get_mut(&ip) else {
            return;
        };
        slot.holders.remove(key);
        if slot.holders.is_empty() {
            let (pool, range) = (slot.pool, slot.range);
            self.addresses.remove(&ip);
            let state = &mut self.pools[pool];
            state.ranges[range].free.put(to_u128(ip));
            state.in_use[family_index(Family::of(ip))] -= 1;
        }
    }

    fn index(&mut self, sharing: Option<&SharingKey>, ip: IpAddr) {
        if let Some(key) = sharing {
            *self
                .shared
                .entry(key.clone())
                .or_default()
                .entry(ip)
                .or_default() += 1;
        }
    }

    fn unindex(&mut self, sharing: Option<&SharingKey>, ip: IpAddr) {
        let Some(key) = sharing else { return };
        let Some(ips) = self.shared.get_mut(key) else {
            return;
        };
        if let Some(count) = ips.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                ips.remove(&ip);
            }
        }
        if ips.is_empty() {
            self.shared.remove(key);
        }
    }
}
