//! kubectl's default table columns per kind, and its padding (columns separated by three spaces).

use api::{Condition, Object, ResourceKind, types};
use chrono::{DateTime, Utc};

use super::age::age;

/// Column headers for a kind; `wide` adds kubectl's `-o wide` columns.
pub fn headers(kind: &ResourceKind, wide: bool) -> Vec<&'static str> {
    let mut h: Vec<&'static str> = match kind.kind {
        "Pod" => vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "Service" => vec!["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"],
        "Node" => vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        "Deployment" => vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "Namespace" => vec!["NAME", "STATUS", "AGE"],
        "EndpointSlice" => vec!["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
        "Endpoints" => vec!["NAME", "ENDPOINTS", "AGE"],
        "Lease" => vec!["NAME", "HOLDER", "AGE"],
        "CiliumLoadBalancerIPPool" => vec!["NAME", "DISABLED", "CONFLICTING", "IPS AVAILABLE", "AGE"],
        _ => vec!["NAME", "AGE"],
    };
    if wide {
        match kind.kind {
            "Pod" => h.extend(["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]),
            "Service" => h.push("SELECTOR"),
            "Node" => h.extend(["INTERNAL-IP", "EXTERNAL-IP", "POD-CIDR"]),
            "Deployment" => h.extend(["CONTAINERS", "IMAGES", "SELECTOR"]),
            _ => {}
        }
    }
    h
}

/// One row for `obj`, matching [`headers`].
pub fn row(kind: &ResourceKind, obj: &Object, wide: bool, now: DateTime<Utc>) -> Vec<String> {
    let name = obj.name().to_string();
    let age = age(obj.metadata.creation_timestamp.as_deref(), now);
    match kind.kind {
        "Pod" => pod_row(obj, name, age, wide),
        "Service" => service_row(obj, name, age, wide),
        "Node" => node_row(obj, name, age, wide),
        "Deployment" => deployment_row(obj, name, age, wide),
        "Namespace" => {
            let phase = obj.lookup_path("status.phase").and_then(|v| v.as_str().map(str::to_string));
            vec![name, phase.unwrap_or_else(|| "Active".into()), age]
        }
        "EndpointSlice" => endpoint_slice_row(obj, name, age),
        "Endpoints" => vec![name, endpoints_column(obj), age],
        "Lease" => {
            let holder = obj.lookup_path("spec.holderIdentity").and_then(|v| v.as_str().map(str::to_string));
            vec![name, holder.unwrap_or_default(), age]
        }
        "CiliumLoadBalancerIPPool" => pool_row(obj, name, age),
        _ => vec![name, age],
    }
}

/// `ip:port` of every ready address and port, the first three and `+ N more...`, as kubectl
/// prints the ENDPOINTS column; `<none>` without any.
fn endpoints_column(obj: &Object) -> String {
    let mut all = Vec::new();
    let subsets = obj.lookup_path("subsets").and_then(|v| v.as_array().cloned()).unwrap_or_default();
    for subset in &subsets {
        let addresses = subset.get("addresses").and_then(|v| v.as_array().cloned()).unwrap_or_default();
        let ports = subset.get("ports").and_then(|v| v.as_array().cloned()).unwrap_or_default();
        for port in &ports {
            for a in &addresses {
                let ip = a.get("ip").and_then(|v| v.as_str()).unwrap_or_default();
                all.push(format!("{ip}:{}", port.get("port").and_then(|v| v.as_i64()).unwrap_or(0)));
            }
        }
    }
    match all.len() {
        0 => "<none>".into(),
        n if n <= 3 => all.join(","),
        n => format!("{} + {} more...", all[..3].join(","), n - 3),
    }
}

fn pod_row(obj: &Object, name: String, age: String, wide: bool) -> Vec<String> {
    let pod: types::Pod = obj.to_typed().unwrap_or_default();
    let total = pod.spec.containers.len().max(1);
    let ready = if pod.is_ready() { total } else { 0 };
    let status = if obj.metadata.deletion_timestamp.is_some() {
        "Terminating".to_string()
    } else {
        pod.status.reason.clone().or(pod.status.phase.clone()).unwrap_or_else(|| "Pending".into())
    };
    let mut row = vec![name, format!("{ready}/{total}"), status, "0".into(), age];
    if wide {
        row.push(pod.status.pod_ip.clone().unwrap_or_else(|| "<none>".into()));
        row.push(pod.spec.node_name.clone().unwrap_or_else(|| "<none>".into()));
        row.push("<none>".into());
        row.push("<none>".into());
    }
    row
}

fn service_row(obj: &Object, name: String, age: String, wide: bool) -> Vec<String> {
    let svc: types::Service = obj.to_typed().unwrap_or_default();
    let cluster_ip = svc.spec.cluster_ip.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "<none>".into());
    let mut external: Vec<String> = svc.status.load_balancer.ingress.iter().filter_map(|i| i.ip.clone()).collect();
    external.extend(svc.spec.external_ips.iter().cloned());
    let external = if !external.is_empty() {
        external.join(",")
    } else if svc.type_() == "LoadBalancer" {
        "<pending>".into()
    } else if svc.type_() == "ExternalName" {
        svc.spec.external_name.clone().unwrap_or_default()
    } else {
        "<none>".into()
    };
    let ports = if svc.spec.ports.is_empty() {
        "<none>".into()
    } else {
        svc.spec
            .ports
            .iter()
            .map(|p| match p.node_port {
                Some(np) => format!("{}:{np}/{}", p.port, p.protocol()),
                None => format!("{}/{}", p.port, p.protocol()),
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut row = vec![name, svc.type_().to_string(), cluster_ip, external, ports, age];
    if wide {
        row.push(match &svc.spec.selector {
            Some(sel) if !sel.is_empty() => sel.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
            _ => "<none>".into(),
        });
    }
    row
}

fn node_row(obj: &Object, name: String, age: String, wide: bool) -> Vec<String> {
    let node: types::Node = obj.to_typed().unwrap_or_default();
    let ready = Condition::find(&node.status.conditions, "Ready").map(|c| c.status.as_str());
    let status = match ready {
        Some("True") => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    };
    let roles: Vec<&str> =
        obj.metadata.labels.keys().filter_map(|k| k.strip_prefix(api::labels::NODE_ROLE_PREFIX)).collect();
    let roles = if roles.is_empty() { "<none>".to_string() } else { roles.join(",") };
    let version = obj.lookup_path("status.nodeInfo.kubeletVersion").and_then(|v| v.as_str().map(str::to_string));
    let mut row = vec![name, status.into(), roles, age, version.unwrap_or_else(|| "cilia".into())];
    if wide {
        row.push(node.internal_ip().unwrap_or("<none>").to_string());
        row.push("<none>".into());
        row.push(node.spec.pod_cidr.clone().unwrap_or_else(|| "<none>".into()));
    }
    row
}

fn deployment_row(obj: &Object, name: String, age: String, wide: bool) -> Vec<String> {
    let d: types::Deployment = obj.to_typed().unwrap_or_default();
    let ready = d.status.ready_replicas.unwrap_or(0);
    let mut row = vec![
        name,
        format!("{ready}/{}", d.replicas()),
        d.status.updated_replicas.unwrap_or(0).to_string(),
        d.status.available_replicas.unwrap_or(0).to_string(),
        age,
    ];
    if wide {
        let containers = &d.spec.template.spec.containers;
        row.push(containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(","));
        row.push(containers.iter().map(|c| c.image.as_str()).collect::<Vec<_>>().join(","));
        row.push(d.spec.selector.match_labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","));
    }
    row
}

fn endpoint_slice_row(obj: &Object, name: String, age: String) -> Vec<String> {
    let slice: types::EndpointSlice = obj.to_typed().unwrap_or_default();
    let ports: Vec<String> = slice.ports.iter().filter_map(|p| p.port.map(|p| p.to_string())).collect();
    let addrs: Vec<&str> = slice.endpoints.iter().flat_map(|e| e.addresses.iter().map(String::as_str)).collect();
    let endpoints = if addrs.is_empty() {
        "<unset>".to_string()
    } else if addrs.len() > 3 {
        format!("{} + {} more...", addrs[..3].join(","), addrs.len() - 3)
    } else {
        addrs.join(",")
    };
    let ports = if ports.is_empty() { "<unset>".into() } else { ports.join(",") };
    vec![name, slice.address_type, ports, endpoints, age]
}

fn pool_row(obj: &Object, name: String, age: String) -> Vec<String> {
    let pool: types::LbIpPool = obj.to_typed().unwrap_or_default();
    let conds = &pool.status.conditions;
    let conflicting = Condition::find(conds, "cilium.io/PoolConflict").map(|c| c.status.clone());
    let available = Condition::find(conds, "cilium.io/IPsAvailable").map(|c| c.message.clone());
    vec![name, pool.spec.disabled.to_string(), conflicting.unwrap_or_default(), available.unwrap_or_default(), age]
}

/// Pads columns like kubectl's tabwriter: each column as wide as its widest cell, three spaces apart,
/// no trailing spaces.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let widths = widths(headers, rows);
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    std::iter::once(&header_row).chain(rows).map(|row| render_row(row, &widths)).collect()
}

/// The width of each column: its widest cell, header included.
pub fn widths(headers: &[&str], rows: &[Vec<String>]) -> Vec<usize> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    widths
}

