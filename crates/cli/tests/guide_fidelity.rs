//! The guide as a reader replays it (docs/guide.md): the runner passes from any starting state
//! (twice in a row, after `cilia config set routing-mode=tunnel`, after each single section, after
//! a powered-off node), ends where the guide ends (tunnel mode, 10 of 10 `curl webpod` from
//! curl-pod, `ip route | grep cilium_host` with `mtu 1450`), prints the guide's own commands
//! where cilia differs, and the agents are found and used through their pods as the guide does.
//! A full run takes about 40 s, so each test uses one lab for several checks.

mod common;

use common::{TestLab, text};

/// Runs `cilia lab guide ARGS`, fails the test unless every step passed; returns stdout.
fn guide(lab: &TestLab, args: &[&str], when: &str) -> String {
    let mut argv = vec!["lab", "guide"];
    argv.extend_from_slice(args);
    let out = lab.cilia(&argv);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && stdout.contains(" 0 failed"), "cilia lab guide {args:?} {when}:\n{}", text(&out));
    stdout
}

fn sh(lab: &TestLab, script: &str) -> String {
    let mut cmd = std::process::Command::new("bash");
    let dir = std::path::Path::new(common::cilia_bin()).parent().unwrap().display().to_string();
    cmd.arg("-c")
        .arg(script)
        .env("CILIA_LAB", &lab.name)
        .env_remove("CILIA_DATASTORE")
        .env("PATH", format!("{dir}:{}", std::env::var("PATH").unwrap_or_default()));
    let out = cmd.output().expect("running bash");
    assert!(out.status.success(), "{script}:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn guide_twice_in_a_row_ends_where_the_guide_ends() {
    let lab = TestLab::up("gtw");
    let first = guide(&lab, &[], "on a new lab");
    // The guide's own capture command, shown with why cilium_vxlan is silent, then the tunnel.
    assert!(first.contains("the guide: tcpdump -i any icmp -nn"), "{first}");
    assert!(first.contains("cilia:     cilia encapsulates and decapsulates pods' packets in BPF on eth1"), "{first}");
    assert!(first.contains("tcpdump -i any icmp -nn -l"), "{first}");
    assert!(first.contains("-T vxlan udp port 8472"), "{first}");
    assert!(first.contains("the guide: modprobe vxlan"), "{first}");

    // Where the guide ends: tunnel mode, and curl webpod from curl-pod answers 10 times of 10.
    let mode = lab.ok(&["config", "view"]);
    assert!(mode.lines().any(|l| l.split_whitespace().eq(["routing-mode", "tunnel"])), "{mode}");
    let answers = sh(&lab, "for i in {1..10}; do cilia exec curl-pod -- curl -s -m 2 webpod | grep Hostname; done");
    assert_eq!(answers.lines().filter(|l| l.starts_with("Hostname: webpod-")).count(), 10, "{answers}");

    // The guide's route check finds cilium_host, with the tunnel MTU on the other nodes' pod CIDRs.
    let routes = sh(&lab, "cilia lab exec k8s-ctr -- ip route | grep cilium_host");
    for cidr in ["172.20.1.0/24", "172.20.2.0/24"] {
        assert!(
            routes.lines().any(|l| l.starts_with(cidr) && l.contains("dev cilium_host") && l.contains("mtu 1450")),
            "{routes}"
        );
    }

    // The agent, found as the guide finds it, and cilium-dbg through its pod.
    let pod = sh(
        &lab,
        "cilia get pod -n kube-system -l k8s-app=cilium --field-selector spec.nodeName=k8s-ctr -o jsonpath='{.items[0].metadata.name}'",
    );
    assert!(pod.starts_with("cilium-") && pod.len() == "cilium-".len() + 5, "{pod:?}");
    let pods = lab.ok(&["get", "pod", "-n", "kube-system", "-o", "wide"]);
    let row = pods.lines().find(|l| l.starts_with(&pod)).unwrap_or_else(|| panic!("{pods}"));
    assert!(row.contains("1/1") && row.contains("Running") && row.contains("k8s-ctr"), "{pods}");
    assert!(pods.lines().any(|l| l.starts_with("cilium-operator-") && l.contains("Running")), "{pods}");
    let cluster_ip = lab.ok(&["get", "svc", "webpod", "-o", "jsonpath={.spec.clusterIP}"]);
    let lb = lab.ok(&["exec", "-n", "kube-system", &pod, "--", "cilium-dbg", "bpf", "lb", "list"]);
    assert!(lb.starts_with("SERVICE ADDRESS"), "{lb}");
    assert!(lb.lines().any(|l| l.starts_with(&format!("{cluster_ip}:80/TCP")) && l.contains("ClusterIP")), "{lb}");
    assert!(lb.lines().any(|l| l.starts_with("192.168.10.24") && l.contains("LoadBalancer")), "{lb}");
    let eps = lab.ok(&["get", "ep", "webpod"]);
    assert!(eps.starts_with("NAME") && eps.lines().nth(1).is_some_and(|l| l.matches(":80").count() == 3), "{eps}");

    // exec -t: a terminal of the pod's own when stdin is one, kubectl's notice when it is not.
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let out = lab
        .command(&["exec", "-it", "curl-pod", "--", "tty"])
        .stdin(std::fs::File::from(pty.slave))
        .output()
        .expect("cilia exec -it");
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && tty.trim_end().starts_with("/dev/pts/"), "{}", text(&out));
    let out = lab.cilia(&["exec", "-t", "curl-pod", "--", "tty"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unable to use a TTY"), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not a tty"), "{}", text(&out));

    // Again, from where the first run ended: it says what it reset.
    let second = guide(&lab, &[], "right after a full run");
    for reset in [
        "reset: deleted ippools/cilium-lb-ippool",
        "reset: routing-mode=tunnel -> native",
        "reset: enable-l2-announcements=true -> false",
    ] {
        assert!(second.contains(reset), "no {reset:?} in:\n{second}");
    }
}

