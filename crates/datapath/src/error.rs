//! Errors of the datapath. Each names what failed and where: the map, the program, the
//! interface, the path.

use std::path::PathBuf;

use crate::service::Frontend;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The desired services are inconsistent; nothing was written. Not retryable as is.
    #[error("invalid service {frontend:?}: {reason}")]
    InvalidService { frontend: Frontend, reason: String },

    /// An L2 announcement entry no responder could serve; nothing was written.
    #[error("invalid L2 announcement {ip} on ifindex {ifindex}: {reason}")]
    InvalidL2Entry { ip: std::net::IpAddr, ifindex: u32, reason: String },

    /// This implementation of the datapath interface does not do this.
    #[error("{what} is not supported by this datapath")]
    Unsupported { what: &'static str },

    /// Sending on a device failed (gratuitous ARP, unsolicited NA).
    #[error("interface {ifname}: {call} failed")]
    Send {
        ifname: String,
        call: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// An id space (rev-NAT indices, backend ids) or a map is full. Retryable after deletions.
    #[error("out of {what}: {detail}")]
    Exhausted { what: &'static str, detail: String },

    #[error("pin directory {path}: {reason}")]
    PinDir { path: PathBuf, reason: String },

    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("loading BPF object {object} (maps pinned in {pin_dir})")]
    Load {
        object: &'static str,
        pin_dir: PathBuf,
        #[source]
        source: Box<aya::EbpfError>,
    },

    #[error("program {program}: {op}")]
    Program {
        program: &'static str,
        op: String,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },

    #[error("link {path}: {op}")]
    Link {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("map {map}: {op}")]
    Map {
        map: &'static str,
        op: String,
        #[source]
        source: Box<aya::maps::MapError>,
    },

    #[error("map {map} is missing from the loaded object")]
    MissingMap { map: &'static str },

    #[error("interface {ifname}: {reason}")]
    Interface { ifname: String, reason: String },

    #[error("{call} failed")]
    Syscall {
        call: &'static str,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn map(map: &'static str, op: impl Into<String>) -> impl FnOnce(aya::maps::MapError) -> Error {
        let op = op.into();
        move |source| Error::Map { map, op, source: Box::new(source) }
    }

    pub(crate) fn program(
        program: &'static str,
        op: impl Into<String>,
    ) -> impl FnOnce(aya::programs::ProgramError) -> Error {
        let op = op.into();
        move |source| Error::Program { program, op, source: Box::new(source) }
    }
}
