/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * Service ids and subset indices, stable across reloads and restarts.
 *
 * The datapath, the counters and socket storage speak of services by id.
 * An id, once given to a name, stays with it: a reload that removes and
 * re-adds a service, or a restarted agent, finds the same id, so counters
 * and live sockets keep meaning the same service. The table is kept in the
 * pinned sm_names map, which is also how the CLI learns the names.
 */
#ifndef SM_NAMES_H
#define SM_NAMES_H

#include <pthread.h>
#include <stdint.h>

#include "sockmesh/abi.h"

struct sm_name_entry {
	char name[SM_NAME_LEN]; /* "" : id free */
	char subset[SM_MAX_SUBSETS][SM_NAME_LEN];
};

/* A name given since the last sm_names_commit(), and what it replaced. */
struct sm_name_undo {
	uint32_t id;
	uint8_t subset; /* SM_SUBSET_NONE: the service name */
	char prev[SM_NAME_LEN];
};

struct sm_names {
	pthread_mutex_t lock;
	int map_fd;   /* pinned sm_names; -1: memory only */
	uint32_t cap; /* ids 1 .. cap-1 */
	struct sm_name_entry *e;
	struct sm_name_undo *undo;
	size_t n_undo, cap_undo;
};

/* Load what the map holds. 0 or -errno. */
int sm_names_init(struct sm_names *n, int map_fd, uint32_t cap);
void sm_names_free(struct sm_names *n);

/* The id of a service name, given a new one if it has none. */
int sm_names_service(struct sm_names *n, const char *name, uint32_t *id);

/*
 * Indices for a service's subsets: a subset keeps the index its name had;
 * new names take free indices, else those of names no longer listed.
 */
int sm_names_subsets(struct sm_names *n, uint32_t id, const char (*names)[SM_NAME_LEN],
		     unsigned int count, uint8_t *idx);

/*
 * A policy's names are given while it is compiled, before anyone knows
 * whether it will be applied. Commit keeps them; rollback takes back
 * every name given since the last commit, so a refused policy uses up
 * no ids.
 */
void sm_names_commit(struct sm_names *n);
int sm_names_rollback(struct sm_names *n);

/* Names for labels and logs: "world" for id 0, "" for unknown subsets. */
void sm_names_get(struct sm_names *n, uint32_t id, char *buf, size_t len);
void sm_names_get_subset(struct sm_names *n, uint32_t id, uint8_t idx, char *buf, size_t len);

#endif /* SM_NAMES_H */
