//! Failover as a client on the LAN sees it, with three node namespaces and a
//! client namespace: TCP connections to EXTERNAL-IP:80 every 10 ms (through
//! the nftables kube-proxy stand-in) and ARP every 10 ms. Scenarios: the
//! owner node dies (speaker SIGKILL and LAN link down at once); SIGTERM of
//! the owner's speaker; a rolling restart of all three; the owner's API path
//! cut and the API server frozen, 30 s each; the owner's LAN link cut and
//! restored; the speakers' API writes at idle, from kube-apiserver's own
//! `apiserver_request_total`. Prints the figures; asserts nothing about
//! speed. `FERROLB_BENCH_TRIALS` (default 10) sets the trials per scenario,
//! `FERROLB_BENCH_SCENARIOS` (e.g. `4,5,6`; default all) which run.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrolb_e2e::cluster::{Cluster, answers, start_speaker};
use ferrolb_e2e::netns::API_ADDRESS;
use ferrolb_e2e::objects::LoadBalancer;
use ferrolb_e2e::{Netns, wait_for};

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// A process in a namespace whose output lines are kept with the time each
/// arrived; killed on drop.
struct Watcher {
    child: Child,
    lines: Arc<Mutex<Vec<(u128, String)>>>,
}

impl Watcher {
    fn start(ns: &Netns, program: &str, args: &[&str]) -> Watcher {
        let mut child = ns
            .command(program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start watcher");
        let stdout = child.stdout.take().expect("piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                sink.lock().unwrap().push((now_ms(), line));
            }
        });
        Watcher { child, lines }
    }

    fn lines(&self) -> Vec<(u128, String)> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// TCP attempts as `(start ms, ok)`, in start order.
fn attempts(watcher: &Watcher) -> Vec<(u128, bool)> {
    let mut out: Vec<(u128, bool)> = watcher
        .lines()
        .iter()
        .filter_map(|(_, line)| {
            let mut words = line.split_whitespace();
            let start = words.next()?.parse().ok()?;
            Some((start, words.next()? == "ok"))
        })
        .collect();
    out.sort();
    out
}

/// The longest time between two successful attempts started at or after
/// `from`, and how many attempts from then on failed.
fn gap_and_failures(attempts: &[(u128, bool)], from: u128) -> (u128, usize) {
    let window: Vec<&(u128, bool)> = attempts.iter().filter(|(s, _)| *s >= from).collect();
    let oks: Vec<u128> = window
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(s, _)| *s)
        .collect();
    let gap = oks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    (gap, window.iter().filter(|(_, ok)| !*ok).count())
}

/// Frames claiming `ip` (replies, gratuitous requests) as `(arrival ms,
/// sender MAC)`.
fn replies(arp: &Arp, ip: &str) -> Vec<(u128, String)> {
    let reply = format!("Reply {ip} is-at ");
    let gratuitous = format!("who-has {ip} tell {ip}");
    arp.capture
        .lines()
        .into_iter()
        .filter(|(_, line)| line.contains(&reply) || line.contains(&gratuitous))
        .filter_map(|(at, line)| {
            let mac = line.split_whitespace().nth(1)?.to_lowercase();
            Some((at, mac))
        })
        .collect()
}

/// ARP for `ip` from `client` about every 10 ms (one `arping` after
/// another; iputils' arping takes whole seconds as its interval), with every
/// ARP frame for `ip` the client sees recorded by `tcpdump`: replies and
/// gratuitous frames from any MAC.
struct Arp {
    capture: Watcher,
    _asking: Watcher,
}

fn arping(client: &Netns, ip: &str) -> Arp {
    let capture = Watcher::start(client, "tcpdump", &["-l", "-n", "-e", "-i", "eth0", "arp"]);
    std::thread::sleep(Duration::from_millis(300));
    let asking = Watcher::start(
        client,
        "sh",
        &[
            "-c",
            &format!("while :; do arping -q -c 1 -w 1 -I eth0 {ip}; sleep 0.01; done"),
        ],
    );
    Arp {
        capture,
        _asking: asking,
    }
}

