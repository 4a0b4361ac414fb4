/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * A writer for the Prometheus text exposition format, version 0.0.4.
 *
 * The writer groups samples by family: sm_prom_family() returns a handle,
 * and samples added through it land under that family's # HELP and # TYPE
 * lines however the calls interleave. So a caller can open every family
 * first and then walk a BPF map once, adding to several families per entry.
 * Families appear in the output in the order they were first opened.
 *
 * Errors are sticky: every call returns 0 or -errno, and the first error is
 * also kept and returned by sm_prom_text(), so a caller may add many samples
 * and check once. Calls on a NULL family (its sm_prom_family() failed) do
 * nothing and return -EINVAL.
 *
 * Label values and help text are escaped as the format requires, and bytes
 * that are not valid UTF-8 become U+FFFD: Prometheus rejects a whole scrape
 * over one bad label value. Duplicate series (same labels twice in one
 * family) are not detected; the caller must not produce them.
 *
 * Doubles are printed with "%g"-style conversions, which follow LC_NUMERIC;
 * the agent must not switch LC_NUMERIC away from "C".
 *
 * A writer is not thread-safe; use one per scrape.
 */
#ifndef SM_PROM_H
#define SM_PROM_H

#include <stddef.h>
#include <stdint.h>

#define SM_PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* At most this many labels per sample, not counting a histogram's "le". */
#define SM_PROM_MAX_LABELS 16

enum sm_prom_type {
	SM_PROM_COUNTER,
	SM_PROM_GAUGE,
	SM_PROM_HISTOGRAM,
};

struct sm_prom_label {
	const char *name;  /* [a-zA-Z_][a-zA-Z0-9_]*, not starting "__" */
	const char *value; /* any string */
};

/*
 * A label list and its length from a brace list of pairs, for the sample
 * functions below: sm_prom_u64(f, SM_PROM_LABELS({"src", s}, {"dst", d}), n).
 */
#define SM_PROM_LABELS(...)                                            \
	((const struct sm_prom_label[]){__VA_ARGS__}),                 \
		(sizeof((const struct sm_prom_label[]){__VA_ARGS__}) / \
		 sizeof(struct sm_prom_label))

/*
 * Cumulative histogram buckets: counts[i] observations were <= bounds[i].
 * Bounds are finite and strictly increasing; the "+Inf" bucket is not in
 * the arrays, it is `count`.
 */
struct sm_prom_hist {
	const double *bounds;
	const uint64_t *counts;
	size_t n;
	double sum;
	uint64_t count;
};

struct sm_prom;
struct sm_prom_family;

/* NULL when out of memory. */
struct sm_prom *sm_prom_new(void);
void sm_prom_free(struct sm_prom *w);

/*
 * Open a family, or return the one already open under this name (its help
 * is kept). name: [a-zA-Z_:][a-zA-Z0-9_:]*, counters ending in "_total"
 * as promtool wants. help: non-empty. NULL with errno set on error: EINVAL
 * for a bad name or help or a type other than the open family's; ENOMEM.
 * The handle lives as long as the writer.
 */
struct sm_prom_family *sm_prom_family(struct sm_prom *w, const char *name, enum sm_prom_type type,
				      const char *help);

/* One sample of a counter or gauge. labels may be NULL when n_labels is 0. */
int sm_prom_u64(struct sm_prom_family *f, const struct sm_prom_label *labels, size_t n_labels,
		uint64_t value);
int sm_prom_double(struct sm_prom_family *f, const struct sm_prom_label *labels, size_t n_labels,
		   double value);

/*
 * One histogram series: name_bucket{...,le="..."} for each bound and for
 * "+Inf", then name_sum and name_count, all with the given labels.
 */
int sm_prom_histogram(struct sm_prom_family *f, const struct sm_prom_label *labels, size_t n_labels,
		      const struct sm_prom_hist *h);

/*
 * The whole exposition so far as one malloc'd, NUL-terminated string that
 * the caller frees; *len excludes the NUL. The writer stays usable. Returns
 * the first error of any earlier call instead, if there was one.
 */
int sm_prom_text(struct sm_prom *w, char **text, size_t *len);

/* Room for any double that sm_prom_fmt_double() prints, with its NUL. */
#define SM_PROM_DOUBLE_LEN 32

/*
 * A double the way the format spells it: NaN, +Inf, -Inf, or the shortest
 * of "%.15g" and "%.17g" that reads back as the same value.
 */
void sm_prom_fmt_double(char buf[SM_PROM_DOUBLE_LEN], double v);

#endif /* SM_PROM_H */
