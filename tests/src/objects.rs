//! Builders for the objects a real cluster's kubelets and controller-manager
//! would create, which the tests create by hand: Nodes, Services,
//! EndpointSlices, and fresh namespaces.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Namespace, Node, NodeAddress, NodeCondition, NodeStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::control_plane::unique;

/// Creates a namespace with a unique name starting with `prefix`.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = unique(prefix);
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    name
}

/// A Ready Node named `name` with an internal address, as a kubelet would
/// register it.
pub fn node(name: &str, address: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/hostname".to_owned(),
                name.to_owned(),
            )])),
            ..Default::default()
        },
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".into(),
                address: address.into(),
            }]),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A `type: LoadBalancer` Service builder.
#[derive(Debug, Clone)]
pub struct LoadBalancer {
    service: Service,
}

impl LoadBalancer {
    /// A LoadBalancer Service `name` exposing TCP port 80 and selecting
    /// `app=<name>`.
    pub fn new(name: &str) -> LoadBalancer {
        LoadBalancer {
            service: Service {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    ..Default::default()
                },
                spec: Some(ServiceSpec {
                    type_: Some("LoadBalancer".into()),
                    selector: Some(BTreeMap::from([("app".to_owned(), name.to_owned())])),
                    ports: Some(vec![ServicePort {
                        name: Some("http".into()),
                        port: 80,
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        }
    }

    fn spec(&mut self) -> &mut ServiceSpec {
        self.service.spec.get_or_insert_with(Default::default)
    }

    /// Sets an annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> LoadBalancer {
        self.service
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(key.to_owned(), value.to_owned());
        self
    }

    /// Replaces the ports with these `(port, protocol)` pairs.
    pub fn ports(mut self, ports: &[(i32, &str)]) -> LoadBalancer {
        self.spec().ports = Some(
            ports
                .iter()
                .map(|(port, protocol)| ServicePort {
                    name: Some(format!("p{port}-{}", protocol.to_lowercase())),
                    port: *port,
                    protocol: Some((*protocol).to_owned()),
                    ..Default::default()
                })
                .collect(),
        );
        self
    }

    /// Sets `spec.ipFamilyPolicy` and `spec.ipFamilies`.
    pub fn families(mut self, policy: &str, families: &[&str]) -> LoadBalancer {
        let spec = self.spec();
        spec.ip_family_policy = Some(policy.to_owned());
        spec.ip_families = Some(families.iter().map(|f| (*f).to_owned()).collect());
        self
    }

    /// Sets `spec.externalTrafficPolicy: Local`.
    pub fn local_traffic(mut self) -> LoadBalancer {
        self.spec().external_traffic_policy = Some("Local".into());
        self
    }

    /// Sets `spec.loadBalancerClass`.
    pub fn class(mut self, class: &str) -> LoadBalancer {
        self.spec().load_balancer_class = Some(class.to_owned());
        self
    }

    /// Sets `spec.allocateLoadBalancerNodePorts: false`, as benchmarks do to
    /// stay within the node-port range.
    pub fn without_node_ports(mut self) -> LoadBalancer {
        self.spec().allocate_load_balancer_node_ports = Some(false);
        self
    }

    /// The Service object.
    pub fn build(self) -> Service {
        self.service
    }
}

/// An EndpointSlice for Service `service` with one endpoint per
/// `(address, node, ready)`, as the endpointslice controller would write it.
pub fn endpoint_slice(service: &str, endpoints: &[(&str, &str, bool)]) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{service}-")),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/service-name".to_owned(),
                service.to_owned(),
            )])),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: Some(
            endpoints
                .iter()
                .map(|(address, node, ready)| Endpoint {
                    addresses: vec![(*address).to_owned()],
                    node_name: Some((*node).to_owned()),
                    conditions: Some(EndpointConditions {
                        ready: Some(*ready),
                        serving: Some(*ready),
                        terminating: Some(false),
                    }),
                    ..Default::default()
                })
                .collect(),
        ),
        ports: None,
    }
}

/// Writes ferrolb's ConfigMap (`ferrolb-system/ferrolb-config`) with `config`
/// as its `config` key, creating the namespace if needed.
pub async fn apply_config(client: &Client, config: &str) {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Patch, PatchParams};
    let namespaces = Api::<Namespace>::all(client.clone());
    if namespaces
        .get_opt("ferrolb-system")
        .await
        .expect("get namespace")
        .is_none()
    {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some("ferrolb-system".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("create ferrolb-system");
    }
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("ferrolb-config".into()),
            namespace: Some("ferrolb-system".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("config".to_owned(), config.to_owned())])),
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(client.clone(), "ferrolb-system")
        .patch(
            "ferrolb-config",
            &PatchParams::apply("ferrolb-e2e").force(),
            &Patch::Apply(&cm),
        )
        .await
        .expect("apply ferrolb config");
}
