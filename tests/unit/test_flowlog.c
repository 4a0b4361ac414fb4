// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * Unit tests for the flow log: the JSON of one record, the file with its
 * rotation, the in-memory window and its queries, and a rate measurement.
 * Every test that touches files gets its own directory under $TMPDIR.
 *
 * SM_FLOWLOG_BENCH=N and SM_FLOWLOG_STRESS=N scale the measurement and the
 * concurrency test down, e.g. to run under valgrind.
 */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "flowlog.h"
#include "log.h"

/* 2026-12-03T13:20:00.123456789Z */
#define TS_EXAMPLE 1796304000123456789ULL

static const char *const base_keys[] = {
	"ts",	  "node",	"event",    "side",	"trace_id", "src",    "dst",
	"subset", "src_subset", "src_addr", "orig_dst", "dst_addr", "proto",  "verdict",
	"reason", "rule",	"pid",	    "comm",	"cgroup",   "cookie",
};

static const char *const close_keys[] = {
	"duration_ns", "bytes_sent", "bytes_received", "srtt_us", "retransmits",
};

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Room for $TMPDIR, the file under it, and a suffix such as ".moved". */
#define NAME_LEN 512

struct tmp {
	char dir[NAME_LEN / 2];
	char path[NAME_LEN - 32]; /* dir/log/flows.jsonl: log/ does not exist yet */
};

/* --- helpers --- */

static unsigned long env_count(const char *name, unsigned long def)
{
	const char *v = getenv(name);

	return v && *v ? strtoul(v, NULL, 0) : def;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

static int tmp_setup(void **state)
{
	const char *base = getenv("TMPDIR");
	struct tmp *t;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -1;
	snprintf(t->dir, sizeof(t->dir), "%s/sm_flowlog.XXXXXX", base ? base : "/tmp");
	if (!mkdtemp(t->dir)) {
		free(t);
		return -1;
	}
	snprintf(t->path, sizeof(t->path), "%s/log/flows.jsonl", t->dir);
	*state = t;
	return 0;
}

static int tmp_teardown(void **state)
{
	struct tmp *t = *state;

	nftw(t->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(t);
	return 0;
}

/* A record whose every field follows from cookie and event. */
static void flow_fill(struct sm_flow *f, uint64_t cookie, const char *event)
{
	static const char *const verdicts[] = {"allowed", "denied", "audit"};

	memset(f, 0, sizeof(*f));
	f->ts_ns = TS_EXAMPLE + cookie;
	snprintf(f->event, sizeof(f->event), "%s", event);
	snprintf(f->side, sizeof(f->side), "%s", cookie % 2 ? "server" : "client");
	snprintf(f->trace_id, sizeof(f->trace_id), "%016llx%016llx", 0x4bf92f3577b34da6ULL,
		 (unsigned long long)cookie);
	snprintf(f->src, sizeof(f->src), "svc%u", (unsigned int)(cookie % 5));
	snprintf(f->dst, sizeof(f->dst), "svc%u", (unsigned int)((cookie + 1) % 5));
	snprintf(f->subset, sizeof(f->subset), "v%u", (unsigned int)(cookie % 2 + 1));
	snprintf(f->src_subset, sizeof(f->src_subset), "v1");
	snprintf(f->src_addr, sizeof(f->src_addr), "198.18.1.1:%u",
		 (unsigned int)(40000 + cookie % 20000));
	snprintf(f->orig_dst, sizeof(f->orig_dst), "198.19.0.10:9080");
	snprintf(f->dst_addr, sizeof(f->dst_addr), "198.18.1.2:9080");
	snprintf(f->proto, sizeof(f->proto), "tcp");
	snprintf(f->verdict, sizeof(f->verdict), "%s", verdicts[cookie % 3]);
	snprintf(f->reason, sizeof(f->reason), "rule");
	f->rule = cookie % 7;
	f->pid = 1000 + cookie % 1000;
	snprintf(f->comm, sizeof(f->comm), "c%llu", (unsigned long long)cookie);
	snprintf(f->cgroup, sizeof(f->cgroup), "/demo/frontend");
	f->cookie = cookie;
	f->duration_ns = 2500000 + cookie;
	f->bytes_sent = 512;
	f->bytes_received = 1 << 20;
	f->srtt_us = 120;
	f->retransmits = 2;
}

/* Parses strictly: ill-formed UTF-8 or trailing bytes fail. */
static struct json_object *parse(const char *s, size_t len)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *obj;

	if (!tok)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, s, (int)len);
	if (obj && json_tokener_get_parse_end(tok) != len) {
		json_object_put(obj);
		obj = NULL;
	}
	json_tokener_free(tok);
	return obj;
}

static struct json_object *render(const struct sm_flow *f, const char *node)
{
	char buf[SM_FLOW_JSON_MAX];
	struct json_object *obj;

	assert_int_equal(sm_flow_to_json(f, node, buf, sizeof(buf)), 0);
	obj = parse(buf, strlen(buf));
	assert_non_null(obj);
	return obj;
}

