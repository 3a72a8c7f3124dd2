//! Measures `lab up` and `lab down` wall time (as root):
//!
//! ```sh
//! cargo run -p lab --example lab-timing -- [ROUNDS]
//! ```
//!
//! Each round builds a lab named `timing<pid>` from nothing, runs `up` again on the complete lab,
//! and removes it. The example is its own supervisor (`lab-timing supervise NAME`), so it needs no
//! `cilia` binary.

use std::time::{Duration, Instant};

fn main() -> Result<(), lab::LabError> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("supervise") {
        return lab::run_supervisor(&args[2]);
    }
    let rounds: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(3);
    let lab = lab::Lab::new(&format!("timing{}", std::process::id() % 100_000))?;
    let exe = std::env::current_exe().expect("own executable");
    let supervisor = vec![exe.into(), "supervise".into(), lab.name().into()];
    let mut opts = lab::UpOptions::new(&lab, supervisor);
    opts.progress = false;

    let (mut ups, mut reups, mut downs) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let t = Instant::now();
        let report = lab.up(&opts)?;
        ups.push(t.elapsed());
        let t = Instant::now();
        let again = lab.up(&opts)?;
        reups.push(t.elapsed());
        assert_eq!(again.network.changes, 0, "second up changed something");
        let t = Instant::now();
        lab.down_quiet()?;
        downs.push(t.elapsed());
        println!(
            "round {round}: up {:.3}s ({} network changes), up again {:.3}s, down {:.3}s",
            ups[round - 1].as_secs_f64(),
            report.network.changes,
            reups[round - 1].as_secs_f64(),
            downs[round - 1].as_secs_f64()
        );
    }
    let show = |name: &str, v: &mut Vec<Duration>| {
        v.sort();
        println!(
            "{name:<9} min {:.3}s  median {:.3}s  max {:.3}s",
            v[0].as_secs_f64(),
            v[v.len() / 2].as_secs_f64(),
            v[v.len() - 1].as_secs_f64()
        );
    };
    show("up", &mut ups);
    show("up again", &mut reups);
    show("down", &mut downs);
    Ok(())
}
