//! `ferrolb-config` owns what the operator asked for: the address pools of the
//! ferrolb ConfigMap and what each Service requests. It is pure: no client, no
//! I/O. Start with [`Config`] and [`Pool`].

pub mod pool;
pub mod range;
pub mod request;

pub use pool::{LabelOperator, LabelRequirement, NodeSelector, Pool, PoolName};
pub use range::{AddressRange, Family};
pub use request::{
    FamilyPolicy, Port, Protocol, ServiceKey, ServiceRequest, SharingKey, TrafficPolicy,
};

/// A validated configuration: the pools, in the order the operator wrote them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// The pools, in config order (auto-assignment tries them in this order).
    pub pools: Vec<Pool>,
}

impl Config {
    /// The pool named `name`.
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name.0 == name)
    }

    /// The pool holding `ip`, if any.
    pub fn pool_of(&self, ip: std::net::IpAddr) -> Option<&Pool> {
        self.pools.iter().find(|p| p.contains(ip))
    }
}
