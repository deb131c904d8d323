//! Real configs through the operator's check, as `check-config FILE` prints
//! them.

use ferrolb_config::{AddressRange, Config, check};

#[test]
fn metallbs_layer2_documentation_configmap_is_accepted_unchanged() {
    let report = check(include_str!("fixtures/metallb-layer2-docs.yaml"));
    assert!(!report.failed());
    assert_eq!(
        report.to_string(),
        "ConfigMap metallb-system/config data.config: valid, 1 pool, 0 warnings\n\
         pool \"default\": 11 IPv4 addresses, auto-assign: true, avoid-buggy-ips: false\n\
         note: ferrolb reads the ConfigMap ferrolb-system/ferrolb-config unless configured otherwise"
    );
    let pools = &report.outcome.unwrap().config.pools;
    assert_eq!(
        pools[0].ranges,
        vec![
            "192.168.1.240-192.168.1.250"
                .parse::<AddressRange>()
                .unwrap()
        ]
    );
}

#[test]
fn a_dual_stack_config_is_summarised_with_exact_counts() {
    let report = check(include_str!("fixtures/ferrolb-dual-stack.yaml"));
    assert!(!report.failed());
    assert_eq!(
        report.to_string(),
        "ConfigMap ferrolb-system/ferrolb-config data.config: valid, 2 pools, 0 warnings\n\
         pool \"default\": 37 IPv4 + 18446744073709551616 IPv6 addresses, auto-assign: true, avoid-buggy-ips: false\n\
         pool \"expensive\": 254 IPv4 addresses, auto-assign: false, avoid-buggy-ips: true, announced by nodes matching 1 selector, on interfaces eth0"
    );
}

#[test]
fn metallbs_bgp_example_is_refused_as_bgp() {
    let report = check(include_str!("fixtures/metallb-bgp-docs.yaml"));
    assert!(report.failed());
    assert_eq!(
        report.to_string(),
        "ConfigMap metallb-system/config data.config: invalid, 2 errors\n\
         error: peers: BGP is not supported: ferrolb announces addresses over layer 2 only; remove peers\n\
         error: pool \"default\": address-pools[0].protocol: BGP is not supported: ferrolb announces addresses over layer 2 only; use protocol: layer2\n\
         note: ferrolb reads the ConfigMap ferrolb-system/ferrolb-config unless configured otherwise"
    );
}

#[test]
fn a_broken_configmap_gives_line_and_column_within_its_config() {
    let report = check(include_str!("fixtures/broken-indentation.yaml"));
    assert!(report.failed());
    assert_eq!(
        report.to_string(),
        "ConfigMap ferrolb-system/ferrolb-config data.config: invalid, 1 error\n\
         error: data.config line 4 column 13: mapping values are not allowed in this context"
    );
}

#[test]
fn a_broken_bare_config_lists_every_error() {
    let report = check(include_str!("fixtures/broken-pools.yaml"));
    assert!(report.failed());
    assert_eq!(
        report.to_string(),
        "config: invalid, 3 errors\n\
         error: pool \"default\": address-pools[0].addresses[1]: \"198.51.100.300\" is neither a CIDR nor a range a-b\n\
         error: pool \"default\": address-pools[1].name: the pool name \"default\" is already used by address-pools[0]\n\
         error: pool \"default\": address-pools[1].addresses[0]: 198.51.100.5/29 overlaps 198.51.100.0/28 of pool \"default\" (address-pools[0].addresses[0]); both hold 198.51.100.0-198.51.100.7"
    );
}

#[test]
fn a_manifest_that_is_not_yaml_gives_line_and_column_in_the_file() {
    let report = check("apiVersion: v1\nkind: ConfigMap\ndata:\n  config: [\n");
    assert!(report.failed());
    assert_eq!(
        report.to_string(),
        "config: invalid, 1 error\n\
         error: line 5 column 1: did not find expected node content, while parsing a flow node"
    );
}

#[test]
fn large_address_spaces_are_counted_exactly() {
    let report = check(
        "address-pools:\n- name: everything\n  protocol: layer2\n  addresses: [\"2000::/3\", 192.0.0.0/3]\n",
    );
    assert_eq!(
        report.to_string(),
        "config: valid, 1 pool, 0 warnings\n\
         pool \"everything\": 536870912 IPv4 + 42535295865117307932921825928971026432 IPv6 addresses, auto-assign: true, avoid-buggy-ips: false"
    );
}

#[test]
fn a_rendered_config_is_what_an_operator_would_write() {
    let validated = Config::from_yaml(
        "address-pools:\n- name: default\n  protocol: layer2\n  addresses:\n  - 198.51.100.0/28\n  - 198.51.100.100 - 198.51.100.120\n  auto-assign: no\n  interfaces: [eth0]\n",
    )
    .unwrap();
    assert_eq!(
        validated.config.to_yaml(),
        "address-pools:\n- name: default\n  protocol: layer2\n  addresses:\n  - 198.51.100.0/28\n  - 198.51.100.100-198.51.100.120\n  auto-assign: false\n  interfaces:\n  - eth0\n"
    );
}