static struct json_object *member(struct json_object *obj, const char *key, enum json_type type)
{
	struct json_object *v = NULL;

	if (!json_object_object_get_ex(obj, key, &v))
		fail_msg("key '%s' missing", key);
	if (!json_object_is_type(v, type))
		fail_msg("key '%s' has type %s, want %s", key,
			 json_type_to_name(json_object_get_type(v)), json_type_to_name(type));
	return v;
}

static void expect_str(struct json_object *obj, const char *key, const char *want)
{
	assert_string_equal(json_object_get_string(member(obj, key, json_type_string)), want);
}

static void expect_int(struct json_object *obj, const char *key, uint64_t want)
{
	assert_int_equal(json_object_get_uint64(member(obj, key, json_type_int)), want);
}

static void expect_null(struct json_object *obj, const char *key)
{
	member(obj, key, json_type_null);
}

static void expect_absent(struct json_object *obj, const char *key)
{
	if (json_object_object_get_ex(obj, key, NULL))
		fail_msg("key '%s' present", key);
}

/* The keys of obj, in order, are base_keys and then the given extra ones. */
static void expect_keys(struct json_object *obj, const char *const *extra, size_t n_extra)
{
	size_t i = 0, want = ARRAY_SIZE(base_keys) + n_extra;

	json_object_object_foreach(obj, key, val)
	{
		(void)val;
		assert_true(i < want);
		if (i < ARRAY_SIZE(base_keys))
			assert_string_equal(key, base_keys[i]);
		else
			assert_string_equal(key, extra[i - ARRAY_SIZE(base_keys)]);
		i++;
	}
	assert_int_equal(i, want);
}

static uint64_t cookie_of(struct json_object *obj)
{
	return json_object_get_uint64(member(obj, "cookie", json_type_int));
}

static struct sm_flowlog *open_log(const char *path, size_t max_bytes, unsigned int keep,
				   size_t window)
{
	struct sm_flowlog_opts opts = {
		.path = path,
		.node = "node-a",
		.max_bytes = max_bytes,
		.keep = keep,
		.window = window,
	};
	struct sm_flowlog *fl = NULL;

	assert_int_equal(sm_flowlog_open(&fl, &opts), 0);
	assert_non_null(fl);
	return fl;
}

static void add_range(struct sm_flowlog *fl, uint64_t from, uint64_t to)
{
	struct sm_flow f;
	uint64_t c;

	for (c = from; c < to; c++) {
		flow_fill(&f, c, c % 4 == 3 ? "close" : "connect");
		assert_int_equal(sm_flowlog_add(fl, &f), 0);
	}
}

/*
 * Checks every line of a file is a whole JSON record and that the cookies
 * continue from *next (or start anywhere when *next is UINT64_MAX); leaves
 * the cookie after the last line in *next. Returns the number of lines.
 */
static size_t check_file(const char *path, uint64_t *next)
{
	struct json_object *obj;
	size_t n = 0, cap = 0;
	char *line = NULL;
	ssize_t len;
	FILE *fp;

	fp = fopen(path, "r");
	assert_non_null(fp);
	while ((len = getline(&line, &cap, fp)) > 0) {
		assert_int_equal(line[len - 1], '\n');
		obj = parse(line, len - 1);
		assert_non_null(obj);
		if (*next != UINT64_MAX)
			assert_int_equal(cookie_of(obj), *next);
		*next = cookie_of(obj) + 1;
		json_object_put(obj);
		n++;
	}
	free(line);
	fclose(fp);
	return n;
}

static off_t file_size(const char *path)
{
	struct stat st;

	if (stat(path, &st))
		return -1;
	return st.st_size;
}

/* Runs a query and returns the parsed array; checks *len matches. */
static struct json_object *query(struct sm_flowlog *fl, const struct sm_flow_query *q)
{
	struct json_object *arr;
	size_t len = 0;
	char *json = NULL;

	assert_int_equal(sm_flowlog_query(fl, q, &json, &len), 0);
	assert_non_null(json);
	assert_int_equal(len, strlen(json));
	arr = parse(json, len);
	free(json);
	assert_non_null(arr);
	assert_true(json_object_is_type(arr, json_type_array));
	return arr;
}

/* The cookies a query returns, in order, must be exactly want[]. */
static void expect_cookies(struct sm_flowlog *fl, const struct sm_flow_query *q,
			   const uint64_t *want, size_t n)
{
	struct json_object *arr = query(fl, q);
	size_t i;

	assert_int_equal(json_object_array_length(arr), n);
	for (i = 0; i < n; i++)
		assert_int_equal(cookie_of(json_object_array_get_idx(arr, i)), want[i]);
	json_object_put(arr);
}

/* --- one record --- */

