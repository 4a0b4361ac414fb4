// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * The agent's HTTP endpoints: /metrics, /healthz, /readyz and the JSON API
 * under /v1. Handlers run on the HTTP thread and take the agent lock only
 * to copy what they report.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <bpf/bpf.h>
#include <json-c/json.h>

#include "agent.h"
#include "http.h"
#include "jsonout.h"
#include "log.h"
#include "prom.h"

/* The main loop ticks every second; three missed ticks is a hang. */
#define SM_HEARTBEAT_MAX_S 5

static int h_metrics(const struct sm_http_req *req, struct sm_http_resp *resp, void *arg)
{
	(void)req;
	resp->content_type = SM_PROM_CONTENT_TYPE;
	return sm_metrics_render(arg, &resp->body, &resp->len);
}

static int h_healthz(const struct sm_http_req *req, struct sm_http_resp *resp, void *arg)
{
	struct sm_agent *a = arg;
	struct json_object *o = json_object_new_object();
	int alive = time(NULL) - a->heartbeat <= SM_HEARTBEAT_MAX_S, err;

	(void)req;
	json_object_object_add(o, "status", json_object_new_string(alive ? "ok" : "stalled"));
	err = sm_http_resp_json(resp, alive ? 200 : 503, o);
	json_object_put(o);
	return err;
}

/* Ready: a policy is in force and every program is attached. */
static int h_readyz(const struct sm_http_req *req, struct sm_http_resp *resp, void *arg)
{
	struct sm_agent *a = arg;
	struct json_object *o = json_object_new_object();
	struct json_object *missing = json_object_new_array();
	unsigned int i;
	bool ready;
	int err;

	(void)req;
	pthread_mutex_lock(&a->lock);
	ready = a->policy && a->all_attached;
	for (i = 0; i < a->dp.n_hooks; i++)
		if (!a->hook_ok[i])
			json_object_array_add(missing,
					      json_object_new_string(a->dp.hooks[i].label));
	pthread_mutex_unlock(&a->lock);
	json_object_object_add(o, "ready", json_object_new_boolean(ready));
	json_object_object_add(o, "hooks_not_attached", missing);
	err = sm_http_resp_json(resp, ready ? 200 : 503, o);
	json_object_put(o);
	return err;
}

static struct json_object *jstr(const char *s)
{
	return json_object_new_string(s);
}

static int h_status(const struct sm_http_req *req, struct sm_http_resp *resp, void *arg)
{
	struct sm_agent *a = arg;
	struct json_object *o = json_object_new_object();
	struct json_object *reloads = json_object_new_object();
	struct json_object *hooks = json_object_new_object();
	unsigned int i;
	int err;

	(void)req;
	pthread_mutex_lock(&a->lock);
	json_object_object_add(o, "node", a->policy ? jstr(a->policy->node) : NULL);
	json_object_object_add(o, "policy_file", jstr(a->opts.policy));
	json_object_object_add(o, "policy_generation",
			       json_object_new_int64((int64_t)sm_applier_generation(&a->applier)));
	json_object_object_add(o, "cgroup", jstr(a->cg_root));
	json_object_object_add(o, "bpffs", jstr(a->opts.bpffs));
	json_object_object_add(o, "adopted_pinned_state", json_object_new_boolean(a->dp.adopted));
	json_object_object_add(o, "started", json_object_new_int64(a->started));
	json_object_object_add(reloads, "success", json_object_new_int64(a->reloads_ok));
	json_object_object_add(reloads, "unchanged", json_object_new_int64(a->reloads_unchanged));
	json_object_object_add(reloads, "error", json_object_new_int64(a->reloads_error));
	json_object_object_add(o, "reloads", reloads);
	json_object_object_add(o, "last_reload", json_object_new_int64(a->last_reload));
	json_object_object_add(o, "last_error", a->last_error[0] ? jstr(a->last_error) : NULL);
	json_object_object_add(o, "missing_cgroups", json_object_new_int64(a->missing_cgroups));
	for (i = 0; i < a->dp.n_hooks; i++)
		json_object_object_add(hooks, a->dp.hooks[i].label,
				       json_object_new_boolean(a->hook_ok[i]));
	json_object_object_add(o, "hooks_attached", hooks);
	pthread_mutex_unlock(&a->lock);
	json_object_object_add(o, "flow_records",
			       json_object_new_int64((int64_t)sm_events_handled(a->events)));
	err = sm_http_resp_json(resp, 200, o);
	json_object_put(o);
	return err;
}

