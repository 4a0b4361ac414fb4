// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * The Prometheus text writer: exact output for each kind of family, the
 * escaping and number formats, grouping of interleaved samples, errors,
 * and a representative exposition checked by promtool when it is installed.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "prom.h"

#define PROMTOOL "/usr/bin/promtool"

/* The writer's whole text; the test fails if there is none. */
static char *text_of(struct sm_prom *w)
{
	char *text = NULL;
	size_t len = 0;

	assert_int_equal(sm_prom_text(w, &text, &len), 0);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	return text;
}

static void expect_text(struct sm_prom *w, const char *want)
{
	char *text = text_of(w);

	assert_string_equal(text, want);
	free(text);
}

static void test_counter_labels(void **state)
{
	struct sm_prom *w = sm_prom_new();
	struct sm_prom_family *f;

	(void)state;
	assert_non_null(w);
	f = sm_prom_family(w, "sockmesh_connections_total", SM_PROM_COUNTER,
			   "Connections by verdict.");
	assert_non_null(f);
	assert_int_equal(sm_prom_u64(f,
				     SM_PROM_LABELS({"src", "frontend"}, {"dst", "reviews"},
						    {"verdict", "allowed"}),
				     42),
			 0);
	assert_int_equal(
		sm_prom_u64(f, SM_PROM_LABELS({"src", "world"}, {"dst", ""}, {"verdict", "denied"}),
			    UINT64_MAX),
		0);
	expect_text(w, "# HELP sockmesh_connections_total Connections by verdict.\n"
		       "# TYPE sockmesh_connections_total counter\n"
		       "sockmesh_connections_total{src=\"frontend\",dst=\"reviews\","
		       "verdict=\"allowed\"} 42\n"
		       "sockmesh_connections_total{src=\"world\",dst=\"\","
		       "verdict=\"denied\"} 18446744073709551615\n");
	sm_prom_free(w);
}

static void test_gauge_no_labels(void **state)
{
	struct sm_prom *w = sm_prom_new();
	struct sm_prom_family *f;

	(void)state;
	f = sm_prom_family(w, "sockmesh_policy_generation", SM_PROM_GAUGE,
			   "Generation of the policy in force.");
	assert_int_equal(sm_prom_u64(f, NULL, 0, 0), 0);
	expect_text(w, "# HELP sockmesh_policy_generation Generation of the policy in force.\n"
		       "# TYPE sockmesh_policy_generation gauge\n"
		       "sockmesh_policy_generation 0\n");
	sm_prom_free(w);
}

static void expect_double(double v, const char *want)
{
	char buf[SM_PROM_DOUBLE_LEN];

	sm_prom_fmt_double(buf, v);
	assert_string_equal(buf, want);
}

static void test_double_format(void **state)
{
	char buf[SM_PROM_DOUBLE_LEN];

	(void)state;
	expect_double(NAN, "NaN");
	expect_double(INFINITY, "+Inf");
	expect_double(-INFINITY, "-Inf");
	expect_double(0, "0");
	expect_double(1, "1");
	expect_double(-2.5, "-2.5");
	expect_double(0.1, "0.1");
	expect_double(0.005, "0.005");
	expect_double(1e-9, "1e-09");
	expect_double(1e21, "1e+21");
	expect_double(123456789012345.0, "123456789012345");
	/* Needs more than 15 digits to read back as itself. */
	expect_double(1.0 / 3, "0.33333333333333331");
	expect_double(0.1 + 0.2, "0.30000000000000004");

	/* Whatever is printed reads back exactly. */
	sm_prom_fmt_double(buf, 2.2250738585072014e-308);
	assert_true(strtod(buf, NULL) == 2.2250738585072014e-308);
	sm_prom_fmt_double(buf, -1.7976931348623157e308);
	assert_true(strtod(buf, NULL) == -1.7976931348623157e308);
	assert_true(strlen(buf) < SM_PROM_DOUBLE_LEN);
}