fn metric(ns: &Netns, name: &str) -> String {
    let out = ns.exec("curl", &["-s", "http://127.0.0.1:7473/metrics"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(name))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn owner_of(cluster: &Cluster, ip: &str) -> usize {
    wait_for(
        &format!("exactly one node answering for {ip}"),
        Duration::from_secs(30),
        || async {
            match answers(&cluster.lan.client, ip).as_slice() {
                [mac] => cluster
                    .node_with_mac(mac)
                    .ok_or_else(|| format!("{mac} is no node's MAC")),
                other => Err(format!("answers: {other:?}")),
            }
        },
    )
    .await
}

async fn all_live(cluster: &Cluster) {
    for (i, ns) in cluster.lan.nodes.iter().enumerate() {
        if cluster.speakers[i].is_none() {
            continue;
        }
        wait_for("every member live", Duration::from_secs(30), || async {
            let live = metric(ns, "ferrolb_speaker_members_live");
            (live == "ferrolb_speaker_members_live 3")
                .then_some(())
                .ok_or(live)
        })
        .await;
    }
}

fn restart(cluster: &mut Cluster, i: usize) {
    cluster.speakers[i - 1] = Some(start_speaker(&cluster.plane, cluster.lan.node(i), i));
}

/// Write requests the API server counted, by resource.
fn api_writes(cluster: &Cluster) -> BTreeMap<String, f64> {
    let text = cluster.plane.kubectl(&["get", "--raw", "/metrics"]);
    let mut writes = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let label = |name: &str| {
            line.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_owned()
        };
        let verb = label("verb");
        if !["POST", "PUT", "PATCH", "DELETE", "APPLY"].contains(&verb.as_str()) {
            continue;
        }
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *writes.entry(label("resource")).or_insert(0.0) += value;
    }
    writes
}

fn median(values: &mut [u128]) -> u128 {
    values.sort_unstable();
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let trials: usize = std::env::var("FERROLB_BENCH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let probe = env!("CARGO_BIN_EXE_flb-probe");
    let only: Option<Vec<u32>> = std::env::var("FERROLB_BENCH_SCENARIOS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect());
    let runs = |n: u32| only.as_ref().is_none_or(|o| o.contains(&n));
    let mut cluster = Cluster::start(3).await;
    let svc = cluster.expose(LoadBalancer::new("web"), &[1, 2, 3]).await;
    let ip: IpAddr = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .and_then(|i| i[0].ip.as_deref())
        .expect("an address")
        .parse()
        .expect("an IP");
    let ip_text = ip.to_string();
    let node_port = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| p[0].node_port)
        .expect("a node port");
    // kube-proxy's part: a DNAT to a listener on the NodePort in every node.
    let mut listeners = Vec::new();
    for (i, ns) in cluster.lan.nodes.iter().enumerate() {
        let target = format!("{}:{node_port}", ns.v4);
        listeners.push(ns.spawn(probe, &["listen", &target, &format!("node-{}", i + 1)], &[]));
        ns.exec_ok("nft", &["add", "table", "ip", "kp"]);
        ns.exec_ok(
            "nft",
            &["add chain ip kp pre { type nat hook prerouting priority -100 ; }"],
        );
        ns.exec_ok(
            "nft",
            &[&format!(
                "add rule ip kp pre ip daddr {ip} tcp dport 80 dnat to {target}"
            )],
        );
    }
    let client = &cluster.lan.client;
    let sysctl = |path: &str| {
        client
            .exec_ok("cat", &[&format!("/proc/sys/net/{path}")])
            .trim()
            .to_owned()
    };
    let arp_accept = sysctl("ipv4/conf/eth0/arp_accept");
    let locktime = sysctl("ipv4/neigh/eth0/locktime");
    let target = format!("{ip}:80");
    println!(
        "failover: 3 node namespaces, client probing {target} every 10 ms (TCP, 300 ms budget) and ARP every 10 ms"
    );
    println!("  client neighbour settings: arp_accept={arp_accept}, locktime={locktime} (1/100 s)");
    println!("  membership defaults: heartbeat 100 ms, timeout 600 ms; gratuitous ARP on takeover");
    all_live(&cluster).await;

    if runs(1) {
        // 1. The owner node dies: its speaker is killed and its link goes down.
        let mut gaps = Vec::new();
        let mut death_failures = 0;
        for _ in 0..trials {
            let owner = owner_of(&cluster, &ip_text).await;
            let watch = Watcher::start(&cluster.lan.client, probe, &["watch", &target, "10"]);
            tokio::time::sleep(Duration::from_secs(1)).await;
            let t0 = now_ms();
            cluster.kill_speaker(owner);
            cluster.lan.set_node_link(owner, false);
            wait_for("connections again", Duration::from_secs(15), || async {
                let last_ok = attempts(&watch)
                    .iter()
                    .rev()
                    .find(|(_, ok)| *ok)
                    .map(|(s, _)| *s);
                (last_ok.unwrap_or(0) > t0 + 100)
                    .then_some(())
                    .ok_or("none yet".to_owned())
            })
            .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (gap, failed) = gap_and_failures(&attempts(&watch), t0.saturating_sub(200));
            drop(watch);
            gaps.push(gap);
            death_failures += failed;
            cluster.lan.set_node_link(owner, true);
            restart(&mut cluster, owner);
            all_live(&cluster).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let worst = *gaps.iter().max().unwrap_or(&0);
        println!(
            "  owner node dies (SIGKILL + link down), {trials} trials: client gap median {} ms, worst {worst} ms; all gaps {gaps:?} ms; {death_failures} failed attempts",
            median(&mut gaps.clone())
        );
    }
    if runs(2) {
        // 2. SIGTERM of the owner's speaker, then its restart.
        let mut term_failures = Vec::new();
        for _ in 0..trials {
            let owner = owner_of(&cluster, &ip_text).await;
            let watch = Watcher::start(&cluster.lan.client, probe, &["watch", &target, "10"]);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let t0 = now_ms();
            if let Some(mut speaker) = cluster.speakers[owner - 1].take() {
                speaker.terminate();
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            restart(&mut cluster, owner);
            all_live(&cluster).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (_, failed) = gap_and_failures(&attempts(&watch), t0);
            term_failures.push(failed);
        }
        println!(
            "  SIGTERM of the owner's speaker (and its restart), {trials} trials: failed attempts {} in total {term_failures:?}",
            term_failures.iter().sum::<usize>()
        );
    }
    if runs(3) {
        // 3. A rolling restart of all three speakers.
        let watch = Watcher::start(&cluster.lan.client, probe, &["watch", &target, "10"]);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t0 = now_ms();
        for i in 1..=3 {
            if let Some(mut speaker) = cluster.speakers[i - 1].take() {
                speaker.terminate();
            }
            restart(&mut cluster, i);
            all_live(&cluster).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let all = attempts(&watch);
        let (_, failed) = gap_and_failures(&all, t0);
        drop(watch);
        println!(
            "  rolling restart of all three speakers: {failed} failed of {} attempts",
            all.iter().filter(|(s, _)| *s >= t0).count()
        );
    }
    if runs(4) {
        // 4. The owner's path to the API server cut for 30 s.
        let owner = owner_of(&cluster, &ip_text).await;
        let owner_mac = cluster.lan.node(owner).mac.to_lowercase();
        let arp = arping(&cluster.lan.client, &ip_text);
        let ns = cluster.lan.node(owner);
        ns.exec_ok("nft", &["add", "table", "ip", "apicut"]);
        ns.exec_ok(
            "nft",
            &["add chain ip apicut out { type filter hook output priority 0 ; }"],
        );
        ns.exec_ok(
            "nft",
            &[&format!(
                "add rule ip apicut out ip daddr {API_ADDRESS} drop"
            )],
        );
        let t0 = now_ms();
        tokio::time::sleep(Duration::from_secs(30)).await;
        ns.exec_ok("nft", &["delete", "table", "ip", "apicut"]);
        let seen: Vec<(u128, String)> = replies(&arp, &ip_text)
            .into_iter()
            .filter(|(at, _)| *at >= t0)
            .collect();
        drop(arp);
        let macs: BTreeSet<&String> = seen.iter().map(|(_, m)| m).collect();
        let after = owner_of(&cluster, &ip_text).await;
        println!(
            "  owner's API path cut 30 s: {} ARP replies, MACs {macs:?} (owner {owner_mac}); owner after: node-{after} (before: node-{owner})",
            seen.len()
        );
    }
    if runs(5) {
        // 5. The API server frozen (SIGSTOP) for 30 s.
        let owner = owner_of(&cluster, &ip_text).await;
        let owner_mac = cluster.lan.node(owner).mac.to_lowercase();
        let arp = arping(&cluster.lan.client, &ip_text);
        let api = cluster.plane.api_server_pid().to_string();
        let t0 = now_ms();
        Command::new("kill")
            .args(["-STOP", &api])
            .status()
            .expect("kill -STOP");
        tokio::time::sleep(Duration::from_secs(30)).await;
        Command::new("kill")
            .args(["-CONT", &api])
            .status()
            .expect("kill -CONT");
        let seen: Vec<(u128, String)> = replies(&arp, &ip_text)
            .into_iter()
            .filter(|(at, _)| *at >= t0)
            .collect();
        drop(arp);
        let macs: BTreeSet<&String> = seen.iter().map(|(_, m)| m).collect();
        let after = owner_of(&cluster, &ip_text).await;
        println!(
            "  API server frozen 30 s: {} ARP replies, MACs {macs:?} (owner {owner_mac}); owner after: node-{after} (before: node-{owner})",
            seen.len()
        );
    }
    if runs(6) {
        // 6. The owner's LAN link cut, then restored.
        all_live(&cluster).await;
        let owner = owner_of(&cluster, &ip_text).await;
        let owner_mac = cluster.lan.node(owner).mac.to_lowercase();
        let tcp = Watcher::start(&cluster.lan.client, probe, &["watch", &target, "10"]);
        let arp = arping(&cluster.lan.client, &ip_text);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let cut = now_ms();
        cluster.lan.set_node_link(owner, false);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let restored = now_ms();
        cluster.lan.set_node_link(owner, true);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let neigh_1s = cluster
            .lan
            .client
            .exec_ok("ip", &["neigh", "show", &ip_text]);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let neigh_4s = cluster
            .lan
            .client
            .exec_ok("ip", &["neigh", "show", &ip_text]);
        let seen = replies(&arp, &ip_text);
        drop(arp);
        let takeover = seen
            .iter()
            .find(|(at, mac)| *at > cut && *mac != owner_mac)
            .map(|(at, _)| at - cut);
        let last_other = seen
            .iter()
            .filter(|(at, mac)| *at > restored && *mac != owner_mac)
            .map(|(at, _)| at - restored)
            .max();
        let first_owner = seen
            .iter()
            .find(|(at, mac)| *at > restored && *mac == owner_mac)
            .map(|(at, _)| at - restored);
        let (gap, failed) = gap_and_failures(&attempts(&tcp), cut);
        drop(tcp);
        let holds = |neigh: &str| neigh.to_lowercase().contains(&owner_mac);
        println!(
            "  owner's LAN link cut: another node answers after {} ms",
            takeover.map_or("(never)".to_owned(), |t| t.to_string())
        );
        println!(
            "  link restored: owner answers after {} ms, last answer from another MAC {} ms after; client neigh holds the owner's MAC at 1 s: {}, at 4 s: {}; TCP gap {gap} ms, {failed} failed attempts over cut and heal",
            first_owner.map_or("(never)".to_owned(), |t| t.to_string()),
            last_other.map_or("(none)".to_owned(), |t| t.to_string()),
            holds(&neigh_1s),
            holds(&neigh_4s)
        );
        let split_brains: Vec<String> = (1..=3)
            .map(|i| {
                let counted = metric(cluster.lan.node(i), "ferrolb_split_brain_total");
                format!(
                    "node-{i}: {}",
                    counted.split_whitespace().last().unwrap_or("0")
                )
            })
            .collect();
        println!(
            "  split brains the speakers counted: {}",
            split_brains.join(", ")
        );
    }
    if runs(7) {
        // 7. API writes at idle, with the controller stopped so only the
        // speakers write.
        all_live(&cluster).await;
        cluster.controller.kill();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let before = api_writes(&cluster);
        let versions = || {
            cluster.plane.kubectl(&[
                "get",
                "leases",
                "-n",
                "ferrolb-system",
                "-o",
                "custom-columns=NAME:.metadata.name,VERSION:.metadata.resourceVersion",
                "--no-headers",
            ])
        };
        let speaker_leases = versions();
        let window = Duration::from_secs(60);
        tokio::time::sleep(window).await;
        let after = api_writes(&cluster);
        let unchanged = versions() == speaker_leases;
        let mut total = 0.0;
        let mut by_resource = Vec::new();
        for (resource, n) in &after {
            let delta = n - before.get(resource).copied().unwrap_or(0.0);
            if delta > 0.0 {
                by_resource.push(format!("{resource}: {delta}"));
                total += delta;
            }
        }
        println!(
            "  idle, 3 speakers, {} s: {total} API writes ({:.3}/s, {:.4}/s per node) [{}]",
            window.as_secs(),
            total / window.as_secs_f64(),
            total / window.as_secs_f64() / 3.0,
            by_resource.join(", ")
        );
        println!(
            "    the speakers' own Leases in ferrolb-system unchanged over the window: {unchanged} (kube-apiserver renews its own identity Lease every 10 s)"
        );
    }
    drop(listeners);
}
