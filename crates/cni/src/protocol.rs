//! The plugin ⇄ agent protocol over the agent's root-only unix socket.
//!
//! One request per connection, each message one line of JSON:
//! ```text
//! plugin → agent  {"version":1,"command":"ADD","containerId":"…","netns":"/run/netns/…","ifname":"eth0",
//!                  "network":"cilia","args":{"K8S_POD_NAME":"…"},"mtu":1500}
//! agent → plugin  {"status":"ok","attachment":{…}}          (ADD; CHECK and DEL answer without attachment)
//!                 {"status":"error","code":102,"msg":"…","details":"…"}
//! ```
//! Error codes are CNI codes ([`crate::error::code`]), so the plugin prints them unchanged.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::env::Command;
use crate::error::CniError;

/// Bumped on incompatible changes; the agent refuses versions it does not know.
pub const PROTOCOL_VERSION: u32 = 1;

/// Upper bound of one message, so a confused peer cannot make the other side buffer forever.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// What the plugin asks the agent to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub version: u32,
    /// ADD, DEL or CHECK (VERSION never reaches the agent).
    pub command: Command,
    pub container_id: String,
    /// Path of the pod's network namespace; empty on DEL when the runtime has none.
    pub netns: String,
    pub ifname: String,
    /// The network's `name` from its configuration.
    pub network: String,
    /// CNI_ARGS (pod name and namespace from Kubernetes runtimes).
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// Device MTU from the network configuration; the agent's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// CHECK: the address the earlier ADD reported, to compare with the agent's record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_ip: Option<Ipv4Net>,
}

/// A network interface as reported to the runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    pub mac: String,
}

/// A route installed in the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRoute {
    pub dst: Ipv4Net,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<Ipv4Addr>,
}

/// How a pod was wired: what ADD reports to the runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// Host-side device (`lxc…`) in the node namespace.
    pub host_interface: Interface,
    /// Device inside the pod.
    pub pod_interface: Interface,
    /// The pod's namespace path (CNI `sandbox`).
    pub sandbox: String,
    /// The pod's address, a /32.
    pub ip: Ipv4Net,
    /// The router IP: the pod's gateway.
    pub gateway: Ipv4Addr,
    pub routes: Vec<PodRoute>,
    pub mtu: u32,
    /// The node that wired the pod.
    pub node: String,
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Response {
    Ok {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attachment: Option<Attachment>,
    },
    Error(CniError),
}

impl From<Result<Option<Attachment>, CniError>> for Response {
    fn from(r: Result<Option<Attachment>, CniError>) -> Self {
        match r {
            Ok(attachment) => Response::Ok { attachment },
            Err(e) => Response::Error(e),
        }
    }
}

/// Encodes a message as one line.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(msg).expect("protocol types always serialize");
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let req = Request {
            version: PROTOCOL_VERSION,
            command: Command::Add,
            container_id: "c1".into(),
            netns: "/run/netns/p".into(),
            ifname: "eth0".into(),
            network: "cilia".into(),
            args: BTreeMap::from([("K8S_POD_NAME".into(), "web".into())]),
            mtu: Some(1450),
            prev_ip: None,
        };
        let line = encode(&req);
        assert_eq!(*line.last().unwrap(), b'\n');
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.contains(r#""command":"ADD""#), "{text}");
        assert!(text.contains(r#""containerId":"c1""#), "{text}");
        let back: Request = serde_json::from_slice(&line).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn response_shapes() {
        let err = Response::Error(CniError::new(102, "taken"));
        let text = String::from_utf8(encode(&err)).unwrap();
        assert!(text.starts_with(r#"{"status":"error","code":102,"msg":"taken""#), "{text}");
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), err);
        let ok: Response = serde_json::from_str(r#"{"status":"ok"}"#).unwrap();
        assert_eq!(ok, Response::Ok { attachment: None });
    }
}
