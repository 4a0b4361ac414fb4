/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * TCP life-cycle work: the trace id option on the wire, the records of
 * established and closed connections, and giving back quota units.
 *
 * The trace option travels client -> server. The client puts it on its
 * SYN when there is room. A server that read it answers with a 4-byte echo
 * on the SYN-ACK. A client that sees no echo (no room on the SYN, a SYN
 * cookie, or a peer without sockmesh) puts the option on its next few
 * segments instead, and the server adopts it from the first that has it.
 */
#ifndef SM_BPF_SOCKOPS_H
#define SM_BPF_SOCKOPS_H

#include <bpf/bpf_core_read.h>

#include "common.h"
#include "ctx.h"
#include "outlier.h"
#include "policy.h"
#include "quota.h"
#include "stats.h"

/* Segments after the SYN that carry the option when the echo is missing. */
#define SM_TRACE_RESEND 3

/* TCP states in STATE_CB arguments. */
#define SM_TCP_FIN_WAIT1  4
#define SM_TCP_FIN_WAIT2  5
#define SM_TCP_TIME_WAIT  6
#define SM_TCP_CLOSE_WAIT 8
#define SM_TCP_LAST_ACK	  9
#define SM_TCP_CLOSING	  11

struct sm_tcpopt {
	__u8 kind;
	__u8 len;
	__be16 exid;
	__u8 id[SM_TRACE_ID_LEN];
} __attribute__((packed));

static __always_inline struct sm_sk *ops_sk(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;

	if (!sk)
		return NULL;
	return bpf_sk_storage_get(&SM_MAP_SK, sk, 0, 0);
}

static __always_inline void ops_flags_add(struct bpf_sock_ops *skops, __u32 flags)
{
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | flags);
}

static __always_inline void ops_flags_del(struct bpf_sock_ops *skops, __u32 flags)
{
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags & ~flags);
}

/* Our trace option in the current segment (or the SYN): 0, or -ENOENT. */
static __always_inline int opt_load(struct bpf_sock_ops *skops, struct sm_tcpopt *opt, __u64 flags)
{
	int len;

	opt->kind = SM_TCPOPT_KIND;
	opt->len = 4; /* search key: kind and 2-byte ExID */
	opt->exid = bpf_htons(SM_TCPOPT_EXID);
	len = bpf_load_hdr_opt(skops, opt, sizeof(*opt), flags);
	return len == SM_TCPOPT_LEN ? 0 : -ENOENT;
}

static __always_inline int opt_echo_seen(struct bpf_sock_ops *skops)
{
	struct sm_tcpopt opt = {
		.kind = SM_TCPOPT_KIND,
		.len = 4,
		.exid = bpf_htons(SM_TCPOPT_EXID),
	};

	return bpf_load_hdr_opt(skops, &opt, SM_TCPOPT_ECHO_LEN, 0) == SM_TCPOPT_ECHO_LEN;
}

static __always_inline int ops_is_synack(const struct bpf_sock_ops *skops)
{
	return (skops->skb_tcp_flags & (SM_TCP_SYN | SM_TCP_ACK)) == (SM_TCP_SYN | SM_TCP_ACK);
}

static __always_inline int ops_is_syn(const struct bpf_sock_ops *skops)
{
	return (skops->skb_tcp_flags & (SM_TCP_SYN | SM_TCP_ACK)) == SM_TCP_SYN;
}

/* The connection's key in the SYN stash, as the server sees it. */
static __always_inline void trace_key(struct bpf_sock_ops *skops, struct sm_trace_key *key)
{
	struct sm_sockaddr l, r;

	ctx_ops_local(skops, &l);
	ctx_ops_remote(skops, &r);
	key->netns = bpf_get_netns_cookie(skops);
	key->saddr = r.addr;
	key->daddr = l.addr;
	key->sport = r.port;
	key->dport = l.port;
	key->pad = 0;
}

/* The connection's addresses, client first, from either end. */
static __always_inline void flow_key(struct bpf_sock_ops *skops, int passive,
				     struct sm_flow_key *key)
{
	struct sm_sockaddr l, r;

