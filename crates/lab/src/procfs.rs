//! Processes as `/proc` shows them: whether a recorded pid is still the same live process, and
//! which processes belong to a lab (by network namespace or by the supervisor's environment marker).
//! `down` relies on these scans, not on pid files alone, so nothing the lab started survives it.

use std::fs;

use serde::{Deserialize, Serialize};

/// A pid plus its start time, so a recycled pid is never mistaken for the process we started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat`: clock ticks after boot when the process started.
    pub start_ticks: u64,
}

impl ProcessId {
    pub fn of(pid: i32) -> Option<Self> {
        let stat = Stat::read(pid)?;
        Some(ProcessId { pid, start_ticks: stat.start_ticks })
    }

    /// Running (not a zombie) and still the same process.
    pub fn is_alive(&self) -> bool {
        Stat::read(self.pid).is_some_and(|s| s.state != 'Z' && s.start_ticks == self.start_ticks)
    }
}

struct Stat {
    state: char,
    start_ticks: u64,
}

impl Stat {
    fn read(pid: i32) -> Option<Self> {
        parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }
}

/// `/proc/<pid>/stat`: `pid (comm) state ppid ...`; comm may contain spaces and parentheses, so
/// fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<Stat> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); field 22 (starttime) is index 19.
    Some(Stat { state: fields.first()?.chars().next()?, start_ticks: fields.get(19)?.parse().ok()? })
}

fn pids() -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

/// Live (not zombie) processes other than this one for which `select` holds.
fn live_others(select: impl Fn(i32) -> bool) -> Vec<i32> {
    let me = std::process::id() as i32;
    pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter(|&pid| select(pid))
        .filter(|&pid| Stat::read(pid).is_some_and(|s| s.state != 'Z'))
        .collect()
}

/// Live processes whose network namespace is one of `inodes`, except this process.
pub fn in_namespaces(inodes: &[u64]) -> Vec<i32> {
    if inodes.is_empty() {
        return Vec::new();
    }
    live_others(|pid| {
        let Ok(link) = fs::read_link(format!("/proc/{pid}/ns/net")) else {
            return false;
        };
        // "net:[4026532301]"
        let link = link.to_string_lossy();
        link.strip_prefix("net:[")
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|ino| inodes.contains(&ino))
    })
}

/// Live processes whose environment contains exactly `key=value`, except this process.
pub fn with_env(key: &str, value: &str) -> Vec<i32> {
    with_env_all(&[(key, value)])
}

/// Live processes whose environment contains every `key=value` of `pairs`, except this process.
pub fn with_env_all(pairs: &[(&str, &str)]) -> Vec<i32> {
    let needles: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    live_others(|pid| {
        fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| needles.iter().all(|n| env.split(|b| *b == 0).any(|kv| kv == n.as_bytes())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_comm() {
        let stat = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        let s = parse_stat(stat).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.start_ticks, 98765);
    }

    #[test]
    fn this_process_is_alive_and_a_recycled_pid_is_not() {
        let me = ProcessId::of(std::process::id() as i32).unwrap();
        assert!(me.is_alive());
        let other = ProcessId { start_ticks: me.start_ticks + 1, ..me };
        assert!(!other.is_alive());
    }
}
