// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * The policy parser: what a good file turns into, and for every class of
 * mistake, the exact place and words of the error. YAML inputs are written
 * one line per string so line numbers can be read off the source.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "policy.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

struct want {
	unsigned int line;
	unsigned int col;
	const char *words[4]; /* each must appear in the message */
};

static int sentinel;

static void expect_errors(const char *yaml, const struct want *w, size_t n)
{
	struct sm_policy *p = (struct sm_policy *)&sentinel;
	struct sm_diags d;
	size_t i, j;
	int err;

	sm_diags_init(&d, "t.yaml");
	err = sm_policy_parse(yaml, strlen(yaml), "t.yaml", &p, &d);
	if (err != -EINVAL || d.n != n)
		sm_diags_print(&d, stderr);
	assert_int_equal(err, -EINVAL);
	assert_ptr_equal(p, &sentinel); /* *out untouched */
	assert_int_equal(d.n, n);
	for (i = 0; i < n; i++) {
		if (d.items[i].loc.line != w[i].line || d.items[i].loc.col != w[i].col)
			fail_msg("error %zu at %u:%u, want %u:%u: %s", i, d.items[i].loc.line,
				 d.items[i].loc.col, w[i].line, w[i].col, d.items[i].msg);
		for (j = 0; j < ARRAY_SIZE(w[i].words) && w[i].words[j]; j++)
			if (!strstr(d.items[i].msg, w[i].words[j]))
				fail_msg("error %zu: \"%s\" lacks \"%s\"", i, d.items[i].msg,
					 w[i].words[j]);
	}
	sm_diags_free(&d);
}

#define check_errors(yaml, ...)                          \
	do {                                             \
		const struct want w_[] = {__VA_ARGS__};  \
		expect_errors(yaml, w_, ARRAY_SIZE(w_)); \
	} while (0)

/* The single message a file gives; the caller frees nothing. */
static void one_error(const char *yaml, char *msg, size_t len)
{
	struct sm_policy *p = NULL;
	struct sm_diags d;

	sm_diags_init(&d, "t.yaml");
	assert_int_equal(sm_policy_parse(yaml, strlen(yaml), NULL, &p, &d), -EINVAL);
	assert_null(p);
	assert_int_equal(d.n, 1);
	snprintf(msg, len, "%s", d.items[0].msg);
	sm_diags_free(&d);
}

static struct sm_policy *parse_ok(const char *yaml)
{
	struct sm_policy *p = NULL;
	struct sm_diags d;
	int err;

	sm_diags_init(&d, "t.yaml");
	err = sm_policy_parse(yaml, strlen(yaml), "t.yaml", &p, &d);
	if (err)
		sm_diags_print(&d, stderr);
	assert_int_equal(err, 0);
	assert_int_equal(d.n, 0);
	assert_non_null(p);
	sm_diags_free(&d);
	return p;
}

static const char *ep_str(const struct sm_endpoint *ep, char *buf)
{
	sm_sockaddr_str(&ep->sa, buf, 64);
	return buf;
}

static void assert_loc(struct sm_loc loc, unsigned int line, unsigned int col)
{
	assert_int_equal(loc.line, line);
	assert_int_equal(loc.col, col);
}

/* --- good files --- */

static void check_example_services(const struct sm_policy *p)
{
	const struct sm_service *fe, *rv, *ra;
	char buf[64];

	assert_int_equal(p->n_services, 3);
	fe = &p->services[0];
	rv = &p->services[1];
	ra = &p->services[2];
	assert_string_equal(fe->name, "frontend");
	assert_loc(fe->loc, 28, 3);
	assert_int_equal(fe->n_cgroups, 1);
	assert_string_equal(fe->cgroups[0].path, "/sockmesh-demo/frontend");
	assert_int_equal(fe->n_endpoints, 1);
	assert_string_equal(ep_str(&fe->endpoints[0], buf), "198.18.1.1:8080");
	assert_true(fe->endpoints[0].v4);
	assert_int_equal(fe->n_vips + fe->n_subsets, 0);
	assert_int_equal(fe->protocols, SM_PROTO_TCP);
	assert_int_equal(fe->mode, SM_MODE_ENFORCE);

	assert_string_equal(rv->name, "reviews");
	assert_int_equal(rv->n_cgroups + rv->n_endpoints, 0);
	assert_int_equal(rv->n_vips, 1);
	assert_string_equal(ep_str(&rv->vips[0], buf), "198.19.0.10:9080");
	assert_int_equal(rv->affinity, SM_AFFINITY_NONE);
	assert_int_equal(rv->drain, SM_DRAIN_CLOSE);
	assert_int_equal(rv->n_subsets, 2);
	assert_string_equal(rv->subsets[0].name, "v1");
	assert_loc(rv->subsets[0].loc, 40, 7);
	assert_int_equal(rv->subsets[0].weight, 90);
	assert_string_equal(rv->subsets[0].cgroups[0].path, "/sockmesh-demo/reviews-v1");
	assert_int_equal(rv->subsets[0].n_endpoints, 1);
	assert_string_equal(ep_str(&rv->subsets[0].endpoints[0], buf), "198.18.1.2:9080");
	assert_loc(rv->subsets[0].endpoints[0].loc, 43, 21);
	assert_string_equal(rv->subsets[1].name, "v2");
	assert_int_equal(rv->subsets[1].weight, 10);
	assert_string_equal(rv->subsets[1].cgroups[0].path, "/sockmesh-demo/reviews-v2");
	assert_string_equal(ep_str(&rv->subsets[1].endpoints[0], buf), "198.18.1.3:9080");

	assert_string_equal(ra->name, "ratings");
	assert_string_equal(ra->cgroups[0].path, "/sockmesh-demo/ratings");
	assert_string_equal(ep_str(&ra->endpoints[0], buf), "198.18.1.4:9090");
}

static void check_rule(const struct sm_rule *r, const char *from, const char *to, uint16_t port)
{
	assert_int_equal(r->n_from, 1);
	assert_string_equal(r->from[0], from);
	assert_int_equal(r->n_to, 1);
	assert_string_equal(r->to[0], to);
	assert_int_equal(r->n_ports, 1);
	assert_int_equal(r->ports[0], port);
	assert_int_equal(r->protocols, SM_PROTO_TCP | SM_PROTO_UDP);
}

