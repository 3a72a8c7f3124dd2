//! The network configuration a runtime passes on stdin.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{CniError, code};
use crate::version;

/// Where the agent listens unless the configuration says otherwise.
pub const DEFAULT_AGENT_SOCKET: &str = "/run/cilia/cni.sock";

/// The keys cilia-cni reads from the network configuration; unknown keys are ignored as the
/// specification asks (runtimes add `runtimeConfig`, `args`, `capabilities`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    pub cni_version: String,
    pub name: String,
    pub plugin_type: String,
    /// Unix socket of the node agent.
    pub agent_socket: PathBuf,
    /// Device MTU of the pod veth; the agent's own when absent.
    pub mtu: Option<u32>,
    /// DNS settings, passed through to the result unchanged.
    pub dns: Option<Value>,
    /// CHECK (and DEL) carry the result of the earlier ADD.
    pub prev_result: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    cni_version: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    plugin_type: Option<String>,
    agent_socket: Option<PathBuf>,
    mtu: Option<u32>,
    dns: Option<Value>,
    prev_result: Option<Value>,
    ipam: Option<Value>,
}

impl NetworkConfig {
    /// Parses stdin: not JSON → code 6; JSON but not a valid configuration → 7; an unknown
    /// `cniVersion` → 1; a request for IPAM delegation, which cilia does not do → 2.
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        let value: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(code::DECODING_FAILURE, "network configuration on stdin is not JSON")
                .with_details(e.to_string())
        })?;
        if !value.is_object() {
            return Err(CniError::new(code::INVALID_CONFIG, "network configuration must be a JSON object"));
        }
        let raw: Raw = serde_json::from_value(value).map_err(|e| {
            CniError::new(code::INVALID_CONFIG, "invalid network configuration").with_details(e.to_string())
        })?;
        let cni_version = raw
            .cni_version
            .ok_or_else(|| CniError::new(code::INVALID_CONFIG, "network configuration has no cniVersion"))?;
        if !version::is_supported(&cni_version) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!("cniVersion {cni_version} is not supported"),
            )
            .with_details(format!("supported: {}", version::SUPPORTED_VERSIONS.join(", "))));
        }
        let name = raw.name.ok_or_else(|| CniError::new(code::INVALID_CONFIG, "network configuration has no name"))?;
        if !valid_network_name(&name) {
            return Err(CniError::new(code::INVALID_CONFIG, format!("invalid network name {name:?}")));
        }
        let plugin_type =
            raw.plugin_type.ok_or_else(|| CniError::new(code::INVALID_CONFIG, "network configuration has no type"))?;
        if raw.ipam.as_ref().is_some_and(|ipam| ipam.get("type").is_some()) {
            return Err(CniError::new(
                code::UNSUPPORTED_FIELD,
                "ipam: cilia allocates pod addresses itself and delegates to no IPAM plugin",
            ));
        }
        if let Some(mtu) = raw.mtu
            && !(68..=65535).contains(&mtu)
        {
            return Err(CniError::new(code::INVALID_CONFIG, format!("mtu {mtu} is outside 68..=65535")));
        }
        Ok(NetworkConfig {
            cni_version,
            name,
            plugin_type,
            agent_socket: raw.agent_socket.unwrap_or_else(|| PathBuf::from(DEFAULT_AGENT_SOCKET)),
            mtu: raw.mtu,
            dns: raw.dns,
            prev_result: raw.prev_result,
        })
    }
}

/// Network names: alphanumerics, then alphanumerics, `_`, `.`, `-` (CNI 1.0 §"Configuration format").
fn valid_network_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Just the version, for tagging an error when the rest of the configuration is unusable.
pub fn sniff_version(stdin: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(stdin).ok()?;
    let v = value.get("cniVersion")?.as_str()?;
    version::is_supported(v).then(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_minimal_config() {
        let c =
            NetworkConfig::parse(br#"{"cniVersion":"1.0.0","name":"cilia","type":"cilia-cni","mtu":1450}"#).unwrap();
        assert_eq!(c.mtu, Some(1450));
        assert_eq!(c.agent_socket, PathBuf::from(DEFAULT_AGENT_SOCKET));
    }

    #[test]
    fn error_codes() {
        assert_eq!(NetworkConfig::parse(b"garbage{").unwrap_err().code, code::DECODING_FAILURE);
        assert_eq!(NetworkConfig::parse(b"[1]").unwrap_err().code, code::INVALID_CONFIG);
        assert_eq!(NetworkConfig::parse(br#"{"name":"x","type":"t"}"#).unwrap_err().code, code::INVALID_CONFIG);
        assert_eq!(
            NetworkConfig::parse(br#"{"cniVersion":"9.9.9","name":"x","type":"t"}"#).unwrap_err().code,
            code::INCOMPATIBLE_VERSION
        );
        assert_eq!(
            NetworkConfig::parse(br#"{"cniVersion":"1.0.0","name":"x","type":"t","mtu":"big"}"#).unwrap_err().code,
            code::INVALID_CONFIG
        );
        assert_eq!(
            NetworkConfig::parse(br#"{"cniVersion":"1.0.0","name":"x","type":"t","ipam":{"type":"host-local"}}"#)
                .unwrap_err()
                .code,
            code::UNSUPPORTED_FIELD
        );
        assert_eq!(
            NetworkConfig::parse(br#"{"cniVersion":"1.0.0","name":"-x","type":"t"}"#).unwrap_err().code,
            code::INVALID_CONFIG
        );
    }
}
