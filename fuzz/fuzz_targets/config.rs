//! Any text as the ConfigMap's `config` key, and as a file handed to
//! `check-config`: reading never panics, stays within its bounds (the run's
//! memory limit catches what does not), and an accepted config renders to
//! YAML that reads back into the same pools.

#![no_main]

use ferrolb_config::{Config, check};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = check(text).to_string();
    if let Ok(validated) = Config::from_yaml(text) {
        let rendered = validated.config.to_yaml();
        let read = Config::from_yaml(&rendered)
            .unwrap_or_else(|e| panic!("rendered config refused: {e}\n---\n{rendered}"));
        assert_eq!(read.config, validated.config, "{rendered}");
    }
});
