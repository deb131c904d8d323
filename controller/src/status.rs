//! A Service's `status.loadBalancer` as ferrolb writes it: the status
//! ferrolb wants, and whether it differs from what the Service shows (read
//! with `ferrolb_config::request::ingress`).
//! Pure: no writes.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, Service};

/// The status ferrolb writes for `addresses` (IPv4 first): one ingress entry
/// per address with `ipMode: VIP`, since traffic arrives with the external
/// address as its destination.
pub fn desired(addresses: &[IpAddr]) -> LoadBalancerStatus {
    let mut sorted = addresses.to_vec();
    sorted.sort_by_key(|ip| ip.is_ipv6());
    LoadBalancerStatus {
        ingress: (!sorted.is_empty()).then(|| {
            sorted
                .iter()
                .map(|ip| LoadBalancerIngress {
                    ip: Some(ip.to_string()),
                    ip_mode: Some("VIP".into()),
                    ..Default::default()
                })
                .collect()
        }),
    }
}

/// Whether the Service's current load-balancer status differs from
/// `desired`, so that a write is needed. Comparing whole statuses (not only
/// addresses) also repairs a missing `ipMode` or a foreign entry.
pub fn differs(service: &Service, desired: &LoadBalancerStatus) -> bool {
    let current = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.clone())
        .unwrap_or_default();
    let empty = |s: &LoadBalancerStatus| s.ingress.as_ref().is_none_or(Vec::is_empty);
    !(current == *desired || (empty(&current) && empty(desired)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServiceStatus;

    fn with_status(status: LoadBalancerStatus) -> Service {
        Service {
            status: Some(ServiceStatus {
                load_balancer: Some(status),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn desired_status_lists_ipv4_first_with_vip_mode() {
        let v6: IpAddr = "2001:db8::5".parse().unwrap();
        let v4: IpAddr = "198.51.100.5".parse().unwrap();
        let status = desired(&[v6, v4]);
        let ingress = status.ingress.unwrap();
        assert_eq!(ingress[0].ip.as_deref(), Some("198.51.100.5"));
        assert_eq!(ingress[1].ip.as_deref(), Some("2001:db8::5"));
        assert!(ingress.iter().all(|i| i.ip_mode.as_deref() == Some("VIP")));
    }

    #[test]
    fn written_status_reads_back_as_the_same_addresses() {
        let addrs: Vec<IpAddr> = vec![
            "198.51.100.5".parse().unwrap(),
            "2001:db8::5".parse().unwrap(),
        ];
        let svc = with_status(desired(&addrs));
        assert_eq!(ferrolb_config::request::ingress(&svc), addrs);
        assert!(!differs(&svc, &desired(&addrs)));
    }

    #[test]
    fn a_status_without_ip_mode_needs_a_write() {
        let svc = with_status(LoadBalancerStatus {
            ingress: Some(vec![LoadBalancerIngress {
                ip: Some("198.51.100.5".into()),
                ..Default::default()
            }]),
        });
        assert!(differs(&svc, &desired(&["198.51.100.5".parse().unwrap()])));
    }

    #[test]
    fn no_status_and_no_addresses_need_no_write() {
        assert!(!differs(&Service::default(), &desired(&[])));
        assert!(!differs(
            &with_status(LoadBalancerStatus {
                ingress: Some(vec![])
            }),
            &desired(&[])
        ));
    }

    #[test]
    fn hostname_entries_are_not_addresses() {
        let svc = with_status(LoadBalancerStatus {
            ingress: Some(vec![LoadBalancerIngress {
                hostname: Some("lb.example".into()),
                ..Default::default()
            }]),
        });
        assert!(ferrolb_config::request::ingress(&svc).is_empty());
    }
}
