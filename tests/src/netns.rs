//! A LAN of network namespaces: N node namespaces and one client namespace,
//! joined by veth pairs to a bridge in the root namespace. Addresses come only
//! from 198.51.100.0/24 and 2001:db8:100::/56; traffic never leaves the
//! namespaces and the root namespace's bridge. Everything made here is
//! removed on `Drop`, also when a test panics.
//!
//! Each LAN takes one of four slots (a file lock), and slot `k` owns the
//! subnets 198.51.100.(64k)/26 and 2001:db8:100:k::/64, so LANs of parallel
//! tests never share a route in the root namespace.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Child, Command, Output, Stdio};

/// How many LANs may exist at once on one machine.
const SLOTS: u8 = 4;

/// The address kube-apiserver listens on (see `tests/cluster/control-plane`);
/// node namespaces route to it through the bridge.
pub const API_ADDRESS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);

/// Runs `ip` (or any command) and panics with its error output on failure.
fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    out
}

/// Runs a command, ignoring failure (for cleanup of what may not exist).
fn run_quiet(program: &str, args: &[&str]) {
    let _ = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// One network namespace made by the harness.
#[derive(Debug)]
pub struct Netns {
    /// The namespace's name (`ip netns list`).
    pub name: String,
    /// Its interface on the LAN, always called `eth0` inside.
    pub mac: String,
    /// Its IPv4 address on the LAN.
    pub v4: Ipv4Addr,
    /// Its IPv6 address on the LAN.
    pub v6: Ipv6Addr,
}

impl Netns {
    /// A command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs a command inside the namespace and returns its output, whether
    /// or not it succeeded.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} in {}: {e}", self.name))
    }

    /// Runs a command inside the namespace; panics when it fails.
    pub fn exec_ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.exec(program, args);
        assert!(
            out.status.success(),
            "{program} {} in {} failed: {}",
            args.join(" "),
            self.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a long-running process inside the namespace; it is killed when
    /// the returned guard drops.
    pub fn spawn(&self, program: &str, args: &[&str], env: &[(&str, &str)]) -> Process {
        let child = self
            .command(program)
            .args(args)
            .envs(env.iter().copied())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {program} in {}: {e}", self.name));
        Process { child }
    }
}

/// A process started in a namespace, killed on drop.
#[derive(Debug)]
pub struct Process {
    child: Child,
}

impl Process {
    /// Stops the process now (SIGKILL), as a crash or a lost node would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A bridge with node namespaces and one client namespace on it.
#[derive(Debug)]
pub struct Lan {
    slot: u8,
    /// The bridge's name in the root namespace.
    pub bridge: String,
    /// The node namespaces, `node-1` … `node-N` by node name.
    pub nodes: Vec<Netns>,
    /// The client namespace, whose kernel resolves addresses by ARP and NDP.
    pub client: Netns,
    _lock: File,
}

impl Lan {
    /// Creates a LAN with `nodes` node namespaces (at most 8) and a client.
    pub fn create(nodes: usize) -> Lan {
        assert!((1..=8).contains(&nodes), "a LAN has 1 to 8 nodes");
        let (slot, lock) = take_slot();
        // A previous run killed before its cleanup may have left this slot's
        // namespaces and links behind: they are ours to remove.
        remove_slot(slot);
        let bridge = format!("flb{slot}br");
        let mut lan = Lan {
            slot,
            bridge: bridge.clone(),
            nodes: Vec::new(),
            client: Netns {
                name: String::new(),
                mac: String::new(),
                v4: Ipv4Addr::UNSPECIFIED,
                v6: Ipv6Addr::UNSPECIFIED,
            },
            _lock: lock,
        };
        run("ip", &["link", "add", &bridge, "type", "bridge"]);
        // No STP delay and no multicast snooping: NDP multicast must reach
        // every port at once.
        run(
            "ip",
            &[
                "link",
                "set",
                &bridge,
                "type",
                "bridge",
                "forward_delay",
                "0",
                "mcast_snooping",
                "0",
            ],
        );
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/26", lan.gateway_v4()),
                "dev",
                &bridge,
            ],
        );
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/64", lan.gateway_v6()),
                "dev",
                &bridge,
                "nodad",
            ],
        );
        run("ip", &["link", "set", &bridge, "up"]);
        for i in 1..=nodes {
            let ns = lan.attach(&format!("n{i}"), 1 + i as u8);
            lan.nodes.push(ns);
        }
        lan.client = lan.attach("c", 50);
        lan
    }

    /// The root namespace's address on the bridge.
    pub fn gateway_v4(&self) -> Ipv4Addr {
        self.v4(1)
    }

    /// The root namespace's IPv6 address on the bridge.
    pub fn gateway_v6(&self) -> Ipv6Addr {
        self.v6(1)
    }

    /// Host `host` (1..=62) of this LAN's IPv4 subnet.
    pub fn v4(&self, host: u8) -> Ipv4Addr {
        assert!((1..=62).contains(&host));
        Ipv4Addr::new(198, 51, 100, self.slot * 64 + host)
    }

    /// Host `host` of this LAN's IPv6 subnet.
    pub fn v6(&self, host: u16) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, 0x100, u16::from(self.slot), 0, 0, 0, host)
    }

    /// The node namespace of node `name` (`node-1` …).
    pub fn node(&self, i: usize) -> &Netns {
        &self.nodes[i - 1]
    }

    /// Takes node `i`'s LAN link down or up at the bridge (the node's own
    /// `eth0` keeps its addresses and routes, and loses carrier), as a
    /// pulled cable or a dead switch port would.
    pub fn set_node_link(&self, i: usize, up: bool) {
        let outside = format!("flb{}n{i}", self.slot);
        run(
            "ip",
            &["link", "set", &outside, if up { "up" } else { "down" }],
        );
    }

    /// The node names, as the tests register them with the API server.
    pub fn node_name(i: usize) -> String {
        format!("node-{i}")
    }

    /// Adds one more host to the LAN — a second client, or a rogue host —
    /// as host `host` (not 1, a node's 2–9 or the client's 50), in a
    /// namespace removed with the LAN.
    pub fn add_host(&self, role: &str, host: u8) -> Netns {
        assert!(
            host != 1 && !(2..=9).contains(&host) && host != 50,
            "host {host} is taken"
        );
        self.attach(role, host)
    }

    fn attach(&self, role: &str, host: u8) -> Netns {
        let name = format!("flb{}-{role}", self.slot);
        let outside = format!("flb{}{role}", self.slot);
        run("ip", &["netns", "add", &name]);
        run(
            "ip",
            &[
                "link", "add", &outside, "type", "veth", "peer", "name", "eth0", "netns", &name,
            ],
        );
        run(
            "ip",
            &["link", "set", &outside, "master", &self.bridge, "up"],
        );
        let ns = |args: &[&str]| {
            let mut full = vec!["netns", "exec", &name, "ip"];
            full.extend_from_slice(args);
            run("ip", &full)
        };
        let v4 = self.v4(host);
        let v6 = self.v6(u16::from(host));
        ns(&["link", "set", "lo", "up"]);
        ns(&["addr", "add", &format!("{v4}/26"), "dev", "eth0"]);
        ns(&["addr", "add", &format!("{v6}/64"), "dev", "eth0", "nodad"]);
        ns(&["link", "set", "eth0", "up"]);
        ns(&[
            "route",
            "add",
            &format!("{API_ADDRESS}/32"),
            "via",
            &self.gateway_v4().to_string(),
        ]);
        let mac = String::from_utf8_lossy(&ns(&["-br", "link", "show", "eth0"]).stdout)
            .split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_owned();
        Netns { name, mac, v4, v6 }
    }

    /// An address of this LAN's subnets for a LoadBalancer pool: host
    /// `32 + i` of the IPv4 /26 (i in 0..30).
    pub fn pool_v4(&self, i: u8) -> IpAddr {
        IpAddr::V4(self.v4(32 + i))
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        remove_slot(self.slot);
    }
}

/// Removes every namespace and link of slot `slot`.
fn remove_slot(slot: u8) {
    let prefix = format!("flb{slot}-");
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(name) = line.split_whitespace().next()
                && name.starts_with(&prefix)
            {
                run_quiet("ip", &["netns", "del", name]);
            }
        }
    }
    // Deleting a namespace deletes the veth ends inside it and so their
    // peers, unless a process still holds the namespace: delete the
    // root-namespace ends and the bridge by name as well.
    let links = format!("flb{slot}");
    if let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(name) = line.split(": ").nth(1) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            if name.starts_with(&links) {
                run_quiet("ip", &["link", "del", name]);
            }
        }
    }
}

/// Takes a free LAN slot, waiting for one if all are in use. The lock is
/// the kernel's, so a crashed test never holds a slot.
fn take_slot() -> (u8, File) {
    let dir = std::env::temp_dir();
    loop {
        for slot in 0..SLOTS {
            let path = dir.join(format!("ferrolb-lan-{slot}.lock"));
            let file = File::create(&path).expect("create LAN slot lock");
            if file.try_lock().is_ok() {
                return (slot, file);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
