//! Why the allocator refused a Service an address. Every variant names the
//! address, pool or Service involved and has a stable short label for metrics
//! and events.

use std::fmt::Write as _;
use std::net::IpAddr;

use ferrolb_config::{Family, FamilyPolicy, PoolName, Port, ServiceKey, SharingKey};

/// Why a Service got no address.
///
/// After any of these from [`Allocator::assign`](super::Allocator::assign) or
/// [`Allocator::restore`](super::Allocator::restore) the Service holds no
/// address (an address it held that its request no longer allows was released
/// first) and no other Service's allocation changed. From
/// [`Allocator::check_held`](super::Allocator::check_held) nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// The named pool has no free address of `family`. Nothing was allocated.
    #[error("pool {pool} has no free {family} address")]
    PoolExhausted {
        /// The pool the Service named.
        pool: PoolName,
        /// The family it has none of.
        family: Family,
    },
    /// Some auto-assign pools offer the families the Service needs, but none
    /// has a free address of each. Nothing was allocated.
    #[error("no auto-assign pool has a free {} address", describe(.families))]
    NoFreeAddress {
        /// The Service's family policy.
        families: FamilyPolicy,
    },
    /// No auto-assign pool offers the families the Service needs at all.
    /// Nothing was allocated.
    #[error("no auto-assign pool offers {} addresses", describe(.families))]
    NoPoolForFamilies {
        /// The Service's family policy.
        families: FamilyPolicy,
    },
    /// The named pool has no range of a family the Service needs. Nothing was
    /// allocated.
    #[error("pool {pool} has no {family} addresses")]
    FamilyNotOffered {
        /// The pool the Service named.
        pool: PoolName,
        /// The family it lacks.
        family: Family,
    },
    /// The address is held by a Service, and one of the two has no sharing
    /// key. Nothing was allocated.
    #[error("{ip} is in use by {owner}; sharing it needs the same allow-shared-ip key on both")]
    AddressInUse {
        /// The contested address.
        ip: IpAddr,
        /// A Service holding it.
        owner: ServiceKey,
    },
    /// The address is held by a Service with a different sharing key. Nothing
    /// was allocated.
    #[error("{ip} is shared under key \"{theirs}\" by {owner}, not under \"{ours}\"")]
    SharingKeyMismatch {
        /// The contested address.
        ip: IpAddr,
        /// This Service's sharing key.
        ours: SharingKey,
        /// The holder's sharing key.
        theirs: SharingKey,
        /// A Service holding it.
        owner: ServiceKey,
    },
    /// The address is shared by a Service that already exposes this port.
    /// Nothing was allocated.
    #[error("{ip} already exposes {port} for {owner}")]
    PortConflict {
        /// The contested address.
        ip: IpAddr,
        /// The port both expose.
        port: Port,
        /// The Service exposing it.
        owner: ServiceKey,
    },
    /// Services sharing an address must both use `externalTrafficPolicy:
    /// Cluster`, or both `Local` with the same pod selector, so that the same
    /// nodes serve them. Nothing was allocated.
    #[error(
        "{ip} is shared by {owner}, which has a different traffic policy or (with Local) pod selector"
    )]
    SelectorMismatch {
        /// The contested address.
        ip: IpAddr,
        /// A Service holding it.
        owner: ServiceKey,
    },
    /// The address lies in no pool. Nothing was allocated.
    #[error("{ip} is in no address pool")]
    NotInAnyPool {
        /// The address.
        ip: IpAddr,
    },
    /// The Service names a pool that does not exist. Nothing was allocated.
    #[error("there is no address pool named {pool:?}")]
    UnknownPool {
        /// The name as the Service wrote it.
        pool: String,
    },
    /// The pool's `service-allocation` does not admit the Service (its
    /// namespace or labels), whether it names the pool, requests or holds
    /// an address of it. Nothing was allocated.
    #[error(
        "pool {pool} does not admit {service}: its service-allocation names other namespaces or Services"
    )]
    PoolNotAllowed {
        /// The Service.
        service: ServiceKey,
        /// The pool.
        pool: PoolName,
    },
    /// The address lies in another pool than the one the Service names.
    /// Nothing was allocated.
    #[error("{ip} belongs to pool {actual_pool}, not to the requested pool {requested_pool}")]
    WrongPool {
        /// The address.
        ip: IpAddr,
        /// The pool the Service names.
        requested_pool: PoolName,
        /// The pool holding the address.
        actual_pool: PoolName,
    },
    /// The address ends in `.0` or `.255` and its pool avoids such addresses.
    /// Nothing was allocated.
    #[error("{ip} ends in .0 or .255, which pool {pool} avoids (avoid-buggy-ips)")]
    BuggyAddress {
        /// The address.
        ip: IpAddr,
        /// Its pool.
        pool: PoolName,
    },
    /// The addresses lie in two different pools; a Service's addresses come
    /// from one pool. Nothing was allocated.
    #[error("{first} (pool {first_pool}) and {second} (pool {second_pool}) are in different pools")]
    MixedPools {
        /// One address.
        first: IpAddr,
        /// Its pool.
        first_pool: PoolName,
        /// The other address.
        second: IpAddr,
        /// Its pool.
        second_pool: PoolName,
    },
    /// The addresses do not fit the Service's IP families: at most one per
    /// family, exactly one of the single family, one of each for
    /// RequireDualStack. Nothing was allocated.
    #[error("addresses [{}] do not fit the Service's IP families ({})", list(.addresses), describe(.families))]
    FamilyMismatch {
        /// The addresses requested or restored.
        addresses: Vec<IpAddr>,
        /// The Service's family policy.
        families: FamilyPolicy,
    },
    /// The Service holds addresses other than the ones it now requests.
    /// Reported by [`check_held`](super::Allocator::check_held) and
    /// [`restore`](super::Allocator::restore); nothing was allocated.
    #[error("the Service holds [{}] but requests [{}]", list(.held), list(.requested))]
    RequestChanged {
        /// What the Service holds (or its status says).
        held: Vec<IpAddr>,
        /// What it requests.
        requested: Vec<IpAddr>,
    },
}

