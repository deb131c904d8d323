//! A hostile LAN changes nothing a client sees: a rogue host floods the
//! owner of an address with 10,000 frames a second for ten seconds —
//! truncated, oversized, wrong-type, VLAN-tagged and spoofed frames (requests
//! for unowned addresses, solicitations with bad checksums, requests from
//! martian senders, gratuitous frames claiming the owned address from many
//! MACs, and valid requests far above the reply rate) — while a client keeps
//! resolving the address. Every probe of the client is answered; the speaker
//! answers for no other address, counts each dropped frame under its reason,
//! keeps its replies to the rogue within its configured rate, warns about
//! the conflict once, and stays under one core.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrolb_e2e::cluster::{Cluster, MEMBERLIST_KEY, answers};
use ferrolb_e2e::daemons::binary;
use ferrolb_e2e::netns::Netns;
use ferrolb_e2e::objects::LoadBalancer;
use ferrolb_e2e::{Daemon, Lan, wait_for};
use ferrolb_speaker::wire::{ArpOperation, ArpRepr, Ethernet, MacAddr, NdpMessage, NdpRepr, ndp};

/// What the rogue sends: frames a second, for how long.
const FLOOD_RATE: u64 = 10_000;
const FLOOD_SECONDS: u64 = 10;

/// The speaker's reply limits in this test: per requester, and per
/// interface (count per second, as the flags give them).
const PER_REQUESTER: u64 = 50;
const PER_INTERFACE: u64 = 200;

/// Ethernet and ARP-over-Ethernet frames the rogue sends, by label; each
/// label's frames are dropped under one reason (or are a claim, or a
/// request the rate limit decides).
struct Frames {
    lines: Vec<(&'static str, Vec<u8>)>,
}

impl Frames {
    fn add(&mut self, label: &'static str, frame: Vec<u8>) {
        self.lines.push((label, frame));
    }

    fn write(&self, path: &std::path::Path) {
        let text: String = self
            .lines
            .iter()
            .map(|(label, frame)| {
                let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
                format!("{label} {hex}\n")
            })
            .collect();
        std::fs::write(path, text).expect("write the frame list");
    }
}

fn mac(text: &str) -> MacAddr {
    text.parse().expect("a MAC")
}

fn arp_request(from: MacAddr, sender: Ipv4Addr, target: Ipv4Addr) -> ArpRepr {
    ArpRepr {
        ethernet: Ethernet {
            source: from,
            destination: MacAddr::broadcast(),
        },
        operation: ArpOperation::Request,
        sender_mac: from,
        sender_ip: sender,
        target_mac: MacAddr::zero(),
        target_ip: target,
    }
}

fn solicitation(from: MacAddr, source: Ipv6Addr, target: Ipv6Addr) -> NdpRepr {
    let group = ndp::solicited_node(target);
    NdpRepr {
        ethernet: Ethernet {
            source: from,
            destination: ndp::multicast_mac(group),
        },
        source,
        destination: group,
        message: NdpMessage::NeighborSolicit {
            target,
            source_ll: Some(from),
        },
    }
}

/// The rogue's frames: `vip` is owned, `unowned`/`unowned6` are pool
/// addresses nobody announces.
fn hostile_frames(rogue: &Netns, vip: Ipv4Addr, unowned: Ipv4Addr, unowned6: Ipv6Addr) -> Frames {
    let me = mac(&rogue.mac);
    let mut frames = Frames { lines: Vec::new() };
    let request = arp_request(me, rogue.v4, vip).to_vec();
    for _ in 0..4 {
        frames.add("truncated", request[..30].to_vec());
        let mut token_ring = request.clone();
        token_ring[14..16].copy_from_slice(&[0, 6]);
        frames.add("wrong_type", token_ring);
        // The same request on VLAN 42 of the wire.
        let mut tagged = request[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 42]);
        tagged.extend_from_slice(&request[12..]);
        frames.add("vlan", tagged);
        frames.add("unowned_arp", arp_request(me, rogue.v4, unowned).to_vec());
        frames.add("unowned_ns", solicitation(me, rogue.v6, unowned6).to_vec());
        let mut bad = solicitation(me, rogue.v6, unowned6).to_vec();
        bad[14 + 40 + 2] ^= 0x5a;
        frames.add("bad_checksum", bad);
        frames.add("valid", request.clone());
    }
    for sender in [
        [127, 0, 0, 1],
        [0, 1, 2, 3],
        [224, 0, 0, 5],
        [255, 255, 255, 255],
    ] {
        frames.add(
            "martian",
            arp_request(me, Ipv4Addr::from(sender), vip).to_vec(),
        );
    }
    frames.add(
        "martian",
        solicitation(me, Ipv6Addr::LOCALHOST, unowned6).to_vec(),
    );
    // Larger than any frame buffer, on a link whose MTU lets it through.
    let mut jumbo = request.clone();
    jumbo.resize(9300, 0);
    frames.add("oversized", jumbo);
    // Gratuitous ARP claiming the owned address, each from its own
    // spoofed MAC.
    for i in 0..CLAIMING_MACS {
        let spoofed = MacAddr::new(0x02, 0xba, 0xd0, 0, 0, i);
        frames.add(
            "claim",
            ArpRepr {
                sender_ip: vip,
                target_ip: vip,
                ..arp_request(spoofed, vip, vip)
            }
            .to_vec(),
        );
    }
    frames
}

