//! Converts MetalLB's (≥ v0.13) layer-2 configuration — IPAddressPool and
//! L2Advertisement objects as `kubectl get ipaddresspools,l2advertisements
//! -A -o yaml` prints them — into ferrolb's config. Start with [`convert`].
//!
//! Nothing is dropped silently: whatever ferrolb cannot express (BGP
//! objects, an advertisement limited to some Services, advertisements whose
//! node and interface choices cannot be merged per pool, a pool no
//! L2Advertisement announces) is a [`ConversionError`] naming the object and
//! field. The result passes the same validation as any ConfigMap. Pure: text
//! in, text out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use crate::budget::{self, Limit};
use crate::pool::{LabelOperator, LabelRequirement, NodeSelector};
use crate::raw::{RawConfig, RawNodeSelector, RawPool, RawRequirement, RawServiceAllocation};
use crate::validate::{self, ConfigErrors, ConfigWarning};
use crate::{CONFIG_KEY, Config, DEFAULT_CONFIGMAP_NAME, DEFAULT_NAMESPACE};

/// A MetalLB object: its kind and `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectName {
    /// `IPAddressPool`, `L2Advertisement`, …
    pub kind: String,
    /// `metadata.namespace`, if written.
    pub namespace: Option<String>,
    /// `metadata.name`, if written.
    pub name: Option<String>,
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.kind.is_empty() {
            "object"
        } else {
            &self.kind
        };
        let name = self.name.as_deref().unwrap_or("(no name)");
        match &self.namespace {
            Some(namespace) => write!(f, "{kind} {namespace}/{name}"),
            None => write!(f, "{kind} {name}"),
        }
    }
}

/// Why MetalLB's configuration cannot be converted as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversionError {
    /// A file too long, or whose aliases expand too far, to be read.
    #[error("{file}: {limit}")]
    TooLarge {
        /// The file.
        file: String,
        /// The bound it broke.
        limit: Limit,
    },
    /// A file that is not YAML.
    #[error("{file}: {message}")]
    Unreadable {
        /// The file.
        file: String,
        /// The YAML reader's message, with line and column.
        message: String,
    },
    /// An object whose fields are not what MetalLB's API defines (an unknown
    /// field, a wrong type).
    #[error("{object}: {message}")]
    BadObject {
        /// The object.
        object: ObjectName,
        /// What is wrong, naming the field.
        message: String,
    },
    /// An object of a kind that is no MetalLB layer-2 configuration.
    #[error("{object}: not a MetalLB IPAddressPool or L2Advertisement")]
    NotMetallb {
        /// The object.
        object: ObjectName,
    },
    /// A MetalLB object with no ferrolb equivalent (BGP and its helpers).
    #[error(
        "{object}: {why}; ferrolb announces addresses over layer 2 only. Remove it to convert the rest"
    )]
    Unsupported {
        /// The object.
        object: ObjectName,
        /// What it is for.
        why: &'static str,
    },
    /// A field of a layer-2 object that ferrolb has no equivalent for.
    #[error("{object}: {field} has no ferrolb equivalent: {why}")]
    UnsupportedField {
        /// The object.
        object: ObjectName,
        /// The field.
        field: String,
        /// What ferrolb lacks, and what to do.
        why: &'static str,
    },
    /// Objects from several namespaces: MetalLB reads those of its own
    /// namespace only.
    #[error(
        "the objects come from namespaces {first:?} and {second:?}; MetalLB reads only those of the namespace it runs in: convert that namespace's objects alone"
    )]
    SeveralNamespaces {
        /// One namespace.
        first: String,
        /// Another.
        second: String,
    },
    /// Two objects of one kind with one name.
    #[error("{object} appears twice")]
    Duplicate {
        /// The object.
        object: ObjectName,
    },
    /// An object without a name.
    #[error("{object}: metadata.name is missing")]
    Unnamed {
        /// The object.
        object: ObjectName,
    },
    /// A pool that no L2Advertisement announces: MetalLB hands its addresses
    /// out but no node answers for them, while ferrolb would announce them.
    #[error(
        "{pool}: no L2Advertisement announces it, so MetalLB answers for none of its addresses; add an L2Advertisement for it, or remove it"
    )]
    NotAdvertised {
        /// The pool.
        pool: ObjectName,
    },
    /// An advertisement that selects no pool of the input.
    #[error("{advertisement}: {field} selects no IPAddressPool of the input{}", missing.as_ref().map(|m| format!(" (there is no pool {m:?})")).unwrap_or_default())]
    AdvertisesNothing {
        /// The advertisement.
        advertisement: ObjectName,
        /// The field selecting pools.
        field: String,
        /// A pool it names that is not there.
        missing: Option<String>,
    },
    /// Advertisements of one pool that announce on different interfaces from
    /// different nodes: ferrolb's pool has one node set and one interface set.
    #[error(
        "{pool}: {first} and {second} announce it from different nodes on different interfaces, which one ferrolb pool cannot express (its interfaces apply on every node it may be announced from); give them the same interfaces or the same nodeSelectors"
    )]
    MixedAdvertisements {
        /// The pool.
        pool: ObjectName,
        /// One advertisement, as [`ObjectName`] shows it.
        first: String,
        /// Another.
        second: String,
    },
    /// A label selector whose operator is not Kubernetes'.
    #[error(
        "{object}: {field}: unknown operator {operator:?}; use In, NotIn, Exists or DoesNotExist"
    )]
    BadSelector {
        /// The object.
        object: ObjectName,
        /// The selector's requirement.
        field: String,
        /// The operator written.
        operator: String,
    },
    /// No IPAddressPool at all.
    #[error("the input holds no IPAddressPool")]
    NoPools,
    /// The converted config breaks one of ferrolb's rules (an overlap, a
    /// special-purpose range, a bad interface name, …).
    #[error("the converted config would be refused:\n{0}")]
    Invalid(ConfigErrors),
}

