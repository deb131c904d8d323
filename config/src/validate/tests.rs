//! Every rule of the config format, with the messages operators see.

use std::collections::BTreeMap;
use std::net::IpAddr;

use proptest::prelude::*;

use super::*;

fn errors(yaml: &str) -> Vec<String> {
    Config::from_yaml(yaml)
        .expect_err("the config should be refused")
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn validated(yaml: &str) -> Validated {
    match Config::from_yaml(yaml) {
        Ok(v) => v,
        Err(e) => panic!("the config should be accepted, but:\n{e}"),
    }
}

fn warnings(yaml: &str) -> Vec<String> {
    validated(yaml)
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn range(s: &str) -> AddressRange {
    s.parse().unwrap()
}

/// A one-pool config with these `addresses` entries.
fn one_pool(addresses: &[&str]) -> String {
    let mut yaml = "address-pools:\n- name: default\n  protocol: layer2\n  addresses:\n".to_owned();
    for a in addresses {
        yaml.push_str(&format!("  - {a}\n"));
    }
    yaml
}

const FULL: &str = r#"
address-pools:
- name: default
  protocol: layer2
  addresses:
  - 198.51.100.0/28
  - 198.51.100.100-198.51.100.120
  - 2001:db8:1::/64
- name: expensive
  protocol: layer2
  addresses:
  - 203.0.113.8/30
  auto-assign: false
  avoid-buggy-ips: true
  node-selectors:
  - match-labels:
      rack: frontend
    match-expressions:
    - key: network-speed
      operator: NotIn
      values: [slow]
  - match-expressions:
    - key: kubernetes.io/hostname
      operator: In
      values: [hostA, hostB]
    - key: edge
      operator: Exists
  interfaces: [eth0, bond0.100]
"#;

#[test]
fn a_full_config_reads_into_pools_in_the_order_written() {
    let v = validated(FULL);
    assert_eq!(v.warnings, vec![]);
    assert_eq!(
        v.config.pools,
        vec![
            Pool {
                name: PoolName("default".into()),
                ranges: vec![
                    range("198.51.100.0/28"),
                    range("198.51.100.100-198.51.100.120"),
                    range("2001:db8:1::/64"),
                ],
                auto_assign: true,
                avoid_buggy_ips: false,
                node_selectors: vec![],
                interfaces: vec![],
                service_allocation: None,
            },
            Pool {
                name: PoolName("expensive".into()),
                ranges: vec![range("203.0.113.8/30")],
                auto_assign: false,
                avoid_buggy_ips: true,
                node_selectors: vec![
                    NodeSelector {
                        match_labels: [("rack".to_owned(), "frontend".to_owned())].into(),
                        match_expressions: vec![LabelRequirement {
                            key: "network-speed".into(),
                            operator: LabelOperator::NotIn(vec!["slow".into()]),
                        }],
                    },
                    NodeSelector {
                        match_labels: BTreeMap::new(),
                        match_expressions: vec![
                            LabelRequirement {
                                key: "kubernetes.io/hostname".into(),
                                operator: LabelOperator::In(vec!["hostA".into(), "hostB".into()]),
                            },
                            LabelRequirement {
                                key: "edge".into(),
                                operator: LabelOperator::Exists,
                            },
                        ],
                    },
                ],
                interfaces: vec!["eth0".into(), "bond0.100".into()],
                service_allocation: None,
            },
        ]
    );
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(
        v.config.pool_of(ip("2001:db8:1::42")).unwrap().name.0,
        "default"
    );
    assert_eq!(v.config.pool("expensive").unwrap().ranges.len(), 1);
}

#[test]
fn an_empty_document_is_a_valid_config_without_pools() {
    for text in [
        "",
        "\n",
        "# nothing yet\n",
        "address-pools: []\n",
        "address-pools:\n",
    ] {
        let v = validated(text);
        assert_eq!(v.config, Config::default(), "{text:?}");
        assert_eq!(
            warnings(text),
            vec!["address-pools: no address pools are defined; no Service will get an address"]
        );
    }
}

#[test]
fn yaml_1_1_booleans_read_as_metallb_reads_them() {
    for (word, value) in [
        ("no", false),
        ("off", false),
        ("N", false),
        ("yes", true),
        ("On", true),
    ] {
        let yaml = format!("{}  auto-assign: {word}\n", one_pool(&["198.51.100.0/28"]));
        assert_eq!(
            validated(&yaml).config.pools[0].auto_assign,
            value,
            "{word}"
        );
    }
}

#[test]
fn yaml_syntax_errors_give_line_and_column() {
    let yaml =
        "address-pools:\n- name: default\n  protocol: layer2\n   addresses: [198.51.100.0/28]\n";
    assert_eq!(
        errors(yaml),
        vec!["line 4 column 13: mapping values are not allowed in this context"]
    );
}

#[test]
fn unknown_fields_are_refused_with_their_path_and_position() {
    let yaml = format!("{}  auto-asign: false\n", one_pool(&["198.51.100.0/28"]));
    assert_eq!(
        errors(&yaml),
        vec![
            "line 6 column 3: address-pools[0]: unknown field `auto-asign`, expected one of `name`, `protocol`, `addresses`, `auto-assign`, `avoid-buggy-ips`, `bgp-advertisements`, `node-selectors`, `interfaces`, `service-allocation`"
        ]
    );
    assert_eq!(
        errors("address-pool: []\n"),
        vec![
            "line 1 column 1: unknown field `address-pool`, expected one of `address-pools`, `peers`, `bgp-communities`, `bfd-profiles`"
        ]
    );
    let yaml = format!(
        "{}  node-selectors:\n  - match-label: {{rack: a}}\n",
        one_pool(&["198.51.100.0/28"])
    );
    assert_eq!(
        errors(&yaml),
        vec![
            "line 7 column 5: address-pools[0].node-selectors[0]: unknown field `match-label`, expected `match-labels` or `match-expressions`"
        ]
    );
}

#[test]
fn values_of_the_wrong_type_are_refused_with_their_path() {
    let yaml = format!("{}  auto-assign: maybe\n", one_pool(&["198.51.100.0/28"]));
    assert_eq!(
        errors(&yaml),
        vec![
            "line 6 column 16: address-pools[0].auto-assign: invalid value: string \"maybe\", expected a boolean (true or false)"
        ]
    );
    assert_eq!(
        errors("address-pools:\n- 198.51.100.0/28\n"),
        vec![
            "line 2 column 3: address-pools[0]: invalid type: string \"198.51.100.0/28\", expected a pool: a mapping with name, protocol and addresses"
        ]
    );
}

#[test]
fn duplicate_keys_are_refused_as_metallb_refuses_them() {
    let yaml = "address-pools:\n- name: a\n  name: b\n  protocol: layer2\n";
    assert_eq!(
        errors(yaml),
        vec!["line 2 column 3: address-pools[0]: duplicate entry with key \"name\""]
    );
}

#[test]
fn pools_need_a_unique_non_empty_name() {
    let yaml = r#"
address-pools:
- protocol: layer2
  addresses: [198.51.100.0/28]
- name: ""
  protocol: layer2
  addresses: [198.51.100.16/28]
- name: a
  protocol: layer2
  addresses: [198.51.100.32/28]
- name: a
  protocol: layer2
  addresses: [198.51.100.48/28]
"#;
    assert_eq!(
        errors(yaml),
        vec![
            "address-pools[0]: the pool has no name",
            "address-pools[1].name: the pool name is empty",
            "pool \"a\": address-pools[3].name: the pool name \"a\" is already used by address-pools[2]",
        ]
    );
}

#[test]
fn pools_need_protocol_layer2() {
    let yaml = r#"
address-pools:
- name: a
  addresses: [198.51.100.0/28]
- name: b
  protocol: arp
  addresses: [198.51.100.16/28]
"#;
    assert_eq!(
        errors(yaml),
        vec![
            "pool \"a\": address-pools[0]: protocol is missing; ferrolb pools need protocol: layer2",
            "pool \"b\": address-pools[1].protocol: unknown protocol \"arp\"; ferrolb pools need protocol: layer2",
        ]
    );
}

#[test]
fn bgp_is_refused_by_name_wherever_it_appears() {
    let yaml = r#"
peers:
- peer-address: 10.0.0.1
  peer-asn: 64501
  my-asn: 64500
bgp-communities:
  no-advertise: 65535:65282
bfd-profiles:
- name: fast
address-pools:
- name: default
  protocol: bgp
  addresses: [198.51.100.0/24]
  bgp-advertisements:
  - aggregation-length: 24
"#;
    assert_eq!(
        errors(yaml),
        vec![
            "peers: BGP is not supported: ferrolb announces addresses over layer 2 only; remove peers",
            "bgp-communities: BGP is not supported: ferrolb announces addresses over layer 2 only; remove bgp-communities",
            "bfd-profiles: BGP is not supported: ferrolb announces addresses over layer 2 only; remove bfd-profiles",
            "pool \"default\": address-pools[0].protocol: BGP is not supported: ferrolb announces addresses over layer 2 only; use protocol: layer2",
            "pool \"default\": address-pools[0].bgp-advertisements: BGP is not supported: ferrolb announces addresses over layer 2 only; remove bgp-advertisements",
        ]
    );
}

#[test]
fn empty_bgp_sections_are_ignored_with_a_warning() {
    let yaml = format!(
        "peers: []\nbgp-communities: {{}}\n{}",
        one_pool(&["198.51.100.0/28"])
    );
    assert_eq!(
        warnings(&yaml),
        vec![
            "peers: ignored: it is empty, and BGP is not supported",
            "bgp-communities: ignored: it is empty, and BGP is not supported",
        ]
    );
}

#[test]
fn pools_need_addresses() {
    let yaml = r#"
address-pools:
- name: a
  protocol: layer2
- name: b
  protocol: layer2
  addresses: []
"#;
    assert_eq!(
        errors(yaml),
        vec![
            "pool \"a\": address-pools[0].addresses: the pool has no addresses",
            "pool \"b\": address-pools[1].addresses: the pool has no addresses",
        ]
    );
}

#[test]
fn every_bad_address_is_reported_with_its_pool_and_index() {
    let yaml = one_pool(&[
        "198.51.100.0/28",
        "198.51.100.100-198.51.100.120",
        "198.51.100.300",
        "198.51.100.7",
        "198.51.100.0/33",
        "198.51.100.200-2001:db8::1",
        "198.51.100.250-198.51.100.240",
    ]);
    assert_eq!(
        errors(&yaml),
        vec![
            r#"pool "default": address-pools[0].addresses[2]: "198.51.100.300" is neither a CIDR nor a range a-b"#,
            r#"pool "default": address-pools[0].addresses[3]: "198.51.100.7" is a single address, not a CIDR or a range a-b; write 198.51.100.7/32 for that one address"#,
            r#"pool "default": address-pools[0].addresses[4]: "198.51.100.0/33" has a /33 prefix, longer than the 32 bits of an IPv4 address"#,
            r#"pool "default": address-pools[0].addresses[5]: range "198.51.100.200-2001:db8::1" runs from one address family to the other"#,
            r#"pool "default": address-pools[0].addresses[6]: range "198.51.100.250-198.51.100.240" is reversed: its start 198.51.100.250 comes after its end 198.51.100.240"#,
        ]
    );
}

#[test]
fn metallb_range_spellings_are_accepted() {
    let v = validated(&one_pool(&[
        "198.51.100.100 - 198.51.100.120",
        "198.51.100.7-198.51.100.7",
        "2001:db8::10-2001:db8::1f",
    ]));
    assert_eq!(
        v.config.pools[0].ranges,
        vec![
            range("198.51.100.100-198.51.100.120"),
            range("198.51.100.7/32"),
            range("2001:db8::10/124"),
        ]
    );
}

#[test]
fn host_bits_are_accepted_as_the_network_with_a_warning() {
    let yaml = one_pool(&["198.51.100.5/24", "2001:db8::1/64"]);
    assert_eq!(
        validated(&yaml).config.pools[0].ranges[0],
        range("198.51.100.0/24")
    );
    assert_eq!(
        warnings(&yaml),
        vec![
            "pool \"default\": address-pools[0].addresses[0]: 198.51.100.5/24 has host bits set; it means 198.51.100.0/24",
            "pool \"default\": address-pools[0].addresses[1]: 2001:db8::1/64 has host bits set; it means 2001:db8::/64",
        ]
    );
}

#[test]
fn overlaps_between_pools_name_both_pools_and_the_shared_range() {
    let yaml = r#"
address-pools:
- name: a
  protocol: layer2
  addresses: [198.51.100.0/28, 2001:db8::/64]
- name: b
  protocol: layer2
  addresses: [198.51.100.8-198.51.100.40, "2001:db8::ff00/120"]
"#;
    assert_eq!(
        errors(yaml),
        vec![
            r#"pool "b": address-pools[1].addresses[0]: 198.51.100.8-198.51.100.40 overlaps 198.51.100.0/28 of pool "a" (address-pools[0].addresses[0]); both hold 198.51.100.8-198.51.100.15"#,
            r#"pool "b": address-pools[1].addresses[1]: 2001:db8::ff00/120 overlaps 2001:db8::/64 of pool "a" (address-pools[0].addresses[1]); both hold 2001:db8::ff00-2001:db8::ffff"#,
        ]
    );
}

#[test]
fn overlaps_within_one_pool_are_refused_too() {
    let yaml = one_pool(&["198.51.100.0/24", "198.51.100.7/32", "198.51.101.0/24"]);
    assert_eq!(
        errors(&yaml),
        vec![
            r#"pool "default": address-pools[0].addresses[1]: 198.51.100.7/32 overlaps 198.51.100.0/24 of pool "default" (address-pools[0].addresses[0]); both hold 198.51.100.7"#,
        ]
    );
}

#[test]
fn pools_in_special_purpose_ranges_are_refused_naming_the_range() {
    let yaml = one_pool(&[
        "0.0.0.0/0",
        "::/0",
        "0.0.0.0/32",
        "127.0.0.0/24",
        "224.0.0.0/4",
        "169.254.10.0/24",
        "255.255.255.255/32",
        "126.255.255.250-127.0.0.5",
        "::/128",
        "::1/128",
        "::ffff:0:0/96",
        "fe80::/64",
        "ff02::1-ff02::2",
        "198.51.100.0/24",
    ]);
    assert_eq!(
        errors(&yaml),
        vec![
            r#"pool "default": address-pools[0].addresses[0]: 0.0.0.0/0 is every IPv4 address, not a pool; list the addresses set aside for load balancers on this network"#,
            r#"pool "default": address-pools[0].addresses[1]: ::/0 is every IPv6 address, not a pool; list the addresses set aside for load balancers on this network"#,
            r#"pool "default": address-pools[0].addresses[2]: 0.0.0.0/32 lies in the unspecified range 0.0.0.0/8 (they mean "this host" and are never a destination)"#,
            r#"pool "default": address-pools[0].addresses[3]: 127.0.0.0/24 lies in the loopback range 127.0.0.0/8 (they never leave a host)"#,
            r#"pool "default": address-pools[0].addresses[4]: 224.0.0.0/4 lies in the multicast range 224.0.0.0/4 (they name groups of hosts, not one host)"#,
            r#"pool "default": address-pools[0].addresses[5]: 169.254.10.0/24 lies in the link-local range 169.254.0.0/16 (hosts pick them for themselves)"#,
            r#"pool "default": address-pools[0].addresses[6]: 255.255.255.255/32 is the broadcast address 255.255.255.255 (it reaches every host of the link)"#,
            r#"pool "default": address-pools[0].addresses[7]: 126.255.255.250-127.0.0.5 reaches into the loopback range 127.0.0.0/8 (they never leave a host); it holds 127.0.0.0-127.0.0.5"#,
            r#"pool "default": address-pools[0].addresses[8]: ::/128 is the unspecified address :: (they mean "this host" and are never a destination)"#,
            r#"pool "default": address-pools[0].addresses[9]: ::1/128 is the loopback address ::1 (they never leave a host)"#,
            r#"pool "default": address-pools[0].addresses[10]: ::ffff:0:0/96 lies in the IPv4-mapped range ::ffff:0.0.0.0/96 (they stand for IPv4 addresses inside IPv6 sockets and never appear on a wire)"#,
            r#"pool "default": address-pools[0].addresses[11]: fe80::/64 lies in the link-local range fe80::/10 (hosts pick them for themselves)"#,
            r#"pool "default": address-pools[0].addresses[12]: ff02::1-ff02::2 lies in the multicast range ff00::/8 (they name groups of hosts, not one host)"#,
        ]
    );
    assert_eq!(
        Config::from_yaml(&yaml).unwrap_err().first().label(),
        "special_purpose"
    );
}

#[test]
fn pools_mix_families_and_hold_whole_ipv6_64s_without_enumerating() {
    // Two /64s and a /48 side by side: checking them must not walk them.
    let yaml = one_pool(&[
        "2001:db8:1::/64",
        "2001:db8:2::/64",
        "2001:db9::/48",
        "198.51.100.0/24",
    ]);
    let pool = &validated(&yaml).config.pools[0];
    assert_eq!(pool.address_count(Family::V6), 2 * (1 << 64) + (1 << 80));
    assert_eq!(pool.address_count(Family::V4), 256);
}

#[test]
fn avoid_buggy_ips_that_cannot_help_is_pointed_out() {
    let yaml = format!("{}  avoid-buggy-ips: true\n", one_pool(&["2001:db8::/64"]));
    assert_eq!(
        warnings(&yaml),
        vec![
            "pool \"default\": address-pools[0].avoid-buggy-ips: avoid-buggy-ips has no effect: the pool has no IPv4 addresses"
        ]
    );
    let yaml = format!(
        "{}  avoid-buggy-ips: true\n",
        one_pool(&["198.51.100.255/32", "198.51.101.0/32"])
    );
    assert_eq!(
        warnings(&yaml),
        vec![
            "pool \"default\": address-pools[0].avoid-buggy-ips: the pool has no address to hand out: every one ends in .0 or .255 and avoid-buggy-ips is set"
        ]
    );
}

#[test]
fn node_selectors_follow_kubernetes_rules() {
    let yaml = format!(
        "{}{}",
        one_pool(&["198.51.100.0/28"]),
        r#"  node-selectors:
  - match-expressions:
    - operator: Exists
    - key: rack
      operator: Is
      values: [a]
    - key: rack
      operator: In
    - key: rack
      operator: DoesNotExist
      values: [a]
"#
    );
    assert_eq!(
        errors(&yaml),
        vec![
            "pool \"default\": address-pools[0].node-selectors[0].match-expressions[0]: the match expression has no key",
            "pool \"default\": address-pools[0].node-selectors[0].match-expressions[1].operator: unknown operator \"Is\"; use In, NotIn, Exists or DoesNotExist",
            "pool \"default\": address-pools[0].node-selectors[0].match-expressions[2].values: operator In needs at least one value",
            "pool \"default\": address-pools[0].node-selectors[0].match-expressions[3].values: operator DoesNotExist takes no values",
        ]
    );
}

#[test]
fn interfaces_must_be_names_linux_accepts() {
    let yaml = format!(
        "{}  interfaces: [eth0, \"\", a-very-long-interface, \"eth0:1\", eth0]\n",
        one_pool(&["198.51.100.0/28"])
    );
    assert_eq!(
        errors(&yaml),
        vec![
            "pool \"default\": address-pools[0].interfaces[1]: \"\" is not an interface name: it is empty",
            "pool \"default\": address-pools[0].interfaces[2]: \"a-very-long-interface\" is not an interface name: Linux allows at most 15 bytes",
            "pool \"default\": address-pools[0].interfaces[3]: \"eth0:1\" is not an interface name: it contains '/', ':' or whitespace",
        ]
    );
    let yaml = format!(
        "{}  interfaces: [eth0, eth0]\n",
        one_pool(&["198.51.100.0/28"])
    );
    assert_eq!(
        warnings(&yaml),
        vec![
            "pool \"default\": address-pools[0].interfaces[1]: interface \"eth0\" is listed twice"
        ]
    );
    assert_eq!(validated(&yaml).config.pools[0].interfaces, vec!["eth0"]);
}

#[test]
fn service_allocation_reads_metallbs_fields() {
    let yaml = format!(
        "{}{}",
        one_pool(&["198.51.100.0/28"]),
        r#"  service-allocation:
    priority: 50
    namespaces: [namespace-a, namespace-b]
    namespace-selectors:
    - match-labels: {foo: bar}
    service-selectors:
    - match-expressions:
      - {key: app, operator: In, values: [bar]}
"#
    );
    let v = validated(&yaml);
    assert_eq!(v.warnings, vec![]);
    assert_eq!(
        v.config.pools[0].service_allocation,
        Some(crate::pool::documented_allocation())
    );
    // An empty one still makes the pool one with a service allocation.
    let empty = format!(
        "{}  service-allocation: {{}}\n",
        one_pool(&["198.51.100.0/28"])
    );
    assert_eq!(
        validated(&empty).config.pools[0].service_allocation,
        Some(ServiceAllocation::default())
    );
}

#[test]
fn service_allocation_errors_name_the_pool_and_the_field() {
    let yaml = format!(
        "{}{}",
        one_pool(&["198.51.100.0/28"]),
        r#"  service-allocation:
    priority: -1
    namespaces: [team-a, Team_B, team-a, ""]
    namespace-selectors:
    - match-expressions:
      - {key: env, operator: Is, values: [prod]}
    service-selectors:
    - match-expressions:
      - {key: app, operator: In}
"#
    );
    assert_eq!(
        errors(&yaml),
        vec![
            "pool \"default\": address-pools[0].service-allocation.priority: priority -1 is negative; use 1 or more (lower is tried first), or leave it out to come after every pool that has one",
            "pool \"default\": address-pools[0].service-allocation.namespaces[1]: \"Team_B\" is not a namespace name: only lower-case letters, digits and '-' are allowed",
            "pool \"default\": address-pools[0].service-allocation.namespaces[2]: namespace \"team-a\" is listed twice",
            "pool \"default\": address-pools[0].service-allocation.namespaces[3]: \"\" is not a namespace name: it is empty",
            "pool \"default\": address-pools[0].service-allocation.namespace-selectors[0].match-expressions[0].operator: unknown operator \"Is\"; use In, NotIn, Exists or DoesNotExist",
            "pool \"default\": address-pools[0].service-allocation.service-selectors[0].match-expressions[0].values: operator In needs at least one value",
        ]
    );
    let huge = format!(
        "{}  service-allocation: {{priority: 4294967296}}\n",
        one_pool(&["198.51.100.0/28"])
    );
    assert_eq!(
        errors(&huge),
        vec![
            "pool \"default\": address-pools[0].service-allocation.priority: priority 4294967296 is larger than 4294967295"
        ]
    );
    let unknown = format!(
        "{}  service-allocation: {{namespace: [a]}}\n",
        one_pool(&["198.51.100.0/28"])
    );
    assert!(
        errors(&unknown)[0].contains("unknown field `namespace`"),
        "{:?}",
        errors(&unknown)
    );
}

#[test]
fn priority_zero_is_no_priority_with_a_warning() {
    let yaml = format!(
        "{}  service-allocation: {{priority: 0}}\n",
        one_pool(&["198.51.100.0/28"])
    );
    assert_eq!(
        warnings(&yaml),
        vec![
            "pool \"default\": address-pools[0].service-allocation.priority: priority 0 means no priority (as in MetalLB): the pool comes after every pool that has one; leave it out or use 1 or more"
        ]
    );
    assert_eq!(
        validated(&yaml).config.pools[0].service_allocation,
        Some(ServiceAllocation::default())
    );
}

#[test]
fn all_errors_are_reported_at_once_one_per_line() {
    let yaml = r#"
peers: [{peer-address: 10.0.0.1}]
address-pools:
- name: a
  protocol: layer2
  addresses: [198.51.100.0/24, nonsense]
- name: a
  protocol: layer2
  addresses: [198.51.100.128/25]
"#;
    let errors = Config::from_yaml(yaml).unwrap_err();
    assert_eq!(errors.len(), 4);
    assert_eq!(
        errors.to_string(),
        [
            "peers: BGP is not supported: ferrolb announces addresses over layer 2 only; remove peers",
            "pool \"a\": address-pools[0].addresses[1]: \"nonsense\" is neither a CIDR nor a range a-b",
            "pool \"a\": address-pools[1].name: the pool name \"a\" is already used by address-pools[0]",
            "pool \"a\": address-pools[1].addresses[0]: 198.51.100.128/25 overlaps 198.51.100.0/24 of pool \"a\" (address-pools[0].addresses[0]); both hold 198.51.100.128-198.51.100.255",
        ]
        .join("\n")
    );
    let labels: Vec<&str> = errors.iter().map(ConfigError::label).collect();
    assert_eq!(
        labels,
        [
            "bgp_not_supported",
            "bad_address",
            "duplicate_name",
            "overlap"
        ]
    );
}

#[test]
fn configmap_data_errors_count_lines_within_the_config_string() {
    let mut data = BTreeMap::new();
    data.insert(
        "config".to_owned(),
        "address-pools:\n- name: a\n  protocol: layer2\n  adresses: [198.51.100.0/28]\n".to_owned(),
    );
    let errors = Config::from_configmap_data(&data).unwrap_err();
    assert_eq!(
        errors.first().to_string(),
        "data.config line 4 column 3: address-pools[0]: unknown field `adresses`, expected one of `name`, `protocol`, `addresses`, `auto-assign`, `avoid-buggy-ips`, `bgp-advertisements`, `node-selectors`, `interfaces`, `service-allocation`"
    );
    assert_eq!(
        errors.first().reason,
        Reason::Unreadable {
            position: Some(TextPosition {
                within: Some("data.config"),
                line: 4,
                column: 3
            }),
            message: "address-pools[0]: unknown field `adresses`, expected one of `name`, `protocol`, `addresses`, `auto-assign`, `avoid-buggy-ips`, `bgp-advertisements`, `node-selectors`, `interfaces`, `service-allocation`".to_owned(),
        }
    );
}

#[test]
fn configmap_data_without_the_config_key_is_refused() {
    let data: BTreeMap<String, String> = [("conf".to_owned(), String::new())].into();
    assert_eq!(
        Config::from_configmap_data(&data).unwrap_err().to_string(),
        "data: the ConfigMap has no \"config\" key in data (it has: conf)"
    );
    assert_eq!(
        Config::from_configmap_data(&BTreeMap::new())
            .unwrap_err()
            .to_string(),
        "data: the ConfigMap has no \"config\" key in data (data is empty)"
    );
}

#[test]
fn a_file_is_read_as_a_manifest_or_a_bare_config() {
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  namespace: ferrolb-system\n  name: ferrolb-config\ndata:\n  config: |\n    address-pools:\n    - name: a\n      protocol: layer2\n      addresses: [198.51.100.0/28]\n";
    let (source, outcome) = read_file(manifest);
    assert_eq!(
        source,
        Some(Source::Manifest {
            kind: "ConfigMap".into(),
            namespace: Some("ferrolb-system".into()),
            name: Some("ferrolb-config".into()),
        })
    );
    assert_eq!(outcome.unwrap().config.pools[0].name.0, "a");
    let (source, outcome) = read_file(&one_pool(&["198.51.100.0/28"]));
    assert_eq!(source, Some(Source::Document));
    assert_eq!(outcome.unwrap().config.pools[0].name.0, "default");
    let (_, outcome) = read_file("apiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n");
    assert_eq!(
        outcome.unwrap_err().to_string(),
        "kind: this manifest is a Secret, not a ConfigMap"
    );
}

/// The parts of `range` outside every special-purpose range.
fn ordinary_parts(range: AddressRange) -> Vec<AddressRange> {
    use crate::range::{from_u128, to_u128};
    let mut parts = vec![range];
    for special in crate::SPECIAL_RANGES {
        let special = special.range();
        parts = parts
            .into_iter()
            .flat_map(|part| {
                let Some(shared) = part.intersection(&special) else {
                    return vec![part];
                };
                let family = part.family();
                let (lo, hi) = (to_u128(shared.first()), to_u128(shared.last()));
                let mut rest = vec![];
                if to_u128(part.first()) < lo {
                    rest.extend(AddressRange::new(part.first(), from_u128(lo - 1, family)));
                }
                if hi < to_u128(part.last()) {
                    rest.extend(AddressRange::new(from_u128(hi + 1, family), part.last()));
                }
                rest
            })
            .collect();
    }
    parts
}

/// A valid config: disjoint ranges of both families spread over pools with
/// awkward names, and random options.
fn any_config() -> impl Strategy<Value = Config> {
    let name = prop_oneof![
        "[a-z][a-z0-9-]{0,12}",
        Just("true".to_owned()),
        Just("123".to_owned()),
        Just("null".to_owned()),
        Just("a: b".to_owned()),
        Just("- x".to_owned()),
        Just("\"quoted\" #hash".to_owned()),
    ];
    let operator = prop_oneof![
        proptest::collection::vec("[a-z0-9]{1,5}", 1..3).prop_map(LabelOperator::In),
        proptest::collection::vec("[a-z0-9]{1,5}", 1..3).prop_map(LabelOperator::NotIn),
        Just(LabelOperator::Exists),
        Just(LabelOperator::DoesNotExist),
    ];
    let requirement =
        ("[a-z./]{1,10}", operator).prop_map(|(key, operator)| LabelRequirement { key, operator });
    let selector = (
        proptest::collection::btree_map("[a-z./]{1,10}", "[a-z0-9]{0,5}", 0..3),
        proptest::collection::vec(requirement, 0..3),
    )
        .prop_map(|(match_labels, match_expressions)| NodeSelector {
            match_labels,
            match_expressions,
        });
    let selectors = |n: usize| proptest::collection::vec(selector.clone(), 0..n);
    let allocation = proptest::option::of(
        (
            proptest::option::of(1u32..),
            proptest::collection::btree_set("[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", 0..3),
            selectors(3),
            selectors(3),
        )
            .prop_map(
                |(priority, namespaces, namespace_selectors, service_selectors)| {
                    ServiceAllocation {
                        priority,
                        namespaces: namespaces.into_iter().collect(),
                        namespace_selectors,
                        service_selectors,
                    }
                },
            ),
    );
    let options = (
        name,
        any::<bool>(),
        any::<bool>(),
        selectors(3),
        proptest::collection::btree_set("[a-z][a-z0-9.]{0,14}", 0..3),
        allocation,
    );
    // Cut points splitting each family's space into disjoint spans.
    let v4_cuts = proptest::collection::btree_set(any::<u32>(), 2..12);
    let v6_cuts = proptest::collection::btree_set(any::<u128>(), 2..12);
    (
        proptest::collection::vec(options, 1..5),
        v4_cuts,
        v6_cuts,
        proptest::collection::vec(any::<prop::sample::Index>(), 24),
    )
        .prop_map(|(pool_options, v4_cuts, v6_cuts, owners)| {
            let mut pools: Vec<Pool> = pool_options
                .into_iter()
                .enumerate()
                .map(
                    |(
                        i,
                        (
                            name,
                            auto_assign,
                            avoid_buggy_ips,
                            node_selectors,
                            interfaces,
                            allocation,
                        ),
                    )| Pool {
                        // Unique names however the generator repeats itself.
                        name: PoolName(format!("{name}{i}")),
                        ranges: vec![],
                        auto_assign,
                        avoid_buggy_ips,
                        node_selectors,
                        interfaces: interfaces.into_iter().collect(),
                        service_allocation: allocation,
                    },
                )
                .collect();
            let v4: Vec<u128> = v4_cuts.into_iter().map(u128::from).collect();
            let v6: Vec<u128> = v6_cuts.into_iter().collect();
            let spans = v4
                .windows(2)
                .map(|w| (w[0], w[1] - 1, Family::V4))
                .chain(v6.windows(2).map(|w| (w[0], w[1] - 1, Family::V6)));
            for (k, (first, last, family)) in spans.enumerate() {
                let ip = |n| crate::range::from_u128(n, family);
                let pool = owners[k % owners.len()].index(pools.len());
                let span = AddressRange::new(ip(first), ip(last)).unwrap();
                pools[pool].ranges.extend(ordinary_parts(span));
            }
            // Every pool needs addresses: give empty ones a single address
            // below every cut, one each, past `::` and `::1`.
            for (i, pool) in pools.iter_mut().enumerate() {
                let n = i as u128 + 2;
                if pool.ranges.is_empty() {
                    let ip = crate::range::from_u128(n, Family::V6);
                    if v6[0] > n {
                        pool.ranges.push(AddressRange::new(ip, ip).unwrap());
                    }
                }
            }
            pools.retain(|p| !p.ranges.is_empty());
            Config { pools }
        })
}

proptest! {
    #[test]
    fn rendering_and_reading_back_gives_the_same_pools(config in any_config()) {
        let yaml = config.to_yaml();
        let read = Config::from_yaml(&yaml)
            .map_err(|e| TestCaseError::fail(format!("{e}\n---\n{yaml}")))?;
        prop_assert_eq!(read.config, config, "{}", yaml);
    }
}