static void test_example(void **state)
{
	const char *dir = getenv("SM_SRCDIR");
	struct sm_policy *p = NULL;
	char path[512], host[256] = "";
	struct sm_diags d;
	int err;

	(void)state;
	snprintf(path, sizeof(path), "%s/examples/policy.yaml", dir ? dir : ".");
	sm_diags_init(&d, NULL);
	err = sm_policy_load(path, &p, &d);
	if (err)
		sm_diags_print(&d, stderr);
	assert_int_equal(err, 0);
	assert_int_equal(d.n, 0);

	gethostname(host, sizeof(host) - 1);
	assert_string_equal(p->node, host);
	assert_int_equal(p->default_mode, SM_MODE_ENFORCE);
	assert_int_equal(p->egress, SM_EGRESS_ALLOW);
	assert_int_equal(p->default_outlier.failures, 5);
	assert_int_equal(p->default_outlier.eject_seconds, 30);
	check_example_services(p);

	assert_int_equal(p->n_rules, 3);
	check_rule(&p->rules[0], "frontend", "reviews", 9080);
	check_rule(&p->rules[1], "reviews", "ratings", 9090);
	check_rule(&p->rules[2], "world", "frontend", 8080);
	assert_loc(p->rules[0].loc, 59, 5);

	assert_int_equal(p->n_quotas, 1);
	assert_string_equal(p->quotas[0].from, "frontend");
	assert_string_equal(p->quotas[0].to, "reviews");
	assert_int_equal(p->quotas[0].rate, 20000);
	assert_int_equal(p->quotas[0].burst, 5000);
	assert_int_equal(p->quotas[0].max_concurrent, 1000);
	assert_loc(p->quotas[0].loc, 67, 5);

	assert_ptr_equal(sm_policy_service(p, "reviews"), &p->services[1]);
	assert_null(sm_policy_service(p, "review"));
	assert_null(sm_policy_service(p, "world"));
	sm_policy_free(p);
	sm_diags_free(&d);
}

static void test_defaults_applied(void **state)
{
	const char *yaml = "apiVersion: sockmesh/v1\n"
			   "services:\n"
			   "  a:\n"
			   "    cgroups: [/a]\n";
	struct sm_policy *p;
	char host[256] = "";

	(void)state;
	p = parse_ok(yaml);
	gethostname(host, sizeof(host) - 1);
	assert_string_equal(p->node, host);
	assert_int_equal(p->default_mode, SM_MODE_ENFORCE);
	assert_int_equal(p->egress, SM_EGRESS_ALLOW);
	assert_int_equal(p->services[0].mode, SM_MODE_ENFORCE);
	assert_int_equal(p->services[0].protocols, SM_PROTO_TCP);
	assert_int_equal(p->services[0].affinity, SM_AFFINITY_NONE);
	assert_int_equal(p->services[0].drain, SM_DRAIN_CLOSE);
	assert_int_equal(p->services[0].outlier.failures, 5);
	assert_int_equal(p->services[0].outlier.eject_seconds, 30);
	assert_int_equal(p->n_rules + p->n_quotas, 0);
	sm_policy_free(p);
}

/* defaults comes last in the file and still applies; fields merge. */
static void test_defaults_inherited(void **state)
{
	const char *yaml = "apiVersion: sockmesh/v1\n"
			   "node: node-a\n"
			   "services:\n"
			   "  plain:\n"
			   "    cgroups: [/p]\n"
			   "  tuned:\n"
			   "    cgroups: [/t]\n"
			   "    mode: enforce\n"
			   "    protocol: udp\n"
			   "    affinity: source\n"
			   "    drain: keep\n"
			   "    outlier: {eject_seconds: 7}\n"
			   "defaults:\n"
			   "  mode: audit\n"
			   "  egress: deny\n"
			   "  outlier: {failures: 3}\n";
	const struct sm_service *plain, *tuned;
	struct sm_policy *p;

	(void)state;
	p = parse_ok(yaml);
	plain = sm_policy_service(p, "plain");
	tuned = sm_policy_service(p, "tuned");
	assert_string_equal(p->node, "node-a");
	assert_int_equal(p->default_mode, SM_MODE_AUDIT);
	assert_int_equal(p->egress, SM_EGRESS_DENY);
	assert_int_equal(p->default_outlier.failures, 3);
	assert_int_equal(p->default_outlier.eject_seconds, 30);
	assert_int_equal(plain->mode, SM_MODE_AUDIT);
	assert_int_equal(plain->outlier.failures, 3);
	assert_int_equal(plain->outlier.eject_seconds, 30);
	assert_int_equal(tuned->mode, SM_MODE_ENFORCE);
	assert_int_equal(tuned->protocols, SM_PROTO_UDP);
	assert_int_equal(tuned->affinity, SM_AFFINITY_SOURCE);
	assert_int_equal(tuned->drain, SM_DRAIN_KEEP);
	assert_int_equal(tuned->outlier.failures, 3);
	assert_int_equal(tuned->outlier.eject_seconds, 7);
	sm_policy_free(p);
}

static void test_nulls_are_absent(void **state)
{
	const char *yaml = "apiVersion: sockmesh/v1\n"
			   "node: ~\n"
			   "defaults: ~\n"
			   "services:\n"
			   "  a:\n"
			   "    cgroups: [/a]\n"
			   "    mode: ~\n"
			   "    protocol: null\n"
			   "    outlier:\n"
			   "    subsets: NULL\n"
			   "rules: ~\n"
			   "quotas:\n";
	struct sm_policy *p;
	char host[256] = "";

	(void)state;
	p = parse_ok(yaml);
	gethostname(host, sizeof(host) - 1);
	assert_string_equal(p->node, host);
	assert_int_equal(p->services[0].mode, SM_MODE_ENFORCE);
	assert_int_equal(p->services[0].protocols, SM_PROTO_TCP);
	assert_int_equal(p->services[0].outlier.failures, 5);
	assert_int_equal(p->services[0].n_subsets, 0);
	assert_int_equal(p->n_rules + p->n_quotas, 0);
	sm_policy_free(p);
}

