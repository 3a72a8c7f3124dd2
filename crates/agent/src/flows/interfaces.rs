//! Device names for flows (Hubble's `interface {index, name}`): the datapath's events carry the
//! ifindex of the device a program ran on; the name is looked up in the node's network namespace
//! (the agent's) and kept, so that a busy node makes a system call per device, not per event.
//!
//! Devices come and go with pods (each has a veth on the node), and a name can change: the whole
//! cache is forgotten every [`REFRESH`], which bounds how long a stale name can show. An index
//! the kernel does not know (a device already gone) gets no name, and is asked again after the
//! refresh, not on every event.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a looked-up name (or its absence) is trusted.
pub const REFRESH: Duration = Duration::from_secs(10);

/// ifindex → name, looked up with `lookup` on a miss.
pub struct InterfaceNames<F> {
    names: HashMap<u32, Option<String>>,
    lookup: F,
    refreshed: Instant,
}

impl InterfaceNames<fn(u32) -> Option<String>> {
    /// Names from the calling thread's network namespace.
    pub fn from_kernel() -> Self {
        InterfaceNames::new(datapath::interface_name)
    }
}

impl<F: FnMut(u32) -> Option<String>> InterfaceNames<F> {
    pub fn new(lookup: F) -> Self {
        InterfaceNames { names: HashMap::new(), lookup, refreshed: Instant::now() }
    }

    /// The name of device `ifindex` as of at most [`REFRESH`] before `now`; `None` for index 0
    /// (no device) or a device that does not exist.
    pub fn name(&mut self, ifindex: u32, now: Instant) -> Option<String> {
        if ifindex == 0 {
            return None;
        }
        if now.duration_since(self.refreshed) >= REFRESH {
            self.names.clear();
            self.refreshed = now;
        }
        let lookup = &mut self.lookup;
        self.names.entry(ifindex).or_insert_with(|| lookup(ifindex)).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_looked_up_once_per_refresh() {
        let mut calls = Vec::new();
        let mut names = InterfaceNames::new(|i| {
            calls.push(i);
            (i == 7).then(|| "lxc1".to_string())
        });
        let t0 = Instant::now();
        assert_eq!(names.name(7, t0).as_deref(), Some("lxc1"));
        assert_eq!(names.name(7, t0 + Duration::from_secs(1)).as_deref(), Some("lxc1"));
        assert_eq!(names.name(8, t0), None);
        assert_eq!(names.name(8, t0), None);
        assert_eq!(names.name(0, t0), None);
        drop(names);
        assert_eq!(calls, [7, 8], "one lookup per device, none for index 0");
    }

    #[test]
    fn the_cache_is_forgotten_after_the_refresh() {
        let mut seen = 0;
        let mut names = InterfaceNames::new(|_| {
            seen += 1;
            Some(format!("dev{seen}"))
        });
        let t0 = Instant::now();
        assert_eq!(names.name(3, t0).as_deref(), Some("dev1"));
        assert_eq!(names.name(3, t0 + Duration::from_millis(1)).as_deref(), Some("dev1"));
        assert_eq!(names.name(3, t0 + REFRESH + Duration::from_millis(1)).as_deref(), Some("dev2"));
    }

    #[test]
    fn the_loopback_device_is_named_by_the_kernel() {
        // Index 1 is `lo` in every network namespace.
        let mut names = InterfaceNames::from_kernel();
        assert_eq!(names.name(1, Instant::now()).as_deref(), Some("lo"));
        assert_eq!(names.name(u32::MAX, Instant::now()), None);
    }
}
