//! Hubble's observe flags turned into `FlowFilter`s, as `hubble/cmd/observe/flows.go` does.
//!
//! Flags that name one side (`--protocol`, `--verdict`, `--node`, `--type`) go into every filter.
//! Flags that name either side (`--pod`, `--namespace`, `--label`, `--port`) fill the source field
//! of a "left" filter and the destination field of a "right" one; the request then keeps a flow
//! matched by either, and a single filter is sent when both sides came out identical.

use crate::filter::{EventTypeFilter, FlowFilter};
use crate::model::{EventType, TraceObservationPoint, Verdict};

/// The filter flags of `cilia observe` / `hubble observe`. Repeating a flag ORs its values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterFlags {
    /// `[ns/]pod-name-prefix`; the namespace defaults to `default`.
    pub pods: Vec<String>,
    pub namespaces: Vec<String>,
    /// Label selectors (`k=v`, `k8s:k=v`, ...).
    pub labels: Vec<String>,
    pub protocols: Vec<String>,
    pub ports: Vec<String>,
    /// Verdict names (`FORWARDED`, `DROPPED`, ...), any case.
    pub verdicts: Vec<String>,
    /// Node names or `*` patterns.
    pub nodes: Vec<String>,
    /// `TYPE[:SUBTYPE]`: `trace`, `trace:to-overlay`, `drop`, `drop:158`, ...
    pub types: Vec<String>,
}

impl FilterFlags {
    /// The whitelist these flags describe (empty when no flag is set).
    pub fn to_filters(&self) -> Result<Vec<FlowFilter>, String> {
        let mut left = FlowFilter::default();
        let mut right = FlowFilter::default();
        for pod in &self.pods {
            let pod = if pod.contains('/') { pod.clone() } else { format!("default/{pod}") };
            left.source_pod.push(pod.clone());
            right.destination_pod.push(pod);
        }
        for ns in &self.namespaces {
            if ns.is_empty() || ns.contains('/') {
                return Err(format!("invalid namespace {ns:?}"));
            }
            left.source_pod.push(format!("{ns}/"));
            right.destination_pod.push(format!("{ns}/"));
        }
        for label in &self.labels {
            left.source_label.push(label.clone());
            right.destination_label.push(label.clone());
        }
        for port in &self.ports {
            left.source_port.push(port.clone());
            right.destination_port.push(port.clone());
        }
        for side in [&mut left, &mut right] {
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
    use crate::model::{Endpoint, Flow, Layer4, TcpFlags};
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
        c.node_name = "k8s-w2".into();
        let mut d = curl_to_webpod();
        d.l4 = Some(Layer4::Tcp { source_port: 80, destination_port: 40372, flags: TcpFlags::from_header_bits(0x12) });
        std::mem::swap(&mut d.source, &mut d.destination);
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
