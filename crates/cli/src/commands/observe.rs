//! `cilia observe`: the cluster's flows, as `hubble observe` prints them.
//!
//! Each node's agent serves Hubble's Observer API on a unix socket in its state directory
//! (`/run/cilia/lab/<lab>/nodes/<node>/hubble.sock`) besides TCP 4244 on the node's address. The
//! command reads the sockets, so it reaches every node from the root namespace without sending a
//! packet to a lab address. Filters are Hubble's, evaluated by each node's server; the nodes'
//! answers are merged in time order (`--last N` keeps the latest N of all nodes, `--first N` the
//! earliest; `--follow` holds each flow for a short window so that a slower node's earlier flow
//! still prints first).
//!
//! `--not` negates the next filter flag, as Hubble's: clap gives each flag's values apart, so
//! [`negated_filters`] reads the positions of the command line to tell which values followed a
//! `--not`.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use chrono::Utc;
use clap::{ArgAction, ArgMatches, Args, ValueEnum};
use flow::Flow;
use flow::client::{FlowsEvent, FlowsQuery, ObserverClient};
use flow::filter_flags::FilterFlags;
use flow::merge::{ReorderBuffer, merge_first, merge_last};
use flow::time_spec::parse_time_spec;
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
    /// Hubble's table: TIMESTAMP SOURCE DESTINATION TYPE VERDICT SUMMARY (not with --follow).
    Table,
}

/// The filter flags `--not` can negate, by their clap ids.
const FILTER_ARGS: &[&str] = &[
    "namespace",
    "from_namespace",
    "to_namespace",
    "pod",
    "from_pod",
    "to_pod",
    "label",
    "from_label",
    "to_label",
    "ip",
    "from_ip",
    "to_ip",
    "protocol",
    "port",
    "verdict",
    "node",
    "event_type",
];

/// Which values of the filter flags followed a `--not`: (clap id, the value's place among that
/// flag's values).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Negated(HashSet<(&'static str, usize)>);

