//! Hubble's observe flags turned into `FlowFilter`s, as `hubble/cmd/observe/flows_filter.go`
//! does.
//!
//! Flags that name one side (`--protocol`, `--verdict`, `--node`, `--type`, and the `--from-*` /
//! `--to-*` flags) go into every filter. Flags that name either side (`--pod`, `--namespace`,
//! `--label`, `--ip`, `--port`) fill the source field of a "left" filter and the destination
//! field of a "right" one; the request then keeps a flow matched by either, and a single filter
//! is sent when both sides came out identical. `--not` sends the next flag to a second set of
//! the same flags, which becomes the request's blacklist ([`FilterFlags::request_filters`]).

use crate::filter::{EventTypeFilter, FlowFilter};
use crate::model::{EventType, TraceObservationPoint, Verdict};

/// The filter flags of `cilia observe` / `hubble observe`. Repeating a flag ORs its values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterFlags {
    /// `[ns/]pod-name-prefix` on either side; the namespace defaults to `default`.
    pub pods: Vec<String>,
    /// `[ns/]pod-name-prefix` of the source.
    pub from_pods: Vec<String>,
    /// `[ns/]pod-name-prefix` of the destination.
    pub to_pods: Vec<String>,
    pub namespaces: Vec<String>,
    pub from_namespaces: Vec<String>,
    pub to_namespaces: Vec<String>,
    /// Label selectors (`k=v`, `k8s:k=v`, ...).
    pub labels: Vec<String>,
    pub from_labels: Vec<String>,
    pub to_labels: Vec<String>,
    /// Addresses or CIDRs.
    pub ips: Vec<String>,
    pub from_ips: Vec<String>,
    pub to_ips: Vec<String>,
    pub protocols: Vec<String>,
    pub ports: Vec<String>,
    /// Verdict names (`FORWARDED`, `DROPPED`, ...), any case.
    pub verdicts: Vec<String>,
    /// Node names or `*` patterns.
    pub nodes: Vec<String>,
    /// `TYPE[:SUBTYPE]`: `trace`, `trace:to-overlay`, `drop`, `drop:158`, ...
    pub types: Vec<String>,
}

/// `[ns/]pod` with Hubble's default namespace.
fn namespaced_pod(pod: &str) -> String {
    if pod.contains('/') { pod.to_string() } else { format!("default/{pod}") }
}

/// `ns/`, the pod filter that matches a whole namespace.
fn namespace_pattern(ns: &str) -> Result<String, String> {
    if ns.is_empty() || ns.contains('/') {
        return Err(format!("invalid namespace {ns:?}"));
    }
    Ok(format!("{ns}/"))
}

impl FilterFlags {
    /// The whitelist and blacklist of a request: `allowed` are the flags given plainly,
    /// `denied` those given after `--not`.
    pub fn request_filters(
        allowed: &FilterFlags,
        denied: &FilterFlags,
    ) -> Result<(Vec<FlowFilter>, Vec<FlowFilter>), String> {
        Ok((allowed.to_filters()?, denied.to_filters()?))
    }

    /// The filters these flags describe (empty when no flag is set).
    pub fn to_filters(&self) -> Result<Vec<FlowFilter>, String> {
        let mut left = FlowFilter::default();
        let mut right = FlowFilter::default();
        for pod in &self.pods {
            left.source_pod.push(namespaced_pod(pod));
            right.destination_pod.push(namespaced_pod(pod));
        }
        for ns in &self.namespaces {
            left.source_pod.push(namespace_pattern(ns)?);
            right.destination_pod.push(namespace_pattern(ns)?);
        }
        for label in &self.labels {
            left.source_label.push(label.clone());
            right.destination_label.push(label.clone());
        }
        for ip in &self.ips {
            left.source_ip.push(ip.clone());
            right.destination_ip.push(ip.clone());
        }
        for port in &self.ports {
            left.source_port.push(port.clone());
            right.destination_port.push(port.clone());
        }
        for side in [&mut left, &mut right] {
            side.source_pod.extend(self.from_pods.iter().map(|p| namespaced_pod(p)));
            side.destination_pod.extend(self.to_pods.iter().map(|p| namespaced_pod(p)));
            for ns in &self.from_namespaces {
                side.source_pod.push(namespace_pattern(ns)?);
            }
            for ns in &self.to_namespaces {
                side.destination_pod.push(namespace_pattern(ns)?);
            }
            side.source_label.extend(self.from_labels.iter().cloned());
            side.destination_label.extend(self.to_labels.iter().cloned());
            side.source_ip.extend(self.from_ips.iter().cloned());
            side.destination_ip.extend(self.to_ips.iter().cloned());
            side.protocol.extend(self.protocols.iter().cloned());
            side.node_name.extend(self.nodes.iter().cloned());
            for v in &self.verdicts {
                side.verdict.push(Verdict::from_name(v).ok_or_else(|| format!("unknown verdict {v:?}"))?);
            }
            for t in &self.types {
                side.event_type.push(parse_event_type(t)?);
            }
        }
        left.check()?;
        right.check()?;
        if left == FlowFilter::default() {
            return Ok(Vec::new());
        }
        Ok(if left == right { vec![left] } else { vec![left, right] })
    }
}

