//! The real control plane the tests run against: etcd and kube-apiserver
//! started by `tests/cluster/control-plane`. A test binary attaches to the one
//! named by `FERROLB_KUBECONFIG`, or starts (and leaves running) the shared one;
//! a test that needs a cluster of its own (Services are cluster-wide, and
//! namespaces are never really deleted) starts a private one, stopped on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::OnceCell;

/// The script that builds, starts and stops the control plane.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/control-plane")
}

/// A running control plane: where its kubeconfig is and how to reach it.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    /// The admin kubeconfig, accepted by kubectl and kube-rs.
    pub kubeconfig: PathBuf,
    /// The kubectl built with the API server, of the same version.
    pub kubectl: PathBuf,
}

/// A control plane of one test's own, stopped when dropped.
#[derive(Debug)]
pub struct OwnControlPlane {
    plane: ControlPlane,
    run_dir: PathBuf,
}

impl std::ops::Deref for OwnControlPlane {
    type Target = ControlPlane;
    fn deref(&self) -> &ControlPlane {
        &self.plane
    }
}

impl OwnControlPlane {
    /// The process id of this instance's kube-apiserver (to freeze it).
    pub fn api_server_pid(&self) -> u32 {
        std::fs::read_to_string(self.run_dir.join("kube-apiserver.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .expect("kube-apiserver.pid in the run directory")
    }
}

impl OwnControlPlane {
    /// Restarts this instance's kube-apiserver with the same flags (etcd and
    /// its data stay): clients see their connections drop and their watches
    /// end, and must come back. Returns once the new one answers.
    pub fn restart_api_server(&self) {
        let pid = self.api_server_pid();
        let cmdline =
            std::fs::read(format!("/proc/{pid}/cmdline")).expect("kube-apiserver cmdline");
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let _ = Command::new("kill").arg(pid.to_string()).status();
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.run_dir.join("kube-apiserver.log"))
            .expect("open kube-apiserver.log");
        let child = Command::new("setsid")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("start kube-apiserver again");
        // `setsid` execs the API server when it is not a group leader, so
        // the child's pid is the API server's.
        std::fs::write(
            self.run_dir.join("kube-apiserver.pid"),
            child.id().to_string(),
        )
        .expect("write kube-apiserver.pid");
        // Reaped when `down` stops it, so no zombie outlives it.
        let mut child = child;
        std::thread::spawn(move || child.wait());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            let ready = self
                .kubectl_command()
                .args(["get", "--raw", "/readyz"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ready {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "kube-apiserver not ready 90 s after its restart"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

impl Drop for OwnControlPlane {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("down")
            .env("FERROLB_RUN", &self.run_dir)
            .status();
    }
}

static SHARED: OnceCell<ControlPlane> = OnceCell::const_new();

impl ControlPlane {
    /// The control plane of this test binary, started on first use.
    pub async fn get() -> &'static ControlPlane {
        SHARED
            .get_or_init(|| async {
                tokio::task::spawn_blocking(ControlPlane::attach_or_start)
                    .await
                    .expect("control plane start panicked")
            })
            .await
    }

    /// Starts a control plane for the calling test alone.
    pub async fn own() -> OwnControlPlane {
        let run_dir = std::env::temp_dir().join(unique("ferrolb-cp"));
        let dir = run_dir.clone();
        let plane = tokio::task::spawn_blocking(move || ControlPlane::start(Some(&dir)))
            .await
            .expect("control plane start panicked");
        OwnControlPlane { plane, run_dir }
    }

    fn attach_or_start() -> ControlPlane {
        match std::env::var_os("FERROLB_KUBECONFIG") {
            Some(path) => ControlPlane::at(PathBuf::from(path)),
            None => ControlPlane::start(None),
        }
    }

    /// Runs the script's `up` (for the instance in `run_dir`, or the shared
    /// one) and returns the instance.
    fn start(run_dir: Option<&Path>) -> ControlPlane {
        let script = || {
            let mut cmd = Command::new(script());
            if let Some(dir) = run_dir {
                cmd.env("FERROLB_RUN", dir);
            }
            cmd
        };
        let status = script()
            .arg("up")
            .status()
            .expect("run tests/cluster/control-plane");
        assert!(status.success(), "tests/cluster/control-plane up failed");
        let env = script()
            .arg("env")
            .output()
            .expect("run tests/cluster/control-plane env");
        let env = String::from_utf8_lossy(&env.stdout);
        let path = env
            .lines()
            .find_map(|l| l.strip_prefix("export KUBECONFIG="))
            .expect("control-plane env prints KUBECONFIG");
        ControlPlane::at(PathBuf::from(path))
    }

    fn at(kubeconfig: PathBuf) -> ControlPlane {
        let kubectl = kubeconfig.with_file_name("kubectl");
        assert!(
            kubectl.exists(),
            "no kubectl beside {}: start the control plane with tests/cluster/control-plane up",
            kubeconfig.display()
        );
        ControlPlane {
            kubeconfig,
            kubectl,
        }
    }

    /// A fresh client authenticated as the cluster admin.
    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("read kubeconfig");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("load kubeconfig");
        Client::try_from(config).expect("build client")
    }

    /// Runs kubectl against this control plane and returns its standard
    /// output; panics with its standard error when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self
            .kubectl_command()
            .args(args)
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A kubectl command with this control plane's kubeconfig.
    pub fn kubectl_command(&self) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }
}

/// A name unique to this test run, for namespaces and cluster-scoped objects
/// (a namespace is never really deleted without a controller-manager).
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{:x}{:x}-{}",
        std::process::id(),
        nanos % 0xfff,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
