//! Loading the datapath: the three BPF objects with their maps pinned by name in the node's
//! bpffs directory. A second load (a restarted agent) finds the pins and reuses the maps, so
//! services, conntrack and NAT state survive; pins written by an older, incompatible build are
//! replaced rather than reused.

use std::path::{Path, PathBuf};

use aya::maps::MapInfo;
use aya::programs::{CgroupSockAddr, SchedClassifier};
use aya::{Ebpf, EbpfLoader};

use crate::abi::{self, Ct4Key, CtEntry, DpConfig, Lb4AffinityKey, Lb4Backend, Lb4Key, Lb4ReverseNat, Lb4Service};
use crate::abi::{L2Liveness, L2ResponderEntry, L2ResponderV4Key, L2ResponderV6Key};
use crate::abi::{LbAffinityMatch, LbAffinityVal, LbMaglevTable, NatEntry, NetdevInfo, SockRevKey, SockRevVal};
use crate::error::{Error, Result};
use crate::objects;
use crate::pins;
use crate::sys;

/// Map sizes (max entries). They apply when a map is first created; pinned maps keep the size
/// they were created with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatapathConfig {
    /// Service rows: Σ over frontends of (active backends + 1), plus the local-scope rows and an
    /// ICMP echo row per VIP. A sync that needs more is refused before it writes anything.
    pub services_max: u32,
    pub backends_max: u32,
    pub revnat_max: u32,
    /// Maglev tables (one per Maglev frontend and scope), 64 KiB each, allocated on use.
    pub maglev_max: u32,
    pub affinity_max: u32,
    pub conntrack_max: u32,
    pub snat_max: u32,
    pub sock_rev_max: u32,
    /// L2 announcement responder entries per address family: (announced IP, device) pairs.
    pub l2_responder_max: u32,
    /// Devices the datapath knows: one per pod veth plus the node's own. Size it from the pod
    /// CIDR ([`DatapathConfig::netdevs_for_pod_cidr`]); a full node whose pod cannot get an entry
    /// is not translated. Unlike the other maps, a pinned device map smaller than this is
    /// recreated at load (its entries are rewritten as devices are attached).
    pub netdevs_max: u32,
}

impl DatapathConfig {
    /// A device map for every address of a pod CIDR of `prefix` bits, plus room for the node's
    /// own devices.
    pub fn netdevs_for_pod_cidr(prefix: u8) -> u32 {
        let pods = 1u64 << (32 - u32::from(prefix.min(32)));
        u32::try_from(pods + 64).unwrap_or(u32::MAX).min(1 << 20)
    }
}

impl Default for DatapathConfig {
    /// The defaults of `bpf/include/abi.h`.
    fn default() -> Self {
        DatapathConfig {
            services_max: abi::LB_SERVICES_MAP_SIZE,
            backends_max: abi::LB_BACKENDS_MAP_SIZE,
            revnat_max: abi::LB_REVNAT_MAP_SIZE,
            maglev_max: abi::LB_MAGLEV_MAP_SIZE,
            affinity_max: abi::LB_AFFINITY_MAP_SIZE,
            conntrack_max: abi::CT_MAP_SIZE,
            snat_max: abi::SNAT_MAP_SIZE,
            sock_rev_max: abi::SOCK_REV_MAP_SIZE,
            l2_responder_max: abi::L2_RESPONDER_MAP_SIZE,
            netdevs_max: DatapathConfig::netdevs_for_pod_cidr(24),
        }
    }
}

