//! The Rust mirrors of the C structs checked against the compiler's own record of the C layouts:
//! the BTF of the embedded BPF objects, as Cilium's alignchecker does. Every struct of
//! `bpf/include/*.h` must have a mirror here, and the mirror must have the C size and, field by
//! field, the C offset and size. Needs no privileges: the objects are only read.

use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};

use crate::abi::*;
use crate::btf::Btf;
use crate::events_abi::{EventsConfig, FlowEventRecord, PktCount};
use crate::objects;
use crate::tunnel_abi::{OverlayConfig, TunnelAddr, TunnelInfo};

/// The layout of one Rust mirror.
struct Mirror {
    c_name: &'static str,
    rust_name: &'static str,
    size: usize,
    /// `None` when the fields cannot be named from here (a foreign type); only the size is
    /// compared then.
    fields: Option<Vec<Field>>,
}

struct Field {
    name: &'static str,
    offset: usize,
    size: usize,
}

fn field_size<T, F>(_: impl Fn(&T) -> &F) -> usize {
    size_of::<F>()
}

/// `mirror!(RustType = "c_name" { field, .. })`: the Rust layout of a mirror. The list must name
/// every field of the Rust struct (the destructuring pattern does not compile otherwise), so no
/// Rust field escapes the comparison; C fields without a Rust twin are reported by the test.
macro_rules! mirror {
    ($ty:ident = $c:literal { $($field:ident),+ $(,)? }) => {{
        let _every_field_listed = |v: &$ty| {
            let $ty { $($field: _),+ } = v;
        };
        Mirror {
            c_name: $c,
            rust_name: stringify!($ty),
            size: size_of::<$ty>(),
            fields: Some(vec![$(Field {
                name: stringify!($field).trim_start_matches("r#"),
                offset: offset_of!($ty, $field),
                size: field_size(|v: &$ty| &v.$field),
            }),+]),
        }
    }};
}

fn mirrors() -> Vec<Mirror> {
    vec![
        mirror!(Lb4Key = "lb4_key" { address, dport, backend_slot, proto, scope, pad }),
        mirror!(Lb4Service = "lb4_service" { backend_id, count, rev_nat_index, flags, algorithm, pad }),
        mirror!(Lb4Backend = "lb4_backend" { address, port, proto, flags }),
        mirror!(Lb4ReverseNat = "lb4_reverse_nat" { address, port, pad }),
        mirror!(LbMaglevTable = "lb_maglev_table" { backend_ids }),
        mirror!(Lb4AffinityKey = "lb4_affinity_key" { client_id, rev_nat_index, netns_cookie, pad }),
        mirror!(LbAffinityVal = "lb_affinity_val" { last_used_ns, backend_id, pad }),
        mirror!(LbAffinityMatch = "lb_affinity_match" { backend_id, rev_nat_index, pad }),
        mirror!(Ct4Key = "ct4_key" { saddr, daddr, sport, dport, proto, dir, pad }),
        mirror!(CtEntry = "ct_entry" { expires_ns, packets, bytes, backend_id, rev_nat_index, flags, tcp_flags }),
        mirror!(NatEntry = "nat_entry" { last_seen_ns, to_addr, to_port, flags }),
        mirror!(SockRevKey = "sock_rev_key" { cookie, address, port, pad }),
        mirror!(SockRevVal = "sock_rev_val" { address, port, rev_nat_index }),
        mirror!(NetdevInfo = "netdev_info" { addr, flags }),
        mirror!(DpConfig = "dp_config" { netns_cookie, flags, pad }),
        mirror!(L2ResponderV4Key = "l2_responder_v4_key" { ip4, ifindex }),
        mirror!(L2ResponderV6Key = "l2_responder_v6_key" { ip6, ifindex, pad }),
        mirror!(L2ResponderEntry = "l2_responder_entry" { mac, pad, responses }),
        mirror!(L2Liveness = "l2_liveness" { refreshed_ns, max_age_ns }),
        mirror!(EventsConfig = "events_config" { level, pad }),
        mirror!(PktCount = "pkt_count" { packets, bytes }),
        mirror!(FlowEventRecord = "flow_event" {
            ts_ns, r#type, obs_point, drop_reason, flags, ifindex, pkt_len, saddr, daddr, sport, dport, proto,
            tcp_flags, icmp_type, icmp_code, svc_addr, svc_port, pad, out_ifindex,
        }),
        mirror!(TunnelInfo = "tunnel_info" { endpoint, identity, flags }),
        mirror!(OverlayConfig = "overlay_config" { encap_ifindex, host_identity }),
        // aya's LPM key { prefix_len: u32, data: K } keeps its fields private.
        Mirror {
            c_name: "tunnel_key4",
            rust_name: "aya::maps::lpm_trie::Key<TunnelAddr>",
            size: size_of::<aya::maps::lpm_trie::Key<TunnelAddr>>(),
            fields: None,
        },
    ]
}

