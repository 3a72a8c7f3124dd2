//! `cilia dbg NODE ...`: a node's datapath state, printed like `cilium-dbg`:
//!
//! - `bpf lb list`, `bpf ct list [global]`, `bpf nat list`, `bpf tunnel list`, `bpf l2 list`:
//!   read straight from the maps pinned under the node's bpffs directory
//!   (`/sys/fs/bpf/cilia/<lab>/<node>/`); nothing is loaded or attached, and the agent need not run;
//! - `db show l2-announce` (also as Cilium spells it, `shell -- db/show l2-announce`): the L2
//!   announcements the node's agent owns, `IP  NetworkInterface`, from the table it keeps in its
//!   state directory;
//! - `metrics`: the node agent's metrics exposition (what `:9962/metrics` serves), read over the
//!   root-only unix socket in its state directory, so nothing is sent from this namespace.
//!
//! `cilia exec -n kube-system cilium-xxxxx -- cilium-dbg ARGS`, in an agent's pod as the guide does
//! it, runs this for the pod's node (see `commands::exec`).

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context as _, Result, bail};

const USAGE: &str = "usage: cilia dbg NODE bpf lb list | bpf ct list [global] | bpf nat list | bpf tunnel list | \
                     bpf l2 list | db show l2-announce | metrics";

/// How long the agent may take to answer `metrics` (it reads every map's size).
const METRICS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The pin directory of `node`: the lab's when the lab has one for it, else the agent's default.
fn pin_dir(lab: &str, node: &str) -> Result<PathBuf> {
    let lab = lab::Lab::new(lab)?;
    let in_lab = lab.paths().bpf_dir().join(node);
    if in_lab.exists() {
        return Ok(in_lab);
    }
    let standalone = datapath::node_pin_dir(node);
    if standalone.join(datapath::abi::MAP_SERVICES).exists() {
        return Ok(standalone);
    }
    bail!(
        "no datapath pinned for node {node} (looked in {} and {}): is its agent running with kube-proxy replacement?",
        in_lab.display(),
        standalone.display()
    )
}

/// The agent's state directory on `node`: the lab's node directory, else the agent's default.
fn state_dir(lab: &str, node: &str) -> Result<PathBuf> {
    let lab = lab::Lab::new(lab)?;
    let in_lab = lab.paths().node_dir(node);
    Ok(if in_lab.exists() { in_lab } else { PathBuf::from(agent::config::DEFAULT_STATE_DIR) })
}

pub fn run(lab: &str, node: &str, args: &[String]) -> Result<ExitCode> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    if let ["db", "show", "l2-announce"] | ["shell", "--", "db/show", "l2-announce"] = words.as_slice() {
        let dir = state_dir(lab, node)?;
        let rows = match agent::l2_announcer::read_table(&dir) {
            Ok(rows) => rows,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading the L2 announcement table in {}", dir.display())),
        };
        print!("{}", l2_announce_table(&rows));
        return Ok(ExitCode::SUCCESS);
    }
    if let ["metrics"] = words.as_slice() {
        let socket = state_dir(lab, node)?.join(telemetry::AGENT_SOCKET);
        let answer = telemetry::client::get_blocking(&socket, "/metrics", METRICS_TIMEOUT)
            .with_context(|| format!("reading the metrics of {node}'s agent (is it running?)"))?;
        if answer.status != 200 {
            bail!("{node}'s agent answered /metrics with HTTP {}: {}", answer.status, answer.body.trim());
        }
        print!("{}", answer.body);
        return Ok(ExitCode::SUCCESS);
    }
    let dir = pin_dir(lab, node)?;
    let text = match words.as_slice() {
        ["bpf", "lb", "list"] => datapath::lb_list_pinned(&dir),
        ["bpf", "ct", "list"] | ["bpf", "ct", "list", "global"] => datapath::ct_list_pinned(&dir),
        ["bpf", "nat", "list"] => datapath::nat_list_pinned(&dir),
        ["bpf", "tunnel", "list"] => datapath::tunnel_table_pinned(&dir),
        ["bpf", "l2", "list"] => {
            let names = device_names(lab, node);
            datapath::l2_list_pinned(&dir, Some(&|ifindex| names.get(&ifindex).cloned()))
        }
        _ => bail!("{USAGE}"),
    }
    .with_context(|| format!("reading the maps under {}", dir.display()))?;
    print!("{text}");
    if !text.is_empty() && !text.ends_with('\n') {
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

/// ifindex → device name in the node's network namespace (a lab host's), for `bpf l2 list`;
/// empty when the namespace is not known here.
fn device_names(lab: &str, node: &str) -> std::collections::BTreeMap<u32, String> {
    let Ok(lab) = lab::Lab::new(lab) else { return Default::default() };
    let Ok(ns) = lab.namespace_of(node) else { return Default::default() };
    let Ok(out) = std::process::Command::new("ip").args(["-n", ns, "-o", "link", "show"]).output() else {
        return Default::default();
    };
    // `3: eth1@if4: <BROADCAST,...`
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split(": ");
            let index = f.next()?.trim().parse().ok()?;
            let name = f.next()?.split('@').next()?.to_string();
            Some((index, name))
        })
        .collect()
}

/// `IP  NetworkInterface` columns, as `cilium-dbg shell -- db/show l2-announce` prints them.
fn l2_announce_table(rows: &[agent::l2_announcer::TableRow]) -> String {
    let ips: Vec<String> = rows.iter().map(|r| r.ip.to_string()).collect();
    let width = ips.iter().map(String::len).chain([2]).max().unwrap_or(2) + 3;
    let mut out = format!("{:<width$}NetworkInterface\n", "IP");
    for (ip, row) in ips.iter().zip(rows) {
        out.push_str(&format!("{ip:<width$}{}\n", row.interface));
    }
    out
}

#[cfg(test)]
mod tests {
    use agent::l2_announcer::TableRow;

    use super::*;

    #[test]
    fn l2_announce_reads_like_the_guide() {
        let rows = [TableRow { ip: "192.168.10.241".parse().unwrap(), interface: "eth1".into(), origins: vec![] }];
        assert_eq!(l2_announce_table(&rows), "IP               NetworkInterface\n192.168.10.241   eth1\n");
        assert_eq!(l2_announce_table(&[]), "IP   NetworkInterface\n");
    }
}
