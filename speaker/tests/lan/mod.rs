//! A two-namespace LAN for the announcer's test and benchmark: a node
//! namespace where the announcer runs as a real process, a client namespace
//! that resolves addresses through it, one veth pair between them. Only
//! 198.51.100.0/24 and 2001:db8:100::/64 are used, nothing is created in the
//! root namespace, and everything is removed on drop, also when a test panics.
//!
//! The announcer process is this very executable, started again with
//! `ip netns exec` and [`ROLE`] set: a test (or the benchmark's `main`) first
//! calls [`ran_as_speaker`], which plays the speaker when asked to. That
//! needs no extra binary target, and `ip netns exec` also remounts `/sys`, so
//! interface discovery sees the node namespace exactly as on a real node.

// Shared by the test and the benchmark; each uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrolb_speaker::announcer::{Announcements, Announcer, Settings, WireEvent};
use ferrolb_speaker::respond::Speakers;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// The node's MAC on the LAN: what every answer must carry.
pub const NODE_MAC: &str = "02:fb:00:00:00:01";
/// The client's MAC.
pub const CLIENT_MAC: &str = "02:fb:00:00:00:02";
/// A MAC nobody has: a client's stale cache entry from a former owner.
pub const FORMER_OWNER_MAC: &str = "02:fb:00:00:00:99";
/// The node's own (kernel) addresses.
pub const NODE_V4: &str = "198.51.100.1";
/// The node's own IPv6 address.
pub const NODE_V6: &str = "2001:db8:100::1";
/// The client's addresses.
pub const CLIENT_V4: &str = "198.51.100.2";
/// The client's IPv6 address.
pub const CLIENT_V6: &str = "2001:db8:100::2";

/// Environment variable that makes the executable play the speaker.
pub const ROLE: &str = "FLBANN_ROLE";

/// Runs a program; panics if it cannot be started.
fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Runs a program that must succeed.
fn run_ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two namespaces joined by a veth pair, both ends called `eth0`.
#[derive(Debug)]
pub struct Lan {
    /// The node namespace, where the announcer runs.
    pub node: String,
    /// The client namespace.
    pub client: String,
}

impl Lan {
    /// Creates `flbann-n1-<tag>` and `flbann-c-<tag>`, replacing leftovers of
    /// a run that was killed.
    pub fn create(tag: &str) -> Lan {
        let lan = Lan {
            node: format!("flbann-n1-{tag}"),
            client: format!("flbann-c-{tag}"),
        };
        lan.remove();
        run_ok("ip", &["netns", "add", &lan.node]);
        run_ok("ip", &["netns", "add", &lan.client]);
        // Created inside the node namespace with its peer placed straight
        // into the client's: the root namespace never holds either end.
        run_ok(
            "ip",
            &[
                "-n",
                &lan.node,
                "link",
                "add",
                "eth0",
                "address",
                NODE_MAC,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "address",
                CLIENT_MAC,
                "netns",
                &lan.client,
            ],
        );
        for (ns, v4, v6) in [
            (&lan.node, NODE_V4, NODE_V6),
            (&lan.client, CLIENT_V4, CLIENT_V6),
        ] {
            // The kernels must not announce anything themselves, and a
            // gratuitous ARP must only update entries, never create them.
            for sysctl in [
                "net.ipv4.conf.eth0.arp_notify=0",
                "net.ipv4.conf.eth0.arp_accept=0",
                "net.ipv6.conf.eth0.ndisc_notify=0",
                "net.ipv6.conf.eth0.accept_untracked_na=0",
                "net.ipv6.conf.eth0.forwarding=0",
                // A client probing a stale entry does so after 1 s, not 5 s.
                "net.ipv4.neigh.eth0.delay_first_probe_time=1",
                "net.ipv6.neigh.eth0.delay_first_probe_time=1",
            ] {
                run_ok("ip", &["netns", "exec", ns, "sysctl", "-qw", sysctl]);
            }
            run_ok(
                "ip",
                &["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", "eth0"],
            );
            run_ok(
                "ip",
                &[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{v6}/64"),
                    "dev",
                    "eth0",
                    "nodad",
                ],
            );
            run_ok("ip", &["-n", ns, "link", "set", "lo", "up"]);
            run_ok("ip", &["-n", ns, "link", "set", "eth0", "up"]);
        }
        lan
    }