static void test_implicit_default_subset(void **state)
{
	const char *yaml = "apiVersion: sockmesh/v1\n"
			   "services:\n"
			   "  a:\n"
			   "    vip: [198.19.0.1:80]\n"
			   "    endpoints: [10.0.0.1:80, 10.0.0.2:80]\n"
			   "  b:\n"
			   "    vip: [\"[fd00::99]:80\"]\n"
			   "    endpoints: [10.0.1.1:80]\n"
			   "    subsets:\n"
			   "      blue: {weight: 3, endpoints: [10.0.1.2:80]}\n";
	const struct sm_service *a, *b;
	struct sm_policy *p;
	char buf[64];

	(void)state;
	p = parse_ok(yaml);
	a = sm_policy_service(p, "a");
	assert_int_equal(a->n_subsets, 1);
	assert_string_equal(a->subsets[0].name, "default");
	assert_int_equal(a->subsets[0].weight, 1);
	assert_int_equal(a->subsets[0].n_cgroups, 0);
	assert_int_equal(a->subsets[0].n_endpoints, 2);
	assert_string_equal(ep_str(&a->subsets[0].endpoints[1], buf), "10.0.0.2:80");
	assert_loc(a->subsets[0].loc, 3, 3);
	/* Moved, not copied: each endpoint is listed once. */
	assert_int_equal(a->n_endpoints, 0);

	/* With subsets of its own, plain endpoints stay the service's. */
	b = sm_policy_service(p, "b");
	assert_string_equal(ep_str(&b->vips[0], buf), "[fd00::99]:80");
	assert_false(b->vips[0].v4);
	assert_int_equal(b->n_endpoints, 1);
	assert_string_equal(ep_str(&b->endpoints[0], buf), "10.0.1.1:80");
	assert_int_equal(b->n_subsets, 1);
	assert_string_equal(b->subsets[0].name, "blue");
	assert_int_equal(b->subsets[0].n_endpoints, 1);
	assert_string_equal(ep_str(&b->subsets[0].endpoints[0], buf), "10.0.1.2:80");
	sm_policy_free(p);
}

static void test_vip_without_backends(void **state)
{
	const char *yaml = "apiVersion: sockmesh/v1\n"
			   "services:\n"
			   "  r:\n"
			   "    vip: [198.19.0.1:80]\n"
			   "    subsets:\n"
			   "      v1: {weight: 1}\n"
			   "      v2: {weight: 0, cgroups: [/r2]}\n"
			   "  s:\n"
			   "    vip: [198.19.0.2:80]\n";
	const struct sm_service *r, *s;
	struct sm_policy *p;

	(void)state;
	p = parse_ok(yaml);
	r = sm_policy_service(p, "r");
	assert_int_equal(r->n_subsets, 2);
	assert_int_equal(r->subsets[0].n_endpoints, 0);
	assert_int_equal(r->subsets[0].weight, 1);
	assert_int_equal(r->subsets[1].weight, 0);
	assert_string_equal(r->subsets[1].cgroups[0].path, "/r2");
	s = sm_policy_service(p, "s");
	assert_int_equal(s->n_vips, 1);
	assert_int_equal(s->n_subsets, 0);
	sm_policy_free(p);
}

static void test_rules_good(void **state)
{
	const char *yaml =
		"apiVersion: sockmesh/v1\n"
		"services:\n"
		"  reviews: {cgroups: [/r]}\n"
		"  ratings: {cgroups: [/q], protocol: both}\n"
		"rules:\n"
		"  - {from: world, to: [reviews, ratings], ports: [80, \"8000-8002\", 443]}\n"
		"  - {from: reviews, to: ratings, protocol: udp}\n"
		"  - {from: [reviews, ratings], to: ratings, ports: [1-65535], protocol: tcp}\n";
	static const uint16_t want[] = {80, 8000, 8001, 8002, 443};
	struct sm_policy *p;
	const struct sm_rule *r;
	size_t i;

	(void)state;
	p = parse_ok(yaml);
	assert_int_equal(p->n_rules, 3);
	r = &p->rules[0];
	assert_loc(r->loc, 6, 5);
	assert_int_equal(r->n_from, 1);
	assert_string_equal(r->from[0], "world");
	assert_int_equal(r->n_to, 2);
	assert_string_equal(r->to[0], "reviews");
	assert_string_equal(r->to[1], "ratings");
	assert_int_equal(r->n_ports, ARRAY_SIZE(want));
	for (i = 0; i < ARRAY_SIZE(want); i++)
		assert_int_equal(r->ports[i], want[i]);
	assert_int_equal(r->protocols, SM_PROTO_TCP | SM_PROTO_UDP);

	r = &p->rules[1];
	assert_int_equal(r->n_ports, 0);
	assert_int_equal(r->protocols, SM_PROTO_UDP);

	r = &p->rules[2];
	assert_int_equal(r->n_from, 2);
	assert_string_equal(r->from[1], "ratings");
	assert_int_equal(r->n_ports, 65535);
	assert_int_equal(r->ports[0], 1);
	assert_int_equal(r->ports[65534], 65535);
	assert_int_equal(r->protocols, SM_PROTO_TCP);
	sm_policy_free(p);
}

static void test_quotas_good(void **state)
{
	const char *yaml = "apiVersion: sockmesh/v1\n"
			   "services:\n"
			   "  a: {cgroups: [/a]}\n"
			   "  b: {cgroups: [/b]}\n"
			   "quotas:\n"
			   "  - {from: world, to: a, connections_per_second: 50}\n"
			   "  - {from: a, to: b, max_concurrent: 7}\n"
			   "  - {from: b, to: a, connections_per_second: 1000000000, burst: 1}\n";
	struct sm_policy *p;

	(void)state;
	p = parse_ok(yaml);
	assert_int_equal(p->n_quotas, 3);
	assert_string_equal(p->quotas[0].from, "world");
	assert_int_equal(p->quotas[0].rate, 50);
	assert_int_equal(p->quotas[0].burst, 50);
	assert_int_equal(p->quotas[0].max_concurrent, 0);
	assert_int_equal(p->quotas[1].rate, 0);
	assert_int_equal(p->quotas[1].burst, 0);
	assert_int_equal(p->quotas[1].max_concurrent, 7);
	assert_int_equal(p->quotas[2].rate, 1000000000);
	assert_int_equal(p->quotas[2].burst, 1);
	sm_policy_free(p);
}

