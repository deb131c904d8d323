//! `ferrolb-controller convert-metallb` as an operator runs it on MetalLB's
//! documented objects: what converts is a ConfigMap `check-config` accepts;
//! what cannot be converted prints no config, names the object and field,
//! and fails.

use std::path::PathBuf;
use std::process::{Command, Output};

use ferrolb_e2e::daemons::binary;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../config/tests/fixtures/metallb")
        .join(name)
}

fn controller(args: &[&str]) -> Output {
    Command::new(binary("ferrolb-controller"))
        .args(args)
        .output()
        .expect("run ferrolb-controller")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn documented_objects_convert_to_a_configmap_check_config_accepts() {
    for files in [
        &["simple_pool_adv_l2.yaml"][..],
        &["kubectl_list.yaml"],
        &["ipaddresspool_simple.yaml", "l2adv_with_node_selector.yaml"],
    ] {
        let paths: Vec<String> = files
            .iter()
            .map(|f| fixture(f).display().to_string())
            .collect();
        let mut args = vec!["convert-metallb"];
        args.extend(paths.iter().map(String::as_str));
        let out = controller(&args);
        assert!(out.status.success(), "{files:?}: {}", text(&out.stderr));
        let converted = std::env::temp_dir().join(ferrolb_e2e::control_plane::unique("converted"));
        std::fs::write(&converted, &out.stdout).expect("write the converted ConfigMap");
        let check = controller(&["check-config", converted.to_str().expect("utf-8 path")]);
        let _ = std::fs::remove_file(&converted);
        let report = text(&check.stdout);
        assert!(check.status.success(), "{files:?}: {report}");
        assert!(
            report.starts_with("ConfigMap ferrolb-system/ferrolb-config data.config: valid"),
            "{files:?}: {report}"
        );
    }
}

#[test]
fn what_cannot_be_converted_prints_no_config_and_names_the_object() {
    let out = controller(&[
        "convert-metallb",
        fixture("simple_pool_adv_bgp.yaml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "", "no config is printed");
    let errors = text(&out.stderr);
    assert!(
        errors.contains("BGPAdvertisement metallb-system/empty: it announces pools over BGP"),
        "{errors}"
    );
    let missing = controller(&["convert-metallb", "/nonexistent/metallb.yaml"]);
    assert_eq!(missing.status.code(), Some(64), "{}", text(&missing.stderr));
}
