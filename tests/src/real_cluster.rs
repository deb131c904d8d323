//! A real cluster for the deployed tests: `tests/cluster/cluster up` (nodes
//! with kubelet, containerd and kube-proxy in their own namespaces), ferrolb
//! installed the way an operator installs it (`kubectl apply -f
//! deploy/ferrolb.yaml` and the ConfigMap), checks made with `kubectl` and from
//! the client namespace. Everything goes on `Drop` (`cluster down`), also when
//! a test panics.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cluster::answers;
use crate::control_plane::unique;
use crate::daemons::binary;
use crate::netns::Netns;

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ in the repository")
        .to_path_buf()
}

/// Runs a command and panics with its output when it fails.
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One node of the cluster.
#[derive(Debug, Clone)]
pub struct RealNode {
    /// Its Kubernetes name (`node-1` …).
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its address on the LAN.
    pub ip: String,
}

/// A running real cluster.
#[derive(Debug)]
pub struct RealCluster {
    run: PathBuf,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The client namespace.
    pub client_ns: String,
    /// The client's address on the LAN.
    pub client_ip: String,
    /// The nodes, `node-1` first.
    pub nodes: Vec<RealNode>,
    /// ferrolb's IPv4 pool on the LAN (`a-b`).
    pub pool: String,
}

/// The cluster script.
fn script() -> PathBuf {
    root().join("tests/cluster/cluster")
}

