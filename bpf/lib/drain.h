/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * drain: close. When a reload removes an endpoint, the agent lists it in
 * sm_drain and runs this iterator over the TCP sockets of every network
 * namespace its services use: a client socket that reached that endpoint
 * through a VIP is destroyed (the kernel's bpf_sock_destroy: the
 * application's next call fails with ECONNABORTED), so a long-lived
 * client reconnects and the VIP picks a live backend.
 *
 * No vmlinux.h here: the few kernel types the iterator touches are
 * declared below and relocated against the running kernel's BTF (CO-RE).
 */
#ifndef SM_BPF_DRAIN_H
#define SM_BPF_DRAIN_H

#include "common.h"
#include "stats.h"

struct bpf_iter_meta;

/*
 * A field is read (below) so that clang emits the struct itself rather
 * than a forward declaration: libbpf 1.1 finds a forward-declared kfunc
 * argument incompatible with the kernel's struct.
 */
struct sock_common {
	unsigned short skc_family;
} __attribute__((preserve_access_index));

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
	__u32 uid;
} __attribute__((preserve_access_index));

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

/* 1: this socket reached a drained endpoint through a VIP. */
static __always_inline int drain_match(struct sock_common *skc)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
	struct sm_sk *s;

	/* Request and time-wait sockets have nothing to close. */
	if (!tp || (skc->skc_family != AF_INET && skc->skc_family != AF_INET6))
		return 0;
	s = bpf_sk_storage_get(&SM_MAP_SK, tp, 0, 0);
	if (!s || (s->flags & SM_SK_PASSIVE) || !s->n_xlate || s->proto != IPPROTO_TCP)
		return 0;
	return bpf_map_lookup_elem(&SM_MAP_DRAIN, &s->dst) != NULL;
}

#endif /* SM_BPF_DRAIN_H */
