//! Sets `CILIA_VERSION` for `cilia version`: the package version, followed by the commit the
//! source is at when it is a git checkout and git is installed (a source tarball has neither).

use std::process::Command;

fn main() {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let version = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(commit) => format!("{version} (commit {commit})"),
        None => version,
    };
    println!("cargo:rustc-env=CILIA_VERSION={version}");
    println!("cargo:rerun-if-changed=build.rs");
    // Run again when HEAD moves: a checkout changes HEAD, a commit changes the branch it names
    // (a loose ref, or packed-refs once packed). Paths that do not exist are left out: cargo
    // would run the script on every build for them.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name])
            && std::path::Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

/// `git ARGS` in the crate's directory, trimmed; None when git is missing or fails.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}