impl RealCluster {
    /// Builds the images (ferrolb from release binaries, the backend, the
    /// pause image), starts `nodes` nodes with kube-proxy in `proxy_mode` and
    /// imports the images into every node.
    pub fn up(nodes: usize, proxy_mode: &str) -> RealCluster {
        let images = root().join("target/images");
        let images_arg = images.to_str().expect("utf-8 path");
        // The backend image holds the binary of the profile the tests run in.
        let backend = binary("flb-backend");
        let profile = backend
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|p| p.to_str())
            .unwrap_or("debug")
            .to_owned();
        for image in ["ferrolb", "backend", "pause"] {
            run_ok(
                Command::new(root().join("scripts/image"))
                    .args([image, images_arg])
                    .env("FERROLB_PROFILE", &profile),
            );
        }
        let run = std::env::temp_dir().join(unique("ferrolb-cluster"));
        let mut cluster = RealCluster {
            run: run.clone(),
            kubeconfig: run.join("control-plane/kubeconfig"),
            client_ns: String::new(),
            client_ip: String::new(),
            nodes: Vec::new(),
            pool: String::new(),
        };
        let started = Instant::now();
        run_ok(
            Command::new(script())
                .args([
                    "up",
                    "--nodes",
                    &nodes.to_string(),
                    "--proxy-mode",
                    proxy_mode,
                ])
                .env("FERROLB_CLUSTER", &run)
                .env("FERROLB_IMAGES", &images),
        );
        eprintln!(
            "real cluster: {nodes} nodes Ready in {:.1} s (kube-proxy {proxy_mode})",
            started.elapsed().as_secs_f64()
        );
        let env = std::fs::read_to_string(run.join("cluster.env")).expect("cluster.env");
        let vars: BTreeMap<&str, &str> = env
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        cluster.client_ns = vars["CLIENT_NS"].to_owned();
        cluster.client_ip = vars["CLIENT_IP"].to_owned();
        cluster.pool = vars["POOL"].to_owned();
        for i in 1..=nodes {
            let fields: Vec<&str> = vars[format!("NODE_{i}").as_str()].split(' ').collect();
            cluster.nodes.push(RealNode {
                name: fields[0].to_owned(),
                netns: fields[1].to_owned(),
                ip: fields[2].to_owned(),
            });
        }
        cluster
    }

    /// `kubectl ARGS` as the admin; its output whether or not it succeeded.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(self.run.join("control-plane/kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// `kubectl ARGS`; panics when it fails, else its standard output.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply -f -` of `yaml`.
    pub fn apply(&self, yaml: &str) {
        let mut child = Command::new(self.run.join("control-plane/kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl apply");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(yaml.as_bytes())
            .expect("write manifest");
        let out = child.wait_with_output().expect("kubectl apply");
        assert!(
            out.status.success(),
            "kubectl apply failed: {}\n{yaml}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Installs ferrolb as the README says: the memberlist Secret, the
    /// manifests, the pool ConfigMap; returns when the speaker DaemonSet has
    /// rolled out and a controller is ready.
    pub fn install_ferrolb(&self) {
        self.install_ferrolb_with(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ferrolb-config, namespace: ferrolb-system}}\n\
             data:\n  config: |\n    address-pools:\n    - name: lan\n      protocol: layer2\n      addresses: [{}]\n",
            self.pool
        ));
    }

    /// Installs ferrolb as [`install_ferrolb`](Self::install_ferrolb) does,
    /// with `configmap` (a ConfigMap manifest) as its pools.
    pub fn install_ferrolb_with(&self, configmap: &str) {
        self.kubectl_ok(&["create", "namespace", "ferrolb-system"]);
        self.kubectl_ok(&[
            "create",
            "secret",
            "generic",
            "-n",
            "ferrolb-system",
            "ferrolb-memberlist",
            &format!("--from-literal=secretkey={}", membership_key()),
        ]);
        let crds = root().join("deploy/crds");
        self.kubectl_ok(&["apply", "-f", crds.to_str().expect("utf-8 path")]);
        let manifest = root().join("deploy/ferrolb.yaml");
        self.kubectl_ok(&["apply", "-f", manifest.to_str().expect("utf-8 path")]);
        self.apply(configmap);
        self.rollout_status("daemonset/speaker");
        // One ready controller is enough to serve; whether the standby is
        // Ready too is the rollout test's question.
        let deadline = Instant::now() + Duration::from_secs(120);
        while self
            .kubectl_ok(&[
                "get",
                "deployment",
                "-n",
                "ferrolb-system",
                "controller",
                "-o",
                "jsonpath={.status.readyReplicas}",
            ])
            .trim()
            .parse::<u32>()
            .unwrap_or(0)
            == 0
        {
            if Instant::now() > deadline {
                self.rollout_status("deployment/controller");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `kubectl rollout status` of `what` in ferrolb-system, within 120 s.
    pub fn rollout_status(&self, what: &str) {
        let out = self.kubectl(&[
            "rollout",
            "status",
            "-n",
            "ferrolb-system",
            what,
            "--timeout=120s",
        ]);
        if !out.status.success() {
            let pods = self.kubectl(&["get", "pods", "-A", "-o", "wide"]);
            let describe = self.kubectl(&["describe", "-n", "ferrolb-system", what]);
            panic!(
                "rollout of {what} did not complete: {}\n{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&pods.stdout),
                String::from_utf8_lossy(&describe.stdout)
            );
        }
    }

    /// A Deployment of `replicas` backend pods on the nodes `on` (all when
    /// empty), behind a LoadBalancer Service `name` with `policy` (`Cluster`
    /// or `Local`); returns the EXTERNAL-IP once ferrolb assigned it and a
    /// backend is ready.
    pub fn deploy_backend(&self, name: &str, replicas: usize, on: &[&str], policy: &str) -> String {
        self.apply(&backend_manifest("default", name, replicas, on, policy));
        self.kubectl_ok(&[
            "rollout",
            "status",
            &format!("deployment/{name}"),
            "--timeout=120s",
        ]);
        self.external_ip(name)
    }

    /// Moves deployment `name`'s pods to the nodes `on`.
    pub fn move_backend(&self, name: &str, replicas: usize, on: &[&str], policy: &str) {
        self.deploy_backend(name, replicas, on, policy);
    }

    /// The Service's EXTERNAL-IP, waiting up to 60 s for it.
    pub fn external_ip(&self, service: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ip = self.kubectl_ok(&[
                "get",
                "svc",
                service,
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ]);
            if !ip.is_empty() {
                return ip;
            }
            assert!(
                Instant::now() < deadline,
                "{service} got no EXTERNAL-IP in 60 s:\n{}",
                self.kubectl_ok(&["describe", "svc", service])
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A command run in the client namespace.
    pub fn client_command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.client_ns, program]);
        cmd
    }

    /// `curl http://IP/` from the client (2 s timeout): the body, or `None`.
    pub fn curl(&self, ip: &str) -> Option<String> {
        let out = self
            .client_command("curl")
            .args(["-sS", "-m", "2", &format!("http://{ip}/")])
            .output()
            .expect("run curl");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// `curl` until it answers, for at most `timeout`.
    pub fn curl_until(&self, ip: &str, timeout: Duration, accept: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(body) = self.curl(ip).filter(|b| accept(b)) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "no acceptable answer from http://{ip}/ within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The client namespace as the LAN harness describes namespaces.
    pub fn client(&self) -> Netns {
        Netns {
            name: self.client_ns.clone(),
            mac: String::new(),
            v4: self.client_ip.parse().expect("client address"),
            v6: std::net::Ipv6Addr::UNSPECIFIED,
        }
    }

    /// The nodes whose MAC answers an ARP request for `ip` from the client
    /// (by name; `?MAC` for a MAC that is no node's).
    pub fn announcing_nodes(&self, ip: &str) -> Vec<String> {
        answers(&self.client(), ip)
            .into_iter()
            .map(|mac| {
                self.nodes
                    .iter()
                    .find(|n| self.mac_of(n).eq_ignore_ascii_case(&mac))
                    .map_or_else(|| format!("?{mac}"), |n| n.name.clone())
            })
            .collect()
    }

    fn mac_of(&self, node: &RealNode) -> String {
        let out = Command::new("ip")
            .args(["-n", &node.netns, "-br", "link", "show", "eth0"])
            .output()
            .expect("ip link");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_owned()
    }

    /// The ferrolb pod of `component` (`speaker`, `controller`) on `node`.
    pub fn ferrolb_pod(&self, component: &str, node: &str) -> Option<String> {
        let out = self.kubectl_ok(&[
            "get",
            "pods",
            "-n",
            "ferrolb-system",
            "-l",
            &format!("app.kubernetes.io/component={component}"),
            "--field-selector",
            &format!("spec.nodeName={node}"),
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        out.split_whitespace().next().map(str::to_owned)
    }

    /// Crashes a node: its kubelet, containerd, kube-proxy and pods are
    /// killed and its LAN link unplugged.
    pub fn stop_node(&self, node: &str) {
        run_ok(
            Command::new(script())
                .args(["stop-node", node])
                .env("FERROLB_CLUSTER", &self.run),
        );
    }

    /// Restarts every node's kube-proxy in `mode`.
    pub fn proxy_mode(&self, mode: &str) {
        run_ok(
            Command::new(script())
                .args(["proxy-mode", mode])
                .env("FERROLB_CLUSTER", &self.run),
        );
    }

    /// A client that requests `http://IP/` from the client namespace every
    /// 50 ms until dropped, recording each answer.
    pub fn requester(&self, ip: &str) -> Requester {
        Requester::start(self, ip)
    }
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for args in [
                &["get", "pods", "-A", "-o", "wide"][..],
                &["get", "events", "-A"][..],
                &[
                    "logs",
                    "-n",
                    "ferrolb-system",
                    "-l",
                    "app.kubernetes.io/name=ferrolb",
                    "--tail=30",
                    "--prefix",
                ][..],
            ] {
                let out = self.kubectl(args);
                eprintln!(
                    "--- kubectl {}:\n{}{}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let started = Instant::now();
        let _ = Command::new(script())
            .arg("down")
            .env("FERROLB_CLUSTER", &self.run)
            .status();
        eprintln!(
            "real cluster: down in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
}

/// A fresh membership key: 32 random bytes, hex-encoded.
fn membership_key() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The backend Deployment and its LoadBalancer Service `name`, in `namespace`.
pub fn backend_manifest(
    namespace: &str,
    name: &str,
    replicas: usize,
    on: &[&str],
    policy: &str,
) -> String {
    let affinity = if on.is_empty() {
        String::new()
    } else {
        format!(
            "      affinity:\n        nodeAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n            \
             nodeSelectorTerms:\n            - matchExpressions:\n              - {{key: kubernetes.io/hostname, operator: In, values: [{}]}}\n",
            on.join(", ")
        )
    };
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  strategy: {{rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
{affinity}      containers:
      - name: backend
        image: localhost/ferrolb-backend:0.1.0
        imagePullPolicy: Never
        env:
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        - {{name: NODE_NAME, valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}}}
        ports: [{{containerPort: 8080}}]
        readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  type: LoadBalancer
  externalTrafficPolicy: {policy}
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: 8080}}]
"
    )
}

/// What one request from the client saw.
#[derive(Debug, Clone)]
pub struct Answer {
    /// When the request started, from the requester's start.
    pub at: Duration,
    /// The backend's line (`pod=… node=… client=…`), or `None` on failure.
    pub body: Option<String>,
}

/// A client requesting one address in a loop from the client namespace.
#[derive(Debug)]
pub struct Requester {
    child: Child,
    answers: Arc<Mutex<Vec<Answer>>>,
}

impl Requester {
    fn start(cluster: &RealCluster, ip: &str) -> Requester {
        let probe = binary("flb-probe");
        let mut child = cluster
            .client_command(probe.to_str().expect("utf-8 path"))
            .args(["http-loop", &format!("{ip}:80"), "50"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start flb-probe http-loop");
        let stdout = child.stdout.take().expect("stdout");
        let answers = Arc::new(Mutex::new(Vec::new()));
        let sink = answers.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // "<ms> ok <body>" or "<ms> fail <error>"
                let mut parts = line.splitn(3, ' ');
                let (Some(ms), Some(kind)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let Ok(ms) = ms.parse::<u64>() else { continue };
                let rest = parts.next().unwrap_or_default().to_owned();
                sink.lock().unwrap().push(Answer {
                    at: Duration::from_millis(ms),
                    body: (kind == "ok").then_some(rest),
                });
            }
        });
        Requester { child, answers }
    }

    /// Every answer so far.
    pub fn answers(&self) -> Vec<Answer> {
        self.answers.lock().unwrap().clone()
    }

    /// Waits until `n` more requests have completed.
    pub fn wait_requests(&self, n: usize, timeout: Duration) {
        let start = self.answers().len();
        let deadline = Instant::now() + timeout;
        while self.answers().len() < start + n {
            assert!(Instant::now() < deadline, "the client made no requests");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The number of requests so far, and how many failed.
    pub fn counts(&self) -> (usize, usize) {
        let answers = self.answers();
        let failed = answers.iter().filter(|a| a.body.is_none()).count();
        (answers.len(), failed)
    }
}

impl Drop for Requester {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The longest time without a successful answer among `answers` from index
/// `from` on: from the last success before the first failure to the first
/// success after the last failure of that run.
pub fn longest_gap(answers: &[Answer], from: usize) -> Duration {
    let mut last_ok: Option<Duration> = answers[..from]
        .iter()
        .rev()
        .find(|a| a.body.is_some())
        .map(|a| a.at);
    let mut gap = Duration::ZERO;
    for a in &answers[from..] {
        if a.body.is_some() {
            if let Some(prev) = last_ok {
                gap = gap.max(a.at - prev);
            }
            last_ok = Some(a.at);
        }
    }
    gap
}

/// The field `key=` of a backend answer (`pod`, `node`, `client`).
pub fn field<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    body.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}