/// Every reason a conversion failed; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionErrors(pub Vec<ConversionError>);

impl fmt::Display for ConversionErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        validate::one_per_line(f, &self.0)
    }
}

impl std::error::Error for ConversionErrors {}

/// A converted configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// The config, validated.
    pub config: Config,
    /// What validation found odd in it.
    pub warnings: Vec<ConfigWarning>,
}

impl Converted {
    /// The ConfigMap manifest to apply: ferrolb's ConfigMap in its
    /// namespace, the config under its key.
    pub fn manifest(&self) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Manifest<'a> {
            api_version: &'a str,
            kind: &'a str,
            metadata: BTreeMap<&'a str, &'a str>,
            data: BTreeMap<&'a str, String>,
        }
        let manifest = Manifest {
            api_version: "v1",
            kind: "ConfigMap",
            metadata: [
                ("name", DEFAULT_CONFIGMAP_NAME),
                ("namespace", DEFAULT_NAMESPACE),
            ]
            .into(),
            data: [(CONFIG_KEY, self.config.to_yaml())].into(),
        };
        // Strings and string maps always serialize.
        serde_yaml::to_string(&manifest).expect("a manifest of strings always renders")
    }
}

/// A Kubernetes label selector as MetalLB's objects write it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Selector {
    #[serde(default)]
    match_labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    match_expressions: Option<Vec<Requirement>>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Requirement {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    operator: Option<String>,
    #[serde(default)]
    values: Option<Vec<String>>,
}

/// `IPAddressPool.spec`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PoolSpec {
    #[serde(default)]
    addresses: Option<Vec<String>>,
    #[serde(default)]
    auto_assign: Option<bool>,
    #[serde(default, rename = "avoidBuggyIPs")]
    avoid_buggy_ips: Option<bool>,
    #[serde(default)]
    service_allocation: Option<ServiceAllocationSpec>,
}

