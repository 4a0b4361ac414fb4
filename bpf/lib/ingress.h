/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * The way in: a TCP connection that arrives at a service of this node from
 * another node never passed our connect hooks, so its SYN is checked here.
 * The peer is the service whose endpoint address it comes from, else world.
 * Clients on this node (in any network namespace) were checked at their
 * connect() already; their SYNs are recognised by the connection's
 * addresses in sm_local and pass.
 *
 * A denied SYN is dropped: the remote client sees its connect time out,
 * as with any firewall drop; it cannot be told an errno from here.
 * Only TCP is checked on the way in; IPv6 packets with extension headers
 * before TCP pass unchecked.
 */
#ifndef SM_BPF_INGRESS_H
#define SM_BPF_INGRESS_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>

#include "common.h"
#include "identity.h"
#include "policy.h"
#include "stats.h"

/* Every network namespace's loopback device has this index. */
#define SM_LOOPBACK_IFINDEX 1

/*
 * The connection a SYN opens: 0, or -ENOENT for any other packet. This
 * runs on the socket's receive path, after IP has reassembled fragments
 * and checked its header.
 */
static __always_inline int skb_syn(struct __sk_buff *skb, struct sm_flow_key *fk)
{
	struct tcphdr th;
	__u32 off;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) || ip.protocol != IPPROTO_TCP)
			return -ENOENT;
		addr_set_v4(&fk->saddr, ip.saddr);
		addr_set_v4(&fk->daddr, ip.daddr);
		off = ip.ihl * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)) || ip6.nexthdr != IPPROTO_TCP)
			return -ENOENT;
		__builtin_memcpy(&fk->saddr, &ip6.saddr, sizeof(fk->saddr));
		__builtin_memcpy(&fk->daddr, &ip6.daddr, sizeof(fk->daddr));
		off = sizeof(ip6);
	} else {
		return -ENOENT;
	}
	if (bpf_skb_load_bytes(skb, off, &th, sizeof(th)) || !th.syn || th.ack)
		return -ENOENT;
	fk->sport = th.source;
	fk->dport = th.dest;
	fk->pad = 0;
	return 0;
}

static __always_inline void ingress_record(const struct sm_sk *s, const struct sm_flow_key *fk,
					   __u32 peer, __u8 verdict)
{
	struct sm_event *e;
	__u32 folded = 0;

	/* A SYN flood from another node is folded like a connect flood. */
	if (verdict == SM_V_DENIED && !deny_record_ok(peer, s->svc, verdict, &folded))
		return;
	e = event_new(verdict == SM_V_AUDIT ? SM_EV_AUDIT : SM_EV_DENY);
	if (!e)
		return;
	e->folded = folded;
	__builtin_memcpy(e->comm, s->comm, sizeof(e->comm));
	e->cgid = s->cgid;
	e->pid = s->pid;
	e->proto = IPPROTO_TCP;
	e->side = SM_SIDE_SERVER;
	e->verdict = verdict;
	e->reason = SM_WHY_NO_RULE;
	e->src_svc = peer;
	e->dst_svc = s->svc;
	e->subset = s->subset;
	e->src.addr = fk->saddr;
	e->src.port = fk->sport;
	e->orig.addr = fk->daddr;
	e->orig.port = fk->dport;
	e->dst = e->orig;
	event_submit(e);
}

/*
 * A listener made before the agent started has no state: our socket
 * hooks never saw it. Its first SYN names its service from the socket's
 * own cgroup, and the state made here is what its accepted sockets
 * inherit, so the server side of their connections is traced too.
 */
static __always_inline struct sm_sk *listener_adopt(struct bpf_sock *sk, __u32 slot)
{
	struct sm_cgroup_val id;
	struct sm_sk *s;

	if (sk->state != SM_TCP_LISTEN || !identity_sock(slot, sk, &id))
		return NULL;
	s = bpf_sk_storage_get(&SM_MAP_SK, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!s) {
		stat_inc(SM_S_NO_STORAGE);
		return NULL;
	}
	s->cgid = bpf_sk_cgroup_id(sk);
	s->svc = id.svc;
	s->subset = id.subset;
	s->proto = IPPROTO_TCP;
	s->rule = SM_RULE_NONE;
	s->dst_subset = SM_SUBSET_NONE;
	__sync_fetch_and_or(&s->flags, SM_SK_LISTENER | SM_SK_LATE);
	stat_inc(SM_S_UNTRACKED);
	return s;
}

/* 0: let it in; -EPERM: drop it. */
static __always_inline int __ingress_check(struct __sk_buff *skb)
{
	struct sm_local_val *lv;
	struct sm_svc_key skey;
	struct sm_flow_key fk;
	struct bpf_sock *sk;
	struct sm_svc_val *sv;
	struct sm_sk *s;
	__u32 slot, peer, rule;

	sk = skb->sk;
	if (!sk || skb_syn(skb, &fk))
		return 0;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 0;
	slot = active_slot();
	s = bpf_sk_storage_get(&SM_MAP_SK, sk, 0, 0);
	if (!s)
		s = listener_adopt(sk, slot);
	if (!s || s->svc == SM_SVC_WORLD)
		return 0;

	/*
	 * Step 1: a client on this node was checked when it connected, if
	 * its decision was about this service. One that dialled what it took
	 * for no service (a port this service listens on but does not list
	 * among its endpoints) is checked here like any peer, by the service
	 * it is known to be.
	 */
	lv = bpf_map_lookup_elem(&SM_MAP_LOCAL, &fk);
	if (lv && lv->dst_svc == s->svc)
		return 0;

	/*
	 * Step 2: a rule from the peer's service on the port it reached
	 * (for a VIP dialled elsewhere, the endpoint's port). A SYN over
	 * loopback from no known client comes from a process of this network
	 * namespace that our hooks did not see (outside the managed cgroup):
	 * world, whatever address it uses.
	 */
	if (lv)
		peer = lv->svc;
	else if (skb->ingress_ifindex == SM_LOOPBACK_IFINDEX)
		peer = SM_SVC_WORLD;
	else
		peer = peer_svc(slot, &fk.saddr);
	if (rule_find_in(slot, peer, s->svc, fk.dport, &rule))
		return 0;

	/* Step 3: audit mode records it and lets it in. */
	skey.svc = s->svc;
	skey.slot = slot;
	sv = bpf_map_lookup_elem(&SM_MAP_SVC, &skey);
	if (sv && sv->mode == SM_MODE_AUDIT) {
		pair_count(peer, s->svc, SM_V_AUDIT);
		ingress_record(s, &fk, peer, SM_V_AUDIT);
		return 0;
	}
	pair_count(peer, s->svc, SM_V_DENIED);
	ingress_record(s, &fk, peer, SM_V_DENIED);
	return -EPERM;
}

#endif /* SM_BPF_INGRESS_H */
