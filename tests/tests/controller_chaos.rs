//! Never two writers, under faults: two controller replicas, each in its own
//! network namespace, serve a seeded random storm of Service operations
//! (create, delete, type and class changes, requested addresses, sharing
//! keys, ports, IP-family changes) while the test kills the leader
//! (SIGKILL), cuts the leader's path to the API server for longer than the
//! lease, restarts kube-apiserver, and flips the ConfigMap between valid,
//! invalid and address-removing versions. The invariant checker
//! ([`ferrolb_e2e::invariants`]) watches every change; at the end every
//! Service that can have an address has one and the checker saw nothing
//! wrong.
//!
//! `FERROLB_CHAOS_SEED` replays a seed (printed by every run);
//! `FERROLB_CHAOS_OPS` sets the number of operations (default 2,000).

mod controller_support;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use controller_support::Controller;
use ferrolb_e2e::control_plane::OwnControlPlane;
use ferrolb_e2e::invariants::{Checker, why_not_shared};
use ferrolb_e2e::netns::API_ADDRESS;
use ferrolb_e2e::objects::{apply_config, namespace};
use ferrolb_e2e::{ControlPlane, Lan, Netns, wait_for};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};

/// One pool with both families, larger than the number of Service names
/// even without the addresses [`REMOVING`] takes away: only contention
/// (requested addresses, sharing) leaves a Service pending at the end.
const VALID: &str = "\
address-pools:
- name: chaos
  protocol: layer2
  addresses:
  - 203.0.113.0/26
  - 2001:db8:c4a0::/120
";
/// Takes 203.0.113.32–47 away: Services holding them must move.
const REMOVING: &str = "\
address-pools:
- name: chaos
  protocol: layer2
  addresses:
  - 203.0.113.0/27
  - 203.0.113.48/28
  - 2001:db8:c4a0::/120
";
const INVALID: &str = "\
address-pools:
- name: chaos
  protocol: layer2
  addresses:
  - 203.0.113.0/33
";

/// Service names the storm draws from.
const NAMES: usize = 40;
/// Pause between operations, so the storm lasts long enough for the faults.
const PACE: Duration = Duration::from_millis(20);

/// splitmix64: a small, seedable generator, enough for a replayable storm.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// What the storm wants one Service to be.
#[derive(Debug, Clone)]
struct Shape {
    load_balancer: bool,
    class: Option<&'static str>,
    requested: Option<IpAddr>,
    sharing: Option<&'static str>,
    ports: Vec<i32>,
    /// The first family; fixed for the Service's life.
    v6: bool,
    /// `SingleStack`, `PreferDualStack` or `RequireDualStack`.
    policy: &'static str,
}

impl Shape {
    fn random(rng: &mut Rng, index: usize) -> Shape {
        let v6 = rng.chance(25);
        let mut shape = Shape {
            load_balancer: rng.chance(85),
            class: None,
            requested: None,
            sharing: None,
            ports: vec![80],
            v6,
            policy: "SingleStack",
        };
        shape.mutate_family(rng);
        shape.mutate_sharing(rng, index);
        shape.mutate_request(rng, index);
        shape
    }

    fn mutate_family(&mut self, rng: &mut Rng) {
        self.policy = ["SingleStack", "PreferDualStack", "RequireDualStack"][rng.below(3)];
    }

    fn mutate_sharing(&mut self, rng: &mut Rng, index: usize) {
        self.sharing = [None, Some("k1"), Some("k2")][rng.below(3)];
        // Sharing Services use ports of their own, so equal keys may share;
        // a common port 80 now and then makes a legitimate conflict.
        self.ports = if self.sharing.is_some() && !rng.chance(10) {
            vec![10_000 + index as i32]
        } else {
            vec![80]
        };
    }