static void test_double_samples(void **state)
{
	struct sm_prom *w = sm_prom_new();
	struct sm_prom_family *f;

	(void)state;
	f = sm_prom_family(w, "x_ratio", SM_PROM_GAUGE, "A ratio.");
	sm_prom_double(f, SM_PROM_LABELS({"k", "a"}), 0.25);
	sm_prom_double(f, SM_PROM_LABELS({"k", "b"}), NAN);
	sm_prom_double(f, SM_PROM_LABELS({"k", "c"}), -INFINITY);
	expect_text(w, "# HELP x_ratio A ratio.\n"
		       "# TYPE x_ratio gauge\n"
		       "x_ratio{k=\"a\"} 0.25\n"
		       "x_ratio{k=\"b\"} NaN\n"
		       "x_ratio{k=\"c\"} -Inf\n");
	sm_prom_free(w);
}

static void test_escaping(void **state)
{
	struct sm_prom *w = sm_prom_new();
	struct sm_prom_family *f;

	(void)state;
	/* Help escapes backslash and newline but keeps the double quote. */
	f = sm_prom_family(w, "esc_total", SM_PROM_COUNTER, "Back\\slash \"quoted\"\nsecond line.");
	sm_prom_u64(f, SM_PROM_LABELS({"v", "a\\b\"c\nd"}), 1);
	/* Valid UTF-8 passes; a stray byte and a surrogate become U+FFFD. */
	sm_prom_u64(f, SM_PROM_LABELS({"v", "caf\xc3\xa9 \xff."}), 2);
	sm_prom_u64(f, SM_PROM_LABELS({"v", "\xed\xa0\x80"}), 3);
	sm_prom_u64(f, SM_PROM_LABELS({"v", "\xc0\xaf"}), 4);
	sm_prom_u64(f, SM_PROM_LABELS({"v", "\xe2\x82"}), 5);
	expect_text(w, "# HELP esc_total Back\\\\slash \"quoted\"\\nsecond line.\n"
		       "# TYPE esc_total counter\n"
		       "esc_total{v=\"a\\\\b\\\"c\\nd\"} 1\n"
		       "esc_total{v=\"caf\xc3\xa9 \xef\xbf\xbd.\"} 2\n"
		       "esc_total{v=\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"} 3\n"
		       "esc_total{v=\"\xef\xbf\xbd\xef\xbf\xbd\"} 4\n"
		       "esc_total{v=\"\xef\xbf\xbd\xef\xbf\xbd\"} 5\n");
	sm_prom_free(w);
}

#define DUR "sockmesh_connection_duration_seconds"

static void test_histogram(void **state)
{
	static const double bounds[] = {0.005, 0.1, 1, 2.5};
	static const uint64_t counts[] = {1, 3, 3, 7};
	struct sm_prom_hist h = {
		.bounds = bounds,
		.counts = counts,
		.n = 4,
		.sum = 9.75,
		.count = 9,
	};
	struct sm_prom_hist empty = {.sum = 0, .count = 0};
	struct sm_prom *w = sm_prom_new();
	struct sm_prom_family *f;

	(void)state;
	f = sm_prom_family(w, DUR, SM_PROM_HISTOGRAM, "Duration of closed connections.");
	assert_int_equal(sm_prom_histogram(f, SM_PROM_LABELS({"src", "a"}, {"dst", "b"}), &h), 0);
	assert_int_equal(sm_prom_histogram(f, NULL, 0, &empty), 0);
	expect_text(w, "# HELP " DUR " Duration of closed connections.\n"
		       "# TYPE " DUR " histogram\n" DUR
		       "_bucket{src=\"a\",dst=\"b\",le=\"0.005\"} 1\n" DUR
		       "_bucket{src=\"a\",dst=\"b\",le=\"0.1\"} 3\n" DUR
		       "_bucket{src=\"a\",dst=\"b\",le=\"1\"} 3\n" DUR
		       "_bucket{src=\"a\",dst=\"b\",le=\"2.5\"} 7\n" DUR
		       "_bucket{src=\"a\",dst=\"b\",le=\"+Inf\"} 9\n" DUR
		       "_sum{src=\"a\",dst=\"b\"} 9.75\n" DUR "_count{src=\"a\",dst=\"b\"} 9\n" DUR
		       "_bucket{le=\"+Inf\"} 0\n" DUR "_sum 0\n" DUR "_count 0\n");
	sm_prom_free(w);
}

