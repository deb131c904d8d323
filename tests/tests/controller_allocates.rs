//! Fifty Services of every kind against one config: each gets exactly the
//! address the rules give it (requested ones theirs, pool-annotated ones from
//! their pool, auto ones the lowest free of the first auto-assign pool that
//! fits, shared ones one address without a port clash), `kubectl get svc`
//! shows it, each allocation has an `IPAllocated` event, each refusal an
//! `AllocationFailed` event saying why, and no address is held by two
//! Services that may not share it.

mod controller_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use controller_support::{
    Controller, PATIENCE, addresses, configured, create_all, events, external_ips, requesting,
    wait_event,
};
use ferrolb_e2e::objects::{LoadBalancer, namespace};
use ferrolb_e2e::wait_for;
use k8s_openapi::api::core::v1::Service;

const CONFIG: &str = "\
address-pools:
- name: web
  protocol: layer2
  avoid-buggy-ips: true
  addresses:
  - 198.51.100.0/26
- name: reserved
  protocol: layer2
  auto-assign: false
  addresses:
  - 198.51.100.200-198.51.100.220
- name: v6
  protocol: layer2
  addresses:
  - 2001:db8:1::/64
- name: dual
  protocol: layer2
  addresses:
  - 203.0.113.0/28
  - 2001:db8:2::/120
";

const IPS: &str = "ferrolb.io/loadBalancerIPs";
const POOL: &str = "ferrolb.io/address-pool";
const SHARE: &str = "ferrolb.io/allow-shared-ip";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an IP address")
}

fn ips(list: &[&str]) -> BTreeSet<IpAddr> {
    list.iter().map(|s| ip(s)).collect()
}

fn v6_only(name: &str) -> LoadBalancer {
    LoadBalancer::new(name).families("SingleStack", &["IPv6"])
}

/// Who may hold an address together: the sharing key and the ports of each
/// Service, as created.
fn sharing_of(service: &Service) -> (Option<String>, BTreeSet<(i32, String)>) {
    let key = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SHARE).cloned());
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .map(|ports| {
            ports
                .iter()
                .map(|p| (p.port, p.protocol.clone().unwrap_or_else(|| "TCP".into())))
                .collect()
        })
        .unwrap_or_default();
    (key, ports)
}