/* --- addresses --- */

static void test_endpoint_parse(void **state)
{
	static const char *const bad[] = {
		"198.18.1.1",	     "198.18.1.1:0", ":80",	     "198.18.1.1:65536",
		"fd00::1:80",	     "[fd00::1]",    "[fd00::1]80",  "[zz::1]:80",
		"198.18.1:80",	     "1.2.3.4:+80",  "1.2.3.4:080",  "1.2.3.4:80x",
		"[fd00::1%eth0]:80", "localhost:80", "[1.2.3.4]:80", "",
	};
	struct sm_endpoint ep, ep4;
	char buf[64];
	size_t i;

	(void)state;
	assert_int_equal(sm_endpoint_parse("198.18.1.1:8080", &ep4), 0);
	assert_true(ep4.v4);
	assert_int_equal(ep4.sa.port, htons(8080));
	assert_int_equal(ep4.sa.addr.a[2], htonl(0xffff));
	assert_int_equal(ep4.sa.addr.a[3], htonl(0xc6120101));
	assert_string_equal(ep_str(&ep4, buf), "198.18.1.1:8080");

	assert_int_equal(sm_endpoint_parse("[fd00::10]:9080", &ep), 0);
	assert_false(ep.v4);
	assert_int_equal(ep.sa.addr.a[0], htonl(0xfd000000));
	assert_string_equal(ep_str(&ep, buf), "[fd00::10]:9080");

	/* IPv4-mapped IPv6 is the IPv4 address. */
	assert_int_equal(sm_endpoint_parse("[::ffff:198.18.1.1]:8080", &ep), 0);
	assert_true(ep.v4);
	assert_memory_equal(&ep.sa, &ep4.sa, sizeof(ep.sa));
	assert_string_equal(ep_str(&ep, buf), "198.18.1.1:8080");

	assert_int_equal(sm_endpoint_parse("[::1]:65535", &ep), 0);
	assert_string_equal(ep_str(&ep, buf), "[::1]:65535");

	for (i = 0; i < ARRAY_SIZE(bad); i++)
		if (sm_endpoint_parse(bad[i], &ep) != -EINVAL)
			fail_msg("'%s' was accepted", bad[i]);
}

static void test_endpoint_errors(void **state)
{
	const char *yaml = "apiVersion: sockmesh/v1\n"
			   "services:\n"
			   "  a:\n"
			   "    vip: [[fd00::1]:80]\n"
			   "    endpoints:\n"
			   "      - 10.0.0.1\n"
			   "      - fd00::1:80\n"
			   "      - \"[fd00::1]:0\"\n"
			   "      - 10.0.0.300:80\n"
			   "      - ~\n";

	(void)state;
	/* Unquoted, the IPv6 VIP is YAML flow syntax: a mapping. */
	check_errors(yaml,
		     {4,
		      11,
		      {"field 'vip' in service 'a'",
		       "expected an address with a port, got a mapping", "quotes"}},
		     {6, 9, {"field 'endpoints' in service 'a'", "'10.0.0.1'", "has no port"}},
		     {7, 9, {"'fd00::1:80'", "brackets"}},
		     {8, 9, {"'[fd00::1]:0'", "port (1-65535)"}},
		     {9, 9, {"'10.0.0.300:80'", "not a valid IPv4 address"}},
		     {10, 9, {"expected an address with a port, got null"}});
}

/* --- errors --- */

static void test_unknown_fields(void **state)
{
	const char *yaml = "apiVersion: sockmesh/v1\n"
			   "nodes: a\n"
			   "defaults:\n"
			   "  mode: enforce\n"
			   "  egres: deny\n"
			   "  outlier: {failure: 3}\n"
			   "services:\n"
			   "  reviews:\n"
			   "    cgroups: [/r]\n"
			   "    vips: [198.19.0.1:80]\n"
			   "    outlier:\n"
			   "      eject: 5\n"
			   "    subsets:\n"
			   "      v1:\n"
			   "        weigth: 5\n"
			   "        weight: 1\n"
			   "rules:\n"
			   "  - {from: reviews, to: reviews, port: [80]}\n"
			   "quotas:\n"
			   "  - {from: reviews, to: reviews, max_concurrent: 1, rate: 5}\n";

	(void)state;
	check_errors(
		yaml,
		{2,
		 1,
		 {"unknown field 'nodes' in policy",
		  "(allowed: apiVersion, node, defaults, services, rules, quotas)"}},
		{5, 3, {"unknown field 'egres' in defaults", "(allowed: mode, egress, outlier)"}},
		{6,
		 13,
		 {"unknown field 'failure' in outlier of defaults",
		  "(allowed: failures, eject_seconds)"}},
		{10,
		 5,
		 {"unknown field 'vips' in service 'reviews'",
		  "(allowed: cgroups, endpoints, vip, protocol, affinity, mode, drain, outlier, "
		  "subsets)"}},
		{12, 7, {"unknown field 'eject' in outlier of service 'reviews'"}},
		{15,
		 9,
		 {"unknown field 'weigth' in subset 'v1' of service 'reviews' (allowed: weight, "
		  "cgroups, endpoints)"}},
		{18, 34, {"unknown field 'port' in rule 0", "(allowed: from, to, ports, protocol)"}},
		{20,
		 53,
		 {"unknown field 'rate' in quota 0",
		  "(allowed: from, to, connections_per_second, burst, max_concurrent)"}});
}

