//! The guide's LB-IPAM section end to end in a lab: pool, LoadBalancer Service, requested IP,
//! shared IP, with the guide's addresses, columns and counts (the guide runner checks each step).

mod common;

use common::{TestLab, text};

#[test]
fn guide_lbipam_section_passes_twice() {
    let lab = TestLab::up("lbi");
    for round in 1..=2 {
        let out = lab.cilia(&["lab", "guide", "topology", "lbipam"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "round {round}:\n{}", text(&out));
        assert!(stdout.contains(" 0 failed"), "round {round}:\n{stdout}");
        assert!(stdout.contains("192.168.10.245   8080:"), "round {round}: webpod-alt row missing:\n{stdout}");
    }
    let bad = lab.cilia(&["lab", "guide", "nope"]);
    assert!(
        !bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("sections: topology"),
        "{}",
        text(&bad)
    );
}
