//! CNI specification versions this plugin speaks.

/// Versions accepted in `cniVersion`, oldest first. CHECK exists from 0.4.0 on.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// The version reported by VERSION and used when the config's version is unknown.
pub const CURRENT_VERSION: &str = "1.0.0";

pub fn is_supported(version: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&version)
}

/// Results before 1.0.0 carry `"version": "4"` on each IP.
pub fn needs_ip_version_field(version: &str) -> bool {
    version.starts_with("0.")
}

/// CHECK was introduced by 0.4.0.
pub fn supports_check(version: &str) -> bool {
    !version.starts_with("0.3.")
}

/// The VERSION command's answer.
pub fn version_info_json() -> String {
    serde_json::json!({
        "cniVersion": CURRENT_VERSION,
        "supportedVersions": SUPPORTED_VERSIONS,
    })
    .to_string()
}
