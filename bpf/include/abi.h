/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The C/Rust ABI of the cilia datapath: every map key and value, every flag and constant that
 * userspace reads or writes. crates/datapath/src/abi.rs mirrors each struct with #[repr(C)] and
 * each constant; its tests compare the structs with the BTF of the compiled objects (every struct
 * here must also be declared in bpf/alignchecker.c) and the constants with this file.
 *
 * Byte order: addresses and ports are stored in network byte order (as they appear in packets),
 * everything else in host order.
 */
#ifndef CILIA_ABI_H
#define CILIA_ABI_H

#include <linux/types.h>

/* ---- map names (pinned by name under the node's bpffs directory) ---- */
/* services:  struct lb4_key -> struct lb4_service */
/* backends:  __u32 backend_id -> struct lb4_backend */
/* revnat:    __u16 rev_nat_index -> struct lb4_reverse_nat */
/* maglev:    __u32 (rev_nat_index | scope << 16) -> struct lb_maglev_table */
/* affinity:  struct lb4_affinity_key -> struct lb_affinity_val */
/* aff_match: struct lb_affinity_match -> __u8 */
/* ct:        struct ct4_key -> struct ct_entry */
/* snat:      struct ct4_key -> struct nat_entry */
/* sock_rev:  struct sock_rev_key -> struct sock_rev_val */
/* netdevs:   __u32 ifindex -> struct netdev_info */
/* config:    __u32 0 -> struct dp_config */
/* l2_resp4:  struct l2_responder_v4_key -> struct l2_responder_entry (cilia_l2_resp4) */
/* l2_resp6:  struct l2_responder_v6_key -> struct l2_responder_entry (cilia_l2_resp6) */
/* l2_live:   __u32 0 -> struct l2_liveness (cilia_l2_live) */

/* ---- default sizes (userspace may override max_entries before the first load) ---- */
#define LB_SERVICES_MAP_SIZE 65536
#define LB_BACKENDS_MAP_SIZE 65536
#define LB_REVNAT_MAP_SIZE 65536
#define LB_MAGLEV_MAP_SIZE 1024
#define LB_AFFINITY_MAP_SIZE 65536
#define CT_MAP_SIZE 262144
#define SNAT_MAP_SIZE 131072
#define SOCK_REV_MAP_SIZE 65536
#define NETDEV_MAP_SIZE 320 /* a /24 of pods and the node's devices; the agent sizes it from its pod CIDR */
#define L2_RESPONDER_MAP_SIZE 65536 /* (VIP, interface) pairs per family */

/* Maglev lookup table size M: a prime, Cilium's default. M >= 100 * backends keeps the share of
 * entries that move when one backend changes near the 1 % Maglev guarantees. */
#define LB_MAGLEV_LUT_SIZE 16381

/* ---- services ---- */
#define LB_SCOPE_ALL 0   /* every backend: in-cluster traffic, and north-south with eTP=Cluster */
#define LB_SCOPE_LOCAL 1 /* node-local backends only: north-south with eTP=Local, in-cluster with iTP=Local */

/* lb4_service.flags */
#define SVC_F_EXTERNAL_IP 0x01
#define SVC_F_NODEPORT 0x02
#define SVC_F_ETP_LOCAL 0x04   /* externalTrafficPolicy: Local; north-south uses the LOCAL scope */
#define SVC_F_ITP_LOCAL 0x08   /* internalTrafficPolicy: Local; in-cluster uses the LOCAL scope */
#define SVC_F_AFFINITY 0x10    /* sessionAffinity: ClientIP; timeout in affinity_timeout */
#define SVC_F_LOADBALANCER 0x20
#define SVC_F_ROUTABLE 0x40    /* reachable from outside the cluster (all but ClusterIP) */
#define SVC_F_ICMP_ECHO 0x80   /* the ICMP row of a VIP: answer echo requests */

/* lb4_service.algorithm */
#define LB_ALG_RANDOM 1
#define LB_ALG_MAGLEV 2

/* Key of the services map. The frontend row has backend_slot 0, and its count says how many slot
 * rows (1..count) follow, each naming one backend. ICMP rows use proto 1 and dport 0. */
struct lb4_key {
	__be32 address;
	__be16 dport;
	__u16 backend_slot;
	__u8 proto;
	__u8 scope;
	__u8 pad[2];
};
_Static_assert(sizeof(struct lb4_key) == 12, "lb4_key size");

struct lb4_service {
	/* slot rows: the backend id; frontend row: the affinity timeout in seconds */
	__u32 backend_id;
	__u16 count;
	__u16 rev_nat_index;
	__u8 flags;
	__u8 algorithm;
	__u8 pad[2];
};
_Static_assert(sizeof(struct lb4_service) == 12, "lb4_service size");

