// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prom.h"

/* A growing text buffer; after a failed allocation every append is a no-op. */
struct prom_buf {
	char *p;
	size_t len;
	size_t cap;
	int err;
};

struct sm_prom_family {
	struct sm_prom_family *next;
	struct sm_prom *w;
	char *name;
	enum sm_prom_type type;
	struct prom_buf text; /* # HELP, # TYPE, then the samples */
};

struct sm_prom {
	struct sm_prom_family *head;
	struct sm_prom_family **tail;
	int err; /* the first error of any call */
};

static const char *const type_names[] = {
	[SM_PROM_COUNTER] = "counter",
	[SM_PROM_GAUGE] = "gauge",
	[SM_PROM_HISTOGRAM] = "histogram",
};

static int buf_reserve(struct prom_buf *b, size_t more)
{
	size_t cap = b->cap ? b->cap : 256;
	char *p;

	if (b->err)
		return b->err;
	if (b->len + more <= b->cap)
		return 0;
	while (cap < b->len + more)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p) {
		b->err = -ENOMEM;
		return b->err;
	}
	b->p = p;
	b->cap = cap;
	return 0;
}

static void buf_putn(struct prom_buf *b, const char *s, size_t n)
{
	if (buf_reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void buf_puts(struct prom_buf *b, const char *s)
{
	buf_putn(b, s, strlen(s));
}

/*
 * Length of the valid UTF-8 sequence at s (1 to 4), or 0 if there is none:
 * overlong forms, surrogates and code points past U+10FFFF are invalid,
 * as they are to Prometheus.
 */
static size_t utf8_seq_len(const unsigned char *s, size_t left)
{
	uint32_t cp;
	size_t n, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (left < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/*
 * Append s escaped: backslash and newline always, the double quote only in
 * label values (help text keeps it as is). Invalid UTF-8 becomes U+FFFD.
 */
static void buf_put_escaped(struct prom_buf *b, const char *s, bool quote)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t left = strlen(s);
	size_t n;

	while (left) {
		n = utf8_seq_len(p, left);
		if (!n) {
			buf_puts(b, "\xef\xbf\xbd");
			n = 1;
		} else if (*p == '\\') {
			buf_puts(b, "\\\\");
		} else if (*p == '\n') {
			buf_puts(b, "\\n");
		} else if (*p == '"' && quote) {
			buf_puts(b, "\\\"");
		} else {
			buf_putn(b, (const char *)p, n);
		}
		p += n;
		left -= n;
	}
}

void sm_prom_fmt_double(char buf[SM_PROM_DOUBLE_LEN], double v)
{
	if (isnan(v)) {
		strcpy(buf, "NaN");
	} else if (isinf(v)) {
		strcpy(buf, v > 0 ? "+Inf" : "-Inf");
	} else {
		/* 17 significant digits always round-trip; 15 read better. */
		snprintf(buf, SM_PROM_DOUBLE_LEN, "%.15g", v);
		if (strtod(buf, NULL) != v)
			snprintf(buf, SM_PROM_DOUBLE_LEN, "%.17g", v);
	}
}

static bool valid_name(const char *s, bool colon)
{
	const char *p;

	if (!s || !*s || (*s >= '0' && *s <= '9'))
		return false;
	for (p = s; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '_' || (colon && *p == ':'))
			continue;
		return false;
	}
	return true;
}

/* Label names are distinct, valid, not reserved ("__") and not "le" here. */
static bool valid_labels(const struct sm_prom_family *f, const struct sm_prom_label *labels,
			 size_t n)
{
	size_t i, j;

	if (n > SM_PROM_MAX_LABELS || (n && !labels))
		return false;
	for (i = 0; i < n; i++) {
		if (!valid_name(labels[i].name, false) || !labels[i].value ||
		    !strncmp(labels[i].name, "__", 2))
			return false;
		if (f->type == SM_PROM_HISTOGRAM && !strcmp(labels[i].name, "le"))
			return false;
		for (j = 0; j < i; j++)
			if (!strcmp(labels[i].name, labels[j].name))
				return false;
	}
	return true;
}

/* Keep the first error for sm_prom_text(). */
static int record(struct sm_prom *w, int err)
{
	if (err && !w->err)
		w->err = err;
	return err;
}

struct sm_prom *sm_prom_new(void)
{
	struct sm_prom *w = calloc(1, sizeof(*w));

	if (w)
		w->tail = &w->head;
	return w;
}

void sm_prom_free(struct sm_prom *w)
{
	struct sm_prom_family *f, *next;

	if (!w)
		return;
	for (f = w->head; f; f = next) {
		next = f->next;
		free(f->text.p);
		free(f->name);
		free(f);
	}
	free(w);
}

static struct sm_prom_family *family_find(struct sm_prom *w, const char *name)
{
	struct sm_prom_family *f;

	for (f = w->head; f; f = f->next)
		if (!strcmp(f->name, name))
			return f;
	return NULL;
}

static struct sm_prom_family *family_new(struct sm_prom *w, const char *name,
					 enum sm_prom_type type, const char *help)
{
	struct sm_prom_family *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->name = strdup(name);
	if (!f->name)
		goto err_free_family;
	f->w = w;
	f->type = type;

	buf_puts(&f->text, "# HELP ");
	buf_puts(&f->text, name);
	buf_puts(&f->text, " ");
	buf_put_escaped(&f->text, help, false);
	buf_puts(&f->text, "\n# TYPE ");
	buf_puts(&f->text, name);
	buf_puts(&f->text, " ");
	buf_puts(&f->text, type_names[type]);
	buf_puts(&f->text, "\n");
	if (f->text.err)
		goto err_free_text;
	return f;

err_free_text:
	free(f->text.p);
	free(f->name);
err_free_family:
	free(f);
	return NULL;
}

struct sm_prom_family *sm_prom_family(struct sm_prom *w, const char *name, enum sm_prom_type type,
				      const char *help)
{
	struct sm_prom_family *f;
	int err = -EINVAL;

	if (!valid_name(name, true) || !help || !*help || (unsigned int)type > SM_PROM_HISTOGRAM)
		goto err;

	f = family_find(w, name);
	if (f) {
		if (f->type != type)
			goto err;
		return f;
	}

	err = -ENOMEM;
	f = family_new(w, name, type, help);
	if (!f)
		goto err;
	*w->tail = f;
	w->tail = &f->next;
	return f;

err:
	record(w, err);
	errno = -err;
	return NULL;
}

/* "name<suffix>{a="x",b="y"" without the closing brace, or "name<suffix>". */
static void put_series(struct prom_buf *b, const char *name, const char *suffix,
		       const struct sm_prom_label *labels, size_t n)
{
	size_t i;

	buf_puts(b, name);
	buf_puts(b, suffix);
	for (i = 0; i < n; i++) {
		buf_puts(b, i ? "," : "{");
		buf_puts(b, labels[i].name);
		buf_puts(b, "=\"");
		buf_put_escaped(b, labels[i].value, true);
		buf_puts(b, "\"");
	}
}

/* One sample line; value is already formatted. */
static void put_sample(struct prom_buf *b, const char *name, const char *suffix,
		       const struct sm_prom_label *labels, size_t n, const char *value)
{
	put_series(b, name, suffix, labels, n);
	buf_puts(b, n ? "} " : " ");
	buf_puts(b, value);
	buf_puts(b, "\n");
}

static int add_scalar(struct sm_prom_family *f, const struct sm_prom_label *labels, size_t n,
		      const char *value)
{
	if (!f)
		return -EINVAL;
	if (f->type == SM_PROM_HISTOGRAM || !valid_labels(f, labels, n))
		return record(f->w, -EINVAL);
	put_sample(&f->text, f->name, "", labels, n, value);
	return record(f->w, f->text.err);
}

int sm_prom_u64(struct sm_prom_family *f, const struct sm_prom_label *labels, size_t n_labels,
		uint64_t value)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%" PRIu64, value);
	return add_scalar(f, labels, n_labels, buf);
}

int sm_prom_double(struct sm_prom_family *f, const struct sm_prom_label *labels, size_t n_labels,
		   double value)
{
	char buf[SM_PROM_DOUBLE_LEN];

	sm_prom_fmt_double(buf, value);
	return add_scalar(f, labels, n_labels, buf);
}

/* Finite, strictly increasing bounds; cumulative counts never above count. */
static bool valid_hist(const struct sm_prom_hist *h)
{
	size_t i;

	if (!h || (h->n && (!h->bounds || !h->counts)))
		return false;
	for (i = 0; i < h->n; i++) {
		if (!isfinite(h->bounds[i]) || h->counts[i] > h->count)
			return false;
		if (i && (h->bounds[i] <= h->bounds[i - 1] || h->counts[i] < h->counts[i - 1]))
			return false;
	}
	return true;
}

static void put_bucket(struct prom_buf *b, const struct sm_prom_family *f,
		       const struct sm_prom_label *labels, size_t n, const char *le, uint64_t count)
{
	char buf[24];

	put_series(b, f->name, "_bucket", labels, n);
	buf_puts(b, n ? ",le=\"" : "{le=\"");
	buf_puts(b, le);
	snprintf(buf, sizeof(buf), "\"} %" PRIu64 "\n", count);
	buf_puts(b, buf);
}

int sm_prom_histogram(struct sm_prom_family *f, const struct sm_prom_label *labels, size_t n_labels,
		      const struct sm_prom_hist *h)
{
	char num[SM_PROM_DOUBLE_LEN];
	size_t i;

	if (!f)
		return -EINVAL;
	if (f->type != SM_PROM_HISTOGRAM || !valid_labels(f, labels, n_labels) || !valid_hist(h))
		return record(f->w, -EINVAL);

	for (i = 0; i < h->n; i++) {
		sm_prom_fmt_double(num, h->bounds[i]);
		put_bucket(&f->text, f, labels, n_labels, num, h->counts[i]);
	}
	put_bucket(&f->text, f, labels, n_labels, "+Inf", h->count);

	sm_prom_fmt_double(num, h->sum);
	put_sample(&f->text, f->name, "_sum", labels, n_labels, num);
	snprintf(num, sizeof(num), "%" PRIu64, h->count);
	put_sample(&f->text, f->name, "_count", labels, n_labels, num);
	return record(f->w, f->text.err);
}

int sm_prom_text(struct sm_prom *w, char **text, size_t *len)
{
	struct sm_prom_family *f;
	size_t total = 0;
	char *p;

	if (w->err)
		return w->err;
	for (f = w->head; f; f = f->next)
		total += f->text.len;
	p = malloc(total + 1);
	if (!p)
		return -ENOMEM;

	*len = total;
	*text = p;
	for (f = w->head; f; f = f->next) {
		memcpy(p, f->text.p, f->text.len);
		p += f->text.len;
	}
	*p = '\0';
	return 0;
}
