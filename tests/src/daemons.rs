//! ferrolb's own binaries run as the processes they are in a cluster: built by
//! cargo if missing, logging to a file the test prints when it fails, killed
//! on drop.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use crate::control_plane::{ControlPlane, unique};
use crate::netns::Netns;

/// The path of one of the workspace's binaries (`ferrolb-controller`,
/// `ferrolb-speaker`, or this crate's `flb-*` tools), built first if it is
/// not there yet. With `FERROLB_BINARY_DIR` set, the binary of that name in
/// that directory, unbuilt: to measure another build side by side.
pub fn binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("FERROLB_BINARY_DIR") {
        return PathBuf::from(dir).join(name);
    }
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let exe = std::env::current_exe().expect("test executable path");
    // A test runs from target/<profile>/deps/, the demo from
    // target/<profile>/: the binaries sit in target/<profile>/.
    let dir = exe.parent().expect("executable in a directory");
    let dir = if dir.ends_with("deps") {
        dir.parent().expect("target/<profile>")
    } else {
        dir
    };
    let path = dir.join(name);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        // Build the profile the caller runs in (benchmarks run release), so
        // the path below is never a stale binary of the other profile.
        let package = if name.starts_with("flb-") {
            env!("CARGO_PKG_NAME")
        } else {
            name
        };
        let mut args = vec!["build", "--quiet", "-p", package, "--bin", name];
        if dir.ends_with("release") {
            args.push("--release");
        }
        let status = Command::new(env!("CARGO"))
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --bin {name} failed");
        built.push(name.to_owned());
    }
    path
}

/// A running ferrolb process.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    /// Where its standard output and error go.
    pub log: PathBuf,
    name: String,
}

impl Daemon {
    /// Starts binary `name` with `args`, talking to `plane`, in `netns` (or
    /// the root namespace).
    pub fn start(name: &str, args: &[&str], plane: &ControlPlane, netns: Option<&Netns>) -> Daemon {
        Daemon::start_with_env(name, args, &[], plane, netns)
    }

    /// Like [`Daemon::start`], with `env` added to its environment (secrets
    /// go there, not on the command line).
    pub fn start_with_env(
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
        plane: &ControlPlane,
        netns: Option<&Netns>,
    ) -> Daemon {
        let path = binary(name);
        let log = std::env::temp_dir().join(format!("{}.log", unique(name)));
        let out = File::create(&log).expect("create daemon log");
        let err = out.try_clone().expect("clone log handle");
        let mut cmd = match netns {
            Some(ns) => ns.command(path.to_str().expect("utf-8 path")),
            None => Command::new(&path),
        };
        let child = cmd
            .args(args)
            .env("KUBECONFIG", &plane.kubeconfig)
            .env("RUST_LOG", "info,kube=warn,ferrolb_speaker=debug")
            .env_remove("NO_COLOR")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Daemon {
            child,
            log,
            name: name.to_owned(),
        }
    }

    /// What it logged so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills it at once (SIGKILL), as a crash or a lost node would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks it to stop (SIGTERM, as the kubelet does) and waits until it
    /// has; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().is_ok_and(|s| s.success())
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let output = self.output();
            let tail: Vec<&str> = output.lines().rev().take(40).collect();
            eprintln!("--- last lines of {} ({}):", self.name, self.log.display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        } else {
            // Kept only when a test fails, where the tail above names it.
            let _ = std::fs::remove_file(&self.log);
        }
    }
}
