//! What the controller scenarios share: the controller as the process it is
//! in a cluster (with its metrics endpoint on a free loopback port), and what
//! a user reads back: `kubectl get svc`, `kubectl get events`, `/metrics`.

// Each scenario file compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ferrolb_e2e::control_plane::OwnControlPlane;
use ferrolb_e2e::objects::apply_config;
use ferrolb_e2e::{ControlPlane, Daemon, wait_for};
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a scenario waits for the controller to act. Generous: the tests
/// share two cores with builds and with each other's control planes.
/// A private control plane holding ferrolb's ConfigMap with `config`, and
/// an admin client for it.
pub async fn configured(config: &str) -> (OwnControlPlane, Client) {
    let cp = ControlPlane::own().await;
    let client = cp.client().await;
    apply_config(&client, config).await;
    (cp, client)
}

pub const PATIENCE: Duration = Duration::from_secs(60);

/// A running `ferrolb-controller` and where its endpoints are.
pub struct Controller {
    /// The process.
    pub daemon: Daemon,
    /// Its `/metrics`, `/healthz` and `/readyz` address.
    pub metrics: SocketAddr,
    /// Its name in the leader Lease and in events' reporting instance.
    pub identity: String,
}

impl Controller {
    /// Starts the controller against `cp` as replica `identity`.
    pub fn start(cp: &ControlPlane, identity: &str) -> Controller {
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let address = metrics.to_string();
        let daemon = Daemon::start(
            "ferrolb-controller",
            &["--metrics-address", &address, "--identity", identity],
            cp,
            None,
        );
        Controller {
            daemon,
            metrics,
            identity: identity.to_owned(),
        }
    }

    /// Starts the controller as replica `identity` inside network namespace
    /// `netns`, whose only path to the API server is its LAN link (so a test
    /// can cut it), with its endpoints on the namespace's LAN address.
    pub fn start_in(cp: &ControlPlane, identity: &str, netns: &ferrolb_e2e::Netns) -> Controller {
        let metrics = SocketAddr::from((netns.v4, 7472));
        let address = metrics.to_string();
        let daemon = Daemon::start(
            "ferrolb-controller",
            &["--metrics-address", &address, "--identity", identity],
            cp,
            Some(netns),
        );
        Controller {
            daemon,
            metrics,
            identity: identity.to_owned(),
        }
    }

    /// Whether it says it leads (`None`: its endpoint does not answer).
    pub async fn leads(&self) -> Option<bool> {
        match self.get("/metrics").await {
            Ok((200, text)) => sample_value(&text, "ferrolb_controller_leader").map(|v| v == 1.0),
            _ => None,
        }
    }

    /// `GET path` on the metrics endpoint: status code and body, or why not.
    pub async fn get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(self.metrics, path).await
    }

    /// The `/metrics` text, once the endpoint answers.
    pub async fn metrics_text(&self) -> String {
        wait_for("the metrics endpoint", PATIENCE, || async {
            match self.get("/metrics").await {
                Ok((200, body)) => Ok(body),
                Ok((code, body)) => Err(format!("{code}: {body}")),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// The value of one sample of `/metrics`, e.g.
    /// `ferrolb_pool_addresses_in_use{pool="web",family="ipv4"}`.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        sample_value(&self.metrics_text().await, sample)
    }

    /// Waits until `sample` reads `value`.
    pub async fn wait_metric(&self, sample: &str, value: f64) {
        wait_for(&format!("{sample} = {value}"), PATIENCE, || async {
            let text = match self.get("/metrics").await {
                Ok((200, text)) => text,
                other => return Err(format!("{other:?}")),
            };
            match sample_value(&text, sample) {
                Some(v) if v == value => Ok(()),
                other => Err(format!("{sample} = {other:?}")),
            }
        })
        .await
    }

    /// The status code of `/readyz`, if the endpoint answers.
    pub async fn readyz(&self) -> Option<u16> {
        self.get("/readyz").await.ok().map(|(code, _)| code)
    }

    /// Kills it (SIGKILL), as a crash or a lost node would.
    pub fn kill(&mut self) {
        self.daemon.kill();
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on now, below the kernel's
/// ephemeral range: a port the kernel hands out (bind to 0) is also what
/// another process's next outgoing connection may take before ours listens.
pub fn free_port() -> u16 {
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    // Spread the start across processes and calls; probe upwards from there.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let span = u32::from(low.saturating_sub(10_000).max(1));
    (0..span)
        .map(|i| 10_000 + ((seed.wrapping_add(i)) % span) as u16)
        .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free loopback port below the ephemeral range")
}

/// A minimal HTTP/1.0 GET: enough for the controller's own endpoints.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok::<String, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("GET {path}: no answer within 5 s"))?
        .map_err(|e| format!("GET {path}: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no header end in {response:?}"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET {path}: no status in {head:?}"))?;
    Ok((code, body.to_owned()))
}

/// The value of the sample named exactly `sample` (name and labels) in a
/// Prometheus text exposition.
pub fn sample_value(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == sample).then(|| value.parse().ok())?
    })
}

/// The EXTERNAL-IP column of `kubectl get svc -A`, by `namespace/name`:
/// `<pending>`, or the addresses comma-separated.
pub fn external_ips(cp: &ControlPlane) -> BTreeMap<String, String> {
    let table = cp.kubectl(&["get", "svc", "-A"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name} column in:\n{table}"))
    };
    let (ns, name, external) = (column("NAMESPACE"), column("NAME"), column("EXTERNAL-IP"));
    lines
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            (
                format!("{}/{}", cells[ns], cells[name]),
                cells[external].to_owned(),
            )
        })
        .collect()
}

