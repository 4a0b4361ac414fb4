/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Verdicts, constants and small helpers every part of the datapath uses. */
#ifndef SM_BPF_COMMON_H
#define SM_BPF_COMMON_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "sockmesh/abi.h"
#include "maps.h"

/* What a cgroup sock/sock_addr/sockopt program returns. */
#define SM_PROCEED 1
#define SM_REJECT  0

/* Internal results are negative errnos; the UAPI headers do not define them. */
#ifndef EPERM
#define EPERM 1
#endif
#ifndef ENOENT
#define ENOENT 2
#endif
#ifndef EINVAL
#define EINVAL 22
#endif

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#define SM_TCP_SYN 0x02
#define SM_TCP_ACK 0x10

/* TCP states as struct bpf_sock reports them. */
#define SM_TCP_ESTABLISHED 1
#define SM_TCP_SYN_SENT	   2
#define SM_TCP_CLOSE	   7
#define SM_TCP_LISTEN	   10

#ifdef SM_DEBUG
#define sm_dbg(fmt, ...) bpf_printk(fmt, ##__VA_ARGS__)
#else
#define sm_dbg(fmt, ...) \
	do {             \
	} while (0)
#endif

#define SM_ZERO 0

/* The slot of the policy in force, read once per program run. */
static __always_inline __u32 active_slot(void)
{
	__u32 key = 0;
	struct sm_active *a;

	a = bpf_map_lookup_elem(&SM_MAP_ACTIVE, &key);
	return a ? (a->slot & 1) : 0;
}

static __always_inline void addr_set_v4(struct sm_addr *a, __be32 ip)
{
	a->a[0] = 0;
	a->a[1] = 0;
	a->a[2] = bpf_htonl(0xffff);
	a->a[3] = ip;
}

/* An IPv4 address, or an IPv4-mapped IPv6 one: both are IPv4 to us. */
static __always_inline int addr_is_v4(const struct sm_addr *a)
{
	return a->a[0] == 0 && a->a[1] == 0 && a->a[2] == bpf_htonl(0xffff);
}

static __always_inline int sa_equal(const struct sm_sockaddr *x, const struct sm_sockaddr *y)
{
	return x->port == y->port && x->addr.a[0] == y->addr.a[0] && x->addr.a[1] == y->addr.a[1] &&
	       x->addr.a[2] == y->addr.a[2] && x->addr.a[3] == y->addr.a[3];
}

static __always_inline void trace_id_new(__u8 *id)
{
	__u32 *w = (__u32 *)id;

	w[0] = bpf_get_prandom_u32();
	w[1] = bpf_get_prandom_u32();
	w[2] = bpf_get_prandom_u32();
	/* W3C forbids the all-zero id; a set low bit rules it out. */
	w[3] = bpf_get_prandom_u32() | 1;
}

static __always_inline int trace_id_set(const __u8 *id)
{
	const __u32 *w = (const __u32 *)id;

	return w[0] | w[1] | w[2] | w[3];
}

#endif /* SM_BPF_COMMON_H */
