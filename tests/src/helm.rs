//! The real `helm` client (built by `scripts/go-tool helm`) on the chart
//! `deploy/helm/ferrolb`, with its own config, cache and data directories
//! so a test reads no repository or plugin of the machine's user.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ in the repository")
        .to_path_buf()
}

/// The chart's directory.
pub fn chart() -> PathBuf {
    root().join("deploy/helm/ferrolb")
}

/// The helm binary, built on first use.
fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let out = Command::new(root().join("scripts/go-tool"))
            .arg("helm")
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/go-tool helm");
        assert!(out.status.success(), "scripts/go-tool helm failed");
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// A `helm` command whose state lives under the temporary directory.
pub fn helm() -> Command {
    let home = std::env::temp_dir().join(format!("ferrolb-helm-{}", std::process::id()));
    let mut cmd = Command::new(binary());
    for (var, dir) in [
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_DATA_HOME", "data"),
    ] {
        cmd.env(var, home.join(dir));
    }
    cmd
}

/// Runs `helm ARGS`; panics with its output when it fails, else its
/// standard output.
pub fn helm_ok(args: &[&str]) -> String {
    let out = helm().args(args).output().expect("run helm");
    assert!(
        out.status.success(),
        "helm {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cmd` with `input` on its standard input; panics when it fails, else its
/// standard output.
pub fn pipe_ok(mut cmd: Command, input: &str) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write standard input");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
