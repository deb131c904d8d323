//! What of a Service ferrolb keeps in memory. Both binaries cache every
//! Service of the cluster; anyone who may write a Service can make it large
//! (up to 256 KiB of annotations, plus the managed-fields bookkeeping), so a
//! cache of whole objects grows with what others store, not with what
//! ferrolb serves. [`keep_read_fields`] cuts a Service down to what
//! [`crate::request::read`] and the status and event code read.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::request::{self, Served};

/// Annotation prefixes ferrolb reads: its own and MetalLB's spellings.
pub const READ_ANNOTATION_PREFIXES: [&str; 3] =
    ["ferrolb.io/", "metallb.universe.tf/", "metallb.io/"];

/// Cuts `service` down to what ferrolb reads. A Service ferrolb serves (or
/// would, once a request error is fixed) keeps its spec, labels, status and
/// the annotations under [`READ_ANNOTATION_PREFIXES`]; any other Service
/// keeps only its identity, `spec.type`, `spec.loadBalancerClass` and its
/// status (a former LoadBalancer's addresses are released from it).
/// [`request::read`] decides the same on the cut object as on the whole one.
pub fn keep_read_fields(service: &mut Service) {
    let ours = !matches!(request::read(service), Ok(Served::NotOurs(_)));
    let meta = &mut service.metadata;
    if ours {
        meta.managed_fields = None;
        if let Some(annotations) = meta.annotations.as_mut() {
            annotations.retain(|name, _| is_read(name));
        }
        return;
    }
    service.metadata = identity(meta);
    service.spec = service.spec.take().map(|spec| ServiceSpec {
        type_: spec.type_,
        load_balancer_class: spec.load_balancer_class,
        ..ServiceSpec::default()
    });
}

fn is_read(annotation: &str) -> bool {
    READ_ANNOTATION_PREFIXES
        .iter()
        .any(|prefix| annotation.starts_with(prefix))
}

/// What names an object and orders its writes: the fields an event's
/// reference and a status patch use, and the creation time restores sort by.
fn identity(meta: &mut ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        uid: meta.uid.take(),
        resource_version: meta.resource_version.take(),
        creation_timestamp: meta.creation_timestamp.take(),
        deletion_timestamp: meta.deletion_timestamp.take(),
        annotations: None::<BTreeMap<String, String>>,
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        LoadBalancerIngress, LoadBalancerStatus, ServicePort, ServiceStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    use super::*;

    fn service(type_: &str) -> Service {
        let mut svc = Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("shop".into()),
                uid: Some("u-1".into()),
                resource_version: Some("42".into()),
                labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                annotations: Some(BTreeMap::from([
                    ("big.example.com/blob".into(), "x".repeat(100 * 1024)),
                    (
                        "kubectl.kubernetes.io/last-applied-configuration".into(),
                        "{}".into(),
                    ),
                    ("ferrolb.io/allow-shared-ip".into(), "k".into()),
                    ("metallb.universe.tf/address-pool".into(), "lan".into()),
                    ("metallb.io/loadBalancerIPs".into(), "198.51.100.7".into()),
                ])),
                managed_fields: Some(vec![ManagedFieldsEntry::default(); 3]),
                ..ObjectMeta::default()
            },
            ..Service::default()
        };
        svc.spec = Some(ServiceSpec {
            type_: Some(type_.into()),
            ip_families: Some(vec!["IPv4".into()]),
            ip_family_policy: Some("SingleStack".into()),
            external_traffic_policy: Some("Local".into()),
            selector: Some(BTreeMap::from([("app".into(), "web".into())])),
            ports: Some(vec![ServicePort {
                port: 80,
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        });
        svc.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some("198.51.100.7".into()),
                    ..LoadBalancerIngress::default()
                }]),
            }),
            ..ServiceStatus::default()
        });
        svc
    }

    #[test]
    fn a_served_service_keeps_what_read_uses_and_loses_foreign_annotations() {
        let whole = service("LoadBalancer");
        let mut cut = whole.clone();
        keep_read_fields(&mut cut);
        assert_eq!(request::read(&cut), request::read(&whole));
        assert!(matches!(request::read(&cut), Ok(Served::Ours(_))));
        let kept: Vec<&String> = cut.metadata.annotations.as_ref().unwrap().keys().collect();
        assert_eq!(
            kept,
            vec![
                "ferrolb.io/allow-shared-ip",
                "metallb.io/loadBalancerIPs",
                "metallb.universe.tf/address-pool"
            ]
        );
        assert_eq!(cut.metadata.managed_fields, None);
        assert_eq!(cut.spec, whole.spec);
        assert_eq!(cut.status, whole.status);
        assert_eq!(cut.metadata.labels, whole.metadata.labels);
    }

    #[test]
    fn a_service_of_another_type_keeps_only_its_identity_type_and_status() {
        for type_ in ["ClusterIP", "NodePort", "ExternalName"] {
            let whole = service(type_);
            let mut cut = whole.clone();
            keep_read_fields(&mut cut);
            assert_eq!(request::read(&cut), request::read(&whole), "{type_}");
            assert_eq!(
                cut.metadata,
                ObjectMeta {
                    name: Some("web".into()),
                    namespace: Some("shop".into()),
                    uid: Some("u-1".into()),
                    resource_version: Some("42".into()),
                    ..ObjectMeta::default()
                }
            );
            assert_eq!(
                cut.spec,
                Some(ServiceSpec {
                    type_: Some(type_.into()),
                    ..ServiceSpec::default()
                })
            );
            assert_eq!(cut.status, whole.status);
        }
    }

    #[test]
    fn a_service_of_another_class_is_cut_and_stays_not_ours() {
        let mut whole = service("LoadBalancer");
        whole.spec.as_mut().unwrap().load_balancer_class = Some("example.com/other".into());
        let mut cut = whole.clone();
        keep_read_fields(&mut cut);
        assert_eq!(request::read(&cut), request::read(&whole));
        assert_eq!(cut.metadata.annotations, None);
    }

    #[test]
    fn a_served_service_with_a_request_error_keeps_the_error() {
        let mut whole = service("LoadBalancer");
        whole
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("ferrolb.io/loadBalancerIPs".into(), "not-an-ip".into());
        let mut cut = whole.clone();
        keep_read_fields(&mut cut);
        assert!(request::read(&whole).is_err());
        assert_eq!(request::read(&cut), request::read(&whole));
    }
}
