// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * sockmesh datapath: the entry points only. Each reads its context, calls
 * one worker from lib/ and turns the worker's result into the hook's
 * verdict. A rejected call gets its errno through bpf_set_retval().
 */
#include "lib/common.h"
#include "lib/ctx.h"
#include "lib/drain.h"
#include "lib/identity.h"
#include "lib/ingress.h"
#include "lib/late.h"
#include "lib/sock.h"
#include "lib/sockops.h"
#include "sockmesh/sockmesh.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline int sm_reject(int err)
{
	bpf_set_retval(err);
	return SM_REJECT;
}

/*
 * A new socket takes the service of the cgroup that makes it. A socket of
 * no service is marked world too: handed to a service's process, or kept
 * by a process that moves into a service, it must not become the
 * service's (lib/identity.h).
 */
SEC("cgroup/sock_create")
int sm_sock_create(struct bpf_sock *sk)
{
	struct sm_cgroup_val id = {.svc = SM_SVC_WORLD, .subset = SM_SUBSET_NONE};
	struct sm_sk *s;

	if (sk->protocol != IPPROTO_TCP && sk->protocol != IPPROTO_UDP)
		return SM_PROCEED;
	identity_current(active_slot(), &id);

	s = bpf_sk_storage_get(&SM_MAP_SK, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!s) {
		stat_inc(SM_S_NO_STORAGE);
		return SM_PROCEED;
	}
	sk_init(s, &id, (__u8)sk->protocol);
	return SM_PROCEED;
}

/*
 * close(): a connection that never reached the TCP state machine (its
 * connect failed before the SYN) still gives back its quota unit.
 */
SEC("cgroup/sock_release")
int sm_sock_release(struct bpf_sock *sk)
{
	struct sm_sk *s = bpf_sk_storage_get(&SM_MAP_SK, sk, 0, 0);

	if (s && (__sync_fetch_and_and(&s->flags, ~SM_SK_QUOTA_HELD) & SM_SK_QUOTA_HELD))
		quota_release(s->svc, s->dst_svc);
	return SM_PROCEED;
}

SEC("cgroup/connect4")
int sm_connect4(struct bpf_sock_addr *ctx)
{
	struct sm_sockaddr dst;
	int ret;

	ctx_get_user4(ctx, &dst);
	ret = __sock_fwd(ctx, &dst, SM_LIST_V4, 0);
	if (ret < 0)
		return sm_reject(ret);
	if (ret > 0)
		ctx_set_user4(ctx, &dst);
	return SM_PROCEED;
}

/* IPv6, and IPv4-mapped IPv6, which lib/ treats exactly as IPv4. */
SEC("cgroup/connect6")
int sm_connect6(struct bpf_sock_addr *ctx)
{
	struct sm_sockaddr dst;
	int ret;

	ctx_get_user6(ctx, &dst);
	ret = __sock_fwd(ctx, &dst, SM_LIST_ALL, 0);
	if (ret < 0)
		return sm_reject(ret);
	if (ret > 0)
		ctx_set_user6(ctx, &dst);
	return SM_PROCEED;
}

/* Unconnected UDP: every datagram with an address. */
SEC("cgroup/sendmsg4")
int sm_sendmsg4(struct bpf_sock_addr *ctx)
{
	struct sm_sockaddr dst;
	int ret;

	ctx_get_user4(ctx, &dst);
	ret = __sock_fwd(ctx, &dst, SM_LIST_V4, 1);
	if (ret < 0)
		return sm_reject(ret);
	if (ret > 0)
		ctx_set_user4(ctx, &dst);
	return SM_PROCEED;
}

SEC("cgroup/sendmsg6")
int sm_sendmsg6(struct bpf_sock_addr *ctx)
{
	struct sm_sockaddr dst;
	int ret;

	ctx_get_user6(ctx, &dst);
	/*
	 * A VIP takes a backend from its IPv6 endpoints only: the kernel
	 * refuses a sendmsg6 rewrite to an IPv4-mapped address.
	 */
	ret = __sock_fwd(ctx, &dst, SM_LIST_V6, 1);
	if (ret < 0)
		return sm_reject(ret);
	if (ret > 0)
		ctx_set_user6(ctx, &dst);
	return SM_PROCEED;
}

/*
 * UDP receive: the sender is noted (answering it is no egress), and a
 * backend's address becomes the VIP that was dialled.
 */