/// One line: each cell padded to its column's width, then three spaces. A cell wider than its
/// column (a row printed after the table, by `get -w`) pushes the rest of its line right.
pub fn render_row(row: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (i, cell) in row.iter().enumerate() {
        line.push_str(cell);
        if i + 1 < row.len() {
            let width = widths.get(i).copied().unwrap_or(0);
            let pad = width.saturating_sub(cell.chars().count()) + 3;
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    let mut line = line.trim_end().to_string();
    line.push('\n');
    line
}

/// `-A` prepends a NAMESPACE column for namespaced kinds.
pub fn with_namespace(kind: &ResourceKind, all_namespaces: bool) -> bool {
    all_namespaces && kind.namespaced
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::kinds;

    #[test]
    fn pool_and_service_rows_match_the_guide() {
        let now = Utc::now();
        let created = (now - chrono::Duration::seconds(14)).to_rfc3339();
        let pool = Object::from_value(serde_json::json!({
            "apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool",
            "metadata": {"name": "cilium-lb-ippool", "creationTimestamp": created},
            "spec": {"blocks": [{"start": "192.168.10.241", "stop": "192.168.10.245"}]},
            "status": {"conditions": [
                {"type": "cilium.io/IPsAvailable", "status": "Unknown", "message": "5"},
                {"type": "cilium.io/PoolConflict", "status": "False"}]}
        }))
        .unwrap();
        let out = render(&headers(&kinds::LB_IP_POOL, false), &[row(&kinds::LB_IP_POOL, &pool, false, now)]);
        assert_eq!(
            out,
            "NAME               DISABLED   CONFLICTING   IPS AVAILABLE   AGE\ncilium-lb-ippool   false      False         5               14s\n"
        );
        let svc = Object::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "webpod", "namespace": "default", "creationTimestamp": created},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.41.64", "ports": [{"port": 80, "nodePort": 32353}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.10.241"}]}}
        }))
        .unwrap();
        let out = render(&headers(&kinds::SERVICE, false), &[row(&kinds::SERVICE, &svc, false, now)]);
        assert_eq!(
            out,
            "NAME     TYPE           CLUSTER-IP    EXTERNAL-IP      PORT(S)        AGE\nwebpod   LoadBalancer   10.96.41.64   192.168.10.241   80:32353/TCP   14s\n"
        );
    }
}
