//! Brings the lab to the state the guide is in where a section starts, whatever ran before (a
//! previous run of the guide, one section, `cilia config set`, a killed node), and says what it
//! reset. Every step acts only where the lab differs and prints a `reset:` line for each change.
//!
//! The guide starts in native routing with auto direct node routes, no routes for the pod CIDRs
//! on the router, no LoadBalancer pool, Service or L2 policy, L2 announcements off and every
//! node up. It switches to VXLAN in the vxlan section and stays there: LB-IPAM, the services and
//! L2 announcements run in tunnel mode.

use std::time::Duration;

use super::runner::{Check, Section, Step, webpods_and_curl_pod_ready};

const WEBPOD: &str = include_str!("../../../../examples/guide/webpod.yaml");
const CURL_POD: &str = include_str!("../../../../examples/guide/curl-pod.yaml");

/// Index of the vxlan section in [`super::runner::sections`]: it and the sections before it start
/// in native routing, the later ones in tunnel mode.
const VXLAN: usize = 2;
/// Index of the lbipam section: from the start up to it, no LB-IPAM object exists yet.
const LBIPAM: usize = 3;
/// Index of the native-routing section, which deploys webpod and curl-pod.
const NATIVE_ROUTING: usize = 1;

/// The configuration (`key=value`, Cilium's ConfigMap keys) where section `index` starts.
fn routing(index: usize) -> &'static [&'static str] {
    if index <= VXLAN {
        &["routing-mode=native", "auto-direct-node-routes=true"]
    } else {
        &["routing-mode=tunnel", "tunnel-protocol=vxlan", "auto-direct-node-routes=false"]
    }
}

/// The steps that bring the lab to where section `index` starts; `from_scratch` for the first
/// section run (everything), otherwise only what skipped sections would have done (the routing
/// mode and the pods).
pub fn section(index: usize, from_scratch: bool) -> Section {
    let mut steps = Vec::new();
    if from_scratch {
        steps.push(Step::new(
            "Every node is up (a node powered off by `cilia lab kill` is booted)",
            "for n in $(cilia lab status | sed -n 's/.*killed: \\([a-z0-9-]*\\).*/\\1/p' | sort -u); do\n\
             \x20 echo \"reset: $n is powered off; booting it\"; cilia lab boot $n --wait > /dev/null || exit 1\n\
             done; echo \"every node is up\"",
            Check::Contains(vec!["every node is up".into()]),
        ));
        steps.push(Step::new(
            "The router has no route for the pod CIDRs (the native-routing workaround is removed)",
            "for c in 172.20.0.0/24 172.20.1.0/24 172.20.2.0/24; do\n\
             \x20 if [ -n \"$(cilia lab exec router -- ip route show $c)\" ]; then\n\
             \x20   cilia lab exec router -- ip route del $c && echo \"reset: removed the router's route to $c\"\n\
             \x20 fi\n\
             done; echo \"no pod routes on the router\"",
            Check::Contains(vec!["no pod routes on the router".into()]),
        ));
        if index <= LBIPAM {
            steps.push(Step::new(
                "No LoadBalancer pool, L2 policy or LoadBalancer Service yet",
                "for o in svc/webpod-alt ippools/cilium-lb-ippool l2announcement/policy1; do\n\
                 \x20 if cilia get $o > /dev/null 2>&1; then cilia delete $o > /dev/null && echo \"reset: deleted $o\"; fi\n\
                 done\n\
                 t=$(cilia get svc webpod -o jsonpath='{.spec.type}' 2>/dev/null)\n\
                 if [ -n \"$t\" ] && [ \"$t\" != ClusterIP ]; then\n\
                 \x20 cilia delete svc webpod > /dev/null && echo \"reset: deleted svc/webpod (type $t; the guide starts with a ClusterIP Service)\"\n\
                 fi; echo \"no LB-IPAM objects\"",
                Check::Contains(vec!["no LB-IPAM objects".into()]),
            ));
        }
    }
    let mut wanted: Vec<&str> = routing(index).to_vec();
    let l2_off = from_scratch.then_some("enable-l2-announcements=false");
    wanted.extend(l2_off);
    let mode = if index <= VXLAN { "native routing" } else { "VXLAN (tunnel) mode" };
    steps.push(
        Step::new(
            format!("The guide is in {mode} here{}", if from_scratch { ", L2 announcements off" } else { "" }),
            format!(
                "changes=()\n\
                 for kv in {}; do\n\
                 \x20 k=${{kv%%=*}}; v=${{kv#*=}}\n\
                 \x20 now=$(cilia config view | awk -v k=$k '$1==k{{print $2}}')\n\
                 \x20 if [ \"$now\" != \"$v\" ] && ! {{ [ \"$v\" = false ] && [ -z \"$now\" ]; }}; then\n\
                 \x20   echo \"reset: $k=${{now:-<unset>}} -> $v\"; changes+=(\"$kv\")\n\
                 \x20 fi\n\
                 done\n\
                 if [ ${{#changes[@]}} -gt 0 ]; then cilia config set \"${{changes[@]}}\" | tail -1 || exit 1; fi\n\
                 echo \"configuration as the guide's: {}\"",
                wanted.join(" "),
                wanted.join(" ")
            ),
            Check::Contains(vec!["configuration as the guide's".into()]),
        )
        .waiting(Duration::ZERO),
    );
    if index > NATIVE_ROUTING {
        steps.push(Step::new(
            "webpod and curl-pod are deployed, as the native-routing section left them",
            format!("cat <<'EOF' | cilia apply -f -\n{WEBPOD}---\n{CURL_POD}EOF"),
            Check::Contains(vec!["deployment.apps/webpod".into(), "pod/curl-pod".into()]),
        ));
        steps.push(
            Step::new("and ready", "cilia get pod -o wide", webpods_and_curl_pod_ready())
                .waiting(Duration::from_secs(60)),
        );
    }
    let title = if from_scratch {
        "Preparation: the lab as the guide starts (what differed is reset)"
    } else {
        "Preparation: the lab as the guide is where this section starts (sections in between skipped)"
    };
    Section { id: "reset", title, steps }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_name_the_sections() {
        let ids: Vec<&str> = super::super::runner::sections().iter().map(|s| s.id).collect();
        assert_eq!((ids[NATIVE_ROUTING], ids[VXLAN], ids[LBIPAM]), ("native-routing", "vxlan", "lbipam"));
        assert_eq!(routing(VXLAN)[0], "routing-mode=native", "the vxlan section starts in native routing");
        assert_eq!(routing(LBIPAM)[0], "routing-mode=tunnel", "and the guide stays in tunnel mode after it");
    }
}