	ctx_ops_local(skops, &l);
	ctx_ops_remote(skops, &r);
	key->saddr = passive ? r.addr : l.addr;
	key->daddr = passive ? l.addr : r.addr;
	key->sport = passive ? r.port : l.port;
	key->dport = passive ? l.port : r.port;
	key->pad = 0;
}

/*
 * Client, before the SYN is built (the local port is bound by now): ask
 * for the option callbacks, and tell servers on this node who we are.
 */
static __always_inline void ops_connect(struct bpf_sock_ops *skops)
{
	struct sm_sk *s = ops_sk(skops);
	struct sm_local_val lv;
	struct sm_flow_key fk;

	if (!s || !(s->flags & SM_SK_MANAGED))
		return;
	__builtin_memset(&lv, 0, sizeof(lv));
	lv.svc = s->svc;
	lv.dst_svc = s->dst_svc;
	lv.subset = s->subset;
	flow_key(skops, 0, &fk);
	bpf_map_update_elem(&SM_MAP_LOCAL, &fk, &lv, BPF_ANY);
	__sync_fetch_and_or(&s->flags, SM_SK_TRACE_PENDING);
	ops_flags_add(skops, BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG | BPF_SOCK_OPS_STATE_CB_FLAG);
}

/* listen(): SYN-ACKs of this listener may carry the echo. */
static __always_inline void ops_listen(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	struct sm_sk *s = ops_sk(skops);

	if (!s || !sk)
		return;
	/*
	 * A server of no service is none of ours: without state its
	 * accepted sockets get none, as before sock_create marked it world
	 * (ingress.h still adopts it if its cgroup becomes a service's).
	 */
	if (s->svc == SM_SVC_WORLD) {
		bpf_sk_storage_delete(&SM_MAP_SK, sk);
		return;
	}
	__sync_fetch_and_or(&s->flags, SM_SK_LISTENER);
	ops_flags_add(skops, BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG);
}

/*
 * Room for options. Also called, without a segment, when the kernel
 * works out the MSS: reserving the same there keeps full-size segments
 * that carry the option within the MSS.
 */
static __always_inline void ops_opt_len(struct bpf_sock_ops *skops)
{
	struct sm_tcpopt opt;
	struct sm_trace_key key;
	struct sm_sk *s;

	/* Server, SYN-ACK: stash the client's id, answer with the echo. */
	if (ops_is_synack(skops)) {
		if (skops->args[0] & BPF_WRITE_HDR_TCP_SYNACK_COOKIE)
			return;
		if (opt_load(skops, &opt, BPF_LOAD_HDR_OPT_TCP_SYN))
			return;
		trace_key(skops, &key);
		bpf_map_update_elem(&SM_MAP_TRACE, &key, opt.id, BPF_ANY);
		bpf_reserve_hdr_opt(skops, SM_TCPOPT_ECHO_LEN, 0);
		return;
	}

	/* Client: room for the id while it still has to go out. */
	s = ops_sk(skops);
	if (!s || !(s->flags & SM_SK_TRACE_PENDING))
		return;
	if (bpf_reserve_hdr_opt(skops, SM_TCPOPT_LEN, 0) && ops_is_syn(skops) &&
	    !(__sync_fetch_and_or(&s->flags, SM_SK_NO_SPACE) & SM_SK_NO_SPACE))
		stat_inc(SM_S_TRACE_NO_SPACE);
}