/// `IPAddressPool.spec.serviceAllocation`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceAllocationSpec {
    #[serde(default)]
    priority: Option<i64>,
    #[serde(default)]
    namespaces: Option<Vec<String>>,
    #[serde(default)]
    namespace_selectors: Option<Vec<Selector>>,
    #[serde(default)]
    service_selectors: Option<Vec<Selector>>,
}

/// `L2Advertisement.spec`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AdvertisementSpec {
    #[serde(default)]
    ip_address_pools: Option<Vec<String>>,
    #[serde(default)]
    ip_address_pool_selectors: Option<Vec<Selector>>,
    #[serde(default)]
    node_selectors: Option<Vec<Selector>>,
    #[serde(default)]
    interfaces: Option<Vec<String>>,
    #[serde(default)]
    service_selectors: Option<Vec<Selector>>,
}

/// An object's kind, name and labels, whatever else it holds.
struct Object {
    name: ObjectName,
    labels: BTreeMap<String, String>,
    spec: Value,
}

/// A pool read from its object.
struct PoolObject {
    name: ObjectName,
    labels: BTreeMap<String, String>,
    spec: PoolSpec,
}

/// An advertisement read from its object.
struct AdvertisementObject {
    name: ObjectName,
    spec: AdvertisementSpec,
}

/// Sorts MetalLB objects into pools and L2 advertisements, with the
/// namespaces they came from; anything else is an error naming the object.
fn sort_objects(
    objects: Vec<Object>,
    errors: &mut Vec<ConversionError>,
) -> (Vec<PoolObject>, Vec<AdvertisementObject>, BTreeSet<String>) {
    let mut pools: Vec<PoolObject> = Vec::new();
    let mut advertisements: Vec<AdvertisementObject> = Vec::new();
    let mut namespaces: BTreeSet<String> = BTreeSet::new();
    for object in objects {
        if let Some(ns) = &object.name.namespace {
            namespaces.insert(ns.clone());
        }
        let unsupported = |why| ConversionError::Unsupported {
            object: object.name.clone(),
            why,
        };
        match object.name.kind.as_str() {
            "IPAddressPool" => match spec(&object) {
                Ok(spec) => pools.push(PoolObject {
                    name: object.name,
                    labels: object.labels,
                    spec,
                }),
                Err(e) => errors.push(e),
            },
            "L2Advertisement" => match spec(&object) {
                Ok(spec) => advertisements.push(AdvertisementObject {
                    name: object.name,
                    spec,
                }),
                Err(e) => errors.push(e),
            },
            "BGPAdvertisement" => errors.push(unsupported("it announces pools over BGP")),
            "BGPPeer" => errors.push(unsupported("it is a BGP session")),
            "BFDProfile" => errors.push(unsupported("it tunes BFD for BGP sessions")),
            "Community" => errors.push(unsupported("it names BGP communities")),
            _ => errors.push(ConversionError::NotMetallb {
                object: object.name,
            }),
        }
    }
    (pools, advertisements, namespaces)
}

