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

#define FEW_PROGS 64

/*
 * Is prog_id among the programs that run for this hook on the cgroup?
 * The effective list sums every level above, so it may be longer than
 * one cgroup's limit: on ENOSPC the kernel says how long, ask again.
 */
static int hook_effective(int cgroup_fd, int attach_type, __u32 prog_id)
{
	__u32 few[FEW_PROGS], *ids = few, cnt = FEW_PROGS, i;
	int err, tries;

	for (tries = 0; tries < 3; tries++) {
		LIBBPF_OPTS(bpf_prog_query_opts, q, .query_flags = BPF_F_QUERY_EFFECTIVE,
			    .prog_ids = ids, .prog_cnt = cnt);

		err = bpf_prog_query_opts(cgroup_fd, attach_type, &q) ? -errno : 0;
		if (err == -ENOSPC && q.prog_cnt > cnt) {
			if (ids != few)
				free(ids);
			cnt = q.prog_cnt + 8;
			ids = calloc(cnt, sizeof(*ids));
			if (!ids)
				return -ENOMEM;
			continue;
		}
		for (i = 0; !err && i < q.prog_cnt && ids[i] != prog_id; i++)
			;
		err = err ?: i < q.prog_cnt;
		break;
	}
	if (ids != few)
		free(ids);
	return err;
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
