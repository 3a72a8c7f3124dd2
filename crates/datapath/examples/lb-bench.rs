//! Per-packet cost of the service LB programs, measured in the kernel with BPF_PROG_TEST_RUN,
//! at 1, 1 000 and 10 000 services (4 backends each). Run as root:
//!
//! ```text
//! cargo run --release --example lb-bench -p datapath
//! ```
//!
//! Figures:
//! - `steady (repeat)`: one established flow run `REPEAT` times in one call (`ns/packet` as the
//!   kernel reports it). The service's backend is its own frontend, so the repeated packet takes
//!   the full path (frontend lookup, conntrack hit, backend lookup, DNAT) every time instead of
//!   being a translated packet on the second run.
//! - `new conn`: a SYN from a new source port per call: conntrack miss, backend selection, two
//!   conntrack entries, DNAT with checksum updates.
//! - `established`: the same flows again, each through a real DNAT.
//! - `nodeport+SNAT new`: from_netdev, remote backend: DNAT, SNAT port allocation, two NAT
//!   entries.
//! - `pass-through`: a packet to no service (the cost every other packet pays).
//!
//! Everything runs in a private bpffs and an empty network namespace; nothing leaves the process.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result};
use aya::programs::{TestRun, TestRunOptions};
use datapath::abi::{NetdevFlags, NetdevInfo};
use datapath::objects::{PROG_FROM_CONTAINER, PROG_FROM_NETDEV};
use datapath::{Backend, Datapath, DatapathConfig, LbDatapath, Protocol, ServiceEntry, ServiceKind};
use etherparse::PacketBuilder;

const REPEAT: u32 = 200_000;
const FLOWS: u16 = 2_000;
const BACKENDS: u8 = 4;
const NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 100);

fn vip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i)
}

fn syn(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags_syn: bool) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src.octets(), dst.octets(), 64)
        .tcp(sport, dport, 1, 64240);
    let b = if flags_syn { b.syn() } else { b.ack(1) };
    let mut out = Vec::new();
    b.write(&mut out, &[]).expect("build packet");
    out
}

fn run(dp: &Datapath, prog: &'static str, pkt: &[u8], repeat: u32) -> Result<Duration> {
    let mut out = vec![0u8; pkt.len() + 256];
    let r = dp.classifier(prog)?.test_run(TestRunOptions {
        data_in: Some(pkt),
        data_out: Some(&mut out),
        repeat,
        ..TestRunOptions::default()
    })?;
    Ok(r.duration)
}

/// Mean of the kernel-reported durations of one call per packet.
fn per_call(dp: &Datapath, prog: &'static str, pkts: &[Vec<u8>]) -> Result<f64> {
    let mut total = 0u128;
    for p in pkts {
        total += run(dp, prog, p, 1)?.as_nanos();
    }
    Ok(total as f64 / pkts.len() as f64)
}