    fn remove(&self) {
        for ns in [&self.node, &self.client] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Runs a program in the client namespace.
    pub fn in_client(&self, program: &str, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", &self.client, program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs a program in the node namespace.
    pub fn in_node(&self, program: &str, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", &self.node, program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs `ip` with `-n <client>`; must succeed.
    pub fn client_ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.client];
        all.extend_from_slice(args);
        run_ok("ip", &all)
    }

    /// The client's neighbour entry for `address`: (MAC, state), lower case.
    pub fn client_neighbour(&self, address: &str) -> Option<(String, String)> {
        let out = self.client_ip(&["neigh", "show", address, "dev", "eth0"]);
        let words: Vec<&str> = out.split_whitespace().collect();
        let mac = words
            .iter()
            .position(|w| *w == "lladdr")
            .and_then(|k| words.get(k + 1))?;
        let state = words.last()?;
        Some((mac.to_lowercase(), state.to_lowercase()))
    }

    /// The multicast groups the node's eth0 has joined.
    pub fn node_groups(&self) -> String {
        run_ok("ip", &["-n", &self.node, "maddr", "show", "dev", "eth0"])
    }

    /// Starts this executable again inside the node namespace as the speaker,
    /// passing `args` (a test's `--exact <name>`).
    pub fn start_speaker(&self, args: &[&str]) -> Speaker {
        let exe = std::env::current_exe().expect("the running executable has a path");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.node])
            .arg(exe)
            .args(args)
            .env(ROLE, "speaker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ip netns exec starts");
        let stdin = child.stdin.take();
        let (tx, replies) = channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(at) = line.find(REPLY) {
                    let _ = tx.send(line[at + REPLY.len()..].to_owned());
                }
            }
        });
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        Speaker {
            child,
            stdin,
            replies,
            log,
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Marks the speaker process's answers on its stdout, which it shares with
/// the test harness's own output.
const REPLY: &str = "FLBANN ";

/// The announcer, running in its own process in the node namespace and
/// driven over stdin the way the speaker's watch code drives it.
#[derive(Debug)]
pub struct Speaker {
    child: Child,
    stdin: Option<ChildStdin>,
    replies: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
}

/// One address's counters, as the speaker process reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Requests answered (or about to be).
    pub requests_received: u64,
    /// Replies sent.
    pub responses_sent: u64,
    /// Gratuitous frames sent.
    pub gratuitous_sent: u64,
    /// Conflicting frames seen.
    pub conflicts: u64,
}

impl Speaker {
    fn command(&mut self, line: &str) -> String {
        let stdin = self.stdin.as_mut().expect("speaker stdin is open");
        writeln!(stdin, "{line}").expect("speaker process is alive");
        stdin.flush().expect("speaker process is alive");
        self.replies
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| {
                panic!("speaker did not answer {line:?}: {e}; log:\n{}", self.log())
            })
    }

    /// Announces `addresses` on `interfaces` (empty: all suitable ones),
    /// returning once the announcer's channel holds them.
    pub fn announce(&mut self, addresses: &[&str], interfaces: &[&str]) {
        let on = if interfaces.is_empty() {
            "*".to_owned()
        } else {
            interfaces.join(",")
        };
        let reply = self.command(&format!("announce {on} {}", addresses.join(" ")));
        assert_eq!(reply, "ok");
    }

    /// Withdraws `addresses`, returning once the announcer's channel no
    /// longer holds them.
    pub fn withdraw(&mut self, addresses: &[&str]) {
        let reply = self.command(&format!("withdraw {}", addresses.join(" ")));
        assert_eq!(reply, "ok");
    }

    /// The counters of one address.
    pub fn counts(&mut self, address: &str) -> Counts {
        let reply = self.command(&format!("counters {address}"));
        let n: Vec<u64> = reply
            .split_whitespace()
            .map(|w| w.parse().expect("counters are numbers"))
            .collect();
        let [
            requests_received,
            responses_sent,
            gratuitous_sent,
            conflicts,
        ] = n[..]
        else {
            panic!("unexpected counters reply {reply:?}");
        };
        Counts {
            requests_received,
            responses_sent,
            gratuitous_sent,
            conflicts,
        }
    }

    /// Tells the announcer which MACs are other speakers (`present`) and
    /// which of them released their Lease (`leaving`).
    pub fn set_speakers(&mut self, present: &[&str], leaving: &[&str]) {
        let list = |macs: &[&str]| {
            if macs.is_empty() {
                "-".to_owned()
            } else {
                macs.join(",")
            }
        };
        let reply = self.command(&format!("speakers {} {}", list(present), list(leaving)));
        assert_eq!(reply, "ok");
    }

    /// Starts this speaker's handover (as its drain does on SIGTERM).
    pub fn leave(&mut self) {
        assert_eq!(self.command("leave"), "ok");
    }

    /// The IP conflicts reported so far, as `address mac announced`.
    pub fn events(&mut self) -> Vec<String> {
        let reply = self.command("events");
        reply
            .split(';')
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The split brains and IP conflicts counted so far.
    pub fn totals(&mut self) -> (u64, u64) {
        let reply = self.command("totals");
        let n: Vec<u64> = reply
            .split_whitespace()
            .map(|w| w.parse().expect("totals are numbers"))
            .collect();
        (n[0], n[1])
    }

    /// The process id (the same inside and outside the namespace).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the speaker logged so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        // End of input is the speaker's shutdown signal.
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("speaker log:\n{}", self.log());
        }
    }
}

