//! Which nodes are alive and may announce, from heartbeats, with time injected so every rule is
//! testable.
//!
//! Rules:
//! - A peer is alive while heard within `dead_after`; at exactly `dead_after` of silence it is dead.
//! - Heartbeats are ordered by (incarnation, seq): an older incarnation or a seq not newer than the
//!   last one of the same incarnation is a replay (or a reordered datagram) and is ignored. A newer
//!   incarnation is a restart: the peer starts over, join clock included. A dead peer's high-water
//!   mark is kept, so replaying its last datagrams cannot bring it back.
//! - `leaving` drops the peer at once (it has withdrawn its announcements before saying so).
//! - A peer is a candidate once it has been ready for `join_delay` (counted from the first ready
//!   heartbeat heard of its current incarnation). A peer heard again after being counted dead,
//!   same incarnation (a healed partition, a stalled agent), counts again at once: it never
//!   stopped counting itself, so making it wait would prolong two nodes answering.
//! - The local node counts itself once ready for `join_delay + interval`, and not before
//!   `dead_after + join_delay` after this view was created.
//!
//! Why the extra `interval` (break before make): a node becoming ready sends a heartbeat at once;
//! with delivery under one `interval`, every peer hears it less than `interval` later and so
//! counts the newcomer — and hands over whatever IPs it now wins — before the newcomer counts
//! itself and starts answering. Why the start-up wait: a starting node must have heard every live
//! peer (each sends every `interval`, so within `2 × interval < dead_after`) and let those peers'
//! join clocks mature before claiming anything, or it would see itself alone and claim IPs their
//! owners still answer for. Together: whenever a node counts itself, every live peer counts it
//! and it counts every live peer, so two nodes cannot both see themselves as the highest-scoring
//! candidate (each would have to score higher than the other). Going the other way (not ready,
//! leaving, dying) the node stops first and the peers learn later: a gap, never an overlap.
//! A lost first ready heartbeat stretches the join by up to one interval (the next one is sent on
//! schedule); the assignment moves only the IPs the newcomer wins, so the exposure is bounded.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use crate::{heartbeat::Heartbeat, interfaces::Interface};

/// Timing of heartbeats and of the decisions made from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LivenessConfig {
    /// Every node sends a heartbeat to every peer this often (and at once when its readiness or
    /// interfaces change).
    pub interval: Duration,
    /// A peer silent this long is dead and its IPs move.
    pub dead_after: Duration,
    /// A newly ready peer (new, restarted or back) counts only after being ready this long.
    pub join_delay: Duration,
}

impl Default for LivenessConfig {
    /// 100 ms heartbeats, dead after 500 ms (four lost in a row are tolerated), join after 1 s.
    fn default() -> Self {
        LivenessConfig {
            interval: Duration::from_millis(100),
            dead_after: Duration::from_millis(500),
            join_delay: Duration::from_secs(1),
        }
    }
}

/// Why a [`LivenessConfig`] is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The interval is below [`LivenessConfig::MIN_INTERVAL`].
    #[error("heartbeat interval {0:?} is below the minimum of 10ms")]
    IntervalTooShort(Duration),
    /// `dead_after` is below three intervals: one late or lost heartbeat would kill a live node.
    #[error("dead-after {dead_after:?} must be at least 3 heartbeat intervals ({min:?})")]
    DeadAfterTooShort {
        /// The configured value.
        dead_after: Duration,
        /// The least allowed.
        min: Duration,
    },
}

impl LivenessConfig {
    /// The shortest heartbeat interval accepted.
    pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

    /// Checks the bounds: interval ≥ 10 ms (N² datagrams per interval must stay cheap), and
    /// dead_after ≥ 3 × interval (so a single lost or late datagram is not a death).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interval < Self::MIN_INTERVAL {
            return Err(ConfigError::IntervalTooShort(self.interval));
        }
        let min = self.interval.saturating_mul(3);
        if self.dead_after < min {
            return Err(ConfigError::DeadAfterTooShort { dead_after: self.dead_after, min });
        }
        Ok(())
    }

    /// `leaseDurationSeconds` for published Leases: `dead_after` rounded up to whole seconds.
    pub fn lease_duration_seconds(&self) -> i64 {
        let secs = self.dead_after.as_secs() + u64::from(self.dead_after.subsec_nanos() > 0);
        i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
    }
}