/// (map, key size, value size): what a pinned map must look like to be reused.
pub(crate) fn expected_layout() -> [(&'static str, usize, usize); 14] {
    use std::mem::size_of;
    [
        (abi::MAP_SERVICES, size_of::<Lb4Key>(), size_of::<Lb4Service>()),
        (abi::MAP_BACKENDS, size_of::<u32>(), size_of::<Lb4Backend>()),
        (abi::MAP_REVNAT, size_of::<u16>(), size_of::<Lb4ReverseNat>()),
        (abi::MAP_MAGLEV, size_of::<u32>(), size_of::<LbMaglevTable>()),
        (abi::MAP_AFFINITY, size_of::<Lb4AffinityKey>(), size_of::<LbAffinityVal>()),
        (abi::MAP_AFFINITY_MATCH, size_of::<LbAffinityMatch>(), size_of::<u8>()),
        (abi::MAP_CT, size_of::<Ct4Key>(), size_of::<CtEntry>()),
        (abi::MAP_SNAT, size_of::<Ct4Key>(), size_of::<NatEntry>()),
        (abi::MAP_SOCK_REV, size_of::<SockRevKey>(), size_of::<SockRevVal>()),
        (abi::MAP_NETDEVS, size_of::<u32>(), size_of::<NetdevInfo>()),
        (abi::MAP_CONFIG, size_of::<u32>(), size_of::<DpConfig>()),
        (abi::MAP_L2_RESP4, size_of::<L2ResponderV4Key>(), size_of::<L2ResponderEntry>()),
        (abi::MAP_L2_RESP6, size_of::<L2ResponderV6Key>(), size_of::<L2ResponderEntry>()),
        (abi::MAP_L2_LIVENESS, size_of::<u32>(), size_of::<L2Liveness>()),
    ]
}

/// The service maps: their rows name each other by id, so a new size for one recreates them all
/// (the next sync writes every row again).
const SERVICE_MAPS: [&str; 4] = [abi::MAP_SERVICES, abi::MAP_BACKENDS, abi::MAP_AFFINITY_MATCH, abi::MAP_REVNAT];

fn configured_size(name: &str, config: &DatapathConfig) -> Option<u32> {
    match name {
        abi::MAP_SERVICES => Some(config.services_max),
        abi::MAP_BACKENDS | abi::MAP_AFFINITY_MATCH => Some(config.backends_max),
        abi::MAP_REVNAT => Some(config.revnat_max),
        _ => None,
    }
}

/// Checks the pin directory and drops pins whose layout no longer matches this build's ABI, and
/// the service maps when their configured size changed (`bpf-lb-map-max`).
pub(crate) fn prepare_pin_dir(pin_dir: &Path, config: &DatapathConfig) -> Result<()> {
    pins::create_pin_dir(pin_dir)?;
    let resized: Vec<(&str, u32, u32)> = SERVICE_MAPS
        .iter()
        .filter_map(|name| {
            let pinned = MapInfo::from_pin(pin_dir.join(name)).ok()?.max_entries();
            let wanted = configured_size(name, config)?;
            (pinned != wanted).then_some((*name, pinned, wanted))
        })
        .collect();
    if !resized.is_empty() {
        tracing::warn!(
            resized = ?resized,
            "the service maps' configured size changed: recreating them (connections through a Service may \
             be reset once)"
        );
        for name in SERVICE_MAPS {
            let path = pin_dir.join(name);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::Io { op: "remove resized pin", path, source: e });
                }
                _ => {}
            }
        }
    }
    for (name, key, value) in expected_layout() {
        let path = pin_dir.join(name);
        if !path.exists() {
            continue;
        }
        // The device map is rebuilt by attaching, so it is also recreated to grow.
        let big_enough = |i: &MapInfo| name != abi::MAP_NETDEVS || i.max_entries() >= config.netdevs_max;
        let compatible = MapInfo::from_pin(&path)
            .map(|i| i.key_size() as usize == key && i.value_size() as usize == value && big_enough(&i))
            .unwrap_or(false);
        if !compatible {
            tracing::warn!(map = name, path = %path.display(), "pinned map has another layout; recreating it");
            std::fs::remove_file(&path).map_err(|source| Error::Io { op: "remove incompatible pin", path, source })?;
        }
    }
    Ok(())
}

fn load_object(bytes: &[u8], object: &'static str, pin_dir: &Path, config: &DatapathConfig) -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    loader
        .default_map_pin_directory(pin_dir)
        .map_max_entries(abi::MAP_SERVICES, config.services_max)
        .map_max_entries(abi::MAP_BACKENDS, config.backends_max)
        .map_max_entries(abi::MAP_AFFINITY_MATCH, config.backends_max)
        .map_max_entries(abi::MAP_REVNAT, config.revnat_max)
        .map_max_entries(abi::MAP_MAGLEV, config.maglev_max)
        .map_max_entries(abi::MAP_AFFINITY, config.affinity_max)
        .map_max_entries(abi::MAP_CT, config.conntrack_max)
        .map_max_entries(abi::MAP_SNAT, config.snat_max)
        .map_max_entries(abi::MAP_SOCK_REV, config.sock_rev_max)
        .map_max_entries(abi::MAP_NETDEVS, config.netdevs_max)
        .map_max_entries(abi::MAP_L2_RESP4, config.l2_responder_max)
        .map_max_entries(abi::MAP_L2_RESP6, config.l2_responder_max);
    loader.load(bytes).map_err(|source| Error::Load { object, pin_dir: pin_dir.into(), source: Box::new(source) })
}

