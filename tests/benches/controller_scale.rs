//! End-to-end scale of the controller: N LoadBalancer Services (default
//! 10,000; `FERROLB_BENCH_SERVICES` to change) created against a private
//! control plane while the release-built controller runs. Prints how long
//! until every Service has an address, the create-to-status latency
//! percentiles (each Service timed from its create request to the first
//! watch event showing its ingress), and the controller's peak RSS.
//!
//! Run: `cargo bench -p ferrolb-e2e --bench controller_scale`
//! (`FERROLB_BENCH_SERVICES=1000` for a quick check).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrolb_e2e::ControlPlane;
use ferrolb_e2e::objects::{LoadBalancer, apply_config, namespace};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// IPv6 Services from one /112: documentation IPv4 space is three /24s, too
/// few for ten thousand Services, and the cluster's IPv6 service range is a
/// /108.
const CONFIG: &str = "\
address-pools:
- name: scale
  protocol: layer2
  addresses:
  - 2001:db8:5ca1::/112
";

/// The controller, killed when dropped.
struct Controller {
    child: Child,
    log: PathBuf,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn readyz(addr: SocketAddr) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"GET /readyz HTTP/1.0\r\n\r\n")
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// A `/proc/<pid>/status` field in KiB.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// User plus system CPU time of a process.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(Duration::from_millis(ticks * 10))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let count = env_number("FERROLB_BENCH_SERVICES", 10_000);
    let in_flight = env_number("FERROLB_BENCH_IN_FLIGHT", 16);
    let controller_path = ferrolb_e2e::daemons::binary("ferrolb-controller");
    let cp = ControlPlane::own().await;
    let client = cp.client().await;
    apply_config(&client, CONFIG).await;
    let ns = namespace(&client, "scale").await;

    let metrics = {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        SocketAddr::from(([127, 0, 0, 1], port))
    };
    let log = std::env::temp_dir().join(format!("{ns}-controller.log"));
    let out = std::fs::File::create(&log).expect("create the controller log");
    let controller = Controller {
        child: Command::new(&controller_path)
            .args([
                "--metrics-address",
                &metrics.to_string(),
                "--identity",
                "bench",
            ])
            .env("KUBECONFIG", &cp.kubeconfig)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone the log handle"))
            .stderr(out)
            .spawn()
            .expect("start the controller"),
        log,
    };
    let pid = controller.child.id();
    let deadline = Instant::now() + Duration::from_secs(120);
    while readyz(metrics).await != Some(200) {
        assert!(
            Instant::now() < deadline,
            "the controller did not become ready; see {}",
            controller.log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_idle = proc_status_kib(pid, "VmRSS").unwrap_or_default();

    // Watch first, so no status is missed.
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let watch = {
        let services = services.clone();
        tokio::spawn(async move {
            let mut seen: HashMap<String, Instant> = HashMap::with_capacity(count);
            let mut stream = watcher(services, watcher::Config::default())
                .applied_objects()
                .boxed();
            while seen.len() < count {
                let service = match stream.try_next().await {
                    Ok(Some(service)) => service,
                    Ok(None) => break,
                    Err(e) => {
                        eprintln!("watch error (retrying): {e}");
                        continue;
                    }
                };
                let has_ingress = service
                    .status
                    .and_then(|s| s.load_balancer)
                    .and_then(|lb| lb.ingress)
                    .is_some_and(|i| !i.is_empty());
                if has_ingress && let Some(name) = service.metadata.name {
                    seen.entry(name).or_insert_with(Instant::now);
                }
            }
            seen
        })
    };

    let start = Instant::now();
    let creates = futures::stream::iter(0..count)
        .map(|i| {
            let (services, sent) = (services.clone(), sent.clone());
            async move {
                let name = format!("svc-{i:05}");
                let service = LoadBalancer::new(&name)
                    .families("SingleStack", &["IPv6"])
                    .without_node_ports()
                    .build();
                sent.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(name.clone(), Instant::now());
                services
                    .create(&PostParams::default(), &service)
                    .await
                    .unwrap_or_else(|e| panic!("create {name}: {e}"));
            }
        })
        .buffer_unordered(in_flight)
        .collect::<Vec<()>>();
    creates.await;
    let created = start.elapsed();

    let seen = match tokio::time::timeout(Duration::from_secs(1800), watch).await {
        Ok(joined) => joined.expect("the watch task panicked"),
        Err(_) => panic!("not every Service had an address after 30 minutes"),
    };
    let rss_peak = proc_status_kib(pid, "VmHWM").unwrap_or_default();
    let rss_now = proc_status_kib(pid, "VmRSS").unwrap_or_default();
    let cpu = cpu_time(pid).unwrap_or_default();
    assert_eq!(seen.len(), count, "Services with an address");

    let sent = sent.lock().unwrap_or_else(|e| e.into_inner());
    let all_done = seen.values().max().map(|t| t.duration_since(start));
    let mut latencies: Vec<Duration> = seen
        .iter()
        .map(|(name, at)| at.saturating_duration_since(sent[name]))
        .collect();
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "controller_scale: {count} IPv6 LoadBalancer Services, {in_flight} creates in flight, release controller"
    );
    println!(
        "  all created in         {:.1} s ({:.0} creates/s)",
        created.as_secs_f64(),
        count as f64 / created.as_secs_f64()
    );
    println!(
        "  all with an address in {:.1} s after the first create",
        all_done.unwrap_or_default().as_secs_f64()
    );
    println!(
        "  create-to-status       p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 90.0)),
        ms(percentile(&latencies, 99.0)),
        ms(percentile(&latencies, 100.0)),
    );
    println!(
        "  controller memory      peak RSS (VmHWM) {:.1} MiB; RSS {:.1} MiB idle before, {:.1} MiB after",
        rss_peak as f64 / 1024.0,
        rss_idle as f64 / 1024.0,
        rss_now as f64 / 1024.0
    );
    println!(
        "  controller CPU         {:.1} s user+system",
        cpu.as_secs_f64()
    );
    drop(controller);
}
