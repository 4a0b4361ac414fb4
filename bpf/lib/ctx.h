/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Small accessors for the hook contexts, v4 and v6 side by side. */
#ifndef SM_BPF_CTX_H
#define SM_BPF_CTX_H

#include "common.h"

/* The destination a sock_addr hook was given (connect/sendmsg). */
static __always_inline void ctx_get_user4(const struct bpf_sock_addr *ctx, struct sm_sockaddr *sa)
{
	addr_set_v4(&sa->addr, ctx->user_ip4);
	sa->port = (__be16)ctx->user_port;
	sa->pad = 0;
}

static __always_inline void ctx_get_user6(const struct bpf_sock_addr *ctx, struct sm_sockaddr *sa)
{
	sa->addr.a[0] = ctx->user_ip6[0];
	sa->addr.a[1] = ctx->user_ip6[1];
	sa->addr.a[2] = ctx->user_ip6[2];
	sa->addr.a[3] = ctx->user_ip6[3];
	sa->port = (__be16)ctx->user_port;
	sa->pad = 0;
}

/* An IPv4 hook can only ever be handed an IPv4 address. */
static __always_inline void ctx_set_user4(struct bpf_sock_addr *ctx, const struct sm_sockaddr *sa)
{
	ctx->user_ip4 = sa->addr.a[3];
	ctx->user_port = sa->port;
}

static __always_inline void ctx_set_user6(struct bpf_sock_addr *ctx, const struct sm_sockaddr *sa)
{
	ctx->user_ip6[0] = sa->addr.a[0];
	ctx->user_ip6[1] = sa->addr.a[1];
	ctx->user_ip6[2] = sa->addr.a[2];
	ctx->user_ip6[3] = sa->addr.a[3];
	ctx->user_port = sa->port;
}

/*
 * The two ends of a sock_ops socket. The context keeps local_port in host
 * order and remote_port in network order in the upper 16 bits.
 *
 * Every field is read unconditionally: if clang picks the field by family
 * it loads through a computed context pointer, which the verifier refuses
 * ("dereference of modified ctx ptr").
 */
/* Load a context field where it stands, never through a chosen pointer. */
#define ctx_load(field)                       \
	({                                    \
		__u32 __v = (field);          \
		asm volatile("" : "+r"(__v)); \
		__v;                          \
	})

static __always_inline void ops_addr(struct sm_sockaddr *sa, __u32 family, __be32 ip4, __be32 a0,
				     __be32 a1, __be32 a2, __be32 a3)
{
	if (family == AF_INET) {
		addr_set_v4(&sa->addr, ip4);
	} else {
		sa->addr.a[0] = a0;
		sa->addr.a[1] = a1;
		sa->addr.a[2] = a2;
		sa->addr.a[3] = a3;
	}
	sa->pad = 0;
}

static __always_inline void ctx_ops_local(const struct bpf_sock_ops *skops, struct sm_sockaddr *sa)
{
	ops_addr(sa, skops->family, ctx_load(skops->local_ip4), ctx_load(skops->local_ip6[0]),
		 ctx_load(skops->local_ip6[1]), ctx_load(skops->local_ip6[2]),
		 ctx_load(skops->local_ip6[3]));
	sa->port = bpf_htons((__u16)skops->local_port);
}

static __always_inline void ctx_ops_remote(const struct bpf_sock_ops *skops, struct sm_sockaddr *sa)
{
	ops_addr(sa, skops->family, ctx_load(skops->remote_ip4), ctx_load(skops->remote_ip6[0]),
		 ctx_load(skops->remote_ip6[1]), ctx_load(skops->remote_ip6[2]),
		 ctx_load(skops->remote_ip6[3]));
	sa->port = (__be16)(skops->remote_port >> 16);
}

/* Pid and command of the task making the call. */
static __always_inline void ctx_task(__u32 *pid, char *comm)
{
	*pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(comm, 16);
}

#endif /* SM_BPF_CTX_H */
