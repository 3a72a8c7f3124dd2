//! cilia's store seam on a real kube-apiserver (`--datastore kubeconfig://...`): the CLI's verbs
//! read, write and watch the cluster's objects through the Kubernetes API, inside k8s-ctr, and
//! kubectl sees the same objects.
//!
//! Needs root and Kubernetes' binaries (scripts/install-kubernetes.sh); fails saying so without.

mod common;

use std::process::Stdio;

use common::{TestLab, cilia_bin, repo_file, text, wait_for_line};

struct KubeLab {
    lab: TestLab,
    url: String,
}

impl KubeLab {
    fn up() -> KubeLab {
        assert!(nix::unistd::geteuid().is_root(), "needs root: the lab makes network namespaces");
        if let Err(e) = lab::kubernetes::check_installed() {
            panic!("{e}");
        }
        let lab = TestLab::up_with("kst", &["--control-plane", "kubernetes"]);
        let url = format!("kubeconfig://{}", lab.ok(&["lab", "kubeconfig"]).trim());
        KubeLab { lab, url }
    }

    /// `cilia --datastore kubeconfig://... ARGS` inside k8s-ctr.
    fn argv<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        [&["lab", "exec", "k8s-ctr", "--", cilia_bin(), "--datastore", &self.url][..], args].concat()
    }

    fn cilia(&self, args: &[&str]) -> String {
        self.lab.ok(&self.argv(args))
    }
}

