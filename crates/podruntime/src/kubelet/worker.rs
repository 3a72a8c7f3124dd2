//! One pod's life on its node, from the first sight of it to its removal: record, namespace, CNI
//! ADD, container processes, status; and in reverse on deletion. Every step checks what already
//! exists first, so a worker started for an adopted record picks up where the last one stopped.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use api::{
    ObjectRef, kinds,
    types::{Pod, PodIp, PodStatus},
};
use tokio::sync::watch;

use super::{
    NodeContext,
    cni::{self, Attachment},
    container::{self, Program},
    dns, drain,
    record::PodRecord,
};
use crate::{conditions, controllers, pod_netns};

/// Termination grace honoured up to this: the lab's containers stop on SIGTERM at once, and a
/// long grace would only slow down tests that recreate pods.
pub const MAX_GRACE: Duration = Duration::from_secs(5);
/// Kubernetes' default `terminationGracePeriodSeconds`, before the cap.
const DEFAULT_GRACE_SECONDS: i64 = 30;

const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long DEL is retried on teardown before the namespace goes anyway (its veth goes with it,
/// and the agent releases the address of a vanished veth when it starts).
const DEL_PATIENCE: Duration = Duration::from_secs(20);
/// Check cadence while a container is starting (readiness) and once everything runs (liveness).
const STARTING_POLL: Duration = Duration::from_millis(50);
const STEADY_POLL: Duration = Duration::from_secs(1);

/// What the runtime last published for the pod; a write happens only when this changes.
#[derive(Debug, Clone, PartialEq, Default)]
struct Published {
    networked: bool,
    ready: bool,
    message: Option<String>,
    pod_ip: Option<String>,
    host_ip: Option<String>,
    start_time: Option<String>,
    unready: Vec<String>,
}

pub struct Worker {
    ctx: Arc<NodeContext>,
    record: PodRecord,
    desired: watch::Receiver<Option<Pod>>,
    /// Why the pod is not networked yet, for its status.
    setup_error: Option<String>,
    retry: Duration,
    /// Container name → (restart backoff, earliest next start).
    restarts: BTreeMap<String, (Duration, Instant)>,
    published: Option<Published>,
}

impl Worker {
    pub fn new(ctx: Arc<NodeContext>, record: PodRecord, desired: watch::Receiver<Option<Pod>>) -> Self {
        Worker {
            ctx,
            record,
            desired,
            setup_error: None,
            retry: RETRY_FIRST,
            restarts: BTreeMap::new(),
            published: None,
        }
    }

    /// Runs until the pod is torn down, or until the runtime stops (its sender is dropped), which
    /// leaves the pod running for the next runtime to adopt.
    pub async fn run(mut self) {
        loop {
            let desired = self.desired.borrow_and_update().clone();
            let Some(pod) = desired else {
                self.teardown().await;
                return;
            };
            if pod.metadata.deletion_timestamp.is_some() {
                // The period the deletion asked for (`--grace-period`), else the pod's own.
                self.record.grace_seconds =
                    pod.metadata.deletion_grace_period_seconds.or(pod.spec.termination_grace_period_seconds);
                let waited = drain::drain(self.ctx.store.as_ref(), &pod, self.grace()).await;
                if !waited.is_zero() {
                    tracing::info!(pod = %self.record.name, waited_ms = waited.as_millis(), "drained from its Services");
                }
                self.teardown().await;
                self.finish_deletion(&pod).await;
                return;
            }
            let next = self.sync(&pod).await;
            tokio::select! {
                changed = self.desired.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(next) => {}
            }
        }
    }

    fn save(&self) {
        if let Err(e) = self.record.save(&self.ctx.paths.record(&self.record.uid)) {
            tracing::error!(pod = %self.record.name, error = &e as &dyn std::error::Error, "saving the pod record");
        }
    }

    fn attachment(&self) -> Attachment<'_> {
        Attachment {
            container_id: &self.record.container_id,
            netns: "",
            ifname: &self.record.ifname,
            pod_namespace: &self.record.namespace,
            pod_name: &self.record.name,
        }
    }

    /// Brings the pod to running; returns when to look again.
    async fn sync(&mut self, pod: &Pod) -> Duration {
        let grace = pod.spec.termination_grace_period_seconds;
        if self.record.start_time.is_none() || self.record.grace_seconds != grace {
            self.record.start_time.get_or_insert_with(api::meta::now_rfc3339);
            self.record.grace_seconds = grace;
            self.save();
        }
        if let Err(e) = self.ensure_network().await {
            tracing::warn!(pod = %self.record.name, error = %e, "pod network not ready; retrying");
            self.setup_error = Some(e);
            self.publish(pod, false, &[]).await;
            let wait = self.retry;
            self.retry = (self.retry * 2).min(RETRY_MAX);
            return wait;
        }
        self.setup_error = None;
        self.retry = RETRY_FIRST;

        let mut unready = Vec::new();
        let mut next = STEADY_POLL;
        for c in &pod.spec.containers {
            let program = Program::of(c);
            let Program::Whoami { port } = program else { continue };
            let process = self.record.containers.get(&c.name).and_then(|r| r.process).filter(|p| p.is_alive());
            match process {
                Some(p) if container::listening(p, port) => {
                    self.restarts.remove(&c.name);
                }
                Some(_) => {
                    unready.push(c.name.clone());
                    next = STARTING_POLL;
                }
                None => {
                    unready.push(c.name.clone());
                    next = next.min(self.start_container(pod, &c.name, &program));
                }
            }
        }
        self.publish(pod, true, &unready).await;
        next
    }

    /// Namespace, then CNI ADD, each only if missing.
    async fn ensure_network(&mut self) -> Result<(), String> {
        let netns = self.record.netns.clone();
        if !pod_netns::exists(&netns) {
            if self.record.cni_result.is_some() {
                // The namespace vanished under a networked pod: release the old wiring first.
                tracing::warn!(pod = %self.record.name, %netns, "pod namespace disappeared; setting it up again");
                let _ = self.ctx.cni.del(&self.attachment(), self.record.cni_result.as_ref()).await;
                self.record.cni_result = None;
                self.record.containers.clear();
                self.save();
            }
            let _permit = self.ctx.kernel_work.acquire().await;
            pod_netns::create(&netns)
                .await
                .map_err(|e| format!("creating the pod network namespace: {}", lab::error::Chain(&e)))?;
        }
        if let Some(result) = &self.record.cni_result {
            self.ensure_resolv_conf(result);
            return Ok(());
        }
        let path = pod_netns::path(&netns).display().to_string();
        let result = {
            let _permit = self.ctx.kernel_work.acquire().await;
            let attach = Attachment { netns: &path, ..self.attachment() };
            match self.ctx.cni.add(&attach).await {
                Err(e) if e.code == Some(cni::ALREADY_ATTACHED) => {
                    // A previous runtime got as far as ADD but not as far as recording it.
                    tracing::info!(pod = %self.record.name, "re-attaching a pod left half-wired");
                    self.ctx.cni.del(&attach, None).await.map_err(|e| e.to_string())?;
                    self.ctx.cni.add(&attach).await
                }
                other => other,
            }
        };
        let result = result.map_err(|e| e.to_string())?;
        tracing::info!(pod = %self.record.name, ip = ?result["ips"][0]["address"], "pod networked");
        self.ensure_resolv_conf(&result);
        self.record.cni_result = Some(result);
        self.save();
        Ok(())
    }

    /// The pod's resolv.conf, pointing at its node's cluster DNS (the gateway of its network).
    fn ensure_resolv_conf(&self, cni_result: &serde_json::Value) {
        let Some(pod) = self.desired.borrow().clone() else { return };
        if let Err(e) = dns::write(&self.ctx.paths.pods_dir(), &pod, &self.record.uid, cni_result) {
            tracing::warn!(pod = %self.record.name, error = &e as &dyn std::error::Error, "writing the pod's resolv.conf");
        }
    }

    /// Starts a container if its restart backoff allows; returns when to look again.
    fn start_container(&mut self, pod: &Pod, name: &str, program: &Program) -> Duration {
        let now = Instant::now();
        let had_run = self.record.containers.get(name).is_some_and(|r| r.process.is_some());
        if had_run && pod.spec.restart_policy.as_deref() == Some("Never") {
            return STEADY_POLL;
        }
        if let Some((_, at)) = self.restarts.get(name)
            && *at > now
        {
            return *at - now;
        }
        let log = self.ctx.paths.container_log(&self.record.uid, name);
        match container::start(program, &self.record.netns, &self.record.name, &log) {
            Ok(process) => {
                let entry = self.record.containers.entry(name.to_string()).or_default();
                if had_run {
                    entry.restarts += 1;
                    tracing::warn!(pod = %self.record.name, container = name, restarts = entry.restarts, "container exited; restarted");
                }
                entry.process = process;
                self.save();
            }
            Err(e) => {
                tracing::error!(pod = %self.record.name, container = name, error = &e as &dyn std::error::Error, "starting a container")
            }
        }
        // Crash-looping containers wait longer each time, as CrashLoopBackOff does.
        let backoff = self.restarts.get(name).map_or(Duration::from_secs(1), |(b, _)| (*b * 2).min(RETRY_MAX * 2));
        self.restarts.insert(name.to_string(), (backoff, now + backoff));
        STARTING_POLL
    }

    /// Writes the pod's status when what the runtime knows changed.
    async fn publish(&mut self, pod: &Pod, networked: bool, unready: &[String]) {
        let now = Published {
            networked,
            ready: networked && unready.is_empty(),
            message: self.setup_error.clone(),
            pod_ip: self.record.pod_ip(),
            host_ip: self.ctx.host_ip.borrow().clone(),
            start_time: self.record.start_time.clone(),
            unready: unready.to_vec(),
        };
        // Written already, and the object still says so (nobody replaced the status since).
        let mut seen = pod.status.clone();
        apply(&mut seen, &now);
        if self.published.as_ref() == Some(&now) && seen == pod.status {
            return;
        }
        let target = ObjectRef::new(&kinds::POD, Some(&self.record.namespace), &self.record.name);
        let uid = pod.metadata.uid.clone();
        let result = store::update_with_retry(self.ctx.store.as_ref(), &target, |obj| {
            if obj.metadata.uid != uid {
                return Ok(false);
            }
            let before = controllers::pod_status(obj);
            let mut status = before.clone();
            apply(&mut status, &now);
            if status == before {
                return Ok(false);
            }
            controllers::put_status(obj, &status);
            Ok(true)
        })
        .await;
        match result {
            Ok(_) => self.published = Some(now),
            Err(store::Error::NotFound(_)) => {}
            Err(e) => {
                tracing::warn!(pod = %self.record.name, error = &e as &dyn std::error::Error, "writing pod status")
            }
        }
    }

    /// Stops the containers, detaches the network, removes the namespace and the record.
    /// The termination grace period the pod asked for, capped at [`MAX_GRACE`].
    fn grace(&self) -> Duration {
        let seconds = self.record.grace_seconds.unwrap_or(DEFAULT_GRACE_SECONDS).max(0);
        Duration::from_secs(u64::try_from(seconds).unwrap_or(0)).min(MAX_GRACE)
    }

    async fn teardown(&mut self) {
        let grace = self.grace();
        for c in self.record.containers.values() {
            if let Some(p) = c.process {
                container::stop(p, grace).await;
            }
        }
        let netns = self.record.netns.clone();
        pod_netns::kill_all_inside(&netns).await;
        let present = pod_netns::exists(&netns);
        if self.record.cni_result.is_some() || present {
            let path = if present { pod_netns::path(&netns).display().to_string() } else { String::new() };
            let deadline = Instant::now() + DEL_PATIENCE;
            let mut wait = RETRY_FIRST;
            loop {
                let result = {
                    let _permit = self.ctx.kernel_work.acquire().await;
                    let attach = Attachment { netns: &path, ..self.attachment() };
                    self.ctx.cni.del(&attach, self.record.cni_result.as_ref()).await
                };
                match result {
                    Ok(()) => break,
                    Err(e) if Instant::now() + wait < deadline => {
                        tracing::warn!(pod = %self.record.name, error = &e as &dyn std::error::Error, "CNI DEL failed; retrying");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(RETRY_MAX);
                    }
                    Err(e) => {
                        tracing::error!(pod = %self.record.name, error = &e as &dyn std::error::Error, "CNI DEL failed; removing the namespace anyway");
                        break;
                    }
                }
            }
        }
        if let Err(e) = pod_netns::delete(&netns).await {
            tracing::error!(pod = %self.record.name, %netns, error = &e as &dyn std::error::Error, "removing the pod namespace");
        }
        for name in self.record.containers.keys() {
            let _ = std::fs::remove_file(self.ctx.paths.container_log(&self.record.uid, name));
        }
        dns::remove(&self.ctx.paths.pods_dir(), &self.record.uid);
        if let Err(e) = PodRecord::remove(&self.ctx.paths.record(&self.record.uid)) {
            tracing::error!(pod = %self.record.name, error = &e as &dyn std::error::Error, "removing the pod record");
        }
        tracing::info!(pod = %self.record.name, "pod removed from the node");
    }

    /// A pod being deleted gracefully: once torn down, the runtime removes the object, as the
    /// kubelet confirms a deletion with grace period 0.
    async fn finish_deletion(&self, pod: &Pod) {
        let target = ObjectRef::new(&kinds::POD, Some(&self.record.namespace), &self.record.name);
        match self.ctx.store.get(&target).await {
            Ok(Some(obj)) if obj.metadata.uid == pod.metadata.uid => {
                let rv = obj.metadata.resource_version.clone();
                if let Err(e) = self.ctx.store.delete(&target, rv.as_deref()).await {
                    tracing::warn!(pod = %self.record.name, error = &e as &dyn std::error::Error, "finishing a pod's deletion");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(pod = %self.record.name, error = &e as &dyn std::error::Error, "finishing a pod's deletion")
            }
        }
    }
}

/// Sets the runtime's part of a pod status; the scheduler's `PodScheduled` is kept, or set for
/// pods that named their node themselves.
fn apply(status: &mut PodStatus, p: &Published) {
    status.phase = Some(if p.networked { "Running" } else { "Pending" }.into());
    status.reason = (!p.networked).then(|| "ContainerCreating".to_string());
    status.message = p.message.clone();
    status.pod_ip = p.pod_ip.clone();
    status.pod_ips = p.pod_ip.iter().map(|ip| PodIp { ip: ip.clone() }).collect();
    status.host_ip = p.host_ip.clone();
    status.start_time = p.start_time.clone();
    if !status.conditions.iter().any(|c| c.type_ == "PodScheduled" && c.status == "True") {
        conditions::set(status, "PodScheduled", true, None, None);
    }
    conditions::set(status, "Initialized", true, None, None);
    let (reason, message) = if p.ready {
        (None, None)
    } else if p.networked {
        (Some("ContainersNotReady"), Some(format!("containers with unready status: [{}]", p.unready.join(" "))))
    } else {
        (Some("ContainersNotReady"), Some("containers with unready status: [sandbox]".to_string()))
    };
    conditions::set(status, "ContainersReady", p.ready, reason, message.as_deref());
    conditions::set(status, "Ready", p.ready, reason, message.as_deref());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_of_a_running_ready_pod() {
        let mut s = PodStatus::default();
        let p = Published {
            networked: true,
            ready: true,
            message: None,
            pod_ip: Some("172.20.1.5".into()),
            host_ip: Some("192.168.10.101".into()),
            start_time: Some("2026-01-01T00:00:00Z".into()),
            unready: vec![],
        };
        apply(&mut s, &p);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.reason, None);
        assert_eq!(s.pod_ips, vec![PodIp { ip: "172.20.1.5".into() }]);
        let types: Vec<_> = s.conditions.iter().map(|c| (c.type_.as_str(), c.status.as_str())).collect();
        assert_eq!(
            types,
            [("PodScheduled", "True"), ("Initialized", "True"), ("ContainersReady", "True"), ("Ready", "True")]
        );
        let before = s.clone();
        apply(&mut s, &p);
        assert_eq!(s, before, "applying the same facts changes nothing");
    }

    #[test]
    fn status_while_waiting_for_the_network() {
        let mut s = PodStatus::default();
        let p = Published {
            networked: false,
            message: Some("CNI ADD failed (code 11): cilia agent is not reachable".into()),
            ..Default::default()
        };
        apply(&mut s, &p);
        assert_eq!((s.phase.as_deref(), s.reason.as_deref()), (Some("Pending"), Some("ContainerCreating")));
        assert!(s.message.as_deref().unwrap().contains("code 11"));
        assert!(s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "False"));
    }
}