/// Why a heartbeat changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// It carries this node's own name (a loop or a misconfiguration).
    Own,
    /// An older incarnation of the peer than the one already heard.
    StaleIncarnation,
    /// Not newer than the last seq of the same incarnation: a replay or a reordered datagram.
    Replay,
}

/// What a heartbeat changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Dropped; see the reason.
    Ignored(Ignored),
    /// Accepted; nothing the assignment reads changed.
    Unchanged,
    /// A peer appeared, restarted (new incarnation) or came back after being dead or leaving.
    Joined,
    /// The peer announced it is leaving; it is dropped at once.
    Left,
    /// The peer's readiness or interfaces changed.
    Updated {
        /// `ready` flipped.
        ready_changed: bool,
        /// The reported interfaces differ.
        interfaces_changed: bool,
    },
}

impl Change {
    /// Whether the candidates or the interfaces (what the assignment reads) may have changed.
    pub fn is_change(&self) -> bool {
        !matches!(self, Change::Ignored(_) | Change::Unchanged)
    }
}

#[derive(Clone, Debug)]
struct Peer {
    incarnation: u64,
    seq: u64,
    last_heard: Instant,
    /// When the peer starts to count: `join_delay` after its first ready heartbeat of this
    /// incarnation, or at once when it comes back from dead; `None` while not ready.
    counts_from: Option<Instant>,
    /// Heard within `dead_after` as of the last `expire`, and not leaving.
    alive: bool,
    leaving: bool,
    interfaces: Vec<Interface>,
}

/// The membership view of one node.
#[derive(Clone, Debug)]
pub struct Liveness {
    me: String,
    config: LivenessConfig,
    peers: BTreeMap<String, Peer>,
    /// When this view was created (the local agent started listening).
    started: Instant,
    self_ready_since: Option<Instant>,
    /// The latest time any call has seen, so `next_deadline` reports only future join maturities.
    last_now: Option<Instant>,
}

