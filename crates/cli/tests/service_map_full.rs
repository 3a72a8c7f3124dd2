//! A full service map, end to end, as root, in a lab of its own in tunnel mode (torn down even on
//! panic): with `bpf-lb-map-max` small, more Services than fit are created at once. The oldest
//! are programmed and answer; the newest wait with `cilia.io/DatapathProgrammed=False` naming
//! every node; nothing stalls; deleting old Services makes room, and the waiting ones are
//! programmed and answer. Every request starts in a pod namespace.

mod common;

use std::time::{Duration, Instant};

use common::{TestLab, guide_manifest, text};

const WAIT: Duration = Duration::from_secs(60);
const SERVICES: usize = 30;
const CONDITION: &str = "cilia.io/DatapathProgrammed";

fn name(i: usize) -> String {
    format!("svc-{i:02}")
}

/// `SERVICES` ClusterIP Services over webpod's pods, created in one apply: the same creation
/// second, so their names order them.
fn services_manifest() -> String {
    (0..SERVICES)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: {}\nspec:\n  selector:\n    app: webpod\n  ports:\n  - port: 80\n",
                name(i)
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The condition's message on Service `svc`, empty when it has none.
fn left_out_message(lab: &TestLab, svc: &str) -> String {
    let path = format!("jsonpath={{.status.conditions[?(@.type==\"{CONDITION}\")].message}}");
    lab.ok(&["get", "svc", svc, "-o", &path]).trim().to_string()
}

fn answers(lab: &TestLab, svc: &str) -> bool {
    let ip = lab.ok(&["get", "svc", svc, "-o", "jsonpath={.spec.clusterIP}"]);
    let out = lab.cilia(&["exec", "curl-pod", "--", "curl", "-s", "-m", "2", &format!("http://{}/", ip.trim())]);
    out.status.success() && text(&out).contains("Hostname:")
}

#[test]
fn services_that_do_not_fit_wait_with_a_condition_and_get_room_when_others_go() {
    let lab = TestLab { name: format!("smf{}", std::process::id()) };
    let out = lab.cilia(&["lab", "up", "--routing-mode", "tunnel"]);
    assert!(out.status.success(), "lab up failed:\n{}", text(&out));
    let manifests = format!("{}\n---\n{}", guide_manifest("webpod.yaml"), guide_manifest("curl-pod.yaml"));
    assert!(lab.cilia_stdin(&["apply", "-f", "-"], &manifests).status.success());
    let out = lab.cilia(&["config", "set", "bpf-lb-map-max=128"]);
    assert!(out.status.success(), "config set:\n{}", text(&out));
    lab.eventually(&["exec", "curl-pod", "--", "curl", "-s", "-m", "2", "webpod"], WAIT, |o| o.contains("Hostname:"));

    let out = lab.cilia_stdin(&["apply", "-f", "-"], &services_manifest());
    assert!(out.status.success(), "apply:\n{}", text(&out));
    // Each Service takes five rows (frontend, three slots, ICMP echo): some of the 30 cannot fit.
    let deadline = Instant::now() + WAIT;
    let first_left_out = loop {
        let waiting: Vec<usize> = (0..SERVICES)
            .filter(|i| {
                let m = left_out_message(&lab, &name(*i));
                ["k8s-ctr", "k8s-w1", "k8s-w0"].iter().all(|n| m.contains(n))
            })
            .collect();
        if let Some(first) = waiting.first() {
            // The newest wait, all of them: every Service after the first that waits waits too.
            if waiting.len() == SERVICES - first {
                break *first;
            }
        }
        assert!(Instant::now() < deadline, "no Service waits on every node: {waiting:?}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(first_left_out > 2, "only {first_left_out} Services fit 128 rows");
    let message = left_out_message(&lab, &name(first_left_out));
    assert!(message.contains("bpf-lb-map-max"), "{message}");
    // The programmed ones answer and the rest of the datapath goes on; a waiting one has no
    // frontend.
    assert!(answers(&lab, &name(0)), "{} does not answer", name(0));
    assert!(answers(&lab, &name(first_left_out - 1)), "{} does not answer", name(first_left_out - 1));
    assert!(!answers(&lab, &name(SERVICES - 1)), "{} answers while left out", name(SERVICES - 1));

    // Old Services go: the first that waited gets their room, its condition goes, and it answers.
    for i in 0..4 {
        lab.ok(&["delete", "svc", &name(i)]);
    }
    let waited = name(first_left_out);
    let deadline = Instant::now() + WAIT;
    while !left_out_message(&lab, &waited).is_empty() {
        assert!(Instant::now() < deadline, "{waited} still waits after old Services went");
        std::thread::sleep(Duration::from_millis(300));
    }
    // Programmed on every node before its condition went; the pod's first request may still meet
    // a neighbour being resolved, so a few tries are allowed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !answers(&lab, &waited) {
        if Instant::now() > deadline {
            let ip = lab.ok(&["get", "svc", &waited, "-o", "jsonpath={.spec.clusterIP}"]);
            let lb = lab.ok(&["dbg", "k8s-ctr", "bpf", "lb", "list"]);
            panic!("{waited} ({ip}) does not answer once programmed; k8s-ctr's service map:\n{lb}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
