//! The per-Service pipeline (spec §5.1) and when it runs.
//!
//! For a Service LB-IPAM is responsible for:
//! 1. refresh the view from the object, keeping its allocations;
//! 2. **strip** allocations it may no longer hold (pool gone, selector no longer matching, no longer
//!    compatible with the Services it shares with, no longer requested);
//! 3. **import** the addresses its `status.loadBalancer.ingress` shows that it does not hold yet,
//!    when they are valid and free (this is how assignments survive restarts), and drop the rest;
//! 4. if not satisfied, **satisfy** it: specific IPs if it requests any, otherwise one address per
//!    requested family;
//! 5. **publish**: append new addresses to the ingress, set `cilium.io/IPAMRequestSatisfied`, and
//!    queue it if it still waits.

use api::Condition;
use api::types::Service;

use super::LbIpam;
use super::conditions::{self, REQUEST_SATISFIED, Unsatisfied};
use super::service::{ServiceKey, ServiceView};
use api::types::LoadBalancerIngress;

impl LbIpam {
    /// Records a Service and, when `process` is set and a pool exists, runs the pipeline on it.
    pub(super) fn apply_service(&mut self, svc: &Service, process: bool) {
        let key = ServiceKey::of(svc);
        if !self.config.is_responsible(svc) {
            self.stop_handling(svc, key);
            return;
        }
        let previous = self.services.remove(&key);
        let old_terms = previous.as_ref().filter(|p| !p.allocated.is_empty()).map(|p| p.sharing.clone());
        let mut view = ServiceView::from_service(svc, &self.config, previous.map(|p| *p));
        if old_terms.is_some_and(|old| old != view.sharing) {
            // A Service that waits because it clashed with this one may fit now.
            self.epoch += 1;
        }
        self.touched.service(&key, &svc.status);
        if process && !self.pools.is_empty() {
            self.process_service(&mut view, true);
        }
        self.services.insert(key, Box::new(view));
    }

    /// §3.1 step 4: the Service changed type or class. If we handled it, release its addresses and
    /// clear everything LB-IPAM writes: all ingress entries and our condition. A Service we never
    /// handled is left alone.
    fn stop_handling(&mut self, svc: &Service, key: ServiceKey) {
        let Some(view) = self.services.remove(&key) else { return };
        self.forget(*view);
        let mut status = svc.status.clone();
        status.load_balancer.ingress.clear();
        conditions::remove(&mut status.conditions, REQUEST_SATISFIED);
        if status != svc.status {
            self.touched.released(key, status);
        }
    }

    /// Drops a Service: its addresses are released and it leaves the queue.
    pub(super) fn forget(&mut self, mut view: ServiceView) {
        for allocation in std::mem::take(&mut view.allocated) {
            self.release(&view.key, allocation);
        }
        if let Some(seq) = view.waiting {
            self.waiting.remove(&seq);
        }
    }

    /// Steps 2 to 5. Without `allocate`, only what the Service already has is checked and
    /// re-claimed (the first phase of a revalidation).
    pub(super) fn process_service(&mut self, view: &mut ServiceView, allocate: bool) {
        self.touched.service(&view.key, &view.status);
        self.strip_invalid_allocations(view);
        self.strip_or_import_ingresses(view);
        let failure = if allocate && !view.is_satisfied() { self.satisfy(view) } else { None };
        self.publish(view, failure);
    }

    /// Step 3. Entries without a parsable IP are dropped, as are duplicates.
    fn strip_or_import_ingresses(&mut self, view: &mut ServiceView) {
        let entries = std::mem::take(&mut view.status.load_balancer.ingress);
        let mut kept: Vec<LoadBalancerIngress> = Vec::with_capacity(entries.len());
        let mut seen = Vec::with_capacity(entries.len());
        for entry in entries {
            let Some(ip) = entry.ip.as_deref().and_then(|s| s.parse().ok()) else { continue };
            if seen.contains(&ip) {
                continue;
            }
            if view.holds(ip) || self.import(view, ip) {
                seen.push(ip);
                kept.push(entry);
            }
        }
        view.status.load_balancer.ingress = kept;
    }

    /// Step 5. The condition says `True` once satisfied, otherwise why not; a request with
    /// unparsable IPs says so even when the valid ones are assigned, since it cannot be what the user
    /// meant.
    pub(super) fn publish(&mut self, view: &mut ServiceView, failure: Option<Unsatisfied>) {
        for allocation in &view.allocated {
            if !view
                .status
                .load_balancer
                .ingress
                .iter()
                .any(|i| i.ip.as_deref().and_then(|s| s.parse().ok()) == Some(allocation.ip))
            {
                view.status
                    .load_balancer
                    .ingress
                    .push(LoadBalancerIngress { ip: Some(allocation.ip.to_string()), ..Default::default() });
            }
        }
        let satisfied = view.is_satisfied();
        let condition = match (&view.invalid_request, satisfied, failure) {
            (Some(bad), _, _) => Some(Unsatisfied::InvalidRequest(bad.clone()).condition(view.generation)),
            (None, true, _) => Some(conditions::satisfied(view.generation)),
            (None, false, failure) => failure.map(|f| f.condition(view.generation)),
        };
        if let Some(condition) = condition {
            Condition::set(&mut view.status.conditions, condition, &self.now);
        }
        match (satisfied, view.waiting) {
            (true, Some(seq)) => {
                self.waiting.remove(&seq);
                view.waiting = None;
            }
            (false, None) => {
                let seq = self.next_wait;
                self.next_wait += 1;
                self.waiting.insert(seq, view.key.clone());
                view.waiting = Some(seq);
            }
            _ => {}
        }
    }

    /// After pools change or at start-up: first every Service strips and re-imports (no new
    /// addresses are handed out in this phase), then the unsatisfied ones are served. Two phases, as
    /// on Cilium main, so that a still-valid address never moves: Cilium v1.18 interleaved the two
    /// and reshuffled addresses when a pool was widened or shrunk (issues #40358, #41458).
    pub(super) fn revalidate_all(&mut self) {
        let mut keys: Vec<ServiceKey> = self.services.keys().cloned().collect();
        keys.sort();
        for key in &keys {
            if let Some(mut view) = self.services.remove(key) {
                self.process_service(&mut view, false);
                self.services.insert(key.clone(), view);
            }
        }
        self.serve_waiting();
    }

    /// Gives waiting Services another chance, if an address may have become available since the
    /// last time. Repeats while that pass itself opened new sharing groups.
    pub(super) fn retry_waiting(&mut self) {
        while self.retried_at != self.epoch && !self.waiting.is_empty() && !self.pools.is_empty() {
            self.retried_at = self.epoch;
            self.serve_waiting();
        }
        self.retried_at = self.epoch;
    }

    /// One pass over the queue, longest-waiting first.
    fn serve_waiting(&mut self) {
        let keys: Vec<ServiceKey> = self.waiting.values().cloned().collect();
        for key in keys {
            if let Some(mut view) = self.services.remove(&key) {
                self.touched.service(&key, &view.status);
                let failure = if view.is_satisfied() { None } else { self.satisfy(&mut view) };
                self.publish(&mut view, failure);
                self.services.insert(key, view);
            }
        }
    }
}
