//! What of the cluster's objects the speaker keeps in memory: it caches
//! every Node, EndpointSlice and Service of the cluster on every node, so
//! each is cut to the fields [`crate::watch`] reads before it is stored
//! (Services by [`ferrolb_config::trim::keep_read_fields`]). A Node's image
//! list, an EndpointSlice's addresses and ports, and everyone's managed
//! fields and annotations are most of their size and never read here.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The label naming an EndpointSlice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Keeps a Node's name, labels (pool node selectors match them), its
/// conditions' type and status, and its addresses.
pub fn node(node: &mut Node) {
    let meta = std::mem::take(&mut node.metadata);
    node.metadata = ObjectMeta {
        labels: meta.labels,
        ..identity(meta.name, meta.namespace, meta.uid, meta.resource_version)
    };
    node.spec = None;
    node.status = node.status.take().map(|status| NodeStatus {
        conditions: status.conditions.map(|conditions| {
            conditions
                .into_iter()
                .map(|c| NodeCondition {
                    type_: c.type_,
                    status: c.status,
                    ..NodeCondition::default()
                })
                .collect()
        }),
        addresses: status.addresses,
        ..NodeStatus::default()
    });
}

/// Keeps an EndpointSlice's Service label and, per endpoint, its
/// conditions and node.
pub fn endpoint_slice(slice: &mut EndpointSlice) {
    let meta = std::mem::take(&mut slice.metadata);
    let service = meta
        .labels
        .and_then(|mut labels| labels.remove_entry(SERVICE_NAME_LABEL));
    slice.metadata = ObjectMeta {
        labels: service.map(|entry| [entry].into()),
        ..identity(meta.name, meta.namespace, meta.uid, meta.resource_version)
    };
    slice.ports = None;
    for endpoint in slice.endpoints.iter_mut().flatten() {
        *endpoint = Endpoint {
            conditions: endpoint.conditions.take().map(|c| EndpointConditions {
                ready: c.ready,
                serving: c.serving,
                terminating: c.terminating,
            }),
            node_name: endpoint.node_name.take(),
            ..Endpoint::default()
        };
    }
}

/// Drops a Lease's managed fields: the speakers' records are few and small
/// but renewed often.
pub fn lease(lease: &mut Lease) {
    lease.metadata.managed_fields = None;
}

fn identity(
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
) -> ObjectMeta {
    ObjectMeta {
        name,
        namespace,
        uid,
        resource_version,
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{ContainerImage, NodeAddress, NodeSpec};
    use k8s_openapi::api::discovery::v1::EndpointPort;

    use super::*;

    #[test]
    fn a_node_keeps_its_labels_conditions_and_addresses_only() {
        let labels = BTreeMap::from([("zone".to_owned(), "a".to_owned())]);
        let mut whole = Node {
            metadata: ObjectMeta {
                name: Some("node-1".into()),
                labels: Some(labels.clone()),
                annotations: Some(BTreeMap::from([("x".into(), "y".repeat(4096))])),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: Some("10.244.0.0/24".into()),
                ..NodeSpec::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "NetworkUnavailable".into(),
                    status: "True".into(),
                    message: Some("m".repeat(1000)),
                    ..NodeCondition::default()
                }]),
                addresses: Some(vec![NodeAddress {
                    type_: "InternalIP".into(),
                    address: "192.0.2.10".into(),
                }]),
                images: Some(vec![ContainerImage::default(); 100]),
                ..NodeStatus::default()
            }),
        };
        node(&mut whole);
        assert_eq!(whole.metadata.labels, Some(labels));
        assert_eq!(whole.metadata.annotations, None);
        assert_eq!(whole.spec, None);
        let status = whole.status.unwrap();
        assert_eq!(status.images, None);
        assert_eq!(status.addresses.unwrap()[0].address, "192.0.2.10");
        let condition = &status.conditions.unwrap()[0];
        assert_eq!(
            (condition.type_.as_str(), condition.status.as_str()),
            ("NetworkUnavailable", "True")
        );
        assert_eq!(condition.message, None);
    }

    #[test]
    fn an_endpoint_slice_keeps_its_service_and_each_endpoints_node_and_conditions() {
        let mut slice = EndpointSlice {
            metadata: ObjectMeta {
                name: Some("web-abc".into()),
                namespace: Some("shop".into()),
                labels: Some(BTreeMap::from([
                    (SERVICE_NAME_LABEL.to_owned(), "web".to_owned()),
                    ("other".to_owned(), "x".to_owned()),
                ])),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            endpoints: Some(vec![Endpoint {
                addresses: vec!["10.244.1.10".into()],
                conditions: Some(EndpointConditions {
                    ready: Some(false),
                    serving: Some(true),
                    terminating: Some(true),
                }),
                node_name: Some("node-2".into()),
                hostname: Some("h".into()),
                ..Endpoint::default()
            }]),
            ports: Some(vec![EndpointPort::default(); 10]),
        };
        endpoint_slice(&mut slice);
        assert_eq!(
            slice.metadata.labels,
            Some(BTreeMap::from([(
                SERVICE_NAME_LABEL.to_owned(),
                "web".to_owned()
            )]))
        );
        assert_eq!(slice.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(slice.ports, None);
        let endpoint = &slice.endpoints.as_ref().unwrap()[0];
        assert_eq!(endpoint.node_name.as_deref(), Some("node-2"));
        assert_eq!(endpoint.conditions.as_ref().unwrap().serving, Some(true));
        assert!(endpoint.addresses.is_empty());
        assert_eq!(endpoint.hostname, None);
    }
}