/* ---- backends ---- */
#define BE_STATE_ACTIVE 0
#define BE_STATE_TERMINATING 1 /* serves existing connections, never chosen for new ones */
#define BE_F_NODE_LOCAL 0x10   /* runs on this node: north-south traffic needs no SNAT */
#define BE_STATE_MASK 0x0f

struct lb4_backend {
	__be32 address;
	__be16 port;
	__u8 proto;
	__u8 flags;
};
_Static_assert(sizeof(struct lb4_backend) == 8, "lb4_backend size");

struct lb4_reverse_nat {
	__be32 address;
	__be16 port;
	__u16 pad;
};
_Static_assert(sizeof(struct lb4_reverse_nat) == 8, "lb4_reverse_nat size");

struct lb_maglev_table {
	__u32 backend_ids[LB_MAGLEV_LUT_SIZE];
};
_Static_assert(sizeof(struct lb_maglev_table) == 4 * LB_MAGLEV_LUT_SIZE, "lb_maglev_table size");

/* ---- session affinity ---- */
struct lb4_affinity_key {
	__u64 client_id; /* client IPv4 address (network order, zero-extended) or netns cookie */
	__u16 rev_nat_index;
	__u8 netns_cookie; /* 1 when client_id is a netns cookie (socket-LB) */
	__u8 pad[5];
};
_Static_assert(sizeof(struct lb4_affinity_key) == 16, "lb4_affinity_key size");

struct lb_affinity_val {
	__u64 last_used_ns; /* CLOCK_MONOTONIC (coarse, see now_ns) of the last use */
	__u32 backend_id;
	__u32 pad;
};
_Static_assert(sizeof(struct lb_affinity_val) == 16, "lb_affinity_val size");

/* Whether a backend belongs to a frontend: a remembered affinity backend is only reused while
 * this row exists. */
struct lb_affinity_match {
	__u32 backend_id;
	__u16 rev_nat_index;
	__u16 pad;
};
_Static_assert(sizeof(struct lb_affinity_match) == 8, "lb_affinity_match size");

/* ---- conntrack ---- */
#define CT_SERVICE 1 /* pre-DNAT tuple client -> VIP: which backend the flow uses */
#define CT_EGRESS 2  /* post-DNAT tuple client -> backend: how to reverse-NAT replies */

/* ct_entry.flags */
#define CT_F_NODEPORT 0x01 /* created by a north-south hook */
#define CT_F_SNAT 0x02     /* the flow is also source-NATed to a node address */
#define CT_F_CLOSING 0x04  /* saw FIN or RST */
#define CT_F_SEEN_REPLY 0x08

#define CT_LIFETIME_TCP_NS (21600ULL * 1000000000ULL) /* established TCP: 6 h */
#define CT_LIFETIME_SYN_NS (60ULL * 1000000000ULL)
#define CT_LIFETIME_CLOSE_NS (10ULL * 1000000000ULL)
#define CT_LIFETIME_NONTCP_NS (60ULL * 1000000000ULL)
/* when an established flow's forward packets also refresh its reply entry: after this much idle
 * time, and every this many packets (see ct_reply_sync_due) */
#define CT_REPLY_SYNC_NS (1ULL * 1000000000ULL)
#define CT_REPLY_SYNC_PACKETS 64

struct ct4_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 dir; /* CT_SERVICE, CT_EGRESS; NAT_EGRESS, NAT_INGRESS in the snat map */
	__u8 pad[2];
};
_Static_assert(sizeof(struct ct4_key) == 16, "ct4_key size");

struct ct_entry {
	__u64 expires_ns; /* CLOCK_MONOTONIC (coarse, see now_ns) after which the entry is stale */
	__u64 packets;
	__u64 bytes;
	__u32 backend_id;
	__u16 rev_nat_index;
	__u8 flags;
	__u8 tcp_flags; /* union of TCP flags seen */
};
_Static_assert(sizeof(struct ct_entry) == 32, "ct_entry size");

/* ---- SNAT of north-south flows to remote backends ---- */
#define NAT_EGRESS 3  /* key client -> backend; value: the node address and port it leaves with */
#define NAT_INGRESS 4 /* key backend -> node:natport (as the reply arrives); value: the client */
/* Above Linux's default ephemeral range (32768-60999), so the node's own connections never pick a
 * port the SNAT map holds; the agent also reserves this range (ip_local_reserved_ports) for nodes
 * whose ephemeral range was widened. Mirrored in crates/datapath/src/abi.rs. */
#define NAT_PORT_MIN 61000
#define NAT_PORT_MAX 65535
#define NAT_PORT_RETRIES 16

/* A pod reaching itself through a service (hairpin) is SNATed to this link-local address, as
 * Cilium does with its IPV4_LOOPBACK, so its reply leaves the pod and comes back translated. */
