//! MetalLB's documented examples, converted or refused by name, and hostile
//! input.

use super::*;
use crate::Pool;

/// A fixture of `config/tests/fixtures/metallb/`, as (name, text).
macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/metallb/",
                $name
            ))
            .to_owned(),
        )
    };
}

/// Converts these files (fixtures or inline `(name, text)`).
fn convert_all(files: &[(&str, String)]) -> Result<Converted, ConversionErrors> {
    let borrowed: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    convert(&borrowed)
}

/// Converts, and checks the manifest the way an operator would:
/// `check-config` accepts it and reads back the same pools.
fn converted(files: &[(&str, String)]) -> Vec<Pool> {
    let converted = match convert_all(files) {
        Ok(c) => c,
        Err(e) => panic!("should convert, but:\n{e}"),
    };
    let manifest = converted.manifest();
    let report = crate::check(&manifest);
    assert!(
        !report.failed(),
        "check-config refuses:\n{report}\n---\n{manifest}"
    );
    let read = report.outcome.as_ref().map(|v| &v.config).unwrap();
    assert_eq!(read, &converted.config, "{manifest}");
    assert!(
        report
            .to_string()
            .starts_with("ConfigMap ferrolb-system/ferrolb-config data.config"),
        "{report}"
    );
    converted.config.pools
}

