//! What one Service asks of ferrolb, read from its spec and annotations: start
//! with [`read`]. This is the only file of the crate that names a Kubernetes
//! type; everything it returns is ferrolb's own vocabulary.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

/// A Service's identity: `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
}

impl ServiceKey {
    /// The key of `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> ServiceKey {
        ServiceKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The value of the `allow-shared-ip` annotation: Services with equal keys may
/// share an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SharingKey(pub String);

impl fmt::Display for SharingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A transport protocol of a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

/// One exposed port of a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port {
    /// The port number on the external address.
    pub port: u16,
    /// Its protocol.
    pub protocol: Protocol,
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol)
    }
}

/// `spec.externalTrafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrafficPolicy {
    /// Any node forwards to any endpoint (the default).
    #[default]
    Cluster,
    /// Only nodes with a local endpoint serve the Service.
    Local,
}

/// `spec.ipFamilyPolicy` with the families of `spec.ipFamilies`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FamilyPolicy {
    /// Exactly one address, of this family.
    Single(crate::Family),
    /// One address of each family if possible, at least one; primary first.
    PreferDual(crate::Family),
    /// One address of each family, or none at all; primary first.
    RequireDual(crate::Family),
}

/// Everything ferrolb needs to know about one Service it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRequest {
    /// Which Service.
    pub key: ServiceKey,
    /// How many addresses of which families.
    pub families: FamilyPolicy,
    /// Addresses the Service asks for by name (`spec.loadBalancerIP` or the
    /// `loadBalancerIPs` annotation): at most one per family.
    pub requested: Vec<IpAddr>,
    /// The pool the Service names, if any.
    pub pool: Option<String>,
    /// The sharing key, if the Service allows sharing.
    pub sharing: Option<SharingKey>,
    /// Its ports.
    pub ports: Vec<Port>,
    /// `spec.externalTrafficPolicy`.
    pub traffic_policy: TrafficPolicy,
    /// `spec.selector`: with `Local` traffic, sharing Services must select the
    /// same pods.
    pub selector: BTreeMap<String, String>,
    /// The Service's labels, for pools' `service-selectors`.
    pub labels: BTreeMap<String, String>,
    /// Its namespace's labels, for pools' `namespace-selectors`. [`read`]
    /// leaves them empty: the shell fills them from the Namespace it watches.
    pub namespace_labels: BTreeMap<String, String>,
}

impl ServiceRequest {
    /// Who the Service is and which pool it names, for
    /// [`pools_for`](crate::choice::pools_for).
    pub fn claimant(&self) -> crate::choice::Claimant<'_> {
        crate::choice::Claimant {
            namespace: &self.key.namespace,
            labels: &self.labels,
            namespace_labels: &self.namespace_labels,
            pool: self.pool.as_deref(),
        }
    }
}

/// The `spec.loadBalancerClass` ferrolb answers to. Services without a class
/// are served too, as the default load balancer of the cluster.
pub const LOAD_BALANCER_CLASS: &str = "ferrolb.io/layer2";

/// Annotation naming the pool a Service's addresses must come from.
pub const ADDRESS_POOL_ANNOTATION: &str = "ferrolb.io/address-pool";
/// MetalLB's spellings of [`ADDRESS_POOL_ANNOTATION`], read as aliases.
pub const ADDRESS_POOL_ALIASES: [&str; 2] = [
    "metallb.io/address-pool",
    "metallb.universe.tf/address-pool",
];

/// Annotation requesting specific addresses, comma-separated, at most one
/// per family.
pub const LOAD_BALANCER_IPS_ANNOTATION: &str = "ferrolb.io/loadBalancerIPs";
/// MetalLB's spellings of [`LOAD_BALANCER_IPS_ANNOTATION`], read as aliases.
pub const LOAD_BALANCER_IPS_ALIASES: [&str; 2] = [
    "metallb.io/loadBalancerIPs",
    "metallb.universe.tf/loadBalancerIPs",
];

/// Annotation carrying the sharing key: Services with equal keys may share
/// an address.
pub const ALLOW_SHARED_IP_ANNOTATION: &str = "ferrolb.io/allow-shared-ip";
/// MetalLB's spellings of [`ALLOW_SHARED_IP_ANNOTATION`], read as aliases.
pub const ALLOW_SHARED_IP_ALIASES: [&str; 2] = [
    "metallb.io/allow-shared-ip",
    "metallb.universe.tf/allow-shared-ip",
];

