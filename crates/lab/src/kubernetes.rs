//! Kubernetes' own control plane in the lab (`cilia lab up --control-plane kubernetes`):
//! kube-apiserver, kube-controller-manager and kube-scheduler on k8s-ctr, as a kubeadm control-plane
//! node runs them, built from Kubernetes' Go modules by `scripts/install-kubernetes.sh`.
//!
//! - kube-apiserver keeps its objects in the lab's etcd (under `/registry`, beside cilia's
//!   `/cilia/registry`), reached over TLS with a client certificate of its own, and serves on
//!   192.168.10.100:6443 with the service CIDR 10.96.0.0/16.
//! - Every client authenticates with a certificate from the lab's CA ([`crate::pki`]); the user
//!   names are the ones Kubernetes' default RBAC binds, so no RBAC object has to be written.
//! - kubectl runs inside k8s-ctr (`cilia lab kubectl ...`), as the guide runs it on the k8s-ctr VM:
//!   nothing in the root namespace talks to the lab's addresses.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::Lab;
use crate::error::LabError;
use crate::logs;
use crate::pki::{
    KUBE_ADMIN, KUBE_APISERVER_ETCD, KUBE_CILIA_OPERATOR, KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER, KubeUser,
};
use crate::process::ProcessSpec;
use crate::state::write_json_atomically;
use crate::topology::{K8S_CTR, nodes};

/// The release `scripts/install-kubernetes.sh` builds: the `k8s.io/kubernetes` requirement of
/// `tools/kubernetes/go.mod` (a test keeps the two equal).
pub const KUBERNETES_VERSION: &str = "v1.34.4";

/// Services' cluster IPs, as in the guide's cluster (kubeadm's default).
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The `kubernetes` Service's cluster IP: the first address of [`SERVICE_CIDR`].
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
pub const APISERVER_PORT: u16 = 6443;

pub const APISERVER_PROCESS: &str = "kube-apiserver";
pub const CONTROLLER_MANAGER_PROCESS: &str = "kube-controller-manager";
pub const SCHEDULER_PROCESS: &str = "kube-scheduler";
const KUBECTL: &str = "kubectl";

/// Which API the lab's cluster objects live behind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ControlPlane {
    /// cilia's own keyspace in etcd, with its own controllers (the default; `make demo`).
    #[default]
    Etcd,
    /// Kubernetes' kube-apiserver, kube-controller-manager and kube-scheduler.
    Kubernetes,
}

impl std::str::FromStr for ControlPlane {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "etcd" => Ok(ControlPlane::Etcd),
            "kubernetes" => Ok(ControlPlane::Kubernetes),
            other => Err(format!("unknown control plane {other:?}; choose etcd or kubernetes")),
        }
    }
}

/// Where the pinned release's binaries are: `$CILIA_KUBERNETES_BIN_DIR`, else
/// `${CILIA_KUBERNETES_CACHE:-/var/cache/cilia/kubernetes}/<version>/bin`, the directory
/// `scripts/install-kubernetes.sh` fills.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CILIA_KUBERNETES_BIN_DIR") {
        return dir.into();
    }
    let cache = std::env::var_os("CILIA_KUBERNETES_CACHE").unwrap_or_else(|| "/var/cache/cilia/kubernetes".into());
    Path::new(&cache).join(KUBERNETES_VERSION).join("bin")
}

/// The path of one of the four binaries, or an error that says how to build it.
pub fn binary(name: &str) -> Result<PathBuf, LabError> {
    let path = bin_dir().join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(LabError::KubernetesMissing { version: KUBERNETES_VERSION, binary: path })
    }
}

/// Fails, naming the build script, unless all four binaries are there.
pub fn check_installed() -> Result<(), LabError> {
    for name in [APISERVER_PROCESS, CONTROLLER_MANAGER_PROCESS, SCHEDULER_PROCESS, KUBECTL] {
        binary(name)?;
    }
    Ok(())
}

