//! `cilia observe`: the cluster's flows, as `hubble observe` prints them.
//!
//! Each node's agent serves Hubble's Observer API on a unix socket in its state directory
//! (`/run/cilia/lab/<lab>/nodes/<node>/hubble.sock`) besides TCP 4244 on the node's address. The
//! command reads the sockets, so it reaches every node from the root namespace without sending a
//! packet to a lab address. Filters are Hubble's, evaluated by each node's server; the nodes'
//! answers are merged in time order (`--last N` keeps the latest N of all nodes; `--follow` holds
//! each flow for a short window so that a slower node's earlier flow still prints first).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use chrono::Utc;
use clap::{Args, ValueEnum};
use flow::Flow;
use flow::client::{FlowsEvent, FlowsQuery, ObserverClient};
use flow::filter_flags::FilterFlags;
use flow::merge::{ReorderBuffer, merge_last};
use futures::StreamExt;
use tokio::sync::mpsc;

/// How long a followed flow waits for earlier flows from other nodes before it prints.
const REORDER_WINDOW: Duration = Duration::from_millis(300);

/// Hubble's default `--last` when not following.
const DEFAULT_LAST: u64 = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Compact,
    Json,
    Jsonpb,
}

#[derive(Args, Debug)]
pub struct ObserveArgs {
    /// Flows from or to pods in this namespace; all namespaces when not given (also taken
    /// before the verb: `cilia -n kube-system observe`).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Keep printing new flows as they come.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Print the last N flows (default 20 without --follow, none with it).
    #[arg(long, value_name = "N")]
    pub last: Option<u64>,
    /// Flows from or to pods whose name starts with this (`[namespace/]prefix`, namespace
    /// `default` when omitted).
    #[arg(long, value_name = "[NS/]POD")]
    pub pod: Vec<String>,
    /// Flows with this label selector on either side (`app=webpod`, `k8s:app=webpod`).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub label: Vec<String>,
    /// tcp, udp, sctp, icmp, icmpv4, icmpv6.
    #[arg(long)]
    pub protocol: Vec<String>,
    /// Flows from or to this L4 port.
    #[arg(long)]
    pub port: Vec<String>,
    /// FORWARDED, DROPPED, ...
    #[arg(long)]
    pub verdict: Vec<String>,
    /// Flows seen on this node (a name or a `*` pattern); only those nodes are asked.
    #[arg(long, alias = "node-name", value_name = "NODE")]
    pub node: Vec<String>,
    /// Event type `TYPE[:SUBTYPE]`: trace, drop, trace:to-overlay, ...
    #[arg(short = 't', long = "type", value_name = "TYPE")]
    pub event_type: Vec<String>,
    /// compact (Hubble's line format), json or jsonpb (one GetFlowsResponse per line).
    #[arg(short = 'o', long, value_enum, default_value = "compact")]
    pub output: Output,
    /// Add ` [node]` after the time.
    #[arg(long)]
    pub print_node_name: bool,
    /// One Observer API to ask instead of the lab's nodes: `unix:///path/hubble.sock` or
    /// `host:port` (Hubble's `--server`).
    #[arg(long, value_name = "ADDR")]
    pub server: Option<String>,
    /// For a `host:port` server: the CA that signed its certificate (Hubble's flag). The nodes'
    /// ports take only TLS with a client certificate; by default the lab's CA and its admin
    /// certificate are used.
    #[arg(long, value_name = "FILE")]
    pub tls_ca_cert_files: Option<PathBuf>,
    /// This client's certificate, signed by the cluster's CA.
    #[arg(long, value_name = "FILE")]
    pub tls_client_cert_file: Option<PathBuf>,
    /// This client's key.
    #[arg(long, value_name = "FILE")]
    pub tls_client_key_file: Option<PathBuf>,
}

/// Where one node's Observer API answers.
#[derive(Debug, Clone)]
enum Target {
    Unix(PathBuf),
    /// A node's address, over TLS with these files.
    Tls(String, telemetry::tls::TlsFiles),
}

impl Target {
    async fn connect(&self) -> Result<ObserverClient, String> {
        match self {
            Target::Unix(path) => ObserverClient::connect_unix(path).await,
            Target::Tls(addr, files) => {
                let config = telemetry::tls::client_config(files, b"h2").map_err(|e| e.to_string())?;
                ObserverClient::connect_tls(addr, config).await
            }
        }
    }
}

/// The TLS files for a `host:port` server: the flags, else the lab's CA and admin certificate.
fn tls_files(lab_name: &str, args: &ObserveArgs) -> Result<telemetry::tls::TlsFiles> {
    let pki = lab::Lab::new(lab_name)?.paths().pki();
    let admin = pki.client("admin");
    let files = telemetry::tls::TlsFiles {
        ca: args.tls_ca_cert_files.clone().unwrap_or_else(|| pki.ca()),
        cert: args.tls_client_cert_file.clone().unwrap_or(admin.cert),
        key: args.tls_client_key_file.clone().unwrap_or(admin.key),
    };
    for (flag, path) in [
        ("--tls-ca-cert-files", &files.ca),
        ("--tls-client-cert-file", &files.cert),
        ("--tls-client-key-file", &files.key),
    ] {
        if !path.exists() {
            anyhow::bail!(
                "{} does not exist: the server takes only TLS with a client certificate; give {flag}",
                path.display()
            );
        }
    }
    Ok(files)
}

