//! `cilia lab whoami`: the lab's stand-in for the traefik/whoami image.

use std::process::ExitCode;

use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct WhoamiArgs {
    /// The pod's name, answered as `Hostname:`.
    #[arg(long)]
    pub name: String,
    #[arg(long, default_value_t = 80)]
    pub port: u16,
}

pub async fn run(args: &WhoamiArgs) -> Result<ExitCode> {
    anyhow::bail!("whoami for {} is not built yet", args.name)
}
