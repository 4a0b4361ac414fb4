/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * The ring buffer's reader: a thread that turns datapath events into flow
 * records (names, addresses, wall-clock time) for the flow log.
 */
#ifndef SM_EVENTS_H
#define SM_EVENTS_H

#include <stdint.h>

#include "flowlog.h"
#include "names.h"
#include "sockmesh/abi.h"

struct sm_events;

struct sm_events_opts {
	int ringbuf_fd;
	struct sm_flowlog *flowlog;
	struct sm_names *names;
	const char *cg_mount;
};

int sm_events_start(struct sm_events **out, const struct sm_events_opts *o);
/* Drain what is queued, stop the thread. */
void sm_events_stop(struct sm_events *ev);

/* Records handled, and records the flow log file could not take. */
uint64_t sm_events_handled(const struct sm_events *ev);
uint64_t sm_events_write_errors(const struct sm_events *ev);

/* A datapath event as a flow record. */
void sm_event_to_flow(const struct sm_event *e, struct sm_names *names, const char *cg_mount,
		      struct sm_flow *f);

#endif /* SM_EVENTS_H */