/// Which advertisements announce each pool (by index), as MetalLB reads an
/// advertisement's pool names and selectors.
fn announcing(
    pools: &[PoolObject],
    advertisements: &[AdvertisementObject],
    errors: &mut Vec<ConversionError>,
) -> Vec<Vec<usize>> {
    let mut announcing: Vec<Vec<usize>> = vec![Vec::new(); pools.len()];
    for (a, ad) in advertisements.iter().enumerate() {
        if ad
            .spec
            .service_selectors
            .as_ref()
            .is_some_and(|s| !s.is_empty())
        {
            errors.push(ConversionError::UnsupportedField {
                object: ad.name.clone(),
                field: "spec.serviceSelectors".into(),
                why: "ferrolb announces every Service of a pool alike; limit the pool to those Services with its serviceAllocation instead",
            });
            continue;
        }
        let names = ad.spec.ip_address_pools.clone().unwrap_or_default();
        let selectors = ad
            .spec
            .ip_address_pool_selectors
            .clone()
            .unwrap_or_default();
        let mut selected = BTreeSet::new();
        for (k, name) in names.iter().enumerate() {
            match pools
                .iter()
                .position(|p| p.name.name.as_deref() == Some(name))
            {
                Some(p) => {
                    selected.insert(p);
                }
                None => errors.push(ConversionError::AdvertisesNothing {
                    advertisement: ad.name.clone(),
                    field: format!("spec.ipAddressPools[{k}]"),
                    missing: Some(name.clone()),
                }),
            }
        }
        let mut matchers = Vec::new();
        for (k, raw) in selectors.iter().enumerate() {
            let field = format!("spec.ipAddressPoolSelectors[{k}]");
            match selector(&ad.name, &field, raw) {
                Ok(s) => matchers.push(s),
                Err(e) => errors.push(e),
            }
        }
        selected.extend(
            (0..pools.len()).filter(|&p| matchers.iter().any(|m| m.matches(&pools[p].labels))),
        );
        if names.is_empty() && selectors.is_empty() {
            // Neither: MetalLB announces every pool.
            selected.extend(0..pools.len());
        } else if !selectors.is_empty() && selected.is_empty() {
            errors.push(ConversionError::AdvertisesNothing {
                advertisement: ad.name.clone(),
                field: "spec.ipAddressPoolSelectors".into(),
                missing: None,
            });
        }
        for p in selected {
            announcing[p].push(a);
        }
    }

    announcing
}