/// `<data dir>/kubernetes/<user>.kubeconfig`: the admin's (for kubectl), kube-controller-manager's
/// and kube-scheduler's.
pub fn kubeconfig(lab: &Lab, user: &KubeUser) -> PathBuf {
    lab.paths().data_dir().join("kubernetes").join(format!("{}.kubeconfig", user.file))
}

/// cilia's operator's kubeconfig: its service account's rights only.
pub fn operator_kubeconfig(lab: &Lab) -> PathBuf {
    kubeconfig(lab, &KUBE_CILIA_OPERATOR)
}

/// The admin's kubeconfig: what `cilia lab kubeconfig` prints.
pub fn admin_kubeconfig(lab: &Lab) -> PathBuf {
    kubeconfig(lab, &KUBE_ADMIN)
}

/// Whether the lab's process list runs kube-apiserver (it was brought up with
/// `--control-plane kubernetes`).
pub fn runs_in(lab: &Lab) -> bool {
    let Ok(text) = fs::read_to_string(lab.paths().specs_file()) else {
        return false;
    };
    serde_json::from_str::<Vec<ProcessSpec>>(&text)
        .map(|specs| specs.iter().any(|s| s.name == APISERVER_PROCESS))
        .unwrap_or(false)
}

fn apiserver_ip(lab: &Lab) -> Ipv4Addr {
    nodes(lab.topology())
        .into_iter()
        .find(|n| n.name == K8S_CTR)
        .map(|n| n.internal_ip)
        .unwrap_or(Ipv4Addr::new(192, 168, 10, 100))
}

/// The addresses kube-apiserver's serving certificate names.
pub fn apiserver_ips(lab: &Lab) -> Vec<Ipv4Addr> {
    vec![apiserver_ip(lab), KUBERNETES_SERVICE_IP]
}

/// `https://192.168.10.100:6443`
pub fn apiserver_url(lab: &Lab) -> String {
    format!("https://{}:{APISERVER_PORT}", apiserver_ip(lab))
}

/// The three control-plane processes, in start order, for the supervisor. Binaries missing is an
/// error here, before anything starts.
pub fn specs(lab: &Lab) -> Result<Vec<ProcessSpec>, LabError> {
    check_installed()?;
    let pki = lab.paths().pki();
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    let ip = apiserver_ip(lab);
    let state = lab.paths().data_dir().join("kubernetes");
    let etcd_client = pki.kube_user(&KUBE_APISERVER_ETCD);
    let apiserver = ProcessSpec::new(
        APISERVER_PROCESS,
        K8S_CTR,
        &[
            &path(binary(APISERVER_PROCESS)?),
            &format!("--etcd-servers=https://{ip}:2379"),
            &format!("--etcd-cafile={}", path(pki.ca())),
            &format!("--etcd-certfile={}", path(etcd_client.cert)),
            &format!("--etcd-keyfile={}", path(etcd_client.key)),
            &format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            &format!("--bind-address={ip}"),
            &format!("--advertise-address={ip}"),
            &format!("--secure-port={APISERVER_PORT}"),
            &format!("--tls-cert-file={}", path(pki.kube_apiserver().cert)),
            &format!("--tls-private-key-file={}", path(pki.kube_apiserver().key)),
            &format!("--client-ca-file={}", path(pki.ca())),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            &format!("--service-account-key-file={}", path(pki.service_account_public_key())),
            &format!("--service-account-signing-key-file={}", path(pki.service_account_key())),
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            "--profiling=false",
            &format!("--cert-dir={}", path(state.join("apiserver-certs"))),
        ],
    );
    let controller_manager = ProcessSpec::new(
        CONTROLLER_MANAGER_PROCESS,
        K8S_CTR,
        &[
            &path(binary(CONTROLLER_MANAGER_PROCESS)?),
            &format!("--kubeconfig={}", path(kubeconfig(lab, &KUBE_CONTROLLER_MANAGER))),
            &format!("--authentication-kubeconfig={}", path(kubeconfig(lab, &KUBE_CONTROLLER_MANAGER))),
            &format!("--authorization-kubeconfig={}", path(kubeconfig(lab, &KUBE_CONTROLLER_MANAGER))),
            &format!("--service-account-private-key-file={}", path(pki.service_account_key())),
            &format!("--root-ca-file={}", path(pki.ca())),
            &format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            // Each controller acts as its own service account, as kubeadm sets it up.
            "--use-service-account-credentials=true",
            // Pod CIDRs are cilia's (cluster-pool IPAM), not the node IPAM controller's.
            "--allocate-node-cidrs=false",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            &format!("--cert-dir={}", path(state.join("controller-manager-certs"))),
        ],
    );
    let scheduler = ProcessSpec::new(
        SCHEDULER_PROCESS,
        K8S_CTR,
        &[
            &path(binary(SCHEDULER_PROCESS)?),
            &format!("--kubeconfig={}", path(kubeconfig(lab, &KUBE_SCHEDULER))),
            &format!("--authentication-kubeconfig={}", path(kubeconfig(lab, &KUBE_SCHEDULER))),
            &format!("--authorization-kubeconfig={}", path(kubeconfig(lab, &KUBE_SCHEDULER))),
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
        ],
    );
    Ok(vec![apiserver, controller_manager, scheduler])
}

