//! The announcer on a real (namespaced) LAN: a client resolving an announced
//! address gets the node's MAC over ARP and NDP, including the unicast probes
//! of its neighbour-unreachability detection; a takeover moves a client's
//! cached MAC without any client traffic; a withdrawn address, or one
//! limited to another interface, goes unanswered. Needs root, `ip`,
//! iputils `arping`, `ndisc6` and `ping`.

mod lan;

use std::time::Duration;

use lan::{FORMER_OWNER_MAC, Lan, NODE_MAC, Speaker, eventually};

const VIP: &str = "198.51.100.10";
const VIP6: &str = "2001:db8:100::10";

/// Starts the speaker for the test called `test` (the child re-runs exactly
/// that test, which then plays the speaker).
fn speaker(lan: &Lan, test: &str) -> Speaker {
    lan.start_speaker(&["--exact", test, "--nocapture", "--test-threads=1"])
}

/// The MACs that answered `arping` for `address`, one per reply, lower case.
fn arping(lan: &Lan, address: &str, count: u32) -> Vec<String> {
    let count = count.to_string();
    let out = lan.in_client("arping", &["-c", &count, "-w", "3", "-I", "eth0", address]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("reply from"))
        .filter_map(|l| Some(l.split('[').nth(1)?.split(']').next()?.to_lowercase()))
        .collect()
}

