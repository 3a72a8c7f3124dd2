/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The C/Rust ABI of the overlay (tunnel mode): the tunnel map and the overlay settings. Mirrored
 * in crates/datapath/src/tunnel_abi.rs, whose tests compare it with the BTF of the objects and
 * with this file, as for abi.h.
 *
 * Byte order: addresses in network byte order, everything else in host order.
 */
#ifndef CILIA_TUNNEL_ABI_H
#define CILIA_TUNNEL_ABI_H

#include <linux/types.h>

/* ---- map names ---- */
/* tunnel: struct tunnel_key4 (LPM) -> struct tunnel_info   (Cilium 1.18's ipcache, IPv4 only) */
/* overlay config: __u32 0 -> struct overlay_config */
/* tunnel peers: __be32 node address -> __u32 (1): the nodes VXLAN packets are accepted from */

#define TUNNEL_MAP_SIZE 16384
#define TUNNEL_PEERS_SIZE 4096

/* tunnel_info.flags */
#define TUNNEL_F_ENCAP 0x1 /* a remote prefix: encapsulate towards endpoint */
#define TUNNEL_F_LOCAL 0x2 /* a prefix of this node: identity names its packets' source */

/* Reserved identities, Cilium's numbers. Pods of a node carry OVERLAY_POD_IDENTITY_BASE plus the
 * node's pod CIDR number (see docs/routing-modes.md). */
#define IDENTITY_HOST 1
#define IDENTITY_WORLD 2
#define OVERLAY_POD_IDENTITY_BASE 256

/* LPM trie key: the prefix length counts bits of addr. */
struct tunnel_key4 {
	__u32 prefixlen;
	__be32 addr;
};
_Static_assert(sizeof(struct tunnel_key4) == 8, "tunnel_key4 size");

struct tunnel_info {
	__be32 endpoint; /* the node IP packets to this prefix are encapsulated to */
	__u32 identity;  /* the VNI of packets from this prefix */
	__u32 flags;
};
_Static_assert(sizeof(struct tunnel_info) == 12, "tunnel_info size");

struct overlay_config {
	__u32 encap_ifindex;  /* the flow-based VXLAN device (cilium_vxlan); 0: overlay off */
	__u32 host_identity;  /* VNI of packets whose source is no local prefix (the node itself) */
};
_Static_assert(sizeof(struct overlay_config) == 8, "overlay_config size");

#endif /* CILIA_TUNNEL_ABI_H */
