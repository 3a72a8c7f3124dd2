//! What the L2 announcement responder costs `from_netdev`, measured in the kernel with
//! BPF_PROG_TEST_RUN. Run as root:
//!
//! ```text
//! cargo run --release --example l2-bench -p datapath [-- OLD_BPF_HOST_O]
//! ```
//!
//! `OLD_BPF_HOST_O` is a `bpf_host.o` built without the responder, measured side by side with
//! this build's (rounds interleaved, medians reported). Build one from the commit before the
//! responder:
//!
//! ```text
//! git archive 6be5469 bpf | tar -x -C /tmp/old-bpf
//! clang -O2 -g -target bpf -Wall -Werror -I/usr/include/x86_64-linux-gnu \
//!     -c /tmp/old-bpf/bpf/bpf_host.c -o /tmp/old-bpf/bpf_host.o
//! ```
//!
//! Figures:
//! - `IPv4 pass-through (repeat)`: a TCP segment to no service, `REPEAT` runs in one call: the
//!   cost every IPv4 packet pays; the responder adds one compare of `skb->protocol` to it.
//! - `ARP not ours (repeat)`, `IPv6 not NDP (repeat)`: what other frames pay for the checks.
//! - `ARP answered`, `NS answered`: one call per request (the answer replaces the request, so a
//!   repeated run would measure a reply), with the kernel's per-call timer overhead included;
//!   `IPv4 pass-through (single)` is the same overhead on the fast path, for comparison.
//!
//! Everything runs in a private bpffs and an empty network namespace; nothing leaves the process.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use aya::EbpfLoader;
use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use datapath::objects::PROG_FROM_NETDEV;
use datapath::{Datapath, L2Entry, LbDatapath};
use etherparse::PacketBuilder;

const REPEAT: u32 = 1_000_000;
const ROUNDS: usize = 15;
const CALLS: usize = 20_000;
const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 211);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0x211);

struct Bpffs(std::path::PathBuf);

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn tcp_pass() -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, OUR_MAC)
        .ipv4([192, 168, 10, 1], [192, 168, 10, 100], 64)
        .tcp(40000, 22, 1, 64240)
        .ack(1);
    let mut out = Vec::new();
    b.write(&mut out, &[]).expect("build packet");
    out
}

fn udp6_pass() -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, OUR_MAC)
        .ipv6(Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 1).octets(), VIP6.octets(), 64)
        .udp(40000, 53);
    let mut out = Vec::new();
    b.write(&mut out, b"query").expect("build packet");
    out
}

fn who_has(target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[192, 168, 10, 1]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f.resize(60, 0);
    f
}

/// A multicast NS for VIP6 with a source link-layer option (checksum irrelevant here: the
/// responder does not verify it, the kernel does for what it receives).
fn ns() -> Vec<u8> {
    let t = VIP6.octets();
    let mut f = Vec::new();
    f.extend_from_slice(&[0x33, 0x33, 0xff, t[13], t[14], t[15]]);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 32, 58, 255]);
    f.extend_from_slice(&Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 1).octets());
    f.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t[13], t[14], t[15]]);
    f.extend_from_slice(&[135, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&t);
    f.extend_from_slice(&[1, 1]);
    f.extend_from_slice(&CLIENT_MAC);
    f
}

