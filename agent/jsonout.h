/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Names of the datapath's enums and small JSON helpers, agent and CLI. */
#ifndef SM_JSONOUT_H
#define SM_JSONOUT_H

#include <json-c/json.h>

#include "policy.h"

/* Label values: sockmesh_connections_total{verdict}, the flow log. */
const char *sm_verdict_name(unsigned int v);
const char *sm_reason_name(unsigned int r);
const char *sm_event_name(unsigned int type);
const char *sm_stat_name(unsigned int s);

/* {"file":..,"line":..,"column":..,"message":..} */
struct json_object *sm_json_diag(const struct sm_diags *d, const struct sm_diag *item);

#endif /* SM_JSONOUT_H */