static struct json_object *endpoints_json(const struct sm_endpoint *eps, size_t n)
{
	struct json_object *arr = json_object_new_array();
	char buf[80];
	size_t i;

	for (i = 0; i < n; i++) {
		sm_sockaddr_str(&eps[i].sa, buf, sizeof(buf));
		json_object_array_add(arr, jstr(buf));
	}
	return arr;
}

static struct json_object *cgroups_json(const struct sm_cgroup_ref *cgs, size_t n)
{
	struct json_object *arr = json_object_new_array();
	size_t i;

	for (i = 0; i < n; i++)
		json_object_array_add(arr, jstr(cgs[i].path));
	return arr;
}

static const char *protocols_name(unsigned int p)
{
	return p == (SM_PROTO_TCP | SM_PROTO_UDP) ? "both" : p == SM_PROTO_UDP ? "udp" : "tcp";
}

static struct json_object *outlier_json(const struct sm_outlier *ol)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "failures", json_object_new_int64(ol->failures));
	json_object_object_add(o, "eject_seconds", json_object_new_int64(ol->eject_seconds));
	return o;
}

static struct json_object *service_json(const struct sm_service *s)
{
	struct json_object *o = json_object_new_object();
	struct json_object *subs = json_object_new_object();
	size_t i;

	json_object_object_add(o, "cgroups", cgroups_json(s->cgroups, s->n_cgroups));
	json_object_object_add(o, "endpoints", endpoints_json(s->endpoints, s->n_endpoints));
	json_object_object_add(o, "vip", endpoints_json(s->vips, s->n_vips));
	json_object_object_add(o, "protocol", jstr(protocols_name(s->protocols)));
	json_object_object_add(o, "mode", jstr(s->mode == SM_MODE_AUDIT ? "audit" : "enforce"));
	json_object_object_add(o, "affinity",
			       jstr(s->affinity == SM_AFFINITY_SOURCE ? "source" : "none"));
	json_object_object_add(o, "drain", jstr(s->drain == SM_DRAIN_KEEP ? "keep" : "close"));
	json_object_object_add(o, "outlier", outlier_json(&s->outlier));
	for (i = 0; i < s->n_subsets; i++) {
		struct json_object *sub = json_object_new_object();

		json_object_object_add(sub, "weight", json_object_new_int64(s->subsets[i].weight));
		json_object_object_add(
			sub, "cgroups",
			cgroups_json(s->subsets[i].cgroups, s->subsets[i].n_cgroups));
		json_object_object_add(
			sub, "endpoints",
			endpoints_json(s->subsets[i].endpoints, s->subsets[i].n_endpoints));
		json_object_object_add(subs, s->subsets[i].name, sub);
	}
	json_object_object_add(o, "subsets", subs);
	return o;
}

static struct json_object *names_json(const char (*names)[SM_NAME_LEN], size_t n)
{
	struct json_object *arr = json_object_new_array();
	size_t i;

	for (i = 0; i < n; i++)
		json_object_array_add(arr, jstr(names[i]));
	return arr;
}

static struct json_object *policy_json(const struct sm_policy *p, int services_only)
{
	struct json_object *o = json_object_new_object();
	struct json_object *svcs = json_object_new_object();
	struct json_object *rules, *quotas, *defs;
	size_t i, j;

