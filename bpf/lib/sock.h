/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * connect() and sendmsg(): the forward half shared by connect4/6 and
 * sendmsg4/6, and the reverse half that recvmsg and getpeername use to
 * show the application the VIP it dialled instead of the backend.
 */
#ifndef SM_BPF_SOCK_H
#define SM_BPF_SOCK_H

#include "common.h"
#include "ctx.h"
#include "identity.h"
#include "policy.h"
#include "stats.h"

/* The VIP translation this socket already has for vip, or -ENOENT. */
static __always_inline int xlate_find_vip(const struct sm_sk *s, const struct sm_sockaddr *vip)
{
	int i;

	for (i = 0; i < SM_SK_XLATE; i++) {
		if (i < s->n_xlate && sa_equal(&s->xlate[i].vip, vip))
			return i;
	}
	return -ENOENT;
}

/*
 * Reverse translation: a backend address this socket reached through a
 * VIP becomes that VIP. Does nothing for a socket that never dialled one.
 */
static __always_inline int xlate_rev(const struct sm_sk *s, struct sm_sockaddr *sa)
{
	int i;

	for (i = 0; i < SM_SK_XLATE; i++) {
		if (i < s->n_xlate && sa_equal(&s->xlate[i].backend, sa)) {
			*sa = s->xlate[i].vip;
			return 1;
		}
	}
	return 0;
}

/*
 * Remember vip -> backend. A UDP socket that dials more VIPs than there
 * are slots reuses the oldest; replies through the forgotten VIP then show
 * the backend's address.
 */
static __always_inline void xlate_add(struct sm_sk *s, const struct sm_sockaddr *vip,
				      const struct sm_sockaddr *backend)
{
	__u32 i = s->n_xlate;

	if (i >= SM_SK_XLATE) {
		i = s->xlate_next % SM_SK_XLATE;
		s->xlate_next++;
	} else {
		s->n_xlate = i + 1;
	}
	s->xlate[i & (SM_SK_XLATE - 1)].vip = *vip;
	s->xlate[i & (SM_SK_XLATE - 1)].backend = *backend;
}

/*
 * May a UDP socket keep the backend it has for a VIP of service svc? Yes
 * while it is one of the service's endpoints; once a reload removed it,
 * only if the service says drain: keep.
 */
static __always_inline int xlate_udp_keep(__u32 slot, __u32 svc, const struct sm_sockaddr *be)
{
	struct sm_svc_key key = {.svc = svc, .slot = slot};
	struct sm_dest_val *dv = dest_lookup(slot, be, IPPROTO_UDP);
	struct sm_svc_val *sv;

	if (dv && dv->kind == SM_DEST_ENDPOINT && dv->svc == svc)
		return 1;
	sv = bpf_map_lookup_elem(&SM_MAP_SVC, &key);
	return sv && sv->drain == SM_DRAIN_KEEP;
}

/*
 * A managed UDP socket heard from sa. Its answers to sa are replies in a
 * flow the peer began (a DNS server answering a client): neither egress
 * nor a flow of its own. The last SM_SK_PEERS sources are kept.
 */
static __always_inline void udp_peer_seen(struct sm_sk *s, const struct sm_sockaddr *sa)
{
	__u32 i;

	if (s->svc == SM_SVC_WORLD)
		return;
	for (i = 0; i < SM_SK_PEERS; i++)
		if (i < s->n_peers && sa_equal(&s->peers[i], sa))
			return;
	if (s->n_peers < SM_SK_PEERS)
		i = s->n_peers++;
	else
		i = s->peer_next++;
	s->peers[i & (SM_SK_PEERS - 1)] = *sa;
}

static __always_inline int udp_peer_known(const struct sm_sk *s, const struct sm_sockaddr *sa)
{
	__u32 i;

	for (i = 0; i < SM_SK_PEERS; i++)
		if (i < s->n_peers && sa_equal(&s->peers[i], sa))
			return 1;
	return 0;
}

