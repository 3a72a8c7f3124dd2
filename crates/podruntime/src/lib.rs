//! The lab's pods: what kube-controller-manager, kube-scheduler, the kubelet and a container
//! runtime do for the guide's workloads, in network namespaces on one machine.
//!
//! - [`controllers`]: Deployments become pods ([`deployment`]), pods get nodes ([`scheduler`]).
//! - [`kubelet`]: one per node. Every pod bound to the node gets a network namespace
//!   ([`pod_netns`]), wired by the real CNI plugin exactly as a container runtime calls it, and
//!   its "containers": the [`whoami`] server for `traefik/whoami` images, nothing for shell
//!   images, whose commands run in the namespace through `cilia exec` ([`exec`]).
//!
//! The planning parts (naming, deployment, scheduler, whoami's format) are tested without root;
//! the rest needs root and is tested end to end in a lab.

pub mod conditions;
pub mod controllers;
pub mod deployment;
pub mod error;
pub mod exec;
pub mod kubelet;
pub mod naming;
pub mod pod_netns;
pub mod scheduler;
pub mod whoami;

pub use error::{Error, Result};