static __always_inline void ops_opt_write(struct bpf_sock_ops *skops)
{
	struct sm_tcpopt opt = {
		.kind = SM_TCPOPT_KIND,
		.exid = bpf_htons(SM_TCPOPT_EXID),
	};
	struct sm_sk *s;

	if (ops_is_synack(skops)) {
		opt.len = SM_TCPOPT_ECHO_LEN;
		bpf_store_hdr_opt(skops, &opt, SM_TCPOPT_ECHO_LEN, 0);
		return;
	}

	s = ops_sk(skops);
	if (!s || !(s->flags & SM_SK_TRACE_PENDING))
		return;
	opt.len = SM_TCPOPT_LEN;
	__builtin_memcpy(opt.id, s->trace_id, SM_TRACE_ID_LEN);
	if (bpf_store_hdr_opt(skops, &opt, SM_TCPOPT_LEN, 0))
		return;
	if (!(__sync_fetch_and_or(&s->flags, SM_SK_TRACE_COUNTED) & SM_SK_TRACE_COUNTED))
		stat_inc(SM_S_TRACE_WRITTEN);
	if (ops_is_syn(skops))
		return;

	/* After the SYN: a bounded number of segments, then stop. */
	if (++s->trace_segs >= SM_TRACE_RESEND) {
		__sync_fetch_and_and(&s->flags, ~SM_SK_TRACE_PENDING);
		ops_flags_del(skops, BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG);
	}
}

/* What a closing connection moved, as this socket saw it. */
struct sm_close_stats {
	__u64 duration_ns;
	__u64 sent;	/* by this socket */
	__u64 received; /* by this socket */
};

static __always_inline void ops_close_stats(const struct bpf_sock_ops *skops, const struct sm_sk *s,
					    struct sm_close_stats *cs)
{
	__u64 fin_in = !!(s->flags & SM_SK_FIN_IN);
	__u64 ctl_out = !!(s->flags & SM_SK_FIN_ACKED);

	/*
	 * The kernel's byte counters count sequence numbers: the FINs, and
	 * on the client the SYN too (its SYN-ACK advances snd_una by one).
	 */
	if (!(s->flags & SM_SK_PASSIVE) && (s->flags & SM_SK_ESTABLISHED))
		ctl_out++;
	cs->duration_ns = bpf_ktime_get_ns() - s->start_ns;
	cs->received = skops->bytes_received;
	cs->sent = skops->bytes_acked;
	cs->received -= cs->received >= fin_in ? fin_in : cs->received;
	cs->sent -= cs->sent >= ctl_out ? ctl_out : cs->sent;
}

/* Both ends of an event from the socket's own addresses. */
static __always_inline void ops_record(struct bpf_sock_ops *skops, const struct sm_sk *s, __u8 type)
{
	struct sm_event *e = event_new(type);
	int passive = !!(s->flags & SM_SK_PASSIVE);
	struct sm_sockaddr local, remote;

	if (!e)
		return;
	event_from_sk(e, s);
	ctx_ops_local(skops, &local);
	ctx_ops_remote(skops, &remote);
	e->cookie = bpf_get_socket_cookie(skops);
	if (passive) {
		/* The server's view: the peer is the source. */
		e->side = SM_SIDE_SERVER;
		e->src_svc = s->dst_svc;
		e->src_subset = s->dst_subset;
		e->dst_svc = s->svc;
		e->subset = s->subset;
		e->src = remote;
		e->orig = local;
		e->dst = local;
	} else {
		e->src = local;
		e->dst = remote;
	}
	if (type == SM_EV_CLOSE) {
		struct sm_close_stats cs;

		/*
		 * Both ends report the connection the same way round:
		 * bytes_sent went from src (the client) to dst.
		 */
		ops_close_stats(skops, s, &cs);
		e->duration_ns = cs.duration_ns;
		e->bytes_sent = passive ? cs.received : cs.sent;
		e->bytes_received = passive ? cs.sent : cs.received;
		e->srtt_us = skops->srtt_us >> 3;
		e->retransmits = skops->total_retrans;
		if (!(s->flags & SM_SK_ESTABLISHED))
			e->err = 1;
	}
	event_submit(e);
}

/* Client, SYN-ACK received. */
static __always_inline void ops_active_established(struct bpf_sock_ops *skops)
{
	struct sm_sk *s = ops_sk(skops);

	if (!s || !(s->flags & SM_SK_MANAGED))
		return;
	__sync_fetch_and_or(&s->flags, SM_SK_ESTABLISHED);
	if (s->n_xlate)
		outlier_ok(&s->dst);
	if (opt_echo_seen(skops)) {
		__sync_fetch_and_or(&s->flags, SM_SK_TRACE_ACKED);
		__sync_fetch_and_and(&s->flags, ~SM_SK_TRACE_PENDING);
		ops_flags_del(skops, BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG);
	}
	ops_record(skops, s, SM_EV_CONNECT);
}