/// The MACs that answered `ndisc6` for `address` (every reply, not just the
/// first), lower case.
fn ndisc6(lan: &Lan, address: &str, tries: u32) -> Vec<String> {
    let tries = tries.to_string();
    let out = lan.in_client(
        "ndisc6",
        &["-q", "-m", "-r", &tries, "-w", "500", address, "eth0"],
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_lowercase())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The solicited-node group of [`VIP6`], as `ip maddr` prints it.
const VIP6_GROUP: &str = "ff02::1:ff00:10";

#[test]
fn arp_requests_for_an_announced_address_get_the_node_mac() {
    if lan::ran_as_speaker() {
        return;
    }
    let lan = Lan::create("arp");
    let mut speaker = speaker(
        &lan,
        "arp_requests_for_an_announced_address_get_the_node_mac",
    );
    speaker.announce(&[VIP], &[]);
    assert!(
        eventually(Duration::from_secs(10), || !arping(&lan, VIP, 1).is_empty()),
        "{VIP} never answered"
    );

    // iputils arping broadcasts until the first reply, then unicasts to the
    // MAC it learned (a client's probe of a cached entry looks the same).
    let before = speaker.counts(VIP);
    let macs = arping(&lan, VIP, 3);
    assert_eq!(macs, vec![NODE_MAC; 3], "three replies, all from the node");
    let after = speaker.counts(VIP);
    assert_eq!(after.responses_sent - before.responses_sent, 3);
    assert_eq!(after.requests_received - before.requests_received, 3);
    assert!(after.gratuitous_sent >= 1, "a takeover burst was sent");
    assert_eq!(after.conflicts, 0);
}

#[test]
fn neighbor_solicitations_for_an_announced_address_get_the_node_mac() {
    if lan::ran_as_speaker() {
        return;
    }
    let lan = Lan::create("ndp");
    let mut speaker = speaker(
        &lan,
        "neighbor_solicitations_for_an_announced_address_get_the_node_mac",
    );
    assert!(!lan.node_groups().contains(VIP6_GROUP));
    speaker.announce(&[VIP6], &[]);
    assert!(
        eventually(Duration::from_secs(10), || !ndisc6(&lan, VIP6, 1)
            .is_empty()),
        "{VIP6} never answered"
    );
    assert_eq!(ndisc6(&lan, VIP6, 3), vec![NODE_MAC], "exactly one answer");
    assert!(
        lan.node_groups().contains(VIP6_GROUP),
        "the node joined the solicited-node group of {VIP6} (MLD-sending join):\n{}",
        lan.node_groups()
    );
    assert!(speaker.counts(VIP6).responses_sent >= 1);
}

#[test]
fn a_client_probing_its_cached_entry_gets_unicast_answers() {
    if lan::ran_as_speaker() {
        return;
    }
    let lan = Lan::create("nud");
    let mut speaker = speaker(
        &lan,
        "a_client_probing_its_cached_entry_gets_unicast_answers",
    );
    speaker.announce(&[VIP, VIP6], &[]);
    // The speaker's burst may still be running; wait for it to end so the
    // only thing that can confirm the entries below is a probe's answer.
    assert!(eventually(Duration::from_secs(10), || {
        speaker.counts(VIP).gratuitous_sent >= 5 && speaker.counts(VIP6).gratuitous_sent >= 5
    }));
    for address in [VIP, VIP6] {
        lan.client_ip(&[
            "neigh", "replace", address, "lladdr", NODE_MAC, "dev", "eth0", "nud", "stale",
        ]);
        // Traffic on a STALE entry → DELAY (1 s) → PROBE: unicast ARP request
        // / NS to the VIP at the cached MAC. Only a unicast reply (ARP) or a
        // solicited NA (S=1) makes the entry REACHABLE; otherwise it FAILs.
        let _ = lan.in_client("ping", &["-c", "1", "-W", "1", address]);
        assert!(
            eventually(Duration::from_secs(6), || {
                lan.client_neighbour(address) == Some((NODE_MAC.to_owned(), "reachable".to_owned()))
            }),
            "{address}: {:?}",
            lan.client_neighbour(address)
        );
    }
    assert!(speaker.counts(VIP).responses_sent >= 1);
    assert!(speaker.counts(VIP6).responses_sent >= 1);
}

#[test]
fn a_takeover_moves_a_clients_cached_mac_to_the_node() {
    if lan::ran_as_speaker() {
        return;
    }
    let lan = Lan::create("garp");
    let mut speaker = speaker(&lan, "a_takeover_moves_a_clients_cached_mac_to_the_node");
    for address in [VIP, VIP6] {
        lan.client_ip(&[
            "neigh",
            "replace",
            address,
            "lladdr",
            FORMER_OWNER_MAC,
            "dev",
            "eth0",
            "nud",
            "reachable",
        ]);
        assert_eq!(
            lan.client_neighbour(address).map(|(mac, _)| mac),
            Some(FORMER_OWNER_MAC.to_owned())
        );
    }
    // The client sends nothing from here on: only the gratuitous ARP and the
    // unsolicited NA (Override set) can change its entries.
    speaker.announce(&[VIP, VIP6], &[]);
    for address in [VIP, VIP6] {
        assert!(
            eventually(Duration::from_secs(3), || {
                lan.client_neighbour(address).map(|(mac, _)| mac) == Some(NODE_MAC.to_owned())
            }),
            "{address}: {:?}",
            lan.client_neighbour(address)
        );
    }
    assert!(speaker.counts(VIP).gratuitous_sent >= 1);
    assert!(speaker.counts(VIP6).gratuitous_sent >= 1);
    assert_eq!(
        speaker.counts(VIP).requests_received,
        0,
        "no client traffic"
    );
}

#[test]
fn a_withdrawn_address_is_no_longer_answered() {
    if lan::ran_as_speaker() {
        return;
    }
    let lan = Lan::create("gone");
    let mut speaker = speaker(&lan, "a_withdrawn_address_is_no_longer_answered");
    speaker.announce(&[VIP, VIP6], &[]);
    assert!(eventually(Duration::from_secs(10), || {
        !arping(&lan, VIP, 1).is_empty() && !ndisc6(&lan, VIP6, 1).is_empty()
    }));

    speaker.withdraw(&[VIP, VIP6]);
    // No waiting: the answer stops as soon as the channel holds the change.
    assert_eq!(arping(&lan, VIP, 2), Vec::<String>::new());
    assert_eq!(ndisc6(&lan, VIP6, 2), Vec::<String>::new());
    assert!(
        eventually(Duration::from_secs(2), || !lan
            .node_groups()
            .contains(VIP6_GROUP)),
        "the solicited-node group is left:\n{}",
        lan.node_groups()
    );
}

#[test]
fn an_address_limited_to_another_interface_is_not_answered_here() {
    if lan::ran_as_speaker() {
        return;
    }
    let lan = Lan::create("iface");
    let mut speaker = speaker(
        &lan,
        "an_address_limited_to_another_interface_is_not_answered_here",
    );
    // A pool whose `interfaces` lists only eth1, which this node lacks.
    speaker.announce(&[VIP], &["eth1"]);
    assert_eq!(arping(&lan, VIP, 2), Vec::<String>::new());
    assert_eq!(speaker.counts(VIP).gratuitous_sent, 0);

    speaker.announce(&[VIP], &["eth0"]);
    assert!(eventually(Duration::from_secs(10), || arping(&lan, VIP, 1)
        == vec![NODE_MAC]));
}

#[test]
fn an_interface_that_comes_up_later_is_announced_on() {
    if lan::ran_as_speaker() {
        return;
    }
    let lan = Lan::create("later");
    let down = lan.in_node("ip", &["link", "set", "eth0", "down"]);
    assert!(down.status.success());
    let mut speaker = speaker(&lan, "an_interface_that_comes_up_later_is_announced_on");
    speaker.announce(&[VIP], &[]);
    lan.client_ip(&[
        "neigh",
        "replace",
        VIP,
        "lladdr",
        FORMER_OWNER_MAC,
        "dev",
        "eth0",
        "nud",
        "reachable",
    ]);
    assert_eq!(speaker.counts(VIP).gratuitous_sent, 0, "no interface yet");

    // The next interface scan (every 5 s) finds eth0 up and starts answering
    // there, beginning with a gratuitous burst for what is already owned.
    let up = lan.in_node("ip", &["link", "set", "eth0", "up"]);
    assert!(up.status.success());
    assert!(
        eventually(Duration::from_secs(8), || {
            lan.client_neighbour(VIP).map(|(mac, _)| mac) == Some(NODE_MAC.to_owned())
        }),
        "{:?}",
        lan.client_neighbour(VIP)
    );
    assert_eq!(arping(&lan, VIP, 1), vec![NODE_MAC]);
}

/// The client's MAC as the speaker reports it.
const CLIENT: &str = lan::CLIENT_MAC;

/// The client claims `address` with `count` gratuitous ARPs (request form,
/// as `arp_notify` sends them), the way a host configured with it does.
fn client_claims(lan: &Lan, address: &str, count: u32) {
    let out = lan.in_client(
        "arping",
        &[
            "-U",
            "-c",
            &count.to_string(),
            "-w",
            "3",
            "-I",
            "eth0",
            address,
        ],
    );
    assert!(
        out.status.success() || out.status.code() == Some(1),
        "arping -U: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_address_in_use_on_the_lan_is_not_announced_until_it_is_free() {
    if lan::ran_as_speaker() {
        return;
    }
    let lan = Lan::create("inuse");
    let mut speaker = speaker(
        &lan,
        "an_address_in_use_on_the_lan_is_not_announced_until_it_is_free",
    );
    // The client already uses both addresses: its kernel answers the ARP
    // probe and the DAD probe.
    lan.client_ip(&["addr", "add", &format!("{VIP}/32"), "dev", "eth0"]);
    lan.client_ip(&[
        "addr",
        "add",
        &format!("{VIP6}/128"),
        "dev",
        "eth0",
        "nodad",
    ]);
    speaker.announce(&[VIP, VIP6], &[]);
    let expected = vec![
        format!("{VIP} {CLIENT} false"),
        format!("{VIP6} {CLIENT} false"),
    ];
    assert!(
        eventually(Duration::from_secs(5), || {
            let mut events = speaker.events();
            events.sort();
            events == expected
        }),
        "events: {:?}",
        speaker.events()
    );
    assert_eq!(speaker.totals(), (0, 2), "two conflicts, no split brain");
    for address in [VIP, VIP6] {
        let counts = speaker.counts(address);
        assert_eq!(
            counts.gratuitous_sent, 0,
            "{address} was announced: {counts:?}"
        );
        assert_eq!(
            counts.responses_sent, 0,
            "{address} was answered: {counts:?}"
        );
    }

    // Probed again every 2 s (here): once the client lets go, the node
    // announces, and the conflicts are not reported twice.
    lan.client_ip(&["addr", "del", &format!("{VIP}/32"), "dev", "eth0"]);
    lan.client_ip(&["addr", "del", &format!("{VIP6}/128"), "dev", "eth0"]);
    assert!(
        eventually(Duration::from_secs(8), || arping(&lan, VIP, 1)
            == vec![NODE_MAC]),
        "{VIP} is announced once free"
    );
    assert!(
        eventually(Duration::from_secs(8), || ndisc6(&lan, VIP6, 1)
            == vec![NODE_MAC]),
        "{VIP6} is announced once free"
    );
    assert_eq!(speaker.events().len(), 2);
    assert_eq!(speaker.totals(), (0, 2));
}

#[test]
fn claims_on_an_announced_address_are_told_apart_by_mac() {
    if lan::ran_as_speaker() {
        return;
    }
    let lan = Lan::create("claims");
    let mut speaker = speaker(&lan, "claims_on_an_announced_address_are_told_apart_by_mac");
    speaker.announce(&[VIP], &[]);
    assert!(
        eventually(Duration::from_secs(5), || arping(&lan, VIP, 1)
            == vec![NODE_MAC]),
        "{VIP} never answered"
    );
    // The client now claims the address too.
    lan.client_ip(&["addr", "add", &format!("{VIP}/32"), "dev", "eth0"]);

    // A host that is no speaker: an IP conflict, reported once, however
    // many frames it sends.
    client_claims(&lan, VIP, 2);
    assert!(eventually(Duration::from_secs(3), || speaker.totals() == (0, 1)));
    client_claims(&lan, VIP, 2);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(speaker.events(), vec![format!("{VIP} {CLIENT} true")]);
    assert_eq!(speaker.totals(), (0, 1));
    let conflicts = speaker.counts(VIP).conflicts;
    assert!(
        conflicts >= 4,
        "every frame counted per address: {conflicts}"
    );

    // The same MAC published by a speaker: a split brain, counted once per
    // episode, and the address announced again to win the clients back.
    speaker.set_speakers(&[CLIENT], &[]);
    let sent = speaker.counts(VIP).gratuitous_sent;
    client_claims(&lan, VIP, 2);
    assert!(eventually(Duration::from_secs(3), || speaker.totals() == (1, 1)));
    assert!(
        eventually(Duration::from_secs(3), || speaker
            .counts(VIP)
            .gratuitous_sent
            > sent),
        "announced again"
    );
    client_claims(&lan, VIP, 2);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(speaker.totals(), (1, 1), "one episode");

    // A speaker that released its Lease hands over; so does every speaker
    // once this one is leaving: neither counts, nor is reported.
    speaker.set_speakers(&[], &[CLIENT]);
    let before = speaker.counts(VIP).conflicts;
    client_claims(&lan, VIP, 2);
    speaker.set_speakers(&[CLIENT], &[]);
    speaker.leave();
    client_claims(&lan, VIP, 2);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(speaker.totals(), (1, 1));
    assert_eq!(
        speaker.counts(VIP).conflicts,
        before,
        "a handover is no conflict"
    );
    assert_eq!(speaker.events().len(), 1);
    let log = speaker.log();
    let warned = |what: &str| {
        log.lines()
            .filter(|l| l.contains("WARN") && l.contains(what))
            .count()
    };
    assert_eq!(
        (warned("split brain"), warned("IP conflict")),
        (1, 1),
        "{log}"
    );
}

#[test]
fn a_refresh_repeats_the_announcements_after_the_burst() {
    if lan::ran_as_speaker() {
        return;
    }
    let lan = Lan::create("refresh");
    let mut speaker = speaker(&lan, "a_refresh_repeats_the_announcements_after_the_burst");
    speaker.announce(&[VIP, VIP6], &[]);
    // The burst sends five frames over 4.4 s; the refresh (every 500 ms
    // here) keeps sending after it, for both families.
    for address in [VIP, VIP6] {
        assert!(
            eventually(Duration::from_secs(10), || speaker
                .counts(address)
                .gratuitous_sent
                >= 8),
            "{address}: {:?}",
            speaker.counts(address)
        );
    }
}

#[test]
fn without_a_refresh_the_burst_is_all_that_is_sent() {
    if lan::ran_as_speaker() {
        return;
    }
    let lan = Lan::create("norefr");
    let mut speaker = speaker(&lan, "without_a_refresh_the_burst_is_all_that_is_sent");
    speaker.announce(&[VIP], &[]);
    assert!(eventually(Duration::from_secs(8), || speaker
        .counts(VIP)
        .gratuitous_sent
        >= 5));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(speaker.counts(VIP).gratuitous_sent, 5);
}