static void test_json_connect(void **state)
{
	static const char want[] =
		"{\"ts\":\"2026-12-03T13:20:00.123456789Z\",\"node\":\"node-a\","
		"\"event\":\"connect\",\"side\":\"client\","
		"\"trace_id\":\"4bf92f3577b34da6000000000000002a\",\"src\":\"svc2\","
		"\"dst\":\"svc3\",\"subset\":\"v1\",\"src_subset\":\"v1\","
		"\"src_addr\":\"198.18.1.1:40042\",\"orig_dst\":\"198.19.0.10:9080\","
		"\"dst_addr\":\"198.18.1.2:9080\",\"proto\":\"tcp\",\"verdict\":\"allowed\","
		"\"reason\":\"rule\",\"rule\":0,\"pid\":1042,\"comm\":\"c42\","
		"\"cgroup\":\"/demo/frontend\",\"cookie\":42}";
	char buf[SM_FLOW_JSON_MAX];
	struct json_object *obj;
	struct sm_flow f;

	(void)state;
	flow_fill(&f, 42, "connect");
	f.ts_ns = TS_EXAMPLE;
	assert_int_equal(sm_flow_to_json(&f, "node-a", buf, sizeof(buf)), 0);
	assert_string_equal(buf, want);
	obj = render(&f, "node-a");

	expect_keys(obj, NULL, 0);
	expect_str(obj, "ts", "2026-12-03T13:20:00.123456789Z");
	expect_str(obj, "node", "node-a");
	expect_str(obj, "event", "connect");
	expect_str(obj, "side", "client");
	expect_str(obj, "trace_id", "4bf92f3577b34da6000000000000002a");
	expect_str(obj, "src", "svc2");
	expect_str(obj, "dst", "svc3");
	expect_str(obj, "subset", "v1");
	expect_str(obj, "src_subset", "v1");
	expect_str(obj, "src_addr", "198.18.1.1:40042");
	expect_str(obj, "orig_dst", "198.19.0.10:9080");
	expect_str(obj, "dst_addr", "198.18.1.2:9080");
	expect_str(obj, "proto", "tcp");
	expect_str(obj, "verdict", "allowed");
	expect_str(obj, "reason", "rule");
	expect_int(obj, "rule", 0);
	expect_int(obj, "pid", 1042);
	expect_str(obj, "comm", "c42");
	expect_str(obj, "cgroup", "/demo/frontend");
	expect_int(obj, "cookie", 42);
	expect_absent(obj, "duration_ns");
	expect_absent(obj, "error");
	json_object_put(obj);
}

static void test_json_close(void **state)
{
	struct json_object *obj;
	struct sm_flow f;

	(void)state;
	flow_fill(&f, 7, "close");
	f.cookie = 0xffffffffffffff00ULL;
	f.bytes_received = 1ULL << 40;
	obj = render(&f, "node-b");

	expect_keys(obj, close_keys, ARRAY_SIZE(close_keys));
	expect_str(obj, "event", "close");
	expect_str(obj, "node", "node-b");
	expect_str(obj, "side", "server");
	expect_int(obj, "cookie", 0xffffffffffffff00ULL);
	expect_int(obj, "duration_ns", 2500007);
	expect_int(obj, "bytes_sent", 512);
	expect_int(obj, "bytes_received", 1ULL << 40);
	expect_int(obj, "srtt_us", 120);
	expect_int(obj, "retransmits", 2);
	expect_absent(obj, "error");
	json_object_put(obj);

	/* a connection that never got established says so */
	f.err = 1;
	obj = render(&f, "node-b");
	expect_keys(obj,
		    (const char *const[]){"duration_ns", "bytes_sent", "bytes_received", "srtt_us",
					  "retransmits", "error"},
		    6);
	expect_str(obj, "error", "not_established");
	json_object_put(obj);

	/* ...but only on close; a deny record ends with "folded" */
	flow_fill(&f, 7, "deny");
	f.err = 1;
	f.folded = 41;
	obj = render(&f, "node-b");
	expect_keys(obj, (const char *const[]){"folded"}, 1);
	expect_int(obj, "folded", 41);
	json_object_put(obj);
}

static void test_json_nulls(void **state)
{
	struct json_object *obj;
	struct sm_flow f;

	(void)state;
	flow_fill(&f, 1, "deny");
	f.subset[0] = '\0';
	f.src_subset[0] = '\0';
	f.cgroup[0] = '\0';
	f.rule = -1;
	obj = render(&f, "n");
	expect_keys(obj, (const char *const[]){"folded"}, 1);
	expect_int(obj, "folded", 0);
	expect_null(obj, "subset");
	expect_null(obj, "src_subset");
	expect_null(obj, "cgroup");
	expect_null(obj, "rule");
	expect_str(obj, "src", "svc1");
	json_object_put(obj);
}

static void expect_ts(uint64_t ts_ns, const char *want)
{
	struct json_object *obj;
	struct sm_flow f;

	flow_fill(&f, 0, "connect");
	f.ts_ns = ts_ns;
	obj = render(&f, "n");
	expect_str(obj, "ts", want);
	json_object_put(obj);
}

