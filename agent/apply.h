/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * Putting a compiled policy in force, atomically.
 *
 * Every policy map holds two slots. A new policy is written into the slot
 * the datapath is not reading (only the entries that differ from what that
 * slot holds, in batches), then sm_active is flipped to it in one map
 * update. A program reads the active slot once per run, so a connection
 * sees the old policy or the new one, never a mix. After the flip the
 * agent waits for an RCU grace period (membarrier), after which no program
 * can still be reading the old slot, and the next reload may rewrite it.
 */
#ifndef SM_APPLY_H
#define SM_APPLY_H

#include <stdbool.h>
#include <stdint.h>

#include "compile.h"
#include "loader.h"

struct sm_applier {
	int fds[SM_PM_MAX];
	int active_fd;
	int config_fd;
	int qstate_fd;
	uint32_t limits[SM_PM_MAX];	 /* entries one policy may use */
	struct sm_image *slot[SM_SLOTS]; /* what each slot holds */
	uint32_t active;
	uint64_t generation;
	/*
	 * Other threads (HTTP) read only these two, with atomic loads: the
	 * slots change under them while a reload runs.
	 */
	uint32_t entries[SM_PM_MAX]; /* of the policy in force */
	uint64_t generation_seen;
	bool stale; /* what slots hold is unknown: read the maps again */
};

/* Read what both slots hold now (a restarted agent adopts them). */
int sm_applier_init(struct sm_applier *a, struct sm_dp *dp, const uint32_t *sizes);
void sm_applier_free(struct sm_applier *a);

/*
 * Put img in force; takes it over on success. -E2BIG when it does not fit
 * a map (diags say which and by how much), other -errno on map errors; on
 * any error the policy in force is untouched.
 */
int sm_apply(struct sm_applier *a, struct sm_image *img, struct sm_diags *diags);

/*
 * Entries in force per policy map (sockmesh_map_entries) and the
 * generation in force; safe to call from any thread.
 */
uint32_t sm_applier_entries(const struct sm_applier *a, enum sm_pmap m);
uint64_t sm_applier_generation(const struct sm_applier *a);

#endif /* SM_APPLY_H */