    fn mutate_request(&mut self, rng: &mut Rng, _index: usize) {
        self.requested = if rng.chance(30) {
            let host = rng.below(48) as u8;
            Some(if self.v6 {
                IpAddr::V6(std::net::Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0xc4a0,
                    0,
                    0,
                    0,
                    0,
                    host.into(),
                ))
            } else {
                IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, host))
            })
        } else {
            None
        };
    }

    /// Applies the shape to `service` (keeping what the API server
    /// allocated that the shape does not decide).
    fn apply(&self, service: &mut Service, name: &str) {
        service.metadata.name = Some(name.to_owned());
        let annotations = service
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        annotations.remove("ferrolb.io/loadBalancerIPs");
        annotations.remove("ferrolb.io/allow-shared-ip");
        if let Some(ip) = self.requested {
            annotations.insert("ferrolb.io/loadBalancerIPs".into(), ip.to_string());
        }
        if let Some(key) = self.sharing {
            annotations.insert("ferrolb.io/allow-shared-ip".into(), key.into());
        }
        let spec = service.spec.get_or_insert_with(ServiceSpec::default);
        spec.type_ = Some(
            if self.load_balancer {
                "LoadBalancer"
            } else {
                "ClusterIP"
            }
            .into(),
        );
        spec.load_balancer_class = self.class.filter(|_| self.load_balancer).map(Into::into);
        spec.allocate_load_balancer_node_ports = self.load_balancer.then_some(false);
        if !self.load_balancer {
            // Only externally reachable Services may say how.
            spec.external_traffic_policy = None;
        }
        spec.selector = Some(BTreeMap::from([("app".into(), name.into())]));
        spec.ports = Some(
            self.ports
                .iter()
                .map(|p| ServicePort {
                    name: Some(format!("p{p}")),
                    port: *p,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                })
                .collect(),
        );
        let (first, second) = if self.v6 {
            ("IPv6", "IPv4")
        } else {
            ("IPv4", "IPv6")
        };
        spec.ip_family_policy = Some(self.policy.into());
        if self.policy == "SingleStack" {
            spec.ip_families = Some(vec![first.into()]);
            if let Some(ips) = spec.cluster_ips.as_mut() {
                ips.truncate(1);
            }
        } else {
            spec.ip_families = Some(vec![first.into(), second.into()]);
        }
    }
}

/// One storm operation on Service `index`: what it did, or the API error.
async fn operate(
    api: &Api<Service>,
    rng: &mut Rng,
    shapes: &mut [Option<Shape>],
    index: usize,
) -> Result<&'static str, String> {
    let name = format!("svc-{index}");
    let Some(shape) = shapes[index].clone() else {
        let shape = Shape::random(rng, index);
        let mut service = Service {
            metadata: ObjectMeta::default(),
            ..Default::default()
        };
        shape.apply(&mut service, &name);
        api.create(&PostParams::default(), &service)
            .await
            .map_err(|e| e.to_string())?;
        shapes[index] = Some(shape);
        return Ok("create");
    };
    let mut next = shape.clone();
    let what = match rng.below(8) {
        0 => {
            let deleted = api.delete(&name, &DeleteParams::default()).await;
            shapes[index] = None;
            return deleted.map(|_| "delete").map_err(|e| e.to_string());
        }
        1 => {
            next.load_balancer = !next.load_balancer;
            "type"
        }
        2 => {
            // The class may change only while not a LoadBalancer: go
            // through ClusterIP, as a user must.
            next.load_balancer = false;
            next.class = [None, Some("other.example/lb")][rng.below(2)];
            "class"
        }
        3 | 4 => {
            next.mutate_request(rng, index);
            "request"
        }
        5 => {
            next.mutate_sharing(rng, index);
            "sharing"
        }
        6 => {
            next.ports = if next.ports == [80] {
                vec![80, 443]
            } else {
                vec![80]
            };
            if next.sharing.is_some() {
                next.ports = vec![10_000 + index as i32, 20_000 + index as i32];
            }
            "ports"
        }
        _ => {
            next.mutate_family(rng);
            "family"
        }
    };
    let mut service = api.get(&name).await.map_err(|e| e.to_string())?;
    next.apply(&mut service, &name);
    match api.replace(&name, &PostParams::default(), &service).await {
        Ok(_) => {
            shapes[index] = Some(next);
            Ok(what)
        }
        Err(e) => Err(e.to_string()),
    }
}

fn addresses(service: &Service) -> Vec<IpAddr> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

/// The Services that can have an address but have none (or not the one
/// they request, when nothing that may not share it holds it).
fn unserved(services: &[Service]) -> Vec<String> {
    let mut missing = Vec::new();
    for service in services {
        let spec = service.spec.clone().unwrap_or_default();
        if spec.type_.as_deref() != Some("LoadBalancer") || spec.load_balancer_class.is_some() {
            continue;
        }
        let name = service.metadata.name.clone().unwrap_or_default();
        let held = addresses(service);
        let requested: Option<IpAddr> = service
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("ferrolb.io/loadBalancerIPs"))
            .and_then(|ip| ip.parse().ok());
        let wanted = match spec.ip_family_policy.as_deref() {
            Some("RequireDualStack") => 2,
            _ => 1,
        };
        match requested {
            // One requested address cannot serve both families.
            Some(_) if wanted == 2 => {}
            Some(ip) => {
                let blocked = services.iter().any(|other| {
                    other.metadata.name != service.metadata.name
                        && addresses(other).contains(&ip)
                        && why_not_shared(service, other).is_some()
                });
                if !blocked && !held.contains(&ip) {
                    missing.push(format!("{name} (requests {ip}, holds {held:?})"));
                }
            }
            None if held.len() < wanted => missing.push(format!("{name} (holds {held:?})")),
            None => {}
        }
    }
    missing
}