SEC("cgroup/recvmsg4")
int sm_recvmsg4(struct bpf_sock_addr *ctx)
{
	struct sm_sockaddr sa;

	ctx_get_user4(ctx, &sa);
	if (__sock_recv(ctx, &sa) && addr_is_v4(&sa.addr))
		ctx_set_user4(ctx, &sa);
	return SM_PROCEED;
}

SEC("cgroup/recvmsg6")
int sm_recvmsg6(struct bpf_sock_addr *ctx)
{
	struct sm_sockaddr sa;

	ctx_get_user6(ctx, &sa);
	if (__sock_recv(ctx, &sa))
		ctx_set_user6(ctx, &sa);
	return SM_PROCEED;
}

SEC("cgroup/getpeername4")
int sm_getpeer4(struct bpf_sock_addr *ctx)
{
	struct sm_sockaddr sa;

	ctx_get_user4(ctx, &sa);
	if (__sock_rev(ctx, &sa) && addr_is_v4(&sa.addr))
		ctx_set_user4(ctx, &sa);
	return SM_PROCEED;
}

SEC("cgroup/getpeername6")
int sm_getpeer6(struct bpf_sock_addr *ctx)
{
	struct sm_sockaddr sa;

	ctx_get_user6(ctx, &sa);
	if (__sock_rev(ctx, &sa))
		ctx_set_user6(ctx, &sa);
	return SM_PROCEED;
}

SEC("sockops")
int sm_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		/* connect(), before the SYN is built */
		ops_connect(skops);
		break;
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
		/* listen() */
		ops_listen(skops);
		break;
	case BPF_SOCK_OPS_HDR_OPT_LEN_CB:
		/* a segment is built, or the MSS is worked out */
		ops_opt_len(skops);
		break;
	case BPF_SOCK_OPS_WRITE_HDR_OPT_CB:
		/* the option space reserved above can be written */
		ops_opt_write(skops);
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		/* client: SYN-ACK received */
		ops_active_established(skops);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		/* server: handshake complete, accepted socket made */
		ops_passive_established(skops);
		break;
	case BPF_SOCK_OPS_PARSE_HDR_OPT_CB:
		/* server: a segment arrived while waiting for the id */
		ops_parse(skops);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		/* TCP state change; args[0] old, args[1] new */
		ops_state(skops);
		break;
	}
	return 1;
}

/* getsockopt(SOL_SOCKMESH, SOCKMESH_TRACE_ID): the connection's id. */
SEC("cgroup/getsockopt")
int sm_getsockopt(struct bpf_sockopt *ctx)
{
	__u8 *optval = ctx->optval, *end = ctx->optval_end;
	struct bpf_sock *sk = ctx->sk;
	struct sm_sk *s;

	if (ctx->level != SOL_SOCKMESH || ctx->optname != SOCKMESH_TRACE_ID)
		return SM_PROCEED;
	if (!sk)
		return SM_PROCEED;

	s = bpf_sk_storage_get(&SM_MAP_SK, sk, 0, 0);
	if (!s || !trace_id_set(s->trace_id) || (s->flags & SM_SK_TRACE_WAIT)) {
		ctx->retval = -ENOENT;
		return SM_PROCEED;
	}
	if (optval + SM_TRACE_ID_LEN > end) {
		ctx->retval = -EINVAL;
		return SM_PROCEED;
	}
	__builtin_memcpy(optval, s->trace_id, SM_TRACE_ID_LEN);
	ctx->optlen = SM_TRACE_ID_LEN;
	ctx->retval = 0;
	return SM_PROCEED;
}

/* Connections from other nodes to a service here: checked on their SYN. */
SEC("cgroup_skb/ingress")
int sm_ingress(struct __sk_buff *skb)
{
	return __ingress_check(skb) ? SM_REJECT : SM_PROCEED;
}

/* Run by the agent, not attached to the cgroup: see lib/drain.h. */
SEC("iter/tcp")
int sm_drain_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;

	if (skc && drain_match(skc) && !bpf_sock_destroy(skc))
		stat_inc(SM_S_DRAINED);
	return 0;
}

/* Run by the agent once at start, not attached: see lib/late.h. */
SEC("iter/tcp")
int sm_late_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;

	if (skc)
		late_mark(skc);
	return 0;
}
