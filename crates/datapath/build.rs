//! Compiles the C programs under `bpf/` into BPF objects embedded by `src/objects.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One object per program file, as Cilium builds bpf_lxc.o, bpf_host.o and bpf_sock.o, plus
/// alignchecker.o: no programs, only the BTF of the structs shared with Rust, which the ABI tests
/// read (small and quick, so it is built even when no test runs).
const OBJECTS: [&str; 5] = ["bpf_lxc", "bpf_host", "bpf_sock", "bpf_overlay", "alignchecker"];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let bpf_dir = manifest.join("../../bpf").canonicalize().expect("bpf/ next to crates/");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));

    rerun_if_changed(&bpf_dir);
    for name in OBJECTS {
        let src = bpf_dir.join(format!("{name}.c"));
        let obj = out_dir.join(format!("{name}.o"));
        let output = Command::new("clang")
            .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-I/usr/include/x86_64-linux-gnu", "-c"])
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .output()
            .unwrap_or_else(|e| panic!("running clang for {}: {e} (install clang and libbpf-dev)", src.display()));
        if !output.status.success() {
            panic!("clang failed on {}:\n{}", src.display(), String::from_utf8_lossy(&output.stderr));
        }
    }
}

fn rerun_if_changed(dir: &Path) {
    println!("cargo:rerun-if-changed={}", dir.display());
    for entry in std::fs::read_dir(dir).expect("read bpf/").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rerun_if_changed(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