	for (i = 0; i < p->n_services; i++)
		json_object_object_add(svcs, p->services[i].name, service_json(&p->services[i]));
	if (services_only) {
		json_object_put(o);
		return svcs;
	}
	defs = json_object_new_object();
	json_object_object_add(defs, "mode",
			       jstr(p->default_mode == SM_MODE_AUDIT ? "audit" : "enforce"));
	json_object_object_add(defs, "egress",
			       jstr(p->egress == SM_EGRESS_DENY ? "deny" : "allow"));
	json_object_object_add(defs, "outlier", outlier_json(&p->default_outlier));
	rules = json_object_new_array();
	for (i = 0; i < p->n_rules; i++) {
		const struct sm_rule *r = &p->rules[i];
		struct json_object *ro = json_object_new_object();
		struct json_object *ports = json_object_new_array();

		json_object_object_add(ro, "index", json_object_new_int64(i));
		json_object_object_add(ro, "from", names_json(r->from, r->n_from));
		json_object_object_add(ro, "to", names_json(r->to, r->n_to));
		for (j = 0; j < r->n_ports; j++)
			json_object_array_add(ports, json_object_new_int(r->ports[j]));
		json_object_object_add(ro, "ports", ports);
		json_object_object_add(ro, "protocol", jstr(protocols_name(r->protocols)));
		json_object_array_add(rules, ro);
	}
	quotas = json_object_new_array();
	for (i = 0; i < p->n_quotas; i++) {
		const struct sm_quota *q = &p->quotas[i];
		struct json_object *qo = json_object_new_object();

		json_object_object_add(qo, "from", jstr(q->from));
		json_object_object_add(qo, "to", jstr(q->to));
		json_object_object_add(qo, "connections_per_second",
				       q->rate ? json_object_new_int64(q->rate) : NULL);
		json_object_object_add(qo, "burst",
				       q->rate ? json_object_new_int64(q->burst) : NULL);
		json_object_object_add(qo, "max_concurrent",
				       q->max_concurrent ? json_object_new_int64(q->max_concurrent)
							 : NULL);
		json_object_array_add(quotas, qo);
	}
	json_object_object_add(o, "apiVersion", jstr(SM_POLICY_API_VERSION));
	json_object_object_add(o, "node", jstr(p->node));
	json_object_object_add(o, "defaults", defs);
	json_object_object_add(o, "services", svcs);
	json_object_object_add(o, "rules", rules);
	json_object_object_add(o, "quotas", quotas);
	return o;
}

static int policy_reply(struct sm_agent *a, struct sm_http_resp *resp, int services)
{
	struct json_object *o;
	int err;

	pthread_mutex_lock(&a->lock);
	o = a->policy ? policy_json(a->policy, services) : NULL;
	pthread_mutex_unlock(&a->lock);
	if (!o)
		return sm_http_resp_error(resp, 503, "no policy in force yet");
	err = sm_http_resp_json(resp, 200, o);
	json_object_put(o);
	return err;
}

static int h_services(const struct sm_http_req *req, struct sm_http_resp *resp, void *arg)
{
	(void)req;
	return policy_reply(arg, resp, 1);
}

static int h_policy(const struct sm_http_req *req, struct sm_http_resp *resp, void *arg)
{
	(void)req;
	return policy_reply(arg, resp, 0);
}

static int valid_trace_id(const char *s)
{
	return strlen(s) == 32 && strspn(s, "0123456789abcdefABCDEF") == 32;
}

static int one_of(const char *s, const char *const *set)
{
	for (; *set; set++)
		if (!strcmp(s, *set))
			return 1;
	return 0;
}