static void test_json_ts(void **state)
{
	(void)state;
	expect_ts(0, "1970-01-01T00:00:00.000000000Z");
	expect_ts(5, "1970-01-01T00:00:00.000000005Z");
	expect_ts(1000, "1970-01-01T00:00:00.000001000Z");
	expect_ts(999999999, "1970-01-01T00:00:00.999999999Z");
	expect_ts(TS_EXAMPLE, "2026-12-03T13:20:00.123456789Z");
	expect_ts(1796304000000000010ULL, "2026-12-03T13:20:00.000000010Z");
	/* leap day, and the last nanosecond of a year */
	expect_ts(1709164800000000000ULL, "2024-02-29T00:00:00.000000000Z");
	expect_ts(1767225599999999999ULL, "2025-12-31T23:59:59.999999999Z");
}

static void test_json_escaping(void **state)
{
	static const char comm[] = "a\"b\\c\x01\n\t\x1f/\x7f";
	char buf[SM_FLOW_JSON_MAX];
	struct json_object *obj;
	struct sm_flow f;
	size_t i;

	(void)state;
	flow_fill(&f, 3, "connect");
	memcpy(f.comm, comm, sizeof(comm));
	snprintf(f.cgroup, sizeof(f.cgroup), "/demo/we\"ird/päth");
	assert_int_equal(sm_flow_to_json(&f, "node \"q\"", buf, sizeof(buf)), 0);

	/* one line: no raw control characters; slashes not escaped */
	for (i = 0; buf[i]; i++)
		assert_true((unsigned char)buf[i] >= 0x20);
	assert_non_null(strstr(buf, "\"comm\":\"a\\\"b\\\\c\\u0001\\n\\t\\u001f/\x7f\""));
	assert_non_null(strstr(buf, "\"cgroup\":\"/demo/we\\\"ird/päth\""));

	obj = parse(buf, strlen(buf));
	assert_non_null(obj);
	expect_str(obj, "comm", comm);
	expect_str(obj, "cgroup", "/demo/we\"ird/päth");
	expect_str(obj, "node", "node \"q\"");
	json_object_put(obj);
}

