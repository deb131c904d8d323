//! Prints what the LAN membership costs one node and how fast it sees a
//! death, at 100, 1,000 and 5,000 members, by simulating the pure core
//! (default settings: 100 ms heartbeats, 600 ms timeout, 3 watchers).
//!
//! `cargo run --release -p ferrolb-speaker --example membership_scale`

use std::time::Duration;

use ferrolb_speaker::liveness::sim;

fn main() {
    println!(
        "{:>8} {:>14} {:>14} {:>12} {:>14} {:>22}",
        "members", "sent pkts/s", "max pkts/s", "sent B/s", "detection", "verdict pkts/watcher"
    );
    for n in [100, 1_000, 5_000] {
        let r = sim::scale(n, Duration::from_secs(2));
        println!(
            "{:>8} {:>14.1} {:>14.1} {:>12.0} {:>11} ms {:>22}",
            r.members,
            r.packets_per_second,
            r.max_packets_per_second,
            r.bytes_per_second,
            r.detection.as_millis(),
            r.verdict_packets
        );
    }
}