/// The addresses an EXTERNAL-IP cell shows (none for `<pending>`), IPv4
/// first: kubectl sorts them as text, so `2001:db8::1` comes before
/// `203.0.113.1` on screen whatever the status's order.
pub fn addresses(cell: &str) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = cell.split(',').filter_map(|a| a.parse().ok()).collect();
    ips.sort();
    ips
}

/// One event as `kubectl get events -o json` shows it.
#[derive(Debug, Clone)]
pub struct EventRow {
    /// `Kind namespace/name` of the object it is about.
    pub object: String,
    /// `Normal` or `Warning`.
    pub type_: String,
    /// `IPAllocated`, `AllocationFailed`, …
    pub reason: String,
    /// The note.
    pub message: String,
    /// The controller replica that reported it.
    pub instance: String,
}

/// Every event of the cluster, as kubectl shows them.
pub fn events(cp: &ControlPlane) -> Vec<EventRow> {
    let json = cp.kubectl(&["get", "events", "-A", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&json).expect("kubectl prints JSON");
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|e| EventRow {
            object: format!(
                "{} {}/{}",
                text(&e["involvedObject"]["kind"]),
                text(&e["involvedObject"]["namespace"]),
                text(&e["involvedObject"]["name"])
            ),
            type_: text(&e["type"]),
            reason: text(&e["reason"]),
            message: text(&e["message"]),
            instance: text(&e["reportingInstance"]),
        })
        .collect()
}

/// The events with `reason` about Service `key` (`namespace/name`).
pub fn service_events(cp: &ControlPlane, key: &str, reason: &str) -> Vec<EventRow> {
    let object = format!("Service {key}");
    events(cp)
        .into_iter()
        .filter(|e| e.object == object && e.reason == reason)
        .collect()
}

/// Waits until Service `key` has an event with `reason` whose message
/// contains `needle`, and returns it.
pub async fn wait_event(cp: &ControlPlane, key: &str, reason: &str, needle: &str) -> EventRow {
    wait_for(
        &format!("a {reason} event on {key} saying {needle:?}"),
        PATIENCE,
        || async {
            let found = service_events(cp, key, reason);
            found
                .iter()
                .find(|e| e.message.contains(needle))
                .cloned()
                .ok_or_else(|| format!("{found:?}"))
        },
    )
    .await
}

/// Waits until `kubectl get svc` shows Service `key` with addresses, and
/// returns them.
pub async fn wait_allocated(cp: &ControlPlane, key: &str) -> Vec<IpAddr> {
    wait_for(&format!("an address on {key}"), PATIENCE, || async {
        let cell = external_ips(cp).remove(key).unwrap_or_default();
        let ips = addresses(&cell);
        if ips.is_empty() { Err(cell) } else { Ok(ips) }
    })
    .await
}

/// Sets `spec.loadBalancerIP`, the deprecated field MetalLB users still use.
pub fn requesting(mut service: Service, ip: &str) -> Service {
    service
        .spec
        .get_or_insert_with(Default::default)
        .load_balancer_ip = Some(ip.to_owned());
    service
}

/// Creates Services in namespace `ns`, all at once, as `kubectl apply` of a
/// manifest would.
pub async fn create_all(client: &Client, ns: &str, services: Vec<Service>) {
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let creates = services.iter().map(|s| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), s)
                .await
                .unwrap_or_else(|e| panic!("create Service {:?}: {e}", s.metadata.name))
        }
    });
    futures::future::join_all(creates).await;
}

/// Writes `text` to a fresh file and returns its path (for `check-config`).
pub fn temp_file(prefix: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "{}.yaml",
        ferrolb_e2e::control_plane::unique(prefix)
    ));
    std::fs::write(&path, text).expect("write temp file");
    path
}