/* Samples added in any order come out grouped, with one header per family. */
static void test_grouping(void **state)
{
	struct sm_prom *w = sm_prom_new();
	struct sm_prom_family *a, *b, *again;

	(void)state;
	a = sm_prom_family(w, "a_bytes_total", SM_PROM_COUNTER, "A.");
	b = sm_prom_family(w, "b_entries", SM_PROM_GAUGE, "B.");
	sm_prom_u64(a, SM_PROM_LABELS({"x", "1"}), 1);
	sm_prom_u64(b, SM_PROM_LABELS({"x", "1"}), 10);
	again = sm_prom_family(w, "a_bytes_total", SM_PROM_COUNTER, "Other help.");
	assert_ptr_equal(again, a);
	sm_prom_u64(again, SM_PROM_LABELS({"x", "2"}), 2);
	sm_prom_u64(b, SM_PROM_LABELS({"x", "2"}), 20);
	expect_text(w, "# HELP a_bytes_total A.\n"
		       "# TYPE a_bytes_total counter\n"
		       "a_bytes_total{x=\"1\"} 1\n"
		       "a_bytes_total{x=\"2\"} 2\n"
		       "# HELP b_entries B.\n"
		       "# TYPE b_entries gauge\n"
		       "b_entries{x=\"1\"} 10\n"
		       "b_entries{x=\"2\"} 20\n");

	/* The writer stays usable after sm_prom_text(). */
	sm_prom_u64(a, SM_PROM_LABELS({"x", "3"}), 3);
	expect_text(w, "# HELP a_bytes_total A.\n"
		       "# TYPE a_bytes_total counter\n"
		       "a_bytes_total{x=\"1\"} 1\n"
		       "a_bytes_total{x=\"2\"} 2\n"
		       "a_bytes_total{x=\"3\"} 3\n"
		       "# HELP b_entries B.\n"
		       "# TYPE b_entries gauge\n"
		       "b_entries{x=\"1\"} 10\n"
		       "b_entries{x=\"2\"} 20\n");
	sm_prom_free(w);
}

static void test_empty(void **state)
{
	struct sm_prom *w = sm_prom_new();

	(void)state;
	expect_text(w, "");
	sm_prom_free(w);
	sm_prom_free(NULL);
}

/* Each call fails alone, and the first failure sticks to the writer. */
static void expect_sticky(struct sm_prom *w, int got)
{
	char *text = NULL;
	size_t len;

	assert_int_equal(got, -EINVAL);
	assert_int_equal(sm_prom_text(w, &text, &len), -EINVAL);
	assert_null(text);
}

static void test_bad_names(void **state)
{
	struct sm_prom *w = sm_prom_new();

	(void)state;
	errno = 0;
	assert_null(sm_prom_family(w, "1abc", SM_PROM_GAUGE, "x"));
	assert_int_equal(errno, EINVAL);
	assert_null(sm_prom_family(w, "a-b", SM_PROM_GAUGE, "x"));
	assert_null(sm_prom_family(w, "", SM_PROM_GAUGE, "x"));
	assert_null(sm_prom_family(w, NULL, SM_PROM_GAUGE, "x"));
	assert_null(sm_prom_family(w, "ok", SM_PROM_GAUGE, ""));
	assert_null(sm_prom_family(w, "ok", SM_PROM_GAUGE, NULL));
	assert_null(sm_prom_family(w, "ok", (enum sm_prom_type)7, "x"));
	assert_non_null(sm_prom_family(w, "ns:sub_ok", SM_PROM_GAUGE, "x"));
	/* The good family works, but the text reports the first error. */
	expect_sticky(w, -EINVAL);
	sm_prom_free(w);
}

