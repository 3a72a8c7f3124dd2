//! Log files of the lab's processes: appended to across restarts, and quoted in error messages.

use std::fs::{self, File, OpenOptions};
use std::path::Path;

use crate::error::LabError;

pub fn open_append(path: &Path) -> Result<File, LabError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| LabError::io("create directory", dir, e))?;
    }
    OpenOptions::new().create(true).append(true).open(path).map_err(|e| LabError::io("open log file", path, e))
}

/// The last `lines` lines of a log, or a note that there is none.
pub fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn tail_keeps_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let mut f = open_append(&path).unwrap();
        for i in 0..10 {
            writeln!(f, "line {i}").unwrap();
        }
        assert_eq!(tail(&path, 2), "line 8\nline 9");
        assert!(tail(&dir.path().join("none"), 2).starts_with('('));
    }
}
