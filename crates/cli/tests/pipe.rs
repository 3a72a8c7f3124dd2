//! A closed stdout (`cilia ... | head -3`) ends the command quietly with the pipe's exit status.

use std::process::{Command, Stdio};

#[test]
fn closed_stdout_ends_quietly_with_the_pipe_status() {
    // A pipe whose reader is gone before cilia writes: its first line fails with EPIPE.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_cilia"))
        .args(["--lab", "nosuchlabpipe", "lab", "status"])
        .env_remove("CILIA_DATASTORE")
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("running cilia");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "exit status; stderr:\n{stderr}");
    assert!(stderr.is_empty(), "nothing on stderr (no panic, no backtrace):\n{stderr}");
}
