/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * The agent's state, shared by the main loop (reloads, self-checks), the
 * HTTP threads (metrics, API) and the ring buffer thread (names only).
 * `lock` guards the policy in force and the status fields; map reads need
 * no lock.
 */
#ifndef SM_AGENT_H
#define SM_AGENT_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "apply.h"
#include "events.h"
#include "flowlog.h"
#include "loader.h"
#include "names.h"
#include "policy.h"

#define SM_DEFAULT_LISTEN   "127.0.0.1:9477"
#define SM_DEFAULT_FLOW_LOG "/var/log/sockmesh/flows.jsonl"

struct sm_opts {
	const char *policy;
	const char *cgroup; /* as given, relative to the mount */
	const char *bpffs;
	const char *listen;
	const char *flow_log; /* "" : no file */
	size_t flow_log_max;
	unsigned int flow_log_keep;
	size_t flow_window;
	const char *token_file;
	const char *tls_cert;
	const char *tls_key;
	bool allow_policy_put;
	uint32_t deny_records; /* per second, pair and verdict; 0: all */
	uint32_t sizes[SM_SIZE_MAX];
	int verbose;
};

struct sm_http;
struct bpf_link;

struct sm_agent {
	pthread_mutex_t lock;
	pthread_mutex_t reload_lock; /* one reload at a time (file, HTTP) */
	struct sm_opts opts;
	char cg_mount[PATH_MAX];
	char cg_root[PATH_MAX]; /* managed cgroup, relative */
	char cg_abs[PATH_MAX];	/* and its file system path */
	struct sm_dp dp;
	struct sm_applier applier;
	struct sm_names names;
	struct sm_flowlog *flowlog;
	struct sm_events *events;
	struct sm_http *http;
	struct bpf_link *drain_link; /* the drain iterator, made on first use */
	char *token;		     /* bearer token, NULL: none */

	/* Under lock. */
	struct sm_policy *policy; /* in force */
	uint64_t policy_hash;	  /* FNV-1a of the text in force */
	unsigned int missing_cgroups;
	char first_missing[256];
	uint64_t reloads_ok;
	uint64_t reloads_error;
	uint64_t reloads_unchanged;
	char last_error[4096]; /* "" : the last reload worked */
	time_t last_reload;
	time_t started;
	bool hook_ok[SM_HOOKS_MAX];
	bool all_attached;
	time_t heartbeat; /* main loop alive */
};

/* Reload from the policy file, or from text given over HTTP (text != NULL). */
int sm_agent_reload(struct sm_agent *a, const char *text, size_t len, char *err, size_t errlen);

/*
 * Close client connections to endpoints that the step from old to new
 * removed from drain: close services (drain.c).
 */
struct sm_image;
int sm_drain(struct sm_agent *a, const struct sm_image *old, const struct sm_image *new);

/* Mark and count connections older than the agent (drain.c, at start). */
int sm_late_scan(struct sm_agent *a);

/* HTTP API (api.c). */
int sm_api_start(struct sm_agent *a);
void sm_api_stop(struct sm_agent *a);

/* Attachment self-check (selfcheck.c): updates hook_ok/all_attached. */
void sm_selfcheck(struct sm_agent *a);

/* Prometheus text of everything (metrics.c); malloc'd. */
int sm_metrics_render(struct sm_agent *a, char **text, size_t *len);

#endif /* SM_AGENT_H */
