//! `cilia`: the one binary of the cluster.
//!
//! - kubectl's verbs over the datastore: `get` (with `-w`), `apply`, `patch`, `label`, `annotate`,
//!   `delete`, and `exec` into a pod;
//! - the cluster's processes: `operator`, `agent` (one per node) and `dns` (one per node);
//! - inspection: `status` (as `cilium status`), `observe` (flows, as `hubble observe`), `dbg` (a
//!   node's BPF maps, state tables and metrics, as `cilium-dbg`), `config` (the stored
//!   cilium-config);
//! - `lab`: the guide's environment in network namespaces on this machine, and its guide replay;
//! - about the command itself: `completion`, `man`, `version`.
//!
//! Logging goes to stderr, filtered by `CILIA_LOG` (an `EnvFilter`: `info`,
//! `agent=debug,warn`; default `warn`), as text or, with `CILIA_LOG_FORMAT=json`, one JSON object
//! per line.

mod commands;
mod context;
mod guide;
mod merge;
mod output;

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::{
    commands::{
        get::{Format, GetArgs},
        patch::PatchType,
    },
    context::{Ctx, NamespaceArg},
};

/// The heading of the options every command takes, after each command's own.
const GLOBAL: &str = "Global options";

#[derive(Parser)]
#[command(
    name = "cilia",
    version = commands::version::VERSION,
    about = "Cluster networking with an eBPF datapath: pod routing, service load balancing, LB-IPAM, \
             L2 announcements, flows"
)]
struct Cli {
    /// Datastore URL: etcd (`unix:///run/cilia/lab/cilia/etcd.sock`, `https://host:2379`) or a
    /// Kubernetes API server (`kubeconfig:///path/to/kubeconfig`, or `kubernetes://` in a pod, as its
    /// service account). Defaults to the running lab's.
    #[arg(long, global = true, help_heading = GLOBAL, env = "CILIA_DATASTORE")]
    datastore: Option<String>,
    /// For an https:// datastore: the CA certificate that signed etcd's (PEM).
    #[arg(long, global = true, help_heading = GLOBAL, env = "CILIA_DATASTORE_CA")]
    datastore_ca: Option<std::path::PathBuf>,
    /// For an https:// datastore: this client's certificate (PEM); etcd requires one.
    #[arg(long, global = true, help_heading = GLOBAL, env = "CILIA_DATASTORE_CERT")]
    datastore_cert: Option<std::path::PathBuf>,
    /// For an https:// datastore: the client certificate's key (PEM).
    #[arg(long, global = true, help_heading = GLOBAL, env = "CILIA_DATASTORE_KEY")]
    datastore_key: Option<std::path::PathBuf>,
    /// The lab whose datastore and hosts are used.
    #[arg(long, global = true, help_heading = GLOBAL, env = "CILIA_LAB", default_value = lab::DEFAULT_LAB)]
    lab: String,
    /// The cluster's service CIDR: the operator allocates cluster IPs from it, and writes refuse
    /// Services whose cluster IPs lie outside it (kube-apiserver's --service-cluster-ip-range).
    #[arg(long, global = true, help_heading = GLOBAL, env = "CILIA_SERVICE_CIDR", default_value = api::validate::DEFAULT_SERVICE_CIDR)]
    service_cidr: String,
    #[command(flatten)]
    namespace: NamespaceArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create or update objects from manifests (`-f FILE`, `-f -` for stdin).
    Apply {
        /// A manifest file, a directory of them, or `-` for stdin; repeatable.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
        #[command(flatten)]
        namespace: NamespaceArg,
    },
    /// Show objects: `get KIND [NAME...]`, `get KIND/NAME`.
    Get(GetCmd),
    /// Change one object with a JSON merge patch (`patch svc webpod -p
    /// '{"spec":{"type":"LoadBalancer"}}'`) or a JSON patch (`--type json -p '[{"op": ...}]'`).
    Patch {
        /// The object: `KIND NAME` or `KIND/NAME`.
        #[arg(value_name = "RESOURCE")]
        resource: Vec<String>,
        /// The patch, as JSON (or YAML).
        #[arg(short = 'p', long)]
        patch: String,
        /// merge: a JSON merge patch (RFC 7386); json: a JSON patch (RFC 6902), a list of
        /// operations. Kubernetes' strategic merge patch is not supported.
        #[arg(long = "type", value_name = "TYPE", default_value = "merge", value_parser = PatchType::value_parser())]
        patch_type: PatchType,
        #[command(flatten)]
        namespace: NamespaceArg,
    },
    /// Set (`k=v`) or remove (`k-`) labels.
    Label {
        /// The object (`KIND NAME` or `KIND/NAME`), then the changes: `key=value` sets, `key-`
        /// removes.
        #[arg(value_name = "RESOURCE CHANGE")]
        args: Vec<String>,
        /// Allow changing a label that already has a value.
        #[arg(long)]
        overwrite: bool,
        #[command(flatten)]
        namespace: NamespaceArg,
    },
    /// Set (`k=v`) or remove (`k-`) annotations.
    Annotate {
        /// The object (`KIND NAME` or `KIND/NAME`), then the changes: `key=value` sets, `key-`
        /// removes.
        #[arg(value_name = "RESOURCE CHANGE")]
        args: Vec<String>,
        /// Allow changing an annotation that already has a value.
        #[arg(long)]
        overwrite: bool,
        #[command(flatten)]
        namespace: NamespaceArg,
    },
    /// Delete objects by name or by the manifests that created them.
    Delete {
        /// The objects: `KIND NAME...` or `KIND/NAME...`.
        #[arg(value_name = "RESOURCE")]
        resource: Vec<String>,
        /// Delete the objects this manifest file (a directory of them, `-` for stdin) describes;
        /// repeatable.
        #[arg(short = 'f', long = "filename")]
        files: Vec<String>,
        /// Succeed when an object does not exist.
        #[arg(long)]
        ignore_not_found: bool,
        /// Seconds a pod gets to stop; 0 removes it at once (kubectl's `--grace-period=0
        /// --force`). By default each pod's own `terminationGracePeriodSeconds`.
        #[arg(long, allow_negative_numbers = true, default_value_t = -1)]
        grace_period: i64,
        #[command(flatten)]
        namespace: NamespaceArg,
    },
    /// Build and run the guide's environment in network namespaces on this machine.
    #[command(subcommand)]
    Lab(LabCmd),
    /// Run a command inside a pod: `cilia exec curl-pod -- ping -c 2 172.20.2.6`.
    Exec {
        /// The pod's name.
        pod: String,
        /// Pass this command's standard input to the command in the pod.
        #[arg(short = 'i', long)]
        stdin: bool,
        /// Run the command on a terminal in the pod (with `-i`, for an interactive shell).
        #[arg(short = 't', long)]
        tty: bool,
        /// The command and its arguments, after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
        #[command(flatten)]
        namespace: NamespaceArg,
    },
    /// Inspect a node's datapath: `cilia dbg k8s-ctr bpf lb list`, `bpf ct list global`, `bpf nat list`,
    /// `bpf tunnel list`.
    Dbg {
        /// The lab node whose pinned BPF maps are read.
        node: String,
        /// The `cilium-dbg` command: `bpf lb list`, `bpf ct list global`, `bpf nat list`, `bpf
        /// tunnel list`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
    /// The stored configuration kube-system/cilium-config: `config view`, `config set k=v ...`
    /// (checked, then the operator and agents are restarted in a running lab).
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Health of the datastore, the operator, every agent, and the routing and L2 settings
    /// (`cilium status`); exit code 1 when something is unhealthy.
    Status {
        /// Poll until everything is healthy, failing after --wait-duration.
        #[arg(long)]
        wait: bool,
        /// How long --wait polls (`90s`, `5m`).
        #[arg(long, default_value = "5m", value_parser = commands::status::duration_arg)]
        wait_duration: std::time::Duration,
    },
    /// The cluster's flows in Hubble's format (`hubble observe`): `observe -f --protocol tcp --pod curl-pod`.
    Observe(Box<commands::observe::ObserveArgs>),
    /// Run the node agent (one per node): pod networking, routes, the datapath.
    Agent(commands::agent::AgentArgs),
    /// Run a node's cluster DNS (one per node, beside its agent).
    Dns(commands::dns::DnsArgs),
    /// Run the cluster-wide controllers (one leads; others stand by).
    Operator {
        /// Name in the leader lease; defaults to the host name. Cluster IPs come from
        /// `--service-cidr`.
        #[arg(long)]
        identity: Option<String>,
    },
    /// Print a shell completion script: `source <(cilia completion bash)`, `cilia completion zsh
    /// > "${fpath[1]}/_cilia"`, `cilia completion fish > ~/.config/fish/completions/cilia.fish`.
    Completion {
        /// The shell the script is for.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages: one per command into DIR (`cilia.1`, `cilia-get.1`,
    /// `cilia-lab-up.1`, ...), or without DIR cilia's own page to stdout (`cilia man | man -l -`).
    Man {
        /// Directory for the pages (`/usr/local/share/man/man1`); created when missing.
        dir: Option<std::path::PathBuf>,
    },
    /// Print the version of this binary and the commit it was built from.
    Version,
}

impl Command {
    /// The `-n` given after the verb, on the verbs that take one.
    fn namespace(&self) -> Option<&str> {
        match self {
            Command::Apply { namespace, .. }
            | Command::Patch { namespace, .. }
            | Command::Label { namespace, .. }
            | Command::Annotate { namespace, .. }
            | Command::Delete { namespace, .. }
            | Command::Exec { namespace, .. } => namespace.namespace.as_deref(),
            Command::Get(get) => get.namespace.namespace.as_deref(),
            Command::Observe(args) => args.namespace.as_deref(),
            _ => None,
        }
    }
}

#[derive(Args)]
struct GetCmd {
    /// The kind, then names (`pods`, `svc webpod`), or `KIND/NAME...`; all objects of the kind
    /// without names.
    #[arg(value_name = "RESOURCE")]
    resource: Vec<String>,
    /// List the objects of every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Only objects whose labels match this selector (`app=webpod`, `tier in (a,b)`, `!canary`).
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Only objects whose fields match (`metadata.name=webpod`, `spec.nodeName!=k8s-w1`).
    #[arg(long)]
    field_selector: Option<String>,
    /// wide, json, yaml, name, jsonpath=TEMPLATE
    #[arg(short = 'o', long)]
    output: Option<String>,
    /// Add a LABELS column.
    #[arg(long)]
    show_labels: bool,
    /// After the list, print a line for every change until interrupted (Ctrl-C).
    #[arg(short = 'w', long)]
    watch: bool,
    /// With --watch: say what each line is (ADDED, MODIFIED, DELETED) in a first column, or as a
    /// `{type, object}` event for -o json/yaml.
    #[arg(long)]
    output_watch_events: bool,
    #[command(flatten)]
    namespace: NamespaceArg,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// The effective settings, `key  value` per line (`cilium config view`).
    View {
        /// Add each key's Helm name in a third column.
        #[arg(long)]
        helm: bool,
    },
    /// Set keys by ConfigMap key or Helm name (`routing-mode=tunnel`, `--set l2announcements.enabled=true`).
    Set {
        /// `KEY=VALUE` settings, by ConfigMap key or Helm name.
        #[arg(value_name = "KEY=VALUE")]
        pairs: Vec<String>,
        /// `NAME=VALUE[,NAME=VALUE...]`, as `helm upgrade --set` takes them.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// Store only; do not restart the lab's operator and agents.
        #[arg(long)]
        no_restart: bool,
    },
}

#[derive(Subcommand)]
enum LabCmd {
    /// Create (or repair) the lab and start its processes.
    Up {
        /// Routing mode of a new lab (native, tunnel, hybrid); switches an existing lab.
        #[arg(long)]
        routing_mode: Option<String>,
        /// Where cluster objects live: `etcd` (cilia's own keyspace and controllers, the default)
        /// or `kubernetes` (kube-apiserver, kube-controller-manager and kube-scheduler on k8s-ctr,
        /// built by scripts/install-kubernetes.sh). An existing lab keeps its choice unless given.
        #[arg(long, value_name = "etcd|kubernetes")]
        control_plane: Option<lab::kubernetes::ControlPlane>,
    },
    /// Print the path of the admin kubeconfig of a lab with `--control-plane kubernetes`. It
    /// works inside k8s-ctr: `cilia lab kubectl` runs kubectl there with it.
    Kubeconfig,
    /// Run kubectl as the lab's admin inside k8s-ctr (where the guide runs it):
    /// `cilia lab kubectl -- get pods -A`.
    Kubectl {
        /// kubectl's arguments, after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Remove everything the lab made.
    Down,
    /// Hosts, addresses and processes.
    Status,
    /// Run a command inside a lab host: `cilia lab exec router -- ip route`.
    Exec {
        /// A host of the lab: a node (`k8s-ctr`, `k8s-w1`, `k8s-w0`) or the `router`.
        host: String,
        /// The command and its arguments, after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Replay the guide's steps, checking each outcome (all sections, or the ones named). The lab
    /// is first brought to the state the guide starts from, saying what was reset.
    Guide {
        /// Sections, in the guide's order: topology, native-routing, vxlan, lbipam, service-lb, l2.
        #[arg(value_name = "SECTION")]
        sections: Vec<String>,
    },
    /// Power loss of a node: its links down (the printed moment), its processes, pods and BPF
    /// state gone, held down until `lab boot`, `lab reboot` or `lab up`.
    Kill {
        /// The node to power off.
        node: String,
    },
    /// Power a killed node on again.
    Boot {
        /// The killed node.
        node: String,
        /// Also wait until its agent has joined again and its Node is Ready.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits (`90s`, `5m`).
        #[arg(long, default_value = "5m", value_parser = commands::status::duration_arg)]
        wait_duration: std::time::Duration,
    },
    /// `sudo reboot` of a node: kill, --down-for, boot; returns once its processes run again.
    Reboot {
        /// The node to reboot.
        node: String,
        /// How long the node stays down.
        #[arg(long, default_value = "2s", value_parser = commands::status::duration_arg)]
        down_for: std::time::Duration,
        /// Also wait until its agent has joined again and its Node is Ready.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits (`90s`, `5m`).
        #[arg(long, default_value = "5m", value_parser = commands::status::duration_arg)]
        wait_duration: std::time::Duration,
    },
    /// Runs the lab's process supervisor (started by `lab up`).
    #[command(hide = true)]
    Supervise,
    /// Runs one node's pod runtime (started by the supervisor in each node).
    #[command(hide = true)]
    Kubelet(commands::kubelet::KubeletArgs),
    /// Runs the lab's stand-ins for the Deployment controller and the scheduler.
    #[command(hide = true)]
    Controllers,
    /// An HTTP server answering like traefik/whoami (the lab's image for `traefik/whoami`).
    #[command(hide = true)]
    Whoami(commands::whoami::WhoamiArgs),
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let (Command::Observe(args), Some(("observe", sub))) = (&mut cli.command, matches.subcommand()) {
        match commands::observe::negated_filters(sub) {
            Ok(negated) => args.negated = negated,
            Err(e) => Cli::command().error(clap::error::ErrorKind::ArgumentConflict, e).exit(),
        }
    }
    init_logging();
    // A follower handles every flow of the cluster on one path (read, decode, order, print):
    // one thread does it without handing each flow between threads.
    let mut builder = if matches!(cli.command, Command::Observe(_)) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::from(EXIT_BROKEN_PIPE),
        Err(err) => {
            eprintln!("error: {}", error_text(&err));
            ExitCode::FAILURE
        }
    }
}

/// What the user reads when a command fails: the error, then each cause once, outermost first
/// (`reading x: cannot open y: No such file or directory`). Error types say only their own layer
/// in their message and give the cause as their `source()`, so walking the chain repeats nothing.
fn error_text(err: &anyhow::Error) -> String {
    format!("{err:#}")
}

/// The status of a process a closed pipe ended (128 + SIGPIPE), as the shell reports `head`'s
/// writers.
const EXIT_BROKEN_PIPE: u8 = 141;

/// A reader that goes away (`cilia ... | head -3`) ends the command quietly with the pipe's exit
/// status, as every Unix tool does: Rust ignores SIGPIPE, so a write to the closed stdout fails
/// with EPIPE and `println!` panics on it. The hook turns exactly that panic into exit 141.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(i32::from(EXIT_BROKEN_PIPE));
        }
        default(info);
    }));
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

