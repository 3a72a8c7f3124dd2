//! The guide's manifests parse verbatim; bad manifests give errors naming file, object, field, reason.

use api::{manifest, types};

fn guide(file: &str) -> (String, String) {
    let path = format!("{}/../../examples/guide/{file}", env!("CARGO_MANIFEST_DIR"));
    (file.to_string(), std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

#[test]
fn guide_manifests_parse_verbatim() {
    let (name, text) = guide("webpod.yaml");
    let objs = manifest::parse(&name, &text, "default").unwrap();
    assert_eq!(objs.len(), 2);
    let deploy: types::Deployment = objs[0].to_typed().unwrap();
    assert_eq!(deploy.replicas(), 3);
    let term = &deploy
        .spec
        .template
        .spec
        .affinity
        .as_ref()
        .unwrap()
        .pod_anti_affinity
        .as_ref()
        .unwrap()
        .required_during_scheduling_ignored_during_execution[0];
    assert_eq!(term.topology_key, "kubernetes.io/hostname");
    assert_eq!(objs[1].namespace(), Some("default"));
    let svc: types::Service = objs[1].to_typed().unwrap();
    assert_eq!(svc.type_(), "ClusterIP");

    let (name, text) = guide("curl-pod.yaml");
    let pod: types::Pod = manifest::parse(&name, &text, "default").unwrap()[0].to_typed().unwrap();
    assert_eq!(pod.spec.node_name.as_deref(), Some("k8s-ctr"));
    assert_eq!(pod.spec.termination_grace_period_seconds, Some(0));

    let (name, text) = guide("lb-ippool.yaml");
    let objs = manifest::parse(&name, &text, "default").unwrap();
    assert_eq!(objs[0].namespace(), None, "pools are cluster-scoped");
    let pool: types::LbIpPool = objs[0].to_typed().unwrap();
    assert_eq!(pool.spec.blocks[0].start.as_deref(), Some("192.168.10.241"));

    let (name, text) = guide("webpod-sharing.yaml");
    let objs = manifest::parse(&name, &text, "default").unwrap();
    assert_eq!(objs[0].metadata.annotations["lbipam.cilium.io/sharing-key"], "shared-1");

    let (name, text) = guide("l2-policy.yaml");
    let policy: types::L2AnnouncementPolicy = manifest::parse(&name, &text, "default").unwrap()[0].to_typed().unwrap();
    assert_eq!(policy.spec.interfaces, vec!["^eth[1-9]+"]);
    assert!(policy.spec.load_balancer_ips);
}

#[test]
fn v2alpha1_pools_are_accepted() {
    let text = "apiVersion: cilium.io/v2alpha1\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: p}\nspec: {blocks: [{cidr: 10.0.0.0/24}]}\n";
    assert_eq!(manifest::parse("p.yaml", text, "default").unwrap().len(), 1);
}

fn error_of(text: &str) -> api::ValidationError {
    manifest::parse("bad.yaml", text, "default").expect_err("must be rejected")
}

#[test]
fn malformed_yaml_names_the_file() {
    let err = error_of("apiVersion: v1\nkind: Service\nmetadata: {name: x\n");
    assert_eq!(err.origin.as_deref(), Some("bad.yaml"));
    assert!(err.reason.starts_with("invalid YAML"), "{err}");
}

#[test]
fn wrong_api_version_names_object_and_field() {
    let err = error_of("apiVersion: cilium.io/v1\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: pool}\n");
    assert_eq!(err.field.as_deref(), Some("apiVersion"));
    assert!(err.reason.contains("cilium.io/v2"), "{err}");
    assert_eq!(err.to_string().split(": ").next(), Some("bad.yaml"));
}

#[test]
fn missing_name() {
    let err = error_of("apiVersion: v1\nkind: Service\nmetadata: {}\nspec: {ports: [{port: 80}]}\n");
    assert_eq!(err.field.as_deref(), Some("metadata.name"));
    assert_eq!(err.reason, "is required");
}

#[test]
fn unknown_kind_and_unknown_field_are_reported() {
    let err = error_of("apiVersion: v1\nkind: Frobnicator\nmetadata: {name: x}\n");
    assert!(err.reason.contains("unknown kind \"Frobnicator\""), "{err}");
    let err = error_of(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports:\n  - port: 80\n    tragetPort: 80\n",
    );
    assert_eq!(err.field.as_deref(), Some("spec.ports[0].tragetPort"));
    assert!(err.reason.contains("unknown field `tragetPort`"), "{err}");
    assert_eq!(err.object.as_deref(), Some("Service default/web"));
}

#[test]
fn bad_field_values_name_the_field() {
    let err = error_of("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 0}]}\n");
    assert_eq!(err.field.as_deref(), Some("spec.ports[0].port"));
    assert_eq!(err.object.as_deref(), Some("Service default/web"));
    let err = error_of(
        "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: p}\nspec: {blocks: [{start: 10.0.0.9, stop: 10.0.0.1}]}\n",
    );
    assert_eq!(err.field.as_deref(), Some("spec.blocks[0]"));
    assert!(err.reason.contains("after"), "{err}");
    let err = error_of(
        "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: p}\nspec: {blocks: [{start: 10.0.0.1, stop: 'fd00::1'}]}\n",
    );
    assert!(err.reason.contains("families"), "{err}");
    let err = error_of(
        "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: p}\nspec: {blocks: [{cidr: 10.0.0.0/33}]}\n",
    );
    assert_eq!(err.field.as_deref(), Some("spec.blocks[0].cidr"));
    let svc = |ip: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{ports: [{{port: 80}}], externalIPs: [192.168.10.50, '{ip}']}}\n"
        )
    };
    for (ip, why) in [
        ("0.0.0.0", "unspecified"),
        ("127.0.0.1", "loopback"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
    ] {
        let err = error_of(&svc(ip));
        assert_eq!(err.field.as_deref(), Some("spec.externalIPs[1]"), "{ip}");
        assert!(err.reason.contains(why), "{ip}: {err}");
    }
}

