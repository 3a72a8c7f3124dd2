//! CNI error codes and the error object a plugin prints on failure.

use serde::{Deserialize, Serialize};

/// Error codes of the CNI 1.0 specification, and cilia's own (100 and up).
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables (CNI_COMMAND, CNI_CONTAINERID, ...).
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure, e.g. reading stdin.
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content (stdin is not JSON).
    pub const DECODING_FAILURE: u32 = 6;
    /// Invalid network configuration.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later: a transient condition (the agent is not reachable).
    pub const TRY_AGAIN_LATER: u32 = 11;

    /// The agent failed to configure the kernel.
    pub const AGENT_FAILURE: u32 = 100;
    /// The node's pod CIDR has no free address.
    pub const POD_CIDR_EXHAUSTED: u32 = 101;
    /// ADD for a container that already has an interface on this network.
    pub const ALREADY_ATTACHED: u32 = 102;
    /// The agent answered something this plugin does not understand.
    pub const PROTOCOL_ERROR: u32 = 103;
    /// CHECK found the pod's networking differs from what ADD set up.
    pub const CHECK_FAILED: u32 = 104;
}

/// The CNI error object: `{"cniVersion","code","msg","details"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("CNI error {code}: {msg}{}", if details.is_empty() { String::new() } else { format!(" ({details})") })]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError { code, msg: msg.into(), details: String::new() }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The JSON a plugin prints on stdout, tagged with the config's `cniVersion`.
    pub fn to_json(&self, cni_version: &str) -> String {
        serde_json::json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        })
        .to_string()
    }
}
