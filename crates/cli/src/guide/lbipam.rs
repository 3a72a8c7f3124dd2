//! "Service LoadBalancer와 LB-IPAM": a pool, a LoadBalancer Service, a requested IP, a shared IP.

use std::time::Duration;

use super::runner::{Check, Section, Step, contains};

const WEBPOD: &str = include_str!("../../../../examples/guide/webpod.yaml");
const POOL: &str = include_str!("../../../../examples/guide/lb-ippool.yaml");
const SHARING: &str = include_str!("../../../../examples/guide/webpod-sharing.yaml");
const L2_POLICY: &str = include_str!("../../../../examples/guide/l2-policy.yaml");

fn heredoc_apply(manifest: &str) -> String {
    format!("cat <<'EOF' | cilia apply -f -\n{}EOF", manifest)
}

/// The `get svc` row of `name`, split into columns.
fn service_row(out: &str, name: &str) -> Option<Vec<String>> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
}

fn expect_service(name: &'static str, external_ip: &'static str, port: &'static str) -> Check {
    Check::Output(Box::new(move |out| check_service_row(out, name, external_ip, port)))
}

fn check_service_row(out: &str, name: &str, external_ip: &str, port: &str) -> Result<(), String> {
    let row = service_row(out, name).ok_or_else(|| format!("no row for {name}"))?;
    // NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE
    if row.len() < 6 {
        return Err(format!("row {row:?} does not have the six columns of `get svc`"));
    }
    if row[1] != "LoadBalancer" {
        return Err(format!("TYPE is {}, expected LoadBalancer", row[1]));
    }
    if !row[2].starts_with("10.96.") {
        return Err(format!("CLUSTER-IP {} is not from the service CIDR 10.96.0.0/16", row[2]));
    }
    if row[3] != external_ip {
        return Err(format!("EXTERNAL-IP is {}, expected {external_ip}", row[3]));
    }
    let node_port_ok = row[4]
        .strip_prefix(&format!("{port}:"))
        .and_then(|r| r.strip_suffix("/TCP"))
        .and_then(|np| np.parse::<u16>().ok())
        .is_some_and(|np| (30000..=32767).contains(&np));
    if !node_port_ok {
        return Err(format!("PORT(S) is {}, expected {port}:<node port>/TCP", row[4]));
    }
    Ok(())
}

fn expect_pool_available(available: &'static str) -> Check {
    Check::Output(Box::new(move |out| {
        let header = out.lines().next().unwrap_or_default();
        if header.split_whitespace().collect::<Vec<_>>()
            != ["NAME", "DISABLED", "CONFLICTING", "IPS", "AVAILABLE", "AGE"]
        {
            return Err(format!("header {header:?} is not NAME DISABLED CONFLICTING IPS AVAILABLE AGE"));
        }
        let row = out
            .lines()
            .find(|l| l.starts_with("cilium-lb-ippool"))
            .ok_or("no row for cilium-lb-ippool")?
            .split_whitespace()
            .collect::<Vec<_>>();
        if row.get(1..4) != Some(&["false", "False", available][..]) {
            return Err(format!("row {row:?}: expected DISABLED false, CONFLICTING False, IPS AVAILABLE {available}"));
        }
        Ok(())
    }))
}

pub fn section() -> Section {
    let wait = Duration::from_secs(15);
    Section {
        id: "lbipam",
        title: "Service LoadBalancer and LB-IPAM",
        steps: vec![
            Step::new(
                "Deploy webpod (Deployment and ClusterIP Service)",
                heredoc_apply(WEBPOD),
                contains(["service/webpod"]),
            ),
            Step::new(
                "Create the LoadBalancer IP pool",
                heredoc_apply(POOL),
                contains(["ciliumloadbalancerippool.cilium.io/cilium-lb-ippool created"]),
            ),
            Step::new("The pool has five addresses available", "cilia get ippools", expect_pool_available("5"))
                .waiting(wait),
            Step::new(
                "Turn webpod into a LoadBalancer Service",
                r#"cilia patch svc webpod -p '{"spec":{"type":"LoadBalancer"}}'"#,
                contains(["service/webpod patched"]),
            ),
            Step::new(
                "webpod gets the pool's first address",
                "cilia get svc webpod",
                expect_service("webpod", "192.168.10.241", "80"),
            )
            .waiting(wait),
            Step::new(
                "The LoadBalancer IP through JSONPath",
                "LBIP=$(cilia get svc webpod -o jsonpath='{.status.loadBalancer.ingress[0].ip}'); echo $LBIP",
                contains(["192.168.10.241"]),
            ),
            Step::new("Four addresses remain", "cilia get ippools", expect_pool_available("4")).waiting(wait),
            Step::new(
                "Request a specific address",
                r#"cilia annotate svc webpod "lbipam.cilium.io/ips=192.168.10.245" --overwrite"#,
                contains(["service/webpod annotated"]),
            ),
            Step::new(
                "webpod moves to 192.168.10.245",
                "cilia get svc webpod",
                expect_service("webpod", "192.168.10.245", "80"),
            )
            .waiting(wait),
            Step::new(
                "Share one address between two Services on different ports",
                heredoc_apply(SHARING),
                contains(["service/webpod-alt created"]),
            ),
            Step::new(
                "webpod and webpod-alt both answer on 192.168.10.245",
                "cilia get svc | grep webpod",
                Check::Output(Box::new(|out| {
                    check_service_row(out, "webpod", "192.168.10.245", "80")?;
                    check_service_row(out, "webpod-alt", "192.168.10.245", "8080")
                })),
            )
            .waiting(wait),
            Step::new(
                "The L2 announcement policy applies unchanged",
                heredoc_apply(L2_POLICY),
                contains(["ciliuml2announcementpolicy.cilium.io/policy1"]),
            ),
            Step::new(
                "and reads back as written",
                "cilia get l2announcement policy1 -o yaml",
                contains(["kubernetes.io/hostname", "^eth[1-9]+", "loadBalancerIPs: true"]),
            ),
        ],
    }
}