#[tokio::test]
async fn every_service_gets_the_address_the_rules_give_it_and_none_is_handed_out_twice() {
    let (cp, client) = configured(CONFIG).await;
    let controller = Controller::start(&cp, "allocates");
    let ns = namespace(&client, "alloc").await;
    let key = |name: &str| format!("{ns}/{name}");
    let mut created: BTreeMap<String, Service> = BTreeMap::new();

    // 1. Services asking for addresses by name, in every way a user can,
    //    none contending with another.
    let requested = vec![
        requesting(LoadBalancer::new("spec-a").build(), "198.51.100.10"),
        requesting(LoadBalancer::new("spec-b").build(), "198.51.100.11"),
        LoadBalancer::new("annotated")
            .annotation(IPS, "198.51.100.20")
            .build(),
        LoadBalancer::new("metallb-spelling")
            .annotation("metallb.universe.tf/loadBalancerIPs", "198.51.100.21")
            .build(),
        // From a pool that never auto-assigns: asking by name is how.
        LoadBalancer::new("ask-reserved-annotated")
            .annotation(IPS, "198.51.100.205")
            .build(),
        requesting(
            LoadBalancer::new("ask-reserved-spec").build(),
            "198.51.100.206",
        ),
        v6_only("v6-requested")
            .annotation(IPS, "2001:db8:1::100")
            .build(),
        LoadBalancer::new("dual-requested")
            .families("RequireDualStack", &["IPv4", "IPv6"])
            .annotation(IPS, "203.0.113.5,2001:db8:2::5")
            .build(),
        // Two Services sharing one address: same key, different ports.
        requesting(
            LoadBalancer::new("dns-udp")
                .annotation(SHARE, "dns")
                .ports(&[(53, "UDP")])
                .build(),
            "198.51.100.40",
        ),
        LoadBalancer::new("dns-tcp")
            .annotation(SHARE, "dns")
            .annotation(IPS, "198.51.100.40")
            .ports(&[(53, "TCP")])
            .build(),
    ];
    let exact: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
        ("spec-a", vec!["198.51.100.10"]),
        ("spec-b", vec!["198.51.100.11"]),
        ("annotated", vec!["198.51.100.20"]),
        ("metallb-spelling", vec!["198.51.100.21"]),
        ("ask-reserved-annotated", vec!["198.51.100.205"]),
        ("ask-reserved-spec", vec!["198.51.100.206"]),
        ("v6-requested", vec!["2001:db8:1::100"]),
        ("dual-requested", vec!["203.0.113.5", "2001:db8:2::5"]),
        ("dns-udp", vec!["198.51.100.40"]),
        ("dns-tcp", vec!["198.51.100.40"]),
    ]);
    remember(&mut created, &ns, &requested);
    create_all(&client, &ns, requested).await;
    wait_for("every requested address", PATIENCE, || async {
        let shown = external_ips(&cp);
        let missing: Vec<String> = exact
            .keys()
            .filter(|name| addresses(shown.get(&key(name)).map_or("", String::as_str)).is_empty())
            .map(|name| name.to_string())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("still pending: {missing:?}"))
        }
    })
    .await;

    // 2. Requests the rules refuse, now that the addresses above are held.
    let refused = vec![
        requesting(
            LoadBalancer::new("dns-udp-clash")
                .annotation(SHARE, "dns")
                .ports(&[(53, "UDP")])
                .build(),
            "198.51.100.40",
        ),
        requesting(
            LoadBalancer::new("dns-other-key")
                .annotation(SHARE, "other")
                .ports(&[(5353, "UDP")])
                .build(),
            "198.51.100.40",
        ),
        requesting(LoadBalancer::new("taken").build(), "198.51.100.10"),
        requesting(LoadBalancer::new("outside").build(), "203.0.113.100"),
        LoadBalancer::new("unknown-pool")
            .annotation(POOL, "nope")
            .build(),
        LoadBalancer::new("v4-from-v6-pool")
            .annotation(POOL, "v6")
            .build(),
    ];
    let failures = [
        (
            "dns-udp-clash",
            format!("198.51.100.40 already exposes 53/UDP for {ns}/dns-udp"),
        ),
        (
            "dns-other-key",
            "198.51.100.40 is shared under key \"dns\"".to_owned(),
        ),
        ("taken", format!("198.51.100.10 is in use by {ns}/spec-a")),
        ("outside", "203.0.113.100 is in no address pool".to_owned()),
        (
            "unknown-pool",
            "there is no address pool named \"nope\"".to_owned(),
        ),
        (
            "v4-from-v6-pool",
            "pool v6 has no IPv4 addresses".to_owned(),
        ),
    ];
    remember(&mut created, &ns, &refused);
    create_all(&client, &ns, refused).await;

    // 3. Pool-annotated and automatic Services, all at once: their order is
    //    the controller's, so each group is checked as the set of lowest free
    //    addresses it must take.
    let mut rest = Vec::new();
    for i in 1..=3 {
        rest.push(
            LoadBalancer::new(&format!("reserved-{i}"))
                .annotation(POOL, "reserved")
                .build(),
        );
    }
    for i in 1..=2 {
        rest.push(
            v6_only(&format!("v6-pool-{i}"))
                .annotation(POOL, "v6")
                .build(),
        );
    }
    for i in 1..=3 {
        rest.push(v6_only(&format!("v6-auto-{i}")).build());
    }
    for i in 1..=16 {
        rest.push(LoadBalancer::new(&format!("auto-{i}")).build());
    }
    rest.push(
        LoadBalancer::new("share-http")
            .annotation(SHARE, "web")
            .ports(&[(80, "TCP")])
            .build(),
    );
    rest.push(
        LoadBalancer::new("share-https")
            .annotation(SHARE, "web")
            .ports(&[(443, "TCP")])
            .build(),
    );
    rest.push(
        LoadBalancer::new("share-http-again")
            .annotation(SHARE, "web")
            .ports(&[(80, "TCP")])
            .build(),
    );
    for i in 1..=3 {
        rest.push(
            LoadBalancer::new(&format!("dual-require-{i}"))
                .families("RequireDualStack", &["IPv4", "IPv6"])
                .build(),
        );
    }
    for i in 1..=2 {
        rest.push(
            LoadBalancer::new(&format!("dual-prefer-{i}"))
                .families("PreferDualStack", &["IPv4", "IPv6"])
                .build(),
        );
    }
    rest.push(
        LoadBalancer::new("dual-prefer-v6-first")
            .families("PreferDualStack", &["IPv6", "IPv4"])
            .build(),
    );
    rest.push(
        LoadBalancer::new("other-class")
            .class("example.com/other")
            .build(),
    );
    remember(&mut created, &ns, &rest);
    create_all(&client, &ns, rest).await;
    assert_eq!(created.len(), 50);

    let names = |prefix: &str| -> Vec<String> {
        created
            .keys()
            .filter(|k| k.starts_with(&format!("{ns}/{prefix}")))
            .cloned()
            .collect()
    };
    let refused_names: BTreeSet<String> = failures
        .iter()
        .map(|(n, _)| key(n))
        .chain([key("other-class")])
        .collect();
    wait_for(
        "every Service the rules allow to have its addresses",
        PATIENCE,
        || async {
            let shown = external_ips(&cp);
            let pending: Vec<&String> = created
                .keys()
                .filter(|k| !refused_names.contains(*k))
                .filter(|k| addresses(shown.get(*k).map_or("", String::as_str)).is_empty())
                .collect();
            if pending.is_empty() {
                Ok(())
            } else {
                Err(format!("still pending: {pending:?}"))
            }
        },
    )
    .await;
    for (name, why) in &failures {
        wait_event(&cp, &key(name), "AllocationFailed", why).await;
    }
    // The refusals are out, so the controller has seen every Service.
    let shown = external_ips(&cp);
    let held = |k: &str| addresses(shown.get(k).map_or("", String::as_str));

    // Requested addresses: exactly those.
    for (name, want) in &exact {
        let want: Vec<IpAddr> = want.iter().map(|s| ip(s)).collect();
        assert_eq!(held(&key(name)), want, "{name}");
    }
    // Refused ones, and the Service of another class, stay pending.
    for name in &refused_names {
        assert_eq!(shown[name], "<pending>", "{name}");
    }

    // The auto-assign:false pool gives out its lowest free addresses only to
    // Services that name it.
    let group =
        |prefix: &str| -> BTreeSet<IpAddr> { names(prefix).iter().flat_map(|k| held(k)).collect() };
    for k in names("reserved-") {
        assert_eq!(held(&k).len(), 1, "{k}");
    }
    assert_eq!(
        group("reserved-"),
        ips(&["198.51.100.200", "198.51.100.201", "198.51.100.202"])
    );

    // IPv6-only Services: the v6 pool is the first auto-assign pool with IPv6
    // addresses, so both the automatic and the pool-annotated ones take its
    // lowest free addresses (the requested ::100 is not among them).
    let mut v6: BTreeSet<IpAddr> = group("v6-pool-");
    v6.extend(group("v6-auto-"));
    for k in names("v6-pool-").iter().chain(&names("v6-auto-")) {
        assert_eq!(held(k).len(), 1, "{k}");
    }
    assert_eq!(
        v6,
        ips(&[
            "2001:db8:1::",
            "2001:db8:1::1",
            "2001:db8:1::2",
            "2001:db8:1::3",
            "2001:db8:1::4"
        ])
    );

    // IPv4 automatic Services take the lowest free addresses of web, skipping
    // .0 (avoid-buggy-ips) and the requested .10, .11, .20, .21, .40. The
    // three "web"-sharing Services need two addresses: the two that expose
    // port 80 cannot share, and the one on 443 joins one of them.
    let (http, http_again, https) = (
        held(&key("share-http")),
        held(&key("share-http-again")),
        held(&key("share-https")),
    );
    assert_eq!(http.len(), 1);
    assert_eq!(http_again.len(), 1);
    assert_ne!(http, http_again, "two Services exposing port 80 share");
    assert!(https == http || https == http_again, "{https:?}");
    let mut auto_v4: BTreeSet<IpAddr> = group("auto-");
    for k in names("auto-") {
        assert_eq!(held(&k).len(), 1, "{k}");
    }
    assert_eq!(auto_v4.len(), 16, "sixteen Services, sixteen addresses");
    auto_v4.extend(group("share-"));
    let mut lowest: BTreeSet<IpAddr> = (1..=9)
        .chain(12..=19)
        .map(|i| ip(&format!("198.51.100.{i}")))
        .collect();
    lowest.insert(ip("198.51.100.22"));
    assert_eq!(auto_v4, lowest);

    // Dual-stack Services (required or preferred, either family first): the
    // dual pool is the first auto-assign pool with both families; each gets
    // one of each, the lowest free (203.0.113.0 is allowed: that pool does
    // not avoid buggy addresses).
    let duals = names("dual-prefer-")
        .into_iter()
        .chain(names("dual-require-"))
        .collect::<Vec<_>>();
    assert_eq!(duals.len(), 6);
    let (mut dual_v4, mut dual_v6) = (BTreeSet::new(), BTreeSet::new());
    for k in &duals {
        let held = held(k);
        assert_eq!(held.len(), 2, "{k}: {held:?}");
        assert!(held[0].is_ipv4() && held[1].is_ipv6(), "{k}: {held:?}");
        dual_v4.insert(held[0]);
        dual_v6.insert(held[1]);
    }
    assert_eq!(
        dual_v4,
        ips(&[
            "203.0.113.0",
            "203.0.113.1",
            "203.0.113.2",
            "203.0.113.3",
            "203.0.113.4",
            "203.0.113.6"
        ])
    );
    assert_eq!(
        dual_v6,
        ips(&[
            "2001:db8:2::",
            "2001:db8:2::1",
            "2001:db8:2::2",
            "2001:db8:2::3",
            "2001:db8:2::4",
            "2001:db8:2::6"
        ])
    );

    // No address is held by two Services that may not share it.
    let mut holders: BTreeMap<IpAddr, Vec<&String>> = BTreeMap::new();
    for k in created.keys() {
        for a in held(k) {
            holders.entry(a).or_default().push(k);
        }
    }
    for (address, who) in &holders {
        for (i, a) in who.iter().enumerate() {
            for b in &who[i + 1..] {
                let (ka, pa) = sharing_of(&created[*a]);
                let (kb, pb) = sharing_of(&created[*b]);
                assert!(
                    ka.is_some() && ka == kb && pa.is_disjoint(&pb),
                    "{address} is held by {a} and {b}, which may not share it"
                );
            }
        }
    }

    // Every allocation was announced with the address and its pool, and
    // nothing moved.
    let events = events(&cp);
    for k in created.keys().filter(|k| !refused_names.contains(*k)) {
        let shown: Vec<String> = held(k).iter().map(ToString::to_string).collect();
        let note = format!("Assigned {}", shown.join(", "));
        assert!(
            events.iter().any(|e| e.object == format!("Service {k}")
                && e.reason == "IPAllocated"
                && e.type_ == "Normal"
                && e.message.starts_with(&note)),
            "no IPAllocated event \"{note} …\" on {k}"
        );
    }
    assert!(
        !events.iter().any(|e| e.reason == "IPChanged"),
        "an address moved: {events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| e.object == format!("Service {}", key("other-class"))),
        "ferrolb spoke about a Service of another class"
    );

    // The pool gauges count what kubectl shows.
    for (pool, family, in_use) in [
        ("web", "ipv4", 23.0),
        ("reserved", "ipv4", 5.0),
        ("v6", "ipv6", 6.0),
        ("dual", "ipv4", 7.0),
        ("dual", "ipv6", 7.0),
    ] {
        controller
            .wait_metric(
                &format!("ferrolb_pool_addresses_in_use{{pool=\"{pool}\",family=\"{family}\"}}"),
                in_use,
            )
            .await;
    }
}

fn remember(created: &mut BTreeMap<String, Service>, ns: &str, services: &[Service]) {
    for s in services {
        let name = s.metadata.name.clone().expect("named");
        created.insert(format!("{ns}/{name}"), s.clone());
    }
}
