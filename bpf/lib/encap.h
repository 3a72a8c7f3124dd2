/* SPDX-License-Identifier: Apache-2.0 */
/* Encapsulation towards other nodes through the flow-based VXLAN device, like Cilium's encap.h:
 * the outer destination and the VNI are set per packet with bpf_skb_set_tunnel_key, and the
 * kernel's VXLAN driver builds the outer headers. The tunnel endpoint of a destination comes from
 * an LPM map of remote pod CIDRs (Cilium 1.18 keeps these in its ipcache). */
#ifndef CILIA_ENCAP_H
#define CILIA_ENCAP_H

#include "common.h"
#include "../include/tunnel_abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct tunnel_key4);
	__type(value, struct tunnel_info);
	__uint(max_entries, TUNNEL_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilia_tunnel_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct overlay_config);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilia_overlay_config SEC(".maps");

static __always_inline struct tunnel_info *tunnel_lookup(__be32 addr)
{
	struct tunnel_key4 key = { .prefixlen = 32, .addr = addr };
	return bpf_map_lookup_elem(&cilia_tunnel_map, &key);
}

static __always_inline struct overlay_config *overlay_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&cilia_overlay_config, &zero);
}

/* The identity a packet from saddr carries in its VNI: the local prefix's, else the node's. */
static __always_inline __u32 source_identity(__be32 saddr, const struct overlay_config *cfg)
{
	struct tunnel_info *src = tunnel_lookup(saddr);
	if (src && (src->flags & TUNNEL_F_LOCAL))
		return src->identity;
	return cfg->host_identity;
}

/* Sets the tunnel metadata and redirects to the VXLAN device. Returns -1 when the destination is
 * not behind the overlay (the caller lets the packet go on unchanged). */
static __always_inline int encap_and_redirect(struct __sk_buff *skb, __be32 saddr, __be32 daddr)
{
	struct tunnel_info *dst = tunnel_lookup(daddr);
	if (!dst || !(dst->flags & TUNNEL_F_ENCAP) || !dst->endpoint)
		return -1;
	struct overlay_config *cfg = overlay_config();
	if (!cfg || !cfg->encap_ifindex)
		return -1;

	struct bpf_tunnel_key key;
	__builtin_memset(&key, 0, sizeof(key));
	key.remote_ipv4 = bpf_ntohl(dst->endpoint);
	key.tunnel_id = source_identity(saddr, cfg);
	key.tunnel_ttl = 64;
	/* zero outer UDP checksum, as Cilium does: the inner packet carries its own checksums */
	if (bpf_skb_set_tunnel_key(skb, &key, sizeof(key), BPF_F_ZERO_CSUM_TX) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(cfg->encap_ifindex, 0);
}

#endif /* CILIA_ENCAP_H */