/* Ill-formed UTF-8 would make strict readers drop the line: U+FFFD instead. */
static void test_json_bad_utf8(void **state)
{
	struct json_object *obj;
	struct sm_flow f;

	(void)state;
	flow_fill(&f, 3, "connect");
	/* a stray continuation, an overlong '/', a surrogate, a cut-off sequence */
	snprintf(f.comm, sizeof(f.comm), "x\x80y\xc0\xaf\xed\xa0\x80\xe2\x82");
	/* a field filled to the last byte with no NUL */
	memset(f.src, 's', sizeof(f.src));
	obj = render(&f, "n\xff");
	expect_str(obj, "comm",
		   "x\xef\xbf\xbdy\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
		   "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	expect_str(obj, "node", "n\xef\xbf\xbd");
	assert_int_equal(strlen(json_object_get_string(member(obj, "src", json_type_string))),
			 sizeof(f.src));
	json_object_put(obj);
}

/* Every string field full of control characters still fits the bound. */
static void test_json_worst_case(void **state)
{
	struct json_object *obj;
	char node[256], *buf;
	struct sm_flow f;
	size_t len;

	(void)state;
	memset(&f, 0x01, sizeof(f));
	snprintf(f.event, sizeof(f.event), "close");
	f.ts_ns = UINT64_MAX;
	f.rule = INT64_MAX;
	f.err = 1;
	memset(node, 0x01, sizeof(node) - 1);
	node[sizeof(node) - 1] = '\0';

	buf = malloc(SM_FLOW_JSON_MAX);
	assert_non_null(buf);
	assert_int_equal(sm_flow_to_json(&f, node, buf, SM_FLOW_JSON_MAX), 0);
	len = strlen(buf);
	print_message("worst-case line: %zu bytes of %d\n", len, SM_FLOW_JSON_MAX);
	obj = parse(buf, len);
	assert_non_null(obj);
	expect_str(obj, "error", "not_established");
	json_object_put(obj);

	/* too small a buffer is an error, not a cut line */
	assert_int_equal(sm_flow_to_json(&f, node, buf, len), -ENOSPC);
	assert_int_equal(sm_flow_to_json(&f, node, buf, len + 1), 0);
	free(buf);
}

/* --- the file --- */

static void test_file_create(void **state)
{
	struct tmp *t = *state;
	struct sm_flowlog *fl;
	uint64_t next = 0;
	struct stat st;
	char dir[NAME_LEN];
	mode_t old;

	old = umask(022);
	fl = open_log(t->path, 1 << 20, 3, 16);
	umask(old);
	snprintf(dir, sizeof(dir), "%s/log", t->dir);
	assert_int_equal(file_size(t->path), 0);

	add_range(fl, 0, 10);
	assert_int_equal(check_file(t->path, &next), 10);
	assert_int_equal(next, 10);
	sm_flowlog_close(fl);

	assert_int_equal(stat(t->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0750);

	/* a second open appends */
	fl = open_log(t->path, 1 << 20, 3, 16);
	add_range(fl, 10, 15);
	sm_flowlog_close(fl);
	next = 0;
	assert_int_equal(check_file(t->path, &next), 15);
}

static void test_rotation(void **state)
{
	const size_t max = 4096, keep = 3, n = 200;
	struct tmp *t = *state;
	uint64_t next = UINT64_MAX;
	struct sm_flowlog *fl;
	char name[NAME_LEN];
	size_t lines = 0;
	off_t size;
	int i;

	fl = open_log(t->path, max, keep, 0);
	add_range(fl, 0, n);
	sm_flowlog_close(fl);

	snprintf(name, sizeof(name), "%s.%zu", t->path, keep + 1);
	assert_int_equal(file_size(name), -1);

	/* oldest first: path.3, path.2, path.1, path; no gaps between them */
	for (i = keep; i >= 0; i--) {
		if (i)
			snprintf(name, sizeof(name), "%s.%d", t->path, i);
		else
			snprintf(name, sizeof(name), "%s", t->path);
		size = file_size(name);
		assert_true(size > 0 && size <= (off_t)max);
		/* a rotated file was full: one more line would not have fit */
		if (i)
			assert_true(size > (off_t)max - 1024);
		lines += check_file(name, &next);
	}
	assert_int_equal(next, n);
	/* the oldest records are gone */
	assert_true(lines < n);
	print_message("rotation kept %zu of %zu records in %zu+1 files\n", lines, n, keep);
}

static void test_rotation_keep0(void **state)
{
	const size_t max = 2048, n = 100;
	struct tmp *t = *state;
	uint64_t next = UINT64_MAX;
	struct sm_flowlog *fl;
	char name[NAME_LEN];
	size_t lines;

	fl = open_log(t->path, max, 0, 0);
	add_range(fl, 0, n);
	sm_flowlog_close(fl);

	snprintf(name, sizeof(name), "%s.1", t->path);
	assert_int_equal(file_size(name), -1);
	assert_true(file_size(t->path) <= (off_t)max);
	lines = check_file(t->path, &next);
	assert_true(lines > 0 && lines < n);
	assert_int_equal(next, n);
}

/* An agent restarted on an old log rotates it at the same size. */
static void test_rotation_existing(void **state)
{
	struct tmp *t = *state;
	struct sm_flowlog *fl;
	uint64_t next = 0;
	char name[NAME_LEN];
	off_t size;

	fl = open_log(t->path, 1 << 20, 2, 0);
	add_range(fl, 0, 3);
	sm_flowlog_close(fl);
	size = file_size(t->path);

	fl = open_log(t->path, size + 1, 2, 0);
	add_range(fl, 3, 4);
	sm_flowlog_close(fl);

	snprintf(name, sizeof(name), "%s.1", t->path);
	assert_int_equal(check_file(name, &next), 3);
	assert_int_equal(check_file(t->path, &next), 1);
	assert_int_equal(next, 4);
}

/* An operator deleted the live file: the next rotation starts a new one. */
static void test_rotation_deleted(void **state)
{
	struct tmp *t = *state;
	struct sm_flowlog *fl;
	uint64_t next = UINT64_MAX;
	char name[NAME_LEN];

	fl = open_log(t->path, 4096, 2, 0);
	add_range(fl, 0, 3);
	assert_int_equal(unlink(t->path), 0);
	add_range(fl, 3, 40);
	sm_flowlog_close(fl);

	assert_true(check_file(t->path, &next) > 0);
	assert_int_equal(next, 40);
	snprintf(name, sizeof(name), "%s.1", t->path);
	assert_true(file_size(name) > 0);
}

/* logrotate moved the file away: reopen starts a new one. */
static void test_reopen(void **state)
{
	struct tmp *t = *state;
	struct sm_flowlog *fl;
	uint64_t next = 0;
	char moved[NAME_LEN];

	fl = open_log(t->path, 1 << 20, 2, 0);
	add_range(fl, 0, 5);
	snprintf(moved, sizeof(moved), "%s.moved", t->path);
	assert_int_equal(rename(t->path, moved), 0);
	add_range(fl, 5, 6);
	assert_int_equal(sm_flowlog_reopen(fl), 0);
	add_range(fl, 6, 8);
	sm_flowlog_close(fl);

	assert_int_equal(check_file(moved, &next), 6);
	assert_int_equal(check_file(t->path, &next), 2);
	assert_int_equal(next, 8);
}

static void test_set_node(void **state)
{
	struct tmp *t = *state;
	struct json_object *arr;
	struct sm_flowlog *fl;
	char line[SM_FLOW_JSON_MAX];
	FILE *fp;

	fl = open_log(t->path, 0, 0, 4);
	sm_flowlog_set_node(fl, "node-z");
	add_range(fl, 0, 1);
	arr = query(fl, NULL);
	expect_str(json_object_array_get_idx(arr, 0), "node", "node-z");
	json_object_put(arr);
	sm_flowlog_close(fl);

	fp = fopen(t->path, "r");
	assert_non_null(fp);
	assert_non_null(fgets(line, sizeof(line), fp));
	fclose(fp);
	assert_non_null(strstr(line, "\"node\":\"node-z\""));
}

/* A full disk: add fails with the errno, the window keeps working. */
static void test_write_failure(void **state)
{
	struct sm_flowlog *fl;
	struct json_object *arr;
	struct sm_flow f;

	(void)state;
	if (access("/dev/full", W_OK)) {
		skip();
		return;
	}
	fl = open_log("/dev/full", 1 << 20, 2, 8);
	flow_fill(&f, 1, "connect");
	assert_int_equal(sm_flowlog_add(fl, &f), -ENOSPC);
	flow_fill(&f, 2, "connect");
	assert_int_equal(sm_flowlog_add(fl, &f), -ENOSPC);
	arr = query(fl, NULL);
	assert_int_equal(json_object_array_length(arr), 2);
	json_object_put(arr);
	sm_flowlog_close(fl);
}

/*
 * A write cut short (here by RLIMIT_FSIZE, as a full disk would) leaves no
 * partial line behind. Runs in a child because the limit is per process.
 */
static int short_write_child(const char *path)
{
	struct rlimit rl = {.rlim_cur = 1500, .rlim_max = RLIM_INFINITY};
	struct sm_flowlog_opts opts = {.path = path, .node = "n", .window = 1};
	struct sm_flowlog *fl;
	struct sm_flow f;
	int i, err = 0;

	signal(SIGXFSZ, SIG_IGN);
	if (sm_flowlog_open(&fl, &opts) || setrlimit(RLIMIT_FSIZE, &rl))
		return 2;
	for (i = 0; i < 10 && !err; i++) {
		flow_fill(&f, i, "connect");
		err = sm_flowlog_add(fl, &f);
	}
	sm_flowlog_close(fl);
	/* lift the limit again: valgrind still writes its report after this */
	rl.rlim_cur = RLIM_INFINITY;
	setrlimit(RLIMIT_FSIZE, &rl);
	return err == -ENOSPC ? 0 : 3;
}

static void test_short_write(void **state)
{
	struct tmp *t = *state;
	uint64_t next = 0;
	int status;
	pid_t pid;
	off_t size;

	pid = fork();
	assert_true(pid >= 0);
	if (!pid)
		_exit(short_write_child(t->path));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	size = file_size(t->path);
	assert_true(size > 0 && size < 1500);
	assert_true(check_file(t->path, &next) > 0);
}

static void test_open_errors(void **state)
{
	struct sm_flowlog_opts opts = {.path = "/dev/null/x/flows.log", .window = 4};
	struct sm_flowlog *fl = (void *)1;

	(void)state;
	assert_int_equal(sm_flowlog_open(&fl, &opts), -ENOTDIR);
	assert_null(fl);
	assert_int_equal(sm_flowlog_open(&fl, NULL), -EINVAL);
}

/* --- the window --- */

static void test_memory_only(void **state)
{
	struct sm_flowlog *fl;
	const uint64_t want[] = {0, 1, 2};

	(void)state;
	fl = open_log(NULL, 100, 2, 8);
	add_range(fl, 0, 3);
	assert_int_equal(sm_flowlog_reopen(fl), 0);
	expect_cookies(fl, NULL, want, 3);
	sm_flowlog_close(fl);

	/* no window either: every add still succeeds, every answer is empty */
	fl = open_log(NULL, 0, 0, 0);
	add_range(fl, 0, 3);
	expect_cookies(fl, NULL, NULL, 0);
	sm_flowlog_close(fl);
}

static void test_window_wrap(void **state)
{
	const uint64_t want[] = {6, 7, 8, 9};
	struct sm_flow_query q = {};
	struct sm_flowlog *fl;

	(void)state;
	fl = open_log(NULL, 0, 0, 4);
	expect_cookies(fl, &q, NULL, 0);
	add_range(fl, 0, 2);
	expect_cookies(fl, &q, (const uint64_t[]){0, 1}, 2);
	add_range(fl, 2, 10);
	expect_cookies(fl, &q, want, 4);
	q.limit = 2;
	expect_cookies(fl, &q, want + 2, 2);
	q.limit = 100;
	expect_cookies(fl, &q, want, 4);
	add_range(fl, 10, 11);
	q.limit = 0;
	expect_cookies(fl, &q, (const uint64_t[]){7, 8, 9, 10}, 4);
	sm_flowlog_close(fl);
}

/*
 * Twenty records: src svc(c%5), dst svc((c+1)%5), verdict by c%3, event
 * close when c%4 == 3.
 */
static void test_query_filters(void **state)
{
	struct sm_flow_query q = {};
	struct sm_flowlog *fl;

	(void)state;
	fl = open_log(NULL, 0, 0, 64);
	add_range(fl, 0, 20);

	q.trace_id = "4BF92F3577B34DA6000000000000000C";
	expect_cookies(fl, &q, (const uint64_t[]){12}, 1);
	q.trace_id = "4bf92f3577b34da6000000000000000";
	expect_cookies(fl, &q, NULL, 0);

	q = (struct sm_flow_query){.service = "svc2"};
	expect_cookies(fl, &q, (const uint64_t[]){1, 2, 6, 7, 11, 12, 16, 17}, 8);
	q.limit = 3;
	expect_cookies(fl, &q, (const uint64_t[]){12, 16, 17}, 3);
	q = (struct sm_flow_query){.service = "svc"};
	expect_cookies(fl, &q, NULL, 0);

	q = (struct sm_flow_query){.verdict = "denied"};
	expect_cookies(fl, &q, (const uint64_t[]){1, 4, 7, 10, 13, 16, 19}, 7);

	q = (struct sm_flow_query){.event = "close"};
	expect_cookies(fl, &q, (const uint64_t[]){3, 7, 11, 15, 19}, 5);

	/* filters combine */
	q = (struct sm_flow_query){.event = "close", .verdict = "denied", .service = "svc2"};
	expect_cookies(fl, &q, (const uint64_t[]){7}, 1);
	q = (struct sm_flow_query){.event = "close", .verdict = "denied", .limit = 1};
	expect_cookies(fl, &q, (const uint64_t[]){19}, 1);

	/* an empty parameter (?verdict=) means any */
	q = (struct sm_flow_query){
		.trace_id = "", .service = "", .verdict = "", .event = "", .limit = 2};
	expect_cookies(fl, &q, (const uint64_t[]){18, 19}, 2);
	sm_flowlog_close(fl);
}

/* The window returns the same objects the file gets, close fields too. */
static void test_query_objects(void **state)
{
	char line[SM_FLOW_JSON_MAX];
	struct json_object *arr;
	struct sm_flowlog *fl;
	struct sm_flow f;

	(void)state;
	fl = open_log(NULL, 0, 0, 8);
	add_range(fl, 0, 4);
	arr = query(fl, NULL);
	assert_int_equal(json_object_array_length(arr), 4);
	flow_fill(&f, 3, "close");
	assert_int_equal(sm_flow_to_json(&f, "node-a", line, sizeof(line)), 0);
	assert_string_equal(json_object_to_json_string_ext(json_object_array_get_idx(arr, 3),
							   JSON_C_TO_STRING_PLAIN |
								   JSON_C_TO_STRING_NOSLASHESCAPE),
			    line);
	expect_keys(json_object_array_get_idx(arr, 3), close_keys, ARRAY_SIZE(close_keys));
	expect_keys(json_object_array_get_idx(arr, 2), NULL, 0);
	json_object_put(arr);
	sm_flowlog_close(fl);
}

/* --- concurrency --- */

struct stress {
	struct sm_flowlog *fl;
	unsigned long records;
	unsigned long queries;
	int done; /* the writer finished */
	int bad;  /* a reader saw something wrong */
	unsigned long seen;
	pthread_mutex_t lock;
};

/* Flags go through the lock rather than atomics so helgrind can follow. */
static void stress_set(struct stress *s, int *flag)
{
	pthread_mutex_lock(&s->lock);
	*flag = 1;
	pthread_mutex_unlock(&s->lock);
}

static int stress_get(struct stress *s, int *flag)
{
	int v;

	pthread_mutex_lock(&s->lock);
	v = *flag;
	pthread_mutex_unlock(&s->lock);
	return v;
}

static void *stress_writer(void *arg)
{
	struct stress *s = arg;
	struct sm_flow f;
	unsigned long c;

	for (c = 0; c < s->records; c++) {
		flow_fill(&f, c, c % 4 == 3 ? "close" : "connect");
		if (sm_flowlog_add(s->fl, &f))
			stress_set(s, &s->bad);
		if (c % 1000 == 0)
			sm_flowlog_set_node(s->fl, c % 2000 ? "node-b" : "node-a");
	}
	stress_set(s, &s->done);
	return NULL;
}

/* Every field of a record follows from its cookie: a torn copy shows. */
static int stress_check_one(struct json_object *obj, const struct sm_flow_query *q)
{
	char want[SM_FLOW_JSON_MAX], got[SM_FLOW_JSON_MAX];
	struct json_object *node;
	struct sm_flow f;
	uint64_t c;

	c = json_object_get_uint64(json_object_object_get(obj, "cookie"));
	flow_fill(&f, c, c % 4 == 3 ? "close" : "connect");
	node = json_object_object_get(obj, "node");
	if (!node || sm_flow_to_json(&f, json_object_get_string(node), want, sizeof(want)))
		return -1;
	snprintf(got, sizeof(got), "%s",
		 json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN |
							     JSON_C_TO_STRING_NOSLASHESCAPE));
	if (strcmp(want, got))
		return -1;
	if (q->service && strcmp(q->service, f.src) && strcmp(q->service, f.dst))
		return -1;
	if (q->event && strcmp(q->event, f.event))
		return -1;
	return 0;
}

static int stress_check(const char *json, size_t len, const struct sm_flow_query *q)
{
	struct json_object *arr = parse(json, len);
	uint64_t prev = 0, c;
	size_t i, n;
	int err = 0;

	if (!arr || !json_object_is_type(arr, json_type_array))
		return -1;
	n = json_object_array_length(arr);
	if (q->limit && n > q->limit)
		err = -1;
	for (i = 0; i < n && !err; i++) {
		err = stress_check_one(json_object_array_get_idx(arr, i), q);
		c = json_object_get_uint64(
			json_object_object_get(json_object_array_get_idx(arr, i), "cookie"));
		if (i && c <= prev)
			err = -1;
		prev = c;
	}
	json_object_put(arr);
	return err;
}

static void *stress_reader(void *arg)
{
	static const struct sm_flow_query qs[] = {
		{.limit = 0},
		{.service = "svc3", .limit = 50},
		{.event = "close"},
		{.limit = 7},
	};
	struct stress *s = arg;
	unsigned long i;
	size_t len, n = 0;
	char *json;

	for (i = 0; i < s->queries || !stress_get(s, &s->done); i++) {
		const struct sm_flow_query *q = &qs[i % ARRAY_SIZE(qs)];

		json = NULL;
		len = 0;
		if (sm_flowlog_query(s->fl, q, &json, &len) || stress_check(json, len, q))
			stress_set(s, &s->bad);
		n += len;
		free(json);
	}
	pthread_mutex_lock(&s->lock);
	s->seen += n;
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static void test_concurrent(void **state)
{
	struct stress s = {
		.records = env_count("SM_FLOWLOG_STRESS", 50000),
		.lock = PTHREAD_MUTEX_INITIALIZER,
	};
	struct tmp *t = *state;
	pthread_t w, r[2];
	uint64_t next = UINT64_MAX;
	char name[NAME_LEN];
	int i;

	s.queries = s.records / 500 + 2;
	s.fl = open_log(t->path, 256 << 10, 2, 200);
	assert_int_equal(pthread_create(&r[0], NULL, stress_reader, &s), 0);
	assert_int_equal(pthread_create(&r[1], NULL, stress_reader, &s), 0);
	assert_int_equal(pthread_create(&w, NULL, stress_writer, &s), 0);
	/* the main thread plays the reload: reopen under load */
	for (i = 0; i < 20; i++) {
		assert_int_equal(sm_flowlog_reopen(s.fl), 0);
		usleep(1000);
	}
	pthread_join(w, NULL);
	pthread_join(r[0], NULL);
	pthread_join(r[1], NULL);
	assert_int_equal(s.bad, 0);
	sm_flowlog_close(s.fl);

	snprintf(name, sizeof(name), "%s.2", t->path);
	if (file_size(name) >= 0)
		check_file(name, &next);
	snprintf(name, sizeof(name), "%s.1", t->path);
	if (file_size(name) >= 0)
		check_file(name, &next);
	check_file(t->path, &next);
	assert_int_equal(next, s.records);
	print_message("concurrent: %lu records, %lu bytes of answers checked\n", s.records, s.seen);
}

/* --- speed --- */

static double elapsed(const struct timespec *a)
{
	struct timespec b;

	clock_gettime(CLOCK_MONOTONIC, &b);
	return (b.tv_sec - a->tv_sec) + (b.tv_nsec - a->tv_nsec) / 1e9;
}

static double bench_add(struct sm_flowlog *fl, unsigned long n)
{
	struct timespec t0;
	struct sm_flow f;
	unsigned long c;

	flow_fill(&f, 0, "close");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (c = 0; c < n; c++) {
		f.cookie = c;
		f.ts_ns++;
		assert_int_equal(sm_flowlog_add(fl, &f), 0);
	}
	return n / elapsed(&t0);
}

static void test_bench(void **state)
{
	unsigned long n = env_count("SM_FLOWLOG_BENCH", 300000);
	struct tmp *t = *state;
	struct sm_flowlog *fl;
	double file_rate, mem_rate;

	/* a production-like setup: rotation on, a window of 10k records */
	fl = open_log(t->path, 64 << 20, 2, 10000);
	file_rate = bench_add(fl, n);
	sm_flowlog_close(fl);

	fl = open_log(NULL, 0, 0, 10000);
	mem_rate = bench_add(fl, n);
	sm_flowlog_close(fl);

	print_message("flow log: %.0f records/s into a file, %.0f records/s memory only (%lu)\n",
		      file_rate, mem_rate, n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_connect),
		cmocka_unit_test(test_json_close),
		cmocka_unit_test(test_json_nulls),
		cmocka_unit_test(test_json_ts),
		cmocka_unit_test(test_json_escaping),
		cmocka_unit_test(test_json_bad_utf8),
		cmocka_unit_test(test_json_worst_case),
		cmocka_unit_test_setup_teardown(test_file_create, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_rotation, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_rotation_keep0, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_rotation_existing, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_rotation_deleted, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_reopen, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_set_node, tmp_setup, tmp_teardown),
		cmocka_unit_test(test_write_failure),
		cmocka_unit_test_setup_teardown(test_short_write, tmp_setup, tmp_teardown),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_memory_only),
		cmocka_unit_test(test_window_wrap),
		cmocka_unit_test(test_query_filters),
		cmocka_unit_test(test_query_objects),
		cmocka_unit_test_setup_teardown(test_concurrent, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_bench, tmp_setup, tmp_teardown),
	};

	sm_log_init("test_flowlog", SM_LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