/// Whether ferrolb serves a Service, and if so what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// ferrolb serves it.
    Ours(ServiceRequest),
    /// Not ferrolb's: it must hold no ferrolb address.
    NotOurs(NotServed),
}

/// Why ferrolb does not serve a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotServed {
    /// `spec.type` is not `LoadBalancer`.
    NotLoadBalancer {
        /// Its type (`ClusterIP` when unset).
        service_type: String,
    },
    /// `spec.loadBalancerClass` names another implementation.
    OtherClass {
        /// The class.
        class: String,
    },
    /// The object has no name or namespace (never so from the API server).
    Unnamed,
}

impl fmt::Display for NotServed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotServed::NotLoadBalancer { service_type } => {
                write!(f, "its type is {service_type}, not LoadBalancer")
            }
            NotServed::OtherClass { class } => write!(
                f,
                "its loadBalancerClass is {class:?}, not {LOAD_BALANCER_CLASS:?}"
            ),
            NotServed::Unnamed => f.write_str("it has no name or namespace"),
        }
    }
}

/// Where a Service says something: a spec field or an annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A field of the Service, e.g. `spec.loadBalancerIP`.
    Field(&'static str),
    /// An annotation, by name.
    Annotation(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Field(field) => f.write_str(field),
            Origin::Annotation(name) => write!(f, "annotation {name}"),
        }
    }
}

/// A Service ferrolb should serve but whose request cannot be read. Nothing
/// is allocated for it until the Service changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Service {service}: {problem}")]
pub struct RequestError {
    /// The Service.
    pub service: ServiceKey,
    /// What is wrong with its request (boxed: errors stay small to pass
    /// around).
    pub problem: Box<RequestProblem>,
}

impl RequestError {
    fn new(service: &ServiceKey, problem: RequestProblem) -> RequestError {
        RequestError {
            service: service.clone(),
            problem: Box::new(problem),
        }
    }

    /// A stable label for metrics and events.
    pub fn label(&self) -> &'static str {
        match *self.problem {
            RequestProblem::Disagree { .. } => "conflicting_requests",
            RequestProblem::UnparsableIp { .. } => "unparsable_ip",
            RequestProblem::TwoOfOneFamily { .. } => "two_ips_of_one_family",
            RequestProblem::FamilyNotServed { .. } => "ip_family_not_served",
            RequestProblem::UnknownValue { .. } => "unknown_value",
            RequestProblem::BadPort { .. } => "bad_port",
        }
    }
}

/// What is wrong with a Service's request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestProblem {
    /// The same request written two ways that disagree.
    #[error(
        "{first} says {first_value:?} but {second} says {second_value:?}; remove one or make them agree"
    )]
    Disagree {
        /// One place.
        first: Origin,
        /// What it says.
        first_value: String,
        /// The other place.
        second: Origin,
        /// What that says.
        second_value: String,
    },
    /// A requested address that is not an IP address.
    #[error("{origin}: {value:?} is not an IP address")]
    UnparsableIp {
        /// Where it was requested.
        origin: Origin,
        /// What was written.
        value: String,
    },
    /// Two requested addresses of one family.
    #[error(
        "{origin} requests two {family} addresses ({first} and {second}); a Service gets at most one per family"
    )]
    TwoOfOneFamily {
        /// Where they were requested.
        origin: Origin,
        /// Their family.
        family: crate::Family,
        /// The first.
        first: IpAddr,
        /// The second.
        second: IpAddr,
    },
    /// A requested address of a family the Service does not have.
    #[error(
        "{origin} requests {ip}, an {family} address, but spec.ipFamilies is [{}]",
        families.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    FamilyNotServed {
        /// Where it was requested.
        origin: Origin,
        /// The address.
        ip: IpAddr,
        /// Its family.
        family: crate::Family,
        /// The Service's families.
        families: Vec<crate::Family>,
    },
    /// A spec field with a value Kubernetes does not define.
    #[error("{field}: unknown value {value:?}")]
    UnknownValue {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// A port number outside 1–65535.
    #[error("spec.ports[{index}].port: {port} is not a port number")]
    BadPort {
        /// The index in `spec.ports`.
        index: usize,
        /// The number.
        port: i32,
    },
}

