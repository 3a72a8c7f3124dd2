//! The constants of the C/Rust ABI checked against the `#define`s of `bpf/include/*.h`.
//!
//! The constants are declared twice, each side in its own language, and this test is what makes
//! them one: every `#define` of the headers must have a Rust mirror of the same value or be listed
//! below as used by the datapath alone, and every Rust mirror must name a `#define`. Generating
//! the Rust side from the headers in build.rs was the other way; it reads worse, because the
//! constants would lose their Rust types (the width of the C field they go in), their grouping
//! into bitflags types and their documentation, and would live in a generated file nobody opens.

use std::collections::BTreeMap;

use bitflags::Flags;

use crate::abi::{self, ConfigFlags, CtFlags, NatFlags, NetdevFlags, SvcFlags};
use crate::events::{DropReason, ObservationPoint};
use crate::events_abi::{self, EventFlags};
use crate::tunnel_abi::{self, TunnelFlags};

/// `#define`s the Rust side does not use, because only the datapath needs them.
const C_ONLY: &[&str] = &[
    // conntrack and SNAT timing: userspace only reads the expiry the datapath writes
    "CT_LIFETIME_TCP_NS",
    "CT_LIFETIME_SYN_NS",
    "CT_LIFETIME_CLOSE_NS",
    "CT_LIFETIME_NONTCP_NS",
    "CT_REPLY_SYNC_NS",
    "NAT_PORT_RETRIES",
    "NAT_IDLE_NS",
    "NAT_IDLE_TCP_NS",
    "NAT_CLOSED_GRACE_NS",
    "NAT_REFRESH_NS",
    // a trace without an observation point, a trace without a drop reason
    "OBS_NONE",
    "DROP_NOT_SET",
    // userspace never writes the world identity (the datapath uses it for unknown sources)
    "IDENTITY_WORLD",
];

/// Every value-carrying `#define` of the headers, evaluated, with the header it comes from.
fn header_defines() -> BTreeMap<String, (String, u64)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bpf/include");
    let mut paths: Vec<_> =
        std::fs::read_dir(dir).expect("read bpf/include").map(|e| e.expect("list bpf/include").path()).collect();
    paths.sort();
    let mut defines = BTreeMap::new();
    for path in paths {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).expect("read a header");
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("#define ") else { continue };
            let rest = rest.split("/*").next().unwrap().trim();
            let (name, expr) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            if expr.trim().is_empty() {
                continue; // include guard
            }
            let known = |n: &str| defines.get(n).map(|(_, v): &(String, u64)| *v);
            let value = eval(expr, &known).unwrap_or_else(|e| panic!("{file}: #define {name} {expr}: {e}"));
            defines.insert(name.to_string(), (file.clone(), value));
        }
    }
    defines
}

/// Evaluates the constant expressions the headers use: integer literals (with `U`/`L` suffixes),
/// earlier defines, parentheses, `*`, `+`, `-`, `<<` and `|`.
fn eval(expr: &str, known: &dyn Fn(&str) -> Option<u64>) -> Result<u64, String> {
    let tokens = tokenize(expr)?;
    let mut p = Parser { tokens: &tokens, at: 0, known };
    let v = p.or()?;
    match p.tokens.get(p.at) {
        None => Ok(v),
        Some(t) => Err(format!("unexpected `{t}`")),
    }
}

fn tokenize(expr: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let mut word = String::new();
            while let Some(&c) = chars.peek().filter(|c| c.is_ascii_alphanumeric() || **c == '_') {
                word.push(c);
                chars.next();
            }
            out.push(word);
        } else if c == '<' {
            chars.next();
            if chars.next() != Some('<') {
                return Err("`<` is not an operator here".into());
            }
            out.push("<<".into());
        } else if "()*+-|".contains(c) {
            out.push(c.to_string());
            chars.next();
        } else {
            return Err(format!("unexpected character `{c}`"));
        }
    }
    Ok(out)
}