impl Liveness {
    /// A view for node `me`, created (listening from) `now`, with validated timing.
    pub fn new(me: impl Into<String>, config: LivenessConfig, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Liveness {
            me: me.into(),
            config,
            peers: BTreeMap::new(),
            started: now,
            self_ready_since: None,
            last_now: Some(now),
        })
    }

    /// The timing in force.
    pub fn config(&self) -> &LivenessConfig {
        &self.config
    }

    /// The local node's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    fn observe(&mut self, now: Instant) {
        self.last_now = Some(self.last_now.map_or(now, |t| t.max(now)));
    }

    /// Takes one (authenticated) heartbeat received at `now`.
    pub fn on_heartbeat(&mut self, hb: &Heartbeat, now: Instant) -> Change {
        self.observe(now);
        if hb.node == self.me {
            return Change::Ignored(Ignored::Own);
        }
        let join_delay = self.config.join_delay;
        let joining = (hb.ready && !hb.leaving).then_some(now + join_delay);
        let Some(peer) = self.peers.get_mut(&hb.node) else {
            self.peers.insert(
                hb.node.clone(),
                Peer {
                    incarnation: hb.incarnation,
                    seq: hb.seq,
                    last_heard: now,
                    counts_from: joining,
                    alive: !hb.leaving,
                    leaving: hb.leaving,
                    interfaces: hb.interfaces.clone(),
                },
            );
            return if hb.leaving { Change::Left } else { Change::Joined };
        };
        if hb.incarnation < peer.incarnation {
            return Change::Ignored(Ignored::StaleIncarnation);
        }
        if hb.incarnation == peer.incarnation && hb.seq <= peer.seq {
            return Change::Ignored(Ignored::Replay);
        }
        let restarted = hb.incarnation > peer.incarnation;
        let back_from_dead = !restarted && !peer.alive && !peer.leaving;
        let was_member = peer.alive && !peer.leaving;
        let was_ready = peer.counts_from.is_some();
        let interfaces_changed = peer.interfaces != hb.interfaces;
        peer.incarnation = hb.incarnation;
        peer.seq = hb.seq;
        peer.last_heard = now;
        if interfaces_changed {
            peer.interfaces = hb.interfaces.clone();
        }
        if hb.leaving {
            peer.leaving = true;
            peer.alive = false;
            peer.counts_from = None;
            return if was_member { Change::Left } else { Change::Unchanged };
        }
        peer.leaving = false;
        peer.alive = true;
        if restarted || !was_member {
            // A new run or back from leaving: the join clock starts over. Back from dead with the
            // same incarnation: it has been counting itself all along, so it counts again at once.
            peer.counts_from = if back_from_dead { hb.ready.then_some(now) } else { joining };
            return Change::Joined;
        }
        if !hb.ready {
            peer.counts_from = None;
        } else if peer.counts_from.is_none() {
            peer.counts_from = joining;
        }
        let ready_changed = was_ready != hb.ready;
        if ready_changed || interfaces_changed {
            Change::Updated { ready_changed, interfaces_changed }
        } else {
            Change::Unchanged
        }
    }

    /// Marks peers silent for `dead_after` or more as dead and returns their names (sorted). Their
    /// (incarnation, seq) is kept, so an old datagram cannot revive them.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        self.observe(now);
        let dead_after = self.config.dead_after;
        let mut dead = Vec::new();
        for (name, peer) in &mut self.peers {
            if peer.alive && now.saturating_duration_since(peer.last_heard) >= dead_after {
                peer.alive = false;
                peer.counts_from = None;
                dead.push(name.clone());
            }
        }
        dead
    }

    /// When the local node may count itself, given its readiness start.
    fn self_counts_from(&self) -> Option<Instant> {
        let c = &self.config;
        let ready_since = self.self_ready_since?;
        Some((ready_since + c.join_delay + c.interval).max(self.started + c.dead_after + c.join_delay))
    }

    /// The next instant at which the candidates change without any heartbeat arriving: a peer's
    /// expiry, or a join delay (a peer's or the local node's) maturing after the latest time seen.
    /// The agent sleeps until then (or the next heartbeat), then calls `expire` and `candidates`.
    pub fn next_deadline(&self) -> Option<Instant> {
        let seen = self.last_now;
        let future = |t: &Instant| seen.is_none_or(|s| *t > s);
        let dead_after = self.config.dead_after;
        let peers = self.peers.values().filter(|p| p.alive).flat_map(|p| {
            let expiry = p.last_heard + dead_after;
            [Some(expiry), p.counts_from.filter(future)].into_iter().flatten()
        });
        peers.chain(self.self_counts_from().filter(future)).min()
    }

    /// The nodes that may own IPs at `now`: peers heard within `dead_after`, ready, not leaving,
    /// whose join delay has passed; plus the local node if `self_ready` has held for
    /// `join_delay + interval` and this view has listened for `dead_after + join_delay`. This call
    /// records when `self_ready` became true: pass the readiness the node advertises in its
    /// heartbeats, and send a heartbeat at once when it changes.
    pub fn candidates(&mut self, now: Instant, self_ready: bool) -> BTreeSet<String> {
        self.observe(now);
        if !self_ready {
            self.self_ready_since = None;
        } else if self.self_ready_since.is_none() {
            self.self_ready_since = Some(now);
        }
        let dead_after = self.config.dead_after;
        let mut out: BTreeSet<String> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.alive
                    && !p.leaving
                    && now.saturating_duration_since(p.last_heard) < dead_after
                    && p.counts_from.is_some_and(|t| now >= t)
            })
            .map(|(name, _)| name.clone())
            .collect();
        if self.self_counts_from().is_some_and(|t| now >= t) {
            out.insert(self.me.clone());
        }
        out
    }

    /// The interfaces of every alive peer, for the assignment (the agent adds its own).
    pub fn interfaces(&self) -> BTreeMap<String, Vec<Interface>> {
        self.peers.iter().filter(|(_, p)| p.alive).map(|(n, p)| (n.clone(), p.interfaces.clone())).collect()
    }

    /// Whether a peer is alive as of the last `expire` (and not leaving).
    pub fn is_alive(&self, node: &str) -> bool {
        self.peers.get(node).is_some_and(|p| p.alive)
    }

    /// The alive peers' names, sorted.
    pub fn alive_peers(&self) -> impl Iterator<Item = &str> {
        self.peers.iter().filter(|(_, p)| p.alive).map(|(n, _)| n.as_str())
    }

    /// Peers that went silent without saying they were leaving: their node is down, or cut off
    /// from this one. A peer that left cleanly (an agent restart) is not among them: its node and
    /// its pods are still up.
    pub fn silent_peers(&self) -> impl Iterator<Item = &str> {
        self.peers.iter().filter(|(_, p)| !p.alive && !p.leaving).map(|(n, _)| n.as_str())
    }
}

#[cfg(test)]
#[path = "liveness_tests.rs"]
mod tests;