#[test]
fn on_kubernetes_the_cli_reads_writes_and_watches_objects() {
    let k = KubeLab::up();

    // apply creates through the API; kube-apiserver allocates the cluster IP, and kubectl sees it.
    k.cilia(&["apply", "-f", &repo_file("examples/guide/webpod.yaml")]);
    let svc: serde_json::Value = serde_json::from_str(&k.cilia(&["get", "svc", "webpod", "-o", "json"])).unwrap();
    let ip = svc["spec"]["clusterIP"].as_str().unwrap_or_default().to_string();
    assert!(ip.starts_with("10.96."), "cluster IP {ip:?} not from 10.96.0.0/16: {svc}");
    assert_eq!(k.lab.kubectl(&["get", "svc", "webpod", "-o", "jsonpath={.spec.clusterIP}"]).trim(), ip);
    // The Deployment is kube-controller-manager's to act on: the status it writes (through the
    // status subresource) shows in cilia's view.
    k.lab.eventually(&k.argv(&["get", "deploy", "webpod", "-o", "json"]), std::time::Duration::from_secs(60), |s| {
        serde_json::from_str::<serde_json::Value>(s).is_ok_and(|d| d["status"]["replicas"] == 3)
    });

    // Label selectors go to the server as it reads them.
    assert!(k.cilia(&["get", "svc", "-l", "app=webpod", "-o", "name"]).contains("service/webpod"));
    assert_eq!(k.cilia(&["get", "svc", "-l", "app in (other)", "-o", "name"]).trim(), "");

    // A watch through the seam sees kubectl's change.
    let mut watch = k
        .lab
        .command(
            &[
                &["lab", "exec", "k8s-ctr", "--", "timeout", "60", cilia_bin(), "--datastore", &k.url][..],
                &["get", "svc", "webpod", "-w", "-o", "name", "--output-watch-events"],
            ]
            .concat(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cilia get -w");
    let stdout = watch.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        wait_for_line(stdout, "MODIFIED", "cilia get -w");
        let _ = tx.send(());
    });
    // The first line (ADDED) is printed once the watch runs; label until the change shows.
    let seen = (0..50).any(|i| {
        k.lab.kubectl(&["label", "--overwrite", "svc", "webpod", &format!("round=r{i}")]);
        rx.recv_timeout(std::time::Duration::from_millis(500)).is_ok()
    });
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(seen, "cilia get -w never printed kubectl's change");

    // patch writes through the API with the read's resourceVersion.
    k.cilia(&["patch", "svc", "webpod", "--type", "merge", "-p", r#"{"spec":{"type":"LoadBalancer"}}"#]);
    assert_eq!(k.lab.kubectl(&["get", "svc", "webpod", "-o", "jsonpath={.spec.type}"]).trim(), "LoadBalancer");

    // The CRDs' objects too, at the version cilia stores (cilium.io/v2).
    k.lab.kubectl(&["apply", "-f", &repo_file("deploy/kubernetes/crds")]);
    k.lab.kubectl_until(
        &["get", "crd", "ciliumloadbalancerippools.cilium.io", "-o", "jsonpath={.status.conditions}"],
        |s| s.contains("\"Established\""),
    );
    k.cilia(&["apply", "-f", &repo_file("examples/guide/lb-ippool.yaml")]);
    assert!(k.lab.kubectl(&["get", "ippools", "-o", "name"]).contains("cilium-lb-ippool"));

    // delete goes through, and a missing object is NotFound as kubectl says it.
    k.cilia(&["delete", "svc", "webpod"]);
    let out = k.lab.cilia(&k.argv(&["get", "svc", "webpod"]));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"), "{}", text(&out));

    // Through the library: a watch from a version kube-apiserver no longer keeps is 410 Gone,
    // which the seam reports as compaction (the informer then lists again), and a watch from a
    // list's version follows changes, across kinds' URLs.
    let kubeconfig = k.url.trim_start_matches("kubeconfig://").to_string();
    // kube-apiserver keeps its objects in the lab's etcd: compact that history away, and restart
    // kube-apiserver so that its watch cache starts after it too.
    let the_lab = lab::Lab::new(&k.lab.name).unwrap();
    let outcome = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        use store::Store as _;
        let etcd = store::EtcdStore::connect(&the_lab.paths().datastore_url()).await?;
        etcd.compact(etcd.revision().await?).await
    });
    outcome.expect("compacting the lab's etcd");
    // SIGKILL: a graceful stop waits for the open watches to end; the supervisor restarts it.
    let apiserver = the_lab.status().unwrap().processes.into_iter().find(|p| p.name == "kube-apiserver");
    let pid = apiserver.and_then(|p| p.pid).expect("kube-apiserver runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    testkit::eventually("the supervisor restarts kube-apiserver", std::time::Duration::from_secs(30), || {
        let status = the_lab.status().ok();
        let running = status.and_then(|s| s.processes.into_iter().find(|p| p.name == "kube-apiserver"));
        running.and_then(|p| p.pid).is_some_and(|new| new != pid)
    });
    k.lab.kubectl_until(&["get", "--raw", "/readyz"], |s| s.trim() == "ok");
    let netns = netconf::netns::Netns::open(format!("/run/netns/{}", k.lab.namespace("k8s-ctr"))).unwrap();
    let outcome = netconf::netns::on_thread_inside(std::os::fd::AsFd::as_fd(&netns), move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            use futures::StreamExt as _;
            use store::Store as _;
            let store = kubestore::KubeStore::from_kubeconfig(std::path::Path::new(&kubeconfig)).await.unwrap();
            let mut old = store.watch(&api::kinds::SERVICE, None, 1).await.unwrap();
            let first = tokio::time::timeout(std::time::Duration::from_secs(10), old.next()).await.unwrap();
            assert!(matches!(first, Some(Err(store::Error::Compacted { .. }))), "{first:?}");

            let list = store.list(&api::kinds::SERVICE, Some("default"), &api::Selector::everything()).await.unwrap();
            let mut events = store.watch(&api::kinds::SERVICE, Some("default"), list.revision).await.unwrap();
            let mut svc = api::Object::new(&api::kinds::SERVICE, Some("default"), "watched");
            svc.body.insert("spec".into(), serde_json::json!({"ports": [{"port": 81}]}));
            let created = store.create(svc).await.unwrap();
            let event = tokio::time::timeout(std::time::Duration::from_secs(10), events.next()).await.unwrap();
            let event = event.expect("the watch goes on").unwrap();
            assert_eq!(event.type_, store::WatchEventType::Added);
            assert_eq!(event.object.metadata.uid, created.metadata.uid);
            assert!(event.revision > list.revision);
        })
    });
    match outcome {
        Ok(entered) => entered.expect("entering k8s-ctr's namespace"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
