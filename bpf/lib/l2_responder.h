/* SPDX-License-Identifier: Apache-2.0 */
/* L2 announcements: this node answers ARP requests and IPv6 neighbour solicitations for the
 * service addresses it announces (LoadBalancer IPs, external IPs), as Cilium's
 * bpf/lib/l2_responder.h does. The agent writes one entry per (address, device) it holds; the
 * answer is built in place and sent back out of the device the request came in on, so the node
 * needs no address of the service on any interface and the kernel's ARP/NDP never sees it.
 *
 * Beyond Cilium's responder:
 *   - the device's MAC is in the map entry, so the program needs no per-device compile;
 *   - unicast ARP to our MAC (a neighbour's reachability probe) is answered, as are NS to the
 *     solicited-node group and unicast NS;
 *   - requests that could never be answered correctly are left to the stack untouched: malformed
 *     or truncated ARP, another host's gratuitous ARP, our own announcements coming back, DAD;
 *   - the NA carries R=0 S=1 O=1 and a Target Link-Layer Address option (RFC 4861 7.2.4).
 *
 * Packets are read and written only through helpers (see reject.h for why no direct writes). */
#ifndef CILIA_L2_RESPONDER_H
#define CILIA_L2_RESPONDER_H

#include "common.h"

#ifndef ETH_P_ARP
#define ETH_P_ARP 0x0806
#endif
#ifndef ETH_P_IPV6
#define ETH_P_IPV6 0x86DD
#endif
#define L2_ARPHRD_ETHER 1
#define L2_ARPOP_REQUEST 1
#define L2_ARPOP_REPLY 2
#define L2_IPPROTO_ICMPV6 58
#define L2_ND_HOP_LIMIT 255 /* NDP messages from anywhere but the link are forged (RFC 4861 7.1.1) */
#define L2_ND_NEIGHBOUR_SOLICIT 135
#define L2_ND_NEIGHBOUR_ADVERT 136
#define L2_ND_OPT_TARGET_LL_ADDR 2
#define L2_NA_FLAGS_SOLICITED_OVERRIDE 0x60000000 /* R=0 S=1 O=1 */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct l2_responder_v4_key);
	__type(value, struct l2_responder_entry);
	__uint(max_entries, L2_RESPONDER_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilia_l2_resp4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct l2_responder_v6_key);
	__type(value, struct l2_responder_entry);
	__uint(max_entries, L2_RESPONDER_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilia_l2_resp6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct l2_liveness);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilia_l2_live SEC(".maps");

/* An Ethernet/IPv4 ARP packet (RFC 826) with its Ethernet header: 42 bytes. */
struct l2_arp_frame {
	struct ethhdr eth;
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[ETH_ALEN];
	__u8 spa[4];
	__u8 tha[ETH_ALEN];
	__u8 tpa[4];
} __attribute__((packed));
_Static_assert(sizeof(struct l2_arp_frame) == 42, "l2_arp_frame size");

struct l2_ip6hdr {
	__be32 vtc_flow; /* version 4 bits, traffic class 8, flow label 20 */
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
} __attribute__((packed));

/* A neighbour solicitation or advertisement up to its target address: 78 bytes. The reserved
 * word of an NS holds the R/S/O flags in an NA. */
struct l2_nd_frame {
	struct ethhdr eth;
	struct l2_ip6hdr ip6;
	__u8 type;
	__u8 code;
	__u16 csum;
	__be32 flags;
	__u8 target[16];
} __attribute__((packed));
_Static_assert(sizeof(struct l2_nd_frame) == 78, "l2_nd_frame size");

/* The advertisement we send: the above plus one Target Link-Layer Address option, 86 bytes. */
struct l2_na_frame {
	struct l2_nd_frame nd;
	__u8 opt_type;
	__u8 opt_len; /* in units of 8 bytes */
	__u8 opt_mac[ETH_ALEN];
} __attribute__((packed));
_Static_assert(sizeof(struct l2_na_frame) == 86, "l2_na_frame size");
/* The ICMPv6 message of the advertisement, checksummed from the IPv6 source address on. */
#define L2_NA_ICMP_LEN (sizeof(struct l2_na_frame) - sizeof(struct ethhdr) - sizeof(struct l2_ip6hdr))

