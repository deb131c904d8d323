//! The ConfigMap's YAML exactly as written: MetalLB's legacy (v0.12) format,
//! field for field, plus ferrolb's `node-selectors`, `interfaces` and
//! `service-allocation` per pool.
//! No meaning is given here; `validate` turns these into a [`crate::Config`].
//! BGP sections are read as opaque values so that they can be refused by name.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_yaml::Value;

/// The whole document under the ConfigMap's `config` key.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "a mapping with address-pools"
)]
pub(crate) struct RawConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) address_pools: Option<Vec<RawPool>>,
    /// BGP only: refused.
    #[serde(default, skip_serializing)]
    pub(crate) peers: Option<Value>,
    /// BGP only: refused.
    #[serde(default, skip_serializing)]
    pub(crate) bgp_communities: Option<Value>,
    /// BGP (FRR) only: refused.
    #[serde(default, skip_serializing)]
    pub(crate) bfd_profiles: Option<Value>,
}

/// One `address-pools` entry.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "a pool: a mapping with name, protocol and addresses"
)]
pub(crate) struct RawPool {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) addresses: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "yaml11_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) auto_assign: Option<bool>,
    #[serde(
        default,
        deserialize_with = "yaml11_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) avoid_buggy_ips: Option<bool>,
    /// BGP only: refused.
    #[serde(default, skip_serializing)]
    pub(crate) bgp_advertisements: Option<Value>,
    /// ferrolb's extension: which nodes may announce the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) node_selectors: Option<Vec<RawNodeSelector>>,
    /// ferrolb's extension: which interfaces the pool is announced on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) interfaces: Option<Vec<String>>,
    /// ferrolb's extension: which Services may use the pool, and its
    /// priority (MetalLB's IPAddressPool `serviceAllocation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) service_allocation: Option<RawServiceAllocation>,
}

/// A pool's `service-allocation`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "a service allocation: a mapping with priority, namespaces, namespace-selectors or service-selectors"
)]
pub(crate) struct RawServiceAllocation {
    /// Any integer, so that a negative one is refused by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) namespaces: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) namespace_selectors: Option<Vec<RawNodeSelector>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) service_selectors: Option<Vec<RawNodeSelector>>,
}

/// A node selector as MetalLB's legacy BGP peers wrote them.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "a node selector: a mapping with match-labels or match-expressions"
)]
pub(crate) struct RawNodeSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) match_labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) match_expressions: Option<Vec<RawRequirement>>,
}

/// One `match-expressions` entry.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "a match expression: a mapping with key, operator and values"
)]
pub(crate) struct RawRequirement {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) values: Option<Vec<String>>,
}

/// The parts of a ConfigMap manifest the check command looks at; anything
/// else a manifest holds (labels, `binaryData`, …) is Kubernetes' business.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a Kubernetes manifest")]
pub(crate) struct RawManifest {
    #[serde(default)]
    pub(crate) kind: Option<String>,
    #[serde(default)]
    pub(crate) metadata: RawMetadata,
    #[serde(default)]
    pub(crate) data: Option<BTreeMap<String, String>>,
}

/// A manifest's `metadata`, as far as it names the object.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawMetadata {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) namespace: Option<String>,
}

/// A boolean as MetalLB's YAML library (YAML 1.1) reads one: besides
/// `true`/`false`, also `yes`/`no`, `on`/`off` and `y`/`n`, so that a config
/// written for MetalLB means the same here.
fn yaml11_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    deserializer.deserialize_option(Yaml11Bool)
}

/// The visitor behind [`yaml11_bool`].
struct Yaml11Bool;

impl<'de> Visitor<'de> for Yaml11Bool {
    type Value = Option<bool>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a boolean (true or false)")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<bool>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<bool>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<bool>, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Option<bool>, E> {
        Ok(Some(b))
    }

    fn visit_str<E: de::Error>(self, word: &str) -> Result<Option<bool>, E> {
        match word {
            "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
                Ok(Some(true))
            }
            "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False"
            | "FALSE" => Ok(Some(false)),
            _ => Err(E::invalid_value(de::Unexpected::Str(word), &self)),
        }
    }
}

/// The YAML of a config, in the same format it is read from: ranges that
/// are one prefix as CIDRs, others as `a-b`; defaults left out.
pub(crate) fn render(config: &crate::Config) -> String {
    let pools = config
        .pools
        .iter()
        .map(|pool| RawPool {
            name: Some(pool.name.0.clone()),
            protocol: Some("layer2".to_owned()),
            addresses: Some(pool.ranges.iter().map(|r| r.to_notation()).collect()),
            auto_assign: (!pool.auto_assign).then_some(false),
            avoid_buggy_ips: pool.avoid_buggy_ips.then_some(true),
            bgp_advertisements: None,
            node_selectors: (!pool.node_selectors.is_empty())
                .then(|| render_selectors(&pool.node_selectors)),
            interfaces: (!pool.interfaces.is_empty()).then(|| pool.interfaces.clone()),
            service_allocation: pool
                .service_allocation
                .as_ref()
                .map(|a| RawServiceAllocation {
                    priority: a.priority.map(i64::from),
                    namespaces: (!a.namespaces.is_empty()).then(|| a.namespaces.clone()),
                    namespace_selectors: (!a.namespace_selectors.is_empty())
                        .then(|| render_selectors(&a.namespace_selectors)),
                    service_selectors: (!a.service_selectors.is_empty())
                        .then(|| render_selectors(&a.service_selectors)),
                }),
        })
        .collect();
    let raw = RawConfig {
        address_pools: Some(pools),
        ..RawConfig::default()
    };
    // Strings, booleans, lists and string-keyed maps always serialize; the
    // only failures serde_yaml has are for bytes, non-string keys and nested
    // enums, none of which these structs hold.
    serde_yaml::to_string(&raw).expect("a config of strings and lists always renders")
}

/// Label selectors as the config writes them.
fn render_selectors(selectors: &[crate::pool::NodeSelector]) -> Vec<RawNodeSelector> {
    use crate::pool::LabelOperator;

    selectors
        .iter()
        .map(|s| RawNodeSelector {
            match_labels: (!s.match_labels.is_empty()).then(|| s.match_labels.clone()),
            match_expressions: (!s.match_expressions.is_empty()).then(|| {
                s.match_expressions
                    .iter()
                    .map(|req| {
                        let (operator, values) = match &req.operator {
                            LabelOperator::In(v) => ("In", Some(v.clone())),
                            LabelOperator::NotIn(v) => ("NotIn", Some(v.clone())),
                            LabelOperator::Exists => ("Exists", None),
                            LabelOperator::DoesNotExist => ("DoesNotExist", None),
                        };
                        RawRequirement {
                            key: Some(req.key.clone()),
                            operator: Some(operator.to_owned()),
                            values,
                        }
                    })
                    .collect()
            }),
        })
        .collect()
}