/// The loaded programs of one node.
pub(crate) struct Programs {
    pub lxc: Ebpf,
    pub host: Ebpf,
    pub sock: Ebpf,
}

impl Programs {
    pub fn load(pin_dir: &Path, config: &DatapathConfig) -> Result<Self> {
        let mut p = Programs {
            lxc: load_object(objects::BPF_LXC, "bpf_lxc.o", pin_dir, config)?,
            host: load_object(objects::BPF_HOST, "bpf_host.o", pin_dir, config)?,
            sock: load_object(objects::BPF_SOCK, "bpf_sock.o", pin_dir, config)?,
        };
        for name in [objects::PROG_FROM_CONTAINER, objects::PROG_TO_CONTAINER] {
            p.classifier_mut(name)?.load().map_err(Error::program(name, "load (verifier)"))?;
        }
        p.classifier_mut(objects::PROG_FROM_NETDEV)?
            .load()
            .map_err(Error::program(objects::PROG_FROM_NETDEV, "load (verifier)"))?;
        for name in SOCK_PROGRAMS {
            p.sock_addr_mut(name)?.load().map_err(Error::program(name, "load (verifier)"))?;
        }
        Ok(p)
    }

    fn object_of(&self, name: &str) -> &Ebpf {
        match name {
            objects::PROG_FROM_CONTAINER | objects::PROG_TO_CONTAINER => &self.lxc,
            objects::PROG_FROM_NETDEV => &self.host,
            _ => &self.sock,
        }
    }

    fn object_of_mut(&mut self, name: &str) -> &mut Ebpf {
        match name {
            objects::PROG_FROM_CONTAINER | objects::PROG_TO_CONTAINER => &mut self.lxc,
            objects::PROG_FROM_NETDEV => &mut self.host,
            _ => &mut self.sock,
        }
    }

    pub fn classifier(&self, name: &'static str) -> Result<&SchedClassifier> {
        let prog = self.object_of(name).program(name).ok_or_else(|| missing(name))?;
        prog.try_into().map_err(Error::program(name, "as tc classifier"))
    }

    pub fn classifier_mut(&mut self, name: &'static str) -> Result<&mut SchedClassifier> {
        let prog = self.object_of_mut(name).program_mut(name).ok_or_else(|| missing(name))?;
        prog.try_into().map_err(Error::program(name, "as tc classifier"))
    }

    pub fn sock_addr_mut(&mut self, name: &'static str) -> Result<&mut CgroupSockAddr> {
        let prog = self.object_of_mut(name).program_mut(name).ok_or_else(|| missing(name))?;
        prog.try_into().map_err(Error::program(name, "as cgroup sock_addr"))
    }
}

pub(crate) const SOCK_PROGRAMS: [&str; 4] = [
    objects::PROG_SOCK_CONNECT,
    objects::PROG_SOCK_SENDMSG,
    objects::PROG_SOCK_RECVMSG,
    objects::PROG_SOCK_GETPEERNAME,
];

/// A program the object does not have.
pub(crate) fn missing(name: &'static str) -> Error {
    Error::Program {
        program: name,
        op: "find in object".into(),
        source: Box::new(aya::programs::ProgramError::UnexpectedProgramType),
    }
}

/// Removes every pin of a node's datapath (maps and links): detaches its programs and frees its
/// state. For `cilia lab down` and tests; an agent restart must not call it.
pub fn remove_pins(pin_dir: &Path) -> Result<()> {
    let links = pin_dir.join("links");
    if links.exists() {
        let entries =
            std::fs::read_dir(&links).map_err(|source| Error::Io { op: "list links", path: links.clone(), source })?;
        for entry in entries.flatten() {
            let path = entry.path();
            sys::detach_pinned_link(&path).map_err(|source| Error::Link { path, op: "detach", source })?;
        }
        std::fs::remove_dir(&links).map_err(|source| Error::Io { op: "remove", path: links.clone(), source })?;
    }
    crate::tunnel::remove_map_pins(pin_dir)?;
    for name in abi::ALL_MAPS.iter().chain(crate::events_abi::EVENTS_MAPS.iter()) {
        let path: PathBuf = pin_dir.join(name);
        if path.exists() {
            std::fs::remove_file(&path).map_err(|source| Error::Io { op: "remove map pin", path, source })?;
        }
    }
    if pin_dir.exists() {
        std::fs::remove_dir(pin_dir).map_err(|source| Error::Io { op: "remove", path: pin_dir.into(), source })?;
    }
    Ok(())
}