/*
 * What let an accepted connection in, for its records: a rule (its index
 * goes in the record), else, for a peer on another node, audit mode (the
 * way in counted it as an audit already): returns 1 then. A client on
 * this node that no rule names was let through by its own decision.
 */
static __always_inline int ops_peer_rule(__u32 slot, __u32 peer, struct sm_sk *s, __be16 port)
{
	struct sm_svc_key key = {.svc = s->svc, .slot = slot};
	struct sm_svc_val *sv;

	if (rule_find_in(slot, peer, s->svc, port, &s->rule)) {
		s->reason = SM_WHY_RULE;
		return 0;
	}
	s->rule = SM_RULE_NONE;
	sv = bpf_map_lookup_elem(&SM_MAP_SVC, &key);
	return sv && sv->mode == SM_MODE_AUDIT;
}

/* Server: the id is known (or known to be missing); record and count. */
static __always_inline void ops_server_settle(struct bpf_sock_ops *skops, struct sm_sk *s)
{
	struct sm_local_val *lv;
	struct sm_flow_key fk;
	struct sm_sockaddr r;
	__u32 slot;

	__sync_fetch_and_and(&s->flags, ~SM_SK_TRACE_WAIT);
	slot = active_slot();

	/* A client on this node named itself; else go by its address. */
	flow_key(skops, 1, &fk);
	lv = bpf_map_lookup_elem(&SM_MAP_LOCAL, &fk);
	if (lv) {
		s->dst_svc = lv->svc;
		s->dst_subset = lv->subset;
		__sync_fetch_and_or(&s->flags, SM_SK_LOCAL_PEER);
		ops_peer_rule(slot, s->dst_svc, s, fk.dport);
	} else {
		/*
		 * A client that comes from the very address it dials is a
		 * process of this namespace our hooks did not see: world, as
		 * ingress.h decided, not the service that owns the address.
		 */
		ctx_ops_remote(skops, &r);
		if (fk.saddr.a[0] == fk.daddr.a[0] && fk.saddr.a[1] == fk.daddr.a[1] &&
		    fk.saddr.a[2] == fk.daddr.a[2] && fk.saddr.a[3] == fk.daddr.a[3])
			s->dst_svc = SM_SVC_WORLD;
		else
			s->dst_svc = peer_svc(slot, &r.addr);
		s->dst_subset = SM_SUBSET_NONE;
		if (ops_peer_rule(slot, s->dst_svc, s, fk.dport)) {
			s->verdict = SM_V_AUDIT;
			s->reason = SM_WHY_NO_RULE;
		} else {
			pair_count(s->dst_svc, s->svc, SM_V_ALLOWED);
		}
	}
	ops_record(skops, s, SM_EV_CONNECT);
}

static __always_inline void ops_adopt(struct sm_sk *s, const __u8 *id)
{
	__builtin_memcpy(s->trace_id, id, SM_TRACE_ID_LEN);
	stat_inc(SM_S_TRACE_RECEIVED);
}

