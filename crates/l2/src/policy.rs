//! `CiliumL2AnnouncementPolicy` compiled into what the assignment evaluates: which Services (and
//! which of their addresses), which nodes, which interfaces.
//!
//! Compilation checks the three parts a policy can get wrong independently and reports each as its
//! own problem, keyed by the status condition type Cilium uses; a policy with any problem is not
//! applied at all (as in Cilium), but its problems are reported together so one status write shows
//! them all.

use std::{collections::BTreeMap, fmt, net::IpAddr};

use api::{LabelSelector, Object, Selector};
use regex::Regex;
use serde_json::Value;

use crate::service::ServiceInfo;

/// The only `spec.loadBalancerClass` (besides none) a Service may have to be announced.
pub const L2_ANNOUNCER_CLASS: &str = "io.cilium/l2-announcer";
/// Pseudo-label carrying the Service's name, matched by service selectors.
pub const SERVICE_NAME_PSEUDO_LABEL: &str = "io.kubernetes.service.name";

/// The three things in a policy that can be wrong, each with its status condition type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProblemKind {
    /// `spec.serviceSelector` does not compile.
    BadServiceSelector,
    /// `spec.nodeSelector` does not compile.
    BadNodeSelector,
    /// An entry of `spec.interfaces` is not a valid regular expression.
    BadInterfaceRegex,
}

impl ProblemKind {
    /// Every kind, in the order conditions are written.
    pub const ALL: [ProblemKind; 3] =
        [ProblemKind::BadNodeSelector, ProblemKind::BadInterfaceRegex, ProblemKind::BadServiceSelector];

    /// The `status.conditions[].type` Cilium uses for this problem.
    pub fn condition_type(self) -> &'static str {
        match self {
            ProblemKind::BadServiceSelector => "io.cilium/bad-service-selector",
            ProblemKind::BadNodeSelector => "io.cilium/bad-node-selector",
            ProblemKind::BadInterfaceRegex => "io.cilium/bad-interface-regex",
        }
    }
}

/// One thing wrong with a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Which part (and so which condition).
    pub kind: ProblemKind,
    /// Why, for the condition's message.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.condition_type(), self.message)
    }
}

/// A policy ready to evaluate. Absent selectors select everything, as in Cilium.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    /// The policy's name (it is cluster-scoped).
    pub name: String,
    /// Matched against a Service's labels plus the two pseudo-labels; `None` selects every Service.
    pub service_selector: Option<Selector>,
    /// Matched against a Node's labels; `None` selects every node.
    pub node_selector: Option<Selector>,
    /// Interface-name regexes, OR-ed; empty means every interface the node reports.
    pub interfaces: Vec<Regex>,
    /// Announce `status.loadBalancer.ingress[].ip`.
    pub load_balancer_ips: bool,
    /// Announce `spec.externalIPs`.
    pub external_ips: bool,
}

/// What compiling a policy gives: the policy, or every problem it has.
pub type Compiled = Result<CompiledPolicy, Vec<Problem>>;

impl CompiledPolicy {
    /// Compiles a stored `CiliumL2AnnouncementPolicy`.
    ///
    /// Each part of `spec` is read on its own, so that a malformed service selector is reported as
    /// `io.cilium/bad-service-selector` and not as a failure of the whole object, and so that the
    /// other parts are still checked and reported in the same pass. The two booleans default to
    /// false (a value that is not a boolean counts as false: the API refuses it anyway).
    pub fn compile(object: &Object) -> Compiled {
        let empty = serde_json::Map::new();
        let spec = object.field("spec").and_then(Value::as_object).unwrap_or(&empty);
        let mut problems = Vec::new();

        let service_selector = selector(spec.get("serviceSelector"))
            .map_err(|message| problems.push(Problem { kind: ProblemKind::BadServiceSelector, message }))
            .ok()
            .flatten();
        let node_selector = selector(spec.get("nodeSelector"))
            .map_err(|message| problems.push(Problem { kind: ProblemKind::BadNodeSelector, message }))
            .ok()
            .flatten();
        let interfaces = interface_regexes(spec.get("interfaces"))
            .map_err(|message| problems.push(Problem { kind: ProblemKind::BadInterfaceRegex, message }))
            .unwrap_or_default();

        if !problems.is_empty() {
            return Err(problems);
        }
        let flag = |name: &str| spec.get(name).and_then(Value::as_bool).unwrap_or(false);
        Ok(CompiledPolicy {
            name: object.name().to_string(),
            service_selector,
            node_selector,
            interfaces,
            load_balancer_ips: flag("loadBalancerIPs"),
            external_ips: flag("externalIPs"),
        })
    }

    /// Whether the policy applies to a node with these labels.
    pub fn selects_node(&self, node_labels: &BTreeMap<String, String>) -> bool {
        self.node_selector.as_ref().is_none_or(|s| s.matches(node_labels))
    }