/* A deny, no-backend or quota verdict: counted and recorded. */
static __always_inline void sock_record_reject(const struct sm_sk *s, __u32 src,
					       const struct sm_sockaddr *dst, __u8 proto,
					       const struct sm_decision *d)
{
	struct sm_event *e;
	__u32 folded;

	pair_count(src, d->dst_svc, d->verdict);
	if (!deny_record_ok(src, d->dst_svc, d->verdict, &folded))
		return;
	e = event_new(SM_EV_DENY);
	if (!e)
		return;
	e->folded = folded;
	e->cgid = s ? s->cgid : bpf_get_current_cgroup_id();
	e->src_subset = s ? s->subset : SM_SUBSET_NONE;
	e->src_svc = src;
	e->dst_svc = d->dst_svc;
	e->verdict = d->verdict;
	e->reason = d->reason;
	e->rule = d->rule;
	e->proto = proto;
	e->orig = *dst;
	e->dst = *dst;
	ctx_task(&e->pid, e->comm);
	event_submit(e);
}

/* An allowed or audited connection: the socket keeps what was decided. */
static __always_inline void sock_commit(struct sm_sk *s, const struct sm_sockaddr *orig,
					const struct sm_decision *d, __u8 proto)
{
	s->verdict = d->verdict;
	s->reason = d->reason;
	s->rule = d->rule;
	s->dst_svc = d->dst_svc;
	s->dst_subset = d->subset;
	s->proto = proto;
	s->orig = *orig;
	s->dst = d->kind == SM_DEST_VIP ? d->backend : *orig;
	s->start_ns = bpf_ktime_get_ns();
	ctx_task(&s->pid, s->comm);
	trace_id_new(s->trace_id);
	/* A new attempt on a TCP socket is a new connection to close. */
	if (proto == IPPROTO_TCP)
		__sync_fetch_and_and(&s->flags, ~(SM_SK_CLOSED | SM_SK_ESTABLISHED));
	__sync_fetch_and_or(&s->flags, SM_SK_MANAGED);
	if (d->quota_held)
		__sync_fetch_and_or(&s->flags, SM_SK_QUOTA_HELD);
}

/* An event for the decision now in the socket's state. */
static __always_inline void sock_record(const struct sm_sk *s, __u8 type)
{
	struct sm_event *e = event_new(type);

	if (!e)
		return;
	event_from_sk(e, s);
	event_submit(e);
}

/*
 * A TCP socket dialling again after a failed connect() gives back the
 * quota unit of its last attempt, if that attempt still holds it: one
 * that failed before its SYN (no route) reached no TCP state that would,
 * and each retry would take one more.
 */
static __always_inline void redial_release(struct sm_sk *s)
{
	if (__sync_fetch_and_and(&s->flags, ~SM_SK_QUOTA_HELD) & SM_SK_QUOTA_HELD)
		quota_release(s->svc, s->dst_svc);
}

/*
 * Note the VIP -> backend translation of this call. A TCP socket keeps
 * only its latest one (it may dial again after a failed connect()). A
 * UDP socket keeps its backend for a VIP for its lifetime, unless a
 * reload removed that endpoint: then it takes the backend just picked,
 * as a new flow, and the result is 1.
 */
static __always_inline int xlate_note(struct sm_sk *s, __u32 slot, const struct sm_sockaddr *vip,
				      struct sm_decision *d, __u8 proto)
{
	struct sm_xlate *xl;
	int i;

	if (proto == IPPROTO_TCP)
		s->n_xlate = 0;
	i = xlate_find_vip(s, vip);
	if (i < 0) {
		xlate_add(s, vip, &d->backend);
		return 0;
	}
	xl = &s->xlate[i & (SM_SK_XLATE - 1)];
	if (xlate_udp_keep(slot, d->dst_svc, &xl->backend)) {
		d->backend = xl->backend;
		return 0;
	}
	xl->backend = d->backend;
	return 1;
}