#define LB_HAIRPIN_ADDR_BE 0x012afea9 /* 169.254.42.1, network order read as a little-endian u32 */

/* nat_entry.flags, kept on the NAT_INGRESS entry (the one that owns the port) */
#define NAT_F_SEEN_REPLY 0x1 /* the backend answered */
#define NAT_F_FIN_FWD 0x2    /* the client sent FIN */
#define NAT_F_FIN_REV 0x4    /* the backend sent FIN */
#define NAT_F_RST 0x8        /* either side reset the connection */
/* A port whose flow has been idle this long may be taken by a new flow: an unanswered or non-TCP
 * flow after a minute, an answered TCP flow after the established-TCP lifetime. */
#define NAT_IDLE_NS (60ULL * 1000000000ULL)
#define NAT_IDLE_TCP_NS CT_LIFETIME_TCP_NS
/* A closed flow's port is preferably not taken within this time after its last packet, which
 * leaves room for the final ACK of the old connection. Longer costs probes: at 20 000 new
 * connections a second to one backend every port of the range closes every quarter second. */
#define NAT_CLOSED_GRACE_NS (20ULL * 1000000ULL)
/* The forward direction refreshes the port owner's last_seen_ns at most this often. */
#define NAT_REFRESH_NS (1000000000ULL)

struct nat_entry {
	__u64 last_seen_ns; /* CLOCK_MONOTONIC (coarse) of the flow's last packet, as far as seen */
	__be32 to_addr;
	__be16 to_port;
	__u16 flags; /* NAT_F_* */
};
_Static_assert(sizeof(struct nat_entry) == 16, "nat_entry size");

/* ---- socket-LB reverse translation (recvmsg, getpeername) ---- */
struct sock_rev_key {
	__u64 cookie; /* socket cookie */
	__be32 address; /* backend */
	__be16 port;
	__u16 pad;
};
_Static_assert(sizeof(struct sock_rev_key) == 16, "sock_rev_key size");

struct sock_rev_val {
	__be32 address; /* VIP */
	__be16 port;
	__u16 rev_nat_index;
};
_Static_assert(sizeof(struct sock_rev_val) == 8, "sock_rev_val size");

/* ---- node devices and pod veths ---- */
#define NETDEV_F_POD 0x01 /* a pod's host-side veth: deliver to its peer with bpf_redirect_peer */

struct netdev_info {
	/* A node device: the source address of north-south flows leaving through it (0: none).
	 * A pod veth (NETDEV_F_POD): the pod's address, the only source its packets may have. */
	__be32 addr;
	__u32 flags;
};
_Static_assert(sizeof(struct netdev_info) == 8, "netdev_info size");

/* ---- datapath-wide configuration (array of one) ---- */
#define CFG_F_SOCKET_LB 0x01 /* cgroup hooks translate */

struct dp_config {
	__u64 netns_cookie; /* socket-LB acts only in this network namespace; 0: in all */
	__u32 flags;
	__u32 pad;
};
_Static_assert(sizeof(struct dp_config) == 16, "dp_config size");

/* ---- L2 announcements: ARP / NDP responder (bpf/lib/l2_responder.h) ---- */
/* Key of cilia_l2_resp4: an announced IPv4 address on one device. */
struct l2_responder_v4_key {
	__be32 ip4;
	__u32 ifindex; /* the device the request must arrive on (and the answer leaves by) */
};
_Static_assert(sizeof(struct l2_responder_v4_key) == 8, "l2_responder_v4_key size");

/* Key of cilia_l2_resp6: an announced IPv6 address on one device. */
struct l2_responder_v6_key {
	__u8 ip6[16];
	__u32 ifindex;
	__u32 pad; /* always 0 */
};
_Static_assert(sizeof(struct l2_responder_v6_key) == 24, "l2_responder_v6_key size");

/* Value of both responder maps. The device's MAC is in the entry, written by userspace, so one
 * compiled program serves every device. */
struct l2_responder_entry {
	__u8 mac[6];
	__u8 pad[2];
	__u64 responses; /* answers sent; only the datapath adds to it */
};
_Static_assert(sizeof(struct l2_responder_entry) == 16, "l2_responder_entry size");

/* cilia_l2_live[0]: the agent's heartbeat. The responder answers only while
 * refreshed_ns != 0 && now - refreshed_ns <= max_age_ns (bpf_ktime_get_ns, CLOCK_MONOTONIC), so a
 * node whose agent died stops claiming addresses another node may have taken over. */
struct l2_liveness {
	__u64 refreshed_ns;
	__u64 max_age_ns;
};
_Static_assert(sizeof(struct l2_liveness) == 16, "l2_liveness size");

