// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#include "jsonout.h"
#include "sockmesh/abi.h"

static const char *const verdict_names[] = {
	[SM_V_ALLOWED] = "allowed",	  [SM_V_DENIED] = "denied", [SM_V_AUDIT] = "audit",
	[SM_V_NO_BACKEND] = "no_backend", [SM_V_QUOTA] = "quota",
};

static const char *const reason_names[] = {
	[SM_WHY_RULE] = "rule",
	[SM_WHY_NO_RULE] = "no_rule",
	[SM_WHY_EGRESS] = "defaults.egress",
	[SM_WHY_EGRESS_ALLOW] = "egress_allowed",
	[SM_WHY_NO_ENDPOINTS] = "no_endpoints",
	[SM_WHY_QUOTA_RATE] = "quota_rate",
	[SM_WHY_QUOTA_CONCURRENT] = "quota_concurrent",
	[SM_WHY_PEER] = "accepted",
	[SM_WHY_CONNECT_FAILED] = "connect_failed",
};

static const char *const event_names[] = {
	[SM_EV_CONNECT] = "connect", [SM_EV_DENY] = "deny",	  [SM_EV_AUDIT] = "audit",
	[SM_EV_CLOSE] = "close",     [SM_EV_OUTLIER] = "outlier",
};

static const char *const stat_names[] = {
	[SM_S_TRACE_WRITTEN] = "trace_written",
	[SM_S_TRACE_RECEIVED] = "trace_received",
	[SM_S_TRACE_NO_SPACE] = "trace_no_space",
	[SM_S_TRACE_MISSING] = "trace_missing",
	[SM_S_EVENTS_LOST] = "events_lost",
	[SM_S_NO_STORAGE] = "no_storage",
	[SM_S_PAIR_FULL] = "pair_map_full",
	[SM_S_UNTRACKED] = "untracked_sockets",
	[SM_S_DRAINED] = "drained",
	[SM_S_EJECTIONS] = "outlier_ejections",
	[SM_S_DENIES_FOLDED] = "deny_records_folded",
};

/*
 * Sized by their initializers: a new last value without a name fails the
 * build here; a gap elsewhere reads as "unknown" below.
 */
#define N_OF(t) (sizeof(t) / sizeof((t)[0]))
_Static_assert(N_OF(verdict_names) == SM_V_MAX, "a verdict has no name");
_Static_assert(N_OF(reason_names) == SM_WHY_MAX, "a reason has no name");
_Static_assert(N_OF(event_names) == SM_EV_MAX, "an event has no name");
_Static_assert(N_OF(stat_names) == SM_S_MAX, "a counter has no name");

static const char *name_of(const char *const *names, size_t n, unsigned int v)
{
	return v < n && names[v] ? names[v] : "unknown";
}

const char *sm_verdict_name(unsigned int v)
{
	return name_of(verdict_names, N_OF(verdict_names), v);
}

const char *sm_reason_name(unsigned int r)
{
	return name_of(reason_names, N_OF(reason_names), r);
}

const char *sm_event_name(unsigned int type)
{
	return name_of(event_names, N_OF(event_names), type);
}

const char *sm_stat_name(unsigned int s)
{
	return name_of(stat_names, N_OF(stat_names), s);
}

struct json_object *sm_json_diag(const struct sm_diags *d, const struct sm_diag *item)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "file", json_object_new_string(d->file));
	json_object_object_add(o, "line",
			       item->loc.line ? json_object_new_int(item->loc.line) : NULL);
	json_object_object_add(o, "column",
			       item->loc.line ? json_object_new_int(item->loc.col) : NULL);
	json_object_object_add(o, "message", json_object_new_string(item->msg));
	return o;
}
