//! One plain line on stderr per step of `up` and `down`, with the step's duration, so a slow step
//! is obvious and logs stay greppable.

use std::fmt::Display;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Progress {
    prefix: String,
    enabled: bool,
    started: Instant,
}

impl Progress {
    pub fn new(lab: &str, action: &str, enabled: bool) -> Self {
        Progress { prefix: format!("lab {lab} {action}"), enabled, started: Instant::now() }
    }

    /// Starts timing a step; report it with [`Step::done`].
    pub fn step(&self, name: &'static str) -> Step<'_> {
        Step { progress: self, name, started: Instant::now() }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The final line: total time.
    pub fn finish(&self, detail: impl Display) {
        self.line("done", detail, self.elapsed());
    }

    fn line(&self, step: &str, detail: impl Display, took: Duration) {
        if self.enabled {
            eprintln!("{}: {step:<11} {detail} ({:.3}s)", self.prefix, took.as_secs_f64());
        }
    }
}

#[derive(Debug)]
pub struct Step<'a> {
    progress: &'a Progress,
    name: &'static str,
    started: Instant,
}

impl Step<'_> {
    pub fn done(self, detail: impl Display) {
        self.progress.line(self.name, detail, self.started.elapsed());
    }
}