/// Converts the objects in `files` (name, text): each a v1 `List` of MetalLB
/// objects, or YAML documents each holding one object or a List. Every
/// problem is reported, not only the first, once the files could be read.
pub fn convert(files: &[(&str, &str)]) -> Result<Converted, ConversionErrors> {
    let mut errors = Vec::new();
    let mut objects = Vec::new();
    for (file, text) in files {
        match read_objects(file, text) {
            Ok(mut found) => objects.append(&mut found),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(ConversionErrors(errors));
    }
    let (pools, advertisements, namespaces) = sort_objects(objects, &mut errors);
    let mut namespaces = namespaces.into_iter();
    if let (Some(first), Some(second)) = (namespaces.next(), namespaces.next()) {
        errors.push(ConversionError::SeveralNamespaces { first, second });
    }
    check_names(pools.iter().map(|p| &p.name), &mut errors);
    check_names(advertisements.iter().map(|a| &a.name), &mut errors);
    if pools.is_empty() && errors.is_empty() {
        errors.push(ConversionError::NoPools);
    }

    let announcing = announcing(&pools, &advertisements, &mut errors);
    let mut raw_pools = Vec::with_capacity(pools.len());
    for (p, pool) in pools.iter().enumerate() {
        if announcing[p].is_empty() {
            errors.push(ConversionError::NotAdvertised {
                pool: pool.name.clone(),
            });
            continue;
        }
        let ads: Vec<&AdvertisementObject> =
            announcing[p].iter().map(|&a| &advertisements[a]).collect();
        match announcement(pool, &ads) {
            Ok((node_selectors, interfaces)) => {
                raw_pools.push(raw_pool(pool, node_selectors, interfaces));
            }
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(ConversionErrors(errors));
    }
    let raw = RawConfig {
        address_pools: Some(raw_pools),
        ..RawConfig::default()
    };
    // Strings, numbers, booleans and lists always serialize.
    let text = serde_yaml::to_string(&raw).expect("a config of strings and lists always renders");
    match validate::from_yaml(&text) {
        Ok(validated) => Ok(Converted {
            config: validated.config,
            warnings: validated.warnings,
        }),
        Err(e) => Err(ConversionErrors(vec![ConversionError::Invalid(e)])),
    }
}

/// The objects of one file.
fn read_objects(file: &str, text: &str) -> Result<Vec<Object>, ConversionError> {
    budget::check(text).map_err(|limit| ConversionError::TooLarge {
        file: file.to_owned(),
        limit,
    })?;
    let mut objects = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| ConversionError::Unreadable {
            file: file.to_owned(),
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        if value.get("kind").and_then(Value::as_str) == Some("List") {
            let items = match value.get("items") {
                Some(Value::Sequence(items)) => items.clone(),
                None | Some(Value::Null) => Vec::new(),
                Some(_) => {
                    return Err(ConversionError::Unreadable {
                        file: file.to_owned(),
                        message: "items of a List must be a list of objects".into(),
                    });
                }
            };
            objects.extend(items.into_iter().map(object));
        } else {
            objects.push(object(value));
        }
    }
    Ok(objects)
}

/// An object's identity and spec, whatever its shape.
fn object(value: Value) -> Object {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let metadata = value.get("metadata");
    let labels = metadata
        .and_then(|m| m.get("labels"))
        .and_then(|l| serde_yaml::from_value::<BTreeMap<String, String>>(l.clone()).ok())
        .unwrap_or_default();
    Object {
        name: ObjectName {
            kind: text(value.get("kind")).unwrap_or_default(),
            namespace: text(metadata.and_then(|m| m.get("namespace"))),
            name: text(metadata.and_then(|m| m.get("name"))),
        },
        labels,
        spec: value.get("spec").cloned().unwrap_or(Value::Null),
    }
}

/// An object's spec read into `T`; an absent spec is an empty one.
fn spec<T: for<'de> Deserialize<'de> + Default>(object: &Object) -> Result<T, ConversionError> {
    if object.spec.is_null() {
        return Ok(T::default());
    }
    serde_yaml::from_value(object.spec.clone()).map_err(|e| ConversionError::BadObject {
        object: object.name.clone(),
        message: format!("spec: {e}"),
    })
}

/// Refuses unnamed objects and a name used twice.
fn check_names<'a>(names: impl Iterator<Item = &'a ObjectName>, errors: &mut Vec<ConversionError>) {
    let mut seen = BTreeSet::new();
    for name in names {
        match &name.name {
            None => errors.push(ConversionError::Unnamed {
                object: name.clone(),
            }),
            Some(n) if !seen.insert(n.clone()) => errors.push(ConversionError::Duplicate {
                object: name.clone(),
            }),
            Some(_) => {}
        }
    }
}

/// A selector as a [`NodeSelector`], to match pools' labels here.
fn selector(
    object: &ObjectName,
    field: &str,
    raw: &Selector,
) -> Result<NodeSelector, ConversionError> {
    let match_expressions = raw
        .match_expressions
        .iter()
        .flatten()
        .enumerate()
        .map(|(k, r)| {
            let values = r.values.clone().unwrap_or_default();
            let operator = match r.operator.as_deref() {
                Some("In") => LabelOperator::In(values),
                Some("NotIn") => LabelOperator::NotIn(values),
                Some("Exists") => LabelOperator::Exists,
                Some("DoesNotExist") => LabelOperator::DoesNotExist,
                other => {
                    return Err(ConversionError::BadSelector {
                        object: object.clone(),
                        field: format!("{field}.matchExpressions[{k}].operator"),
                        operator: other.unwrap_or_default().to_owned(),
                    });
                }
            };
            Ok(LabelRequirement {
                key: r.key.clone().unwrap_or_default(),
                operator,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NodeSelector {
        match_labels: raw.match_labels.clone().unwrap_or_default(),
        match_expressions,
    })
}

/// Where a pool is announced, merged from the advertisements announcing it:
/// (node selectors, interfaces), each empty for "all".
fn announcement(
    pool: &PoolObject,
    ads: &[&AdvertisementObject],
) -> Result<(Vec<Selector>, Vec<String>), ConversionError> {
    let nodes = |ad: &AdvertisementObject| ad.spec.node_selectors.clone().unwrap_or_default();
    let interfaces = |ad: &AdvertisementObject| -> BTreeSet<String> {
        ad.spec.interfaces.iter().flatten().cloned().collect()
    };
    // The pool may be announced from the union of the advertisements' nodes
    // (an advertisement without nodeSelectors: every node).
    let node_selectors: Vec<Selector> = if ads.iter().any(|ad| nodes(ad).is_empty()) {
        Vec::new()
    } else {
        let mut union: Vec<Selector> = Vec::new();
        for selector in ads.iter().flat_map(|ad| nodes(ad)) {
            if !union.contains(&selector) {
                union.push(selector);
            }
        }
        union
    };
    let first = ads[0];
    let same_interfaces = ads.iter().all(|ad| interfaces(ad) == interfaces(first));
    let same_nodes = ads.iter().all(|ad| {
        let (a, b) = (nodes(ad), nodes(first));
        a.iter().all(|s| b.contains(s)) && b.iter().all(|s| a.contains(s))
    });
    let interfaces: BTreeSet<String> = if same_interfaces {
        interfaces(first)
    } else if same_nodes {
        // On the same nodes, the union of the interfaces (none: all).
        if ads.iter().any(|ad| interfaces(ad).is_empty()) {
            BTreeSet::new()
        } else {
            ads.iter().flat_map(|ad| interfaces(ad)).collect()
        }
    } else {
        let second = ads
            .iter()
            .find(|ad| interfaces(ad) != interfaces(first))
            .unwrap_or(&first);
        return Err(ConversionError::MixedAdvertisements {
            pool: pool.name.clone(),
            first: first.name.to_string(),
            second: second.name.to_string(),
        });
    };
    // Keep the order the first advertisement wrote them in, where it can.
    let mut ordered: Vec<String> = first
        .spec
        .interfaces
        .iter()
        .flatten()
        .filter(|i| interfaces.contains(*i))
        .cloned()
        .collect();
    for i in interfaces {
        if !ordered.contains(&i) {
            ordered.push(i);
        }
    }
    Ok((node_selectors, ordered))
}

/// A selector in ferrolb's spelling.
fn raw_selector(selector: &Selector) -> RawNodeSelector {
    RawNodeSelector {
        match_labels: selector.match_labels.clone(),
        match_expressions: selector.match_expressions.as_ref().map(|all| {
            all.iter()
                .map(|r| RawRequirement {
                    key: r.key.clone(),
                    operator: r.operator.clone(),
                    values: r.values.clone(),
                })
                .collect()
        }),
    }
}

/// The ferrolb pool of one IPAddressPool.
fn raw_pool(pool: &PoolObject, node_selectors: Vec<Selector>, interfaces: Vec<String>) -> RawPool {
    let spec = &pool.spec;
    let selectors =
        |s: &Option<Vec<Selector>>| s.as_ref().map(|all| all.iter().map(raw_selector).collect());
    RawPool {
        name: pool.name.name.clone(),
        protocol: Some("layer2".into()),
        addresses: Some(spec.addresses.clone().unwrap_or_default()),
        // MetalLB's defaults are ferrolb's: written only when they differ.
        auto_assign: spec.auto_assign.filter(|a| !a),
        avoid_buggy_ips: spec.avoid_buggy_ips.filter(|a| *a),
        bgp_advertisements: None,
        node_selectors: (!node_selectors.is_empty())
            .then(|| node_selectors.iter().map(raw_selector).collect()),
        interfaces: (!interfaces.is_empty()).then_some(interfaces),
        service_allocation: spec
            .service_allocation
            .as_ref()
            .map(|a| RawServiceAllocation {
                // MetalLB reads 0 as no priority.
                priority: a.priority.filter(|p| *p != 0),
                namespaces: a.namespaces.clone(),
                namespace_selectors: selectors(&a.namespace_selectors),
                service_selectors: selectors(&a.service_selectors),
            }),
    }
}

#[cfg(test)]
mod tests;