/// `namespace` is the `-n` given before the verb; one after it wins. Only a given namespace
/// filters flows, as Hubble's.
pub async fn run(lab_name: &str, namespace: Option<&str>, args: &ObserveArgs) -> Result<ExitCode> {
    let namespace = args.namespace.as_deref().or(namespace);
    let flags = FilterFlags {
        pods: args.pod.clone(),
        namespaces: namespace.map(str::to_string).into_iter().collect(),
        labels: args.label.clone(),
        protocols: args.protocol.clone(),
        ports: args.port.clone(),
        verdicts: args.verdict.clone(),
        nodes: args.node.clone(),
        types: args.event_type.clone(),
    };
    let whitelist = flags.to_filters().map_err(anyhow::Error::msg)?;
    let last = args.last.unwrap_or(if args.follow { 0 } else { DEFAULT_LAST });
    let query = FlowsQuery { number: last, follow: args.follow, whitelist, ..FlowsQuery::default() };
    let targets = targets(lab_name, args)?;
    let printer = Printer { output: args.output, print_node_name: args.print_node_name };
    if args.follow { follow(targets, query, last, printer).await } else { history(targets, query, last, printer).await }
}

/// The nodes to ask: `--server`, or every lab node that `--node` does not rule out.
fn targets(lab_name: &str, args: &ObserveArgs) -> Result<Vec<(String, Target)>> {
    if let Some(server) = &args.server {
        let target = match server.strip_prefix("unix://") {
            Some(path) => Target::Unix(PathBuf::from(path)),
            None => Target::Tls(server.clone(), tls_files(lab_name, args)?),
        };
        return Ok(vec![(server.clone(), target)]);
    }
    let lab = lab::Lab::new(lab_name)?;
    let targets: Vec<(String, Target)> = lab::topology::nodes(lab.topology())
        .into_iter()
        .filter(|n| args.node.is_empty() || args.node.iter().any(|p| flow::filter::glob_matches(p, &n.name)))
        .map(|n| {
            let socket = flow::server::socket_path(&lab.paths().node_dir(&n.name));
            (n.name, Target::Unix(socket))
        })
        .collect();
    if targets.is_empty() {
        bail!("no node of lab {lab_name} matches --node {}", args.node.join(","));
    }
    Ok(targets)
}

#[derive(Debug, Clone, Copy)]
struct Printer {
    output: Output,
    print_node_name: bool,
}

impl Printer {
    fn flow(&self, out: &mut impl std::io::Write, flow: &Flow) -> std::io::Result<()> {
        match self.output {
            Output::Compact => writeln!(out, "{}", flow::compact::compact_line(flow, self.print_node_name)),
            Output::Json | Output::Jsonpb => writeln!(out, "{}", flow::json::flow_response(flow)),
        }
    }

    /// Lost events print in the stream, as Hubble prints them: never silent.
    fn lost(&self, out: &mut impl std::io::Write, node: &str, source: i32, count: u64) -> std::io::Result<()> {
        let source_name = flow::proto::flow::LostEventSource::try_from(source)
            .map(|s| s.as_str_name())
            .unwrap_or("UNKNOWN_LOST_EVENT_SOURCE");
        match self.output {
            Output::Compact => writeln!(out, "EVENTS LOST: {source_name} ({node}) {count}"),
            Output::Json | Output::Jsonpb => {
                let v = serde_json::json!({
                    "lost_events": { "source": source_name, "num_events_lost": count },
                    "node_name": node,
                    "time": flow::json::timestamp(&Utc::now()),
                });
                writeln!(out, "{v}")
            }
        }
    }
}

/// Losses one node reported: (node, Hubble's `LostEventSource` number, count).
type Lost = (String, i32, u64);

/// One node's answer to a query that ends (no follow).
async fn ask(node: &str, target: &Target, query: &FlowsQuery) -> Result<(Vec<Flow>, Vec<Lost>), String> {
    let answer = async {
        let mut client = target.connect().await?;
        let mut stream = Box::pin(client.get_flows(query).await?);
        let mut flows = Vec::new();
        let mut lost = Vec::new();
        while let Some(event) = stream.next().await {
            match event? {
                FlowsEvent::Flow(f) => flows.push(f),
                FlowsEvent::Lost { node, source, count } => lost.push((node, source, count)),
            }
        }
        Ok::<_, String>((flows, lost))
    };
    answer.await.map_err(|e| format!("{node}: {e}"))
}