/// Writes the admin's, kube-controller-manager's and kube-scheduler's kubeconfigs (they name the
/// certificate files; the certificates themselves are [`crate::pki`]'s).
pub(crate) fn write_kubeconfigs(lab: &Lab) -> Result<(), LabError> {
    let dir = lab.paths().data_dir().join("kubernetes");
    fs::create_dir_all(&dir).map_err(|e| LabError::io("create directory", &dir, e))?;
    let pki = lab.paths().pki();
    for user in [&KUBE_ADMIN, &KUBE_CONTROLLER_MANAGER, &KUBE_SCHEDULER, &KUBE_CILIA_OPERATOR] {
        let doc = kubeconfig_document(lab.name(), &apiserver_url(lab), &pki.ca(), &pki.kube_user(user));
        write_json_atomically(&kubeconfig(lab, user), &doc)?;
    }
    Ok(())
}

/// A kubeconfig with one cluster, one user (a client certificate) and one context, as JSON (which
/// every kubeconfig reader takes, YAML being a superset).
fn kubeconfig_document(lab: &str, server: &str, ca: &Path, user: &crate::pki::CertFiles) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": lab, "cluster": {"server": server, "certificate-authority": ca}}],
        "users": [{"name": lab, "user": {"client-certificate": user.cert, "client-key": user.key}}],
        "contexts": [{"name": lab, "context": {"cluster": lab, "user": lab}}],
        "current-context": lab,
    })
}

/// The argv of kubectl as the lab's admin, for running inside k8s-ctr.
pub fn kubectl_argv(lab: &Lab, args: &[String]) -> Result<Vec<String>, LabError> {
    let mut argv = vec![
        binary(KUBECTL)?.to_string_lossy().into_owned(),
        format!("--kubeconfig={}", admin_kubeconfig(lab).display()),
    ];
    argv.extend(args.iter().cloned());
    Ok(argv)
}

/// What `up` installs once kube-apiserver is ready: Cilium's CRDs, and the operator's service
/// account and RBAC rules, the same files a real cluster applies (deploy/kubernetes).
const INSTALLED_MANIFESTS: &[(&str, &str)] = &[
    (
        "deploy/kubernetes/crds/ciliumloadbalancerippools.yaml",
        include_str!("../../../deploy/kubernetes/crds/ciliumloadbalancerippools.yaml"),
    ),
    (
        "deploy/kubernetes/crds/ciliuml2announcementpolicies.yaml",
        include_str!("../../../deploy/kubernetes/crds/ciliuml2announcementpolicies.yaml"),
    ),
    ("deploy/kubernetes/rbac.yaml", include_str!("../../../deploy/kubernetes/rbac.yaml")),
];

