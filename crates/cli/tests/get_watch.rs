//! `cilia get -w` end to end, as root: the current objects, then a line per change of the lab's
//! pods, with `patch --type json` as one of the changes; `--type strategic` is refused.

mod common;

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Stdio},
    sync::mpsc::{Receiver, RecvTimeoutError, channel},
    time::{Duration, Instant},
};

use common::{TestLab, text};

const WAIT: Duration = Duration::from_secs(30);

/// A running `cilia get -w`, killed on drop (it ends only when interrupted).
struct Watch {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Watch {
    fn start(lab: &TestLab, args: &[&str]) -> Watch {
        let mut child =
            lab.command(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawning cilia get -w");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watch { child, lines, seen: Vec::new() }
    }

    /// The next line that satisfies `pred`, failing with every line so far after `WAIT`.
    fn expect(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no line {what} within {WAIT:?}; got:\n{}", self.seen.join("\n"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("get -w ended before a line {what}; got:\n{}", self.seen.join("\n"))
                }
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: watched
  labels: {app: watched}
spec:
  nodeName: k8s-w1
  containers:
  - name: main
    image: nicolaka/netshoot
    command: [tail]
    args: [-f, /dev/null]
  terminationGracePeriodSeconds: 0
";

/// The first column (the event) and the second (the name) of a `--output-watch-events` line.
fn event_of(line: &str) -> (&str, &str) {
    let mut cols = line.split_whitespace();
    (cols.next().unwrap_or_default(), cols.next().unwrap_or_default())
}

#[test]
fn get_watch_prints_the_list_then_each_change() {
    let lab = TestLab::up("gw");
    let mut all = Watch::start(&lab, &["get", "pods", "-w", "--output-watch-events", "--show-labels"]);
    // Selected by a label the pod gets only from the patch below: it must appear as added then.
    let mut selected = Watch::start(&lab, &["get", "pods", "-w", "--output-watch-events", "-l", "patched=json"]);

    let out = lab.cilia_stdin(&["apply", "-f", "-"], POD);
    assert!(out.status.success(), "{}", text(&out));
    let header = all.expect("with the header", |l| l.starts_with("EVENT"));
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["EVENT", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "LABELS"]
    );
    all.expect("adding the pod", |l| event_of(l) == ("ADDED", "watched"));

    // A JSON patch (RFC 6902) is one more change.
    let patch = r#"[{"op": "test", "path": "/metadata/labels/app", "value": "watched"},
                    {"op": "add", "path": "/metadata/labels/patched", "value": "json"}]"#;
    assert_eq!(lab.ok(&["patch", "pod", "watched", "--type", "json", "-p", patch]).trim(), "pod/watched patched");
    all.expect("with the patched label", |l| event_of(l) == ("MODIFIED", "watched") && l.contains("patched=json"));
    selected.expect("adding the pod that now matches", |l| event_of(l) == ("ADDED", "watched"));

    // A failing `test` operation changes nothing; strategic merge is refused before anything.
    let failing = r#"[{"op": "test", "path": "/metadata/labels/app", "value": "other"},
                      {"op": "remove", "path": "/metadata/labels/app"}]"#;
    let out = lab.cilia(&["patch", "pod", "watched", "--type", "json", "-p", failing]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("does not apply"), "{}", text(&out));
    let out =
        lab.cilia(&["patch", "pod", "watched", "--type", "strategic", "-p", r#"{"metadata":{"labels":{"app":null}}}"#]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no strategic-merge schemas"), "{}", text(&out));
    assert_eq!(lab.ok(&["get", "pod", "watched", "-o", "jsonpath={.metadata.labels.app}"]).trim(), "watched");

    // A watch started now lists the pod first, without events, in the default table.
    let mut named = Watch::start(&lab, &["get", "pod", "watched", "-w"]);
    named.expect("with the header", |l| l.starts_with("NAME"));
    named.expect("listing the pod", |l| l.starts_with("watched "));

    let out = lab.cilia(&["delete", "pod", "watched", "--grace-period", "0"]);
    assert!(out.status.success(), "{}", text(&out));
    all.expect("deleting the pod", |l| event_of(l) == ("DELETED", "watched"));
    selected.expect("deleting the pod", |l| event_of(l) == ("DELETED", "watched"));
}