/// The replicas, one per namespace; a stopped one is replaced, as the
/// Deployment would.
struct Replicas<'a> {
    cp: &'a OwnControlPlane,
    nodes: [&'a Netns; 2],
    running: [Option<Controller>; 2],
    started: usize,
}

impl Replicas<'_> {
    fn start(&mut self, slot: usize) {
        self.started += 1;
        let identity = format!("chaos-{slot}-{}", self.started);
        self.running[slot] = Some(Controller::start_in(self.cp, &identity, self.nodes[slot]));
    }

    /// Starts a new replica in place of each one that exited (a leader
    /// that could not renew in time exits), as the Deployment would.
    fn revive(&mut self) {
        for slot in 0..2 {
            let exited = self.running[slot]
                .as_mut()
                .is_none_or(|r| !r.daemon.running());
            if exited {
                self.start(slot);
            }
        }
    }

    /// Waits until a replica leads, reviving exited ones meanwhile.
    async fn leader(&mut self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            self.revive();
            for (i, r) in self.running.iter().enumerate() {
                if let Some(r) = r
                    && r.leads().await == Some(true)
                {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no replica leads after 120 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for replica `slot` to exit on its own (a deposed leader does).
    async fn wait_exit(&mut self, slot: usize) -> String {
        let replica = self.running[slot].as_mut().expect("a replica");
        let deadline = Instant::now() + Duration::from_secs(60);
        while replica.daemon.running() {
            assert!(Instant::now() < deadline, "the deposed leader still runs");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = replica.daemon.output();
        self.running[slot] = None;
        log
    }
}

/// Waits until the storm has done `percent` of its operations, reviving
/// exited replicas meanwhile.
async fn until(done: &AtomicUsize, ops: usize, percent: usize, replicas: &mut Replicas<'_>) {
    while done.load(Ordering::Relaxed) < ops * percent / 100 {
        replicas.revive();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The timestamp of the first log line containing `needle`.
fn logged_at(log: &str, needle: &str) -> Option<String> {
    log.lines()
        .find(|l| l.contains(needle))
        .and_then(|l| l.split_whitespace().next())
        // Strip the ANSI colour codes around the timestamp.
        .map(|t| {
            t.trim_start_matches("\u{1b}[2m")
                .trim_end_matches("\u{1b}[0m")
                .to_owned()
        })
}

#[tokio::test]
async fn the_controller_never_hands_an_address_twice_under_faults() {
    let seed: u64 = std::env::var("FERROLB_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    let ops: usize = std::env::var("FERROLB_CHAOS_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    eprintln!("chaos: seed {seed} (FERROLB_CHAOS_SEED={seed} replays it), {ops} operations");

    let cp = ControlPlane::own().await;
    let client = cp.client().await;
    apply_config(&client, VALID).await;
    let checker = Checker::start(client.clone(), VALID);
    let lan = Lan::create(2);
    let mut replicas = Replicas {
        cp: &cp,
        nodes: [lan.node(1), lan.node(2)],
        running: [None, None],
        started: 0,
    };
    replicas.start(0);
    replicas.start(1);
    replicas.leader().await;

    let ns = namespace(&client, "chaos").await;
    let done = Arc::new(AtomicUsize::new(0));
    let storm = {
        let api = Api::<Service>::namespaced(client.clone(), &ns);
        let done = done.clone();
        tokio::spawn(async move {
            let mut rng = Rng(seed);
            let mut shapes: Vec<Option<Shape>> = vec![None; NAMES];
            let mut kinds: BTreeMap<&'static str, usize> = BTreeMap::new();
            let mut failed = 0;
            for _ in 0..ops {
                let index = rng.below(NAMES);
                match operate(&api, &mut rng, &mut shapes, index).await {
                    Ok(kind) => *kinds.entry(kind).or_default() += 1,
                    Err(_) => failed += 1,
                }
                done.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(PACE).await;
            }
            (kinds, failed)
        })
    };

    // Faults, each once the storm has reached its share of the operations.
    let mut faults: Vec<String> = Vec::new();
    let config = |text: &'static str, what: &str, faults: &mut Vec<String>| {
        faults.push(format!("ConfigMap {what}"));
        checker.config_applied(text);
        text
    };

    until(&done, ops, 8, &mut replicas).await;
    apply_config(
        &client,
        config(REMOVING, "removes 203.0.113.32/28", &mut faults),
    )
    .await;

    until(&done, ops, 18, &mut replicas).await;
    let leader = replicas.leader().await;
    replicas.running[leader].as_mut().expect("leader").kill();
    faults.push(format!("SIGKILL of leader {leader}"));
    replicas.running[leader] = None;
    replicas.start(leader);
    apply_config(&client, config(VALID, "valid again", &mut faults)).await;

    until(&done, ops, 35, &mut replicas).await;
    let leader = replicas.leader().await;
    let cut_ns = replicas.nodes[leader];
    cut_ns.exec_ok("ip", &["link", "set", "eth0", "down"]);
    let cut = Instant::now();
    faults.push(format!("API path of leader {leader} cut"));
    let standby = 1 - leader;
    let new_leader = wait_for("the standby to lead", Duration::from_secs(60), || async {
        match replicas.running[standby]
            .as_ref()
            .expect("standby")
            .leads()
            .await
        {
            Some(true) => Ok(cut.elapsed()),
            other => Err(format!("leads: {other:?}")),
        }
    })
    .await;
    // Longer than the lease, then heal: the deposed leader must not write.
    tokio::time::sleep(Duration::from_secs(18).saturating_sub(cut.elapsed())).await;
    cut_ns.exec_ok("ip", &["link", "set", "eth0", "up"]);
    // A link going down takes its routes with it.
    cut_ns.exec_ok(
        "ip",
        &[
            "route",
            "replace",
            &format!("{API_ADDRESS}/32"),
            "via",
            &lan.gateway_v4().to_string(),
        ],
    );
    let deposed_log = replicas.wait_exit(leader).await;
    let standby_log = replicas.running[standby]
        .as_ref()
        .expect("standby")
        .daemon
        .output();
    let stopped = logged_at(&deposed_log, "stopped writing")
        .expect("the deposed leader logs when it stopped writing");
    let took_over =
        logged_at(&standby_log, "became leader").expect("the standby logs its takeover");
    eprintln!(
        "chaos: path cut; standby led after {new_leader:.1?}; deposed stopped writing at {stopped}, standby led at {took_over}"
    );
    assert!(
        stopped < took_over,
        "the deposed leader wrote until {stopped}, after the standby led at {took_over}"
    );
    replicas.start(leader);

    until(&done, ops, 55, &mut replicas).await;
    cp.restart_api_server();
    faults.push("kube-apiserver restarted".into());

    until(&done, ops, 65, &mut replicas).await;
    apply_config(&client, config(INVALID, "invalid", &mut faults)).await;
    until(&done, ops, 72, &mut replicas).await;
    apply_config(
        &client,
        config(REMOVING, "removes 203.0.113.32/28", &mut faults),
    )
    .await;

    until(&done, ops, 80, &mut replicas).await;
    let leader = replicas.leader().await;
    replicas.running[leader].as_mut().expect("leader").kill();
    faults.push(format!("SIGKILL of leader {leader}"));
    replicas.running[leader] = None;
    replicas.start(leader);

    until(&done, ops, 90, &mut replicas).await;
    apply_config(&client, config(VALID, "valid again", &mut faults)).await;

    let (kinds, failed) = storm.await.expect("storm task");
    let restarts = replicas.started;
    replicas.leader().await;

    // Settled: every Service that can have an address has one.
    let api = Api::<Service>::namespaced(client.clone(), &ns);
    let deadline = Instant::now() + Duration::from_secs(120);
    let (settled, missing) = loop {
        let services = api
            .list(&ListParams::default())
            .await
            .expect("list Services")
            .items;
        let missing = unserved(&services);
        if missing.is_empty() || Instant::now() > deadline {
            break (services.len(), missing);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    checker.check_settled();
    let violations = checker.violations();
    eprintln!(
        "chaos: seed {seed}; {ops} operations ({kinds:?}, {failed} refused or failed); \
         faults: {faults:?}; {restarts} replicas started in all; {} Service changes checked; {settled} Services at the end, \
         {} without the address they can have; {} violations",
        checker.changes(),
        missing.len(),
        violations.len()
    );
    for v in &violations {
        eprintln!("chaos: violation: {v}");
    }
    assert!(
        violations.is_empty(),
        "seed {seed}: {} violations",
        violations.len()
    );
    assert!(
        missing.is_empty(),
        "seed {seed}: Services that can have an address have none after 120 s: {missing:?}"
    );
    drop(replicas);
    drop(lan);
}
