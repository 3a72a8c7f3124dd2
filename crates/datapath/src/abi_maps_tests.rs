//! The maps Rust knows by name checked against the maps the embedded objects define (their BTF
//! `.maps` section): the same names, the key and value sizes userspace reads and writes, and the
//! default sizes. Maps are pinned by name, so objects sharing a map must also define it alike.

use std::collections::{BTreeMap, BTreeSet};
use std::mem::size_of;

use crate::abi::{self, ALL_MAPS};
use crate::btf::{Btf, MapDef};
use crate::events_abi::{self, EVENTS_MAPS, EventsConfig, PktCount};
use crate::loader::{DatapathConfig, expected_layout};
use crate::objects;
use crate::tunnel_abi::{self, OverlayConfig, TUNNEL_MAPS, TunnelAddr, TunnelInfo};

/// Every map of the program objects by name, with the objects defining it.
fn object_maps() -> BTreeMap<String, Vec<(&'static str, MapDef)>> {
    let mut maps: BTreeMap<String, Vec<(&'static str, MapDef)>> = BTreeMap::new();
    for (object, bytes) in objects::all() {
        let btf = Btf::from_elf(bytes).unwrap_or_else(|e| panic!("{object}: {e}"));
        for def in btf.maps().unwrap_or_else(|e| panic!("{object}: {e}")) {
            maps.entry(def.name.clone()).or_default().push((object, def));
        }
    }
    maps
}

/// (map, key size, value size) of the maps the loader's pin check does not cover; `None` for a
/// ring buffer, which has neither.
fn other_layouts() -> Vec<(&'static str, Option<(usize, usize)>)> {
    vec![
        (events_abi::MAP_EVENTS, None),
        (events_abi::MAP_EVENTS_CFG, Some((size_of::<u32>(), size_of::<EventsConfig>()))),
        (events_abi::MAP_EVENTS_STATS, Some((size_of::<u32>(), size_of::<u64>()))),
        (events_abi::MAP_DROP_COUNTS, Some((size_of::<u32>(), size_of::<PktCount>()))),
        (events_abi::MAP_FWD_COUNTS, Some((size_of::<u32>(), size_of::<PktCount>()))),
        (tunnel_abi::MAP_TUNNEL, Some((size_of::<aya::maps::lpm_trie::Key<TunnelAddr>>(), size_of::<TunnelInfo>()))),
        (tunnel_abi::MAP_OVERLAY_CONFIG, Some((size_of::<u32>(), size_of::<OverlayConfig>()))),
        (tunnel_abi::MAP_TUNNEL_PEERS, Some((size_of::<[u8; 4]>(), size_of::<u32>()))),
    ]
}

/// The size Rust creates each map with (or, for arrays, indexes up to).
fn default_sizes() -> Vec<(&'static str, u32)> {
    let config = DatapathConfig::default();
    vec![
        (abi::MAP_SERVICES, config.services_max),
        (abi::MAP_BACKENDS, config.backends_max),
        (abi::MAP_AFFINITY_MATCH, config.backends_max),
        (abi::MAP_REVNAT, config.revnat_max),
        (abi::MAP_MAGLEV, config.maglev_max),
        (abi::MAP_AFFINITY, config.affinity_max),
        (abi::MAP_CT, config.conntrack_max),
        (abi::MAP_SNAT, config.snat_max),
        (abi::MAP_SOCK_REV, config.sock_rev_max),
        (abi::MAP_NETDEVS, config.netdevs_max),
        (abi::MAP_CONFIG, 1),
        (abi::MAP_L2_RESP4, config.l2_responder_max),
        (abi::MAP_L2_RESP6, config.l2_responder_max),
        (abi::MAP_L2_LIVENESS, 1),
        (events_abi::MAP_EVENTS, events_abi::EVENTS_RINGBUF_SIZE),
        (events_abi::MAP_EVENTS_CFG, 1),
        (events_abi::MAP_EVENTS_STATS, events_abi::EVENTS_STAT_WRITTEN + 1),
        (events_abi::MAP_DROP_COUNTS, events_abi::DROP_REASONS_MAX),
        (events_abi::MAP_FWD_COUNTS, events_abi::OBS_POINTS_MAX),
        (tunnel_abi::MAP_TUNNEL, tunnel_abi::TUNNEL_MAP_SIZE),
        (tunnel_abi::MAP_OVERLAY_CONFIG, 1),
        (tunnel_abi::MAP_TUNNEL_PEERS, tunnel_abi::TUNNEL_PEERS_SIZE),
    ]
}

#[test]
fn rust_names_every_map_of_the_objects_and_no_other() {
    let in_objects: BTreeSet<String> = object_maps().into_keys().collect();
    let in_rust: BTreeSet<String> =
        ALL_MAPS.iter().chain(&EVENTS_MAPS).chain(&TUNNEL_MAPS).map(|n| n.to_string()).collect();
    let only_c: Vec<_> = in_objects.difference(&in_rust).collect();
    let only_rust: Vec<_> = in_rust.difference(&in_objects).collect();
    assert!(
        only_c.is_empty() && only_rust.is_empty(),
        "maps defined in C but unknown to Rust (abi.rs, events_abi.rs, tunnel_abi.rs): {only_c:?}; \
         maps Rust names that no object defines: {only_rust:?}"
    );
}

#[test]
fn every_map_has_the_key_value_and_size_rust_expects() {
    let maps = object_maps();
    let layouts = expected_layout().into_iter().map(|(name, k, v)| (name, Some((k, v)))).chain(other_layouts());
    let sizes: BTreeMap<&str, u32> = default_sizes().into_iter().collect();
    let mut errors = Vec::new();
    let mut checked = BTreeSet::new();
    for (name, rust) in layouts {
        checked.insert(name);
        let Some(defs) = maps.get(name) else {
            errors.push(format!("map {name}: no object defines it"));
            continue;
        };
        for (object, def) in defs {
            let c = def.key_size.zip(def.value_size).map(|(k, v)| (k as usize, v as usize));
            if c != rust {
                errors.push(format!("map {name} ({object}): (key, value) size: C {c:?}, Rust {rust:?}"));
            }
            match sizes.get(name) {
                Some(&size) if size == def.max_entries => {}
                Some(&size) => {
                    errors.push(format!("map {name} ({object}): max_entries: C {}, Rust {size}", def.max_entries))
                }
                None => errors.push(format!("map {name}: no default size in {}", file!())),
            }
        }
        // Pinned by name: the first object to load creates the map the others then reuse.
        if let Some((first, def)) = defs.first()
            && let Some((other, _)) = defs.iter().find(|(_, d)| d != def)
        {
            errors.push(format!("map {name}: {first} and {other} define it differently"));
        }
    }
    for name in maps.keys().filter(|n| !checked.contains(n.as_str())) {
        errors.push(format!("map {name}: no key and value sizes in {}", file!()));
    }
    assert!(errors.is_empty(), "the maps differ between C and Rust:\n  {}", errors.join("\n  "));
}