/// The differences between one C struct as `object` has it and its Rust mirror.
fn compare(object: &str, btf: &Btf, c: &crate::btf::Struct, rust: &Mirror) -> Vec<String> {
    let mut out = Vec::new();
    let what = format!("struct {} ({object}) vs {}", c.name, rust.rust_name);
    if c.size as usize != rust.size {
        out.push(format!("{what}: size: C {} bytes, Rust {} bytes", c.size, rust.size));
    }
    let Some(fields) = &rust.fields else { return out };
    let rust_fields: BTreeMap<&str, &Field> = fields.iter().map(|f| (f.name, f)).collect();
    for m in &c.members {
        let Some(r) = rust_fields.get(m.name.as_str()) else {
            out.push(format!("{what}: C field `{}` at offset {} has no Rust field", m.name, m.bit_offset / 8));
            continue;
        };
        if m.bitfield_size != 0 || m.bit_offset % 8 != 0 {
            out.push(format!("{what}: C field `{}` is a bit-field, which Rust cannot mirror", m.name));
            continue;
        }
        let c_offset = (m.bit_offset / 8) as usize;
        let c_size = match btf.size_of(m.type_id) {
            Ok(s) => s as usize,
            Err(e) => {
                out.push(format!("{what}: C field `{}`: {e}", m.name));
                continue;
            }
        };
        if (c_offset, c_size) != (r.offset, r.size) {
            out.push(format!(
                "{what}: field `{}`: C offset {c_offset} size {c_size} ({}), Rust offset {} size {}",
                m.name,
                btf.type_name(m.type_id),
                r.offset,
                r.size
            ));
        }
    }
    for f in fields {
        if !c.members.iter().any(|m| m.name == f.name) {
            out.push(format!("{what}: Rust field `{}` at offset {} has no C field", f.name, f.offset));
        }
    }
    out
}

/// Names of the structs the headers of `bpf/include/` define.
fn header_structs() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bpf/include");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read bpf/include") {
        let path = entry.expect("list bpf/include").path();
        let text = std::fs::read_to_string(&path).expect("read a header");
        for line in text.lines() {
            if let Some(name) = line.strip_prefix("struct ").and_then(|rest| rest.strip_suffix(" {")) {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    names
}

#[test]
fn every_shared_struct_has_the_c_layout_in_rust() {
    let mirrors = mirrors();
    let mut errors = Vec::new();

    // Each struct of the headers has a mirror, and the alignchecker object declares it.
    let checker = Btf::from_elf(objects::ALIGNCHECKER).expect("BTF of alignchecker.o");
    let checker_structs = checker.structs();
    for name in header_structs() {
        if !mirrors.iter().any(|m| m.c_name == name) {
            errors.push(format!("struct {name} of bpf/include has no Rust mirror in {}", file!()));
        }
        if !checker_structs.contains_key(name.as_str()) {
            errors.push(format!("struct {name} of bpf/include is missing from bpf/alignchecker.c"));
        }
    }

    // Each mirror matches the struct in every object that has it (all include the same headers,
    // but a define or a packing attribute could still differ between them).
    for (object, bytes) in objects::all() {
        let btf = Btf::from_elf(bytes).unwrap_or_else(|e| panic!("{object}: {e}"));
        let structs = btf.structs();
        for mirror in &mirrors {
            match structs.get(mirror.c_name) {
                Some(c) => errors.extend(compare(object, &btf, c, mirror)),
                None if object == "alignchecker.o" => {
                    errors.push(format!("struct {} is not in alignchecker.o (declare it there)", mirror.c_name))
                }
                None => {}
            }
        }
    }
    assert!(errors.is_empty(), "the Rust ABI differs from the C one:\n  {}", errors.join("\n  "));
}

/// The mirrors are `aya::Pod`, which must have no padding: their fields, in offset order, leave no
/// gap (explicit `pad` fields fill what alignment would leave).
#[test]
fn the_mirrors_have_no_padding() {
    let mut errors = Vec::new();
    for mirror in mirrors() {
        let Some(mut fields) = mirror.fields else { continue };
        fields.sort_by_key(|f| f.offset);
        let mut end = 0;
        for f in &fields {
            if f.offset != end {
                errors.push(format!("{}: {} padding bytes before `{}`", mirror.rust_name, f.offset - end, f.name));
            }
            end = f.offset + f.size;
        }
        if end != mirror.size {
            errors.push(format!("{}: {} padding bytes at the end", mirror.rust_name, mirror.size - end));
        }
    }
    assert!(errors.is_empty(), "padding in an ABI struct:\n  {}", errors.join("\n  "));
}

/// The comparison itself can fail: a Rust mirror with two fields swapped is caught.
#[test]
fn a_moved_field_is_reported_with_both_offsets() {
    #[repr(C)]
    struct Swapped {
        address: [u8; 4],
        backend_slot: u16,
        dport: u16,
        proto: u8,
        scope: u8,
        pad: [u8; 2],
    }
    let btf = Btf::from_elf(objects::ALIGNCHECKER).unwrap();
    let structs = btf.structs();
    let errors = compare(
        "alignchecker.o",
        &btf,
        structs["lb4_key"],
        &mirror!(Swapped = "lb4_key" {
            address, backend_slot, dport, proto, scope, pad
        }),
    );
    assert_eq!(
        errors,
        [
            "struct lb4_key (alignchecker.o) vs Swapped: field `dport`: C offset 4 size 2 (__be16), Rust offset 6 size 2",
            "struct lb4_key (alignchecker.o) vs Swapped: field `backend_slot`: C offset 6 size 2 (__u16), Rust offset 4 size 2",
        ]
    );
}