struct Parser<'a> {
    tokens: &'a [String],
    at: usize,
    known: &'a dyn Fn(&str) -> Option<u64>,
}

impl Parser<'_> {
    fn eat(&mut self, op: &str) -> bool {
        let hit = self.tokens.get(self.at).is_some_and(|t| t == op);
        self.at += usize::from(hit);
        hit
    }

    // C precedence, loosest first: `|`, `<<`, `+ -`, `*`.
    fn or(&mut self) -> Result<u64, String> {
        let mut v = self.shift()?;
        while self.eat("|") {
            v |= self.shift()?;
        }
        Ok(v)
    }

    fn shift(&mut self) -> Result<u64, String> {
        let mut v = self.sum()?;
        while self.eat("<<") {
            v = v.checked_shl(u32::try_from(self.sum()?).map_err(|e| e.to_string())?).ok_or("shift overflow")?;
        }
        Ok(v)
    }

    fn sum(&mut self) -> Result<u64, String> {
        let mut v = self.product()?;
        loop {
            if self.eat("+") {
                v = v.checked_add(self.product()?).ok_or("overflow")?;
            } else if self.eat("-") {
                v = v.checked_sub(self.product()?).ok_or("negative")?;
            } else {
                return Ok(v);
            }
        }
    }

    fn product(&mut self) -> Result<u64, String> {
        let mut v = self.atom()?;
        while self.eat("*") {
            v = v.checked_mul(self.atom()?).ok_or("overflow")?;
        }
        Ok(v)
    }

    fn atom(&mut self) -> Result<u64, String> {
        if self.eat("(") {
            let v = self.or()?;
            return if self.eat(")") { Ok(v) } else { Err("missing `)`".into()) };
        }
        let token = self.tokens.get(self.at).ok_or("expression ends early")?;
        self.at += 1;
        if token.starts_with(|c: char| c.is_ascii_digit()) {
            let digits = token.trim_end_matches(['u', 'U', 'l', 'L']);
            let parsed = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => digits.parse(),
            };
            parsed.map_err(|e| format!("`{token}`: {e}"))
        } else {
            (self.known)(token).ok_or_else(|| format!("`{token}` is not defined above"))
        }
    }
}