/// Waits until `condition` holds, polling; false if `timeout` passes first.
pub fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// If this process was started as the speaker, runs it until its stdin
/// closes and returns true; otherwise returns false at once.
pub fn ran_as_speaker() -> bool {
    if std::env::var(ROLE).as_deref() != Ok("speaker") {
        return false;
    }
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLBANN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let (desired, receiver) = watch::channel(Announcements::new());
    let (speakers, speakers_rx) = watch::channel(Speakers::default());
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<WireEvent>();
    let leaving = CancellationToken::new();
    // The child runs one test by name: the refresh test gets a fast refresh.
    let refreshing = std::env::args().any(|a| a.contains("a_refresh_repeats"));
    let settings = Settings {
        // Short enough that a test sees an address come free.
        probe_retry: Duration::from_secs(2),
        refresh_interval: refreshing.then_some(Duration::from_millis(500)),
        ..Settings::default()
    };
    let announcer = Announcer::new(receiver, settings)
        .with_speakers(speakers_rx)
        .with_events(events_tx)
        .with_leaving(leaving.clone());
    let counters = announcer.counters();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    std::thread::spawn(move || {
        let mut reported: Vec<String> = Vec::new();
        for line in std::io::stdin().lines().map_while(Result::ok) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let reply = match words.as_slice() {
                ["announce", on, addresses @ ..] => {
                    let interfaces: Vec<String> = match *on {
                        "*" => Vec::new(),
                        list => list.split(',').map(str::to_owned).collect(),
                    };
                    desired.send_modify(|a| {
                        for address in addresses {
                            a.announce(parse(address), interfaces.clone());
                        }
                    });
                    "ok".to_owned()
                }
                ["withdraw", addresses @ ..] => {
                    desired.send_modify(|a| {
                        for address in addresses {
                            a.withdraw(parse(address));
                        }
                    });
                    "ok".to_owned()
                }
                ["counters", address] => {
                    let c = counters
                        .snapshot()
                        .addresses
                        .get(&parse(address))
                        .copied()
                        .unwrap_or_default();
                    format!(
                        "{} {} {} {}",
                        c.requests_received, c.responses_sent, c.gratuitous_sent, c.conflicts
                    )
                }
                ["speakers", present, leaving] => {
                    let macs = |list: &str| {
                        list.split(',')
                            .filter(|m| *m != "-")
                            .map(|m| m.parse().expect("a MAC"))
                            .collect()
                    };
                    speakers.send_replace(Speakers {
                        present: macs(present),
                        leaving: macs(leaving),
                        ..Speakers::default()
                    });
                    "ok".to_owned()
                }
                ["leave"] => {
                    leaving.cancel();
                    "ok".to_owned()
                }
                ["events"] => {
                    let mut seen = Vec::new();
                    while let Ok(WireEvent::IpConflict {
                        address,
                        mac,
                        announced,
                    }) = events_rx.try_recv()
                    {
                        seen.push(format!("{address} {mac} {announced}"));
                    }
                    reported.extend(seen);
                    reported.join(";")
                }
                ["totals"] => {
                    let s = counters.snapshot();
                    format!("{} {}", s.split_brains, s.ip_conflicts)
                }
                _ => format!("unknown command {line:?}"),
            };
            println!("{REPLY}{reply}");
        }
        stop.cancel();
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(announcer.run(shutdown));
    true
}

fn parse(address: &str) -> IpAddr {
    address
        .parse()
        .unwrap_or_else(|e| panic!("bad address {address:?}: {e}"))
}