static void test_duplicate_keys(void **state)
{
	const char *yaml = "apiVersion: sockmesh/v1\n"
			   "services:\n"
			   "  a:\n"
			   "    cgroups: [/a]\n"
			   "    cgroups: [/b]\n"
			   "  b:\n"
			   "    endpoints: [10.0.0.1:80]\n"
			   "    subsets:\n"
			   "      v1: {weight: 1}\n"
			   "      v1: {weight: 2}\n"
			   "  a:\n"
			   "    cgroups: [/c]\n"
			   "apiVersion: sockmesh/v1\n"
			   "rules:\n"
			   "  - {from: a, to: b, from: b}\n";

	(void)state;
	check_errors(yaml, {5, 5, {"duplicate field 'cgroups' in service 'a'", "first at line 4"}},
		     {10, 7, {"duplicate subset 'v1' in service 'b'", "first at line 9"}},
		     {11, 3, {"duplicate service 'a'", "first at line 3"}},
		     {13, 1, {"duplicate field 'apiVersion' in policy", "first at line 1"}},
		     {15, 22, {"duplicate field 'from' in rule 0", "first at line 15"}});
}

static void test_cross_service_duplicates(void **state)
{
	const char *yaml = "apiVersion: sockmesh/v1\n"
			   "services:\n"
			   "  a:\n"
			   "    cgroups: [/x, /y, /x]\n"
			   "    endpoints: [10.0.0.1:80, \"[fd00::1]:53\"]\n"
			   "  b:\n"
			   "    cgroups: [/y]\n"
			   "    endpoints: [10.0.0.1:80]\n"
			   "    protocol: both\n"
			   "  c:\n"
			   "    protocol: udp\n"
			   "    endpoints: [\"[::ffff:10.0.0.1]:80\", \"[fd00::1]:53\"]\n"
			   "  d:\n"
			   "    vip: [10.0.0.1:80, 10.9.9.9:80]\n"
			   "    subsets:\n"
			   "      v1: {weight: 1, cgroups: [/x/z, /y], endpoints: [10.0.0.2:80]}\n"
			   "  e:\n"
			   "    vip: [10.9.9.9:80]\n"
			   "    endpoints: [\"[FD00:0::1]:53\", 10.0.0.5:80, 10.0.0.5:80]\n";

	(void)state;
	check_errors(
		yaml, {4, 23, {"duplicate cgroup '/x' in service 'a'", "first at line 4"}},
		{7, 15, {"cgroup '/y' in service 'b' is already a cgroup of service 'a' (line 4)"}},
		{8,
		 17,
		 {"endpoint '10.0.0.1:80' in service 'b' is already an endpoint of service 'a' "
		  "(line 5)"}},
		/* udp against tcp+udp; a's tcp [fd00::1]:53 does not clash */
		{12,
		 17,
		 {"endpoint '10.0.0.1:80' in service 'c' is already an endpoint of service 'b' "
		  "(line 8)"}},
		{14,
		 11,
		 {"VIP '10.0.0.1:80' in service 'd' is already an endpoint of service 'a' (line "
		  "5)"}},
		{16,
		 39,
		 {"cgroup '/y' in subset 'v1' of service 'd' is already a cgroup of service 'a'"}},
		{18,
		 11,
		 {"VIP '10.9.9.9:80' in service 'e' is already the VIP of service 'd' (line 14)"}},
		{19,
		 17,
		 {"endpoint '[fd00::1]:53' in service 'e' is already an endpoint of service 'a' "
		  "(line 5)"}},
		{19, 48, {"duplicate endpoint '10.0.0.5:80' in service 'e'", "first at line 19"}});
}

static void test_all_zero_weights(void **state)
{
	const char *zero = "apiVersion: sockmesh/v1\n"
			   "services:\n"
			   "  r:\n"
			   "    vip: [198.19.0.1:80]\n"
			   "    subsets:\n"
			   "      v1: {weight: 0, endpoints: [10.0.0.1:80]}\n"
			   "      v2: {weight: 0}\n";
	/* A wrong weight is one error, not also "all zero". */
	const char *wrong = "apiVersion: sockmesh/v1\n"
			    "services:\n"
			    "  r:\n"
			    "    subsets:\n"
			    "      v1: {weight: 0}\n"
			    "      v2: {weight: -1}\n";

	(void)state;
	check_errors(zero, {3, 3, {"every subset of service 'r' has weight 0"}});
	check_errors(wrong, {6,
			     20,
			     {"field 'weight' in subset 'v2' of service 'r'",
			      "expected a non-negative integer, got '-1'"}});
}

static void test_integers(void **state)
{
	const char *yaml = "apiVersion: sockmesh/v1\n"
			   "services:\n"
			   "  r:\n"
			   "    subsets:\n"
			   "      a: {weight: -1}\n"
			   "      b: {weight: 1.5}\n"
			   "      c: {weight: \"5\"}\n"
			   "      d: {weight: 1000001}\n"
			   "      e: {weight: 99999999999999999999999}\n"
			   "      f: {weight: [1]}\n"
			   "      g: {weight: 010}\n"
			   "      h: {weight: +5}\n"
			   "      i: {cgroups: [/i]}\n";

	(void)state;
	check_errors(yaml, {5, 19, {"non-negative integer, got '-1'"}},
		     {6, 19, {"non-negative integer, got '1.5'"}},
		     {7, 19, {"non-negative integer, got the quoted string '5'"}},
		     {8, 19, {"1000001 is out of range (0-1000000)"}},
		     {9, 19, {"99999999999999999999999 is out of range"}},
		     {10, 19, {"non-negative integer, got a list"}},
		     {11, 19, {"non-negative integer, got '010'"}},
		     {12, 19, {"non-negative integer, got '+5'"}},
		     {13, 7, {"subset 'i' of service 'r' has no weight"}},
		     {13, 7, {"service 'r' has 9 subsets; at most 8"}});
}

