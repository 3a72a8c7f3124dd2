//! Attaching programs with BPF links pinned in `<pin_dir>/links/`, so they stay attached when the
//! agent exits. Attaching again (a restarted or upgraded agent) swaps the program behind the
//! existing link atomically with `BPF_LINK_UPDATE`: the hook never runs without a program.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use aya::programs::links::{CgroupAttachMode, FdLink, PinnedLink};
use aya::programs::tc::{SchedClassifierLink, TcAttachType};

use crate::error::{Error, Result};
use crate::loader::{Programs, SOCK_PROGRAMS};
use crate::sys;

/// Which way a tc program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    fn tc(self) -> TcAttachType {
        match self {
            Direction::Ingress => TcAttachType::Ingress,
            Direction::Egress => TcAttachType::Egress,
        }
    }
}

pub(crate) fn tcx_pin(pin_dir: &Path, ifname: &str, dir: Direction) -> PathBuf {
    pin_dir.join("links").join(format!("tcx_{}_{ifname}", dir.name()))
}

fn cgroup_pin(pin_dir: &Path, program: &str) -> PathBuf {
    pin_dir.join("links").join(format!("cgroup_{program}"))
}

fn link_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Link { path: path.into(), op, source }
}

/// Attaches a tc program with tcx on `ifname` (in the calling thread's network namespace).
pub(crate) fn attach_tcx(
    progs: &mut Programs,
    pin_dir: &Path,
    program: &'static str,
    ifname: &str,
    dir: Direction,
) -> Result<()> {
    let pin = tcx_pin(pin_dir, ifname, dir);
    let prog = progs.classifier_mut(program)?;
    if pin.exists() {
        let reused = PinnedLink::from_pin(&pin)
            .ok()
            .and_then(|pinned| SchedClassifierLink::try_from(FdLink::from(pinned)).ok())
            .map(|link| prog.attach_to_link(link));
        match reused {
            Some(Ok(id)) => {
                // The pin keeps the link; our fd to it can go.
                drop(prog.take_link(id).map_err(Error::program(program, "release link"))?);
                return Ok(());
            }
            // The device went away and came back: the old link is defunct.
            other => {
                tracing::info!(pin = %pin.display(), ok = other.is_some(), "replacing stale tcx link");
                std::fs::remove_file(&pin).map_err(link_err(&pin, "remove stale pin"))?;
            }
        }
    }
    let id = prog.attach(ifname, dir.tc()).map_err(|e| match e {
        aya::programs::ProgramError::TcError(_) | aya::programs::ProgramError::SyscallError(_) => {
            Error::Interface { ifname: ifname.into(), reason: format!("tcx attach of {program} ({}): {e}", dir.name()) }
        }
        other => Error::program(program, format!("attach to {ifname}"))(other),
    })?;
    let link = prog.take_link(id).map_err(Error::program(program, "take link"))?;
    pin_link(link, &pin, "convert tcx link")
}

/// Pins a freshly attached link, so the program stays attached after this process exits (the
/// datapath keeps forwarding while the agent restarts).
pub(crate) fn pin_link<L>(link: L, pin: &Path, convert_op: &'static str) -> Result<()>
where
    FdLink: TryFrom<L>,
    <FdLink as TryFrom<L>>::Error: std::fmt::Display,
{
    let fd_link = FdLink::try_from(link).map_err(|e| Error::Link {
        path: pin.to_path_buf(),
        op: convert_op,
        source: std::io::Error::other(e.to_string()),
    })?;
    fd_link.pin(pin).map_err(|e| Error::Link {
        path: pin.to_path_buf(),
        op: "pin",
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(())
}

/// Detaches whatever this datapath attached to `ifname`; done when this returns.
pub(crate) fn detach_device(pin_dir: &Path, ifname: &str) -> Result<()> {
    for dir in [Direction::Ingress, Direction::Egress] {
        let pin = tcx_pin(pin_dir, ifname, dir);
        sys::detach_pinned_link(&pin).map_err(link_err(&pin, "detach"))?;
    }
    Ok(())
}

/// Attaches the socket-LB hooks to a cgroup v2 directory. Cgroup BPF links always coexist with
/// other programs (the kernel refuses any mode flag on link creation), so several nodes' datapaths
/// can share a cgroup; each translates only in its own network namespace.
pub(crate) fn attach_cgroup(progs: &mut Programs, pin_dir: &Path, cgroup: &Path) -> Result<()> {
    let cgroup_file =
        File::open(cgroup).map_err(|source| Error::Io { op: "open cgroup", path: cgroup.into(), source })?;
    for program in SOCK_PROGRAMS {
        let pin = cgroup_pin(pin_dir, program);
        let prog = progs.sock_addr_mut(program)?;
        if pin.exists() {
            let updated = match sys::obj_get(&pin) {
                Ok(link_fd) => {
                    let prog_fd = prog.fd().map_err(Error::program(program, "fd"))?;
                    sys::link_update(link_fd.as_fd(), prog_fd.as_fd()).is_ok()
                }
                Err(_) => false,
            };
            if updated {
                continue;
            }
            std::fs::remove_file(&pin).map_err(link_err(&pin, "remove stale pin"))?;
        }
        let id = prog
            .attach(&cgroup_file, CgroupAttachMode::Single)
            .map_err(Error::program(program, format!("attach to cgroup {}", cgroup.display())))?;
        let link = prog.take_link(id).map_err(Error::program(program, "take link"))?;
        pin_link(link, &pin, "convert cgroup link")?;
    }
    Ok(())
}

pub(crate) fn detach_cgroup(pin_dir: &Path) -> Result<()> {
    for program in SOCK_PROGRAMS {
        let pin = cgroup_pin(pin_dir, program);
        sys::detach_pinned_link(&pin).map_err(link_err(&pin, "detach"))?;
    }
    Ok(())
}

/// The devices with programs of this datapath attached, from the link pins.
pub(crate) fn attached_devices(pin_dir: &Path) -> Vec<(String, Direction)> {
    let Ok(entries) = std::fs::read_dir(pin_dir.join("links")) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Direction)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(ifname) = name.strip_prefix("tcx_ingress_") {
                Some((ifname.to_string(), Direction::Ingress))
            } else {
                name.strip_prefix("tcx_egress_").map(|ifname| (ifname.to_string(), Direction::Egress))
            }
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Detaches and unpins the tcx links of devices that no longer exist in the calling thread's
/// network namespace. A deleted pod's veth takes its hooks with it, but its link pins stay and
/// keep the defunct links and their programs in the kernel. Returns the devices whose pins went.
pub(crate) fn remove_links_of_missing_devices(pin_dir: &Path) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for (ifname, dir) in attached_devices(pin_dir) {
        if nix::net::if_::if_nametoindex(ifname.as_str()).is_ok() {
            continue;
        }
        let pin = tcx_pin(pin_dir, &ifname, dir);
        sys::detach_pinned_link(&pin).map_err(link_err(&pin, "remove stale pin"))?;
        if removed.last() != Some(&ifname) {
            removed.push(ifname);
        }
    }
    Ok(removed)
}
