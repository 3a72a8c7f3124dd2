//! The hands-on guide's LB-IPAM walk-through, at the controller level.

use api::types::IpBlock;

use crate::fixture::*;

#[test]
fn guide_pool_webpod_annotation_and_sharing() {
    let mut c = Cluster::v4();

    // cilia apply -f pool.yaml: 192.168.10.241-245.
    let mut p = pool("cilium-lb-ippool", &[]);
    p.spec.blocks = vec![IpBlock {
        start: Some("192.168.10.241".into()),
        stop: Some("192.168.10.245".into()),
        ..Default::default()
    }];
    c.apply_pool(p);
    // cilia get ippools: DISABLED false, CONFLICTING False, IPS AVAILABLE 5.
    assert_eq!(c.conflicting("cilium-lb-ippool").as_deref(), Some("False"));
    assert_eq!(c.counts("cilium-lb-ippool"), ("5".into(), "5".into(), "0".into()));

    // webpod exists as a ClusterIP Service: LB-IPAM leaves it alone.
    let mut webpod = svc("webpod");
    webpod.spec.type_ = Some("ClusterIP".into());
    webpod.spec.selector = Some([("app".to_string(), "webpod".to_string())].into());
    webpod.spec.ports = vec![port(80, "TCP")];
    c.apply_svc(webpod);
    assert!(c.ingress("webpod").is_empty());
    assert!(c.condition("webpod").is_none());

    // cilia patch svc webpod -p '{"spec":{"type":"LoadBalancer"}}'
    let mut webpod = c.edit("webpod");
    webpod.spec.type_ = Some("LoadBalancer".into());
    c.apply_svc(webpod);
    assert_eq!(c.ingress("webpod"), [ip("192.168.10.241")]);
    assert_eq!(c.satisfied("webpod"), ("True".into(), "satisfied".into()));
    assert_eq!(c.counts("cilium-lb-ippool"), ("5".into(), "4".into(), "1".into()));

    // cilia annotate svc webpod lbipam.cilium.io/ips=192.168.10.245 --overwrite
    let webpod = annotate(c.edit("webpod"), "lbipam.cilium.io/ips", "192.168.10.245");
    c.apply_svc(webpod);
    assert_eq!(c.ingress("webpod"), [ip("192.168.10.245")]);
    assert_eq!(c.counts("cilium-lb-ippool"), ("5".into(), "4".into(), "1".into()));

    // Both Services with the sharing key shared-1 on ports 80 and 8080 share .245.
    let webpod = annotate(c.edit("webpod"), "lbipam.cilium.io/sharing-key", "shared-1");
    let mut alt = svc("webpod-alt");
    alt.spec.selector = Some([("app".to_string(), "webpod".to_string())].into());
    alt.spec.ports = vec![port(8080, "TCP")];
    let alt =
        annotate(annotate(alt, "lbipam.cilium.io/ips", "192.168.10.245"), "lbipam.cilium.io/sharing-key", "shared-1");
    c.apply_svc(alt);
    c.apply_svc(webpod);
    assert_eq!(c.ingress("webpod"), [ip("192.168.10.245")]);
    assert_eq!(c.ingress("webpod-alt"), [ip("192.168.10.245")]);
    assert_eq!(c.satisfied("webpod-alt"), ("True".into(), "satisfied".into()));
    // A shared address counts once.
    assert_eq!(c.counts("cilium-lb-ippool"), ("5".into(), "4".into(), "1".into()));

    // A restart keeps everything, and writes nothing.
    let (fresh, updates) = c.restart(config_v4());
    assert!(updates.is_empty(), "{updates:#?}");
    assert_eq!(fresh.service_ips("default", "webpod"), [ip("192.168.10.245")]);
    assert_eq!(fresh.service_ips("default", "webpod-alt"), [ip("192.168.10.245")]);
}

#[test]
fn guide_sharing_pair_applied_in_either_order() {
    for alt_first in [true, false] {
        let mut c = Cluster::v4();
        let mut p = pool("cilium-lb-ippool", &[]);
        p.spec.blocks = vec![IpBlock {
            start: Some("192.168.10.241".into()),
            stop: Some("192.168.10.245".into()),
            ..Default::default()
        }];
        c.apply_pool(p);
        let make = |name: &str, p: i64| {
            let mut s = svc(name);
            s.spec.ports = vec![port(p, "TCP")];
            annotate(annotate(s, "lbipam.cilium.io/ips", "192.168.10.245"), "lbipam.cilium.io/sharing-key", "shared-1")
        };
        let (first, second) = if alt_first {
            (make("webpod-alt", 8080), make("webpod", 80))
        } else {
            (make("webpod", 80), make("webpod-alt", 8080))
        };
        c.apply_svc(first);
        c.apply_svc(second);
        assert_eq!(c.ingress("webpod"), [ip("192.168.10.245")]);
        assert_eq!(c.ingress("webpod-alt"), [ip("192.168.10.245")]);

        // The same port on both: the second one is refused, naming the reason.
        let mut clash = make("webpod-clash", 80);
        clash.spec.ports = vec![port(80, "TCP")];
        c.apply_svc(clash);
        assert!(c.ingress("webpod-clash").is_empty());
        let cond = c.condition("webpod-clash").unwrap();
        assert_eq!(cond.reason, "already_allocated_incompatible_service");
        assert_eq!(
            cond.message,
            "The IP '192.168.10.245' is already allocated to an incompatible service. Reason: same port and protocol"
        );
    }
}
