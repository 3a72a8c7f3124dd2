//! `cilia dbg NODE bpf lb list | bpf ct list [global] | bpf nat list | bpf tunnel list`: a node's
//! datapath state, printed like `cilium-dbg`, read straight from the maps pinned under the node's
//! bpffs directory (`/sys/fs/bpf/cilia/<lab>/<node>/`). Nothing is loaded or attached, and the
//! agent need not run.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context as _, Result, bail};

const USAGE: &str = "usage: cilia dbg NODE bpf lb list | bpf ct list [global] | bpf nat list | bpf tunnel list";

/// The pin directory of `node`: the lab's when the lab has one for it, else the agent's default.
fn pin_dir(lab: &str, node: &str) -> Result<PathBuf> {
    let lab = lab::Lab::new(lab)?;
    let in_lab = lab.paths().bpf_dir().join(node);
    if in_lab.exists() {
        return Ok(in_lab);
    }
    let standalone = PathBuf::from("/sys/fs/bpf/cilia").join(node);
    if standalone.join(datapath::abi::MAP_SERVICES).exists() {
        return Ok(standalone);
    }
    bail!(
        "no datapath pinned for node {node} (looked in {} and {}): is its agent running with kube-proxy replacement?",
        in_lab.display(),
        standalone.display()
    )
}

pub fn run(lab: &str, node: &str, args: &[String]) -> Result<ExitCode> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let dir = pin_dir(lab, node)?;
    let text = match words.as_slice() {
        ["bpf", "lb", "list"] => datapath::lb_list_pinned(&dir),
        ["bpf", "ct", "list"] | ["bpf", "ct", "list", "global"] => datapath::ct_list_pinned(&dir),
        ["bpf", "nat", "list"] => datapath::nat_list_pinned(&dir),
        ["bpf", "tunnel", "list"] => datapath::tunnel_table_pinned(&dir),
        _ => bail!("{USAGE}"),
    }
    .with_context(|| format!("reading the maps under {}", dir.display()))?;
    print!("{text}");
    if !text.is_empty() && !text.ends_with('\n') {
        println!();
    }
    Ok(ExitCode::SUCCESS)
}
