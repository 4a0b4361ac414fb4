/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * Which service a socket belongs to. It is decided once, when the socket
 * is made, from the creating task's cgroup: the deepest service cgroup at
 * or above it wins, so cgroups made later below a service cgroup belong to
 * it, and a cgroup that merely shares a name prefix does not (ids, not
 * paths, are compared). The answer is kept in socket storage; passing the
 * socket to another process or moving the process changes nothing.
 */
#ifndef SM_BPF_IDENTITY_H
#define SM_BPF_IDENTITY_H

#include "common.h"
#include "ctx.h"
#include "stats.h"

/* cgroup level of the subtree the agent manages; set at load time. */
const volatile __u32 g_root_level = 0;

/*
 * The service of a cgroup: the deepest service cgroup among its ancestors
 * (itself included). The cgroup is the current task's when sk is NULL,
 * else the socket's own (the one that made it), for hooks that may ask the
 * socket (cgroup_skb); sk is a constant at every call, so each program
 * keeps only the helper its hook may call. 0 when it has no service.
 */
static __always_inline int identity_walk(__u32 slot, struct bpf_sock *sk, struct sm_cgroup_val *out)
{
	struct sm_cgroup_key key = {.slot = slot};
	struct sm_cgroup_val *v;
	int found = 0;
	__u32 lvl;

	/* Service cgroups lie strictly inside the managed subtree. */
	for (lvl = 1; lvl < SM_CGROUP_MAX_DEPTH; lvl++) {
		if (lvl <= g_root_level)
			continue;
		key.cgid = sk ? bpf_sk_ancestor_cgroup_id(sk, lvl)
			      : bpf_get_current_ancestor_cgroup_id(lvl);
		if (!key.cgid)
			break;
		v = bpf_map_lookup_elem(&SM_MAP_CGROUP, &key);
		if (v) {
			*out = *v;
			found = 1;
		}
	}
	return found;
}

static __always_inline int identity_current(__u32 slot, struct sm_cgroup_val *out)
{
	return identity_walk(slot, NULL, out);
}

static __always_inline int identity_sock(__u32 slot, struct bpf_sock *sk, struct sm_cgroup_val *out)
{
	return identity_walk(slot, sk, out);
}

static __always_inline void sk_init(struct sm_sk *s, const struct sm_cgroup_val *id, __u8 proto)
{
	s->cgid = bpf_get_current_cgroup_id();
	s->svc = id->svc;
	s->subset = id->subset;
	s->proto = proto;
	s->rule = SM_RULE_NONE;
	s->dst_subset = SM_SUBSET_NONE;
	ctx_task(&s->pid, s->comm);
}

/*
 * Socket storage of a sock_addr hook's socket. Every socket made since the
 * agent started has it. One made world in a cgroup that is a service's by
 * now (the agent resolved the cgroup a moment after the socket was made)
 * takes that service, but only from a task still in that very cgroup and
 * before its first decision: a socket passed to another process, or whose
 * process moved, stays world. A socket made before the agent started has
 * no storage; it takes the service of the task that first uses it, which
 * is its creator unless the socket was passed on.
 * want_world: make storage for a socket in no service too.
 */
static __always_inline struct sm_sk *sk_get(struct bpf_sock *sk, __u32 slot, int want_world)
{
	struct sm_cgroup_val id = {.svc = SM_SVC_WORLD, .subset = SM_SUBSET_NONE};
	struct sm_sk *s;
	int managed;

	s = bpf_sk_storage_get(&SM_MAP_SK, sk, 0, 0);
	if (s && (s->svc != SM_SVC_WORLD || (s->flags & SM_SK_MANAGED) ||
		  s->cgid != bpf_get_current_cgroup_id()))
		return s;

	managed = identity_current(slot, &id);
	if (s) {
		if (managed) {
			s->svc = id.svc;
			s->subset = id.subset;
		}
		return s;
	}
	if (!managed && !want_world)
		return NULL;

	s = bpf_sk_storage_get(&SM_MAP_SK, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!s) {
		stat_inc(SM_S_NO_STORAGE);
		return NULL;
	}
	sk_init(s, &id, (__u8)sk->protocol);
	if (managed) {
		__sync_fetch_and_or(&s->flags, SM_SK_LATE);
		stat_inc(SM_S_UNTRACKED);
	}
	return s;
}

#endif /* SM_BPF_IDENTITY_H */
