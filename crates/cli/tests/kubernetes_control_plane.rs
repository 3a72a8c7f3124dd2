//! `cilia lab up --control-plane kubernetes`: Kubernetes' own kube-apiserver,
//! kube-controller-manager and kube-scheduler (built by scripts/install-kubernetes.sh) run on
//! k8s-ctr on the lab's etcd, and the real kubectl drives them from inside k8s-ctr.
//!
//! Needs root and the four binaries; without them it fails, saying how to build them.

mod common;

use common::{TestLab, repo_file, text};

#[test]
fn on_kubernetes_its_own_controllers_run_and_serve_cilium_crds_to_kubectl() {
    assert!(nix::unistd::geteuid().is_root(), "needs root: the lab makes network namespaces");
    if let Err(e) = lab::kubernetes::check_installed() {
        panic!("{e}");
    }
    let lab = TestLab::up_with("kcp", &["--control-plane", "kubernetes"]);

    // The admin kubeconfig is there and kubectl reaches the pinned release's server.
    let kubeconfig = lab.ok(&["lab", "kubeconfig"]);
    assert!(std::path::Path::new(kubeconfig.trim()).is_file(), "{kubeconfig}");
    let version = lab.kubectl(&["version", "-o", "json"]);
    let version: serde_json::Value = serde_json::from_str(&version).unwrap();
    assert_eq!(version["serverVersion"]["gitVersion"], lab::kubernetes::KUBERNETES_VERSION, "{version}");

    // `lab up` installed Cilium's CRDs and the operator's RBAC from deploy/kubernetes; applying them
    // again with kubectl changes nothing, and the whole deployment passes the server's checks.
    let applied = lab.kubectl(&["apply", "-f", &repo_file("deploy/kubernetes/crds")]);
    assert!(applied.lines().all(|l| l.ends_with("unchanged")), "{applied}");
    let dry = lab.kubectl(&["apply", "--dry-run=server", "-f", &repo_file("deploy/kubernetes")]);
    for object in [
        "deployment.apps/cilia-operator",
        "configmap/cilium-config",
        "clusterrole.rbac.authorization.k8s.io/cilia-operator",
    ] {
        assert!(dry.contains(object), "{object} not in the dry run:\n{dry}");
    }
    // The operator's rights: Services' status, never their spec.
    let can = |args: &[&str]| {
        let out = lab.cilia(
            &[
                &["lab", "kubectl", "--", "auth", "can-i", "--as", "system:serviceaccount:kube-system:cilia-operator"]
                    [..],
                args,
            ]
            .concat(),
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(can(&["update", "services", "--subresource=status"]), "yes");
    assert_eq!(can(&["update", "services"]), "no");
    assert_eq!(can(&["delete", "ciliumloadbalancerippools.cilium.io"]), "no");
    lab.kubectl_until(
        &["get", "crd", "ciliumloadbalancerippools.cilium.io", "-o", "jsonpath={.status.conditions}"],
        |s| s.contains("\"Established\"") && s.contains("\"True\""),
    );
    lab.kubectl_until(
        &["get", "crd", "ciliuml2announcementpolicies.cilium.io", "-o", "jsonpath={.status.conditions}"],
        |s| s.contains("\"Established\"") && s.contains("\"True\""),
    );
    lab.kubectl(&[
        "apply",
        "-f",
        &repo_file("examples/guide/lb-ippool.yaml"),
        "-f",
        &repo_file("examples/guide/l2-policy.yaml"),
    ]);
    let pools = lab.kubectl(&["get", "ippools"]);
    let header: Vec<&str> = pools.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "DISABLED", "CONFLICTING", "IPS", "AVAILABLE", "AGE"], "{pools}");
    assert!(pools.lines().any(|l| l.starts_with("cilium-lb-ippool") && l.contains("false")), "{pools}");
    // v2alpha1 is served too (the guide's older manifests use it) and reads the same object.
    let alpha = lab.kubectl(&["get", "ciliumloadbalancerippools.v2alpha1.cilium.io", "cilium-lb-ippool", "-o", "json"]);
    assert!(alpha.contains("192.168.10.241"), "{alpha}");
    // The schema is enforced by the server: a pool whose `disabled` is not a boolean is refused.
    let bad =
        "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata:\n  name: bad\nspec:\n  disabled: maybe\n";
    let out = lab.cilia_stdin(&["lab", "kubectl", "--", "apply", "-f", "-"], bad);
    assert!(!out.status.success(), "a pool with disabled: maybe was accepted:\n{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("spec.disabled"), "{}", text(&out));

    // The guide's webpod: kube-apiserver allocates the cluster IP from 10.96.0.0/16, and
    // kube-controller-manager makes the ReplicaSet and its three pods.
    lab.kubectl(&["apply", "-f", &repo_file("examples/guide/webpod.yaml")]);
    let cluster_ip = lab.kubectl(&["get", "svc", "webpod", "-o", "jsonpath={.spec.clusterIP}"]);
    let ip: std::net::Ipv4Addr = cluster_ip.trim().parse().unwrap_or_else(|e| panic!("{cluster_ip:?}: {e}"));
    assert!(ip.octets()[..2] == [10, 96], "cluster IP {ip} outside 10.96.0.0/16");
    lab.kubectl_until(&["get", "rs", "-l", "app=webpod", "-o", "jsonpath={.items[*].status.replicas}"], |s| {
        s.trim() == "3"
    });
    // kube-scheduler looked at them: no node has registered yet, so each is Unschedulable.
    lab.kubectl_until(
        &["get", "pods", "-l", "app=webpod", "-o", "jsonpath={.items[*].status.conditions[0].reason}"],
        |s| s.split_whitespace().filter(|r| *r == "Unschedulable").count() == 3,
    );

    // cilia's operator runs on kube-apiserver: the guide's `kubectl patch svc webpod` to
    // LoadBalancer gets the pool's first address, with Cilium's condition, through the status
    // subresource, and the pool's status counts what is left.
    lab.kubectl(&["patch", "svc", "webpod", "-p", r#"{"spec":{"type":"LoadBalancer"}}"#]);
    lab.kubectl_until(&["get", "svc", "webpod", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"], |s| {
        s.trim() == "192.168.10.241"
    });
    let condition = lab.kubectl(&[
        "get",
        "svc",
        "webpod",
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="cilium.io/IPAMRequestSatisfied")].status}"#,
    ]);
    assert_eq!(condition.trim(), "True", "{condition}");
    let pools = lab.kubectl_until(&["get", "ippools"], |s| {
        s.lines().any(|l| l.starts_with("cilium-lb-ippool") && l.contains(" 4 "))
    });
    assert!(pools.contains("False"), "the pool does not conflict: {pools}");

    // Nothing is written again while nothing changes.
    let versions = || {
        lab.kubectl(&[
            "get",
            "svc/webpod",
            "ippool/cilium-lb-ippool",
            "-o",
            "jsonpath={.items[*].metadata.resourceVersion}",
        ])
    };
    let before = versions();
    std::thread::sleep(std::time::Duration::from_secs(10));
    assert_eq!(versions(), before, "the Service or the pool was written again in a steady state");
}
