//! Hubble's `-o json` / `-o jsonpb` output: one `GetFlowsResponse` per line in protobuf's JSON
//! mapping with the proto field names (`pod_name`, `traffic_direction`, `l4.TCP.flags`), enums by
//! name, timestamps in RFC 3339, and zero values left out, as protojson does.

use serde_json::{Map, Value, json};

use crate::model::{Endpoint, Flow, Layer4, Service, TcpFlags};
use crate::summary::summary;

/// Protobuf's JSON form of a timestamp: RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits.
pub fn timestamp(time: &chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// The `GetFlowsResponse` for `flow` as one JSON object.
pub fn flow_response(flow: &Flow) -> Value {
    let mut response = Map::new();
    response.insert("flow".into(), flow_json(flow));
    put_str(&mut response, "node_name", &flow.node_name);
    response.insert("time".into(), Value::String(timestamp(&flow.time)));
    Value::Object(response)
}

/// The `flow.Flow` message as JSON.
pub fn flow_json(flow: &Flow) -> Value {
    let mut f = Map::new();
    f.insert("time".into(), Value::String(timestamp(&flow.time)));
    put_str(&mut f, "uuid", &flow.uuid);
    if flow.verdict as i32 != 0 {
        f.insert("verdict".into(), json!(flow.verdict.name()));
    }
    if flow.drop_reason_desc.0 != 0 {
        // The deprecated numeric field, still printed by Hubble next to the named one.
        f.insert("drop_reason".into(), json!(flow.drop_reason_desc.0));
    }
    if let Some(ip) = &flow.ip {
        let mut m = Map::new();
        m.insert("source".into(), json!(ip.source.to_string()));
        m.insert("destination".into(), json!(ip.destination.to_string()));
        let version = match ip.ip_version() {
            crate::model::IpVersion::Ipv6 => "IPv6",
            _ => "IPv4",
        };
        m.insert("ipVersion".into(), json!(version));
        if ip.encrypted {
            m.insert("encrypted".into(), json!(true));
        }
        f.insert("IP".into(), Value::Object(m));
    }
    if let Some(l4) = &flow.l4 {
        f.insert("l4".into(), l4_json(l4));
    }
    put_obj(&mut f, "source", endpoint_json(&flow.source));
    put_obj(&mut f, "destination", endpoint_json(&flow.destination));
    if flow.flow_type as i32 != 0 {
        f.insert("Type".into(), json!(flow.flow_type.name()));
    }
    put_str(&mut f, "node_name", &flow.node_name);
    if flow.is_reply == Some(true) {
        f.insert("reply".into(), json!(true));
    }
    let mut et = Map::new();
    put_int(&mut et, "type", i64::from(flow.event_type.r#type));
    put_int(&mut et, "sub_type", i64::from(flow.event_type.sub_type));
    put_obj(&mut f, "event_type", et);
    if let Some(s) = &flow.source_service {
        put_obj(&mut f, "source_service", service_json(s));
    }
    if let Some(s) = &flow.destination_service {
        put_obj(&mut f, "destination_service", service_json(s));
    }
    if flow.traffic_direction as i32 != 0 {
        f.insert("traffic_direction".into(), json!(flow.traffic_direction.name()));
    }
    if flow.trace_observation_point as i32 != 0 {
        f.insert("trace_observation_point".into(), json!(flow.trace_observation_point.proto_name()));
    }
    if flow.drop_reason_desc.0 != 0 {
        // protojson prints an enum value it has no name for as its number.
        let v = match flow.drop_reason_desc.proto_name() {
            Some(name) => json!(name),
            None => json!(flow.drop_reason_desc.0),
        };
        f.insert("drop_reason_desc".into(), v);
    }
    if let Some(reply) = flow.is_reply {
        f.insert("is_reply".into(), json!(reply));
    }
    if let Some(iface) = &flow.interface {
        let mut m = Map::new();
        put_int(&mut m, "index", i64::from(iface.index));
        put_str(&mut m, "name", &iface.name);
        put_obj(&mut f, "interface", m);
    }
    f.insert("Summary".into(), json!(summary(flow)));
    Value::Object(f)
}

fn l4_json(l4: &Layer4) -> Value {
    let ports = |s: u16, d: u16| {
        let mut m = Map::new();
        put_int(&mut m, "source_port", i64::from(s));
        put_int(&mut m, "destination_port", i64::from(d));
        m
    };
    let icmp = |t: u8, c: u8| {
        let mut m = Map::new();
        put_int(&mut m, "type", i64::from(t));
        put_int(&mut m, "code", i64::from(c));
        Value::Object(m)
    };
    match *l4 {
        Layer4::Tcp { source_port, destination_port, flags } => {
            let mut m = ports(source_port, destination_port);
            put_obj(&mut m, "flags", flags_json(flags));
            json!({ "TCP": m })
        }
        Layer4::Udp { source_port, destination_port } => json!({ "UDP": ports(source_port, destination_port) }),
        Layer4::Sctp { source_port, destination_port } => json!({ "SCTP": ports(source_port, destination_port) }),
        Layer4::Icmpv4 { r#type, code } => json!({ "ICMPv4": icmp(r#type, code) }),
        Layer4::Icmpv6 { r#type, code } => json!({ "ICMPv6": icmp(r#type, code) }),
    }
}

fn flags_json(flags: TcpFlags) -> Map<String, Value> {
    let mut m = Map::new();
    for (set, name) in [
        (flags.fin, "FIN"),
        (flags.syn, "SYN"),
        (flags.rst, "RST"),
        (flags.psh, "PSH"),
        (flags.ack, "ACK"),
        (flags.urg, "URG"),
        (flags.ece, "ECE"),
        (flags.cwr, "CWR"),
        (flags.ns, "NS"),
    ] {
        if set {
            m.insert(name.into(), json!(true));
        }
    }
    m
}

fn endpoint_json(ep: &Endpoint) -> Map<String, Value> {
    let mut m = Map::new();
    put_int(&mut m, "ID", i64::from(ep.id));
    put_int(&mut m, "identity", i64::from(ep.identity));
    put_str(&mut m, "namespace", &ep.namespace);
    if !ep.labels.is_empty() {
        m.insert("labels".into(), json!(ep.labels));
    }
    put_str(&mut m, "pod_name", &ep.pod_name);
    m
}

fn service_json(s: &Service) -> Map<String, Value> {
    let mut m = Map::new();
    put_str(&mut m, "name", &s.name);
    put_str(&mut m, "namespace", &s.namespace);
    m
}

fn put_str(m: &mut Map<String, Value>, key: &str, v: &str) {
    if !v.is_empty() {
        m.insert(key.into(), json!(v));
    }
}

fn put_int(m: &mut Map<String, Value>, key: &str, v: i64) {
    if v != 0 {
        m.insert(key.into(), json!(v));
    }
}

fn put_obj(m: &mut Map<String, Value>, key: &str, v: Map<String, Value>) {
    if !v.is_empty() {
        m.insert(key.into(), Value::Object(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{curl_to_webpod, drop_no_backend};

    #[test]
    fn parses_with_hubble_field_names() {
        let line = flow_response(&curl_to_webpod()).to_string();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["flow"]["source"]["pod_name"], "curl-pod");
        assert_eq!(v["flow"]["source"]["namespace"], "default");
        assert_eq!(v["flow"]["source"]["identity"], 14553);
        assert_eq!(v["flow"]["destination"]["pod_name"], "webpod-697b545f57-lq7nw");
        assert_eq!(v["flow"]["verdict"], "FORWARDED");
        assert_eq!(v["flow"]["traffic_direction"], "EGRESS");
        assert_eq!(v["flow"]["trace_observation_point"], "TO_OVERLAY");
        assert_eq!(v["flow"]["l4"]["TCP"]["source_port"], 40372);
        assert_eq!(v["flow"]["l4"]["TCP"]["destination_port"], 80);
        assert_eq!(v["flow"]["l4"]["TCP"]["flags"]["ACK"], true);
        assert_eq!(v["flow"]["l4"]["TCP"]["flags"]["FIN"], true);
        assert!(v["flow"]["l4"]["TCP"]["flags"].get("SYN").is_none());
        assert_eq!(v["flow"]["IP"]["source"], "10.244.1.5");
        assert_eq!(v["flow"]["IP"]["ipVersion"], "IPv4");
        assert_eq!(v["flow"]["Type"], "L3_L4");
        assert_eq!(v["flow"]["event_type"]["type"], 4);
        assert_eq!(v["flow"]["event_type"]["sub_type"], 4);
        assert_eq!(v["flow"]["is_reply"], false);
        assert_eq!(v["flow"]["destination_service"]["name"], "webpod");
        assert_eq!(v["flow"]["Summary"], "TCP Flags: ACK, FIN");
        assert_eq!(v["node_name"], "k8s-w1");
        assert_eq!(v["time"], "2026-08-09T14:06:08.749318Z");
    }

    #[test]
    fn interface_by_index_and_name() {
        let mut flow = curl_to_webpod();
        flow.interface = Some(crate::model::NetworkInterface { index: 7, name: "cilia_vxlan".into() });
        let v = flow_response(&flow);
        assert_eq!(v["flow"]["interface"]["index"], 7);
        assert_eq!(v["flow"]["interface"]["name"], "cilia_vxlan");
        // The compact line stays Hubble's: no device in it.
        assert!(!crate::compact::compact_line(&flow, false).contains("cilia_vxlan"));
        assert!(flow_response(&curl_to_webpod())["flow"].get("interface").is_none());
    }

    #[test]
    fn drop_has_reason_by_name_and_number() {
        let v = flow_response(&drop_no_backend());
        assert_eq!(v["flow"]["verdict"], "DROPPED");
        assert_eq!(v["flow"]["drop_reason_desc"], "SERVICE_BACKEND_NOT_FOUND");
        assert_eq!(v["flow"]["drop_reason"], 158);
        assert_eq!(v["flow"]["event_type"]["type"], 1);
        assert_eq!(v["flow"]["event_type"]["sub_type"], 158);
        // Zero values are left out, as protojson does.
        assert!(v["flow"].get("trace_observation_point").is_none());
        assert!(v["flow"]["destination"].get("pod_name").is_none());
    }
}
