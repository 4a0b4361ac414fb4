// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * Are our programs really in force on the managed cgroup? Someone may have
 * detached a link by hand, or removed the pins; the agent says so in
 * /readyz and sockmesh_hook_attached instead of trusting its own memory.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>

#include "agent.h"
#include "log.h"

/* Is prog_id among the programs that run for this hook on the cgroup? */
static int hook_effective(int cgroup_fd, int attach_type, __u32 prog_id)
{
	__u32 *ids, n, i;
	int err;

	err = sm_prog_ids(cgroup_fd, attach_type, BPF_F_QUERY_EFFECTIVE, &ids, &n);
	if (err)
		return err;
	for (i = 0; i < n && ids[i] != prog_id; i++)
		;
	free(ids);
	return i < n;
}

void sm_selfcheck(struct sm_agent *a)
{
	bool ok[SM_HOOKS_MAX] = {}, all = true;
	unsigned int i;
	int r;

	for (i = 0; i < a->dp.n_hooks; i++) {
		const struct sm_hook *h = &a->dp.hooks[i];

		r = hook_effective(a->dp.cgroup_fd, h->attach_type, h->prog_id);
		ok[i] = r == 1;
		all &= ok[i];
		if (!ok[i] && a->hook_ok[i])
			pr_warn("hook %s: program %s (id %u) is no longer "
				"attached to %s\n",
				h->label, h->prog, h->prog_id, a->cg_abs);
	}
	pthread_mutex_lock(&a->lock);
	memcpy(a->hook_ok, ok, sizeof(ok));
	a->all_attached = all && a->dp.n_hooks;
	pthread_mutex_unlock(&a->lock);
}
