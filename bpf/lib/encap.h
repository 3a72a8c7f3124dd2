/* SPDX-License-Identifier: Apache-2.0 */
/* Encapsulation towards other nodes through the flow-based VXLAN device, like Cilium's encap.h:
 * the outer destination and the VNI are set per packet with bpf_skb_set_tunnel_key, and the
 * kernel's VXLAN driver builds the outer headers. The tunnel endpoint of a destination comes from
 * an LPM map of remote pod CIDRs (Cilium 1.18 keeps these in its ipcache). */
#ifndef CILIA_ENCAP_H
#define CILIA_ENCAP_H

#include "common.h"
#include "csum.h"
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

/* Outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14: what encapsulation adds to an inner IP
 * packet. The routes through the overlay carry the VXLAN device's MTU minus this. */
#define VXLAN_OVERHEAD 50

/* The remote entry of daddr when it is behind the overlay, else NULL. */
static __always_inline struct tunnel_info *tunnel_remote(__be32 daddr)
{
	struct tunnel_info *dst = tunnel_lookup(daddr);
	if (!dst || !(dst->flags & TUNNEL_F_ENCAP) || !dst->endpoint)
		return 0;
	return dst;
}

/* Sets the tunnel key (outer destination, VNI = source identity) and redirects to the VXLAN
 * device. */
static __always_inline int set_tunnel_and_redirect(struct __sk_buff *skb, const struct tunnel_info *dst,
						   __be32 saddr, const struct overlay_config *cfg)
{
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

/* Sets the tunnel metadata and redirects to the VXLAN device. Returns -1 when the destination is
 * not behind the overlay (the caller lets the packet go on unchanged). */
static __always_inline int encap_and_redirect(struct __sk_buff *skb, __be32 saddr, __be32 daddr)
{
	struct overlay_config *cfg = overlay_config();
	if (!cfg || !cfg->encap_ifindex)
		return -1;
	struct tunnel_info *dst = tunnel_remote(daddr);
	if (!dst)
		return -1;
	return set_tunnel_and_redirect(skb, dst, saddr, cfg);
}

/* Length of the IP packets the VXLAN device will carry for this skb: each segment's for a GSO
 * packet (TCP or UDP; resegmented after encapsulation), the packet's own otherwise. 0 when it
 * cannot be told (another GSO type, unreadable header): the caller leaves it to the stack. */
static __always_inline __u32 inner_ip_len(struct __sk_buff *skb, const struct pkt4 *p)
{
	__u32 gso_size = skb->gso_size;
	if (!gso_size)
		return skb->len - p->l3_off;
	__u32 l3_len = p->l4_off - p->l3_off;
	if (p->proto == IPPROTO_UDP)
		return l3_len + sizeof(struct udphdr) + gso_size;
	if (p->proto != IPPROTO_TCP)
		return 0;
	__u8 doff;
	if (bpf_skb_load_bytes(skb, p->l4_off + 12, &doff, 1) < 0)
		return 0;
	return l3_len + (doff >> 4) * 4 + gso_size;
}

/* A pod's packet to a pod behind the overlay, encapsulated on the pod's veth (Cilium's
 * encap_and_redirect_lxc) instead of after a forwarding pass through the host device: the same
 * tunnel key as to_overlay, and the TTL decremented as the node's forwarding would. Only packets
 * that fit the tunnel (inner IP length, per segment for GSO, at most the VXLAN device's MTU minus
 * VXLAN_OVERHEAD, the overlay routes' MTU) take this path; larger ones, TTL 1 and anything else
 * return -1 and go to the stack, whose route MTU answers with ICMP fragmentation needed (or
 * fragments) and which sends them on through to_overlay. Also -1 when the overlay is off, so
 * native routing pays one array lookup. */
static __always_inline int encap_from_pod(struct __sk_buff *skb, struct pkt4 *p)
{
	struct overlay_config *cfg = overlay_config();
	if (!cfg || !cfg->encap_ifindex)
		return -1;
	struct tunnel_info *dst = tunnel_remote(p->daddr);
	if (!dst || p->ttl <= 1)
		return -1;

	__u32 mtu = 0;
	if (bpf_check_mtu(skb, cfg->encap_ifindex, &mtu, 0, 0) < 0 || mtu <= VXLAN_OVERHEAD)
		return -1;
	__u32 len = inner_ip_len(skb, p);
	if (!len || len > mtu - VXLAN_OVERHEAD)
		return -1;

	if (ttl_decrement(skb, p) < 0)
		return TC_ACT_SHOT;
	return set_tunnel_and_redirect(skb, dst, p->saddr, cfg);
}

#endif /* CILIA_ENCAP_H */