fn refused(files: &[(&str, String)]) -> Vec<String> {
    convert_all(files)
        .expect_err("should be refused")
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// A pool of this name, in a documentation range, as MetalLB writes one.
fn pool_object(name: &str, addresses: &str) -> (&'static str, String) {
    (
        "pools.yaml",
        format!(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: {name}\n  namespace: metallb-system\nspec:\n  addresses: [{addresses}]\n"
        ),
    )
}

fn empty_advertisement() -> (&'static str, String) {
    (
        "l2.yaml",
        "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: all\n  namespace: metallb-system\n".into(),
    )
}

fn hostname(name: &str) -> NodeSelector {
    NodeSelector {
        match_labels: [("kubernetes.io/hostname".to_owned(), name.to_owned())].into(),
        match_expressions: vec![],
    }
}

#[test]
fn the_simple_pool_with_an_empty_l2_advertisement_converts_unchanged() {
    let pools = converted(&[fixture!("simple_pool_adv_l2.yaml")]);
    assert_eq!(pools.len(), 1);
    let pool = &pools[0];
    assert_eq!(pool.name.0, "example");
    assert_eq!(
        pool.ranges
            .iter()
            .map(|r| r.to_notation())
            .collect::<Vec<_>>(),
        [
            "192.168.10.0/24",
            "192.168.9.1-192.168.9.5",
            "fc00:f853:ccd:e799::/124"
        ]
    );
    assert!(pool.auto_assign);
    assert!(!pool.avoid_buggy_ips);
    assert!(pool.node_selectors.is_empty() && pool.interfaces.is_empty());
    assert_eq!(pool.service_allocation, None);
    // The same objects split over two files convert alike.
    let split = converted(&[fixture!("ipaddresspool_simple.yaml"), empty_advertisement()]);
    assert_eq!(split, pools);
}

#[test]
fn service_allocation_and_avoid_buggy_ips_convert_field_for_field() {
    let pools = converted(&[
        fixture!("ipaddresspool_with_selector.yaml"),
        empty_advertisement(),
    ]);
    let pool = &pools[0];
    assert!(pool.avoid_buggy_ips);
    assert_eq!(
        pool.service_allocation,
        Some(crate::pool::documented_allocation())
    );
}

#[test]
fn auto_assign_false_converts_to_a_manual_pool() {
    let pools = converted(&[
        fixture!("advanced_pool_cheap_expensive.yaml"),
        empty_advertisement(),
    ]);
    let summary: Vec<(&str, bool)> = pools
        .iter()
        .map(|p| (p.name.0.as_str(), p.auto_assign))
        .collect();
    assert_eq!(summary, [("cheap", true), ("expensive", false)]);
}

#[test]
fn node_selectors_and_interfaces_of_the_documented_advertisements_become_the_pools() {
    let first = converted(&[
        pool_object("first-pool", "203.0.113.0/28"),
        fixture!("advanced_l2_node_selectors_first.yaml"),
    ]);
    assert_eq!(
        first[0].node_selectors,
        [hostname("NodeA"), hostname("NodeB")]
    );
    let second = converted(&[
        pool_object("second-pool", "203.0.113.16/28"),
        fixture!("advanced_l2_node_selectors_second.yaml"),
    ]);
    assert_eq!(second[0].node_selectors, [hostname("NodeC")]);
    let third = converted(&[
        pool_object("third-pool", "203.0.113.32/28"),
        fixture!("advanced_l2_interfaces.yaml"),
    ]);
    assert!(third[0].node_selectors.is_empty());
    assert_eq!(third[0].interfaces, ["eth0", "eth1"]);
    let fourth = converted(&[
        pool_object("fourth-pool", "203.0.113.48/28"),
        fixture!("advanced_l2_interfaces_and_nodes.yaml"),
    ]);
    assert_eq!(fourth[0].node_selectors, [hostname("NodeA")]);
    assert_eq!(fourth[0].interfaces, ["eth3"]);
    let by_list = converted(&[
        pool_object("first-pool", "203.0.113.0/28"),
        fixture!("l2adv_selects_pools_by_list.yaml"),
    ]);
    assert_eq!(by_list[0].name.0, "first-pool");
    let by_node = converted(&[
        fixture!("ipaddresspool_simple.yaml"),
        fixture!("l2adv_with_node_selector.yaml"),
    ]);
    assert_eq!(by_node[0].node_selectors, [hostname("kind-control-plane")]);
}

#[test]
fn what_kubectl_prints_converts() {
    let pools = converted(&[fixture!("kubectl_list.yaml")]);
    let names: Vec<&str> = pools.iter().map(|p| p.name.0.as_str()).collect();
    assert_eq!(names, ["example", "ippool-ns-service-alloc-sample"]);
    assert_eq!(
        pools[1]
            .service_allocation
            .as_ref()
            .and_then(|a| a.priority),
        Some(50)
    );
    let manifest = convert_all(&[fixture!("kubectl_list.yaml")])
        .unwrap()
        .manifest();
    let report = crate::check(&manifest).to_string();
    assert!(
        report.contains(
            "pool \"ippool-ns-service-alloc-sample\": 254 IPv4 addresses, auto-assign: true, avoid-buggy-ips: true, priority 50, for namespaces namespace-a, namespace-b, those matching 1 selector, for Services matching 1 selector"
        ),
        "{report}"
    );
}

#[test]
fn the_manifest_is_ferrolbs_configmap() {
    let converted = convert_all(&[fixture!("simple_pool_adv_l2.yaml")]).unwrap();
    let manifest = converted.manifest();
    assert!(
        manifest.starts_with("apiVersion: v1\nkind: ConfigMap\n"),
        "{manifest}"
    );
    assert!(manifest.contains("name: ferrolb-config\n"), "{manifest}");
    assert!(
        manifest.contains("namespace: ferrolb-system\n"),
        "{manifest}"
    );
}

#[test]
fn bgp_objects_are_refused_by_name() {
    assert_eq!(
        refused(&[fixture!("simple_pool_adv_bgp.yaml")]),
        [
            "BGPAdvertisement metallb-system/empty: it announces pools over BGP; ferrolb announces addresses over layer 2 only. Remove it to convert the rest",
            "IPAddressPool metallb-system/example: no L2Advertisement announces it, so MetalLB answers for none of its addresses; add an L2Advertisement for it, or remove it",
        ]
    );
    let others = (
        "bgp.yaml",
        "kind: BGPPeer\nmetadata: {name: tor, namespace: metallb-system}\n---\nkind: Community\nmetadata: {name: c, namespace: metallb-system}\n---\nkind: BFDProfile\nmetadata: {name: fast, namespace: metallb-system}\n---\nkind: ConfigMap\nmetadata: {name: config, namespace: metallb-system}\n".to_owned(),
    );
    assert_eq!(
        refused(&[others]),
        [
            "BGPPeer metallb-system/tor: it is a BGP session; ferrolb announces addresses over layer 2 only. Remove it to convert the rest",
            "Community metallb-system/c: it names BGP communities; ferrolb announces addresses over layer 2 only. Remove it to convert the rest",
            "BFDProfile metallb-system/fast: it tunes BFD for BGP sessions; ferrolb announces addresses over layer 2 only. Remove it to convert the rest",
            "ConfigMap metallb-system/config: not a MetalLB IPAddressPool or L2Advertisement",
        ]
    );
}

#[test]
fn the_misspelt_union_example_is_refused_naming_the_field() {
    let errors = refused(&[
        pool_object("pool1", "203.0.113.0/28"),
        fixture!("advanced_l2_union_note.yaml"),
    ]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("L2Advertisement metallb-system/example-advertisement10: spec: unknown field `ipaddresspools`"),
        "{errors:?}"
    );
}

#[test]
fn what_ferrolb_cannot_express_is_refused_never_dropped() {
    let ad = |name: &str, spec: &str| {
        format!(
            "---\nkind: L2Advertisement\nmetadata: {{name: {name}, namespace: metallb-system}}\nspec: {spec}\n"
        )
    };
    let pools = pool_object("lan", "203.0.113.0/28");
    let case = |ads: String| refused(&[pools.clone(), ("ads.yaml", ads)]);
    assert_eq!(
        case(ad(
            "picky",
            "{serviceSelectors: [{matchLabels: {app: web}}]}"
        )),
        [
            "L2Advertisement metallb-system/picky: spec.serviceSelectors has no ferrolb equivalent: ferrolb announces every Service of a pool alike; limit the pool to those Services with its serviceAllocation instead",
            "IPAddressPool metallb-system/lan: no L2Advertisement announces it, so MetalLB answers for none of its addresses; add an L2Advertisement for it, or remove it",
        ]
    );
    assert_eq!(
        case(ad("all", "{}") + &ad("gone", "{ipAddressPools: [lan, wan]}")),
        [
            "L2Advertisement metallb-system/gone: spec.ipAddressPools[1] selects no IPAddressPool of the input (there is no pool \"wan\")"
        ]
    );
    assert_eq!(
        case(
            ad("all", "{}")
                + &ad(
                    "none",
                    "{ipAddressPoolSelectors: [{matchLabels: {zone: b}}]}"
                )
        ),
        [
            "L2Advertisement metallb-system/none: spec.ipAddressPoolSelectors selects no IPAddressPool of the input"
        ]
    );
    assert_eq!(
        case(
            ad(
                "a",
                "{nodeSelectors: [{matchLabels: {rack: a}}], interfaces: [eth0]}"
            ) + &ad(
                "b",
                "{nodeSelectors: [{matchLabels: {rack: b}}], interfaces: [eth1]}"
            )
        ),
        [
            "IPAddressPool metallb-system/lan: L2Advertisement metallb-system/a and L2Advertisement metallb-system/b announce it from different nodes on different interfaces, which one ferrolb pool cannot express (its interfaces apply on every node it may be announced from); give them the same interfaces or the same nodeSelectors"
        ]
    );
    assert_eq!(
        case(ad(
            "bad",
            "{ipAddressPoolSelectors: [{matchExpressions: [{key: zone, operator: Near}]}]}"
        )),
        [
            "L2Advertisement metallb-system/bad: spec.ipAddressPoolSelectors[0].matchExpressions[0].operator: unknown operator \"Near\"; use In, NotIn, Exists or DoesNotExist",
            "L2Advertisement metallb-system/bad: spec.ipAddressPoolSelectors selects no IPAddressPool of the input",
            "IPAddressPool metallb-system/lan: no L2Advertisement announces it, so MetalLB answers for none of its addresses; add an L2Advertisement for it, or remove it",
        ]
    );
}

#[test]
fn advertisements_of_one_pool_merge_when_one_pool_can_say_it() {
    let ad = |name: &str, spec: &str| {
        format!(
            "---\nkind: L2Advertisement\nmetadata: {{name: {name}, namespace: metallb-system, labels: {{}}}}\nspec: {spec}\n"
        )
    };
    let labelled = (
        "pools.yaml",
        "kind: IPAddressPool\nmetadata: {name: lan, namespace: metallb-system, labels: {zone: a}}\nspec: {addresses: [203.0.113.0/28]}\n---\nkind: IPAddressPool\nmetadata: {name: wan, namespace: metallb-system}\nspec: {addresses: [198.51.100.0/28]}\n".to_owned(),
    );
    // Same interfaces on two node sets: the union of the nodes.
    let pools = converted(&[
        labelled.clone(),
        (
            "ads.yaml",
            ad(
                "a",
                "{ipAddressPoolSelectors: [{matchLabels: {zone: a}}], nodeSelectors: [{matchLabels: {rack: a}}], interfaces: [eth0]}",
            ) + &ad(
                "b",
                "{ipAddressPools: [lan, wan], nodeSelectors: [{matchLabels: {rack: b}}], interfaces: [eth0]}",
            ),
        ),
    ]);
    let rack = |r: &str| NodeSelector {
        match_labels: [("rack".to_owned(), r.to_owned())].into(),
        match_expressions: vec![],
    };
    assert_eq!(pools[0].node_selectors, [rack("a"), rack("b")]);
    assert_eq!(pools[0].interfaces, ["eth0"]);
    assert_eq!(pools[1].node_selectors, [rack("b")]);
    // The same nodes on two interface sets: the union of the interfaces;
    // an advertisement for every node makes the pool every node's.
    let pools = converted(&[
        labelled,
        (
            "ads.yaml",
            ad("a", "{interfaces: [eth1]}") + &ad("b", "{interfaces: [eth0, eth1]}"),
        ),
    ]);
    assert!(pools[0].node_selectors.is_empty());
    assert_eq!(pools[0].interfaces, ["eth1", "eth0"]);
}

#[test]
fn several_namespaces_and_duplicates_are_refused() {
    let other = (
        "other.yaml",
        "kind: IPAddressPool\nmetadata: {name: example, namespace: tenant}\nspec: {addresses: [203.0.113.0/28]}\n".to_owned(),
    );
    let errors = refused(&[fixture!("simple_pool_adv_l2.yaml"), other]);
    assert_eq!(
        errors,
        [
            "the objects come from namespaces \"metallb-system\" and \"tenant\"; MetalLB reads only those of the namespace it runs in: convert that namespace's objects alone",
            "IPAddressPool tenant/example appears twice",
        ]
    );
}

#[test]
fn rules_of_ferrolbs_config_still_apply_to_the_result() {
    let overlapping = [
        pool_object("a", "203.0.113.0/28"),
        (
            "more.yaml",
            "kind: IPAddressPool\nmetadata: {name: b, namespace: metallb-system}\nspec: {addresses: [203.0.113.8/29, 127.0.0.1/32], serviceAllocation: {priority: -3}}\n".to_owned(),
        ),
        empty_advertisement(),
    ];
    let errors = refused(&overlapping);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("the converted config would be refused:\n"),
        "{errors:?}"
    );
    for part in [
        "pool \"b\": address-pools[1].addresses[0]: 203.0.113.8/29 overlaps 203.0.113.0/28 of pool \"a\"",
        "pool \"b\": address-pools[1].addresses[1]: 127.0.0.1/32",
        "pool \"b\": address-pools[1].service-allocation.priority: priority -3 is negative",
    ] {
        assert!(errors[0].contains(part), "{part} in {}", errors[0]);
    }
}

