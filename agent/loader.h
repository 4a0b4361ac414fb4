/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * The datapath's life cycle: open and load the BPF object, reuse the maps
 * a previous agent pinned, and attach every program to the managed cgroup
 * with a pinned bpf_link. A link that is already pinned is switched to the
 * new program with a link update, never detached first, so enforcement
 * does not stop while the agent restarts.
 *
 * Order: sm_dp_load(), fill the policy maps, then sm_dp_attach(): new
 * programs never run against empty maps.
 *
 * Pinned maps of other sizes (another --map-size) are not reused: the
 * policy maps are made anew as a group and filled from the policy,
 * counters and caches start empty, service names and quota counts are
 * copied; sm_dp_attach() pins them over the old ones once the new programs
 * are in force. Socket storage, and any map that cannot be copied, is
 * refused with a message. See docs/operations.md.
 */
#ifndef SM_LOADER_H
#define SM_LOADER_H

#include <stdbool.h>
#include <stdint.h>

struct sockmesh;

/* Map sizes: per policy slot for slotted maps, total for the others. */
enum sm_map_size {
	SM_SIZE_CGROUP = 0,
	SM_SIZE_DEST,
	SM_SIZE_SVC,
	SM_SIZE_BACKEND,
	SM_SIZE_RULE,
	SM_SIZE_QUOTA,
	SM_SIZE_PAIR,
	SM_SIZE_CANARY,
	SM_SIZE_TRACE,
	SM_SIZE_LOCAL,
	SM_SIZE_NAMES,
	SM_SIZE_EVENTS, /* ring buffer bytes, a power of two */
	SM_SIZE_MAX,
};

struct sm_dp_opts {
	const char *bpffs;     /* pin directory */
	const char *cgroup;    /* absolute path of the managed cgroup */
	uint32_t root_level;   /* its level in the hierarchy */
	uint32_t deny_records; /* deny records per second and pair; 0: all */
	uint32_t sizes[SM_SIZE_MAX];
};

struct sm_hook {
	const char *prog;  /* program name, also the link's pin name */
	const char *label; /* hook label for metrics ("connect4") */
	int attach_type;   /* enum bpf_attach_type */
	uint32_t prog_id;
};

#define SM_HOOKS_MAX 16
#define SM_MAPS_MAX  32

/*
 * A pinned map that did not fit this agent's sizes, made anew: filled
 * after load (copied from the pinned one when copy), pinned over it by
 * sm_dp_attach() once the new programs use it.
 */
struct sm_renew {
	const char *name;
	bool resized; /* its own size or layout changed */
	bool copy;
};

struct sm_dp {
	struct sockmesh *skel;
	char bpffs[256];
	char cgroup[4096]; /* absolute path of the managed cgroup */
	int cgroup_fd;
	int lock_fd;	     /* the pin directory, locked while we run */
	bool adopted;	     /* pinned state was found and reused */
	bool renewed_policy; /* the policy maps were made anew */
	unsigned int n_hooks;
	struct sm_hook hooks[SM_HOOKS_MAX];
	unsigned int n_renew;
	struct sm_renew renew[SM_MAPS_MAX];
};

/* Default sizes, and "--map-size name=N" parsing. */
void sm_dp_default_sizes(uint32_t *sizes);
int sm_dp_parse_size(const char *arg, uint32_t *sizes);
const char *sm_dp_size_name(enum sm_map_size s);
/* Entries a policy may use in map s (per slot for slotted maps). */
uint32_t sm_dp_size_limit(const uint32_t *sizes, enum sm_map_size s);

/*
 * The ids of the programs on a cgroup for one attach type: attached to it
 * (flags 0) or all that run for it (BPF_F_QUERY_EFFECTIVE). *ids is
 * allocated (free it); 0 or -errno.
 */
int sm_prog_ids(int cgroup_fd, int attach_type, __u32 flags, __u32 **ids, __u32 *n);

int sm_dp_load(struct sm_dp *dp, const struct sm_dp_opts *opts);
int sm_dp_attach(struct sm_dp *dp);
/* Close our fds; pinned links keep the programs attached. */
void sm_dp_close(struct sm_dp *dp);

/* A map's fd by its name ("sm_rule"), or -ENOENT. */
int sm_dp_map_fd(struct sm_dp *dp, const char *name);

#endif /* SM_LOADER_H */
