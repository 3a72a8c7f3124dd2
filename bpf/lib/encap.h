/* SPDX-License-Identifier: Apache-2.0 */
/* Encapsulation towards other nodes, and stripping on arrival. The tunnel endpoint of a destination
 * comes from an LPM map of remote pod CIDRs (Cilium 1.18 keeps these in its ipcache). Pods' packets
 * get their outer headers here in BPF and leave by the underlay device (encap_direct), and VXLAN
 * packets for local pods are stripped here too (vxlan_decap_for_pod): the kernel's VXLAN driver
 * costs a route lookup, a socket lookup and a queue per packet. Everything else goes through the
 * flow-based VXLAN device, like Cilium's encap.h: the outer destination and the VNI set per packet
 * with bpf_skb_set_tunnel_key, the driver building the outer headers. */
#ifndef CILIA_ENCAP_H
#define CILIA_ENCAP_H

#include <stddef.h>
#include "common.h"
#include "csum.h"
#include "devices.h"
#include "events.h"
#include "fib.h"
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

/* The other nodes' addresses (the endpoints of the tunnel map): VXLAN packets from anyone else
 * are dropped, since the VXLAN socket itself takes them from any address. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, __u32);
	__uint(max_entries, TUNNEL_PEERS_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilia_tunnel_peers SEC(".maps");

static __always_inline int tunnel_peer_known(__be32 node)
{
	return bpf_map_lookup_elem(&cilia_tunnel_peers, &node) != NULL;
}

/* Whether a packet on the VXLAN device's ingress may go on: the flow-based device puts the outer
 * source in the tunnel metadata of every packet it decapsulates, and that must be a known node. A
 * packet without metadata did not come out of the tunnel (BPF_PROG_TEST_RUN's, for one). */
static __always_inline int decapsulated_from_peer(struct __sk_buff *skb)
{
	struct bpf_tunnel_key key = {};
	if (bpf_skb_get_tunnel_key(skb, &key, sizeof(key), 0) < 0)
		return 1;
	return tunnel_peer_known(bpf_htonl(key.remote_ipv4));
}

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

/* Not in older UAPI headers: strip tunnel GSO state on decapsulation (kernels after 6.18). */
#ifndef BPF_F_ADJ_ROOM_DECAP_L4_UDP
#define BPF_F_ADJ_ROOM_DECAP_L4_UDP (1ULL << 10)
#endif

#define VXLAN_PORT 8472
#define VXLAN_FLAG_VNI 0x08000000 /* the I flag: the VNI is valid */

/* The outer headers in front of the inner Ethernet frame, as the VXLAN driver writes them. */
struct vxlan_outer4 {
	struct iphdr ip;
	struct udphdr udp;
	__be32 flags;
	__be32 vni;
};
_Static_assert(sizeof(struct vxlan_outer4) + sizeof(struct ethhdr) == VXLAN_OVERHEAD, "VXLAN overhead");

/* The outer UDP source port, from the inner flow's hash as the VXLAN driver picks it (within the
 * ephemeral range): receivers spread flows over queues and ECMP paths by it. */
static __always_inline __be16 vxlan_source_port(struct __sk_buff *skb)
{
	__u32 hash = bpf_get_hash_recalc(skb);
	return bpf_htons(32768 + (__u16)(((__u64)hash * (61000 - 32768)) >> 32));
}

/* Encapsulates in BPF and sends the packet out of the underlay device, without the VXLAN driver:
 * outer headers pushed with bpf_skb_adjust_room (which marks the skb as UDP-tunnel GSO, so a TCP
 * super-packet is still segmented once, by the device or the stack, only where needed), outer
 * source the egress device's node address, Ethernet addresses from the FIB. Returns -1 when the
 * path is not a plain one (no FIB answer, no node address on the egress device, packet too long),
 * for the caller to use the VXLAN device instead. */
static __always_inline int encap_direct(struct __sk_buff *skb, const struct tunnel_info *dst, __u32 vni)
{
	struct bpf_fib_lookup fib;
	if (fib_lookup_flow(skb, 0, dst->endpoint, 0, 0, 0, &fib) != BPF_FIB_LKUP_RET_SUCCESS)
		return -1;
	__be32 saddr = netdev_snat_addr(fib.ifindex);
	__u32 inner_len = skb->len - sizeof(struct ethhdr);
	if (!saddr || inner_len + VXLAN_OVERHEAD > 0xffff)
		return -1;

	struct ethhdr inner_eth;
	if (bpf_skb_load_bytes(skb, 0, &inner_eth, sizeof(inner_eth)) < 0)
		return -1;
	__be16 sport = vxlan_source_port(skb);

	/* the MTU already allows for the outer headers: keep gso_size */
	__u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
		      BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(sizeof(struct ethhdr));
	if (bpf_skb_adjust_room(skb, VXLAN_OVERHEAD, BPF_ADJ_ROOM_MAC, flags) < 0)
		return -1;

	struct vxlan_outer4 o;
	__builtin_memset(&o, 0, sizeof(o));
	o.ip.version = 4;
	o.ip.ihl = 5;
	o.ip.tot_len = bpf_htons(inner_len + VXLAN_OVERHEAD);
	o.ip.ttl = 64;
	o.ip.protocol = IPPROTO_UDP;
	o.ip.saddr = saddr;
	o.ip.daddr = dst->endpoint;
	o.ip.check = csum_fold(bpf_csum_diff(0, 0, (__be32 *)&o.ip, sizeof(o.ip), 0));
	o.udp.source = sport;
	o.udp.dest = bpf_htons(VXLAN_PORT);
	/* zero UDP checksum, as with BPF_F_ZERO_CSUM_TX: the inner packet carries its own */
	o.udp.len = bpf_htons(inner_len + VXLAN_OVERHEAD - sizeof(struct iphdr));
	o.flags = bpf_htonl(VXLAN_FLAG_VNI);
	o.vni = bpf_htonl(vni << 8);

	__u32 off = sizeof(struct ethhdr);
	if (bpf_skb_store_bytes(skb, off, &o, sizeof(o), 0) < 0 ||
	    bpf_skb_store_bytes(skb, off + sizeof(o), &inner_eth, sizeof(inner_eth), 0) < 0 ||
	    bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), fib.dmac, ETH_ALEN, 0) < 0 ||
	    bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_source), fib.smac, ETH_ALEN, 0) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(fib.ifindex, 0);
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
	p->ev_flags |= EV_F_ENCAP;
	int rc = encap_direct(skb, dst, source_identity(p->saddr, cfg));
	if (rc >= 0)
		return rc;
	return set_tunnel_and_redirect(skb, dst, p->saddr, cfg);
}