static void test_wrong_types(void **state)
{
	const char *yaml = "apiVersion: sockmesh/v1\n"
			   "node: [a]\n"
			   "defaults:\n"
			   "  mode: [enforce]\n"
			   "  egress: maybe\n"
			   "  outlier: 5\n"
			   "services:\n"
			   "  s:\n"
			   "    cgroups: /s\n"
			   "    endpoints: {a: 1}\n"
			   "    protocol: ~\n"
			   "    mode: null\n"
			   "    affinity:\n"
			   "    subsets: [v1]\n"
			   "  t: 5\n"
			   "rules: {from: s}\n"
			   "quotas:\n"
			   "  - {from: [s], to: s, max_concurrent: 1}\n";

	(void)state;
	check_errors(
		yaml, {2, 7, {"field 'node' in policy", "expected a node name, got a list"}},
		{4, 9, {"field 'mode' in defaults", "expected one of enforce, audit, got a list"}},
		{5,
		 11,
		 {"field 'egress' in defaults", "unknown value 'maybe' (allowed: allow, deny)"}},
		{6, 12, {"outlier of defaults: expected a mapping, got '5'"}},
		{9,
		 14,
		 {"field 'cgroups' in service 's'", "expected a list of cgroup paths, got '/s'"}},
		{10,
		 16,
		 {"field 'endpoints' in service 's'",
		  "expected a list of addresses with ports, got a mapping"}},
		{14,
		 14,
		 {"field 'subsets' in service 's'",
		  "expected a mapping of subset names to subsets, got a list"}},
		{15, 6, {"service 't': expected a mapping, got '5'"}},
		{16, 8, {"field 'rules' in policy", "expected a list of rules, got a mapping"}},
		{18, 12, {"field 'from' in quota 0", "expected a service name, got a list"}});
}

static void test_names(void **state)
{
	const char *yaml = "apiVersion: sockmesh/v1\n"
			   "services:\n"
			   "  Reviews: {cgroups: [/a]}\n"
			   "  re/views: {cgroups: [/b]}\n"
			   "  world: {cgroups: [/c]}\n"
			   "  aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: "
			   "{cgroups: [/d]}\n"
			   "  ok.name_1-2:\n"
			   "    vip: [198.19.0.1:80]\n"
			   "    subsets:\n"
			   "      V1: {weight: 1}\n"
			   "      -v2: {weight: 1}\n"
			   "rules:\n"
			   "  - {from: Reviews, to: ok.name_1-2}\n";

	(void)state;
	/* The rule names a badly named service: no second error for it. */
	check_errors(
		yaml,
		{3, 3, {"service name 'Reviews' must start with a lower-case letter or a digit"}},
		{4, 3, {"service name 're/views' may hold only a-z, 0-9, '-', '_' and '.'"}},
		{5, 3, {"service name 'world' is reserved"}},
		{6, 3, {"is longer than 63 characters"}}, {10, 7, {"subset name 'V1' must start"}},
		{11, 7, {"subset name '-v2' must start"}});
}

static void test_cgroup_paths(void **state)
{
	const char *yaml = "apiVersion: sockmesh/v1\n"
			   "services:\n"
			   "  a:\n"
			   "    cgroups:\n"
			   "      - relative\n"
			   "      - /\n"
			   "      - /a//b\n"
			   "      - /a/\n"
			   "      - /a/../b\n"
			   "      - /a/./b\n"
			   "      - /ok/..x\n";

	(void)state;
	check_errors(yaml, {5, 9, {"cgroup path 'relative' must start with '/'"}},
		     {6, 9, {"cgroup path '/' is the whole machine"}},
		     {7, 9, {"'/a//b' must not hold '//'"}},
		     {8, 9, {"'/a/' must not end with '/'"}},
		     {9, 9, {"'/a/../b' must not hold '.' or '..' components"}},
		     {10, 9, {"'/a/./b' must not hold '.' or '..' components"}});
}

static void test_service_needs_something(void **state)
{
	const char *yaml = "apiVersion: sockmesh/v1\n"
			   "services:\n"
			   "  empty: {}\n"
			   "  nothing:\n"
			   "  empty-lists: {cgroups: [], endpoints: [], subsets: {}}\n"
			   "  audit-only: {mode: audit}\n";

	(void)state;
	check_errors(yaml, {3, 3, {"service 'empty' has no cgroups, endpoints, vip or subsets"}},
		     {4, 3, {"service 'nothing' has no cgroups"}},
		     {5, 3, {"service 'empty-lists' has no cgroups"}},
		     {6, 3, {"service 'audit-only' has no cgroups"}});
}

static void test_rules_errors(void **state)
{
	const char *yaml =
		"apiVersion: sockmesh/v1\n"
		"services:\n"
		"  reviews: {cgroups: [/r]}\n"
		"  ratings: {cgroups: [/q], protocol: both}\n"
		"rules:\n"
		"  - {from: world, to: [reviews, ratings], ports: [80]}\n"
		"  - {from: [reviews], to: world}\n"
		"  - {from: revews, to: ratings}\n"
		"  - {from: nosuchthing, to: ratings, protocol: udp}\n"
		"  - {from: [reviews, reviews], to: ratings}\n"
		"  - {from: [], to: ratings}\n"
		"  - {to: ratings}\n"
		"  - {from: reviews, to: ratings, ports: [0, 65536, 9000-8000, 80-80, 70-90, x]}\n"
		"  - {from: reviews, to: ratings, protocol: sctp}\n"
		"  - {from: reviews, to: {ratings: 1}, ports: 80}\n"
		"  - ~\n"
		"  - {from: reviews, to: ratings, ports: []}\n"
		"  - {from: ratings, to: [ratings, reviews], protocol: udp}\n";

	(void)state;
	check_errors(
		yaml,
		{7,
		 27,
		 {"field 'to' in rule 1",
		  "world is not a destination; defaults.egress governs non-mesh destinations"}},
		{8,
		 12,
		 {"field 'from' in rule 2", "unknown service 'revews' (did you mean 'reviews'?)"}},
		{9, 12, {"unknown service 'nosuchthing'"}}, {10, 22, {"'reviews' is listed twice"}},
		{11, 12, {"field 'from' in rule 5", "the list is empty"}},
		{12, 5, {"rule 6 has no 'from'"}}, {13, 42, {"'0' is not a port or a port range"}},
		{13, 45, {"'65536' is not a port"}},
		{13, 52, {"port range '9000-8000' runs backwards"}},
		{13, 70, {"port 80 is listed twice"}}, {13, 77, {"'x' is not a port"}},
		{14,
		 44,
		 {"field 'protocol' in rule 8", "unknown value 'sctp' (allowed: tcp, udp, both)"}},
		{15,
		 25,
		 {"field 'to' in rule 9",
		  "expected a service name or a list of them, got a mapping"}},
		{15, 46, {"field 'ports' in rule 9", "expected a list of ports, got '80'"}},
		{16, 5, {"rule 10 has no 'from'"}}, {16, 5, {"rule 10 has no 'to'"}},
		{17, 41, {"field 'ports' in rule 11", "the list is empty"}},
		{18,
		 55,
		 {"field 'protocol' in rule 12", "service 'reviews' speaks tcp only: this rule "
						 "would allow nothing there"}});
}