impl AllocError {
    /// A stable short label for metrics and event reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            AllocError::PoolExhausted { .. } | AllocError::NoFreeAddress { .. } => "pool-exhausted",
            AllocError::NoPoolForFamilies { .. } => "no-pool-for-families",
            AllocError::FamilyNotOffered { .. } => "family-not-offered",
            AllocError::AddressInUse { .. } => "address-in-use",
            AllocError::SharingKeyMismatch { .. } => "sharing-conflict",
            AllocError::PortConflict { .. } => "port-conflict",
            AllocError::SelectorMismatch { .. } => "selector-mismatch",
            AllocError::NotInAnyPool { .. } => "not-in-any-pool",
            AllocError::UnknownPool { .. } => "unknown-pool",
            AllocError::WrongPool { .. } => "wrong-pool",
            AllocError::PoolNotAllowed { .. } => "pool-not-allowed",
            AllocError::BuggyAddress { .. } => "buggy-ip",
            AllocError::MixedPools { .. } => "mixed-pools",
            AllocError::FamilyMismatch { .. } => "family-mismatch",
            AllocError::RequestChanged { .. } => "request-changed",
        }
    }
}

/// A family policy in words: "IPv4", "IPv4 and IPv6", "IPv6 or IPv4".
fn describe(families: &FamilyPolicy) -> String {
    let other = |f: &Family| match f {
        Family::V4 => Family::V6,
        Family::V6 => Family::V4,
    };
    match families {
        FamilyPolicy::Single(f) => f.to_string(),
        FamilyPolicy::RequireDual(_) => "IPv4 and IPv6".to_string(),
        FamilyPolicy::PreferDual(p) => format!("{p} or {}", other(p)),
    }
}

fn list(addresses: &[IpAddr]) -> String {
    let mut out = String::new();
    for (i, ip) in addresses.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(out, "{sep}{ip}");
    }
    out
}
