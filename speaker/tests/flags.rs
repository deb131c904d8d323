//! Bad flag values (durations, rates) end the speaker with a usage error naming the flag, exit
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
fn zero_absurd_and_unreadable_values_are_usage_errors_naming_the_flag() {
    let cases = [
        (
            vec!["--member-interval", "0s"],
            "error: invalid value '0s' for '--member-interval <MEMBER_INTERVAL>': 0s is too short; the shortest is 10ms",
        ),
        (
            vec!["--member-timeout", "2h"],
            "error: invalid value '2h' for '--member-timeout <MEMBER_TIMEOUT>': 2h is too long; the longest is 1h",
        ),
        (
            vec!["--member-interval", "1"],
            "error: invalid value '1' for '--member-interval <MEMBER_INTERVAL>': time unit needed, for example 1sec or 1ms; write a duration like 4s or 500ms",
        ),
        (
            vec!["--member-timeout", "100000000000000000000000s"],
            "error: invalid value '100000000000000000000000s' for '--member-timeout <MEMBER_TIMEOUT>': number is too large or cannot be represented without a lack of precision (values below 1ns are not supported); write a duration like 4s or 500ms",
        ),
        (
            vec!["--reply-rate-per-requester", "100"],
            "error: invalid value '100' for '--reply-rate-per-requester <REPLY_RATE_PER_REQUESTER>': no '/' between a count and a period; write a rate like 100/s or 20/500ms",
        ),
        (
            vec!["--reply-rate-per-interface", "10/0ms"],
            "error: invalid value '10/0ms' for '--reply-rate-per-interface <REPLY_RATE_PER_INTERFACE>': the period: 0s is too short; the shortest is 10ms",
        ),
        (
            vec!["--reply-rate-per-requester", "2000/s"],
            "error: --reply-rate-per-requester (2000/1s) must not exceed --reply-rate-per-interface (1000/1s), or one requester can take every reply",
        ),
        (
            vec!["--member-timeout", "2s", "--member-interval", "2s"],
            "error: --member-interval (2s) must be shorter than --member-timeout (2s), or every peer looks dead between heartbeats",
        ),
    ];
    for (args, message) in cases {
        let (code, stderr) = speaker(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().next(), Some(message), "{args:?}: {stderr}");
    }
}