/* Byte-wise compares: the frames are packed structs on the stack, where the verifier refuses
 * misaligned wider loads. */
static __always_inline int l2_mac_eq(const __u8 *a, const __u8 *b)
{
	return !((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) | (a[5] ^ b[5]));
}

static __always_inline int l2_mac_is_broadcast(const __u8 *m)
{
	return (m[0] & m[1] & m[2] & m[3] & m[4] & m[5]) == 0xff;
}

/* Group bit: a multicast or broadcast sender is forged, and an answer to it would flood. */
static __always_inline int l2_mac_is_group(const __u8 *m)
{
	return m[0] & 1;
}

static __always_inline int l2_ip4_eq(const __u8 *a, const __u8 *b)
{
	return !((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]));
}

static __always_inline int l2_ip6_eq(const __u8 *a, const __u8 *b)
{
	__u8 diff = 0;
#pragma unroll
	for (int i = 0; i < 16; i++)
		diff |= a[i] ^ b[i];
	return !diff;
}

static __always_inline int l2_ip6_is_unspecified(const __u8 *a)
{
	__u8 any = 0;
#pragma unroll
	for (int i = 0; i < 16; i++)
		any |= a[i];
	return !any;
}

/* ff02::1:ffXX:XXXX with the target's last three bytes (RFC 4291 2.7.1). */
static __always_inline int l2_is_solicited_node(const __u8 *a, const __u8 *target)
{
	__u8 diff = (a[0] ^ 0xff) | (a[1] ^ 0x02) | (a[11] ^ 0x01) | (a[12] ^ 0xff);
#pragma unroll
	for (int i = 2; i < 11; i++)
		diff |= a[i];
	return !(diff | (a[13] ^ target[13]) | (a[14] ^ target[14]) | (a[15] ^ target[15]));
}

/* 33:33:ff:XX:XX:XX, the Ethernet group of that address (RFC 2464 7). */
static __always_inline int l2_is_solicited_node_mac(const __u8 *m, const __u8 *target)
{
	return !((m[0] ^ 0x33) | (m[1] ^ 0x33) | (m[2] ^ 0xff) | (m[3] ^ target[13]) | (m[4] ^ target[14]) |
		 (m[5] ^ target[15]));
}

/* Whether the agent refreshed its heartbeat within max_age_ns. Entries of a dead agent cannot be
 * trusted: another node may hold the address by now, and two answers would split the clients. A
 * missing heartbeat (never written, or zeroed on shutdown) means silent. */
static __always_inline int l2_agent_alive(void)
{
	__u32 zero = 0;
	struct l2_liveness *l = bpf_map_lookup_elem(&cilia_l2_live, &zero);
	if (!l || !l->refreshed_ns)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	/* a heartbeat a hair ahead of this CPU's clock reads is fresh, not 2^64 ns old */
	return now <= l->refreshed_ns || now - l->refreshed_ns <= l->max_age_ns;
}

/* Sends the rebuilt frame back out of the device it came in on and counts the answer. */
static __always_inline int l2_answer(struct __sk_buff *skb, struct l2_responder_entry *e)
{
	__sync_fetch_and_add(&e->responses, 1);
	return bpf_redirect(skb->ifindex, 0);
}

/* An Ethernet/IPv4 ARP request for an announced address on this device: turned into the reply
 * in place (RFC 826). -1 when it is not ours to answer. */
