//! `ferrolb-config` owns what the operator asked for: the address pools of the
//! ferrolb ConfigMap and what each Service requests. It is pure: no client, no
//! I/O. Start with [`Config::from_yaml`], [`Pool`] and [`request::read`].
//!
//! Promises: a [`Config`] only exists validated (no two ranges overlap, every
//! pool is named uniquely and has addresses); nothing here enumerates a
//! range, so a pool may hold whole IPv6 /64s; every refusal names the field
//! at fault ([`ConfigError`]) or the Service and annotation ([`RequestError`]).

pub mod budget;
pub mod check;
pub mod choice;
pub mod metallb;
pub mod pool;
pub mod range;
mod raw;
pub mod request;
pub mod special;
pub mod validate;

use std::collections::BTreeMap;

pub use check::{CheckReport, check};
pub use choice::{Claimant, pools_for};
pub use pool::{
    LabelOperator, LabelRequirement, NodeSelector, Pool, PoolName, ServiceAllocation, is_buggy,
};
pub use range::{AddressError, AddressRange, Family, ParsedRange};
pub use request::{
    FamilyPolicy, NotServed, Origin, Port, Protocol, RequestError, RequestProblem, Served,
    ServiceKey, ServiceRequest, SharingKey, TrafficPolicy,
};
pub use special::{SPECIAL_RANGES, SpecialPurpose, SpecialRange};
pub use validate::{
    CONFIG_KEY, Concern, ConfigError, ConfigErrors, ConfigPath, ConfigWarning, Reason,
    TextPosition, Validated,
};

/// The ConfigMap ferrolb reads its pools from, unless told otherwise.
pub const DEFAULT_CONFIGMAP_NAME: &str = "ferrolb-config";

/// The ConfigMap in which the controller keeps the last config it accepted
/// from ConfigMap `name`: a controller or speaker that starts while `name`
/// holds an invalid config serves this one instead of nothing.
pub fn last_good_configmap(name: &str) -> String {
    format!("{name}-last-good")
}

/// The namespace of that ConfigMap, unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "ferrolb-system";

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

    /// Reads and validates one config document: the YAML under the
    /// ConfigMap's `config` key, in MetalLB's legacy layer-2 format. All
    /// errors are reported, not only the first, except that a YAML or shape
    /// error (with its line and column) stops reading.
    pub fn from_yaml(text: &str) -> Result<Validated, ConfigErrors> {
        validate::from_yaml(text)
    }

    /// Reads and validates the config of a ConfigMap given its `data`; YAML
    /// errors say `data.config line L column C`, counted within that string.
    pub fn from_configmap_data(data: &BTreeMap<String, String>) -> Result<Validated, ConfigErrors> {
        validate::from_configmap_data(data)
    }

    /// The config as a YAML document that [`Config::from_yaml`] reads back
    /// into the same config: what to put under the ConfigMap's `config` key.
    pub fn to_yaml(&self) -> String {
        raw::render(self)
    }
}
