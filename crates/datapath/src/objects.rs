//! The compiled BPF objects, embedded at build time (see `build.rs`).

/// Programs on pod veths: `from_container` (tcx ingress) and `to_container` (tcx egress).
pub static BPF_LXC: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bpf_lxc.o"));
/// Program on node devices: `from_netdev` (tcx ingress).
pub static BPF_HOST: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bpf_host.o"));
/// Tunnel mode: `to_overlay` (host device egress) and `from_overlay` (VXLAN device ingress).
pub static BPF_OVERLAY: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bpf_overlay.o"));
/// Socket-LB cgroup hooks: `sock4_connect`, `sock4_sendmsg`, `sock4_recvmsg`, `sock4_getpeer`.
pub static BPF_SOCK: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bpf_sock.o"));
/// No programs: the BTF of every struct of `bpf/include/`, for the ABI tests (`bpf/alignchecker.c`).
#[cfg(test)]
pub(crate) static ALIGNCHECKER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/alignchecker.o"));

/// Every embedded object, by file name.
#[cfg(test)]
pub(crate) fn all() -> [(&'static str, &'static [u8]); 5] {
    [
        ("bpf_lxc.o", BPF_LXC),
        ("bpf_host.o", BPF_HOST),
        ("bpf_sock.o", BPF_SOCK),
        ("bpf_overlay.o", BPF_OVERLAY),
        ("alignchecker.o", ALIGNCHECKER),
    ]
}

pub const PROG_FROM_CONTAINER: &str = "from_container";
pub const PROG_TO_CONTAINER: &str = "to_container";
pub const PROG_FROM_NETDEV: &str = "from_netdev";
pub const PROG_SOCK_CONNECT: &str = "sock4_connect";
pub const PROG_SOCK_SENDMSG: &str = "sock4_sendmsg";
pub const PROG_SOCK_RECVMSG: &str = "sock4_recvmsg";
pub const PROG_SOCK_GETPEERNAME: &str = "sock4_getpeer";