static void test_bad_samples(void **state)
{
	static const double bounds[] = {1, 0.5};
	static const double inf_bound[] = {1, INFINITY};
	static const uint64_t counts[] = {1, 2};
	static const uint64_t down[] = {2, 1};
	struct sm_prom_hist h = {.bounds = bounds, .counts = counts, .n = 2, .count = 2};
	struct sm_prom_label many[SM_PROM_MAX_LABELS + 1];
	char names[SM_PROM_MAX_LABELS + 1][8];
	struct sm_prom_family *c, *g, *hi;
	struct sm_prom *w;
	char *text;
	size_t i, len;

	(void)state;
	for (i = 0; i < SM_PROM_MAX_LABELS + 1; i++) {
		snprintf(names[i], sizeof(names[i]), "l%zu", i);
		many[i].name = names[i];
		many[i].value = "v";
	}

#define FRESH()                                                              \
	do {                                                                 \
		sm_prom_free(w);                                             \
		w = sm_prom_new();                                           \
		c = sm_prom_family(w, "c_total", SM_PROM_COUNTER, "c");      \
		g = sm_prom_family(w, "g", SM_PROM_GAUGE, "g");              \
		hi = sm_prom_family(w, "h_seconds", SM_PROM_HISTOGRAM, "h"); \
	} while (0)

	w = NULL;
	FRESH();
	expect_sticky(w, sm_prom_u64(c, SM_PROM_LABELS({"9x", "v"}), 1));
	FRESH();
	expect_sticky(w, sm_prom_u64(c, SM_PROM_LABELS({"__name__", "v"}), 1));
	FRESH();
	expect_sticky(w, sm_prom_u64(c, SM_PROM_LABELS({"a", "v"}, {"a", "w"}), 1));
	FRESH();
	expect_sticky(w, sm_prom_u64(c, SM_PROM_LABELS({"a", NULL}), 1));
	FRESH();
	expect_sticky(w, sm_prom_u64(c, NULL, 1, 1));
	FRESH();
	expect_sticky(w, sm_prom_u64(g, many, SM_PROM_MAX_LABELS + 1, 1));
	FRESH();
	expect_sticky(w, sm_prom_double(hi, NULL, 0, 1));
	FRESH();
	expect_sticky(w, sm_prom_histogram(g, NULL, 0, &h));
	FRESH();
	h.bounds = bounds;
	expect_sticky(w, sm_prom_histogram(hi, NULL, 0, &h));
	FRESH();
	h.bounds = inf_bound;
	expect_sticky(w, sm_prom_histogram(hi, NULL, 0, &h));
	FRESH();
	h.bounds = (const double[]){1, 2};
	h.counts = down;
	expect_sticky(w, sm_prom_histogram(hi, NULL, 0, &h));
	FRESH();
	h.counts = counts;
	h.count = 1;
	expect_sticky(w, sm_prom_histogram(hi, NULL, 0, &h));
	FRESH();
	h.count = 2;
	expect_sticky(w, sm_prom_histogram(hi, SM_PROM_LABELS({"le", "1"}), &h));
	FRESH();
	assert_null(sm_prom_family(w, "g", SM_PROM_COUNTER, "g"));
	expect_sticky(w, sm_prom_u64(NULL, NULL, 0, 1));

	/* With the inputs fixed, the same calls work. */
	FRESH();
	assert_int_equal(sm_prom_histogram(hi, SM_PROM_LABELS({"lee", "1"}), &h), 0);
	assert_int_equal(sm_prom_u64(g, many, SM_PROM_MAX_LABELS, 1), 0);
	assert_int_equal(sm_prom_text(w, &text, &len), 0);
	free(text);
	sm_prom_free(w);
#undef FRESH
}

/* A writer holding one of each kind of family the agent exports. */
static struct sm_prom *representative(void)
{
	static const double bounds[] = {0.001, 0.01, 0.1, 1, 10, 60};
	static const uint64_t counts[] = {2, 5, 9, 9, 12, 12};
	const struct sm_prom_hist h = {
		.bounds = bounds,
		.counts = counts,
		.n = 6,
		.sum = 37.25,
		.count = 13,
	};
	struct sm_prom *w = sm_prom_new();
	struct sm_prom_family *conn, *bytes, *dur, *gen, *att;

