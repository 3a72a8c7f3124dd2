use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::assignment::score;

fn cfg() -> LivenessConfig {
    LivenessConfig {
        interval: Duration::from_millis(100),
        dead_after: Duration::from_millis(400),
        join_delay: Duration::from_millis(1000),
    }
}

fn hb(node: &str, incarnation: u64, seq: u64, ready: bool) -> Heartbeat {
    Heartbeat { node: node.into(), incarnation, seq, ready, leaving: false, interfaces: vec![] }
}

fn leaving(node: &str, incarnation: u64, seq: u64) -> Heartbeat {
    Heartbeat { leaving: true, ..hb(node, incarnation, seq, false) }
}

struct Clock(Instant);

impl Clock {
    fn at(&self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
}

fn setup() -> (Liveness, Clock) {
    let t0 = Instant::now();
    (Liveness::new("me", cfg(), t0).unwrap(), Clock(t0))
}

fn names(set: &BTreeSet<String>) -> Vec<&str> {
    set.iter().map(String::as_str).collect()
}

#[test]
fn config_bounds() {
    let ok = cfg();
    assert_eq!(ok.validate(), Ok(()));
    let short = LivenessConfig { interval: Duration::from_millis(9), ..ok };
    assert_eq!(short.validate(), Err(ConfigError::IntervalTooShort(Duration::from_millis(9))));
    let hasty = LivenessConfig { dead_after: Duration::from_millis(299), ..ok };
    assert!(matches!(hasty.validate(), Err(ConfigError::DeadAfterTooShort { .. })));
    assert!(Liveness::new("me", hasty, Instant::now()).is_err());
    assert_eq!(LivenessConfig { dead_after: Duration::from_millis(300), ..ok }.validate(), Ok(()));
    assert_eq!(LivenessConfig::default().validate(), Ok(()));
    assert_eq!(ok.lease_duration_seconds(), 1);
    assert_eq!(LivenessConfig { dead_after: Duration::from_secs(2), ..ok }.lease_duration_seconds(), 2);
    assert_eq!(LivenessConfig { dead_after: Duration::from_millis(2001), ..ok }.lease_duration_seconds(), 3);
}

#[test]
fn own_heartbeats_are_ignored() {
    let (mut l, c) = setup();
    assert_eq!(l.on_heartbeat(&hb("me", 1, 1, true), c.at(0)), Change::Ignored(Ignored::Own));
    assert_eq!(l.alive_peers().count(), 0);
}

#[test]
fn a_peer_counts_after_join_delay() {
    let (mut l, c) = setup();
    assert_eq!(l.on_heartbeat(&hb("a", 1, 1, true), c.at(0)), Change::Joined);
    for (seq, t) in (2..).zip((100..=1000).step_by(100)) {
        assert_eq!(l.on_heartbeat(&hb("a", 1, seq, true), c.at(t)), Change::Unchanged);
    }
    assert!(l.candidates(c.at(999), false).is_empty());
    assert_eq!(names(&l.candidates(c.at(1000), false)), ["a"]);
}

#[test]
fn the_join_clock_starts_when_the_peer_is_ready() {
    let (mut l, c) = setup();
    l.on_heartbeat(&hb("a", 1, 1, false), c.at(0));
    l.on_heartbeat(&hb("a", 1, 2, false), c.at(100));
    assert!(l.candidates(c.at(200), false).is_empty(), "not ready");
    assert_eq!(
        l.on_heartbeat(&hb("a", 1, 3, true), c.at(300)),
        Change::Updated { ready_changed: true, interfaces_changed: false }
    );
    let mut seq = 4;
    for t in (400..=1300).step_by(100) {
        l.on_heartbeat(&hb("a", 1, seq, true), c.at(t));
        seq += 1;
    }
    assert!(l.candidates(c.at(1299), false).is_empty());
    assert_eq!(names(&l.candidates(c.at(1300), false)), ["a"]);
    // Not ready again: out at once, and the clock restarts.
    assert_eq!(
        l.on_heartbeat(&hb("a", 1, seq, false), c.at(1350)),
        Change::Updated { ready_changed: true, interfaces_changed: false }
    );
    assert!(l.candidates(c.at(1350), false).is_empty());
    l.on_heartbeat(&hb("a", 1, seq + 1, true), c.at(1400));
    assert!(l.candidates(c.at(1450), false).is_empty());
}

#[test]
fn dead_after_exactly_dead_after() {
    let (mut l, c) = setup();
    for (seq, t) in (1..).zip((0..=1500).step_by(100)) {
        l.on_heartbeat(&hb("a", 1, seq, true), c.at(t));
    }
    // Last heard at 1500: alive until 1900 exclusive.
    assert_eq!(names(&l.candidates(c.at(1899), false)), ["a"]);
    assert!(l.expire(c.at(1899)).is_empty());
    // Without `expire`, the candidates already leave it out...
    assert!(l.candidates(c.at(1900), false).is_empty());
    // ... and `expire` reports it once.
    assert_eq!(l.expire(c.at(1900)), ["a"]);
    assert!(l.expire(c.at(2500)).is_empty());
    assert!(!l.is_alive("a"));
    assert!(l.interfaces().is_empty());
}

#[test]
fn replays_and_stale_incarnations_are_ignored() {
    let (mut l, c) = setup();
    l.on_heartbeat(&hb("a", 5, 10, true), c.at(0));
    assert_eq!(l.on_heartbeat(&hb("a", 5, 10, true), c.at(50)), Change::Ignored(Ignored::Replay));
    assert_eq!(l.on_heartbeat(&hb("a", 5, 3, false), c.at(60)), Change::Ignored(Ignored::Replay));
    assert_eq!(l.on_heartbeat(&hb("a", 4, 99, true), c.at(70)), Change::Ignored(Ignored::StaleIncarnation));
    // A replayed datagram does not refresh liveness.
    assert_eq!(l.expire(c.at(400)), ["a"]);
    // Nor does it revive a dead peer: the high-water mark survives death.
    assert_eq!(l.on_heartbeat(&hb("a", 5, 10, true), c.at(500)), Change::Ignored(Ignored::Replay));
    assert!(!l.is_alive("a"));
}

#[test]
fn a_restart_starts_the_join_clock_over() {
    let (mut l, c) = setup();
    for (seq, t) in (1..).zip((0..=1200).step_by(100)) {
        l.on_heartbeat(&hb("a", 1, seq, true), c.at(t));
    }
    assert_eq!(names(&l.candidates(c.at(1200), false)), ["a"]);
    // The peer restarted (new incarnation, seq from 1) before anyone declared it dead.
    assert_eq!(l.on_heartbeat(&hb("a", 2, 1, true), c.at(1250)), Change::Joined);
    assert!(l.candidates(c.at(1250), false).is_empty(), "a new run must re-join");
    for (seq, t) in (2..).zip((1300..=2300).step_by(100)) {
        l.on_heartbeat(&hb("a", 2, seq, true), c.at(t));
    }
    assert!(l.candidates(c.at(2249), false).is_empty());
    assert_eq!(names(&l.candidates(c.at(2250), false)), ["a"]);
}

#[test]
fn back_from_dead_with_the_same_incarnation_counts_at_once() {
    let (mut l, c) = setup();
    for (seq, t) in (1..).zip((0..=1200).step_by(100)) {
        l.on_heartbeat(&hb("a", 1, seq, true), c.at(t));
    }
    assert_eq!(l.expire(c.at(1600)), ["a"]);
    // A healed partition: the same run goes on (it never stopped counting itself).
    assert_eq!(l.on_heartbeat(&hb("a", 1, 40, true), c.at(5000)), Change::Joined);
    assert_eq!(names(&l.candidates(c.at(5000), false)), ["a"]);
}

#[test]
fn leaving_is_immediate() {
    let (mut l, c) = setup();
    for (seq, t) in (1..).zip((0..=1200).step_by(100)) {
        l.on_heartbeat(&hb("a", 1, seq, true), c.at(t));
    }
    assert_eq!(l.on_heartbeat(&leaving("a", 1, 100), c.at(1210)), Change::Left);
    assert!(l.candidates(c.at(1210), false).is_empty());
    assert!(!l.is_alive("a"));
    assert_eq!(l.on_heartbeat(&leaving("a", 1, 101), c.at(1220)), Change::Unchanged);
    // Changed its mind (same run): it has to join again.
    assert_eq!(l.on_heartbeat(&hb("a", 1, 102, true), c.at(1300)), Change::Joined);
    assert!(l.candidates(c.at(1300), false).is_empty());
    for (seq, t) in (103..).zip((1400..=2300).step_by(100)) {
        l.on_heartbeat(&hb("a", 1, seq, true), c.at(t));
    }
    assert_eq!(names(&l.candidates(c.at(2300), false)), ["a"]);
}

#[test]
fn a_peer_first_heard_leaving_is_not_a_member() {
    let (mut l, c) = setup();
    assert_eq!(l.on_heartbeat(&leaving("a", 1, 1), c.at(0)), Change::Left);
    assert!(!l.is_alive("a"));
}

#[test]
fn interface_changes_are_reported() {
    let (mut l, c) = setup();
    l.on_heartbeat(&hb("a", 1, 1, true), c.at(0));
    let mut next = hb("a", 1, 2, true);
    next.interfaces = vec![Interface::new("eth0", true, vec!["10.0.0.2/24".parse().unwrap()])];
    assert_eq!(l.on_heartbeat(&next, c.at(100)), Change::Updated { ready_changed: false, interfaces_changed: true });
    assert_eq!(l.interfaces()["a"], next.interfaces);
    next.seq = 3;
    assert_eq!(l.on_heartbeat(&next, c.at(200)), Change::Unchanged);
}

#[test]
fn the_local_node_waits_an_extra_interval_and_for_its_peers() {
    let (mut l, c) = setup();
    // Ready from the start: the start-up wait (dead_after + join_delay = 1400) dominates.
    assert!(l.candidates(c.at(0), true).is_empty());
    assert!(l.candidates(c.at(1399), true).is_empty());
    assert_eq!(names(&l.candidates(c.at(1400), true)), ["me"]);
    // Not ready: out at once; ready again at 2000: in at 2000 + 1000 + 100.
    assert!(l.candidates(c.at(1500), false).is_empty());
    assert!(l.candidates(c.at(2000), true).is_empty());
    assert!(l.candidates(c.at(3099), true).is_empty());
    assert_eq!(names(&l.candidates(c.at(3100), true)), ["me"]);
}

#[test]
fn deadlines_cover_expiry_and_joins() {
    let (mut l, c) = setup();
    assert_eq!(l.next_deadline(), None, "nothing pending");
    l.candidates(c.at(0), true);
    assert_eq!(l.next_deadline(), Some(c.at(1400)), "own join");
    l.on_heartbeat(&hb("a", 1, 1, true), c.at(100));
    assert_eq!(l.next_deadline(), Some(c.at(500)), "a's expiry");
    l.on_heartbeat(&hb("a", 1, 2, true), c.at(450));
    assert_eq!(l.next_deadline(), Some(c.at(850)));
    for (seq, t) in (3..).zip((550..=1050).step_by(100)) {
        l.on_heartbeat(&hb("a", 1, seq, true), c.at(t));
    }
    // a's expiry at 1450, its join at 1100.
    assert_eq!(l.next_deadline(), Some(c.at(1100)));
    l.candidates(c.at(1100), true);
    // Past its join: own join at 1400 next, then a's expiry at 1450.
    assert_eq!(l.next_deadline(), Some(c.at(1400)));
    l.candidates(c.at(1400), true);
    assert_eq!(l.next_deadline(), Some(c.at(1450)));
}

/// A tiny discrete-time model of three agents (1 ms ticks) sharing one set of IPs: heartbeats every
/// interval plus one at once on a readiness change, each delivered after a random delay below
/// `max_delay`; nodes start, get ready, flap readiness, leave, crash and restart at random times.
/// Returns the number of (tick, IP) at which two live nodes both considered themselves the owner,
/// and the ticks at which a quiet, fully ready cluster had no owner for some IP.
fn simulate(seed: u64, max_delay_ms: u64) -> (usize, usize) {
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Ev {
        Start,
        Ready,
        Unready,
        Leave,
        Crash,
    }
    struct Node {
        name: String,
        up: bool,
        ready: bool,
        leaving: bool,
        incarnation: u64,
        seq: u64,
        next_send: u64,
        view: Option<Liveness>,
    }

    let config = cfg();
    let interval = 100;
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let ips: Vec<IpAddr> = (0..32u8).map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))).collect();
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|n| Node {
            name: n.to_string(),
            up: false,
            ready: false,
            leaving: false,
            incarnation: 0,
            seq: 0,
            next_send: 0,
            view: None,
        })
        .collect();

    // A schedule: each node starts in the first 2 s and is ready shortly after; then random
    // disturbances until 12 s; the last 4 s are quiet with every node up and ready.
    let end = 16_000;
    let mut schedule: Vec<(u64, usize, Ev)> = Vec::new();
    for i in 0..3 {
        let start = rng.below(2000);
        schedule.push((start, i, Ev::Start));
        schedule.push((start + rng.below(600), i, Ev::Ready));
    }
    for _ in 0..6 {
        let i = rng.below(3) as usize;
        let t = 2500 + rng.below(9000);
        let ev = match rng.below(4) {
            0 => Ev::Crash,
            1 => Ev::Leave,
            2 => Ev::Unready,
            _ => Ev::Ready,
        };
        schedule.push((t, i, ev));
        if matches!(ev, Ev::Crash | Ev::Leave) {
            // Back after a while, sometimes before the others declared it dead.
            let back = t + if ev == Ev::Leave { 200 } else { 1 } + rng.below(800);
            schedule.push((back, i, Ev::Start));
            schedule.push((back + rng.below(300), i, Ev::Ready));
        }
    }
    for i in 0..3 {
        schedule.push((11_900, i, Ev::Start));
        schedule.push((11_950, i, Ev::Ready));
    }
    schedule.sort_by_key(|(t, i, _)| (*t, *i));

    let mut inbox: Vec<(u64, usize, Heartbeat)> = Vec::new();
    let (mut overlaps, mut gaps) = (0, 0);
    let mut next_event = 0;
    let mut last: Vec<Option<(BTreeSet<String>, Vec<bool>)>> = vec![None, None, None];
    for now in 0..end {
        let mut send_now = [false; 3];
        while next_event < schedule.len() && schedule[next_event].0 == now {
            let (_, i, ev) = schedule[next_event];
            next_event += 1;
            let n = &mut nodes[i];
            match ev {
                Ev::Start if !n.up || n.leaving => {
                    // A new process: new incarnation, empty view.
                    n.up = true;
                    n.ready = false;
                    n.leaving = false;
                    n.incarnation += 1;
                    n.seq = 0;
                    n.view = Some(Liveness::new(n.name.clone(), config, at(now)).unwrap());
                    n.next_send = now;
                }
                Ev::Ready if n.up && !n.leaving && !n.ready => {
                    n.ready = true;
                    send_now[i] = true;
                }
                Ev::Unready if n.up && n.ready => {
                    n.ready = false;
                    send_now[i] = true;
                }
                Ev::Leave if n.up && !n.leaving => {
                    // Withdraw first (stop counting itself), then say so.
                    n.ready = false;
                    n.leaving = true;
                    send_now[i] = true;
                }
                Ev::Crash if n.up => {
                    n.up = false;
                    n.ready = false;
                    n.view = None;
                }
                _ => {}
            }
        }
        // Sends.
        for i in 0..3 {
            let n = &mut nodes[i];
            if !n.up || !(send_now[i] || now >= n.next_send) {
                continue;
            }
            n.seq += 1;
            n.next_send = now + interval;
            let msg = Heartbeat {
                node: n.name.clone(),
                incarnation: n.incarnation,
                seq: n.seq,
                ready: n.ready,
                leaving: n.leaving,
                interfaces: vec![],
            };
            for j in (0..3).filter(|j| *j != i) {
                inbox.push((now + rng.below(max_delay_ms), j, msg.clone()));
            }
        }
        // Deliveries due now (a node that is down loses them).
        let mut k = 0;
        while k < inbox.len() {
            if inbox[k].0 <= now {
                let (_, j, msg) = inbox.swap_remove(k);
                if let Some(view) = nodes[j].view.as_mut() {
                    view.on_heartbeat(&msg, at(now));
                }
            } else {
                k += 1;
            }
        }
        // Every live node decides what it owns (recomputed only when its candidates change).
        let mut claims = vec![0u32; ips.len()];
        for (i, n) in nodes.iter_mut().enumerate() {
            let Some(view) = n.view.as_mut() else { continue };
            view.expire(at(now));
            let candidates = view.candidates(at(now), n.ready && !n.leaving);
            if last[i].as_ref().is_none_or(|(c, _)| *c != candidates) {
                let owned: Vec<bool> = ips
                    .iter()
                    .map(|ip| {
                        let owner = candidates.iter().max_by(|x, y| score(x, *ip).cmp(&score(y, *ip)).then(y.cmp(x)));
                        owner == Some(&n.name)
                    })
                    .collect();
                last[i] = Some((candidates, owned));
            }
            let (_, owned) = last[i].as_ref().expect("just set");
            for (k, mine) in owned.iter().enumerate() {
                claims[k] += u32::from(*mine);
            }
        }
        overlaps += claims.iter().filter(|c| **c > 1).count();
        if now >= end - 1000 && claims.contains(&0) {
            gaps += 1;
        }
    }
    (overlaps, gaps)
}