/// The Rust mirror of every plain constant, by its C name.
fn rust_constants() -> Vec<(String, u64)> {
    use ObservationPoint as Obs;
    let plain: [(&str, u64); 60] = [
        ("LB_SERVICES_MAP_SIZE", abi::LB_SERVICES_MAP_SIZE.into()),
        ("LB_BACKENDS_MAP_SIZE", abi::LB_BACKENDS_MAP_SIZE.into()),
        ("LB_REVNAT_MAP_SIZE", abi::LB_REVNAT_MAP_SIZE.into()),
        ("LB_MAGLEV_MAP_SIZE", abi::LB_MAGLEV_MAP_SIZE.into()),
        ("LB_AFFINITY_MAP_SIZE", abi::LB_AFFINITY_MAP_SIZE.into()),
        ("CT_MAP_SIZE", abi::CT_MAP_SIZE.into()),
        ("SNAT_MAP_SIZE", abi::SNAT_MAP_SIZE.into()),
        ("SOCK_REV_MAP_SIZE", abi::SOCK_REV_MAP_SIZE.into()),
        ("NETDEV_MAP_SIZE", abi::NETDEV_MAP_SIZE.into()),
        ("L2_RESPONDER_MAP_SIZE", abi::L2_RESPONDER_MAP_SIZE.into()),
        ("LB_MAGLEV_LUT_SIZE", abi::LB_MAGLEV_LUT_SIZE as u64),
        ("LB_SCOPE_ALL", abi::LB_SCOPE_ALL.into()),
        ("LB_SCOPE_LOCAL", abi::LB_SCOPE_LOCAL.into()),
        ("LB_ALG_RANDOM", abi::LB_ALG_RANDOM.into()),
        ("LB_ALG_MAGLEV", abi::LB_ALG_MAGLEV.into()),
        ("BE_STATE_ACTIVE", abi::BE_STATE_ACTIVE.into()),
        ("BE_STATE_TERMINATING", abi::BE_STATE_TERMINATING.into()),
        ("BE_F_NODE_LOCAL", abi::BE_F_NODE_LOCAL.into()),
        ("BE_STATE_MASK", abi::BE_STATE_MASK.into()),
        ("CT_SERVICE", abi::CT_SERVICE.into()),
        ("CT_EGRESS", abi::CT_EGRESS.into()),
        ("NAT_EGRESS", abi::NAT_EGRESS.into()),
        ("NAT_INGRESS", abi::NAT_INGRESS.into()),
        ("CT_REPLY_SYNC_PACKETS", abi::CT_REPLY_SYNC_PACKETS),
        ("NAT_PORT_MIN", abi::NAT_PORT_MIN.into()),
        ("NAT_PORT_MAX", abi::NAT_PORT_MAX.into()),
        // BPF is little-endian on the hosts cilia runs on: the address's bytes as a u32
        ("LB_HAIRPIN_ADDR_BE", u32::from_le_bytes(abi::LB_HAIRPIN_ADDR.octets()).into()),
        ("EVENTS_RINGBUF_SIZE", events_abi::EVENTS_RINGBUF_SIZE.into()),
        ("EVENTS_WAKEUP_BYTES", events_abi::EVENTS_WAKEUP_BYTES.into()),
        ("EVENTS_POLL_MS", events_abi::EVENTS_POLL_MS),
        ("DROP_REASONS_MAX", events_abi::DROP_REASONS_MAX.into()),
        ("OBS_POINTS_MAX", events_abi::OBS_POINTS_MAX.into()),
        ("EVENTS_STAT_LOST", events_abi::EVENTS_STAT_LOST.into()),
        ("EVENTS_STAT_WRITTEN", events_abi::EVENTS_STAT_WRITTEN.into()),
        ("EVENTS_STATS", (events_abi::EVENTS_STAT_WRITTEN + 1).into()),
        ("EVENT_DROP", events_abi::EVENT_DROP.into()),
        ("EVENT_TRACE", events_abi::EVENT_TRACE.into()),
        ("OBS_TO_ENDPOINT", Obs::ToEndpoint.code().into()),
        ("OBS_TO_HOST", Obs::ToHost.code().into()),
        ("OBS_TO_STACK", Obs::ToStack.code().into()),
        ("OBS_TO_OVERLAY", Obs::ToOverlay.code().into()),
        ("OBS_FROM_ENDPOINT", Obs::FromEndpoint.code().into()),
        ("OBS_FROM_HOST", Obs::FromHost.code().into()),
        ("OBS_FROM_STACK", Obs::FromStack.code().into()),
        ("OBS_FROM_OVERLAY", Obs::FromOverlay.code().into()),
        ("OBS_FROM_NETWORK", Obs::FromNetwork.code().into()),
        ("OBS_TO_NETWORK", Obs::ToNetwork.code().into()),
        ("DROP_INVALID_SIP", DropReason::INVALID_SOURCE_IP.0.into()),
        ("DROP_INVALID", DropReason::INVALID.0.into()),
        ("DROP_WRITE_ERROR", DropReason::WRITE_ERROR.0.into()),
        ("DROP_CT_CREATE_FAILED", DropReason::CT_CREATE_FAILED.0.into()),
        ("DROP_NO_SERVICE", DropReason::NO_SERVICE.0.into()),
        ("DROP_NAT_NO_MAPPING", DropReason::NAT_NO_MAPPING.0.into()),
        ("EVENTS_OFF", events_abi::EVENTS_OFF.into()),
        ("EVENTS_MEDIUM", events_abi::EVENTS_MEDIUM.into()),
        ("EVENTS_ALL", events_abi::EVENTS_ALL.into()),
        ("TUNNEL_MAP_SIZE", tunnel_abi::TUNNEL_MAP_SIZE.into()),
        ("TUNNEL_PEERS_SIZE", tunnel_abi::TUNNEL_PEERS_SIZE.into()),
        ("IDENTITY_HOST", tunnel_abi::IDENTITY_HOST.into()),
        ("OVERLAY_POD_IDENTITY_BASE", tunnel_abi::OVERLAY_POD_IDENTITY_BASE.into()),
    ];
    let mut out: Vec<(String, u64)> = plain.into_iter().map(|(name, value)| (name.to_string(), value)).collect();
    // A flag `NAME` of a set mirrors `PREFIX_NAME`: SvcFlags::NODEPORT is SVC_F_NODEPORT.
    out.extend(flags::<SvcFlags>("SVC_F_"));
    out.extend(flags::<CtFlags>("CT_F_"));
    out.extend(flags::<NatFlags>("NAT_F_"));
    out.extend(flags::<NetdevFlags>("NETDEV_F_"));
    out.extend(flags::<ConfigFlags>("CFG_F_"));
    out.extend(flags::<EventFlags>("EV_F_"));
    out.extend(flags::<TunnelFlags>("TUNNEL_F_"));
    out
}

