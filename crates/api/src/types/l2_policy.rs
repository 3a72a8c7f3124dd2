//! CiliumL2AnnouncementPolicy (cilium.io/v2alpha1): which nodes answer ARP for which Services' IPs,
//! on which interfaces.

use serde::{Deserialize, Serialize};

use super::is_default;
use crate::meta::{Condition, LabelSelector, ObjectMeta};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L2AnnouncementPolicy {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: L2AnnouncementPolicySpec,
    #[serde(default, skip_serializing_if = "is_default")]
    pub status: L2AnnouncementPolicyStatus,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L2AnnouncementPolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
    /// Regular expressions over interface names (`^eth[1-9]+`); empty means every interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    #[serde(default, rename = "externalIPs")]
    pub external_ips: bool,
    #[serde(default, rename = "loadBalancerIPs")]
    pub load_balancer_ips: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L2AnnouncementPolicyStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
