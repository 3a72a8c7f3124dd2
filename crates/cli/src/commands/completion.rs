//! `cilia completion SHELL`: the shell's completion script for every command and flag.

use std::{io::Write as _, process::ExitCode};

use anyhow::Result;
use clap_complete::Shell;

pub fn run(shell: Shell, mut cli: clap::Command) -> Result<ExitCode> {
    let name = cli.get_name().to_string();
    // Generated into memory first: the generator panics on a failed write, and a reader that
    // goes away early (`cilia completion bash | head`) must end the command quietly instead.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cli, name, &mut script);
    std::io::stdout().write_all(&script)?;
    Ok(ExitCode::SUCCESS)
}
