//! Bad flag values end the speaker with a usage error naming the flag, exit
//! status 2 as for any other usage error, before it connects to anything.

use std::process::Command;

/// Runs the speaker with `args`; its exit status and what it printed on
/// stderr. No API server is reachable: flags are read before any connection.
fn speaker(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrolb-speaker"))
        .args(["--node-name", "node-a"])
        .args(args)
        .env("KUBECONFIG", "/nonexistent")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn zero_and_absurd_durations_are_usage_errors_naming_the_flag() {
    let cases = [
        (
            vec!["--lease-renew", "0s"],
            "error: invalid value '0s' for '--lease-renew <LEASE_RENEW>': 0s is too short; the shortest is 10ms",
        ),
        (
            vec!["--lease-duration", "2h"],
            "error: invalid value '2h' for '--lease-duration <LEASE_DURATION>': 2h is too long; the longest is 1h",
        ),
        (
            vec!["--lease-renew", "1"],
            "error: invalid value '1' for '--lease-renew <LEASE_RENEW>': time unit needed, for example 1sec or 1ms; write a duration like 4s or 500ms",
        ),
        (
            vec!["--lease-duration", "100000000000000000000000s"],
            "error: invalid value '100000000000000000000000s' for '--lease-duration <LEASE_DURATION>': number is too large or cannot be represented without a lack of precision (values below 1ns are not supported); write a duration like 4s or 500ms",
        ),
        (
            vec!["--lease-duration", "2s", "--lease-renew", "2s"],
            "error: --lease-renew (2s) must be shorter than --lease-duration (2s), or the Lease lapses between renewals",
        ),
    ];
    for (args, message) in cases {
        let (code, stderr) = speaker(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().next(), Some(message), "{args:?}: {stderr}");
    }
}
