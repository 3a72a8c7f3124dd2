//! The CNI_* environment of one plugin invocation.

use std::collections::BTreeMap;

use crate::error::{CniError, code};

/// The operation the runtime asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
}

/// One invocation's parameters, validated per command as CNI 1.0 requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub command: Command,
    pub container_id: String,
    /// Empty for DEL when the runtime no longer has a namespace.
    pub netns: String,
    pub ifname: String,
    /// CNI_ARGS as key/value pairs (`K8S_POD_NAME=x;K8S_POD_NAMESPACE=y`).
    pub args: BTreeMap<String, String>,
    pub path: Vec<String>,
}

impl Invocation {
    /// Reads the parameters through `var` (the process environment in the binary). Missing or
    /// malformed required variables give code 4.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let get = |name: &str| var(name).filter(|v| !v.is_empty());
        let command = match get("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("VERSION") => Command::Version,
            Some(other) => return Err(invalid(format!("CNI_COMMAND {other:?} is not ADD, DEL, CHECK or VERSION"))),
            None => return Err(invalid("CNI_COMMAND is not set")),
        };
        let mut inv = Invocation {
            command,
            container_id: String::new(),
            netns: String::new(),
            ifname: String::new(),
            args: BTreeMap::new(),
            path: Vec::new(),
        };
        if command == Command::Version {
            return Ok(inv);
        }
        let required = |name: &str| get(name).ok_or_else(|| invalid(format!("{name} is not set")));
        inv.container_id = required("CNI_CONTAINERID")?;
        if !valid_container_id(&inv.container_id) {
            return Err(invalid(format!("CNI_CONTAINERID {:?} is not a valid container ID", inv.container_id)));
        }
        inv.ifname = required("CNI_IFNAME")?;
        if !valid_ifname(&inv.ifname) {
            return Err(invalid(format!("CNI_IFNAME {:?} is not a valid interface name", inv.ifname)));
        }
        inv.netns = match command {
            Command::Del => get("CNI_NETNS").unwrap_or_default(),
            _ => required("CNI_NETNS")?,
        };
        inv.path = match command {
            Command::Check => required("CNI_PATH")?,
            _ => get("CNI_PATH").unwrap_or_default(),
        }
        .split(':')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
        if let Some(args) = get("CNI_ARGS") {
            inv.args = parse_args(&args)?;
        }
        Ok(inv)
    }
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(code::INVALID_ENV, msg)
}

/// `K=V;K=V`. Values may contain `=`; a pair without `=` is malformed.
fn parse_args(args: &str) -> Result<BTreeMap<String, String>, CniError> {
    args.split(';')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            pair.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| invalid(format!("CNI_ARGS: {pair:?} is not KEY=VALUE")))
        })
        .collect()
}

/// CNI 1.0: alphanumeric first, then alphanumerics, `_`, `.`, `-`.
fn valid_container_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// CNI 1.0: at most 15 bytes, not `.`/`..`, no `/`, `:` or whitespace.
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name.contains(['/', ':'])
        && !name.contains(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn add_requires_its_variables() {
        let full = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc123"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "K8S_POD_NAME=web;IgnoreUnknown=1"),
        ];
        let inv = Invocation::from_env(env(&full)).unwrap();
        assert_eq!(inv.args["K8S_POD_NAME"], "web");
        for skip in ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            let partial: Vec<_> = full.iter().copied().filter(|(k, _)| *k != skip).collect();
            assert_eq!(Invocation::from_env(env(&partial)).unwrap_err().code, code::INVALID_ENV, "{skip}");
        }
    }

    #[test]
    fn del_without_netns_and_bad_values() {
        let del = [("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "abc"), ("CNI_IFNAME", "eth0")];
        assert_eq!(Invocation::from_env(env(&del)).unwrap().netns, "");
        let bad = [("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "-abc"), ("CNI_IFNAME", "eth0")];
        assert_eq!(Invocation::from_env(env(&bad)).unwrap_err().code, code::INVALID_ENV);
        let bad = [("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "abc"), ("CNI_IFNAME", "a/b")];
        assert_eq!(Invocation::from_env(env(&bad)).unwrap_err().code, code::INVALID_ENV);
        let bad = [("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "abc"), ("CNI_IFNAME", "eth0"), ("CNI_ARGS", "x")];
        assert_eq!(Invocation::from_env(env(&bad)).unwrap_err().code, code::INVALID_ENV);
        assert_eq!(Invocation::from_env(env(&[("CNI_COMMAND", "NOPE")])).unwrap_err().code, code::INVALID_ENV);
    }

    #[test]
    fn check_requires_cni_path() {
        let check = [
            ("CNI_COMMAND", "CHECK"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
        ];
        assert_eq!(Invocation::from_env(env(&check)).unwrap_err().code, code::INVALID_ENV);
    }
}
