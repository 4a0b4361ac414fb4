/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * Connections older than the agent. Our hooks never saw them: they have no
 * socket storage, so no trace id, no flow records, and their segments never
 * get the option (the kernel calls the option callbacks only for sockets
 * that asked for them at connect or listen time). At start the agent runs
 * this iterator over the TCP sockets of every network namespace its cgroup
 * subtree uses (see agent/drain.c): each connection of a service found
 * without storage gets storage marked SM_SK_LATE and is counted untracked.
 * The mark makes the count once per connection: a restarted agent finds
 * them marked. getsockopt(SOL_SOCKMESH) on them still says ENOENT.
 *
 * Listeners are left to ingress.h, which adopts one at its first SYN (its
 * new connections are traced); a socket not yet connected is counted when
 * it connects (identity.h, sk_get).
 */
#ifndef SM_BPF_LATE_H
#define SM_BPF_LATE_H

#include <bpf/bpf_core_read.h>

#include "common.h"
#include "drain.h"
#include "identity.h"
#include "stats.h"

/*
 * The few kernel fields read here, relocated against the running kernel's
 * BTF (CO-RE; the ___late suffix keeps these apart from drain.h's own
 * declarations and is ignored when matching).
 */
struct kernfs_node___late {
	__u64 id;
} __attribute__((preserve_access_index));

struct cgroup___late {
	struct kernfs_node___late *kn;
	int level;
	struct cgroup___late *ancestors[];
} __attribute__((preserve_access_index));

struct sock_cgroup_data___late {
	struct cgroup___late *cgroup;
} __attribute__((preserve_access_index));

struct sock___late {
	struct {
		unsigned char skc_state;
	} __sk_common;
	struct sock_cgroup_data___late sk_cgrp_data;
} __attribute__((preserve_access_index));

/* The service of the cgroup cg (which made the socket), as identity_sock. */
static __always_inline int late_identity(struct cgroup___late *cg, struct sm_cgroup_val *out)
{
	struct sm_cgroup_key key = {.slot = active_slot()};
	struct cgroup___late *anc;
	struct sm_cgroup_val *v;
	int level, found = 0;
	__u32 lvl;

	level = BPF_CORE_READ(cg, level);
	for (lvl = 1; lvl < SM_CGROUP_MAX_DEPTH; lvl++) {
		if (lvl <= g_root_level)
			continue;
		if ((int)lvl > level)
			break;
		anc = NULL;
		bpf_core_read(&anc, sizeof(anc), &cg->ancestors[lvl]);
		if (!anc)
			break;
		key.cgid = BPF_CORE_READ(anc, kn, id);
		v = bpf_map_lookup_elem(&SM_MAP_CGROUP, &key);
		if (v) {
			*out = *v;
			found = 1;
		}
	}
	return found;
}

/* One socket of the walk: mark and count it if it is an unseen connection. */
static __always_inline void late_mark(struct sock_common *skc)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
	struct sock___late *sk = (struct sock___late *)tp;
	struct cgroup___late *cg;
	struct sm_cgroup_val id = {};
	unsigned char state;
	struct sm_sk *s;

	/* Request and time-wait sockets are no full sockets. */
	if (!tp || bpf_sk_storage_get(&SM_MAP_SK, tp, 0, 0))
		return;
	state = BPF_CORE_READ(sk, __sk_common.skc_state);
	if (state == SM_TCP_LISTEN || state == SM_TCP_CLOSE)
		return;
	cg = BPF_CORE_READ(sk, sk_cgrp_data.cgroup);
	if (!cg || !late_identity(cg, &id))
		return;

	s = bpf_sk_storage_get(&SM_MAP_SK, tp, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!s) {
		stat_inc(SM_S_NO_STORAGE);
		return;
	}
	s->cgid = BPF_CORE_READ(cg, kn, id);
	s->svc = id.svc;
	s->subset = id.subset;
	s->proto = IPPROTO_TCP;
	s->rule = SM_RULE_NONE;
	s->dst_subset = SM_SUBSET_NONE;
	__sync_fetch_and_or(&s->flags, SM_SK_LATE);
	stat_inc(SM_S_UNTRACKED);
}

#endif /* SM_BPF_LATE_H */
