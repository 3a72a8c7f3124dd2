//! The flow-event knobs and counters of one node's datapath, from its pins (for benchmarks and
//! debugging; the agent owns the ring buffer's consumer side):
//!
//! ```text
//! flow-events PIN_DIR level [off|medium|all]   # print, or set, the events level
//! flow-events PIN_DIR counters                 # one line: forwarded, dropped, written, lost, level
//! flow-events PIN_DIR drops                    # drops by reason
//! ```

use std::path::Path;

use datapath::{EventMaps, EventsLevel};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let usage = "usage: flow-events PIN_DIR level [off|medium|all] | counters | drops";
    let (dir, cmd) = match args {
        [dir, cmd, ..] => (Path::new(dir), cmd.as_str()),
        _ => return Err(usage.into()),
    };
    let mut maps = EventMaps::open(dir).map_err(|e| e.to_string())?;
    match (cmd, args.get(2).map(String::as_str)) {
        ("level", None) => println!("{:?}", maps.level().map_err(|e| e.to_string())?),
        ("level", Some(level)) => {
            let level = match level {
                "off" => EventsLevel::Off,
                "medium" => EventsLevel::Medium,
                "all" => EventsLevel::All,
                other => return Err(format!("unknown level {other:?} (off, medium, all)")),
            };
            maps.set_level(level).map_err(|e| e.to_string())?;
        }
        ("counters", None) => {
            let c = maps.counters().map_err(|e| e.to_string())?;
            let forwarded: u64 = c.forwards.iter().map(|(_, n)| n.packets).sum();
            let level = maps.level().map_err(|e| e.to_string())?;
            println!(
                "forwarded {forwarded} dropped {} written {} lost {} level {level:?}",
                c.total_drops(),
                c.events_written,
                c.events_lost
            );
        }
        ("drops", None) => {
            for (reason, n) in maps.counters().map_err(|e| e.to_string())?.drops {
                println!(
                    "{:>4} {:<32} {:>10} packets {:>12} bytes",
                    reason.0,
                    reason.description(),
                    n.packets,
                    n.bytes
                );
            }
        }
        _ => return Err(usage.into()),
    }
    Ok(())
}
