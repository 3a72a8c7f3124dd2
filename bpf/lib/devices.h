/* SPDX-License-Identifier: Apache-2.0 */
/* What userspace tells the datapath about the node's devices: the address north-south flows leave
 * with through a node device, and which devices are pod veths (whose peer is the pod's eth0 in
 * the pod's namespace, so a packet for the pod can be handed straight to that peer). */
#ifndef CILIA_DEVICES_H
#define CILIA_DEVICES_H

#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct netdev_info);
	__uint(max_entries, NETDEV_MAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilia_netdevs SEC(".maps");

/* The node address north-south flows leave with through a device, if userspace configured one. */
static __always_inline __be32 netdev_snat_addr(__u32 ifindex)
{
	struct netdev_info *nd = bpf_map_lookup_elem(&cilia_netdevs, &ifindex);
	return nd && !(nd->flags & NETDEV_F_POD) ? nd->addr : 0;
}

/* Whether a packet a pod sent through its veth carries the pod's own address as its source. A
 * veth the map does not know as a pod's is refused too: its programs are attached only after its
 * entry is written. */
static __always_inline int netdev_pod_source_ok(__u32 ifindex, __be32 saddr)
{
	struct netdev_info *nd = bpf_map_lookup_elem(&cilia_netdevs, &ifindex);
	return nd && (nd->flags & NETDEV_F_POD) && nd->addr == saddr;
}

static __always_inline int netdev_is_pod(__u32 ifindex)
{
	struct netdev_info *nd = bpf_map_lookup_elem(&cilia_netdevs, &ifindex);
	return nd && (nd->flags & NETDEV_F_POD);
}

#endif /* CILIA_DEVICES_H */