/// The key of a Service object: its namespace and name.
pub fn key_of(svc: &k8s_openapi::api::core::v1::Service) -> ServiceKey {
    ServiceKey::new(
        svc.metadata.namespace.as_deref().unwrap_or_default(),
        svc.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// The addresses in a Service's `status.loadBalancer.ingress`, in order;
/// entries that are no address (a hostname, garbage) are skipped.
pub fn ingress(svc: &k8s_openapi::api::core::v1::Service) -> Vec<IpAddr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ingress| {
            ingress
                .iter()
                .filter_map(|i| i.ip.as_deref()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Reads what a Service asks of ferrolb.
///
/// A Service is ferrolb's when `spec.type` is `LoadBalancer` and
/// `spec.loadBalancerClass` is unset or [`LOAD_BALANCER_CLASS`]; a Service
/// that is not ferrolb's is never an error, whatever its annotations say.
///
/// Families: the API server fills `spec.ipFamilies` and
/// `spec.ipFamilyPolicy` on create, so they are read as written. A
/// `PreferDualStack` Service that has only one family (the cluster is
/// single-stack) is served as single-stack: an address of a family the
/// Service lacks would not be routed. If `ipFamilies` is empty (an object
/// not from the API server), the primary family is that of the first
/// requested address, else IPv4, and the policy defaults to `SingleStack`.
///
/// Requests: `spec.loadBalancerIP` and the `loadBalancerIPs` annotation (any
/// spelling) may both be set only if they request the same addresses; alias
/// annotations must agree likewise. Empty values count as unset.
pub fn read(svc: &k8s_openapi::api::core::v1::Service) -> Result<Served, RequestError> {
    let empty = Default::default();
    let spec = svc.spec.as_ref().unwrap_or(&empty);
    let service_type = spec.type_.as_deref().unwrap_or("ClusterIP");
    if service_type != "LoadBalancer" {
        return Ok(Served::NotOurs(NotServed::NotLoadBalancer {
            service_type: service_type.to_owned(),
        }));
    }
    if let Some(class) = spec.load_balancer_class.as_deref()
        && class != LOAD_BALANCER_CLASS
    {
        return Ok(Served::NotOurs(NotServed::OtherClass {
            class: class.to_owned(),
        }));
    }
    let (Some(namespace), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) else {
        // Objects from the API server are always named; this one cannot be
        // given an address, nor be told why.
        return Ok(Served::NotOurs(NotServed::Unnamed));
    };
    let key = ServiceKey::new(namespace.as_str(), name.as_str());
    let no_annotations = BTreeMap::new();
    let annotations = svc.metadata.annotations.as_ref().unwrap_or(&no_annotations);

    let requested = requested_ips(&key, spec.load_balancer_ip.as_deref(), annotations)?;
    let families = family_policy(&key, spec, requested.as_ref())?;
    if let Some((origin, ips)) = &requested {
        check_families(&key, *origin, ips, &families.1)?;
    }
    let pool = agreed(
        &key,
        annotations,
        ADDRESS_POOL_ANNOTATION,
        &ADDRESS_POOL_ALIASES,
    )?;
    let sharing = agreed(
        &key,
        annotations,
        ALLOW_SHARED_IP_ANNOTATION,
        &ALLOW_SHARED_IP_ALIASES,
    )?
    .map(SharingKey);
    let traffic_policy = match spec.external_traffic_policy.as_deref() {
        None | Some("Cluster") => TrafficPolicy::Cluster,
        Some("Local") => TrafficPolicy::Local,
        Some(other) => {
            return Err(RequestError::new(
                &key,
                RequestProblem::UnknownValue {
                    field: "spec.externalTrafficPolicy",
                    value: other.to_owned(),
                },
            ));
        }
    };
    let ports = spec
        .ports
        .iter()
        .flatten()
        .enumerate()
        .map(|(index, p)| port(&key, index, p))
        .collect::<Result<Vec<Port>, RequestError>>()?;
    Ok(Served::Ours(ServiceRequest {
        key,
        families: families.0,
        requested: requested.map(|(_, ips)| ips).unwrap_or_default(),
        pool,
        sharing,
        ports,
        traffic_policy,
        selector: spec.selector.clone().unwrap_or_default(),
        labels: svc.metadata.labels.clone().unwrap_or_default(),
        namespace_labels: BTreeMap::new(),
    }))
}

/// The addresses requested, with where, once every way of requesting them
/// agrees. `None` when none are.
fn requested_ips(
    key: &ServiceKey,
    spec_ip: Option<&str>,
    annotations: &BTreeMap<String, String>,
) -> Result<Option<(Origin, Vec<IpAddr>)>, RequestError> {
    let mut written: Vec<(Origin, &str)> = Vec::new();
    if let Some(ip) = spec_ip.filter(|ip| !ip.trim().is_empty()) {
        written.push((Origin::Field("spec.loadBalancerIP"), ip));
    }
    for name in std::iter::once(LOAD_BALANCER_IPS_ANNOTATION).chain(LOAD_BALANCER_IPS_ALIASES) {
        if let Some(value) = annotations.get(name).filter(|v| !v.trim().is_empty()) {
            written.push((Origin::Annotation(name), value));
        }
    }
    let mut agreed: Option<(Origin, &str, Vec<IpAddr>)> = None;
    for (origin, value) in written {
        let ips = value
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                part.parse::<IpAddr>().map_err(|_| {
                    RequestError::new(
                        key,
                        RequestProblem::UnparsableIp {
                            origin,
                            value: part.to_owned(),
                        },
                    )
                })
            })
            .collect::<Result<Vec<IpAddr>, RequestError>>()?;
        match &agreed {
            None => agreed = Some((origin, value, ips)),
            Some((first, first_value, first_ips)) => {
                let as_set = |ips: &[IpAddr]| ips.iter().copied().collect::<BTreeSet<IpAddr>>();
                if as_set(first_ips) != as_set(&ips) {
                    return Err(RequestError::new(
                        key,
                        RequestProblem::Disagree {
                            first: *first,
                            first_value: first_value.to_string(),
                            second: origin,
                            second_value: value.to_owned(),
                        },
                    ));
                }
            }
        }
    }
    let Some((origin, _, ips)) = agreed else {
        return Ok(None);
    };
    for (i, first) in ips.iter().enumerate() {
        if let Some(second) = ips[i + 1..]
            .iter()
            .find(|ip| crate::Family::of(**ip) == crate::Family::of(*first))
        {
            return Err(RequestError::new(
                key,
                RequestProblem::TwoOfOneFamily {
                    origin,
                    family: crate::Family::of(*first),
                    first: *first,
                    second: *second,
                },
            ));
        }
    }
    Ok(Some((origin, ips)))
}

/// The family policy, and the families the Service has (the ones requested
/// addresses may be of).
fn family_policy(
    key: &ServiceKey,
    spec: &k8s_openapi::api::core::v1::ServiceSpec,
    requested: Option<&(Origin, Vec<IpAddr>)>,
) -> Result<(FamilyPolicy, Vec<crate::Family>), RequestError> {
    let mut families = Vec::new();
    for family in spec.ip_families.iter().flatten() {
        let family = match family.as_str() {
            "IPv4" => crate::Family::V4,
            "IPv6" => crate::Family::V6,
            other => {
                return Err(RequestError::new(
                    key,
                    RequestProblem::UnknownValue {
                        field: "spec.ipFamilies",
                        value: other.to_owned(),
                    },
                ));
            }
        };
        if !families.contains(&family) {
            families.push(family);
        }
    }
    let filled = !families.is_empty();
    let primary = families.first().copied().unwrap_or_else(|| {
        requested
            .and_then(|(_, ips)| ips.first())
            .map_or(crate::Family::V4, |ip| crate::Family::of(*ip))
    });
    let other = match primary {
        crate::Family::V4 => crate::Family::V6,
        crate::Family::V6 => crate::Family::V4,
    };
    let policy = match spec.ip_family_policy.as_deref() {
        None | Some("SingleStack") => FamilyPolicy::Single(primary),
        Some("PreferDualStack") if filled && families.len() == 1 => FamilyPolicy::Single(primary),
        Some("PreferDualStack") => FamilyPolicy::PreferDual(primary),
        Some("RequireDualStack") => FamilyPolicy::RequireDual(primary),
        Some(other) => {
            return Err(RequestError::new(
                key,
                RequestProblem::UnknownValue {
                    field: "spec.ipFamilyPolicy",
                    value: other.to_owned(),
                },
            ));
        }
    };
    if !filled {
        families.push(primary);
        if !matches!(policy, FamilyPolicy::Single(_)) {
            families.push(other);
        }
    }
    Ok((policy, families))
}

/// Refuses a requested address of a family the Service does not have.
fn check_families(
    key: &ServiceKey,
    origin: Origin,
    ips: &[IpAddr],
    families: &[crate::Family],
) -> Result<(), RequestError> {
    match ips
        .iter()
        .find(|ip| !families.contains(&crate::Family::of(**ip)))
    {
        Some(ip) => Err(RequestError::new(
            key,
            RequestProblem::FamilyNotServed {
                origin,
                ip: *ip,
                family: crate::Family::of(*ip),
                families: families.to_vec(),
            },
        )),
        None => Ok(()),
    }
}

/// The value of an annotation set under its name or any alias, once they
/// agree; empty values count as unset.
fn agreed(
    key: &ServiceKey,
    annotations: &BTreeMap<String, String>,
    name: &'static str,
    aliases: &[&'static str],
) -> Result<Option<String>, RequestError> {
    let mut found: Option<(&'static str, &String)> = None;
    for name in std::iter::once(name).chain(aliases.iter().copied()) {
        let Some(value) = annotations.get(name).filter(|v| !v.is_empty()) else {
            continue;
        };
        match found {
            None => found = Some((name, value)),
            Some((first, first_value)) if first_value != value => {
                return Err(RequestError::new(
                    key,
                    RequestProblem::Disagree {
                        first: Origin::Annotation(first),
                        first_value: first_value.clone(),
                        second: Origin::Annotation(name),
                        second_value: value.clone(),
                    },
                ));
            }
            Some(_) => {}
        }
    }
    Ok(found.map(|(_, value)| value.clone()))
}

/// One `spec.ports` entry.
fn port(
    key: &ServiceKey,
    index: usize,
    p: &k8s_openapi::api::core::v1::ServicePort,
) -> Result<Port, RequestError> {
    let protocol = match p.protocol.as_deref() {
        None | Some("TCP") => Protocol::Tcp,
        Some("UDP") => Protocol::Udp,
        Some("SCTP") => Protocol::Sctp,
        Some(other) => {
            return Err(RequestError::new(
                key,
                RequestProblem::UnknownValue {
                    field: "spec.ports[].protocol",
                    value: other.to_owned(),
                },
            ));
        }
    };
    let port = u16::try_from(p.port)
        .ok()
        .filter(|&n| n != 0)
        .ok_or_else(|| {
            RequestError::new(
                key,
                RequestProblem::BadPort {
                    index,
                    port: p.port,
                },
            )
        })?;
    Ok(Port { port, protocol })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};

    use super::*;
    use crate::Family;

    /// A `LoadBalancer` Service `web/name` as the API server returns it:
    /// single-stack IPv4, one TCP port.
    fn lb(name: &str) -> Service {
        let mut svc = Service::default();
        svc.metadata.namespace = Some("web".into());
        svc.metadata.name = Some(name.into());
        svc.spec = Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            ip_families: Some(vec!["IPv4".into()]),
            ip_family_policy: Some("SingleStack".into()),
            ports: Some(vec![ServicePort {
                port: 80,
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        });
        svc
    }

    trait Build {
        fn spec(self, f: impl FnOnce(&mut ServiceSpec)) -> Self;
        fn annotated(self, name: &str, value: &str) -> Self;
        fn families(self, policy: &str, families: &[&str]) -> Self;
    }

    impl Build for Service {
        fn spec(mut self, f: impl FnOnce(&mut ServiceSpec)) -> Service {
            f(self.spec.as_mut().unwrap());
            self
        }

        fn annotated(mut self, name: &str, value: &str) -> Service {
            self.metadata
                .annotations
                .get_or_insert_default()
                .insert(name.into(), value.into());
            self
        }

        fn families(self, policy: &str, families: &[&str]) -> Service {
            self.spec(|s| {
                s.ip_family_policy = Some(policy.into());
                s.ip_families = Some(families.iter().map(|f| f.to_string()).collect());
            })
        }
    }

    fn request(svc: &Service) -> ServiceRequest {
        match read(svc) {
            Ok(Served::Ours(request)) => request,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn error(svc: &Service) -> String {
        read(svc)
            .expect_err("the request should be refused")
            .to_string()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_plain_load_balancer_asks_for_one_address_of_its_family() {
        let mut svc = lb("site").spec(|s| {
            s.selector = Some([("app".to_owned(), "site".to_owned())].into());
            s.ports.as_mut().unwrap().push(ServicePort {
                port: 53,
                protocol: Some("UDP".into()),
                ..ServicePort::default()
            });
            s.ports.as_mut().unwrap().push(ServicePort {
                port: 8080,
                protocol: None,
                ..ServicePort::default()
            });
        });
        svc.metadata.labels = Some([("tier".to_owned(), "gold".to_owned())].into());
        assert_eq!(
            request(&svc),
            ServiceRequest {
                key: ServiceKey::new("web", "site"),
                families: FamilyPolicy::Single(Family::V4),
                requested: vec![],
                pool: None,
                sharing: None,
                ports: vec![
                    Port {
                        port: 80,
                        protocol: Protocol::Tcp
                    },
                    Port {
                        port: 53,
                        protocol: Protocol::Udp
                    },
                    Port {
                        port: 8080,
                        protocol: Protocol::Tcp
                    },
                ],
                traffic_policy: TrafficPolicy::Cluster,
                selector: [("app".to_owned(), "site".to_owned())].into(),
                labels: [("tier".to_owned(), "gold".to_owned())].into(),
                namespace_labels: BTreeMap::new(),
            }
        );
    }

    #[test]
    fn only_load_balancers_of_no_class_or_ours_are_served() {
        let cluster_ip = lb("a").spec(|s| s.type_ = Some("ClusterIP".into()));
        assert_eq!(
            read(&cluster_ip),
            Ok(Served::NotOurs(NotServed::NotLoadBalancer {
                service_type: "ClusterIP".into()
            }))
        );
        let untyped = lb("a").spec(|s| s.type_ = None);
        assert_eq!(
            read(&untyped),
            Ok(Served::NotOurs(NotServed::NotLoadBalancer {
                service_type: "ClusterIP".into()
            }))
        );
        let theirs = lb("a").spec(|s| s.load_balancer_class = Some("example.com/lb".into()));
        let Ok(Served::NotOurs(reason)) = read(&theirs) else {
            panic!("served a Service of another class");
        };
        assert_eq!(
            reason.to_string(),
            "its loadBalancerClass is \"example.com/lb\", not \"ferrolb.io/layer2\""
        );
        let ours = lb("a").spec(|s| s.load_balancer_class = Some(LOAD_BALANCER_CLASS.into()));
        assert_eq!(request(&ours).key, ServiceKey::new("web", "a"));
    }

    #[test]
    fn services_not_ours_are_never_errors_whatever_their_annotations() {
        let svc = lb("a")
            .spec(|s| s.type_ = Some("NodePort".into()))
            .annotated(LOAD_BALANCER_IPS_ANNOTATION, "not-an-ip");
        assert!(matches!(read(&svc), Ok(Served::NotOurs(_))));
    }

    #[test]
    fn spec_load_balancer_ip_requests_that_address() {
        let svc = lb("a").spec(|s| s.load_balancer_ip = Some("198.51.100.7".into()));
        assert_eq!(request(&svc).requested, vec![ip("198.51.100.7")]);
        let empty = lb("a").spec(|s| s.load_balancer_ip = Some(String::new()));
        assert!(request(&empty).requested.is_empty());
    }

    #[test]
    fn the_annotation_requests_one_address_per_family() {
        let svc = lb("a")
            .families("RequireDualStack", &["IPv6", "IPv4"])
            .annotated(LOAD_BALANCER_IPS_ANNOTATION, "2001:db8::7, 198.51.100.7");
        let request = request(&svc);
        assert_eq!(
            request.requested,
            vec![ip("2001:db8::7"), ip("198.51.100.7")]
        );
        assert_eq!(request.families, FamilyPolicy::RequireDual(Family::V6));
    }

    #[test]
    fn metallb_annotation_spellings_are_read_as_aliases() {
        for (pool, ips, shared) in [
            (
                "metallb.universe.tf/address-pool",
                "metallb.universe.tf/loadBalancerIPs",
                "metallb.universe.tf/allow-shared-ip",
            ),
            (
                "metallb.io/address-pool",
                "metallb.io/loadBalancerIPs",
                "metallb.io/allow-shared-ip",
            ),
        ] {
            let svc = lb("a")
                .annotated(pool, "expensive")
                .annotated(ips, "198.51.100.7")
                .annotated(shared, "dns");
            let request = request(&svc);
            assert_eq!(request.pool.as_deref(), Some("expensive"), "{pool}");
            assert_eq!(request.requested, vec![ip("198.51.100.7")], "{ips}");
            assert_eq!(request.sharing, Some(SharingKey("dns".into())), "{shared}");
        }
    }

    #[test]
    fn the_same_request_written_twice_is_fine_when_it_agrees() {
        let svc = lb("a")
            .spec(|s| s.load_balancer_ip = Some("198.51.100.7".into()))
            .annotated(LOAD_BALANCER_IPS_ANNOTATION, "198.51.100.7")
            .annotated("metallb.universe.tf/loadBalancerIPs", " 198.51.100.7 ")
            .annotated(ADDRESS_POOL_ANNOTATION, "default")
            .annotated("metallb.io/address-pool", "default");
        let request = request(&svc);
        assert_eq!(request.requested, vec![ip("198.51.100.7")]);
        assert_eq!(request.pool.as_deref(), Some("default"));
    }

    #[test]
    fn the_same_request_written_twice_differently_names_both_places() {
        let svc = lb("a")
            .spec(|s| s.load_balancer_ip = Some("198.51.100.7".into()))
            .annotated(LOAD_BALANCER_IPS_ANNOTATION, "198.51.100.8");
        assert_eq!(
            error(&svc),
            "Service web/a: spec.loadBalancerIP says \"198.51.100.7\" but annotation ferrolb.io/loadBalancerIPs says \"198.51.100.8\"; remove one or make them agree"
        );
        let svc = lb("a")
            .annotated(ADDRESS_POOL_ANNOTATION, "cheap")
            .annotated("metallb.universe.tf/address-pool", "expensive");
        assert_eq!(
            error(&svc),
            "Service web/a: annotation ferrolb.io/address-pool says \"cheap\" but annotation metallb.universe.tf/address-pool says \"expensive\"; remove one or make them agree"
        );
        let svc = lb("a")
            .annotated("metallb.io/allow-shared-ip", "dns")
            .annotated("metallb.universe.tf/allow-shared-ip", "web");
        let err = read(&svc).unwrap_err();
        assert_eq!(err.label(), "conflicting_requests");
        assert_eq!(
            err.to_string(),
            "Service web/a: annotation metallb.io/allow-shared-ip says \"dns\" but annotation metallb.universe.tf/allow-shared-ip says \"web\"; remove one or make them agree"
        );
    }

    #[test]
    fn empty_annotations_count_as_unset() {
        let svc = lb("a")
            .annotated(ADDRESS_POOL_ANNOTATION, "")
            .annotated("metallb.io/address-pool", "default")
            .annotated(ALLOW_SHARED_IP_ANNOTATION, "")
            .annotated(LOAD_BALANCER_IPS_ANNOTATION, " ");
        let request = request(&svc);
        assert_eq!(request.pool.as_deref(), Some("default"));
        assert_eq!(request.sharing, None);
        assert!(request.requested.is_empty());
    }

    #[test]
    fn unparsable_requested_addresses_are_refused() {
        let svc = lb("a").annotated(LOAD_BALANCER_IPS_ANNOTATION, "198.51.100.7,198.51.100.300");
        assert_eq!(
            error(&svc),
            "Service web/a: annotation ferrolb.io/loadBalancerIPs: \"198.51.100.300\" is not an IP address"
        );
        let svc = lb("a").spec(|s| s.load_balancer_ip = Some("web.example.com".into()));
        assert_eq!(
            error(&svc),
            "Service web/a: spec.loadBalancerIP: \"web.example.com\" is not an IP address"
        );
    }

    #[test]
    fn two_requested_addresses_of_one_family_are_refused() {
        let svc = lb("a")
            .families("PreferDualStack", &["IPv4", "IPv6"])
            .annotated(
                LOAD_BALANCER_IPS_ANNOTATION,
                "198.51.100.7,2001:db8::7,198.51.100.8",
            );
        let err = read(&svc).unwrap_err();
        assert_eq!(err.label(), "two_ips_of_one_family");
        assert_eq!(
            err.to_string(),
            "Service web/a: annotation ferrolb.io/loadBalancerIPs requests two IPv4 addresses (198.51.100.7 and 198.51.100.8); a Service gets at most one per family"
        );
    }

    #[test]
    fn a_requested_address_must_be_of_a_family_of_the_service() {
        let svc = lb("a").annotated(LOAD_BALANCER_IPS_ANNOTATION, "2001:db8::7");
        assert_eq!(
            error(&svc),
            "Service web/a: annotation ferrolb.io/loadBalancerIPs requests 2001:db8::7, an IPv6 address, but spec.ipFamilies is [IPv4]"
        );
        let svc = lb("a").annotated(LOAD_BALANCER_IPS_ANNOTATION, "198.51.100.7,2001:db8::7");
        assert_eq!(read(&svc).unwrap_err().label(), "ip_family_not_served");
    }

    #[test]
    fn prefer_dual_stack_with_one_family_is_single_stack() {
        // What the API server fills in on a single-stack cluster.
        let svc = lb("a").families("PreferDualStack", &["IPv6"]);
        assert_eq!(request(&svc).families, FamilyPolicy::Single(Family::V6));
        let svc = lb("a").families("PreferDualStack", &["IPv4", "IPv6"]);
        assert_eq!(request(&svc).families, FamilyPolicy::PreferDual(Family::V4));
    }

    #[test]
    fn families_not_filled_in_default_to_single_stack_of_the_requested_family() {
        let svc = lb("a").spec(|s| {
            s.ip_families = None;
            s.ip_family_policy = None;
        });
        assert_eq!(request(&svc).families, FamilyPolicy::Single(Family::V4));
        let svc = lb("a")
            .spec(|s| {
                s.ip_families = None;
                s.ip_family_policy = None;
            })
            .annotated(LOAD_BALANCER_IPS_ANNOTATION, "2001:db8::7");
        assert_eq!(request(&svc).families, FamilyPolicy::Single(Family::V6));
        let svc = lb("a")
            .spec(|s| {
                s.ip_families = None;
                s.ip_family_policy = Some("RequireDualStack".into());
            })
            .annotated(LOAD_BALANCER_IPS_ANNOTATION, "198.51.100.7,2001:db8::7");
        let request = request(&svc);
        assert_eq!(request.families, FamilyPolicy::RequireDual(Family::V4));
        assert_eq!(request.requested.len(), 2);
    }

    #[test]
    fn local_traffic_policy_is_read() {
        let svc = lb("a").spec(|s| s.external_traffic_policy = Some("Local".into()));
        assert_eq!(request(&svc).traffic_policy, TrafficPolicy::Local);
    }

    #[test]
    fn values_kubernetes_does_not_define_are_refused_by_field() {
        let svc = lb("a").spec(|s| s.external_traffic_policy = Some("Nearest".into()));
        assert_eq!(
            error(&svc),
            "Service web/a: spec.externalTrafficPolicy: unknown value \"Nearest\""
        );
        let svc = lb("a").families("DualStackPlease", &["IPv4"]);
        assert_eq!(
            error(&svc),
            "Service web/a: spec.ipFamilyPolicy: unknown value \"DualStackPlease\""
        );
        let svc = lb("a").families("SingleStack", &["IPv5"]);
        assert_eq!(
            error(&svc),
            "Service web/a: spec.ipFamilies: unknown value \"IPv5\""
        );
        let svc = lb("a").spec(|s| s.ports.as_mut().unwrap()[0].protocol = Some("QUIC".into()));
        assert_eq!(
            error(&svc),
            "Service web/a: spec.ports[].protocol: unknown value \"QUIC\""
        );
        let svc = lb("a").spec(|s| s.ports.as_mut().unwrap()[0].port = 70000);
        let err = read(&svc).unwrap_err();
        assert_eq!(err.label(), "bad_port");
        assert_eq!(
            err.to_string(),
            "Service web/a: spec.ports[0].port: 70000 is not a port number"
        );
    }

    #[test]
    fn an_object_without_a_name_is_not_served() {
        let mut svc = lb("a");
        svc.metadata.name = None;
        assert_eq!(read(&svc), Ok(Served::NotOurs(NotServed::Unnamed)));
    }
}