/* Server, the handshake is complete: a new accepted socket. */
static __always_inline void ops_passive_established(struct bpf_sock_ops *skops)
{
	struct sm_trace_key key;
	struct sm_tcpopt opt;
	struct sm_trace_val *tv;
	struct sm_sk *s = ops_sk(skops);

	/* Storage cloned from a listener of a service; none: not ours. */
	if (!s)
		return;
	s->flags = SM_SK_PASSIVE | SM_SK_ESTABLISHED | SM_SK_MANAGED | SM_SK_TRACE_WAIT;
	s->start_ns = bpf_ktime_get_ns();
	s->verdict = SM_V_ALLOWED;
	s->reason = SM_WHY_PEER;
	s->rule = SM_RULE_NONE;
	s->proto = IPPROTO_TCP;
	s->n_xlate = 0;
	s->trace_segs = 0;
	__builtin_memset(s->trace_id, 0, SM_TRACE_ID_LEN);
	ops_flags_add(skops, BPF_SOCK_OPS_STATE_CB_FLAG);
	ops_flags_del(skops, BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG);

	/* The id rides on this segment (the ACK, or a Fast Open SYN)... */
	if (!opt_load(skops, &opt, 0)) {
		ops_adopt(s, opt.id);
		ops_server_settle(skops, s);
		return;
	}
	/* ...or came on the SYN and waits in the stash... */
	trace_key(skops, &key);
	tv = bpf_map_lookup_elem(&SM_MAP_TRACE, &key);
	if (tv) {
		ops_adopt(s, tv->id);
		bpf_map_delete_elem(&SM_MAP_TRACE, &key);
		ops_server_settle(skops, s);
		return;
	}
	/*
	 * ...or, on a Fast Open connection (made from the SYN, which had no
	 * room), is still to come on the client's next segments. Any other
	 * connection was completed by one of the segments a client that saw
	 * no echo sends it on: this client has no sockmesh. The id is made
	 * now, so the application reads the same id as the flow log from its
	 * first request on.
	 */
	if (!ops_is_syn(skops)) {
		trace_id_new(s->trace_id);
		stat_inc(SM_S_TRACE_MISSING);
		ops_server_settle(skops, s);
		return;
	}
	ops_flags_add(skops, BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG);
}

/*
 * Server of a Fast Open connection, a segment arrived while the id is not
 * known. The client sends it on its first segments after the SYN; when
 * those came without it, the client has no sockmesh: the id is made here.
 */
static __always_inline void ops_parse(struct bpf_sock_ops *skops)
{
	struct sm_tcpopt opt;
	struct sm_sk *s = ops_sk(skops);

	if (!s || !(s->flags & SM_SK_TRACE_WAIT)) {
		ops_flags_del(skops, BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG);
		return;
	}
	if (!opt_load(skops, &opt, 0)) {
		ops_adopt(s, opt.id);
	} else if (++s->trace_segs > SM_TRACE_RESEND) {
		trace_id_new(s->trace_id);
		stat_inc(SM_S_TRACE_MISSING);
	} else {
		return;
	}
	ops_flags_del(skops, BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG);
	ops_server_settle(skops, s);
}

static __always_inline void ops_count_close(const struct bpf_sock_ops *skops, const struct sm_sk *s,
					    __u32 src, __u32 dst)
{
	struct sm_close_stats cs;
	struct sm_pair_val *pv;
	__u32 b;

	pv = pair_get(src, dst);
	if (!pv)
		return;
	ops_close_stats(skops, s, &cs);
	b = dur_bucket(cs.duration_ns);
	__sync_fetch_and_add(&pv->closed, 1);
	__sync_fetch_and_add(&pv->duration_sum_ns, cs.duration_ns);
	if (b < SM_DUR_BUCKETS)
		__sync_fetch_and_add(&pv->duration_bucket[b], 1);
	__sync_fetch_and_add(&pv->retransmits, skops->total_retrans);

	/* Pair counters read client -> server: "sent" is what src sent. */
	if (s->flags & SM_SK_PASSIVE) {
		__sync_fetch_and_add(&pv->bytes_sent, cs.received);
		__sync_fetch_and_add(&pv->bytes_received, cs.sent);
	} else {
		__sync_fetch_and_add(&pv->bytes_sent, cs.sent);
		__sync_fetch_and_add(&pv->bytes_received, cs.received);
	}
}

/*
 * A client's connect through a VIP never completed: the backend refused
 * it, or the client gave up first. That counts against the backend.
 */
static __always_inline void ops_connect_failed(struct bpf_sock_ops *skops, const struct sm_sk *s)
{
	struct sm_svc_key key = {.svc = s->dst_svc, .slot = active_slot()};
	struct sm_svc_val *sv;
	struct sm_event *e;

	if (!s->n_xlate || (s->flags & SM_SK_PASSIVE))
		return;
	sv = bpf_map_lookup_elem(&SM_MAP_SVC, &key);
	if (!sv || !outlier_fail(&s->dst, s->dst_svc, sv))
		return;
	e = event_new(SM_EV_OUTLIER);
	if (!e)
		return;
	event_from_sk(e, s);
	e->cookie = bpf_get_socket_cookie(skops);
	e->reason = SM_WHY_CONNECT_FAILED;
	e->duration_ns = (__u64)sv->outlier_eject_s * 1000000000ULL;
	event_submit(e);
}