/// Logs go to stderr, filtered by `CILIA_LOG` (default `warn`); `CILIA_LOG_FORMAT=json` writes one
/// JSON object per event, for log collectors.
fn init_logging() {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("CILIA_LOG").unwrap_or_else(|_| "warn".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match std::env::var("CILIA_LOG_FORMAT").as_deref() {
        Ok("json") => logs.json().init(),
        Ok("text") | Err(_) => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        Ok(other) => {
            logs.with_ansi(false).init();
            tracing::warn!("CILIA_LOG_FORMAT={other:?} is neither text nor json; writing text");
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    context::set_tls_files(context::TlsFiles {
        ca: cli.datastore_ca.clone(),
        cert: cli.datastore_cert.clone(),
        key: cli.datastore_key.clone(),
    });
    if let Command::Lab(cmd) = &cli.command
        && !matches!(cmd, LabCmd::Kubelet(_) | LabCmd::Controllers | LabCmd::Whoami(_))
    {
        return commands::lab::run(cmd_to_lab(cmd), &cli.lab, cli.datastore.as_deref()).await;
    }
    // whoami serves HTTP inside a pod and needs no datastore.
    if let Command::Lab(LabCmd::Whoami(args)) = &cli.command {
        return commands::whoami::run(args).await;
    }
    // observe reads the nodes' Observer sockets and needs no datastore.
    if let Command::Observe(args) = &cli.command {
        return commands::observe::run(&cli.lab, cli.namespace.namespace.as_deref(), args).await;
    }
    // Nor do the commands about the command itself.
    match &cli.command {
        Command::Completion { shell } => return commands::completion::run(*shell, Cli::command()),
        Command::Man { dir } => return commands::man::run(dir.as_deref(), Cli::command()),
        Command::Version => return commands::version::run(),
        _ => {}
    }
    // dbg reads pinned maps and needs no datastore.
    if let Command::Dbg { node, args } = &cli.command {
        return commands::dbg::run(&cli.lab, node, args);
    }
    let url = context::datastore_url(cli.datastore.as_deref(), &cli.lab)?;
    if let Command::Operator { identity } = &cli.command {
        return commands::operator::run(&url, identity.clone(), &cli.service_cidr).await;
    }
    let namespace = cli.command.namespace().or(cli.namespace.namespace.as_deref());
    let namespace = namespace.unwrap_or(context::DEFAULT_NAMESPACE).to_string();
    let service_cidr = cli
        .service_cidr
        .parse()
        .with_context(|| format!("--service-cidr {:?} is not an IPv4 CIDR", cli.service_cidr))?;
    let ctx = Ctx { store: context::connect(&url).await?, namespace, service_cidr };
    if let Command::Status { wait, wait_duration } = &cli.command {
        return commands::status::run(ctx.store.as_ref(), &cli.lab, wait.then_some(*wait_duration)).await;
    }
    match cli.command {
        Command::Apply { files, .. } => commands::apply::run(&ctx, &files).await?,
        Command::Get(g) => {
            let args = GetArgs {
                resource: &g.resource,
                all_namespaces: g.all_namespaces,
                selector: g.selector.as_deref(),
                field_selector: g.field_selector.as_deref(),
                output: Format::parse(g.output.as_deref())?,
                show_labels: g.show_labels,
                watch: g.watch,
                output_watch_events: g.output_watch_events,
            };
            commands::get::run(&ctx, args).await?;
        }
        Command::Patch { resource, patch, patch_type, .. } => {
            commands::patch::patch(&ctx, &resource, &patch, patch_type).await?;
        }
        Command::Label { args, overwrite, .. } => {
            commands::patch::set_metadata_map(&ctx, &args, overwrite, false).await?;
        }
        Command::Annotate { args, overwrite, .. } => {
            commands::patch::set_metadata_map(&ctx, &args, overwrite, true).await?;
        }
        Command::Delete { resource, files, ignore_not_found, grace_period, .. } => {
            let grace_period = (grace_period >= 0).then_some(grace_period);
            commands::delete::run(&ctx, &resource, &files, ignore_not_found, grace_period).await?;
        }
        Command::Exec { pod, stdin, tty, command, .. } => {
            return commands::exec::run(&ctx, &cli.lab, &pod, stdin, tty, &command).await;
        }
        Command::Config(ConfigCmd::View { helm }) => commands::config::view(ctx.store.as_ref(), helm).await?,
        Command::Config(ConfigCmd::Set { pairs, set, no_restart }) => {
            let pairs = commands::config::assignment_args(&pairs, &set);
            // Restart the lab's processes only when the datastore is the lab's own.
            let lab = lab::Lab::new(&cli.lab)?;
            let restart = !no_restart && cli.datastore.is_none() && lab.datastore_url().is_some();
            commands::config::set(ctx.store.as_ref(), &pairs, restart.then_some(&lab)).await?;
        }
        Command::Agent(args) => return commands::agent::run(ctx.store.clone(), &url, &args).await,
        Command::Dns(args) => return commands::dns::run(ctx.store.clone(), &args).await,
        Command::Lab(LabCmd::Kubelet(args)) => return commands::kubelet::run(ctx.store.clone(), &cli.lab, &args).await,
        Command::Lab(LabCmd::Controllers) => return commands::kubelet::run_controllers(ctx.store.clone()).await,
        Command::Lab(_)
        | Command::Operator { .. }
        | Command::Dbg { .. }
        | Command::Status { .. }
        | Command::Observe(_)
        | Command::Completion { .. }
        | Command::Man { .. }
        | Command::Version => {
            unreachable!("handled above")
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_to_lab(cmd: &LabCmd) -> commands::lab::LabAction {
    use commands::lab::LabAction;
    match cmd {
        LabCmd::Up { routing_mode, control_plane } => {
            LabAction::Up { routing_mode: routing_mode.clone(), control_plane: *control_plane }
        }
        LabCmd::Kubeconfig => LabAction::Kubeconfig,
        LabCmd::Kubectl { args } => LabAction::Kubectl { args: args.clone() },
        LabCmd::Down => LabAction::Down,
        LabCmd::Status => LabAction::Status,
        LabCmd::Exec { host, command } => LabAction::Exec { host: host.clone(), command: command.clone() },
        LabCmd::Guide { sections } => LabAction::Guide { sections: sections.clone() },
        LabCmd::Supervise => LabAction::Supervise,
        LabCmd::Kill { node } => LabAction::Kill { node: node.clone() },
        LabCmd::Boot { node, wait, wait_duration } => {
            LabAction::Boot { node: node.clone(), wait: wait.then_some(*wait_duration) }
        }
        LabCmd::Reboot { node, down_for, wait, wait_duration } => {
            LabAction::Reboot { node: node.clone(), down_for: *down_for, wait: wait.then_some(*wait_duration) }
        }
        LabCmd::Kubelet(_) | LabCmd::Controllers | LabCmd::Whoami(_) => unreachable!("dispatched in run()"),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::{Cli, Command, error_text};

    /// Every argument of every command, hidden ones included, says in `--help` what it is for.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("`{path}`: {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "cilia", &mut missing);
        assert!(missing.is_empty(), "arguments without help text:\n{}", missing.join("\n"));
    }

    #[test]
    fn command_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    fn namespace(args: &[&str]) -> Option<String> {
        let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        cli.command.namespace().or(cli.namespace.namespace.as_deref()).map(str::to_string)
    }

    #[test]
    fn namespace_goes_before_or_after_the_verbs_that_use_it() {
        assert_eq!(namespace(&["cilia", "-n", "kube-system", "get", "lease"]).as_deref(), Some("kube-system"));
        assert_eq!(namespace(&["cilia", "get", "lease", "-n", "kube-system"]).as_deref(), Some("kube-system"));
        assert_eq!(namespace(&["cilia", "-n", "a", "delete", "pod", "x", "-n", "b"]).as_deref(), Some("b"));
        assert_eq!(
            namespace(&["cilia", "exec", "-n", "kube-system", "pod", "--", "true"]).as_deref(),
            Some("kube-system")
        );
        assert_eq!(namespace(&["cilia", "-n", "kube-system", "observe"]).as_deref(), Some("kube-system"));
        assert_eq!(namespace(&["cilia", "get", "pods"]), None, "no -n: the default namespace, and observe's all");
    }

    #[test]
    fn namespace_is_not_offered_where_it_means_nothing() {
        for args in [
            &["cilia", "lab", "up", "-n", "x"][..],
            &["cilia", "version", "-n", "x"],
            &["cilia", "completion", "bash", "-n", "x"],
            &["cilia", "status", "-n", "x"],
            &["cilia", "config", "view", "-n", "x"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} should be refused");
        }
        let mut cli = Cli::command();
        for path in [&["lab", "up"][..], &["version"], &["status"], &["dbg"]] {
            let mut cmd = &mut cli;
            for name in path {
                cmd = cmd.find_subcommand_mut(name).unwrap_or_else(|| panic!("no subcommand {name}"));
            }
            let help = cmd.render_long_help().to_string();
            assert!(!help.contains("--namespace"), "{path:?} offers --namespace:\n{help}");
        }
    }

    #[test]
    fn completion_scripts_know_the_commands_and_flags() {
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "cilia", &mut script);
            let script = String::from_utf8(script).expect("UTF-8");
            for word in ["observe", "watch", "all-namespaces", "output-watch-events"] {
                assert!(script.contains(word), "{shell} completion lacks {word}");
            }
        }
    }

    #[test]
    fn get_takes_watch() {
        let cli = Cli::try_parse_from(["cilia", "get", "pods", "-w", "--output-watch-events"]).expect("parses");
        let Command::Get(get) = cli.command else { panic!("not get") };
        assert!(get.watch && get.output_watch_events);
    }

    /// A cause nested in three layers (a CLI context, the pod runtime, the lab, the OS) appears
    /// exactly once in the printed error.
    #[test]
    fn each_cause_is_printed_once() {
        let os = std::io::Error::from(std::io::ErrorKind::NotFound);
        let os_text = os.to_string();
        let lab = lab::LabError::Io { action: "read", path: "/run/cilia/lab/demo/state.json".into(), source: os };
        let runtime = podruntime::Error::from(lab);
        let err = anyhow::Error::new(runtime).context("starting pod default/web-0");
        let text = error_text(&err);
        assert_eq!(text, format!("starting pod default/web-0: cannot read /run/cilia/lab/demo/state.json: {os_text}"));
        for part in ["starting pod default/web-0", "cannot read /run/cilia/lab/demo/state.json", os_text.as_str()] {
            assert_eq!(text.matches(part).count(), 1, "{part:?} in {text:?}");
        }

        let client = telemetry::client::ClientError::Io {
            path: "/run/cilia/k8s-w1/metrics.sock".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused).to_string();
        let text = error_text(&anyhow::Error::new(client).context("reading the metrics of k8s-w1's agent"));
        assert_eq!(text.matches(refused.as_str()).count(), 1, "{text:?}");
        assert_eq!(text.matches("metrics.sock").count(), 1, "{text:?}");

        // The agent's layers: its own error over the CNI server, the kernel and the datapath,
        // printed by the CLI (anyhow) and by the agent's log lines (`Chain`) alike.
        let in_use = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let in_use_text = in_use.to_string();
        let socket = cni::ServerError::Socket { path: "/run/cilia/k8s-w1/cni.sock".into(), source: in_use };
        let kernel = netconf::Error::Sysctl {
            netns: "k8s-w1".into(),
            key: "net/ipv4/ip_forward".into(),
            value: "1".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied).to_string();
        let datapath = datapath::Error::Io {
            op: "create",
            path: "/sys/fs/bpf/cilia/k8s-w1".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let cases = [
            (
                agent::AgentError::from(socket),
                format!("pod networking: CNI socket /run/cilia/k8s-w1/cni.sock: {in_use_text}"),
            ),
            (
                agent::AgentError::from(kernel),
                format!("kernel: sysctl net/ipv4/ip_forward=1 in network namespace k8s-w1: {denied}"),
            ),
            (
                agent::AgentError::from(datapath),
                format!("service datapath: create /sys/fs/bpf/cilia/k8s-w1: {os_text}"),
            ),
        ];
        for (err, expected) in cases {
            assert_eq!(api::error::Chain(&err).to_string(), expected, "as the agent logs it");
            let text = error_text(&anyhow::Error::new(err).context("agent of node k8s-w1"));
            assert_eq!(text, format!("agent of node k8s-w1: {expected}"), "as the CLI prints it");
        }
    }
}
