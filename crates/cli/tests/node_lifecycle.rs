//! A node that dies without saying goodbye leaves every Service within its membership lease's TTL
//! (10 s) plus a few seconds: its Node goes `Ready=Unknown`, its pods' endpoints stop being ready,
//! and requests from curl-pod all succeed again. When it boots, its pods come back into service.

mod common;

use std::time::{Duration, Instant};

use common::{TestLab, guide_manifest, text};

const WAIT: Duration = Duration::from_secs(90);

#[test]
fn a_killed_node_leaves_every_service_and_comes_back_with_its_pods() {
    let lab = TestLab::up("lost");
    lab.ok(&["config", "set", "routing-mode=tunnel", "auto-direct-node-routes=false"]);
    let manifests = format!("{}\n---\n{}", guide_manifest("webpod.yaml"), guide_manifest("curl-pod.yaml"));
    let out = lab.cilia_stdin(&["apply", "-f", "-"], &manifests);
    assert!(out.status.success(), "{}", text(&out));
    let three_ready = |o: &str| o.matches("\"ready\":true").count() == 3;
    lab.eventually(&["get", "endpointslices", "-o", "json"], WAIT, |o| three_ready(&o.replace(' ', "")));
    lab.eventually(&["exec", "curl-pod", "--", "curl", "-s", "-m", "2", "webpod"], WAIT, |o| o.contains("Hostname"));

    let killed = Instant::now();
    lab.ok(&["lab", "kill", "k8s-w0"]);
    lab.eventually(&["get", "node", "k8s-w0"], WAIT, |o| o.contains("NotReady"));
    // Twenty requests in a row, all answered, within the TTL plus 5 s of the failure.
    let mut streak = 0;
    while streak < 20 {
        assert!(killed.elapsed() < Duration::from_secs(15), "only {streak} requests in a row succeeded after 15 s");
        let out = lab.cilia(&["exec", "curl-pod", "--", "curl", "-s", "-m", "1", "webpod"]);
        streak = if String::from_utf8_lossy(&out.stdout).contains("Hostname: webpod-") { streak + 1 } else { 0 };
    }
    eprintln!("20 in a row {:.1} s after the failure", killed.elapsed().as_secs_f64());

    lab.ok(&["lab", "boot", "k8s-w0", "--wait"]);
    lab.eventually(&["get", "node", "k8s-w0"], WAIT, |o| o.contains(" Ready"));
    lab.eventually(&["get", "endpointslices", "-o", "json"], WAIT, |o| three_ready(&o.replace(' ', "")));
}
