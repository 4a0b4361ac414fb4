// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "mapiter.h"

static int is_percpu(__u32 type)
{
	return type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
	       type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
}

int sm_map_each(int fd, int (*fn)(const void *key, void *value, void *ctx), void *ctx)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	uint8_t *key, *next, *val;
	size_t vs;
	void *prev = NULL;
	int err = 0, gone = 0, r;

	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		return -errno;
	vs = info.value_size;
	if (is_percpu(info.type))
		vs = ((vs + 7) & ~(size_t)7) * libbpf_num_possible_cpus();
	key = malloc(info.key_size);
	next = malloc(info.key_size);
	val = malloc(vs ? vs : 1);
	if (!key || !next || !val) {
		err = -ENOMEM;
		goto out;
	}
	while (!bpf_map_get_next_key(fd, prev, next)) {
		/*
		 * Gone since we were handed its key: ask again from the same
		 * place, which now skips it. (Stepping from a deleted key
		 * would restart the walk of a hash map from its first key.)
		 */
		if (bpf_map_lookup_elem(fd, next, val)) {
			if (gone++ < 3)
				continue;
			memcpy(key, next, info.key_size);
			prev = key;
			continue;
		}
		gone = 0;
		r = fn(next, val, ctx);
		if (r == SM_WALK_STOP)
			break;
		/* After a delete the walk goes on from the previous key. */
		if (r == SM_WALK_DELETE && !bpf_map_delete_elem(fd, next))
			continue;
		memcpy(key, next, info.key_size);
		prev = key;
	}
out:
	free(key);
	free(next);
	free(val);
	return err;
}

static int count_one(const void *key, void *value, void *ctx)
{
	(void)key;
	(void)value;
	(*(long *)ctx)++;
	return SM_WALK_NEXT;
}

long sm_map_count(int fd)
{
	long n = 0;
	int err = sm_map_each(fd, count_one, &n);

	return err ? err : n;
}
