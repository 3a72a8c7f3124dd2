//! LB-IPAM's behaviour, one test body on both control planes: cilia's own (etcd) and Kubernetes'
//! (kube-apiserver, with cilia's operator on it). The body drives each through the same cilia
//! verbs; on Kubernetes they run inside k8s-ctr with `--datastore kubeconfig://...`.
//!
//! Needs root; the Kubernetes half also needs Kubernetes' binaries (scripts/install-kubernetes.sh).

mod common;

use std::time::Duration;

use common::{TestLab, cilia_bin, repo_file, text};

/// A lab and the argv prefix that points cilia's verbs at its control plane.
struct Cluster {
    lab: TestLab,
    prefix: Vec<String>,
}

impl Cluster {
    fn etcd() -> Cluster {
        assert!(nix::unistd::geteuid().is_root(), "needs root: the lab makes network namespaces");
        Cluster { lab: TestLab::up("lbe"), prefix: Vec::new() }
    }

    fn kubernetes() -> Cluster {
        assert!(nix::unistd::geteuid().is_root(), "needs root: the lab makes network namespaces");
        if let Err(e) = lab::kubernetes::check_installed() {
            panic!("{e}");
        }
        let lab = TestLab::up_with("lbk", &["--control-plane", "kubernetes"]);
        let url = format!("kubeconfig://{}", lab.ok(&["lab", "kubeconfig"]).trim());
        let prefix = ["lab", "exec", "k8s-ctr", "--", cilia_bin(), "--datastore", &url].map(String::from).to_vec();
        Cluster { lab, prefix }
    }

    fn argv<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        self.prefix.iter().map(String::as_str).chain(args.iter().copied()).collect()
    }

    fn cilia(&self, args: &[&str]) -> String {
        self.lab.ok(&self.argv(args))
    }

    fn apply(&self, manifest: &str) {
        let out = self.lab.cilia_stdin(&self.argv(&["apply", "-f", "-"]), manifest);
        assert!(out.status.success(), "apply failed:\n{}\n{manifest}", text(&out));
    }

    fn service(&self, name: &str, annotations: &str) {
        self.apply(&format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\n\
             spec:\n  type: LoadBalancer\n  selector: {{app: {name}}}\n  ports:\n  - port: 80\n"
        ));
    }

    /// Waits until `done(ip, status, reason)` holds for the Service's LoadBalancer address and its
    /// `cilium.io/IPAMRequestSatisfied` condition (30 s at most).
    fn wait(&self, name: &str, done: impl Fn(&str, &str, &str) -> bool) {
        self.lab.eventually(&self.argv(&["get", "svc", name, "-o", "json"]), Duration::from_secs(30), |s| {
            let Ok(svc) = serde_json::from_str::<serde_json::Value>(s) else { return false };
            let ip = svc["status"]["loadBalancer"]["ingress"][0]["ip"].as_str().unwrap_or_default();
            let satisfied = svc["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "cilium.io/IPAMRequestSatisfied"))
                .cloned()
                .unwrap_or_default();
            let status = satisfied["status"].as_str().unwrap_or_default();
            done(ip, status, satisfied["reason"].as_str().unwrap_or_default())
        });
    }

    fn address(&self, name: &str, want: &str) {
        self.wait(name, |ip, status, _| ip == want && status == "True");
    }
}

/// The guide's pool (.241–.245): first free address in order, a requested address honoured, the
/// pool running out reported on the Service, and a freed address handed to the one that waited.
fn lbipam_semantics(c: &Cluster) {
    let pool = std::fs::read_to_string(repo_file("examples/guide/lb-ippool.yaml")).unwrap();
    c.apply(&pool);
    c.service("svc-a", "");
    c.address("svc-a", "192.168.10.241");
    c.service("svc-b", "lbipam.cilium.io/ips: 192.168.10.245");
    c.address("svc-b", "192.168.10.245");
    for (name, ip) in [("svc-c", "192.168.10.242"), ("svc-d", "192.168.10.243"), ("svc-e", "192.168.10.244")] {
        c.service(name, "");
        c.address(name, ip);
    }
    c.service("svc-f", "");
    c.wait("svc-f", |ip, status, reason| ip.is_empty() && status == "False" && reason == "out_of_ips");
    c.cilia(&["delete", "svc", "svc-a"]);
    c.address("svc-f", "192.168.10.241");
}

#[test]
fn lbipam_on_the_etcd_control_plane() {
    lbipam_semantics(&Cluster::etcd());
}

#[test]
fn on_kubernetes_lbipam_behaves_as_on_etcd() {
    lbipam_semantics(&Cluster::kubernetes());
}