/// Distinct spoofed MACs claiming the owned address.
const CLAIMING_MACS: u8 = 16;

/// The drop reason each label's frames are counted under.
const EXCLUSIVE: [(&str, &str); 6] = [
    ("truncated", "truncated"),
    ("oversized", "oversized"),
    ("wrong_type", "unsupported"),
    ("vlan", "vlan"),
    ("bad_checksum", "bad_checksum"),
    ("martian", "martian_source"),
];

/// The speaker's metrics, by series (name and labels).
fn metrics(node: &Netns) -> BTreeMap<String, u64> {
    let out = node.exec("curl", &["-s", "http://127.0.0.1:7473/metrics"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, series: &str) -> u64 {
    after.get(series).copied().unwrap_or(0) - before.get(series).copied().unwrap_or(0)
}

fn dropped(reason: &str) -> String {
    format!("ferrolb_speaker_dropped_frames_total{{reason=\"{reason}\"}}")
}

/// CPU time (user + system) process `pid` has used.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the command name, which may hold spaces: state is the
    // first, utime and stime the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("a command name")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf");
    let per_second: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("CLK_TCK");
    Duration::from_millis(ticks * 1000 / per_second)
}

fn ip_link(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_rogue_host_flooding_the_lan_changes_nothing_a_client_sees() {
    let mut cluster = Cluster::start(1).await;
    // Node 1's speaker with tight reply limits, so the flood exceeds them.
    cluster.kill_speaker(1);
    let node = cluster.lan.node(1);
    let member = node.v4.to_string();
    let per_requester = format!("{PER_REQUESTER}/s");
    let per_interface = format!("{PER_INTERFACE}/s");
    cluster.speakers[0] = Some(Daemon::start_with_env(
        "ferrolb-speaker",
        &[
            "--node-name",
            &Lan::node_name(1),
            "--metrics-address",
            "127.0.0.1:7473",
            "--member-address",
            &member,
            "--reply-rate-per-requester",
            &per_requester,
            "--reply-rate-per-interface",
            &per_interface,
        ],
        &[("FERROLB_MEMBERLIST_SECRET", MEMBERLIST_KEY)],
        &cluster.plane,
        Some(node),
    ));
    let svc = cluster.expose(LoadBalancer::new("web"), &[1]).await;
    let vip: Ipv4Addr = svc
        .status
        .and_then(|s| s.load_balancer?.ingress?.first()?.ip.clone())
        .and_then(|ip| ip.parse().ok())
        .expect("an IPv4 address");
    let node_mac = cluster.lan.node(1).mac.to_lowercase();
    wait_for(
        &format!("node-1 answering for {vip}"),
        Duration::from_secs(20),
        || async {
            let macs = answers(&cluster.lan.client, &vip.to_string());
            if macs == [node_mac.clone()] {
                Ok(())
            } else {
                Err(format!("{macs:?}"))
            }
        },
    )
    .await;

    // The rogue, and a jumbo-frame path from it to node 1 so an oversized
    // frame reaches the speaker whole.
    let rogue = cluster.lan.add_host("r", 51);
    let ports = cluster.lan.bridge.trim_end_matches("br").to_owned();
    for port in [format!("{ports}n1"), format!("{ports}r")] {
        ip_link(&["link", "set", &port, "mtu", "9500"]);
    }
    for ns in [cluster.lan.node(1), &rogue] {
        ip_link(&["-n", &ns.name, "link", "set", "eth0", "mtu", "9500"]);
    }
    let IpAddr::V4(unowned) = cluster.lan.pool_v4(20) else {
        unreachable!("pool_v4 is IPv4")
    };
    assert_ne!(unowned, vip);
    let frames = hostile_frames(&rogue, vip, unowned, cluster.lan.v6(0x150));
    let list = std::env::temp_dir().join(format!("flb-flood-{}.txt", std::process::id()));
    frames.write(&list);
    let probe = binary("flb-probe");

    let speaker = cluster.speakers[0].as_ref().expect("running");
    let pid = speaker.pid();
    let node = cluster.lan.node(1);
    let before = metrics(node);
    let cpu_before = cpu_time(pid);
    let started = Instant::now();
    let flooding = AtomicBool::new(true);
    let (flood, probes, cpu_used, flood_wall) = std::thread::scope(|scope| {
        let client = &cluster.lan.client;
        let flooding = &flooding;
        let vip = vip.to_string();
        let probes = scope.spawn(move || {
            let mut seen = Vec::new();
            while flooding.load(Ordering::Relaxed) {
                seen.push(answers(client, &vip));
                std::thread::sleep(Duration::from_millis(100));
            }
            seen
        });
        let out = rogue
            .command(probe.to_str().expect("utf-8 path"))
            .args([
                "flood",
                "eth0",
                list.to_str().expect("utf-8 path"),
                &FLOOD_RATE.to_string(),
                &FLOOD_SECONDS.to_string(),
            ])
            .output()
            .expect("run flb-probe flood");
        let flood_wall = started.elapsed();
        let cpu_used = cpu_time(pid) - cpu_before;
        flooding.store(false, Ordering::Relaxed);
        assert!(
            out.status.success(),
            "flood: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            probes.join().expect("probe thread"),
            cpu_used,
            flood_wall,
        )
    });
    let _ = std::fs::remove_file(&list);

    let mut sent: BTreeMap<String, u64> = BTreeMap::new();
    let mut measured = String::new();
    for line in flood.lines() {
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["sent", label, n] => {
                sent.insert(label.to_owned(), n.parse().expect("a count"));
            }
            ["rate", total, seconds, per_second] => {
                measured = format!("{total} frames in {seconds} s = {per_second} frames/s");
            }
            _ => {}
        }
    }
    let total_sent: u64 = sent.values().sum();
    let count = |label: &str| sent.get(label).copied().unwrap_or(0);

    // Every frame ends as a drop, a claim, or a reply: wait until the
    // speaker has read them all (lost ones are counted once a second).
    let vip_series = |name: &str| format!("ferrolb_speaker_{name}{{address=\"{vip}\"}}");
    let after = wait_for(
        "the speaker accounting for every frame",
        Duration::from_secs(20),
        || async {
            let now = metrics(node);
            let drops: u64 = now
                .keys()
                .filter(|k| k.starts_with("ferrolb_speaker_dropped_frames_total"))
                .map(|k| delta(&before, &now, k))
                .sum();
            let accounted = drops
                + delta(&before, &now, &vip_series("conflicts_total"))
                + delta(&before, &now, &vip_series("responses_sent_total"));
            if accounted >= total_sent {
                Ok(now)
            } else {
                Err(format!("{accounted} of {total_sent}"))
            }
        },
    )
    .await;
    let window = started.elapsed();
    let d = |series: &str| delta(&before, &after, series);
    let lost = d(&dropped("queue_full"));
    let flood_seconds = flood_wall.as_secs_f64();
    eprintln!("rogue sent {measured}; by kind: {sent:?}");
    eprintln!(
        "speaker: {} of CPU over {flood_seconds:.1} s ({:.0}% of one core); {lost} frames lost to a full queue",
        humanize(cpu_used),
        cpu_used.as_secs_f64() / flood_seconds * 100.0
    );

    // The rogue reached the rate it was asked for (the sender paces on a
    // 1 ms grid and only ever catches up, so it sends exactly this many).
    assert_eq!(total_sent, FLOOD_RATE * FLOOD_SECONDS, "{measured}");

    // Every probe of the client was answered, by node 1 alone.
    let failed: Vec<_> = probes
        .iter()
        .filter(|p| **p != [node_mac.clone()])
        .collect();
    eprintln!(
        "client: {} of {} probes answered during the flood",
        probes.len() - failed.len(),
        probes.len()
    );
    assert!(probes.len() >= 10, "only {} probes", probes.len());
    assert!(
        failed.is_empty(),
        "unanswered or wrongly answered: {failed:?}"
    );

    // No reply for any address but the owned one.
    for (series, value) in &after {
        if series.starts_with("ferrolb_speaker_responses_sent_total") && *value > 0 {
            assert_eq!(series, &vip_series("responses_sent_total"));
        }
    }

    // The drop counters match what was sent; frames the kernel dropped on
    // a full queue (counted too) are the only slack.
    let mut table = Vec::new();
    for (label, reason) in EXCLUSIVE {
        let counted = d(&dropped(reason));
        table.push(format!(
            "{label}: sent {} counted {counted} as {reason}",
            count(label)
        ));
        assert!(
            counted <= count(label) && counted + lost >= count(label),
            "{label}: sent {}, counted {counted} as {reason}, {lost} lost",
            count(label)
        );
    }
    // Requests for unowned addresses: the LAN's own kernels ask too, a
    // handful of times in these seconds.
    let unowned_sent = count("unowned_arp") + count("unowned_ns");
    let not_ours = d(&dropped("not_ours"));
    table.push(format!(
        "unowned: sent {unowned_sent} counted {not_ours} as not_ours"
    ));
    assert!(
        not_ours + lost >= unowned_sent && not_ours <= unowned_sent + 50,
        "unowned: sent {unowned_sent}, counted {not_ours}"
    );
    let claims = d(&vip_series("conflicts_total"));
    table.push(format!(
        "claim: sent {} counted {claims} as conflicts",
        count("claim")
    ));
    assert!(claims <= count("claim") && claims + lost >= count("claim"));
    eprintln!("{}", table.join("\n"));

    // The rogue's valid requests got replies within its rate, the rest
    // were dropped as rate-limited; the client never went short.
    let limited = d(&dropped("requester_rate_limited"));
    let answered = d(&vip_series("responses_sent_total"));
    let allowed = PER_REQUESTER + PER_REQUESTER * window.as_secs();
    let rogue_answered = answered.saturating_sub(probes.len() as u64);
    eprintln!(
        "replies: {answered} sent in {:.1} s ({:.0}/s); the rogue's {} valid requests got about {rogue_answered} ({:.0}/s; limit {PER_REQUESTER}/s, {PER_REQUESTER} at once), {limited} were rate-limited",
        window.as_secs_f64(),
        answered as f64 / window.as_secs_f64(),
        count("valid"),
        rogue_answered as f64 / flood_seconds,
    );
    assert!(
        answered <= allowed + probes.len() as u64 * 3,
        "{answered} replies, allowed {allowed} plus the client's"
    );
    assert!(
        limited + lost + allowed >= count("valid"),
        "{limited} rate-limited of {}",
        count("valid")
    );
    assert_eq!(d(&dropped("interface_rate_limited")), 0);

    // The conflict is one conflict: counted once per spoofed MAC, warned
    // about once.
    assert_eq!(d("ferrolb_ip_conflicts_total"), u64::from(CLAIMING_MACS));
    let log = speaker.output();
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("IP conflict"))
        .count();
    assert_eq!(warnings, 1, "{log}");

    // And all of it under one core.
    assert!(
        cpu_used < flood_wall,
        "the speaker used {cpu_used:?} of CPU in {flood_wall:?}"
    );
}

fn humanize(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}
