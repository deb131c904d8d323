//! What one Service asks of ferrolb, read from its spec and annotations. This
//! is the only file of the crate that names a Kubernetes type.

use std::collections::BTreeMap;
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
}