/// Every node's answer merged in time order; the nodes that failed, by error.
async fn ask_all(
    targets: &[(String, Target)],
    query: &FlowsQuery,
    last: u64,
) -> (Vec<Flow>, Vec<Lost>, Vec<String>, usize) {
    let answers = futures::future::join_all(targets.iter().map(|(node, target)| ask(node, target, query))).await;
    let mut per_node = Vec::new();
    let mut lost = Vec::new();
    let mut failed = Vec::new();
    for answer in answers {
        match answer {
            Ok((flows, l)) => {
                per_node.push(flows);
                lost.extend(l);
            }
            Err(e) => failed.push(e),
        }
    }
    let answered = per_node.len();
    let number = usize::try_from(last).ok().filter(|n| *n > 0);
    (merge_last(per_node, number), lost, failed, answered)
}

async fn history(targets: Vec<(String, Target)>, query: FlowsQuery, last: u64, printer: Printer) -> Result<ExitCode> {
    let (flows, lost, failed, answered) = ask_all(&targets, &query, last).await;
    if answered == 0 {
        bail!("no node answered: {}", failed.join("; "));
    }
    for e in &failed {
        eprintln!("warning: {e}");
    }
    let mut out = std::io::BufWriter::with_capacity(OUT_BUFFER, std::io::stdout().lock());
    for (node, source, count) in lost {
        printer.lost(&mut out, &node, source, count)?;
    }
    for flow in &flows {
        printer.flow(&mut out, flow)?;
    }
    out.flush()?;
    Ok(if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// One node's stream, as the follow loop sees it. (Nearly every item is a flow: not boxed.)
#[allow(clippy::large_enum_variant)]
enum NodeEvent {
    Event(FlowsEvent),
    /// The node's stream failed or ended.
    Gone(String),
}

/// Lines are written in batches: stdout alone writes each line with a system call of its own, and
/// a follower prints tens of thousands a second.
const OUT_BUFFER: usize = 64 * 1024;

async fn follow(targets: Vec<(String, Target)>, query: FlowsQuery, last: u64, printer: Printer) -> Result<ExitCode> {
    // Subscribe first (no history), then read the history: a flow in both is printed once.
    let live_query = FlowsQuery { number: 0, ..query.clone() };
    let (tx, mut rx) = mpsc::channel::<NodeEvent>(4096);
    let mut followed = Vec::new();
    let mut failed = Vec::new();
    for (node, target) in &targets {
        let subscribed = async {
            let mut client = target.connect().await?;
            client.get_flows(&live_query).await.map(Box::pin)
        };
        let mut stream = match subscribed.await {
            Ok(s) => s,
            Err(e) => {
                failed.push(format!("{node}: {e}"));
                continue;
            }
        };
        followed.push((node.clone(), target.clone()));
        let tx = tx.clone();
        let node = node.clone();
        tokio::spawn(async move {
            while let Some(event) = stream.next().await {
                let msg = match event {
                    Ok(e) => NodeEvent::Event(e),
                    Err(e) => NodeEvent::Gone(format!("{node}: {e}")),
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(NodeEvent::Gone(format!("{node}: the stream ended"))).await;
        });
    }
    drop(tx);
    for e in &failed {
        eprintln!("warning: {e}");
    }
    if followed.is_empty() {
        bail!("no node answered: {}", failed.join("; "));
    }
    let out = std::io::stdout();
    let history = if last > 0 {
        let history_query = FlowsQuery { follow: false, ..query };
        let (flows, lost, failed, _) = ask_all(&followed, &history_query, last).await;
        for e in &failed {
            eprintln!("warning: {e}");
        }
        let mut lock = std::io::BufWriter::with_capacity(OUT_BUFFER, out.lock());
        for (node, source, count) in lost {
            printer.lost(&mut lock, &node, source, count)?;
        }
        for f in &flows {
            printer.flow(&mut lock, f)?;
        }
        lock.flush()?;
        flows
    } else {
        Vec::new()
    };
    let printed_until = history.last().map(|f| f.time);
    let mut buffer = ReorderBuffer::new(REORDER_WINDOW);
    let mut newest = Utc::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(NodeEvent::Event(FlowsEvent::Flow(f))) => {
                    let printed = printed_until.is_some_and(|t| f.time <= t) && history.contains(&f);
                    if !printed {
                        newest = newest.max(f.time);
                        buffer.push(f);
                    }
                }
                Some(NodeEvent::Event(FlowsEvent::Lost { node, source, count })) => {
                    printer.lost(&mut out.lock(), &node, source, count).context("writing to stdout")?;
                }
                Some(NodeEvent::Gone(e)) => eprintln!("warning: {e}"),
                None => break,
            },
            _ = tick.tick() => {
                let mut lock = std::io::BufWriter::with_capacity(OUT_BUFFER, out.lock());
                for f in buffer.pop_ready(Utc::now().max(newest)) {
                    printer.flow(&mut lock, &f)?;
                }
                lock.flush()?;
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let mut lock = std::io::BufWriter::with_capacity(OUT_BUFFER, out.lock());
    for f in buffer.drain() {
        printer.flow(&mut lock, &f)?;
    }
    lock.flush()?;
    Ok(ExitCode::SUCCESS)
}