    /// Whether an interface name matches the policy. Matching is **unanchored**, as Go's
    /// `regexp.MatchString` in Cilium: `eth0` also matches `veth0x`; write `^eth0$` for one name.
    pub fn matches_interface(&self, name: &str) -> bool {
        self.interfaces.is_empty() || self.interfaces.iter().any(|re| re.is_match(name))
    }

    /// The Service's addresses this policy announces: none if its class is not ours or the service
    /// selector does not match; else its LoadBalancer IPs if `loadBalancerIPs`, and its external IPs
    /// if `externalIPs` (both false gives nothing, as in Cilium). `selection_labels` must be
    /// [`selection_labels`] of the Service (taken once per Service by callers that loop).
    pub fn ips_for<'s>(
        &self,
        svc: &'s ServiceInfo,
        selection_labels: &BTreeMap<String, String>,
    ) -> impl Iterator<Item = IpAddr> + 's {
        let selected =
            class_accepted(svc) && self.service_selector.as_ref().is_none_or(|s| s.matches(selection_labels));
        let lb = (selected && self.load_balancer_ips).then_some(svc.lb_ips.iter()).into_iter().flatten();
        let ext = (selected && self.external_ips).then_some(svc.external_ips.iter()).into_iter().flatten();
        lb.chain(ext).copied()
    }

    /// Whether the policy selects the Service, i.e. yields at least one of its addresses.
    pub fn selects_service(&self, svc: &ServiceInfo) -> bool {
        self.ips_for(svc, &selection_labels(svc)).next().is_some()
    }
}

/// Compiles one stored policy: [`CompiledPolicy::compile`].
pub fn compile(object: &Object) -> Compiled {
    CompiledPolicy::compile(object)
}

/// Compiles every stored policy: the ones that apply, and the problems of the others by policy
/// name (what the operator turns into status conditions).
pub fn compile_all(objects: &[Object]) -> (Vec<CompiledPolicy>, BTreeMap<String, Vec<Problem>>) {
    let mut ok = Vec::new();
    let mut bad = BTreeMap::new();
    for object in objects {
        match CompiledPolicy::compile(object) {
            Ok(p) => ok.push(p),
            Err(problems) => {
                bad.insert(object.name().to_string(), problems);
            }
        }
    }
    (ok, bad)
}

/// `spec.loadBalancerClass` unset or exactly [`L2_ANNOUNCER_CLASS`]: any other class belongs to
/// another load-balancer implementation.
pub fn class_accepted(svc: &ServiceInfo) -> bool {
    svc.load_balancer_class.as_deref().is_none_or(|c| c == L2_ANNOUNCER_CLASS)
}

/// The labels a service selector sees: the Service's own plus the namespace and name
/// pseudo-labels (which win over a real label of the same key, as in Cilium).
pub fn selection_labels(svc: &ServiceInfo) -> BTreeMap<String, String> {
    let mut labels = svc.labels.clone();
    labels.insert(api::labels::CILIUM_SERVICE_NAMESPACE.into(), svc.key.namespace.clone());
    labels.insert(SERVICE_NAME_PSEUDO_LABEL.into(), svc.key.name.clone());
    labels
}

/// An optional `LabelSelector` field, compiled. JSON `null` counts as absent.
fn selector(value: Option<&Value>) -> Result<Option<Selector>, String> {
    let Some(value) = value.filter(|v| !v.is_null()) else { return Ok(None) };
    let parsed: LabelSelector = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    Selector::from_label_selector(&parsed).map(Some).map_err(|e| e.to_string())
}