static void test_no_hint_when_far(void **state)
{
	const char *yaml = "apiVersion: sockmesh/v1\n"
			   "services:\n"
			   "  reviews: {cgroups: [/r]}\n"
			   "rules:\n"
			   "  - {from: world, to: ratings}\n";
	char msg[256];

	(void)state;
	one_error(yaml, msg, sizeof(msg));
	assert_non_null(strstr(msg, "unknown service 'ratings'"));
	assert_null(strstr(msg, "did you mean"));
}

static void test_quotas_errors(void **state)
{
	const char *yaml =
		"apiVersion: sockmesh/v1\n"
		"services:\n"
		"  a: {cgroups: [/a]}\n"
		"  b: {cgroups: [/b]}\n"
		"quotas:\n"
		"  - {from: a, to: b}\n"
		"  - {from: a, to: b, burst: 5, max_concurrent: 3}\n"
		"  - {from: world, to: a, connections_per_second: 10, burst: 0}\n"
		"  - {from: a, to: world, max_concurrent: 1}\n"
		"  - {from: world, to: a, connections_per_second: 0, max_concurrent: 1}\n"
		"  - {from: b, to: a, connections_per_second: 1000000001}\n"
		"  - {from: c, to: a, max_concurrent: 1}\n";

	(void)state;
	check_errors(yaml,
		     {6, 5, {"quota 0 sets neither connections_per_second nor max_concurrent"}},
		     {7, 5, {"second quota for a -> b (the first is at line 6)"}},
		     {7, 29, {"field 'burst' in quota 1", "burst needs connections_per_second"}},
		     {8, 61, {"field 'burst' in quota 2", "0 is out of range (1-"}},
		     {9, 19, {"world is not a destination"}},
		     {10, 5, {"second quota for world -> a (the first is at line 8)"}},
		     {10, 50, {"0 is out of range (1-1000000000)"}},
		     {11, 46, {"1000000001 is out of range (1-1000000000)"}},
		     {12, 12, {"unknown service 'c' (did you mean 'a'?)"}});
}

/* Errors from every section, reported together and in file order. */
static void test_all_errors_at_once(void **state)
{
	const char *yaml = "apiVersion: sockmesh/v1\n"
			   "rules:\n"
			   "  - {from: a, to: nope}\n"
			   "quotas:\n"
			   "  - {from: a, to: a}\n"
			   "services:\n"
			   "  a: {cgroups: [/a], endpoints: [10.0.0.1:80]}\n"
			   "  b: {cgroups: [/a], mode: strict}\n"
			   "defaults:\n"
			   "  mode: loose\n";

	(void)state;
	check_errors(
		yaml, {3, 19, {"unknown service 'nope'"}}, {5, 5, {"quota 0 sets neither"}},
		{8, 17, {"cgroup '/a' in service 'b' is already a cgroup of service 'a' (line 7)"}},
		{8, 28, {"unknown value 'strict'"}}, {10, 9, {"unknown value 'loose'"}});
}

/* An unreadable services section does not make every name unknown. */
static void test_no_cascade(void **state)
{
	const char *yaml = "apiVersion: sockmesh/v1\n"
			   "services: [a, b]\n"
			   "rules:\n"
			   "  - {from: a, to: b}\n"
			   "quotas:\n"
			   "  - {from: a, to: b, max_concurrent: 1}\n";

	(void)state;
	check_errors(yaml, {2,
			    11,
			    {"field 'services' in policy",
			     "expected a mapping of service names to services, got a list"}});
}

static void test_api_version(void **state)
{
	(void)state;
	/* Another schema: nothing else in it is judged. */
	check_errors("apiVersion: sockmesh/v2\nservices: 5\nrules: 7\n",
		     {1, 13, {"unsupported version 'sockmesh/v2'", "sockmesh/v1"}});
	check_errors("services:\n  a: {cgroups: [/a]}\n", {1, 1, {"policy has no apiVersion"}});
	check_errors("- a\n- b\n", {1, 1, {"policy: expected a mapping, got a list"}});
}

static void test_empty_and_bad_yaml(void **state)
{
	(void)state;
	check_errors("", {0, 0, {"empty policy"}});
	check_errors("# nothing here\n\n", {0, 0, {"empty policy"}});
	check_errors("~\n", {0, 0, {"empty policy"}});
	check_errors("apiVersion: sockmesh/v1\n"
		     "services:\n"
		     "  a:\n"
		     "    cgroups: [/a]\n"
		     "   b: {}\n",
		     {5,
		      4,
		      {"invalid YAML: did not find expected key",
		       "while parsing a block mapping at line 3, column 3"}});
	check_errors("apiVersion: sockmesh/v1\n"
		     "node: \"a\n",
		     {3,
		      1,
		      {"invalid YAML: found unexpected end of stream",
		       "while scanning a quoted scalar at line 2, column 7"}});
	check_errors("apiVersion: sockmesh/v1\nnode: a\x01z\n",
		     {2, 8, {"invalid YAML: control characters are not allowed"}});
	check_errors("apiVersion: sockmesh/v1\n---\napiVersion: sockmesh/v1\n",
		     {2, 1, {"one YAML document"}});
	check_errors("apiVersion: sockmesh/v1\nservices:\n\ta: {}\n",
		     {3, 1, {"invalid YAML: a tab here; YAML indents with spaces only"}});
}

/* HEAD, then n levels of [], then TAIL, in a new string. */
static char *nested(const char *head, size_t n, const char *tail)
{
	size_t hl = strlen(head), tl = strlen(tail);
	char *y = malloc(hl + 2 * n + tl + 1);

	assert_non_null(y);
	memcpy(y, head, hl);
	memset(y + hl, '[', n);
	memset(y + hl + n, ']', n);
	memcpy(y + hl + 2 * n, tail, tl + 1);
	return y;
}

