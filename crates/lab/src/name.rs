//! The lab name: the prefix of every namespace of a lab and the name of its directories.
//!
//! Names are lowercase letters and digits only. A dash would make prefixes ambiguous: the
//! namespaces of lab `a` (`a-router`, ...) would also match lab `a-b` (`a-b-router`), and `down`
//! removes every namespace that starts with `<name>-`.

use std::fmt;

use crate::error::LabError;

/// The lab `cilia lab up` builds when no name is given: namespaces `cilia-router`, `cilia-k8s-ctr`, ...
pub const DEFAULT_LAB: &str = "cilia";

/// Longest accepted name. Keeps `/run/cilia/lab/<name>/etcd.sock` far below the 108-byte limit of
/// unix socket paths.
pub const MAX_LAB_NAME: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LabName(String);

impl LabName {
    pub fn new(name: &str) -> Result<Self, LabError> {
        let invalid = |reason| LabError::InvalidName { name: name.to_string(), reason };
        if name.is_empty() {
            return Err(invalid("empty"));
        }
        if name.len() > MAX_LAB_NAME {
            return Err(invalid("longer than 16 characters"));
        }
        if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(invalid("must start with a lowercase letter"));
        }
        if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            return Err(invalid("only lowercase letters and digits are allowed"));
        }
        Ok(LabName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Name of the network namespace of `host` in this lab.
    pub fn namespace(&self, host: &str) -> String {
        format!("{}{host}", self.namespace_prefix())
    }

    /// Every namespace this lab owns starts with this, including ones made later for pods.
    pub fn namespace_prefix(&self) -> String {
        format!("{}-", self.0)
    }
}

impl Default for LabName {
    fn default() -> Self {
        LabName(DEFAULT_LAB.to_string())
    }
}

impl fmt::Display for LabName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_simple_names() {
        for ok in ["cilia", "t1", "lab42abc", "a"] {
            assert_eq!(LabName::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_names_that_would_clash_or_break_paths() {
        for bad in ["", "a-b", "Cilia", "1lab", "lab/x", "lab.x", "abcdefghijklmnopq"] {
            assert!(LabName::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn namespaces_are_prefixed() {
        let lab = LabName::new("t7").unwrap();
        assert_eq!(lab.namespace("k8s-ctr"), "t7-k8s-ctr");
        assert_eq!(LabName::default().namespace("router"), "cilia-router");
    }
}