/* 127.0.0.0/8 or ::1 (an IPv4-mapped one is IPv4 here). */
static __always_inline int addr_is_loopback(const struct sm_addr *a)
{
	if (addr_is_v4(a))
		return (bpf_ntohl(a->a[3]) >> 24) == 127;
	return !a->a[0] && !a->a[1] && !a->a[2] && a->a[3] == bpf_htonl(1);
}

/*
 * The service whose TCP listener on this network namespace takes a
 * connection to dst, when the policy does not list dst (a server bound to
 * all addresses is also reachable on 127.0.0.1). It counts when it is
 * bound to dst's address itself, or to all addresses and dst is a
 * loopback address: a listener bound to all addresses also matches
 * addresses of other hosts, and this hook cannot tell those from the
 * host's own. WORLD when there is none. Not inlined: the lookup's tuple
 * gets a stack frame of its own.
 */
static __noinline __u32 local_owner(struct bpf_sock_addr *ctx, const struct sm_sockaddr *dst,
				    __u8 *subset)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	struct sm_sk *ls;
	__u32 svc = SM_SVC_WORLD, size;
	int v4, wild, same;

	if (!dst || !subset)
		return SM_SVC_WORLD;
	v4 = addr_is_v4(&dst->addr);
	if (v4) {
		t.ipv4.daddr = dst->addr.a[3];
		t.ipv4.dport = dst->port;
		size = sizeof(t.ipv4);
	} else {
		__builtin_memcpy(t.ipv6.daddr, dst->addr.a, sizeof(t.ipv6.daddr));
		t.ipv6.dport = dst->port;
		size = sizeof(t.ipv6);
	}
	sk = bpf_sk_lookup_tcp(ctx, &t, size, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return SM_SVC_WORLD;

	/* Step 1: bound to dst's address, or to all of them. */
	if (sk->family == AF_INET) {
		wild = !sk->src_ip4;
		same = v4 && sk->src_ip4 == dst->addr.a[3];
	} else {
		wild = !(sk->src_ip6[0] | sk->src_ip6[1] | sk->src_ip6[2] | sk->src_ip6[3]);
		same = sk->src_ip6[0] == dst->addr.a[0] && sk->src_ip6[1] == dst->addr.a[1] &&
		       sk->src_ip6[2] == dst->addr.a[2] && sk->src_ip6[3] == dst->addr.a[3];
	}

	/* Step 2: a socket of a service names that service. */
	if (same || (wild && addr_is_loopback(&dst->addr))) {
		ls = bpf_sk_storage_get(&SM_MAP_SK, sk, 0, 0);
		if (ls) {
			svc = ls->svc;
			*subset = ls->subset;
		}
	}
	bpf_sk_release(sk);
	return svc;
}

/*
 * The forward half. dst is the address the application gave; when the
 * result is 1 it has been rewritten and the hook must store it back.
 * Returns 0 (unchanged), 1 (rewritten) or a negative errno to reject.
 */
