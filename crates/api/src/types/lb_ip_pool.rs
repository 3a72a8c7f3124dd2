//! CiliumLoadBalancerIPPool (cilium.io/v2; v2alpha1 accepted): the address ranges LB-IPAM hands out.

use serde::{Deserialize, Serialize};

use super::is_default;
use crate::meta::{Condition, LabelSelector, ObjectMeta};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LbIpPool {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: LbIpPoolSpec,
    #[serde(default, skip_serializing_if = "is_default")]
    pub status: LbIpPoolStatus,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LbIpPoolSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<IpBlock>,
    /// Absent: the pool serves every Service. Present: matched against the Service's labels plus the
    /// `io.kubernetes.service.namespace` / `io.kubernetes.service.name` pseudo-labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_selector: Option<LabelSelector>,
    /// `"Yes"` or `"No"`; only `"No"` reserves the first and last address of CIDR blocks.
    #[serde(default, rename = "allowFirstLastIPs", skip_serializing_if = "Option::is_none")]
    pub allow_first_last_ips: Option<String>,
    #[serde(default)]
    pub disabled: bool,
}

/// One block: a CIDR, or an inclusive start/stop range (stop optional: a single address).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpBlock {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LbIpPoolStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
