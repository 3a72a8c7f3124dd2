//! CNI ADD/DEL latency through the real plugin binary against an in-process agent.
//!
//! ```text
//! cargo build -p cni --release --bins --examples
//! sudo target/release/examples/cni-bench [PODS]      # default 100
//! ```
//! Runs as root. Creates a node namespace and PODS pod namespaces (named `cni-bench-<pid>-…`),
//! wires each pod with `cilia-cni ADD` exactly as a runtime would (env + stdin, one process per
//! call), deletes them with `DEL`, prints p50/p90/p99/max, and removes every namespace it made.
//! The plugin is looked up next to the examples directory (`target/<profile>/cilia-cni`) unless
//! `CILIA_CNI` names it.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use cni::{CniServer, CniServerConfig, PodNetworkConfig};

/// A namespace made for the benchmark, removed on drop. Namespaces are scaffolding here, so the
/// `ip` tool makes them.
struct BenchNetns(String);

impl BenchNetns {
    fn new(name: String) -> Result<Self> {
        let status = Command::new("ip").args(["netns", "add", &name]).status().context("running ip netns add")?;
        ensure!(status.success(), "ip netns add {name} failed (are you root?)");
        Ok(BenchNetns(name))
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for BenchNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn plugin_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CILIA_CNI") {
        return Ok(p.into());
    }
    let exe = std::env::current_exe()?;
    let candidate = exe.parent().and_then(Path::parent).map(|d| d.join("cilia-cni")).context("locating target dir")?;
    ensure!(
        candidate.exists(),
        "{} not found: build it with `cargo build -p cni` or set CILIA_CNI",
        candidate.display()
    );
    Ok(candidate)
}

fn cni(plugin: &Path, command: &str, container: &str, netns: &str, conf: &str) -> Result<Duration> {
    let start = Instant::now();
    let mut child = Command::new(plugin)
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/opt/cni/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {}", plugin.display()))?;
    child.stdin.take().context("stdin")?.write_all(conf.as_bytes())?;
    let out = child.wait_with_output()?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        bail!("{command} {container}: {}", String::from_utf8_lossy(&out.stdout));
    }
    Ok(elapsed)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn run_dir() -> PathBuf {
    let run = PathBuf::from("/run");
    if run.is_dir() { run } else { std::env::temp_dir() }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what:<4} n={:<4} p50={:>6.2} ms  p90={:>6.2} ms  p99={:>6.2} ms  max={:>6.2} ms",
        samples.len(),
        ms(percentile(&samples, 50.0)),
        ms(percentile(&samples, 90.0)),
        ms(percentile(&samples, 99.0)),
        ms(*samples.last().expect("samples")),
    );
}

fn main() -> Result<()> {
    let pods: usize =
        std::env::args().nth(1).map(|a| a.parse()).transpose().context("PODS must be a number")?.unwrap_or(100);
    ensure!((1..=250).contains(&pods), "PODS must be within 1..=250 (one /24 of pod addresses)");
    let plugin = plugin_path()?;
    let tag = std::process::id();
    let node = BenchNetns::new(format!("cni-bench-{tag}-node"))?;
    let pod_ns: Vec<BenchNetns> =
        (0..pods).map(|i| BenchNetns::new(format!("cni-bench-{tag}-p{i}"))).collect::<Result<_>>()?;
    // State and socket live under /run as on a node (tmpfs on most systems): allocations must survive agent restarts,
    // not reboots, which take every pod veth with them.
    let dir = tempfile::Builder::new().prefix("cni-bench-").tempdir_in(run_dir())?;
    let socket = dir.path().join("cni.sock");
    let config = CniServerConfig {
        pod_network: PodNetworkConfig {
            node_name: "bench".into(),
            pod_cidr: "172.20.9.0/24".parse()?,
            router_ip: Ipv4Addr::new(172, 20, 9, 1),
            mtu: 1500,
            route_mtu: None,
            node_netns: None,
            state_dir: dir.path().join("state"),
        },
        socket_path: socket.clone(),
    };

    // The agent runs on its own thread inside the node namespace, as it would on a node.
    let node_ns = netconf::Netns::open(node.path())?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = std::thread::spawn(move || -> Result<()> {
        node_ns.enter()?;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        rt.block_on(async move {
            match CniServer::start(config).await {
                Ok((server, _network)) => {
                    let _ = ready_tx.send(Ok(()));
                    let _ = stop_rx.await;
                    drop(server);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                }
            }
        });
        Ok(())
    });
    ready_rx.recv().context("agent thread died")?.map_err(anyhow::Error::msg).context("starting agent")?;

    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": "cilia", "type": "cilia-cni", "agentSocket": socket,
    })
    .to_string();
    let run = || -> Result<(Vec<Duration>, Vec<Duration>)> {
        let mut adds = Vec::with_capacity(pods);
        for (i, ns) in pod_ns.iter().enumerate() {
            adds.push(cni(&plugin, "ADD", &format!("bench-{i}"), &ns.path(), &conf)?);
        }
        let mut dels = Vec::with_capacity(pods);
        for (i, ns) in pod_ns.iter().enumerate() {
            dels.push(cni(&plugin, "DEL", &format!("bench-{i}"), &ns.path(), &conf)?);
        }
        Ok((adds, dels))
    };
    let fds_before = open_fds();
    let outcome = run();
    let fds_after = open_fds();
    let _ = stop_tx.send(());
    let _ = agent.join();
    let (adds, dels) = outcome?;
    println!("cilia-cni through {} ({pods} pods, one plugin process per call)", plugin.display());
    report("ADD", adds);
    report("DEL", dels);
    // Each ADD opens a netlink socket inside the pod namespace; all must be closed again.
    println!("open file descriptors: {fds_before} before, {fds_after} after");
    Ok(())
}
