//! Runs guide steps: a shell command, its output, and a check (retried until a deadline for steps that
//! wait on controllers).

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

/// A check of a command's output; the error says what was wrong.
pub type OutputCheck = Box<dyn Fn(&str) -> Result<(), String>>;

/// What a step expects of its command's result.
pub enum Check {
    /// Exit status 0.
    Succeeds,
    /// Exit status non-zero (the guide's failure demonstrations), and a predicate on the output.
    FailsWith(OutputCheck),
    /// Exit status 0 and the output contains every string.
    Contains(Vec<String>),
    /// Exit status 0 and a custom predicate on the output; the error says what was wrong.
    Output(OutputCheck),
}

pub struct Step {
    pub title: String,
    /// Where cilia deliberately differs from the guide: the guide's command and why cilia's
    /// differs; printed with the step (the same reasons as the table in docs/guide.md).
    pub differs: Option<(String, String)>,
    /// A shell command line; `cilia` is this binary.
    pub command: String,
    pub check: Check,
    /// Re-run until the check passes or this much time passes (for results controllers produce).
    pub wait: Duration,
}

impl Step {
    pub fn new(title: impl Into<String>, command: impl Into<String>, check: Check) -> Self {
        Step { title: title.into(), differs: None, command: command.into(), check, wait: Duration::ZERO }
    }

    /// Marks the step as cilia's form of the guide's `guide_command`, for `reason`.
    pub fn differs(mut self, guide_command: impl Into<String>, reason: impl Into<String>) -> Self {
        self.differs = Some((guide_command.into(), reason.into()));
        self
    }

    pub fn waiting(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }
}

pub fn contains<const N: usize>(items: [&str; N]) -> Check {
    Check::Contains(items.iter().map(|s| s.to_string()).collect())
}

/// `cilia get pod -o wide` after the guide's webpod (three replicas) and curl-pod are applied:
/// all four are Running and ready.
pub fn webpods_and_curl_pod_ready() -> Check {
    Check::Output(Box::new(|out| {
        let ready = |prefix: &str| {
            out.lines()
                .filter(|l| {
                    let c: Vec<&str> = l.split_whitespace().collect();
                    c.first().is_some_and(|n| n.starts_with(prefix))
                        && c.get(1) == Some(&"1/1")
                        && c.get(2) == Some(&"Running")
                })
                .count()
        };
        match (ready("webpod-"), ready("curl-pod")) {
            (3, 1) => Ok(()),
            (w, c) => Err(format!("{w} of 3 webpods and {c} of 1 curl-pod ready")),
        }
    }))
}

pub struct Section {
    /// Short name to run one section: `cilia lab guide lbipam`.
    pub id: &'static str,
    pub title: &'static str,
    pub steps: Vec<Step>,
}

/// The sections in the guide's order.
pub fn sections() -> Vec<Section> {
    vec![
        super::topology::section(),
        super::native_routing::section(),
        super::vxlan::section(),
        super::lbipam::section(),
        super::service_lb::section(),
        super::l2::section(),
    ]
}

struct Outcome {
    ok: bool,
    output: String,
    why: String,
}

/// Runs the sections named in `only` (all when empty), in the guide's order, each after bringing
/// the lab to the state the guide is in where it starts ([`super::reset`]); returns whether all
/// steps passed. Stops at the first failure, since later steps build on earlier ones.
pub async fn run(lab: &str, datastore: Option<&str>, only: &[String]) -> Result<bool> {
    let exe = std::env::current_exe().context("locating the cilia binary")?;
    let bin_dir = exe.parent().map(PathBuf::from).context("cilia binary has no directory")?;
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let sections = sections();
    let known: Vec<&str> = sections.iter().map(|s| s.id).collect();
    if let Some(unknown) = only.iter().find(|o| !known.contains(&o.as_str())) {
        anyhow::bail!("no guide section {unknown:?}; sections: {}", known.join(", "));
    }
    let (mut passed, mut failed) = (0, 0);
    let mut previous: Option<usize> = None;
    for (index, section) in sections.into_iter().enumerate() {
        if !(only.is_empty() || only.iter().any(|o| o == section.id)) {
            continue;
        }
        // The guide's state where this section starts: everything from the start for the first
        // section run, the routing mode and the pods when sections in between are skipped.
        let preparation = match previous {
            None => Some(super::reset::section(index, true)),
            Some(p) if p + 1 != index => Some(super::reset::section(index, false)),
            Some(_) => None,
        };
        previous = Some(index);
        for section in preparation.into_iter().chain([section]) {
            println!("\n=== {} ===", section.title);
            for step in section.steps {
                println!("\n# {}", step.title);
                if let Some((guide, reason)) = &step.differs {
                    println!("  the guide: {guide}");
                    println!("  cilia:     {reason}");
                }
                println!("$ {}", step.command);
                let outcome = run_step(&step, &path, lab, datastore).await?;
                for line in outcome.output.lines() {
                    println!("  {line}");
                }
                if outcome.ok {
                    passed += 1;
                    println!("[OK]");
                } else {
                    failed += 1;
                    println!("[FAILED] {}", outcome.why);
                    break;
                }
            }
            if failed > 0 {
                break;
            }
        }
        if failed > 0 {
            break;
        }
    }
    println!("\n{passed} passed, {failed} failed");
    Ok(failed == 0)
}

async fn run_step(step: &Step, path: &str, lab: &str, datastore: Option<&str>) -> Result<Outcome> {
    let deadline = Instant::now() + step.wait;
    loop {
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg("-c").arg(&step.command).env("PATH", path).env("CILIA_LAB", lab);
        if let Some(url) = datastore {
            cmd.env("CILIA_DATASTORE", url);
        }
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.stdin(Stdio::null()).output())
            .await
            .with_context(|| format!("step {:?} did not finish within 60 s", step.title))?
            .with_context(|| format!("running {:?}", step.command))?;
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        let status = out.status.success();
        let verdict: Result<(), String> = match &step.check {
            Check::Succeeds if status => Ok(()),
            Check::FailsWith(f) if !status => f(&output),
            Check::FailsWith(_) => Err("expected the command to fail, it succeeded".into()),
            Check::Contains(items) if status => match items.iter().find(|i| !output.contains(i.as_str())) {
                None => Ok(()),
                Some(missing) => Err(format!("output does not contain {missing:?}")),
            },
            Check::Output(f) if status => f(&output),
            _ => Err(format!("command failed ({})", out.status)),
        };
        match verdict {
            Ok(()) => return Ok(Outcome { ok: true, output, why: String::new() }),
            Err(why) if Instant::now() >= deadline => return Ok(Outcome { ok: false, output, why }),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn help_names_every_section_in_order() {
        let ids: Vec<&str> = super::sections().iter().map(|s| s.id).collect();
        let mut cli = crate::Cli::command();
        let lab = cli.find_subcommand_mut("lab").expect("lab");
        let help = lab.find_subcommand_mut("guide").expect("guide").render_long_help().to_string();
        assert!(help.contains(&ids.join(", ")), "{help}");
    }
}