#[test]
fn a_bad_document_fails_the_whole_file() {
    let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: Not_OK}\n";
    let err = error_of(text);
    assert_eq!(err.object.as_deref(), Some("Namespace Not_OK"));
    assert_eq!(err.field.as_deref(), Some("metadata.name"));
}

#[test]
fn ten_megabyte_manifest_is_refused_clearly() {
    let mut text =
        String::from("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: big\n  annotations:\n    blob: \"");
    text.push_str(&"x".repeat(10 * 1024 * 1024));
    text.push_str("\"\n");
    let err = error_of(&text);
    assert!(err.reason.contains("10.0 MiB"), "{err}");
    assert!(err.reason.contains("limit"), "{err}");
}

#[test]
fn oversized_single_object_is_refused() {
    let mut text =
        String::from("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: big\n  annotations:\n    blob: \"");
    text.push_str(&"x".repeat(2 * 1024 * 1024));
    text.push_str("\"\n");
    let err = error_of(&text);
    assert!(err.reason.contains("bytes; the limit"), "{err}");
}

/// An object as an API server returns it (`kubectl get svc -o yaml`) applies as it is: every
/// ObjectMeta field is accepted, while spec keeps its strict errors.
#[test]
fn objects_as_an_api_server_returns_them_apply() {
    let served = "apiVersion: v1
kind: Service
metadata:
  name: webpod
  namespace: default
  selfLink: /api/v1/namespaces/default/services/webpod
  uid: 0b0f6c3e-4c1f-4c55-9d55-0e0b3c1a2b3c
  resourceVersion: \"123\"
  generation: 2
  creationTimestamp: \"2026-01-01T00:00:00Z\"
  deletionGracePeriodSeconds: 30
  finalizers: [service.kubernetes.io/load-balancer-cleanup]
  managedFields:
  - manager: kubectl-client-side-apply
    operation: Update
    apiVersion: v1
    time: \"2026-01-01T00:00:00Z\"
    fieldsType: FieldsV1
    fieldsV1: {f:spec: {f:ports: {}}}
spec:
  ports: [{port: 80}]
";
    let objs = manifest::parse("served.yaml", served, "default").unwrap();
    assert_eq!(objs[0].metadata.deletion_grace_period_seconds, Some(30));
    assert_eq!(objs[0].metadata.managed_fields.len(), 1);
    let err = error_of(&served.replace("ports: [{port: 80}]", "ports: [{port: 80}]\n  sessionAfinity: None"));
    assert_eq!(err.field.as_deref(), Some("spec.sessionAfinity"));
}

#[test]
fn cluster_ips_that_no_service_may_have_are_refused() {
    for (ip, why) in [("127.0.0.1", "a loopback address"), ("169.254.1.1", "link-local"), ("239.1.1.1", "multicast")] {
        let err = error_of(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{clusterIP: {ip}, ports: [{{port: 80}}]}}\n"
        ));
        assert_eq!(err.field.as_deref(), Some("spec.clusterIP"), "{err}");
        assert!(err.reason.contains(why), "{err}");
    }
    let err = error_of(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {clusterIPs: [10.96.0.9, 0.0.0.0], ports: [{port: 80}]}\n",
    );
    assert_eq!(err.field.as_deref(), Some("spec.clusterIPs[1]"), "{err}");
}

#[test]
fn cluster_ips_outside_the_service_cidr_are_refused_with_the_field_and_the_cidr() {
    let cidr = api::validate::DEFAULT_SERVICE_CIDR.parse().unwrap();
    let service = |spec: &str| {
        let text = format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {spec}\n");
        manifest::parse("web.yaml", &text, "default").expect("a valid manifest").remove(0)
    };
    let err = api::validate::cluster_ips_in_service_cidr(&service("{clusterIP: 10.97.0.5, ports: [{port: 80}]}"), cidr)
        .unwrap_err();
    assert_eq!(err.field.as_deref(), Some("spec.clusterIP"), "{err}");
    assert_eq!(err.reason, "10.97.0.5 is not in the service CIDR 10.96.0.0/16: cluster IPs are allocated from it");
    let err = api::validate::cluster_ips_in_service_cidr(
        &service("{clusterIPs: [10.96.0.9, 192.168.10.9], ports: [{port: 80}]}"),
        cidr,
    )
    .unwrap_err();
    assert_eq!(err.field.as_deref(), Some("spec.clusterIPs[1]"), "{err}");
    let err = api::validate::cluster_ips_in_service_cidr(&service("{clusterIPs: [\"fd00::1\"]}"), cidr).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("spec.clusterIPs[0]"), "an IPv6 address in an IPv4 service CIDR");
    // Inside, headless, unset: accepted.
    for spec in [
        "{clusterIP: 10.96.255.254, clusterIPs: [10.96.255.254], ports: [{port: 80}]}",
        "{clusterIP: None, ports: [{port: 80}]}",
        "{ports: [{port: 80}]}",
    ] {
        assert_eq!(api::validate::cluster_ips_in_service_cidr(&service(spec), cidr), Ok(()), "{spec}");
    }
}