/* A VXLAN packet to this node (outer headers parsed into p) whose inner packet is for a local pod:
 * strips the outer headers in BPF and returns the FIB's answer for the inner packet in fib, for
 * the caller to hand it to the pod. -1 when it is not such a packet, or one this path leaves to
 * the VXLAN driver; the packet is then unchanged. */
static __always_inline int vxlan_decap_for_pod(struct __sk_buff *skb, const struct pkt4 *p, struct bpf_fib_lookup *fib)
{
	struct overlay_config *cfg = overlay_config();
	/* from an unknown sender it goes to the driver, and is dropped behind it (from_overlay) */
	if (!cfg || !cfg->encap_ifindex || p->daddr != netdev_snat_addr(skb->ifindex) || !tunnel_peer_known(p->saddr))
		return -1;
	__u32 off = p->l4_off + sizeof(struct udphdr);
	__be32 vxlan_flags;
	struct ethhdr eth;
	struct iphdr ip;
	if (bpf_skb_load_bytes(skb, off, &vxlan_flags, sizeof(vxlan_flags)) < 0 ||
	    !(vxlan_flags & bpf_htonl(VXLAN_FLAG_VNI)) ||
	    bpf_skb_load_bytes(skb, off + 8, &eth, sizeof(eth)) < 0 || eth.h_proto != bpf_htons(ETH_P_IP) ||
	    bpf_skb_load_bytes(skb, off + 8 + sizeof(eth), &ip, sizeof(ip)) < 0 || ip.version != 4 || ip.ihl < 5 ||
	    ip.ttl <= 1)
		return -1;
	/* only what the service datapath parses (fragments and other protocols keep the driver's way,
	 * since a stripped packet can no longer go there) */
	if ((ip.frag_off & bpf_htons(IP_MF | IP_OFFSET)) ||
	    (ip.protocol != IPPROTO_TCP && ip.protocol != IPPROTO_UDP && ip.protocol != IPPROTO_ICMP))
		return -1;

	if (fib_lookup_flow(skb, ip.saddr, ip.daddr, 0, 0, 0, fib) != BPF_FIB_LKUP_RET_SUCCESS ||
	    !netdev_is_pod(fib->ifindex))
		return -1;

	/* A super-packet keeps its UDP-tunnel GSO marks through the strip unless the kernel has
	 * BPF_F_ADJ_ROOM_DECAP_L4_UDP (newer than 6.18; without it the flag is refused and the strip
	 * is retried without). A stale mark is harmless for TCP the pod receives (its socket takes the
	 * packet whole), but would make the stack segment an inner UDP super-packet as a tunnel
	 * packet: those stay with the VXLAN driver, which clears the marks. */
	if (skb->gso_size && ip.protocol != IPPROTO_TCP)
		return -1;
	__u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_NO_CSUM_RESET;
	if (bpf_skb_adjust_room(skb, -VXLAN_OVERHEAD, BPF_ADJ_ROOM_MAC, flags | BPF_F_ADJ_ROOM_DECAP_L4_UDP) < 0 &&
	    bpf_skb_adjust_room(skb, -VXLAN_OVERHEAD, BPF_ADJ_ROOM_MAC, flags) < 0)
		return -1;
	/* A checksum the NIC or GRO verified counted the outer UDP one as the first: one level less
	 * now, as the kernel's UDP receive does for a tunnel packet (no-op unless "unnecessary"). */
	bpf_csum_level(skb, BPF_CSUM_LEVEL_DEC);
	/* the inner frame's destination MAC belongs to the sender's side */
	bpf_skb_change_type(skb, PACKET_HOST);
	return 0;
}

/* The start of every program on the VXLAN device's ingress (bpf_overlay's from_overlay and
 * bpf_lxc's overlay_deliver, which replaces it): the decapsulated frame is marked for this host
 * (its destination MAC belongs to the sender's side) and parsed, dropped unless its outer source is
 * another node, and traced when it parsed. Returns 1 when the caller goes on with the parsed
 * packet; otherwise 0, with the program's verdict in *verdict (the drop, or the stack for what does
 * not parse). */
static __always_inline int overlay_ingress_accept(struct __sk_buff *skb, struct pkt4 *p, int *verdict)
{
	bpf_skb_change_type(skb, PACKET_HOST);
	int parsed = parse_pkt4(skb, p);
	if (!decapsulated_from_peer(skb)) {
		*verdict = drop_for(p, DROP_INVALID_SIP);
		return 0;
	}
	if (parsed != PARSE_OK) {
		*verdict = TC_ACT_OK;
		return 0;
	}
	trace_entry(skb, p, OBS_FROM_OVERLAY);
	return 1;
}

#endif /* CILIA_ENCAP_H */
