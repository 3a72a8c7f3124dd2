//! What a soak run found, each checked in a lab of its own: a quiet start, pod churn that leaves no
//! link pins behind, kubectl's mixed `kind/name` delete, and `dbg` output into a closed pipe.

mod common;

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use common::{TestLab, guide_manifest, text};

fn log(lab: &TestLab, name: &str) -> String {
    std::fs::read_to_string(format!("/run/cilia/lab/{}/logs/{name}.log", lab.name)).unwrap_or_default()
}

/// The lxc link pins of a node.
fn pod_pins(lab: &TestLab, node: &str) -> Vec<String> {
    let dir = format!("{}/{}/{node}/links", datapath::BPF_ROOT, lab.name);
    let mut pins: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    pins.retain(|p| p.contains("_lxc"));
    pins.sort();
    pins
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `node` has `want` lxc link pins; on timeout says which pins and links it has, and
/// what its agent logged about devices.
fn wait_pins(lab: &TestLab, node: &str, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while pod_pins(lab, node).len() != want {
        if Instant::now() >= deadline {
            let links = lab.ok(&["lab", "exec", node, "--", "ip", "-br", "link", "show"]);
            let agent = log(lab, &format!("agent-{node}"));
            let about_devices: Vec<&str> =
                agent.lines().filter(|l| l.contains("device") || l.contains("attach") || l.contains("pin")).collect();
            panic!(
                "timed out waiting for {want} lxc link pins on {node}; pins: {:?}\nlinks:\n{links}\nagent:\n{}",
                pod_pins(lab, node),
                about_devices[about_devices.len().saturating_sub(40)..].join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ready_pods(lab: &TestLab) -> usize {
    let out = lab.ok(&[
        "get",
        "pod",
        "-o",
        r#"jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
    ]);
    out.lines().filter(|l| *l == "True").count()
}

#[test]
fn churn_leaves_nothing_behind() {
    let plugin = Path::new(common::cilia_bin()).with_file_name("cilia-cni");
    assert!(plugin.exists(), "{} is missing: run `cargo build --workspace --bins` first", plugin.display());
    let lab = TestLab::up("soakt");
    let out = lab.cilia(&["status", "--wait", "--wait-duration", "2m"]);
    assert!(out.status.success(), "{}", text(&out));

    // A quiet start: every process started before etcd answered, and said so at INFO.
    for name in
        ["operator", "agent-k8s-ctr", "agent-k8s-w1", "agent-k8s-w0", "kubelet-k8s-ctr", "dns-k8s-ctr", "controllers"]
    {
        let text = log(&lab, name);
        let noisy: Vec<&str> = text
            .lines()
            .filter(|l| {
                (l.contains(" WARN ") || l.contains(" ERROR ")) && (l.contains("datastore") || l.contains("etcd"))
            })
            .map(|l| &l[..l.len().min(240)])
            .collect();
        assert!(noisy.is_empty(), "{name} logged the datastore's start as a problem:\n{}", noisy.join("\n"));
    }

    // Pods come and go; their link pins go with them.
    let manifests = format!("{}---\n{}", guide_manifest("webpod.yaml"), guide_manifest("curl-pod.yaml"));
    let out = lab.cilia_stdin(&["apply", "-f", "-"], &manifests);
    assert!(out.status.success(), "{}", text(&out));
    wait_for("4 ready pods", Duration::from_secs(90), || ready_pods(&lab) == 4);
    wait_for("curl-pod's and webpod's pins on k8s-ctr", Duration::from_secs(30), || {
        pod_pins(&lab, "k8s-ctr").len() == 4
    });
    let before = pod_pins(&lab, "k8s-ctr");
    for _ in 0..3 {
        let out = lab.cilia(&["delete", "pod", "curl-pod"]);
        assert!(out.status.success(), "{}", text(&out));
        wait_for("curl-pod gone", Duration::from_secs(60), || ready_pods(&lab) == 3);
        let out = lab.cilia_stdin(&["apply", "-f", "-"], &guide_manifest("curl-pod.yaml"));
        assert!(out.status.success(), "{}", text(&out));
        wait_for("curl-pod back", Duration::from_secs(60), || ready_pods(&lab) == 4);
    }
    wait_pins(&lab, "k8s-ctr", 4);
    let after = pod_pins(&lab, "k8s-ctr");
    assert_ne!(before, after, "curl-pod has a new veth");
    assert!(
        log(&lab, "agent-k8s-ctr").contains("removed the datapath state of devices that are gone"),
        "the agent reports what it removed"
    );

    // `dbg` into a pipe that closes: quiet, the pipe's status.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = lab
        .command(&["dbg", "k8s-ctr", "bpf", "lb", "list"])
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("cilia dbg");
    assert_eq!(out.status.code(), Some(141), "{}", text(&out));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));

    // kubectl's mixed kinds.
    let out = lab.cilia(&["delete", "deploy/webpod", "svc/webpod"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("deployment.apps \"webpod\" deleted"), "{stdout}");
    assert!(stdout.contains("service \"webpod\" deleted"), "{stdout}");
    wait_for("webpods gone", Duration::from_secs(60), || ready_pods(&lab) == 1);
    wait_pins(&lab, "k8s-ctr", 2);
    for node in ["k8s-w1", "k8s-w0"] {
        wait_pins(&lab, node, 0);
    }
}
