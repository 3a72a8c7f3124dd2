/* SPDX-License-Identifier: Apache-2.0 */
/* Socket-LB (cgroup v2 sock_addr hooks), like Cilium's bpf_sock: processes of the node's own
 * namespace that connect to or send to a service frontend get the backend's address at
 * connect()/sendmsg() time, so their packets need no per-packet NAT at all. recvmsg() and
 * getpeername() translate back, so the application only ever sees the frontend. A node port is
 * also served on the node's loopback addresses (127.0.0.0/8).
 *
 * cgroup hooks see every network namespace whose processes live in the cgroup; several cilia
 * nodes may share one kernel (the lab), so each datapath translates only in the namespace named
 * by its config (netns cookie). */
#include "lib/common.h"
#include "lib/config.h"
#include "lib/events.h"
#include "lib/lb.h"

char _license[] SEC("license") = "GPL";

/* bpf_set_retval (5.18) is newer than the helper list of libbpf 1.1 */
static long (*sock_set_retval)(int retval) = (void *)BPF_FUNC_set_retval;

#define SYS_PROCEED 1
#define SYS_REJECT 0
#define ECONNREFUSED 111

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct sock_rev_key);
	__type(value, struct sock_rev_val);
	__uint(max_entries, SOCK_REV_MAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilia_lb4_reverse_sk SEC(".maps");

static __always_inline int sock_in_scope(struct bpf_sock_addr *ctx)
{
	struct dp_config *cfg = dp_config();
	if (!cfg || !(cfg->flags & CFG_F_SOCKET_LB))
		return 0;
	return !cfg->netns_cookie || cfg->netns_cookie == bpf_get_netns_cookie(ctx);
}

static __always_inline __u8 sock_proto(struct bpf_sock_addr *ctx)
{
	return ctx->protocol == IPPROTO_TCP ? IPPROTO_TCP : IPPROTO_UDP;
}

/* Translates the destination of connect()/sendmsg() from a frontend to a backend. */
static __always_inline int sock4_xlate_fwd(struct bpf_sock_addr *ctx)
{
	struct lb4_key key;
	__be32 vip = ctx->user_ip4;
	__be16 vport = (__be16)ctx->user_port;
	__u8 proto = sock_proto(ctx);

	if (!sock_in_scope(ctx))
		return SYS_PROCEED;
	struct lb4_service *svc = lb4_lookup_frontend(&key, vip, vport, proto, 0);
	/* a node port on the node's loopback: the port's surrogate frontend (0.0.0.0), as in Cilium */
	if (!svc && (bpf_ntohl(vip) >> 24) == 127)
		svc = lb4_lookup_frontend(&key, 0, vport, proto, 0);
	if (!svc)
		return SYS_PROCEED;
	if (!svc->count) {
		/* fail fast, as a RST would, instead of letting SYNs to the VIP time out */
		sock_drop(vip, vport, proto, DROP_NO_SERVICE);
		sock_set_retval(-ECONNREFUSED);
		return SYS_REJECT;
	}

	struct lb_client client = { .id = bpf_get_netns_cookie(ctx), .is_netns_cookie = 1 };
	__u32 backend_id = lb4_select_backend(&key, svc, &client, 0, 0, 0);
	struct lb4_backend *be = lb4_lookup_backend(backend_id);
	if (!be) {
		sock_drop(vip, vport, proto, DROP_NO_SERVICE);
		sock_set_retval(-ECONNREFUSED);
		return SYS_REJECT;
	}

	struct sock_rev_key rk = { .cookie = bpf_get_socket_cookie(ctx), .address = be->address, .port = be->port };
	struct sock_rev_val rv = { .address = vip, .port = vport, .rev_nat_index = svc->rev_nat_index };
	bpf_map_update_elem(&cilia_lb4_reverse_sk, &rk, &rv, BPF_ANY);

	ctx->user_ip4 = be->address;
	ctx->user_port = be->port;
	return SYS_PROCEED;
}

/* Translates the peer address seen by recvmsg()/getpeername() back to the frontend. */
static __always_inline int sock4_xlate_rev(struct bpf_sock_addr *ctx)
{
	if (!sock_in_scope(ctx))
		return SYS_PROCEED;
	struct sock_rev_key rk = {
		.cookie = bpf_get_socket_cookie(ctx),
		.address = ctx->user_ip4,
		.port = (__be16)ctx->user_port,
	};
	struct sock_rev_val *rv = bpf_map_lookup_elem(&cilia_lb4_reverse_sk, &rk);
	if (!rv)
		return SYS_PROCEED;
	/* only while the frontend still exists, as Cilium checks the reverse-NAT entry */
	if (!bpf_map_lookup_elem(&cilia_lb4_reverse_nat, &rv->rev_nat_index))
		return SYS_PROCEED;
	ctx->user_ip4 = rv->address;
	ctx->user_port = rv->port;
	return SYS_PROCEED;
}

SEC("cgroup/connect4")
int sock4_connect(struct bpf_sock_addr *ctx)
{
	return sock4_xlate_fwd(ctx);
}

SEC("cgroup/sendmsg4")
int sock4_sendmsg(struct bpf_sock_addr *ctx)
{
	return sock4_xlate_fwd(ctx);
}

SEC("cgroup/recvmsg4")
int sock4_recvmsg(struct bpf_sock_addr *ctx)
{
	return sock4_xlate_rev(ctx);
}

SEC("cgroup/getpeername4")
int sock4_getpeer(struct bpf_sock_addr *ctx)
{
	return sock4_xlate_rev(ctx);
}
