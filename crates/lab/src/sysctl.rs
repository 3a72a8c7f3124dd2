//! Per-namespace sysctls, written from a thread inside the namespace: no `sysctl` binary and no
//! process per namespace. A value is written only when it differs, so a complete lab changes nothing.

use std::path::Path;

use netconf::sysctl;

use crate::error::LabError;
use crate::netns;
use crate::topology::Sysctl;

/// Sets `sysctls` in `namespace`; returns how many values changed.
pub fn apply(namespace: &str, sysctls: &[Sysctl]) -> Result<usize, LabError> {
    netns::run_in(namespace, || {
        let mut changed = 0;
        for s in sysctls {
            let current = sysctl::read_here(s.key).map_err(|e| LabError::io("read sysctl", sysctl::path(s.key), e))?;
            if current != s.value {
                sysctl::write_here(s.key, s.value).map_err(|e| LabError::io("write sysctl", sysctl::path(s.key), e))?;
                changed += 1;
            }
        }
        Ok(changed)
    })
}

/// Turns GRO on for `device` in `namespace`, as on the NIC of a real machine (veths start with it
/// off); returns whether it changed. Without it every packet of the segment reaches the stack
/// (and a tunnel's UDP socket) one by one through the veth's backlog.
pub fn gro_on(namespace: &str, device: &str) -> Result<bool, LabError> {
    netns::run_in(namespace, || {
        netconf::offload::set_gro_here(device, true).map_err(|e| LabError::io("enable gro", Path::new(device), e))
    })
}
