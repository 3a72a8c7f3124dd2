//! `cilia version` (and `cilia --version`).

use std::process::ExitCode;

use anyhow::Result;

/// The package version, then the commit the binary was built from when the build could ask git
/// (see build.rs): `0.1.0 (commit 0123456789ab)`.
pub const VERSION: &str = env!("CILIA_VERSION");

pub fn run() -> Result<ExitCode> {
    println!("cilia {VERSION}");
    Ok(ExitCode::SUCCESS)
}