/// Reads `--not` from the parsed command line: each negates the filter flag right after it.
/// `--not --not` and a `--not` with no filter after it are errors, as in Hubble.
pub fn negated_filters(matches: &ArgMatches) -> Result<Negated, String> {
    let nots: Vec<usize> = matches.indices_of("not").map(Iterator::collect).unwrap_or_default();
    if nots.is_empty() {
        return Ok(Negated::default());
    }
    // (position on the command line, flag, place among the flag's values)
    let mut values: Vec<(usize, &'static str, usize)> = Vec::new();
    for id in FILTER_ARGS {
        if let Some(indices) = matches.indices_of(id) {
            values.extend(indices.enumerate().map(|(n, at)| (at, *id, n)));
        }
    }
    values.sort_unstable();
    let mut negated = Negated::default();
    for (i, not) in nots.iter().enumerate() {
        let next_not = nots.get(i + 1).copied().unwrap_or(usize::MAX);
        match values.iter().find(|(at, _, _)| at > not) {
            Some((at, id, n)) if *at < next_not => {
                negated.0.insert((id, *n));
            }
            Some(_) => return Err("consecutive --not: each --not negates the one filter flag after it".into()),
            None => return Err("--not must be followed by a filter flag (--pod, --ip, --verdict, ...)".into()),
        }
    }
    Ok(negated)
}

impl Negated {
    /// `values` of flag `id` split into the plain ones and the negated ones.
    fn split(&self, id: &'static str, values: &[String]) -> (Vec<String>, Vec<String>) {
        let mut plain = Vec::new();
        let mut negated = Vec::new();
        for (n, v) in values.iter().enumerate() {
            if self.0.contains(&(id, n)) { negated.push(v.clone()) } else { plain.push(v.clone()) }
        }
        (plain, negated)
    }
}

#[derive(Args, Debug)]
pub struct ObserveArgs {
    /// Flows from or to pods in this namespace; all namespaces when not given (also taken
    /// before the verb: `cilia -n kube-system observe`).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Flows from pods in this namespace.
    #[arg(long, value_name = "NAMESPACE")]
    pub from_namespace: Vec<String>,
    /// Flows to pods in this namespace.
    #[arg(long, value_name = "NAMESPACE")]
    pub to_namespace: Vec<String>,
    /// Negates the next filter flag: `--not --verdict FORWARDED` (Hubble's blacklist).
    // Appended once per occurrence (a count would keep one position for them all).
    #[arg(long, num_args = 0, action = ArgAction::Append, default_missing_value = "true")]
    pub not: Vec<bool>,
    /// Keep printing new flows as they come.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Print the last N flows (default 20 without --follow, none with it).
    #[arg(long, value_name = "N", conflicts_with = "first")]
    pub last: Option<u64>,
    /// Print the first N flows of the buffers (not with --follow).
    #[arg(long, value_name = "N", conflicts_with = "follow")]
    pub first: Option<u64>,
    /// Flows from this time on: RFC 3339 (2026-08-09T14:06:08Z) or a duration ago (5m, 1h30m).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Flows up to this time: RFC 3339 or a duration ago; with --follow the stream ends there.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Flows from or to pods whose name starts with this (`[namespace/]prefix`, namespace
    /// `default` when omitted).
    #[arg(long, value_name = "[NS/]POD")]
    pub pod: Vec<String>,
    /// Flows from pods whose name starts with this (`[namespace/]prefix`).
    #[arg(long, value_name = "[NS/]POD")]
    pub from_pod: Vec<String>,
    /// Flows to pods whose name starts with this (`[namespace/]prefix`).
    #[arg(long, value_name = "[NS/]POD")]
    pub to_pod: Vec<String>,
    /// Flows with this label selector on either side (`app=webpod`, `k8s:app=webpod`).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub label: Vec<String>,
    /// Flows whose source has this label selector.
    #[arg(long, value_name = "SELECTOR")]
    pub from_label: Vec<String>,
    /// Flows whose destination has this label selector.
    #[arg(long, value_name = "SELECTOR")]
    pub to_label: Vec<String>,
    /// Flows from or to this address or CIDR.
    #[arg(long, value_name = "IP")]
    pub ip: Vec<String>,
    /// Flows from this address or CIDR.
    #[arg(long, value_name = "IP")]
    pub from_ip: Vec<String>,
    /// Flows to this address or CIDR.
    #[arg(long, value_name = "IP")]
    pub to_ip: Vec<String>,
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
    /// compact (Hubble's line format), json or jsonpb (one GetFlowsResponse per line), table.
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
    /// Which filter values a `--not` negated ([`negated_filters`], filled in after parsing).
    #[arg(skip)]
    pub negated: Negated,
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
    if args.follow && args.output == Output::Table {
        bail!("-o table cannot be combined with --follow: the table is aligned over all its rows");
    }
    let query = query(namespace, args, Utc::now()).map_err(anyhow::Error::msg)?;
    let targets = targets(lab_name, args)?;
    let printer = Printer { output: args.output, print_node_name: args.print_node_name };
    if args.follow { follow(targets, query, printer).await } else { history(targets, query, printer).await }
}

/// The `GetFlows` request the flags describe (`now` for relative `--since`/`--until`).
fn query(namespace: Option<&str>, args: &ObserveArgs, now: chrono::DateTime<Utc>) -> Result<FlowsQuery, String> {
    let neg = &args.negated;
    // `-n` after the verb, else before it.
    let namespaces: Vec<String> = args.namespace.clone().or(namespace.map(str::to_string)).into_iter().collect();
    let mut allowed = FilterFlags::default();
    let mut denied = FilterFlags::default();
    for (id, values, allow, deny) in [
        ("namespace", &namespaces, &mut allowed.namespaces, &mut denied.namespaces),
        ("from_namespace", &args.from_namespace, &mut allowed.from_namespaces, &mut denied.from_namespaces),
        ("to_namespace", &args.to_namespace, &mut allowed.to_namespaces, &mut denied.to_namespaces),
        ("pod", &args.pod, &mut allowed.pods, &mut denied.pods),
        ("from_pod", &args.from_pod, &mut allowed.from_pods, &mut denied.from_pods),
        ("to_pod", &args.to_pod, &mut allowed.to_pods, &mut denied.to_pods),
        ("label", &args.label, &mut allowed.labels, &mut denied.labels),
        ("from_label", &args.from_label, &mut allowed.from_labels, &mut denied.from_labels),
        ("to_label", &args.to_label, &mut allowed.to_labels, &mut denied.to_labels),
        ("ip", &args.ip, &mut allowed.ips, &mut denied.ips),
        ("from_ip", &args.from_ip, &mut allowed.from_ips, &mut denied.from_ips),
        ("to_ip", &args.to_ip, &mut allowed.to_ips, &mut denied.to_ips),
        ("protocol", &args.protocol, &mut allowed.protocols, &mut denied.protocols),
        ("port", &args.port, &mut allowed.ports, &mut denied.ports),
        ("verdict", &args.verdict, &mut allowed.verdicts, &mut denied.verdicts),
        ("node", &args.node, &mut allowed.nodes, &mut denied.nodes),
        ("event_type", &args.event_type, &mut allowed.types, &mut denied.types),
    ] {
        (*allow, *deny) = neg.split(id, values);
    }
    let (whitelist, blacklist) = FilterFlags::request_filters(&allowed, &denied)?;
    let since = args.since.as_deref().map(|s| parse_time_spec(s, now)).transpose()?;
    let until = args.until.as_deref().map(|s| parse_time_spec(s, now)).transpose()?;
    if let (Some(s), Some(u)) = (since, until)
        && s > u
    {
        return Err(format!("--since {s} is after --until {u}"));
    }
    // Hubble's defaults: the last 20 flows, unless following, bounded by time or asking for the
    // first ones; with a time bound and no count, all flows within it.
    let (number, first) = match (args.first, args.last) {
        (Some(n), _) => (n, true),
        (None, Some(n)) => (n, false),
        (None, None) if args.follow || since.is_some() || until.is_some() => (0, false),
        (None, None) => (DEFAULT_LAST, false),
    };
    Ok(FlowsQuery { number, first, follow: args.follow, whitelist, blacklist, since, until })
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
    /// One flow as a line; tables are printed whole by [`Printer::flows`].
    fn flow(&self, out: &mut impl std::io::Write, flow: &Flow) -> std::io::Result<()> {
        match self.output {
            Output::Compact | Output::Table => flow::compact::write_compact_line(out, flow, self.print_node_name),
            Output::Json | Output::Jsonpb => writeln!(out, "{}", flow::json::flow_response(flow)),
        }
    }

    /// Flows that are all there is (no follow).
    fn flows(&self, out: &mut impl std::io::Write, flows: &[Flow]) -> std::io::Result<()> {
        if self.output == Output::Table {
            return out.write_all(flow::table::table(flows, self.print_node_name).as_bytes());
        }
        for flow in flows {
            self.flow(out, flow)?;
        }
        Ok(())
    }

    /// Lost events print in the stream, as Hubble prints them: never silent.
    fn lost(&self, out: &mut impl std::io::Write, node: &str, source: i32, count: u64) -> std::io::Result<()> {
        let source_name = flow::proto::flow::LostEventSource::try_from(source)
            .map(|s| s.as_str_name())
            .unwrap_or("UNKNOWN_LOST_EVENT_SOURCE");
        match self.output {
            Output::Compact | Output::Table => writeln!(out, "EVENTS LOST: {source_name} ({node}) {count}"),
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
async fn ask_all(targets: &[(String, Target)], query: &FlowsQuery) -> (Vec<Flow>, Vec<Lost>, Vec<String>, usize) {
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
    let number = usize::try_from(query.number).ok().filter(|n| *n > 0);
    let merged = match number {
        Some(n) if query.first => merge_first(per_node, n),
        _ => merge_last(per_node, number),
    };
    (merged, lost, failed, answered)
}

async fn history(targets: Vec<(String, Target)>, query: FlowsQuery, printer: Printer) -> Result<ExitCode> {
    let (flows, lost, failed, answered) = ask_all(&targets, &query).await;
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
    printer.flows(&mut out, &flows)?;
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

async fn follow(targets: Vec<(String, Target)>, query: FlowsQuery, printer: Printer) -> Result<ExitCode> {
    let last = query.number;
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
        let (flows, lost, failed, _) = ask_all(&followed, &history_query).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory as _, FromArgMatches as _, Parser};

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        observe: ObserveArgs,
    }

    fn parse(args: &[&str]) -> Result<ObserveArgs, String> {
        let matches = Cli::command().try_get_matches_from(std::iter::once("observe").chain(args.iter().copied()));
        let matches = matches.map_err(|e| e.to_string())?;
        let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
        cli.observe.negated = negated_filters(&matches)?;
        Ok(cli.observe)
    }

    fn now() -> chrono::DateTime<Utc> {
        "2026-08-09T14:06:08Z".parse().unwrap()
    }

    fn query_of(args: &[&str]) -> FlowsQuery {
        query(None, &parse(args).unwrap(), now()).unwrap()
    }

    #[test]
    fn not_negates_only_the_next_filter_flag() {
        let q = query_of(&["--pod", "curl-pod", "--not", "--verdict", "DROPPED", "--verdict", "ERROR"]);
        assert_eq!(q.whitelist.len(), 2, "{q:?}");
        assert!(q.whitelist.iter().all(|f| f.verdict == [flow::Verdict::Error]), "{q:?}");
        assert_eq!(q.blacklist.len(), 1, "{q:?}");
        assert_eq!(q.blacklist[0].verdict, [flow::Verdict::Dropped]);
        // Both sides of `--pod` go to the blacklist.
        let q = query_of(&["--not", "--pod", "curl-pod", "--from-ip", "10.0.0.1"]);
        assert_eq!(q.blacklist.len(), 2, "{q:?}");
        assert_eq!(q.blacklist[0].source_pod, ["default/curl-pod"]);
        assert_eq!(q.blacklist[1].destination_pod, ["default/curl-pod"]);
        assert_eq!(q.whitelist.len(), 1);
        assert_eq!(q.whitelist[0].source_ip, ["10.0.0.1"]);
        // `--not -n x` and the `=` form.
        let q = query_of(&["--not", "-n", "kube-system", "--not", "--to-pod=webpod"]);
        assert!(q.whitelist.is_empty(), "{q:?}");
        assert_eq!(q.blacklist[0].source_pod, ["kube-system/"]);
        assert!(q.blacklist.iter().all(|f| f.destination_pod.contains(&"default/webpod".to_string())), "{q:?}");
    }

    #[test]
    fn not_without_a_filter_after_it_is_an_error() {
        assert!(parse(&["--not"]).unwrap_err().contains("followed by a filter"));
        assert!(parse(&["--pod", "a", "--not"]).unwrap_err().contains("followed by a filter"));
        assert!(parse(&["--not", "--not", "--pod", "a"]).unwrap_err().contains("consecutive"));
        assert!(parse(&["--not", "-f", "--pod", "a"]).is_ok(), "a non-filter flag in between is skipped");
    }

    #[test]
    fn from_and_to_flags_fill_one_side_of_every_filter() {
        let q =
            query_of(&["--from-pod", "curl-pod", "--to-namespace", "kube-system", "--to-label", "k8s-app=kube-dns"]);
        assert_eq!(q.whitelist.len(), 1, "one-sided flags give one filter: {q:?}");
        let f = &q.whitelist[0];
        assert_eq!(f.source_pod, ["default/curl-pod"]);
        assert_eq!(f.destination_pod, ["kube-system/"]);
        assert_eq!(f.destination_label, ["k8s-app=kube-dns"]);
        let q = query_of(&["--from-namespace", "default", "--from-label", "app=curl", "--to-ip", "10.96.0.0/12"]);
        assert_eq!(q.whitelist[0].source_pod, ["default/"]);
        assert_eq!(q.whitelist[0].source_label, ["app=curl"]);
        assert_eq!(q.whitelist[0].destination_ip, ["10.96.0.0/12"]);
        let q = query_of(&["--ip", "10.244.1.5"]);
        assert_eq!(q.whitelist.len(), 2);
        assert_eq!(q.whitelist[0].source_ip, ["10.244.1.5"]);
        assert_eq!(q.whitelist[1].destination_ip, ["10.244.1.5"]);
        assert!(query(None, &parse(&["--from-ip", "10.0.0.300"]).unwrap(), now()).is_err());
    }

    #[test]
    fn first_since_until_map_to_the_request() {
        let q = query_of(&["--first", "5"]);
        assert_eq!((q.number, q.first, q.follow), (5, true, false));
        assert_eq!(query_of(&[]).number, DEFAULT_LAST);
        assert_eq!(query_of(&["-f"]).number, 0);
        let q = query_of(&["--since", "5m", "--until", "2026-08-09T14:05:00Z"]);
        assert_eq!(q.since.unwrap().to_rfc3339(), "2026-08-09T14:01:08+00:00");
        assert_eq!(q.until.unwrap().to_rfc3339(), "2026-08-09T14:05:00+00:00");
        assert_eq!(q.number, 0, "a time bound without a count asks for all flows within it");
        assert_eq!(query_of(&["--since", "1h", "--last", "3"]).number, 3);
        assert!(parse(&["--first", "5", "-f"]).is_err());
        assert!(parse(&["--first", "5", "--last", "2"]).is_err());
        assert!(query(None, &parse(&["--since", "yesterday"]).unwrap(), now()).is_err());
        assert!(query(None, &parse(&["--since", "1m", "--until", "1h"]).unwrap(), now()).is_err());
    }
}