/* ---- flow events and packet counters (bpf/lib/events.h) ---- */
/* events:      ring buffer of struct flow_event (cilia_events) */
/* events_cfg:  __u32 0 -> struct events_config (cilia_events_cfg) */
/* events_stats: per-CPU __u32 EVENTS_STAT_* -> __u64 (cilia_events_stats) */
/* drops:       per-CPU __u32 reason -> struct pkt_count (cilia_drop_counts) */
/* forwards:    per-CPU __u32 observation point -> struct pkt_count (cilia_fwd_counts) */
#define EVENTS_RINGBUF_SIZE (1 << 20) /* bytes: ~18 000 events of 56 bytes (record + header) */
/* The reader is woken when this much waits (~1 100 events), and drains every EVENTS_POLL_MS
 * anyway: events do not wake it one by one. */
#define EVENTS_WAKEUP_BYTES (64 << 10)
#define EVENTS_POLL_MS 100
#define DROP_REASONS_MAX 256
#define OBS_POINTS_MAX 16
#define EVENTS_STAT_LOST 0    /* events the ring buffer had no room for */
#define EVENTS_STAT_WRITTEN 1 /* events written */
#define EVENTS_STATS 2

/* flow_event.type: Cilium's monitor message types */
#define EVENT_DROP 1
#define EVENT_TRACE 4

/* flow_event.obs_point: Cilium's trace observation points (pkg/monitor/api/types.go) */
#define OBS_TO_ENDPOINT 0
#define OBS_TO_HOST 2
#define OBS_TO_STACK 3
#define OBS_TO_OVERLAY 4
#define OBS_FROM_ENDPOINT 5
#define OBS_FROM_HOST 7
#define OBS_FROM_STACK 8
#define OBS_FROM_OVERLAY 9
#define OBS_FROM_NETWORK 10
#define OBS_TO_NETWORK 11
#define OBS_NONE 0xff /* no trace for this verdict */

/* flow_event.drop_reason: Cilium's drop codes (bpf/lib/common.h, flow.proto DropReason) */
#define DROP_INVALID_SIP 132      /* a pod's packet (or a tunnel's) from an address that is not its own */
#define DROP_INVALID 134          /* malformed headers */
#define DROP_WRITE_ERROR 141      /* a packet rewrite (NAT, TTL, MAC, encapsulation, answer) failed */
#define DROP_CT_CREATE_FAILED 155 /* a NAT or conntrack map update failed */
#define DROP_NO_SERVICE 158       /* service without backends (answered with a reject) */
#define DROP_NAT_NO_MAPPING 167   /* SNAT ports exhausted: no free port after every probe */
#define DROP_NOT_SET 0

/* flow_event.flags */
#define EV_F_REPLY 0x01      /* a reply: reverse-NATed, or SYN+ACK */
#define EV_F_NOT_REPLY 0x02  /* an original direction packet: DNATed, or a SYN without ACK */
#define EV_F_DNAT 0x04       /* svc_addr/svc_port: the frontend the packet was sent to */
#define EV_F_REV_NAT 0x08    /* svc_addr/svc_port: the frontend the reply now comes from */
#define EV_F_TRUNCATED 0x10  /* headers could not be read: the tuple is partial */
#define EV_F_ENCAP 0x20      /* encapsulated towards another node here */
#define EV_F_TO_POD 0x40     /* redirected to a pod's veth */

/* events_config.level */
#define EVENTS_OFF 0       /* counters only */
#define EVENTS_MEDIUM 1    /* drops; traces at to-* points of TCP packets with SYN, FIN or RST and of non-TCP packets */
#define EVENTS_ALL 2       /* drops; traces of every packet at to-* and from-* points */

struct events_config {
	__u32 level;
	__u32 pad;
};
_Static_assert(sizeof(struct events_config) == 8, "events_config size");

struct pkt_count {
	__u64 packets;
	__u64 bytes;
};
_Static_assert(sizeof(struct pkt_count) == 16, "pkt_count size");

/* One record of the ring buffer. Addresses and ports in network order, as in the packet. */
struct flow_event {
	__u64 ts_ns; /* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
	__u8 type;   /* EVENT_* */
	__u8 obs_point;
	__u8 drop_reason;
	__u8 flags; /* EV_F_* */
	__u32 ifindex; /* the device the program runs on */
	__u32 pkt_len; /* skb->len as the program saw it last */
	__be32 saddr;  /* the tuple as the packet leaves the program (after translation) */
	__be32 daddr;
	__be16 sport; /* ICMP echo: id */
	__be16 dport;
	__u8 proto;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__be32 svc_addr; /* with EV_F_DNAT / EV_F_REV_NAT */
	__be16 svc_port;
	__u16 pad;
	__u32 out_ifindex; /* where a redirect sent it (0: the stack, or back out of ifindex) */
};
_Static_assert(sizeof(struct flow_event) == 48, "flow_event size");

#endif /* CILIA_ABI_H */