static __always_inline int __sock_fwd(struct bpf_sock_addr *ctx, struct sm_sockaddr *dst,
				      __u32 list, int is_send)
{
	struct sm_decision d = {};
	struct sm_query q = {};
	struct bpf_sock *sk = ctx->sk;
	struct sm_sk *s;
	__u32 slot, src;
	__u64 caller;
	__u8 proto;
	int err, moved = 0;

	if (!sk)
		return 0;
	proto = (__u8)ctx->protocol;
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return 0;
	/* A connect() on a socket already connecting: the kernel answers. */
	if (proto == IPPROTO_TCP && sk->state != SM_TCP_CLOSE)
		return 0;

	/* Step 1: who is calling. */
	slot = active_slot();
	s = sk_get(sk, slot, 0);
	src = s ? s->svc : SM_SVC_WORLD;
	caller = src != SM_SVC_WORLD ? src : bpf_get_current_cgroup_id();

	if (s && proto == IPPROTO_TCP)
		redial_release(s);

	/*
	 * Step 2: the decision; a rejected call is recorded and fails. dst
	 * keeps the address dialled until the rewrite at the very end.
	 */
	q.caller = caller;
	q.slot = slot;
	q.src = src;
	q.list = list;
	q.proto = proto;
	err = __sock_decide(&q, dst, &d);
	/* A UDP answer to a peer outside the mesh: the peer's flow. */
	if (!d.kind && proto == IPPROTO_UDP && s && udp_peer_known(s, dst))
		return 0;
	/*
	 * Not in the policy, but a service's listener on this host takes it:
	 * decide again. TCP only: a UDP datagram to a bound socket may be a
	 * reply to it, which the sender cannot always know (UDP stays egress).
	 */
	if (!d.kind && proto == IPPROTO_TCP) {
		q.local_svc = local_owner(ctx, dst, &q.local_subset);
		if (q.local_svc != SM_SVC_WORLD) {
			__builtin_memset(&d, 0, sizeof(d));
			err = __sock_decide(&q, dst, &d);
		}
	}
	if (err) {
		sock_record_reject(s, src, dst, proto, &d);
		return err;
	}
	if (!d.kind && src == SM_SVC_WORLD)
		return 0;

	/* Step 3: the socket keeps the decision. */
	if (!s)
		s = sk_get(sk, slot, 1);
	if (!s) {
		if (d.quota_held)
			quota_release(src, d.dst_svc);
		return d.kind == SM_DEST_VIP ? -SM_ERRNO_NO_BACKEND : 0;
	}

	if (d.kind == SM_DEST_VIP)
		moved = xlate_note(s, slot, dst, &d, proto);

	/* Unconnected UDP: only a new destination is a new flow. */
	if (is_send && !moved && s->verdict == d.verdict && sa_equal(&s->orig, dst) &&
	    (s->flags & SM_SK_MANAGED)) {
		if (d.kind == SM_DEST_VIP)
			*dst = d.backend;
		return d.kind == SM_DEST_VIP;
	}

	if (proto == IPPROTO_TCP)
		s->n_xlate = d.kind == SM_DEST_VIP ? 1 : 0;
	sock_commit(s, dst, &d, proto);
	pair_count(src, d.dst_svc, d.verdict);
	if (d.kind == SM_DEST_VIP)
		canary_count(d.dst_svc, d.subset);

	/*
	 * Step 4: records. A TCP connection is recorded when it is
	 * established (sockops knows both addresses then); an audit and a
	 * UDP flow are recorded now.
	 */
	if (d.verdict == SM_V_AUDIT)
		sock_record(s, SM_EV_AUDIT);
	else if (proto == IPPROTO_UDP)
		sock_record(s, SM_EV_CONNECT);

	if (d.kind != SM_DEST_VIP)
		return 0;
	*dst = d.backend;
	return 1;
}

/* The state of a sock_addr hook's socket, if it has any. */
static __always_inline struct sm_sk *ctx_sk_state(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;

	return sk ? bpf_sk_storage_get(&SM_MAP_SK, sk, 0, 0) : NULL;
}

/* The reverse half, for getpeername. */
static __always_inline int __sock_rev(struct bpf_sock_addr *ctx, struct sm_sockaddr *sa)
{
	struct sm_sk *s = ctx_sk_state(ctx);

	return s && s->n_xlate ? xlate_rev(s, sa) : 0;
}

/* recvmsg: note the peer, then the reverse half. */
static __always_inline int __sock_recv(struct bpf_sock_addr *ctx, struct sm_sockaddr *sa)
{
	struct sm_sk *s = ctx_sk_state(ctx);

	if (!s)
		return 0;
	udp_peer_seen(s, sa);
	return s->n_xlate ? xlate_rev(s, sa) : 0;
}

#endif /* SM_BPF_SOCK_H */