fn flags<F: Flags>(prefix: &str) -> Vec<(String, u64)>
where
    F::Bits: Into<u64>,
{
    F::FLAGS.iter().map(|f| (format!("{prefix}{}", f.name()), f.value().bits().into())).collect()
}

#[test]
fn every_constant_has_the_c_value_in_rust() {
    let c = header_defines();
    let rust = rust_constants();
    let mut errors = Vec::new();
    for (name, value) in &rust {
        match c.get(name) {
            Some((_, c_value)) if c_value == value => {}
            Some((file, c_value)) => {
                errors.push(format!("{name}: C {c_value} ({c_value:#x}, {file}), Rust {value} ({value:#x})"))
            }
            None => errors.push(format!("{name}: Rust has it ({value:#x}), no header of bpf/include defines it")),
        }
    }
    for (name, (file, value)) in &c {
        let mirrored = rust.iter().any(|(n, _)| n == name);
        let c_only = C_ONLY.contains(&name.as_str());
        if !mirrored && !c_only {
            errors.push(format!(
                "{name} ({file}, {value:#x}) has no Rust mirror: add one, or list it in C_ONLY of {}",
                file!()
            ));
        }
        if mirrored && c_only {
            errors.push(format!("{name} is mirrored in Rust and listed in C_ONLY of {}", file!()));
        }
    }
    for name in C_ONLY.iter().filter(|n| !c.contains_key(**n)) {
        errors.push(format!("{name} is in C_ONLY of {} but no header defines it", file!()));
    }
    assert!(errors.is_empty(), "the constants differ between bpf/include and Rust:\n  {}", errors.join("\n  "));
}

#[test]
fn header_expressions_evaluate_as_in_c() {
    let known = |n: &str| (n == "CT_LIFETIME_TCP_NS").then_some(21_600_000_000_000);
    assert_eq!(eval("(21600ULL * 1000000000ULL)", &known), Ok(21_600_000_000_000));
    assert_eq!(eval("(1 << 20)", &known), Ok(1 << 20));
    assert_eq!(eval("(64 << 10)", &known), Ok(64 << 10));
    assert_eq!(eval("0x012afea9", &known), Ok(0x012a_fea9));
    assert_eq!(eval("CT_LIFETIME_TCP_NS", &known), Ok(21_600_000_000_000));
    assert_eq!(eval("4 * 3 + 1 | 0x10", &known), Ok(0x1d));
    assert!(eval("UNKNOWN_NAME", &known).is_err());
    assert!(eval("(1", &known).is_err());
}