static void test_deep_nesting(void **state)
{
	char *y;

	(void)state;
	/* 100,000 levels: refused at the 65th, without waiting on libyaml. */
	y = nested("apiVersion: sockmesh/v1\nservices: ", 100000, "\n");
	check_errors(y, {2, 75, {"invalid YAML: nested deeper than 64 levels"}});
	free(y);
	/* 64 levels are YAML enough; the policy check has its say. */
	y = nested("apiVersion: sockmesh/v1\nservices: ", 64, "\n");
	check_errors(y, {2, 11, {"expected a mapping", "got a list"}});
	free(y);
	/* Brackets in comments and quoted scalars are no nesting. */
	y = nested(
		"apiVersion: sockmesh/v1\n# ", 100,
		"\nnode: \"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"\n");
	check_errors(y, {3, 7, {"node name"}});
	free(y);
}

static void test_load_and_print(void **state)
{
	struct sm_policy *p = NULL;
	struct sm_diags d;
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	(void)state;
	sm_diags_init(&d, NULL);
	assert_int_equal(sm_policy_load("/nonexistent/p.yaml", &p, &d), -ENOENT);
	assert_null(p);
	assert_int_equal(d.n, 1);
	assert_int_equal(d.items[0].loc.line, 0);

	sm_diags_add(&d, (struct sm_loc){3, 5}, "bad %s", "thing");
	f = open_memstream(&out, &len);
	assert_non_null(f);
	sm_diags_print(&d, f);
	fclose(f);
	assert_string_equal(
		out,
		"/nonexistent/p.yaml: error: cannot read the policy: No such file or directory\n"
		"/nonexistent/p.yaml:3:5: error: bad thing\n");
	free(out);
	sm_diags_free(&d);
	assert_null(d.items);
	assert_int_equal(d.n, 0);
}

static void test_hand_built_lookup(void **state)
{
	struct sm_service svcs[2] = {{.name = "a"}, {.name = "b"}};
	struct sm_policy p = {.services = svcs, .n_services = 2};

	(void)state;
	assert_ptr_equal(sm_policy_service(&p, "b"), &svcs[1]);
	assert_null(sm_policy_service(&p, "c"));
}

/* --- scale --- */

#define BIG_SERVICES 1000
#define BIG_RULES    100000

static char *big_policy(size_t *len)
{
	size_t cap = 16 << 20, n = 0;
	char *buf = malloc(cap);
	unsigned int i;
	char from[16];

	assert_non_null(buf);
	n += snprintf(buf + n, cap - n, "apiVersion: sockmesh/v1\nservices:\n");
	for (i = 0; i < BIG_SERVICES; i++)
		n += snprintf(buf + n, cap - n,
			      "  svc-%u: {cgroups: [/mesh/svc-%u], endpoints: [10.1.%u.%u:8080], "
			      "vip: [198.19.%u.%u:80]}\n",
			      i, i, i / 256, i % 256, i / 256, i % 256);
	n += snprintf(buf + n, cap - n, "rules:\n");
	for (i = 0; i < BIG_RULES; i++) {
		/* Every tenth rule is from world. */
		if (i % 10)
			snprintf(from, sizeof(from), "svc-%u", i % BIG_SERVICES);
		else
			snprintf(from, sizeof(from), "world");
		n += snprintf(buf + n, cap - n,
			      "  - {from: %s, to: [svc-%u], ports: [%u, \"%u-%u\"]}\n", from,
			      (i * 7 + 3) % BIG_SERVICES, 1 + i % 1000, 2000 + i % 100,
			      2002 + i % 100);
	}
	assert_true(n < cap);
	*len = n;
	return buf;
}

static void test_large_policy(void **state)
{
	const struct sm_rule *r;
	struct timespec t0, t1;
	struct sm_policy *p = NULL;
	struct sm_diags d;
	size_t len;
	char *buf;

	(void)state;
	buf = big_policy(&len);
	sm_diags_init(&d, "big.yaml");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(sm_policy_parse(buf, len, "big.yaml", &p, &d), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("    %zu bytes, %d services, %d rules: parsed in %.3f s\n", len, BIG_SERVICES,
	       BIG_RULES, (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);

	assert_int_equal(d.n, 0);
	assert_int_equal(p->n_services, BIG_SERVICES);
	assert_int_equal(p->n_rules, BIG_RULES);
	assert_string_equal(p->services[999].name, "svc-999");
	assert_int_equal(p->services[999].n_subsets, 1);
	assert_ptr_equal(sm_policy_service(p, "svc-512"), &p->services[512]);
	r = &p->rules[99999];
	assert_string_equal(r->from[0], "svc-999");
	assert_string_equal(r->to[0], "svc-996");
	assert_int_equal(r->n_ports, 4);
	assert_int_equal(r->ports[0], 1000);
	assert_int_equal(r->ports[3], 2101);
	assert_string_equal(p->rules[99990].from[0], "world");
	sm_policy_free(p);
	sm_diags_free(&d);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_example),
		cmocka_unit_test(test_defaults_applied),
		cmocka_unit_test(test_defaults_inherited),
		cmocka_unit_test(test_nulls_are_absent),
		cmocka_unit_test(test_implicit_default_subset),
		cmocka_unit_test(test_vip_without_backends),
		cmocka_unit_test(test_rules_good),
		cmocka_unit_test(test_quotas_good),
		cmocka_unit_test(test_endpoint_parse),
		cmocka_unit_test(test_endpoint_errors),
		cmocka_unit_test(test_unknown_fields),
		cmocka_unit_test(test_duplicate_keys),
		cmocka_unit_test(test_cross_service_duplicates),
		cmocka_unit_test(test_all_zero_weights),
		cmocka_unit_test(test_integers),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_cgroup_paths),
		cmocka_unit_test(test_service_needs_something),
		cmocka_unit_test(test_rules_errors),
		cmocka_unit_test(test_no_hint_when_far),
		cmocka_unit_test(test_quotas_errors),
		cmocka_unit_test(test_all_errors_at_once),
		cmocka_unit_test(test_no_cascade),
		cmocka_unit_test(test_api_version),
		cmocka_unit_test(test_empty_and_bad_yaml),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_load_and_print),
		cmocka_unit_test(test_hand_built_lookup),
		cmocka_unit_test(test_large_policy),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
