/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Not a program: an object whose BTF describes every struct userspace shares with the datapath,
 * as Cilium's bpf_alignchecker.c. The compiler emits BTF only for types something refers to; a
 * struct that is only the target of a pointer cast in a program (flow_event) or whose map lives in
 * another object would otherwise be missing. crates/datapath/src/abi_layout_tests.rs compares
 * these layouts with the Rust #[repr(C)] mirrors. Never loaded.
 */
#include "include/abi.h"
#include "include/tunnel_abi.h"

/* One global per shared struct: each global's type goes into the object's BTF. */
#define DECLARE(name) struct name alignchecker_##name

DECLARE(lb4_key);
DECLARE(lb4_service);
DECLARE(lb4_backend);
DECLARE(lb4_reverse_nat);
DECLARE(lb_maglev_table);
DECLARE(lb4_affinity_key);
DECLARE(lb_affinity_val);
DECLARE(lb_affinity_match);
DECLARE(ct4_key);
DECLARE(ct_entry);
DECLARE(nat_entry);
DECLARE(sock_rev_key);
DECLARE(sock_rev_val);
DECLARE(netdev_info);
DECLARE(dp_config);
DECLARE(l2_responder_v4_key);
DECLARE(l2_responder_v6_key);
DECLARE(l2_responder_entry);
DECLARE(l2_liveness);
DECLARE(events_config);
DECLARE(pkt_count);
DECLARE(flow_event);
DECLARE(tunnel_key4);
DECLARE(tunnel_info);
DECLARE(overlay_config);
