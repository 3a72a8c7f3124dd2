/* SPDX-License-Identifier: Apache-2.0 */
/* Address and port rewrites that keep the IPv4 header and TCP/UDP checksums right, incrementally
 * (RFC 1624) through the kernel's csum helpers, so CHECKSUM_PARTIAL packets from veths stay
 * correct as well. */
#ifndef CILIA_CSUM_H
#define CILIA_CSUM_H

#include <stddef.h>
#include "common.h"

#define IP_CSUM_OFF(p) ((p)->l3_off + offsetof(struct iphdr, check))
#define IP_SADDR_OFF(p) ((p)->l3_off + offsetof(struct iphdr, saddr))
#define IP_DADDR_OFF(p) ((p)->l3_off + offsetof(struct iphdr, daddr))

static __always_inline __u32 l4_csum_off(const struct pkt4 *p)
{
	return p->proto == IPPROTO_TCP ? p->l4_off + offsetof(struct tcphdr, check)
				       : p->l4_off + offsetof(struct udphdr, check);
}

/* UDP may carry no checksum (0): BPF_F_MARK_MANGLED_0 leaves it alone and never writes a 0. */
static __always_inline __u64 l4_csum_flags(const struct pkt4 *p)
{
	return p->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

/* Rewrites the source (src = 1) or destination address and fixes both checksums. */
static __always_inline int rewrite_addr(struct __sk_buff *skb, struct pkt4 *p, int src, __be32 new_addr)
{
	__be32 old = src ? p->saddr : p->daddr;
	__u32 off = src ? IP_SADDR_OFF(p) : IP_DADDR_OFF(p);

	if (old == new_addr)
		return 0;
	if (p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP) {
		if (bpf_l4_csum_replace(skb, l4_csum_off(p), old, new_addr,
					BPF_F_PSEUDO_HDR | sizeof(new_addr) | l4_csum_flags(p)) < 0)
			return -1;
	}
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF(p), old, new_addr, sizeof(new_addr)) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, off, &new_addr, sizeof(new_addr), 0) < 0)
		return -1;
	if (src)
		p->saddr = new_addr;
	else
		p->daddr = new_addr;
	return 0;
}

/* Rewrites the TCP/UDP source (src = 1) or destination port and fixes the L4 checksum. */
static __always_inline int rewrite_port(struct __sk_buff *skb, struct pkt4 *p, int src, __be16 new_port)
{
	__be16 old = src ? p->sport : p->dport;
	/* source and dest are the first two 16-bit words of both TCP and UDP headers */
	__u32 off = p->l4_off + (src ? 0 : 2);

	if (old == new_port)
		return 0;
	if (bpf_l4_csum_replace(skb, l4_csum_off(p), old, new_port, sizeof(new_port) | l4_csum_flags(p)) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, off, &new_port, sizeof(new_port), 0) < 0)
		return -1;
	if (src)
		p->sport = new_port;
	else
		p->dport = new_port;
	return 0;
}

/* Decrements the TTL as a router does, fixing the header checksum. Through helpers, never a direct
 * write (see reject.h). */
static __always_inline int ttl_decrement(struct __sk_buff *skb, struct pkt4 *p)
{
	__u32 ttl_off = p->l3_off + offsetof(struct iphdr, ttl);
	__be16 old_word, new_word;
	__u8 new_ttl = p->ttl - 1;

	/* the TTL shares its 16-bit checksum word with the protocol byte */
	if (bpf_skb_load_bytes(skb, ttl_off, &old_word, sizeof(old_word)) < 0)
		return -1;
	new_word = old_word;
	((__u8 *)&new_word)[0] = new_ttl;
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF(p), old_word, new_word, 2) < 0 ||
	    bpf_skb_store_bytes(skb, ttl_off, &new_ttl, 1, 0) < 0)
		return -1;
	p->ttl = new_ttl;
	return 0;
}

/* Folds a 32-bit one's-complement sum into the 16-bit checksum field value. */
static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* The checksum field value after words summing to `diff` (from bpf_csum_diff) replaced others
 * (RFC 1624: HC' = ~(~HC + ~m + m')). */
static __always_inline __u16 csum_after(__u16 check, __s64 diff)
{
	__u64 sum = (__u16)~check + (__u64)(__u32)diff;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Full IPv4 header checksum of a 20-byte header (no options), for headers the datapath builds. */
static __always_inline __u16 ipv4_csum(struct iphdr *ip)
{
	__u16 *w = (__u16 *)ip;
	__u32 sum = 0;

	ip->check = 0;
#pragma unroll
	for (int i = 0; i < (int)(sizeof(*ip) / 2); i++)
		sum += w[i];
	return csum_fold(sum);
}

#endif /* CILIA_CSUM_H */