/// After `cilia config set routing-mode=tunnel` and after some single sections (the others in
/// the next test, so that the two run side by side), `cilia lab guide` passes.
#[test]
fn guide_passes_after_config_set_tunnel_and_after_single_sections() {
    let lab = TestLab::up("gsa");
    lab.ok(&["config", "set", "routing-mode=tunnel", "tunnel-protocol=vxlan", "auto-direct-node-routes=false"]);
    let out = guide(&lab, &[], "after config set routing-mode=tunnel");
    assert!(out.contains("reset: routing-mode=tunnel -> native"), "{out}");
    for section in ["topology", "vxlan", "service-lb"] {
        guide(&lab, &[section], "alone");
        guide(&lab, &[], &format!("after the {section} section alone"));
    }
}

#[test]
fn guide_passes_after_the_other_single_sections_and_a_powered_off_node() {
    let lab = TestLab::up("gsb");
    // Its agent's pod stops being Running once the node is lost, as a DaemonSet pod's would.
    let phase = |lab: &TestLab, want: &'static str| {
        lab.eventually(
            &[
                "get",
                "pod",
                "-n",
                "kube-system",
                "-l",
                "k8s-app=cilium",
                "--field-selector",
                "spec.nodeName=k8s-w1",
                "-o",
                "jsonpath={.items[0].status.phase}",
            ],
            std::time::Duration::from_secs(60),
            |out| out == want,
        )
    };
    // A node is lost only after its agent was Ready once.
    phase(&lab, "Running");
    let killed = lab.cilia(&["lab", "kill", "k8s-w1"]);
    assert!(killed.status.success(), "{}", text(&killed));
    phase(&lab, "Unknown");
    let out = guide(&lab, &["native-routing"], "alone, with k8s-w1 powered off");
    assert!(out.contains("reset: k8s-w1 is powered off; booting it"), "{out}");
    phase(&lab, "Running");
    guide(&lab, &[], "after the native-routing section alone");
    for section in ["lbipam", "l2"] {
        guide(&lab, &[section], "alone");
        guide(&lab, &[], &format!("after the {section} section alone"));
    }
}
