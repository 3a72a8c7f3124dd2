//! L2 announcements as pure logic: which node answers ARP/NDP for each LoadBalancer and external
//! IP, decided without per-Service coordination through the datastore. No kernel, no I/O.
//!
//! Design. Every agent sends a small authenticated UDP heartbeat ([`heartbeat`]) to its peers every
//! `interval`, carrying its readiness and its interfaces; a peer silent for `dead_after` is dead
//! ([`liveness`]), which detects failures in well under a second instead of Cilium's lease expiry
//! of 10–20 s. From the same inputs (Services, compiled policies, Node labels, the interfaces
//! every node reported, the live candidates) every agent computes the same owner for each IP by
//! rendezvous hashing over the nodes able to serve it ([`assignment`]): nodes a policy selects,
//! with an up matching interface, on the IP's subnet if any node is, and with a local backend for
//! `externalTrafficPolicy: Local`. Removing a node moves only its own IPs. Ownership is published
//! for humans and tools as Cilium-named Lease objects ([`lease`]), written only by the new owner
//! and only when the holder changes: steady state writes nothing to the datastore and reads
//! nothing beyond the watches every agent already has, whatever the number of Services, because
//! membership travels in O(N) heartbeats, not in O(S) leases. Joins are break-before-make: peers
//! count a newly ready node `join_delay` after hearing it ready, while the node itself waits one
//! more heartbeat `interval` (and, after its own start, until it has heard every live peer), so
//! the previous owner has stepped back before the newcomer answers; departures are announced
//! (`leaving`) after the node has withdrawn its own entries, so they leave a gap, never an overlap.
//! Policy status conditions are computed here too ([`conditions`]), for the one writer (the
//! operator) to write only when they change.
//!
//! How an agent drives it:
//!
//! 1. Start: `Liveness::new(node, config, now)`; pick an incarnation that grows across restarts
//!    (start time in ns); clear the datapath's announcement table left by a previous run.
//! 2. Every `interval`, and at once when readiness or interfaces change: send
//!    [`heartbeat::encode`] of a [`Heartbeat`] (seq + 1) to every peer.
//! 3. On a datagram: [`heartbeat::decode`] (receive buffer ≥ [`heartbeat::MAX_DATAGRAM`]), then
//!    [`Liveness::on_heartbeat`]; reassign if [`liveness::Change::is_change`].
//! 4. Sleep until the next send or [`Liveness::next_deadline`]; then [`Liveness::expire`] and
//!    [`Liveness::candidates`] (with the readiness the heartbeats advertise); reassign if the
//!    candidates changed.
//! 5. On Service, EndpointSlice, Node or policy changes: rebuild the inputs with
//!    [`ServiceInfo::from_object`], [`service::fill_local_backends_from_objects`],
//!    [`policy::compile_all`] (problem policies are left out) and the Nodes' labels; reassign.
//! 6. Reassign: [`assign`] over the inputs, the candidates and [`Liveness::interfaces`] plus the
//!    node's own; program [`Assignment::entries_for`] into the datapath (withdraw what is gone);
//!    then [`lease::plan`] on [`Assignment::lease_holders`] against the Lease informer's objects,
//!    and execute the ops (a conflict means the informer is behind: plan again after it catches up).
//! 7. Stop: advertise not ready, withdraw every entry from the datapath, then send `leaving`.
//!
//! The operator alone compiles policies for status: [`conditions::policy_status_update`], and a
//! write only when it returns `Some`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod assignment;
pub mod conditions;
pub mod heartbeat;
pub mod interfaces;
pub mod lease;
pub mod liveness;
pub mod policy;
pub mod service;

pub use assignment::{AnnounceEntry, Assignment, Inputs, IpAssignment, assign, score};
pub use heartbeat::Heartbeat;
pub use interfaces::Interface;
pub use liveness::{Liveness, LivenessConfig};
pub use policy::{CompiledPolicy, compile};
pub use service::{ServiceInfo, ServiceKey};
