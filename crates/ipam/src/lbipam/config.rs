//! Controller configuration, and which Services LB-IPAM is responsible for (spec §3.1).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use api::types::Service;

/// The load-balancer class of the BGP control plane.
pub const BGP_CONTROL_PLANE_CLASS: &str = "io.cilium/bgp-control-plane";
/// The load-balancer class of L2 announcements.
pub const L2_ANNOUNCER_CLASS: &str = "io.cilium/l2-announcer";

/// Returns "now" as an RFC 3339 timestamp, used for conditions' `lastTransitionTime`. Injected so
/// that tests are deterministic.
pub type Clock = Arc<dyn Fn() -> String + Send + Sync>;

/// Who assigns IPs to LoadBalancer Services that set no `loadBalancerClass`
/// (Cilium's `default-lb-service-ipam`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DefaultLbServiceIpam {
    /// LB-IPAM handles them.
    #[default]
    LbIpam,
    /// Node IPAM handles them; LB-IPAM leaves them alone.
    NodeIpam,
    /// Nobody does.
    None,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("default LB service IPAM {0:?} is not one of lbipam, nodeipam, none")]
pub struct UnknownDefaultIpam(pub String);

impl FromStr for DefaultLbServiceIpam {
    type Err = UnknownDefaultIpam;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lbipam" => Ok(DefaultLbServiceIpam::LbIpam),
            "nodeipam" => Ok(DefaultLbServiceIpam::NodeIpam),
            "none" => Ok(DefaultLbServiceIpam::None),
            other => Err(UnknownDefaultIpam(other.to_string())),
        }
    }
}

#[derive(Clone)]
pub struct LbIpamConfig {
    pub default_ipam: DefaultLbServiceIpam,
    /// The BGP control plane is enabled: LB-IPAM serves the class `io.cilium/bgp-control-plane`.
    pub bgp_control_plane: bool,
    /// L2 announcements are enabled: LB-IPAM serves the class `io.cilium/l2-announcer`.
    pub l2_announcements: bool,
    /// The cluster has IPv4 (`enable-ipv4`). Used to pick families for Services that do not say.
    pub ipv4: bool,
    /// The cluster has IPv6 (`enable-ipv6`).
    pub ipv6: bool,
    /// This proxy's name (`k8s-service-proxy-name`): Services labelled
    /// `service.kubernetes.io/service-proxy-name` are ours only if the label has this value.
    pub service_proxy_name: Option<String>,
    pub clock: Clock,
}

impl Default for LbIpamConfig {
    /// Cilium's defaults: LB-IPAM handles class-less Services, IPv4 only, neither BGP nor L2.
    fn default() -> Self {
        LbIpamConfig {
            default_ipam: DefaultLbServiceIpam::LbIpam,
            bgp_control_plane: false,
            l2_announcements: false,
            ipv4: true,
            ipv6: false,
            service_proxy_name: None,
            clock: Arc::new(api::meta::now_rfc3339),
        }
    }
}

impl fmt::Debug for LbIpamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LbIpamConfig")
            .field("default_ipam", &self.default_ipam)
            .field("bgp_control_plane", &self.bgp_control_plane)
            .field("l2_announcements", &self.l2_announcements)
            .field("ipv4", &self.ipv4)
            .field("ipv6", &self.ipv6)
            .field("service_proxy_name", &self.service_proxy_name)
            .finish_non_exhaustive()
    }
}

impl LbIpamConfig {
    /// The same configuration with a clock that always returns `now`.
    pub fn with_fixed_time(mut self, now: &str) -> Self {
        let now = now.to_string();
        self.clock = Arc::new(move || now.clone());
        self
    }

    /// The `loadBalancerClass` values LB-IPAM serves: a Cilium class only when its feature is on.
    pub fn lb_classes(&self) -> Vec<&'static str> {
        let mut classes = Vec::new();
        if self.bgp_control_plane {
            classes.push(BGP_CONTROL_PLANE_CLASS);
        }
        if self.l2_announcements {
            classes.push(L2_ANNOUNCER_CLASS);
        }
        classes
    }

    /// §3.1: only `type: LoadBalancer`; without a class only if LB-IPAM is the default; with a class
    /// only if it is one of ours. Everything else belongs to another implementation and is not
    /// touched. Services of another service proxy are invisible, as Cilium's Service informer
    /// filters them out.
    pub fn is_responsible(&self, svc: &Service) -> bool {
        if svc.type_() != "LoadBalancer" {
            return false;
        }
        if let Some(proxy) = svc.metadata.labels.get(api::labels::SERVICE_PROXY_NAME)
            && self.service_proxy_name.as_deref() != Some(proxy.as_str())
        {
            return false;
        }
        match svc.spec.load_balancer_class.as_deref() {
            None => self.default_ipam == DefaultLbServiceIpam::LbIpam,
            Some(class) => self.lb_classes().contains(&class),
        }
    }
}