#[test]
fn hostile_input_is_refused_within_the_config_budget() {
    // A billion laughs: nine levels of ten aliases each.
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..9 {
        let prev = level - 1;
        bomb.push_str(&format!(
            "a{level}: &a{level} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
        ));
    }
    let errors = refused(&[("bomb.yaml", bomb)]);
    assert!(
        errors[0].starts_with("bomb.yaml: the config holds more than 100000 values")
            || errors[0].starts_with("bomb.yaml: the config expands to more than"),
        "{errors:?}"
    );
    let long = (
        "long.yaml",
        format!("# {}\n", "x".repeat(budget::MAX_TEXT_BYTES)),
    );
    assert!(refused(&[long])[0].starts_with("long.yaml: the config is "));
    let cases: [(&str, &str); 6] = [
        ("tabs.yaml", "kind: IPAddressPool\n\tmetadata: x\n"),
        ("items.yaml", "kind: List\nitems: 3\n"),
        ("scalar.yaml", "just a string\n"),
        (
            "nospec.yaml",
            "kind: IPAddressPool\nmetadata: {namespace: metallb-system}\nspec: [1, 2]\n",
        ),
        (
            "types.yaml",
            "kind: IPAddressPool\nmetadata: {name: p, namespace: metallb-system}\nspec: {addresses: 203.0.113.0/28, autoAssign: maybe}\n",
        ),
        ("empty.yaml", ""),
    ];
    for (name, text) in cases {
        let errors = refused(&[(name, text.to_owned())]);
        assert!(!errors.is_empty(), "{name}");
        assert!(
            errors.iter().all(|e| !e.is_empty() && e.len() < 2000),
            "{name}: {errors:?}"
        );
    }
    assert_eq!(
        refused(&[("empty.yaml", String::new())]),
        ["the input holds no IPAddressPool"]
    );
    assert!(
        refused(&[("tabs.yaml", "kind: IPAddressPool\n\tmetadata: x\n".into())])[0]
            .starts_with("tabs.yaml: ")
    );
    let nameless = refused(&[(
        "nospec.yaml",
        "kind: IPAddressPool\nmetadata: {namespace: metallb-system}\nspec: [1, 2]\n".into(),
    )]);
    assert!(
        nameless[0].starts_with("IPAddressPool metallb-system/(no name): spec: invalid type"),
        "{nameless:?}"
    );
}