fn run(prog: &SchedClassifier, pkt: &[u8], repeat: u32) -> Result<(u32, Duration)> {
    let mut out = vec![0u8; pkt.len() + 256];
    let r = prog.test_run(TestRunOptions {
        data_in: Some(pkt),
        data_out: Some(&mut out),
        repeat,
        ..TestRunOptions::default()
    })?;
    Ok((r.return_value, r.duration))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Mean kernel-measured time of single runs.
fn per_call(prog: &SchedClassifier, pkt: &[u8], want_verdict: u32) -> Result<f64> {
    let mut total = 0u128;
    for _ in 0..CALLS {
        let (verdict, d) = run(prog, pkt, 1)?;
        anyhow::ensure!(verdict == want_verdict, "verdict {verdict}, expected {want_verdict}");
        total += d.as_nanos();
    }
    Ok(total as f64 / CALLS as f64)
}

fn load_old(path: &Path, pin_dir: &Path) -> Result<aya::Ebpf> {
    std::fs::create_dir_all(pin_dir)?;
    let mut obj = EbpfLoader::new()
        .default_map_pin_directory(pin_dir)
        .load_file(path)
        .with_context(|| format!("load {}", path.display()))?;
    let prog: &mut SchedClassifier =
        obj.program_mut(PROG_FROM_NETDEV).context("from_netdev in the old object")?.try_into()?;
    prog.load()?;
    Ok(obj)
}

fn main() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("l2-bench needs root (BPF_PROG_TEST_RUN, bpffs)");
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
    let dir = std::env::temp_dir().join(format!("cilia-l2-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    nix::mount::mount(Some("bpf"), &dir, Some("bpf"), nix::mount::MsFlags::empty(), None::<&str>)
        .context("mount bpffs (run as root)")?;
    let fs = Bpffs(dir);

    let mut dp = Datapath::open(fs.0.join("new"))?;
    // Test runs without a context run on lo (ifindex 1). A thousand announced addresses, as a
    // big node would hold.
    let mut entries: Vec<L2Entry> = (0..1000u32)
        .map(|i| L2Entry {
            ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + i).into(),
            ifindex: 1,
            mac: OUR_MAC,
        })
        .collect();
    entries.push(L2Entry { ip: VIP.into(), ifindex: 1, mac: OUR_MAC });
    entries.push(L2Entry { ip: VIP6.into(), ifindex: 1, mac: OUR_MAC });
    dp.sync_l2(&entries)?;
    dp.refresh_l2_liveness(Duration::from_secs(3600))?;
    let new = dp.classifier(PROG_FROM_NETDEV)?;

    let old_obj = match std::env::args().nth(1) {
        Some(p) => Some(load_old(Path::new(&p), &fs.0.join("old"))?),
        None => None,
    };
    let old: Option<&SchedClassifier> = match &old_obj {
        Some(o) => Some(o.program(PROG_FROM_NETDEV).context("from_netdev")?.try_into()?),
        None => None,
    };

    let tcp = tcp_pass();
    let (mut new_rounds, mut old_rounds) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        if let Some(old) = old {
            old_rounds.push(run(old, &tcp, REPEAT)?.1.as_nanos() as f64);
        }
        let (verdict, d) = run(new, &tcp, REPEAT)?;
        anyhow::ensure!(verdict == 0, "IPv4 pass-through verdict {verdict}");
        new_rounds.push(d.as_nanos() as f64);
    }
    println!("from_netdev, kernel-measured (BPF_PROG_TEST_RUN), medians of {ROUNDS} rounds of {REPEAT} runs:");
    let new_ns = median(new_rounds.clone());
    println!("  IPv4 pass-through (repeat), with the responder:    {new_ns:>6.1} ns   rounds {new_rounds:?}");
    if old.is_some() {
        let old_ns = median(old_rounds.clone());
        println!("  IPv4 pass-through (repeat), without the responder: {old_ns:>6.1} ns   rounds {old_rounds:?}");
        println!("  difference: {:+.1} ns", new_ns - old_ns);
    }
    let arp_miss = median(
        (0..ROUNDS)
            .map(|_| run(new, &who_has(Ipv4Addr::new(192, 168, 10, 99)), REPEAT).map(|r| r.1.as_nanos() as f64))
            .collect::<Result<_>>()?,
    );
    println!("  ARP not ours (repeat):                             {arp_miss:>6.1} ns");
    let v6 = median(
        (0..ROUNDS).map(|_| run(new, &udp6_pass(), REPEAT).map(|r| r.1.as_nanos() as f64)).collect::<Result<_>>()?,
    );
    println!("  IPv6 not NDP (repeat):                             {v6:>6.1} ns");
    println!("single calls ({CALLS} each, timer overhead included):");
    println!("  IPv4 pass-through:                                 {:>6.1} ns", per_call(new, &tcp, 0)?);
    println!("  ARP answered:                                      {:>6.1} ns", per_call(new, &who_has(VIP), 7)?);
    println!("  NS answered:                                       {:>6.1} ns", per_call(new, &ns(), 7)?);
    drop(old_obj);
    drop(dp);
    Ok(())
}
