//! `cilia man [DIR]`: manual pages in roff, generated from the same definitions as `--help`.

use std::{path::Path, process::ExitCode};

use anyhow::{Context as _, Result};

/// With `dir`: one page per visible command (`cilia.1`, `cilia-get.1`, `cilia-lab-up.1`, ...).
/// Without: the page of `cilia` itself on stdout.
pub fn run(dir: Option<&Path>, cli: clap::Command) -> Result<ExitCode> {
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cli, dir).with_context(|| format!("writing man pages to {}", dir.display()))?;
            eprintln!("man pages written to {}", dir.display());
        }
        None => clap_mangen::Man::new(cli).render(&mut std::io::stdout())?,
    }
    Ok(ExitCode::SUCCESS)
}