static __always_inline int l2_arp_respond(struct __sk_buff *skb)
{
	struct l2_arp_frame f;

	/* too short for an ARP packet (the load fails): not ours */
	if (bpf_skb_load_bytes(skb, 0, &f, sizeof(f)) < 0)
		return -1;
	if (f.eth.h_proto != bpf_htons(ETH_P_ARP) || f.htype != bpf_htons(L2_ARPHRD_ETHER) ||
	    f.ptype != bpf_htons(ETH_P_IP) || f.hlen != ETH_ALEN || f.plen != 4 ||
	    f.op != bpf_htons(L2_ARPOP_REQUEST))
		return -1;
	/* sender = target is another host announcing the address: answering would contest it */
	if (l2_ip4_eq(f.spa, f.tpa) || l2_mac_is_group(f.eth.h_source))
		return -1;

	struct l2_responder_v4_key key = { .ifindex = skb->ifindex };
	__builtin_memcpy(&key.ip4, f.tpa, sizeof(key.ip4));
	struct l2_responder_entry *e = bpf_map_lookup_elem(&cilia_l2_resp4, &key);
	if (!e)
		return -1;
	/* broadcast, or a unicast probe to us (neighbour reachability checks are unicast) */
	if (!l2_mac_is_broadcast(f.eth.h_dest) && !l2_mac_eq(f.eth.h_dest, e->mac))
		return -1;
	/* our own request coming back (a bridge reflecting it, another node of the same host) */
	if (l2_mac_eq(f.sha, e->mac) || l2_mac_eq(f.eth.h_source, e->mac))
		return -1;
	/* last: it reads the clock, which most ARP on a LAN (for other hosts) never gets to */
	if (!l2_agent_alive())
		return -1;

	__u8 requester_ip[4];
	__builtin_memcpy(requester_ip, f.spa, sizeof(requester_ip));
	__builtin_memcpy(f.eth.h_dest, f.eth.h_source, ETH_ALEN);
	__builtin_memcpy(f.eth.h_source, e->mac, ETH_ALEN);
	f.op = bpf_htons(L2_ARPOP_REPLY);
	__builtin_memcpy(f.tha, f.sha, ETH_ALEN);
	__builtin_memcpy(f.sha, e->mac, ETH_ALEN);
	__builtin_memcpy(f.spa, f.tpa, sizeof(f.spa));
	__builtin_memcpy(f.tpa, requester_ip, sizeof(f.tpa));
	/* the frame keeps its length: trailing Ethernet padding stays as it came */
	if (bpf_skb_store_bytes(skb, 0, &f, sizeof(f), 0) < 0)
		return -1;
	return l2_answer(skb, e);
}

/* ICMPv6 checksum of the advertisement: the pseudo header's addresses and the message lie next
 * to each other in the frame, so one sum covers both; length and next header are added. */