/// `TYPE[:SUBTYPE]` as Hubble's `-t/--type` takes it.
pub fn parse_event_type(s: &str) -> Result<EventTypeFilter, String> {
    let (name, sub) = match s.split_once(':') {
        Some((n, sub)) => (n, Some(sub)),
        None => (s, None),
    };
    let r#type = match name {
        "drop" => EventType::DROP,
        "debug" => EventType::DEBUG,
        "capture" => EventType::CAPTURE,
        "trace" => EventType::TRACE,
        "policy-verdict" => EventType::POLICY_VERDICT,
        "trace-sock" => 7,
        "l7" => 129,
        _ => {
            return Err(format!(
                "unknown event type {name:?}: expected trace, drop, capture, debug, \
                 policy-verdict, trace-sock or l7"
            ));
        }
    };
    let sub_type = match sub {
        None => return Ok(EventTypeFilter { r#type, ..Default::default() }),
        Some(sub) => match (r#type, TraceObservationPoint::from_name(sub)) {
            (EventType::TRACE, Some(point)) => match point.datapath_number() {
                Some(n) => i32::from(n),
                None => return Err(format!("unknown trace sub-type {sub:?}")),
            },
            _ => sub.parse::<i32>().map_err(|_| format!("unknown {name} sub-type {sub:?}"))?,
        },
    };
    Ok(EventTypeFilter { r#type, match_sub_type: true, sub_type })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::is_selected;
    use crate::model::{Endpoint, Flow, Ip, Layer4, TcpFlags};
    use crate::testing::{curl_to_webpod, drop_no_backend};

    /// Flows where each flag has something to tell apart.
    fn corpus() -> Vec<Flow> {
        let a = curl_to_webpod();
        let b = drop_no_backend();
        let mut c = curl_to_webpod();
        c.source = Endpoint {
            id: 9,
            identity: 300,
            namespace: "kube-system".into(),
            labels: vec!["k8s:k8s-app=kube-dns".into()],
            pod_name: "coredns-abc".into(),
        };
        c.destination_service = None;
        c.destination = c.source.clone();
        c.l4 = Some(Layer4::Udp { source_port: 5353, destination_port: 53 });
        c.ip = Some(Ip {
            source: "10.244.3.9".parse().unwrap(),
            destination: "10.96.0.10".parse().unwrap(),
            encrypted: false,
        });
        c.node_name = "k8s-w2".into();
        let mut d = curl_to_webpod();
        d.l4 = Some(Layer4::Tcp { source_port: 80, destination_port: 40372, flags: TcpFlags::from_header_bits(0x12) });
        std::mem::swap(&mut d.source, &mut d.destination);
        if let Some(ip) = &mut d.ip {
            std::mem::swap(&mut ip.source, &mut ip.destination);
        }
        d.is_reply = Some(true);
        vec![a, b, c, d]
    }

    fn select(flags: FilterFlags) -> Vec<usize> {
        let wl = flags.to_filters().unwrap();
        corpus().iter().enumerate().filter(|(_, f)| is_selected(&wl, &[], f)).map(|(i, _)| i).collect()
    }

    fn flags() -> FilterFlags {
        FilterFlags::default()
    }

    /// The corpus indices `allowed` minus `denied` (the flags after `--not`) keep.
    fn select_not(allowed: FilterFlags, denied: FilterFlags) -> Vec<usize> {
        let (wl, bl) = FilterFlags::request_filters(&allowed, &denied).unwrap();
        corpus().iter().enumerate().filter(|(_, f)| is_selected(&wl, &bl, f)).map(|(i, _)| i).collect()
    }

    #[test]
    fn no_flag_selects_all() {
        assert_eq!(select(flags()), vec![0, 1, 2, 3]);
        assert!(flags().to_filters().unwrap().is_empty());
    }

    #[test]
    fn pod_selects_either_side() {
        assert_eq!(select(FilterFlags { pods: vec!["curl-pod".into()], ..flags() }), vec![0, 1, 3]);
        assert_eq!(select(FilterFlags { pods: vec!["default/webpod".into()], ..flags() }), vec![0, 3]);
        assert_eq!(select(FilterFlags { pods: vec!["kube-system/coredns".into()], ..flags() }), vec![2]);
        // Without a namespace the pod is looked for in `default`.
        assert_eq!(select(FilterFlags { pods: vec!["coredns".into()], ..flags() }), Vec::<usize>::new());
    }

    #[test]
    fn namespace_label_protocol_port() {
        assert_eq!(select(FilterFlags { namespaces: vec!["kube-system".into()], ..flags() }), vec![2]);
        assert_eq!(select(FilterFlags { namespaces: vec!["default".into()], ..flags() }), vec![0, 1, 3]);
        assert_eq!(select(FilterFlags { labels: vec!["app=webpod".into()], ..flags() }), vec![0, 3]);
        assert_eq!(select(FilterFlags { labels: vec!["k8s-app=kube-dns".into()], ..flags() }), vec![2]);
        assert_eq!(select(FilterFlags { protocols: vec!["udp".into()], ..flags() }), vec![2]);
        assert_eq!(select(FilterFlags { protocols: vec!["tcp".into()], ..flags() }), vec![0, 1, 3]);
        assert_eq!(select(FilterFlags { ports: vec!["53".into()], ..flags() }), vec![2]);
        assert_eq!(select(FilterFlags { ports: vec!["40372".into()], ..flags() }), vec![0, 3]);
    }

    #[test]
    fn verdict_node_type() {
        assert_eq!(select(FilterFlags { verdicts: vec!["dropped".into()], ..flags() }), vec![1]);
        assert_eq!(select(FilterFlags { verdicts: vec!["FORWARDED".into()], ..flags() }), vec![0, 2, 3]);
        assert_eq!(select(FilterFlags { nodes: vec!["k8s-w2".into()], ..flags() }), vec![2]);
        assert_eq!(select(FilterFlags { nodes: vec!["k8s-w*".into()], ..flags() }), vec![0, 2, 3]);
        assert_eq!(select(FilterFlags { types: vec!["drop".into()], ..flags() }), vec![1]);
        assert_eq!(select(FilterFlags { types: vec!["trace".into()], ..flags() }), vec![0, 2, 3]);
        assert_eq!(select(FilterFlags { types: vec!["trace:to-overlay".into()], ..flags() }), vec![0, 2, 3]);
        assert_eq!(select(FilterFlags { types: vec!["trace:to-endpoint".into()], ..flags() }), Vec::<usize>::new());
    }

    #[test]
    fn from_and_to_pods_select_one_side() {
        assert_eq!(select(FilterFlags { from_pods: vec!["curl-pod".into()], ..flags() }), vec![0, 1]);
        assert_eq!(select(FilterFlags { to_pods: vec!["curl-pod".into()], ..flags() }), vec![3]);
        assert_eq!(select(FilterFlags { to_pods: vec!["default/webpod".into()], ..flags() }), vec![0]);
        assert_eq!(select(FilterFlags { from_pods: vec!["kube-system/coredns".into()], ..flags() }), vec![2]);
        // Without a namespace the pod is looked for in `default`.
        assert_eq!(select(FilterFlags { from_pods: vec!["coredns".into()], ..flags() }), Vec::<usize>::new());
        let both = FilterFlags { from_pods: vec!["curl-pod".into()], to_pods: vec!["webpod".into()], ..flags() };
        assert_eq!(select(both), vec![0]);
    }

    #[test]
    fn from_and_to_namespaces_select_one_side() {
        assert_eq!(select(FilterFlags { from_namespaces: vec!["kube-system".into()], ..flags() }), vec![2]);
        assert_eq!(select(FilterFlags { to_namespaces: vec!["kube-system".into()], ..flags() }), vec![2]);
        assert_eq!(select(FilterFlags { from_namespaces: vec!["default".into()], ..flags() }), vec![0, 1, 3]);
        // The drop's destination is the world: in no namespace.
        assert_eq!(select(FilterFlags { to_namespaces: vec!["default".into()], ..flags() }), vec![0, 3]);
        assert!(FilterFlags { to_namespaces: vec!["a/b".into()], ..flags() }.to_filters().is_err());
    }

    #[test]
    fn from_and_to_labels_select_one_side() {
        assert_eq!(select(FilterFlags { from_labels: vec!["app=webpod".into()], ..flags() }), vec![3]);
        assert_eq!(select(FilterFlags { to_labels: vec!["app=webpod".into()], ..flags() }), vec![0]);
        assert_eq!(select(FilterFlags { from_labels: vec!["k8s:app=curl".into()], ..flags() }), vec![0, 1]);
        assert_eq!(select(FilterFlags { to_labels: vec!["k8s-app=kube-dns".into()], ..flags() }), vec![2]);
        assert!(FilterFlags { from_labels: vec![",".into()], ..flags() }.to_filters().is_err());
    }

    #[test]
    fn ips_select_either_or_one_side() {
        // curl-pod's address: the source of the request and the drop, the destination of the reply.
        assert_eq!(select(FilterFlags { ips: vec!["10.244.1.5".into()], ..flags() }), vec![0, 1, 3]);
        assert_eq!(select(FilterFlags { from_ips: vec!["10.244.1.5".into()], ..flags() }), vec![0, 1]);
        assert_eq!(select(FilterFlags { to_ips: vec!["10.244.1.5".into()], ..flags() }), vec![3]);
        assert_eq!(select(FilterFlags { to_ips: vec!["10.96.0.0/12".into()], ..flags() }), vec![1, 2]);
        assert_eq!(select(FilterFlags { ips: vec!["10.244.3.0/24".into()], ..flags() }), vec![2]);
        assert!(FilterFlags { from_ips: vec!["10.0.0.300".into()], ..flags() }.to_filters().is_err());
    }

    #[test]
    fn not_takes_away_what_the_next_flag_names() {
        let none = flags();
        assert_eq!(select_not(none.clone(), FilterFlags { pods: vec!["curl-pod".into()], ..flags() }), vec![2]);
        assert_eq!(
            select_not(none.clone(), FilterFlags { verdicts: vec!["DROPPED".into()], ..flags() }),
            vec![0, 2, 3]
        );
        assert_eq!(
            select_not(none.clone(), FilterFlags { to_pods: vec!["curl-pod".into()], ..flags() }),
            vec![0, 1, 2]
        );
        assert_eq!(select_not(none, FilterFlags { from_ips: vec!["10.244.1.5".into()], ..flags() }), vec![2, 3]);
        // `--pod curl-pod --not --verdict DROPPED`
        let pod = FilterFlags { pods: vec!["curl-pod".into()], ..flags() };
        assert_eq!(select_not(pod, FilterFlags { verdicts: vec!["DROPPED".into()], ..flags() }), vec![0, 3]);
        // Within one negated flag the values still OR: both namespaces are taken away.
        let namespaces = FilterFlags { namespaces: vec!["kube-system".into(), "default".into()], ..flags() };
        assert_eq!(select_not(flags(), namespaces), Vec::<usize>::new());
    }

    #[test]
    fn flags_and_together_values_or() {
        let both = FilterFlags { pods: vec!["curl-pod".into()], verdicts: vec!["DROPPED".into()], ..flags() };
        assert_eq!(select(both), vec![1]);
        let either = FilterFlags { protocols: vec!["udp".into(), "tcp".into()], ..flags() };
        assert_eq!(select(either), vec![0, 1, 2, 3]);
    }

    #[test]
    fn one_sided_flags_give_one_filter_two_sided_give_two() {
        let one = FilterFlags { protocols: vec!["tcp".into()], ..flags() }.to_filters().unwrap();
        assert_eq!(one.len(), 1);
        let two = FilterFlags { pods: vec!["curl-pod".into()], ..flags() }.to_filters().unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[0].source_pod, vec!["default/curl-pod".to_string()]);
        assert_eq!(two[1].destination_pod, vec!["default/curl-pod".to_string()]);
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(FilterFlags { verdicts: vec!["ALLOWED".into()], ..flags() }.to_filters().is_err());
        assert!(FilterFlags { types: vec!["tracing".into()], ..flags() }.to_filters().is_err());
        assert!(FilterFlags { types: vec!["trace:to-nowhere".into()], ..flags() }.to_filters().is_err());
        assert!(FilterFlags { ports: vec!["eighty".into()], ..flags() }.to_filters().is_err());
        assert!(FilterFlags { protocols: vec!["tpc".into()], ..flags() }.to_filters().is_err());
        assert_eq!(
            parse_event_type("trace:to-overlay").unwrap(),
            EventTypeFilter { r#type: 4, match_sub_type: true, sub_type: 4 }
        );
    }
}