	conn = sm_prom_family(w, "sockmesh_connections_total", SM_PROM_COUNTER,
			      "Connections seen by the datapath, by verdict.");
	bytes = sm_prom_family(w, "sockmesh_bytes_total", SM_PROM_COUNTER,
			       "Bytes on closed connections.");
	dur = sm_prom_family(w, "sockmesh_connection_duration_seconds", SM_PROM_HISTOGRAM,
			     "How long connections lived.");
	gen = sm_prom_family(w, "sockmesh_policy_generation", SM_PROM_GAUGE,
			     "Generation of the policy in force.");
	att = sm_prom_family(w, "sockmesh_hook_attached", SM_PROM_GAUGE,
			     "1 when the hook's program is attached \"where it should be\".");

	/* Interleaved, as a walk over one map would add them. */
	sm_prom_u64(conn,
		    SM_PROM_LABELS({"src", "frontend"}, {"dst", "reviews"}, {"verdict", "allowed"}),
		    1200);
	sm_prom_u64(bytes,
		    SM_PROM_LABELS({"src", "frontend"}, {"dst", "reviews"}, {"direction", "sent"}),
		    99);
	sm_prom_histogram(dur, SM_PROM_LABELS({"src", "frontend"}, {"dst", "reviews"}), &h);
	sm_prom_u64(
		conn,
		SM_PROM_LABELS({"src", "we\"ird\\na\nme"}, {"dst", "\xff"}, {"verdict", "denied"}),
		3);
	sm_prom_u64(
		bytes,
		SM_PROM_LABELS({"src", "frontend"}, {"dst", "reviews"}, {"direction", "received"}),
		UINT64_MAX);
	sm_prom_histogram(dur, SM_PROM_LABELS({"src", "world"}, {"dst", "reviews"}), &h);
	sm_prom_u64(gen, NULL, 0, 7);
	sm_prom_u64(att, SM_PROM_LABELS({"hook", "connect4"}), 1);
	sm_prom_double(att, SM_PROM_LABELS({"hook", "connect6"}), NAN);
	sm_prom_double(att, SM_PROM_LABELS({"hook", "sendmsg4"}), INFINITY);
	return w;
}

/* Run promtool on text; its exit status, and its output in *out (freed by caller). */
static int promtool_check(const char *text, char **out)
{
	char path[] = "/tmp/test_prom.XXXXXX";
	char cmd[128];
	size_t len = 0;
	FILE *p;
	int fd, status;

	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);

	snprintf(cmd, sizeof(cmd), PROMTOOL " check metrics < %s 2>&1", path);
	p = popen(cmd, "r");
	assert_non_null(p);
	*out = calloc(1, 4096);
	len = fread(*out, 1, 4095, p);
	(*out)[len] = '\0';
	status = pclose(p);
	unlink(path);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_promtool(void **state)
{
	struct sm_prom *w;
	char *text, *out;
	int rc;

	(void)state;
	if (access(PROMTOOL, X_OK)) {
		skip();
		return;
	}
	w = representative();
	text = text_of(w);
	rc = promtool_check(text, &out);
	if (rc || out[0])
		print_error("promtool (exit %d) says:\n%s\non:\n%s\n", rc, out, text);
	assert_int_equal(rc, 0);
	assert_string_equal(out, "");
	free(out);
	free(text);
	sm_prom_free(w);

	/* The check itself bites: a counter without _total fails the lint. */
	w = sm_prom_new();
	sm_prom_u64(sm_prom_family(w, "sockmesh_bad", SM_PROM_COUNTER, "x"), NULL, 0, 1);
	text = text_of(w);
	assert_int_not_equal(promtool_check(text, &out), 0);
	free(out);
	free(text);
	sm_prom_free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counter_labels), cmocka_unit_test(test_gauge_no_labels),
		cmocka_unit_test(test_double_format),  cmocka_unit_test(test_double_samples),
		cmocka_unit_test(test_escaping),       cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_grouping),       cmocka_unit_test(test_empty),
		cmocka_unit_test(test_bad_names),      cmocka_unit_test(test_bad_samples),
		cmocka_unit_test(test_promtool),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