struct Bpffs(std::path::PathBuf);

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn bench(services: u32) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("cilia-lb-bench-{}-{services}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    nix::mount::mount(Some("bpf"), &dir, Some("bpf"), nix::mount::MsFlags::empty(), None::<&str>)
        .context("mount bpffs (run as root)")?;
    let fs = Bpffs(dir);
    let mut dp = Datapath::open_with(fs.0.join("node"), &DatapathConfig::default())?;
    dp.maps_mut().netdevs.insert(1, NetdevInfo { addr: NODE.octets(), flags: NetdevFlags::empty() }, 0)?;

    let mut entries: Vec<ServiceEntry> = (1..services)
        .map(|i| {
            let backends = (1..=BACKENDS)
                .map(|b| Backend::active(Ipv4Addr::new(172, 20, (i % 250) as u8, b), 8080, true))
                .collect();
            ServiceEntry::new(ServiceKind::ClusterIp, vip(i), 80, Protocol::Tcp, backends)
        })
        .collect();
    // the measured services: a hairpin one for repeat runs, a regular one, a NodePort
    let steady = Ipv4Addr::new(10, 97, 0, 1);
    entries.push(ServiceEntry::new(
        ServiceKind::ClusterIp,
        steady,
        80,
        Protocol::Tcp,
        vec![Backend::active(steady, 80, true)],
    ));
    let measured = Ipv4Addr::new(10, 97, 0, 2);
    let backends: Vec<Backend> =
        (1..=BACKENDS).map(|b| Backend::active(Ipv4Addr::new(172, 21, 0, b), 8080, true)).collect();
    entries.push(ServiceEntry::new(ServiceKind::ClusterIp, measured, 80, Protocol::Tcp, backends.clone()));
    let remote: Vec<Backend> = backends.iter().map(|b| Backend { node_local: false, ..*b }).collect();
    entries.push(ServiceEntry::new(ServiceKind::NodePort, NODE, 30080, Protocol::Tcp, remote));

    let t = std::time::Instant::now();
    let stats = dp.sync_services(&entries)?;
    let sync = t.elapsed();

    let client = Ipv4Addr::new(172, 20, 255, 2);
    let steady_pkt = syn(client, 40000, steady, 80, false);
    run(&dp, PROG_FROM_CONTAINER, &steady_pkt, 1)?;
    let steady_ns = run(&dp, PROG_FROM_CONTAINER, &steady_pkt, REPEAT)?.as_nanos();

    let new: Vec<Vec<u8>> = (0..FLOWS).map(|i| syn(client, 10000 + i, measured, 80, true)).collect();
    let new_ns = per_call(&dp, PROG_FROM_CONTAINER, &new)?;
    let est: Vec<Vec<u8>> = (0..FLOWS).map(|i| syn(client, 10000 + i, measured, 80, false)).collect();
    let est_ns = per_call(&dp, PROG_FROM_CONTAINER, &est)?;
    let outside = Ipv4Addr::new(192, 168, 10, 1);
    let np: Vec<Vec<u8>> = (0..FLOWS).map(|i| syn(outside, 10000 + i, NODE, 30080, true)).collect();
    let np_ns = per_call(&dp, PROG_FROM_NETDEV, &np)?;
    let other = syn(client, 40001, Ipv4Addr::new(172, 20, 9, 9), 8080, false);
    let pass_ns = run(&dp, PROG_FROM_CONTAINER, &other, REPEAT)?.as_nanos();

    println!(
        "{services:>6} services | steady (repeat) {steady_ns:>4} ns | new conn {new_ns:>6.0} ns | established {est_ns:>6.0} ns | nodeport+SNAT new {np_ns:>6.0} ns | pass-through {pass_ns:>4} ns | sync {} rows in {:>7.1} ms",
        stats.upserts,
        sync.as_secs_f64() * 1e3
    );
    drop(dp);
    Ok(())
}

/// Cilium #32391: a Maglev service with hundreds of ports took minutes to program. Here: one
/// LoadBalancer service with 400 ports and 10 backends, then one backend replaced.
fn maglev_many_ports() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("cilia-lb-bench-{}-maglev", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    nix::mount::mount(Some("bpf"), &dir, Some("bpf"), nix::mount::MsFlags::empty(), None::<&str>)
        .context("mount bpffs (run as root)")?;
    let fs = Bpffs(dir);
    let mut dp = Datapath::open(fs.0.join("node"))?;
    let entries = |first_backend: u8| -> Vec<ServiceEntry> {
        (0..400u16)
            .map(|p| {
                let backends = (first_backend..first_backend + 10)
                    .map(|b| Backend::active(Ipv4Addr::new(172, 20, 1, b), 8000 + p, false))
                    .collect();
                let mut e = ServiceEntry::new(
                    ServiceKind::LoadBalancer,
                    Ipv4Addr::new(192, 168, 10, 211),
                    1000 + p,
                    Protocol::Tcp,
                    backends,
                );
                e.algorithm = datapath::LbAlgorithm::Maglev;
                e
            })
            .collect()
    };
    let t = std::time::Instant::now();
    dp.sync_services(&entries(1))?;
    let first = t.elapsed();
    let t = std::time::Instant::now();
    dp.sync_services(&entries(2))?;
    let change = t.elapsed();
    println!(
        "Maglev, 1 service x 400 ports x 10 backends (M = 16381): first sync {:.0} ms, one backend replaced on every port {:.0} ms",
        first.as_secs_f64() * 1e3,
        change.as_secs_f64() * 1e3
    );
    drop(dp);
    Ok(())
}

fn main() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("lb-bench needs root (BPF_PROG_TEST_RUN, bpffs)");
    }
    // An empty network namespace: FIB lookups find no route, so every packet takes the same
    // hand-to-the-stack exit and nothing can reach a real network.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
    println!("per-packet cost of from_container / from_netdev (BPF_PROG_TEST_RUN, kernel-measured)");
    for services in [1, 1_000, 10_000] {
        bench(services)?;
    }
    maglev_many_ports()?;
    Ok(())
}