/*
 * FIN_WAIT2 -> CLOSE is the peer's FIN arriving, or a closed socket whose
 * own FIN was just acknowledged handing the rest of the connection to a
 * time-wait socket before the peer's FIN came (close() returned; the FIN
 * arrives there later). Only the first counts a FIN in bytes_received. The
 * kernel marks a socket SOCK_DONE when the peer's FIN arrives, and only
 * then; the flag is read from the socket itself (CO-RE).
 */
struct sock_common___fin {
	unsigned long skc_flags;
} __attribute__((preserve_access_index));

/* Older kernels keep the flags in struct sock, newer ones in sock_common. */
struct sock___fin {
	struct sock_common___fin __sk_common;
	unsigned long sk_flags;
} __attribute__((preserve_access_index));

#define SM_SOCK_DONE 1 /* enum sock_flags */

static __always_inline int ops_fin_arrived(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	unsigned long flags = 0;
	struct tcp_sock *tp;

	if (!sk)
		return 0;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	if (bpf_core_field_exists(struct sock___fin, sk_flags))
		bpf_core_read(&flags, sizeof(flags), &((struct sock___fin *)tp)->sk_flags);
	else
		bpf_core_read(&flags, sizeof(flags),
			      &((struct sock___fin *)tp)->__sk_common.skc_flags);
	return !!(flags & (1UL << SM_SOCK_DONE));
}

/* The state machine moved: note FINs, and account for the close. */
static __always_inline void ops_state(struct bpf_sock_ops *skops)
{
	__u32 old = skops->args[0], new = skops->args[1];
	struct sm_sk *s = ops_sk(skops);
	__u32 src, dst;

	if (!s)
		return;

	/* The peer's FIN, and the acknowledgement of ours. */
	if (new == SM_TCP_CLOSE_WAIT || new == SM_TCP_CLOSING ||
	    (old == SM_TCP_FIN_WAIT2 && new == SM_TCP_CLOSE &&ops_fin_arrived(skops)))
		__sync_fetch_and_or(&s->flags, SM_SK_FIN_IN);
	if (new == SM_TCP_FIN_WAIT2 || (old == SM_TCP_CLOSING && new == SM_TCP_CLOSE) ||
	    (old == SM_TCP_FIN_WAIT2 && new == SM_TCP_CLOSE) ||
	    (old == SM_TCP_LAST_ACK && new == SM_TCP_CLOSE))
		__sync_fetch_and_or(&s->flags, SM_SK_FIN_ACKED);
	if (new != SM_TCP_CLOSE)
		return;
	if (__sync_fetch_and_or(&s->flags, SM_SK_CLOSED) & SM_SK_CLOSED)
		return;
	if (old == SM_TCP_SYN_SENT)
		ops_connect_failed(skops, s);

	/* A server still waiting for the id settles without it. */
	if (s->flags & SM_SK_TRACE_WAIT) {
		trace_id_new(s->trace_id);
		stat_inc(SM_S_TRACE_MISSING);
		ops_server_settle(skops, s);
	}

	if (s->flags & SM_SK_PASSIVE) {
		src = s->dst_svc;
		dst = s->svc;
	} else {
		struct sm_flow_key fk;

		src = s->svc;
		dst = s->dst_svc;
		flow_key(skops, 0, &fk);
		bpf_map_delete_elem(&SM_MAP_LOCAL, &fk);
	}
	if (__sync_fetch_and_and(&s->flags, ~SM_SK_QUOTA_HELD) & SM_SK_QUOTA_HELD)
		quota_release(src, dst);

	/* A connection between two local services is counted once. */
	if (!(s->flags & SM_SK_LOCAL_PEER))
		ops_count_close(skops, s, src, dst);
	ops_record(skops, s, SM_EV_CLOSE);
}

#endif /* SM_BPF_SOCKOPS_H */