static int h_flows(const struct sm_http_req *req, struct sm_http_resp *resp, void *arg)
{
	static const char *const verdicts[] = {"allowed",    "denied", "audit",
					       "no_backend", "quota",  NULL};
	static const char *const events[] = {"connect", "deny", "audit", "close", "outlier", NULL};
	struct sm_agent *a = arg;
	struct sm_flow_query q = {
		.trace_id = sm_http_query(req, "trace_id"),
		.service = sm_http_query(req, "service"),
		.verdict = sm_http_query(req, "verdict"),
		.event = sm_http_query(req, "event"),
	};
	static const char *const params[] = {"trace_id", "service", "verdict",
					     "event",	 "limit",   NULL};
	const char *limit = sm_http_query(req, "limit");
	const char *unknown = sm_http_query_unknown(req, params);
	char *end;
	long v;

	if (unknown)
		return sm_http_resp_error(resp, 400,
					  "unknown parameter '%s' "
					  "(known: trace_id, service, verdict, "
					  "event, limit)",
					  unknown);
	if (q.trace_id && !valid_trace_id(q.trace_id))
		return sm_http_resp_error(resp, 400,
					  "trace_id: '%s' is not 32 hex "
					  "digits",
					  q.trace_id);
	if (q.verdict && !one_of(q.verdict, verdicts))
		return sm_http_resp_error(resp, 400,
					  "verdict: '%s' is not one of "
					  "allowed, denied, audit, no_backend, "
					  "quota",
					  q.verdict);
	if (q.event && !one_of(q.event, events))
		return sm_http_resp_error(resp, 400,
					  "event: '%s' is not one of "
					  "connect, deny, audit, close, outlier",
					  q.event);
	if (limit) {
		v = strtol(limit, &end, 10);
		if (!isdigit((unsigned char)limit[0]) || *end || v < 1 || v > 1000000)
			return sm_http_resp_error(resp, 400,
						  "limit: '%s' is not a "
						  "number from 1 to 1000000",
						  limit);
		q.limit = (size_t)v;
	}
	if (q.service && !q.service[0])
		q.service = NULL;
	resp->content_type = SM_HTTP_JSON;
	return sm_flowlog_query(a->flowlog, &q, &resp->body, &resp->len);
}

/* PUT /v1/policy: a new policy as the request body, all or nothing. */
static int h_put_policy(const struct sm_http_req *req, struct sm_http_resp *resp, void *arg)
{
	struct sm_agent *a = arg;
	struct json_object *o;
	char *errbuf;
	int err;

	if (!a->opts.allow_policy_put)
		return sm_http_resp_error(resp, 403,
					  "PUT /v1/policy is off; start "
					  "the agent with --allow-policy-put and "
					  "--token-file");
	errbuf = calloc(1, 8192);
	if (!errbuf)
		return -ENOMEM;
	err = sm_agent_reload(a, req->body, req->body_len, errbuf, 8192);
	o = json_object_new_object();
	json_object_object_add(o, "applied", json_object_new_boolean(!err));
	json_object_object_add(o, "policy_generation",
			       json_object_new_int64((int64_t)sm_applier_generation(&a->applier)));
	if (err)
		json_object_object_add(o, "error", jstr(errbuf));
	/* The body's fault (bad, or too big for the maps) or the node's. */
	err = sm_http_resp_json(resp, !err ? 200 : err == -EINVAL || err == -E2BIG ? 400 : 500, o);
	json_object_put(o);
	free(errbuf);
	return err;
}

static const struct sm_http_route routes[] = {
	{"GET", "/metrics", h_metrics, true},	   {"GET", "/healthz", h_healthz, false},
	{"GET", "/readyz", h_readyz, false},	   {"GET", "/v1/status", h_status, true},
	{"GET", "/v1/services", h_services, true}, {"GET", "/v1/policy", h_policy, true},
	{"PUT", "/v1/policy", h_put_policy, true}, {"GET", "/v1/flows", h_flows, true},
};

int sm_api_start(struct sm_agent *a)
{
	struct sm_http_opts o = {
		.listen = a->opts.listen,
		.token = a->token,
		.tls_cert = a->opts.tls_cert,
		.tls_key = a->opts.tls_key,
		/* PUT /v1/policy takes files as large as the parser does. */
		.max_body = 64 << 20,
	};
	int err;

	err = sm_http_start(&a->http, &o, routes, sizeof(routes) / sizeof(routes[0]), a);
	if (!err)
		pr_info("HTTP%s listening on %s (port %u)%s\n", a->opts.tls_cert ? "S" : "",
			a->opts.listen, sm_http_port(a->http),
			a->token ? ", bearer token required" : "");
	return err;
}

void sm_api_stop(struct sm_agent *a)
{
	sm_http_stop(a->http);
	a->http = NULL;
}