/// `spec.interfaces`, each entry compiled; the message names every bad entry.
fn interface_regexes(value: Option<&Value>) -> Result<Vec<Regex>, String> {
    let Some(value) = value.filter(|v| !v.is_null()) else { return Ok(Vec::new()) };
    let patterns: Vec<String> = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    let mut regexes = Vec::with_capacity(patterns.len());
    let mut errors = Vec::new();
    for (i, pattern) in patterns.iter().enumerate() {
        match Regex::new(pattern) {
            Ok(re) => regexes.push(re),
            Err(e) => errors.push(format!("interfaces[{i}] {pattern:?}: {e}")),
        }
    }
    if errors.is_empty() { Ok(regexes) } else { Err(errors.join("; ")) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::service::ServiceKey;

    pub(crate) fn policy_object(name: &str, spec: Value) -> Object {
        let mut obj = Object::new(&api::kinds::L2_ANNOUNCEMENT_POLICY, None, name);
        obj.body.insert("spec".into(), spec);
        obj
    }

    fn svc(labels: &[(&str, &str)], class: Option<&str>) -> ServiceInfo {
        ServiceInfo {
            key: ServiceKey::new("default", "web"),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            load_balancer_class: class.map(str::to_string),
            lb_ips: vec!["192.168.10.1".parse().unwrap()],
            external_ips: vec!["10.0.0.1".parse().unwrap()],
            ..Default::default()
        }
    }

    #[test]
    fn nil_selectors_select_everything_and_flags_default_false() {
        let p = CompiledPolicy::compile(&policy_object("p", json!({}))).unwrap();
        assert!(p.selects_node(&BTreeMap::new()));
        assert!(p.matches_interface("anything"));
        assert!(!p.load_balancer_ips && !p.external_ips);
        // Both flags false: nothing is selected.
        assert!(!p.selects_service(&svc(&[], None)));
    }

    #[test]
    fn ip_type_flags_choose_addresses() {
        let s = svc(&[], None);
        let labels = selection_labels(&s);
        let ips =
            |spec| CompiledPolicy::compile(&policy_object("p", spec)).unwrap().ips_for(&s, &labels).collect::<Vec<_>>();
        assert_eq!(ips(json!({"loadBalancerIPs": true})), vec![s.lb_ips[0]]);
        assert_eq!(ips(json!({"externalIPs": true})), vec![s.external_ips[0]]);
        assert_eq!(ips(json!({"externalIPs": true, "loadBalancerIPs": true})).len(), 2);
        assert!(ips(json!({"externalIPs": "yes"})).is_empty());
    }

    #[test]
    fn service_selector_sees_pseudo_labels() {
        let p = CompiledPolicy::compile(&policy_object(
            "p",
            json!({
                "loadBalancerIPs": true,
                "serviceSelector": {"matchLabels": {"io.kubernetes.service.namespace": "default", "color": "blue"}}
            }),
        ))
        .unwrap();
        assert!(p.selects_service(&svc(&[("color", "blue")], None)));
        assert!(!p.selects_service(&svc(&[("color", "red")], None)));
        let mut elsewhere = svc(&[("color", "blue")], None);
        elsewhere.key.namespace = "other".into();
        assert!(!p.selects_service(&elsewhere));
        // A real label cannot impersonate the namespace.
        let mut spoof = elsewhere.clone();
        spoof.labels.insert(api::labels::CILIUM_SERVICE_NAMESPACE.into(), "default".into());
        assert!(!p.selects_service(&spoof));
    }

    #[test]
    fn load_balancer_class_gate() {
        let p = CompiledPolicy::compile(&policy_object("p", json!({"loadBalancerIPs": true}))).unwrap();
        assert!(p.selects_service(&svc(&[], None)));
        assert!(p.selects_service(&svc(&[], Some(L2_ANNOUNCER_CLASS))));
        assert!(!p.selects_service(&svc(&[], Some("io.cilium/bgp-control-plane"))));
        assert!(!p.selects_service(&svc(&[], Some(""))));
    }

    #[test]
    fn interface_regexes_are_unanchored_and_ored() {
        let p = CompiledPolicy::compile(&policy_object("p", json!({"interfaces": ["eth0", "^bond[0-9]$"]}))).unwrap();
        assert!(p.matches_interface("eth0"));
        assert!(p.matches_interface("veth0x"), "unanchored, as Go's MatchString");
        assert!(p.matches_interface("bond1"));
        assert!(!p.matches_interface("bond10"));
        assert!(!p.matches_interface("ens3"));
    }

    #[test]
    fn node_selector() {
        let p = CompiledPolicy::compile(&policy_object(
            "p",
            json!({"nodeSelector": {"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}]}}),
        ))
        .unwrap();
        assert!(p.selects_node(&[("kubernetes.io/hostname".to_string(), "w0".to_string())].into()));
        assert!(!p.selects_node(&[("node-role.kubernetes.io/control-plane".to_string(), String::new())].into()));
    }

    #[test]
    fn every_problem_is_reported_under_its_own_condition() {
        let err = CompiledPolicy::compile(&policy_object(
            "p",
            json!({
                "serviceSelector": {"matchExpressions": [{"key": "a", "operator": "Within"}]},
                "nodeSelector": {"matchLabels": {"-bad": "x"}},
                "interfaces": ["eth0", "eth[", "(x"]
            }),
        ))
        .unwrap_err();
        let kinds: Vec<_> = err.iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            [ProblemKind::BadServiceSelector, ProblemKind::BadNodeSelector, ProblemKind::BadInterfaceRegex]
        );
        assert!(err[0].message.contains("operator"), "{}", err[0]);
        assert!(err[2].message.contains("interfaces[1]") && err[2].message.contains("interfaces[2]"), "{}", err[2]);
        assert!(err[2].to_string().starts_with("io.cilium/bad-interface-regex: "));

        // A selector of the wrong shape is that selector's problem, not the whole object's.
        let err =
            CompiledPolicy::compile(&policy_object("p", json!({"serviceSelector": {"matchLabelz": {}}}))).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].kind, ProblemKind::BadServiceSelector);
    }
}