#[test]
fn no_two_nodes_own_an_ip_at_once_when_heartbeats_arrive_in_time() {
    for seed in 0..100 {
        let (overlaps, gaps) = simulate(seed, 100);
        assert_eq!(overlaps, 0, "seed {seed}: two owners at once");
        assert_eq!(gaps, 0, "seed {seed}: a quiet ready cluster left an IP without owner");
    }
}

#[test]
fn the_model_does_see_overlaps_when_heartbeats_are_late() {
    // The same model with deliveries up to 3 intervals late breaks the premise, and the check
    // must notice: this is what keeps the test above honest.
    let total: usize = (0..100).map(|seed| simulate(seed, 300).0).sum();
    assert!(total > 0);
}

#[test]
fn silent_peers_are_the_dead_not_the_departed() {
    let (mut l, c) = setup();
    l.on_heartbeat(&hb("a", 1, 1, true), c.at(0));
    l.on_heartbeat(&hb("b", 1, 1, true), c.at(0));
    assert_eq!(l.silent_peers().count(), 0);
    l.on_heartbeat(&leaving("b", 1, 2), c.at(100));
    l.expire(c.at(400));
    assert_eq!(l.silent_peers().collect::<Vec<_>>(), ["a"], "b left cleanly; a went silent");
    l.on_heartbeat(&hb("a", 1, 2, true), c.at(500));
    assert_eq!(l.silent_peers().count(), 0, "a is heard again");
}
