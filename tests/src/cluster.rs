//! A whole ferrolb cluster for end-to-end tests: a private control plane, a
//! LAN of node namespaces registered as Nodes, the controller in the root
//! namespace and a speaker in every node namespace, with a pool on the LAN.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::control_plane::{ControlPlane, OwnControlPlane};
use crate::daemons::Daemon;
use crate::netns::{Lan, Netns};
use crate::objects::{LoadBalancer, apply_config, endpoint_slice, node};
use crate::wait::wait_for;

/// The running pieces; everything stops when it drops, in field order:
/// processes before the namespaces they run in, the control plane last.
pub struct Cluster {
    /// The speakers, by node (index 0 is `node-1`); `None` once stopped.
    pub speakers: Vec<Option<Daemon>>,
    /// The controller.
    pub controller: Daemon,
    /// The node namespaces and the client namespace.
    pub lan: Lan,
    /// An admin client.
    pub client: Client,
    /// The control plane (dropped last).
    pub plane: OwnControlPlane,
}

impl Cluster {
    /// Starts a cluster of `nodes` nodes whose pool is hosts 32–62 of the
    /// LAN's IPv4 subnet and 2001:db8:100:<slot>::100–ffff.
    pub async fn start(nodes: usize) -> Cluster {
        let plane = ControlPlane::own().await;
        let client = plane.client().await;
        let lan = Lan::create(nodes);
        let nodes_api = Api::<Node>::all(client.clone());
        for (i, ns) in lan.nodes.iter().enumerate() {
            nodes_api
                .create(
                    &PostParams::default(),
                    &node(&Lan::node_name(i + 1), &ns.v4.to_string()),
                )
                .await
                .expect("register node");
        }
        let config = format!(
            "address-pools:\n- name: lan\n  protocol: layer2\n  addresses:\n  - {}-{}\n  - {}-{}\n",
            lan.v4(32),
            lan.v4(62),
            lan.v6(0x100),
            lan.v6(0xffff)
        );
        apply_config(&client, &config).await;
        install_crds(&plane);
        let controller = Daemon::start(
            "ferrolb-controller",
            &["--metrics-address", "127.0.0.1:0"],
            &plane,
            None,
        );
        let mut speakers = Vec::new();
        for i in 1..=nodes {
            speakers.push(Some(start_speaker(&plane, lan.node(i), i)));
        }
        Cluster {
            speakers,
            controller,
            lan,
            client,
            plane,
        }
    }

    /// Stops node `i`'s speaker at once (SIGKILL: no handover).
    pub fn kill_speaker(&mut self, i: usize) {
        if let Some(mut speaker) = self.speakers[i - 1].take() {
            speaker.kill();
        }
    }

    /// Creates LoadBalancer Service `lb` in `default` with one ready endpoint
    /// on each of `endpoint_nodes`, and waits for its addresses.
    pub async fn expose(&self, lb: LoadBalancer, endpoint_nodes: &[usize]) -> Service {
        let services = Api::<Service>::namespaced(self.client.clone(), "default");
        let created = services
            .create(&PostParams::default(), &lb.build())
            .await
            .expect("create Service");
        let name = created.metadata.name.clone().expect("name");
        self.set_endpoints(&name, endpoint_nodes).await;
        wait_for(
            &format!("an address for {name}"),
            Duration::from_secs(30),
            || async {
                let svc = services.get(&name).await.map_err(|e| e.to_string())?;
                let has = svc
                    .status
                    .as_ref()
                    .and_then(|s| s.load_balancer.as_ref())
                    .and_then(|l| l.ingress.as_ref())
                    .is_some_and(|i| !i.is_empty());
                if has {
                    Ok(svc)
                } else {
                    Err(format!("{:?}", svc.status))
                }
            },
        )
        .await
    }

    /// Replaces Service `name`'s EndpointSlices with one holding a ready
    /// endpoint on each of `nodes`.
    pub async fn set_endpoints(&self, name: &str, nodes: &[usize]) {
        let slices = Api::<EndpointSlice>::namespaced(self.client.clone(), "default");
        let selector = format!("kubernetes.io/service-name={name}");
        slices
            .delete_collection(
                &Default::default(),
                &kube::api::ListParams::default().labels(&selector),
            )
            .await
            .expect("delete EndpointSlices");
        let endpoints: Vec<(String, String)> = nodes
            .iter()
            .map(|i| (format!("10.244.{i}.10"), Lan::node_name(*i)))
            .collect();
        let refs: Vec<(&str, &str, bool)> = endpoints
            .iter()
            .map(|(a, n)| (a.as_str(), n.as_str(), true))
            .collect();
        slices
            .create(&PostParams::default(), &endpoint_slice(name, &refs))
            .await
            .expect("create EndpointSlice");
    }

    /// The MAC the client namespace's kernel resolves `ip` to, by asking
    /// with `arping` (IPv4) or `ndisc6` (IPv6); `None` if nobody answers.
    pub fn resolve(&self, ip: &str) -> Option<String> {
        resolve_from(&self.lan.client, ip)
    }

    /// The node (1-based) whose MAC is `mac`.
    pub fn node_with_mac(&self, mac: &str) -> Option<usize> {
        self.lan
            .nodes
            .iter()
            .position(|n| n.mac.eq_ignore_ascii_case(mac))
            .map(|i| i + 1)
    }
}

/// Installs ferrolb's CustomResourceDefinitions (`deploy/crds/`) as an
/// operator does, and waits until the API server serves them.
pub fn install_crds(plane: &ControlPlane) {
    let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/crds");
    plane.kubectl(&["apply", "-f", crds]);
    plane.kubectl(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout",
        "60s",
        "-f",
        crds,
    ]);
}

/// The membership key the test speakers share (what an operator puts in
/// the Secret ferrolb-system/ferrolb-memberlist).
pub const MEMBERLIST_KEY: &str = "e2e-membership-key-0123456789abcdef";

/// The membership port of the test speakers.
pub const MEMBER_PORT: u16 = 7946;

/// Starts node `i`'s speaker in its namespace, its membership on the node's
/// LAN address.
pub fn start_speaker(plane: &ControlPlane, ns: &Netns, i: usize) -> Daemon {
    Daemon::start_with_env(
        "ferrolb-speaker",
        &[
            "--node-name",
            &Lan::node_name(i),
            "--metrics-address",
            "127.0.0.1:7473",
            "--member-address",
            &ns.v4.to_string(),
        ],
        &[("FERROLB_MEMBERLIST_SECRET", MEMBERLIST_KEY)],
        plane,
        Some(ns),
    )
}

/// The distinct MACs that answer one ARP request / Neighbor Solicitation for
/// `ip` from `from`, lower-case (an unsolicited NA of a takeover may arrive
/// in the same window as the answer, from the same node).
pub fn answers(from: &Netns, ip: &str) -> Vec<String> {
    let out = if ip.contains(':') {
        from.exec("ndisc6", &["-m", "-r", "1", "-w", "1000", ip, "eth0"])
    } else {
        from.exec("arping", &["-c", "1", "-w", "1", "-I", "eth0", ip])
    };
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    let mut macs: Vec<String> = text
        .split(|c: char| c.is_whitespace() || c == '[' || c == ']')
        .filter(|w| w.len() == 17 && w.matches(':').count() == 5)
        .map(str::to_owned)
        .collect();
    macs.sort();
    macs.dedup();
    macs
}

fn resolve_from(from: &Netns, ip: &str) -> Option<String> {
    answers(from, ip).into_iter().next()
}
