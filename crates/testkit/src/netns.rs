//! A network namespace of one test: named uniquely (`<prefix>-<pid>-<seq>-<role>`, so that tests
//! running at once and leftovers of a killed run never collide) under `/run/netns`, and deleted
//! on drop, also when the test panics. Needs root, as every test that uses it.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug)]
pub struct TestNetns {
    pub name: String,
}

impl TestNetns {
    /// Creates `<prefix>-<pid>-<seq>-<role>`; fails the test with `ip`'s message when it cannot.
    pub fn new(prefix: &str, role: &str) -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        Self::named(&format!("{prefix}-{}-{seq}-{role}", std::process::id()))
    }

    /// Creates the namespace `name` (the caller makes it unique).
    pub fn named(name: &str) -> Self {
        let out = Command::new("ip").args(["netns", "add", name]).output().expect("run ip netns add");
        assert!(out.status.success(), "ip netns add {name}: {}", String::from_utf8_lossy(&out.stderr).trim());
        TestNetns { name: name.to_string() }
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Runs `args` inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", &self.name]).args(args).output().expect("run ip netns exec")
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}