static __always_inline __u16 l2_na_csum(struct l2_na_frame *f)
{
	f->nd.csum = 0;
	__s64 sum = bpf_csum_diff(0, 0, (__be32 *)f->nd.ip6.saddr, 32 + L2_NA_ICMP_LEN, 0);
	__u64 s = (__u64)(__u32)sum + bpf_htons(L2_NA_ICMP_LEN) + bpf_htons(L2_IPPROTO_ICMPV6);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* Whether an NS may be answered from the packet alone (RFC 4861 7.1.1, and not ours to judge
 * otherwise): no extension headers, code 0, an address we could own as target, sent to that
 * target or its solicited-node group, not duplicate address detection. */
static __always_inline int l2_ns_valid(struct __sk_buff *skb, struct l2_nd_frame *f)
{
	__u32 payload_len = bpf_ntohs(f->ip6.payload_len);

	if (f->eth.h_proto != bpf_htons(ETH_P_IPV6) || (f->ip6.vtc_flow & bpf_htonl(0xf0000000)) != bpf_htonl(0x60000000))
		return 0;
	if (payload_len < sizeof(*f) - sizeof(f->eth) - sizeof(f->ip6) ||
	    sizeof(f->eth) + sizeof(f->ip6) + payload_len > skb->len)
		return 0;
	if (f->type != L2_ND_NEIGHBOUR_SOLICIT || f->code != 0 || f->target[0] == 0xff)
		return 0;
	/* DAD (source ::) asks whether anyone uses the address; the agent's announcement answers */
	if (l2_ip6_is_unspecified(f->ip6.saddr) || l2_mac_is_group(f->eth.h_source))
		return 0;
	return l2_ip6_eq(f->ip6.daddr, f->target) || l2_is_solicited_node(f->ip6.daddr, f->target);
}

/* An IPv6 neighbour solicitation for an announced address on this device: answered with a
 * solicited advertisement, unicast to the solicitor. -1 when it is not ours to answer. */
static __always_inline int l2_ndisc_respond(struct __sk_buff *skb)
{
	struct l2_na_frame f;
	__u8 nh[2];

	/* other IPv6 traffic stops at this two-byte read of next header and hop limit */
	if (bpf_skb_load_bytes(skb, sizeof(struct ethhdr) + 6, nh, sizeof(nh)) < 0 || nh[0] != L2_IPPROTO_ICMPV6 ||
	    nh[1] != L2_ND_HOP_LIMIT)
		return -1;
	if (bpf_skb_load_bytes(skb, 0, &f.nd, sizeof(f.nd)) < 0 || !l2_ns_valid(skb, &f.nd))
		return -1;

	struct l2_responder_v6_key key = { .ifindex = skb->ifindex, .pad = 0 };
	__builtin_memcpy(key.ip6, f.nd.target, sizeof(key.ip6));
	struct l2_responder_entry *e = bpf_map_lookup_elem(&cilia_l2_resp6, &key);
	if (!e)
		return -1;
	if (!l2_mac_eq(f.nd.eth.h_dest, e->mac) && !l2_is_solicited_node_mac(f.nd.eth.h_dest, f.nd.target))
		return -1;
	if (l2_mac_eq(f.nd.eth.h_source, e->mac) || !l2_agent_alive())
		return -1;

	__builtin_memcpy(f.nd.eth.h_dest, f.nd.eth.h_source, ETH_ALEN);
	__builtin_memcpy(f.nd.eth.h_source, e->mac, ETH_ALEN);
	f.nd.ip6.vtc_flow = bpf_htonl(0x60000000);
	f.nd.ip6.payload_len = bpf_htons(L2_NA_ICMP_LEN);
	f.nd.ip6.hop_limit = L2_ND_HOP_LIMIT;
	__builtin_memcpy(f.nd.ip6.daddr, f.nd.ip6.saddr, sizeof(f.nd.ip6.daddr));
	__builtin_memcpy(f.nd.ip6.saddr, f.nd.target, sizeof(f.nd.ip6.saddr));
	f.nd.type = L2_ND_NEIGHBOUR_ADVERT;
	f.nd.code = 0;
	f.nd.flags = bpf_htonl(L2_NA_FLAGS_SOLICITED_OVERRIDE);
	f.opt_type = L2_ND_OPT_TARGET_LL_ADDR;
	f.opt_len = 1;
	__builtin_memcpy(f.opt_mac, e->mac, ETH_ALEN);
	f.nd.csum = l2_na_csum(&f);

	/* the NS had no option, or a source link-layer option, or more: the NA has exactly one */
	if (skb->len != sizeof(f) && bpf_skb_change_tail(skb, sizeof(f), 0) < 0)
		return -1;
	/* after a resize the frame is no longer the request: never hand it on half built */
	if (bpf_skb_store_bytes(skb, 0, &f, sizeof(f), 0) < 0)
		return TC_ACT_SHOT;
	return l2_answer(skb, e);
}

/* Entry point from from_netdev for every frame that is not IPv4 by skb->protocol (the one compare
 * IPv4 traffic pays): the responder's verdict, or -1 to carry on as before. VLAN-tagged frames
 * (the tag in the skb's metadata or still in the frame) are not for the untagged device's
 * announcements. */
static __always_inline int l2_respond(struct __sk_buff *skb)
{
	if (skb->vlan_present)
		return -1;
	if (skb->protocol == bpf_htons(ETH_P_ARP))
		return l2_arp_respond(skb);
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return l2_ndisc_respond(skb);
	return -1;
}

#endif /* CILIA_L2_RESPONDER_H */