/// `kubectl apply` of [`INSTALLED_MANIFESTS`] inside k8s-ctr, as one stream of documents.
pub(crate) fn install_manifests(lab: &Lab) -> Result<(), LabError> {
    use std::io::Write as _;
    let documents: Vec<&str> = INSTALLED_MANIFESTS.iter().map(|(_, text)| *text).collect();
    let names: Vec<&str> = INSTALLED_MANIFESTS.iter().map(|(name, _)| *name).collect();
    let what = format!("kubectl apply -f {}", names.join(" -f "));
    let argv = kubectl_argv(lab, &["apply".into(), "-f".into(), "-".into()])?;
    let mut cmd = lab.command(K8S_CTR, &argv[0])?;
    cmd.args(&argv[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| LabError::Spawn { command: what.clone(), source })?;
    if let Some(mut stdin) = child.stdin.take() {
        let stream = documents.join("\n---\n");
        stdin.write_all(stream.as_bytes()).map_err(|e| LabError::io("write to kubectl", Path::new(names[0]), e))?;
    }
    let out = child.wait_with_output().map_err(|e| LabError::io("wait for kubectl", Path::new(names[0]), e))?;
    if !out.status.success() {
        return Err(LabError::Command {
            namespace: lab.namespace_of(K8S_CTR)?.to_string(),
            command: what,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Waits until kube-apiserver answers `/readyz` (asked by kubectl inside k8s-ctr).
pub(crate) fn wait_until_ready(lab: &Lab, timeout: Duration) -> Result<(), LabError> {
    let argv = kubectl_argv(lab, &["get".into(), "--raw=/readyz".into(), "--request-timeout=2s".into()])?;
    let deadline = Instant::now() + timeout;
    loop {
        let mut cmd = lab.command(K8S_CTR, &argv[0])?;
        cmd.args(&argv[1..]);
        if let Ok(out) = cmd.output()
            && out.status.success()
            && String::from_utf8_lossy(&out.stdout).trim() == "ok"
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let log = lab.paths().log_file(APISERVER_PROCESS);
            return Err(LabError::ApiserverTimeout {
                lab: lab.name().to_string(),
                timeout,
                tail: logs::tail(&log, 20),
                log,
            });
        }
        thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_the_one_the_build_script_pins() {
        let go_mod = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/kubernetes/go.mod");
        let text = fs::read_to_string(&go_mod).unwrap();
        let pinned = text
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix("k8s.io/kubernetes "))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no k8s.io/kubernetes requirement in {}", go_mod.display()));
        assert_eq!(pinned, KUBERNETES_VERSION, "{}", go_mod.display());
    }

    #[test]
    fn control_planes_parse_and_unknown_ones_are_named() {
        assert_eq!("etcd".parse::<ControlPlane>(), Ok(ControlPlane::Etcd));
        assert_eq!("kubernetes".parse::<ControlPlane>(), Ok(ControlPlane::Kubernetes));
        let err = "k3s".parse::<ControlPlane>().unwrap_err();
        assert!(err.contains("\"k3s\"") && err.contains("etcd or kubernetes"), "{err}");
    }

    #[test]
    fn a_kubeconfig_names_the_server_and_the_certificates() {
        let user = crate::pki::CertFiles { cert: "/p/admin.crt".into(), key: "/p/admin.key".into() };
        let doc = kubeconfig_document("lab1", "https://192.168.10.100:6443", Path::new("/p/ca.crt"), &user);
        assert_eq!(doc["clusters"][0]["cluster"]["server"], "https://192.168.10.100:6443");
        assert_eq!(doc["users"][0]["user"]["client-key"], "/p/admin.key");
        assert_eq!(doc["current-context"], "lab1");
    }

    #[test]
    fn a_missing_binary_says_how_to_build_it() {
        let err = LabError::KubernetesMissing { version: KUBERNETES_VERSION, binary: "/nowhere/bin/kubectl".into() };
        let msg = err.to_string();
        assert!(msg.contains("scripts/install-kubernetes.sh") && msg.contains("/nowhere/bin/kubectl"), "{msg}");
    }
}
