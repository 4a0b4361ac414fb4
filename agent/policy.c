// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * The policy file: YAML in, struct sm_policy out.
 *
 * libyaml builds the document tree; reading it is ours. Every mapping is
 * read against the list of keys allowed there (collect()), which is also
 * where unknown and duplicate keys are caught, so each section reads as
 * "collect its fields, then check each one".
 *
 * Problems go to the caller's diagnostics with their line and column, and
 * reading carries on past them, so one run shows every mistake in the
 * file. A value found wrong is left out of the policy being built: it is
 * reported once, not again by every later check that would have used it.
 *
 * Sections are read in dependency order, not file order: defaults first
 * (services inherit from them), then services, then the rules and quotas
 * that name services. The diagnostics are sorted by position at the end.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "policy.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define MAX_WEIGHT 1000000
/* The datapath refills a quota bucket 1e9 / rate nanoseconds per token. */
#define MAX_RATE   1000000000
#define MAX_FILE   (64 << 20)
#define MAX_FIELDS 16
#define WHERE_LEN  160
#define GOT_LEN	   80
#define PORT_WORDS (65536 / 64)

/* A key table: one name per field, NULL-terminated, within collect()'s. */
#define KEYS_CHECK(keys, n) _Static_assert(ARRAY_SIZE(keys) == (n) + 1 && (n) <= MAX_FIELDS, #keys)

#define DEFAULT_FAILURES      5
#define DEFAULT_EJECT_SECONDS 30

/* What a list entry is, for cross-checks and their messages. */
enum item_kind {
	ITEM_CGROUP,
	ITEM_ENDPOINT,
	ITEM_VIP,
};

/* Who holds a name, cgroup, endpoint or VIP, and where it was written. */
struct owner {
	const struct sm_service *svc;
	const struct sm_subset *sub; /* NULL: the service's own lists */
	enum item_kind kind;
	unsigned int protocols;
	struct sm_loc loc;
};

/*
 * An open-addressing hash table. Keys are borrowed, not copied: they point
 * into the YAML document or the policy, both of which outlive the table.
 * The same key may be added more than once (one address, two protocols);
 * htab_next() visits every entry under a key.
 */
struct hent {
	const void *key; /* NULL: free slot */
	size_t klen;
	uint64_t hash;
	struct owner own;
};

struct htab {
	struct hent *e;
	size_t cap; /* a power of two */
	size_t n;
};

/* Kept with a parsed policy so sm_policy_service() need not scan. */
struct sm_policy_index {
	struct htab names;
};

struct parser {
	yaml_document_t *doc;
	struct sm_diags *diags; /* may be NULL: errors only counted */
	size_t errors;
	bool oom;
	struct sm_policy *p;
	struct htab names;   /* service name as written -> service */
	bool names_broken;   /* services unreadable: no name checks */
	struct htab unknown; /* names no service has -> hint */
	struct htab cgroups;
	struct htab dests; /* endpoints and VIPs by address, port */
	struct htab pairs; /* quotas by (from, to) */
	uint32_t *mark;	   /* per service, then world: last list */
	uint32_t mark_gen;
	uint64_t *ports; /* bitmap of the current rule's ports */
};

/* Where a value sits: "field 'weight' in subset 'v1' of service 'x'". */
struct at {
	const char *field;
	const char *where;
};

/* Word lists; an enum value is its word's index. */
static const char *const mode_names[] = {"enforce", "audit", NULL};
static const char *const egress_names[] = {"allow", "deny", NULL};
static const char *const affinity_names[] = {"none", "source", NULL};
static const char *const drain_names[] = {"close", "keep", NULL};
/* Index + 1 gives the SM_PROTO_* bits: tcp 1, udp 2, both 3. */
static const char *const proto_names[] = {"tcp", "udp", "both", NULL};

_Static_assert(SM_PROTO_TCP == 1 && SM_PROTO_UDP == 2, "proto_names order");
_Static_assert(SM_MODE_AUDIT == 1 && SM_EGRESS_DENY == 1 && SM_AFFINITY_SOURCE == 1 &&
		       SM_DRAIN_KEEP == 1,
	       "word order");
/* Quota pairs are hashed as the two name arrays together. */
_Static_assert(offsetof(struct sm_quota, to) == offsetof(struct sm_quota, from) + SM_NAME_LEN,
	       "quota layout");

/* --- diagnostics --- */

void sm_diags_init(struct sm_diags *d, const char *file)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->file, sizeof(d->file), "%s", file ? file : "");
}

void sm_diags_free(struct sm_diags *d)
{
	free(d->items);
	d->items = NULL;
	d->n = 0;
	d->cap = 0;
}

static void diags_vadd(struct sm_diags *d, struct sm_loc loc, const char *fmt, va_list ap)
{
	struct sm_diag *items;
	size_t cap;

	if (d->n == d->cap) {
		cap = d->cap ? d->cap * 2 : 16;
		items = realloc(d->items, cap * sizeof(*items));
		/* The parser counts errors itself, so a lost message loses
		 * no verdict. */
		if (!items)
			return;
		d->items = items;
		d->cap = cap;
	}
	d->items[d->n].loc = loc;
	vsnprintf(d->items[d->n].msg, sizeof(d->items[d->n].msg), fmt, ap);
	d->n++;
}

void sm_diags_add(struct sm_diags *d, struct sm_loc loc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diags_vadd(d, loc, fmt, ap);
	va_end(ap);
}

void sm_diags_print(const struct sm_diags *d, FILE *f)
{
	const struct sm_diag *it;
	size_t i;

	for (i = 0; i < d->n; i++) {
		it = &d->items[i];
		if (it->loc.line)
			fprintf(f, "%s:%u:%u: error: %s\n", d->file, it->loc.line, it->loc.col,
				it->msg);
		else
			fprintf(f, "%s: error: %s\n", d->file, it->msg);
	}
}

/* By position; equal positions keep the order they were found in. */
static int diag_cmp(const void *a, const void *b)
{
	const struct sm_diag *x = *(const struct sm_diag *const *)a;
	const struct sm_diag *y = *(const struct sm_diag *const *)b;

	if (x->loc.line != y->loc.line)
		return x->loc.line < y->loc.line ? -1 : 1;
	if (x->loc.col != y->loc.col)
		return x->loc.col < y->loc.col ? -1 : 1;
	return x < y ? -1 : x > y;
}

static void sort_diags(struct sm_diags *d, size_t first)
{
	size_t n = d->n - first, i;
	struct sm_diag **order;
	struct sm_diag *sorted;

	if (n < 2)
		return;
	order = malloc(n * sizeof(*order));
	sorted = malloc(n * sizeof(*sorted));
	/* Unsorted diagnostics are still all there: not worth failing. */
	if (!order || !sorted)
		goto out;
	for (i = 0; i < n; i++)
		order[i] = &d->items[first + i];
	qsort(order, n, sizeof(*order), diag_cmp);
	for (i = 0; i < n; i++)
		sorted[i] = *order[i];
	memcpy(&d->items[first], sorted, n * sizeof(*sorted));
out:
	free(order);
	free(sorted);
}

/* --- addresses --- */

static bool addr_is_v4(const struct sm_addr *a)
{
	return !a->a[0] && !a->a[1] && a->a[2] == htonl(0xffff);
}

/*
 * Decimal digits only: no sign, no spaces, and no leading zero, since
 * YAML 1.1 readers take 010 for octal. -ERANGE past UINT64_MAX.
 */
static int parse_dec(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	unsigned int d;

	if (!*s || (s[0] == '0' && s[1]))
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		d = *s - '0';
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

/* Splits "host:port" or "[host]:port"; the problem in words, or NULL. */
static const char *split_endpoint(const char *s, char *host, size_t len, uint16_t *port)
{
	const char *colon, *start = s;
	uint64_t v;
	size_t n;

	if (s[0] == '[') {
		colon = strchr(s, ']');
		if (!colon || colon[1] != ':')
			return "needs the form [address]:port";
		start = s + 1;
		n = colon - start;
		colon++;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return "has no port";
		if (memchr(s, ':', colon - s))
			return "needs brackets around its IPv6 address, as in [fd00::1]:80";
		n = colon - s;
	}
	if (parse_dec(colon + 1, &v) || v < 1 || v > 65535)
		return "has no valid port (1-65535)";
	if (n >= len)
		return "is not a valid address";
	memcpy(host, start, n);
	host[n] = '\0';
	*port = v;
	return NULL;
}

static const char *endpoint_problem(const char *s, struct sm_endpoint *ep)
{
	char host[INET6_ADDRSTRLEN];
	struct in_addr a4;
	const char *why;
	uint16_t port;

	memset(ep, 0, sizeof(*ep));
	why = split_endpoint(s, host, sizeof(host), &port);
	if (why)
		return why;
	if (s[0] == '[') {
		if (inet_pton(AF_INET6, host, ep->sa.addr.a) != 1)
			return "is not a valid IPv6 address";
	} else {
		if (inet_pton(AF_INET, host, &a4) != 1)
			return "is not a valid IPv4 address";
		ep->sa.addr.a[2] = htonl(0xffff);
		ep->sa.addr.a[3] = a4.s_addr;
	}
	/* "[::ffff:a.b.c.d]" is the IPv4 address, as the datapath sees it. */
	ep->v4 = addr_is_v4(&ep->sa.addr);
	ep->sa.port = htons(port);
	return NULL;
}

int sm_endpoint_parse(const char *s, struct sm_endpoint *ep)
{
	return endpoint_problem(s, ep) ? -EINVAL : 0;
}

void sm_sockaddr_str(const struct sm_sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (addr_is_v4(&sa->addr)) {
		inet_ntop(AF_INET, &sa->addr.a[3], ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(sa->port));
	} else {
		inet_ntop(AF_INET6, sa->addr.a, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(sa->port));
	}
}

/* --- hash tables --- */

static uint64_t hash_bytes(const void *key, size_t len)
{
	const unsigned char *p = key;
	uint64_t h = 14695981039346656037ULL; /* FNV-1a */

	while (len--) {
		h ^= *p++;
		h *= 1099511628211ULL;
	}
	return h;
}

static int htab_grow(struct htab *t)
{
	size_t cap = t->cap ? t->cap * 2 : 64, i, j;
	struct hent *e;

	e = calloc(cap, sizeof(*e));
	if (!e)
		return -ENOMEM;
	for (i = 0; i < t->cap; i++) {
		if (!t->e[i].key)
			continue;
		j = t->e[i].hash & (cap - 1);
		while (e[j].key)
			j = (j + 1) & (cap - 1);
		e[j] = t->e[i];
	}
	free(t->e);
	t->e = e;
	t->cap = cap;
	return 0;
}

static int htab_add(struct htab *t, const void *key, size_t klen, const struct owner *own)
{
	uint64_t h = hash_bytes(key, klen);
	size_t j;

	/* At most half full, so every probe ends at a free slot. */
	if ((t->n + 1) * 2 > t->cap && htab_grow(t))
		return -ENOMEM;
	j = h & (t->cap - 1);
	while (t->e[j].key)
		j = (j + 1) & (t->cap - 1);
	t->e[j] = (struct hent){key, klen, h, *own};
	t->n++;
	return 0;
}

/* The entries under key one by one; *pos starts at 0. */
static const struct owner *htab_next(const struct htab *t, const void *key, size_t klen,
				     size_t *pos)
{
	uint64_t h;
	size_t j;

	if (!t->cap)
		return NULL;
	h = hash_bytes(key, klen);
	for (j = (h + *pos) & (t->cap - 1); t->e[j].key; j = (h + *pos) & (t->cap - 1)) {
		(*pos)++;
		if (t->e[j].hash == h && t->e[j].klen == klen && !memcmp(t->e[j].key, key, klen))
			return &t->e[j].own;
	}
	return NULL;
}

static const struct owner *htab_find(const struct htab *t, const void *key, size_t klen)
{
	size_t pos = 0;

	return htab_next(t, key, klen, &pos);
}

/* --- reporting --- */

static struct sm_loc node_loc(const yaml_node_t *n)
{
	return (struct sm_loc){n->start_mark.line + 1, n->start_mark.column + 1};
}

static void __attribute__((format(printf, 3, 4)))
report(struct parser *ps, struct sm_loc loc, const char *fmt, ...)
{
	va_list ap;

	ps->errors++;
	if (!ps->diags)
		return;
	va_start(ap, fmt);
	diags_vadd(ps->diags, loc, fmt, ap);
	va_end(ap);
}

/* A problem with a field's value, at the value. */
static void __attribute__((format(printf, 4, 5)))
bad(struct parser *ps, const yaml_node_t *n, const struct at *at, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	report(ps, node_loc(n), "field '%s' in %s: %s", at->field, at->where, msg);
}

static void join(char *buf, size_t len, const char *const *words)
{
	size_t off = 0;

	buf[0] = '\0';
	for (; *words && off < len; words++)
		off += snprintf(buf + off, len - off, "%s%s", off ? ", " : "", *words);
}

static void owner_str(const struct owner *o, char *buf, size_t len)
{
	if (o->sub)
		snprintf(buf, len, "subset '%s' of service '%s'", o->sub->name, o->svc->name);
	else
		snprintf(buf, len, "service '%s'", o->svc->name);
}

/* --- nodes and scalars --- */

static yaml_node_t *node_at(struct parser *ps, yaml_node_item_t id)
{
	return yaml_document_get_node(ps->doc, id);
}

#define for_each_item(ps, seq, it, n)                 \
	for ((it) = (seq)->data.sequence.items.start; \
	     (it) < (seq)->data.sequence.items.top && ((n) = node_at(ps, *(it))); (it)++)

#define for_each_pair(map, pair)                                                               \
	for ((pair) = (map)->data.mapping.pairs.start; (pair) < (map)->data.mapping.pairs.top; \
	     (pair)++)

static size_t seq_len(const yaml_node_t *n)
{
	return n->data.sequence.items.top - n->data.sequence.items.start;
}

static size_t map_len(const yaml_node_t *n)
{
	return n->data.mapping.pairs.top - n->data.mapping.pairs.start;
}

static const char *text(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

/* YAML's null: "~", "null" or nothing at all, unquoted, or !!null. */
static bool is_null(const yaml_node_t *n)
{
	const char *v;

	if (n->type != YAML_SCALAR_NODE)
		return false;
	if (n->tag && !strcmp((const char *)n->tag, YAML_NULL_TAG))
		return true;
	if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	v = text(n);
	return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
	       !strcmp(v, "NULL");
}

/* An empty list or mapping says nothing, like a missing key. */
static bool is_empty(const yaml_node_t *n)
{
	if (n->type == YAML_SEQUENCE_NODE)
		return !seq_len(n);
	if (n->type == YAML_MAPPING_NODE)
		return !map_len(n);
	return false;
}

static const char *describe(const yaml_node_t *n, char *buf, size_t len)
{
	bool quoted;

	if (n->type == YAML_MAPPING_NODE)
		return "a mapping";
	if (n->type == YAML_SEQUENCE_NODE)
		return "a list";
	if (is_null(n))
		return "null";
	quoted = n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
	snprintf(buf, len, "%s'%.40s%s'", quoted ? "the quoted string " : "", text(n),
		 n->data.scalar.length > 40 ? "..." : "");
	return buf;
}

static const char *get_str(struct parser *ps, const yaml_node_t *n, const struct at *at,
			   const char *what)
{
	char got[GOT_LEN];

	if (n->type != YAML_SCALAR_NODE || is_null(n)) {
		bad(ps, n, at, "expected %s, got %s", what, describe(n, got, sizeof(got)));
		return NULL;
	}
	if (strlen(text(n)) != n->data.scalar.length) {
		bad(ps, n, at, "%s must not hold a NUL character", what);
		return NULL;
	}
	return text(n);
}

static bool expect_list(struct parser *ps, const yaml_node_t *n, const struct at *at,
			const char *what)
{
	char got[GOT_LEN];

	if (n->type == YAML_SEQUENCE_NODE)
		return true;
	bad(ps, n, at, "expected %s, got %s", what, describe(n, got, sizeof(got)));
	return false;
}

static bool get_uint(struct parser *ps, const yaml_node_t *n, const struct at *at, uint32_t min,
		     uint32_t max, uint32_t *out)
{
	char got[GOT_LEN];
	uint64_t v = 0;
	int err = -EINVAL;

	/* A quoted "90" is a string in YAML; so it is here. */
	if (n->type == YAML_SCALAR_NODE && !is_null(n) &&
	    n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
		err = parse_dec(text(n), &v);
	if (err == -EINVAL) {
		bad(ps, n, at, "expected a non-negative integer, got %s",
		    describe(n, got, sizeof(got)));
		return false;
	}
	if (err || v < min || v > max) {
		bad(ps, n, at, "%.40s is out of range (%u-%u)", text(n), min, max);
		return false;
	}
	*out = v;
	return true;
}

static bool get_enum(struct parser *ps, const yaml_node_t *n, const struct at *at,
		     const char *const *words, unsigned int *out)
{
	char allowed[96], what[112];
	const char *s;
	unsigned int i;

	join(allowed, sizeof(allowed), words);
	snprintf(what, sizeof(what), "one of %s", allowed);
	s = get_str(ps, n, at, what);
	if (!s)
		return false;
	for (i = 0; words[i]; i++) {
		if (!strcmp(s, words[i])) {
			*out = i;
			return true;
		}
	}
	bad(ps, n, at, "unknown value '%.40s' (allowed: %s)", s, allowed);
	return false;
}

/* An optional field: false when absent or wrong (already reported). */
static bool opt_enum(struct parser *ps, const yaml_node_t *n, struct at *at, const char *field,
		     const char *const *words, unsigned int *out)
{
	if (!n)
		return false;
	at->field = field;
	return get_enum(ps, n, at, words, out);
}

static bool opt_uint(struct parser *ps, const yaml_node_t *n, struct at *at, const char *field,
		     uint32_t min, uint32_t max, uint32_t *out)
{
	if (!n)
		return false;
	at->field = field;
	return get_uint(ps, n, at, min, max, out);
}

/* --- mappings with a fixed set of keys --- */

/* The index of a key among keys[], or nkeys after reporting it. */
static size_t field_index(struct parser *ps, const yaml_node_t *k, const char *where,
			  const char *const *keys, size_t nkeys)
{
	char allowed[160], got[GOT_LEN];
	size_t i;

	if (k->type != YAML_SCALAR_NODE) {
		report(ps, node_loc(k), "%s: expected a field name, got %s", where,
		       describe(k, got, sizeof(got)));
		return nkeys;
	}
	for (i = 0; i < nkeys; i++)
		if (!strcmp(keys[i], text(k)))
			return i;
	join(allowed, sizeof(allowed), keys);
	report(ps, node_loc(k), "unknown field '%.64s' in %s (allowed: %s)", text(k), where,
	       allowed);
	return nkeys;
}

/*
 * Reads a mapping whose keys must come from keys[] (NULL-terminated):
 * vals[i] is the value of keys[i], or NULL when it is absent or null.
 * Unknown and repeated keys are reported here. False when map is no
 * mapping at all; a null map is an empty one.
 */
static bool collect(struct parser *ps, yaml_node_t *map, const char *where, const char *const *keys,
		    yaml_node_t **vals)
{
	yaml_node_t *first[MAX_FIELDS] = {NULL};
	yaml_node_t *k, *v;
	yaml_node_pair_t *pair;
	char got[GOT_LEN];
	size_t nkeys, i;

	for (nkeys = 0; keys[nkeys]; nkeys++)
		vals[nkeys] = NULL;
	if (!map || is_null(map))
		return true;
	if (map->type != YAML_MAPPING_NODE) {
		report(ps, node_loc(map), "%s: expected a mapping, got %s", where,
		       describe(map, got, sizeof(got)));
		return false;
	}
	for_each_pair(map, pair)
	{
		k = node_at(ps, pair->key);
		v = node_at(ps, pair->value);
		i = field_index(ps, k, where, keys, nkeys);
		if (i == nkeys)
			continue;
		if (first[i]) {
			report(ps, node_loc(k), "duplicate field '%s' in %s (first at line %u)",
			       keys[i], where, node_loc(first[i]).line);
			continue;
		}
		first[i] = k;
		vals[i] = is_null(v) ? NULL : v;
	}
	return true;
}

static bool require(struct parser *ps, const yaml_node_t *map, const char *where,
		    const yaml_node_t *v, const char *key)
{
	if (v)
		return true;
	report(ps, node_loc(map), "%s has no '%s'", where, key);
	return false;
}

/* --- names --- */

static const char *name_problem(const char *s)
{
	size_t len = strlen(s), i;

	if (!len)
		return "is empty";
	if (len >= SM_NAME_LEN)
		return "is longer than 63 characters";
	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
		return "must start with a lower-case letter or a digit";
	for (i = 0; i < len; i++) {
		if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789-_.", s[i]))
			return "may hold only a-z, 0-9, '-', '_' and '.'";
	}
	if (!strcmp(s, SM_WORLD_NAME))
		return "is reserved: 'world' names every peer outside the mesh";
	return NULL;
}

/*
 * The name a service or subset key gives. A name that breaks the naming
 * rules is reported but still returned: the entry is read, and rules that
 * name it resolve, so one bad name is one error.
 */
static const char *entry_name(struct parser *ps, const yaml_node_t *k, const char *what)
{
	char got[GOT_LEN];
	const char *why;

	if (k->type != YAML_SCALAR_NODE || is_null(k) || strlen(text(k)) != k->data.scalar.length) {
		report(ps, node_loc(k), "expected a %s name, got %s", what,
		       describe(k, got, sizeof(got)));
		return NULL;
	}
	why = name_problem(text(k));
	if (why)
		report(ps, node_loc(k), "%s name '%.64s' %s", what, text(k), why);
	return text(k);
}

/* Edit distance of a and b, or limit + 1 once it is over limit. */
static unsigned int edit_distance(const char *a, const char *b, unsigned int limit)
{
	unsigned int row[SM_NAME_LEN + 1], diag, up, best, v;
	size_t la = strlen(a), lb = strlen(b), i, j;

	if (la >= SM_NAME_LEN || lb >= SM_NAME_LEN || (la > lb ? la - lb : lb - la) > limit)
		return limit + 1;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		diag = row[0];
		row[0] = best = i;
		for (j = 1; j <= lb; j++) {
			up = row[j];
			v = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < v)
				v = up + 1;
			if (row[j - 1] + 1 < v)
				v = row[j - 1] + 1;
			row[j] = v;
			diag = up;
			if (v < best)
				best = v;
		}
		if (best > limit)
			return limit + 1;
	}
	return row[lb];
}

static const struct sm_service *closest(const struct sm_policy *p, const char *s)
{
	const struct sm_service *hint = NULL;
	unsigned int best = 3, d;
	size_t i;

	for (i = 0; i < p->n_services; i++) {
		d = edit_distance(s, p->services[i].name, 2);
		if (d < best) {
			best = d;
			hint = &p->services[i];
		}
	}
	return hint;
}

/* Each unknown name is compared with every service once, not per use. */
static void unknown_service(struct parser *ps, const yaml_node_t *n, const struct at *at,
			    const char *s)
{
	const struct owner *o = htab_find(&ps->unknown, s, strlen(s));
	struct owner hint = {0};

	if (!o) {
		hint.svc = closest(ps->p, s);
		if (htab_add(&ps->unknown, s, strlen(s), &hint))
			ps->oom = true;
		o = &hint;
	}
	if (o->svc)
		bad(ps, n, at, "unknown service '%.64s' (did you mean '%s'?)", s, o->svc->name);
	else
		bad(ps, n, at, "unknown service '%.64s'", s);
}

/* A name in a rule or quota -> its slot in ps->mark (world is last). */
static bool resolve(struct parser *ps, const yaml_node_t *n, const struct at *at, const char *s,
		    bool dest, size_t *slot)
{
	const struct owner *o;

	if (!strcmp(s, SM_WORLD_NAME)) {
		if (dest) {
			bad(ps, n, at,
			    "world is not a destination; defaults.egress governs non-mesh "
			    "destinations");
			return false;
		}
		*slot = ps->p->n_services;
		return true;
	}
	o = htab_find(&ps->names, s, strlen(s));
	if (o) {
		*slot = o->svc - ps->p->services;
		return true;
	}
	/* With no readable services section every name would be unknown. */
	if (!ps->names_broken)
		unknown_service(ps, n, at, s);
	return false;
}

/* --- lists of cgroups and endpoints --- */

static const char *cgroup_problem(const char *s)
{
	const char *c, *end;
	size_t n;

	if (s[0] != '/')
		return "must start with '/'";
	if (!s[1])
		return "is the whole machine; a service needs a cgroup of its own";
	if (strlen(s) >= PATH_MAX)
		return "is too long";
	if (strstr(s, "//"))
		return "must not hold '//'";
	if (s[strlen(s) - 1] == '/')
		return "must not end with '/'";
	/* Paths are compared as written, so they must be canonical. */
	for (c = s + 1; *c; c = *end ? end + 1 : end) {
		end = strchr(c, '/');
		if (!end)
			end = c + strlen(c);
		n = end - c;
		if ((n == 1 && c[0] == '.') || (n == 2 && !strncmp(c, "..", 2)))
			return "must not hold '.' or '..' components";
	}
	return NULL;
}

static void parse_cgroups(struct parser *ps, yaml_node_t *seq, const struct at *at,
			  struct sm_cgroup_ref **out, size_t *count)
{
	struct sm_cgroup_ref *cg;
	yaml_node_item_t *it;
	const char *s, *why;
	yaml_node_t *n;

	if (!seq || !expect_list(ps, seq, at, "a list of cgroup paths") || !seq_len(seq))
		return;
	cg = calloc(seq_len(seq), sizeof(*cg));
	if (!cg) {
		ps->oom = true;
		return;
	}
	*out = cg;
	for_each_item(ps, seq, it, n)
	{
		s = get_str(ps, n, at, "a cgroup path");
		if (!s)
			continue;
		why = cgroup_problem(s);
		if (why) {
			bad(ps, n, at, "cgroup path '%.64s' %s", s, why);
			continue;
		}
		cg[*count].path = strdup(s);
		if (!cg[*count].path) {
			ps->oom = true;
			return;
		}
		cg[(*count)++].loc = node_loc(n);
	}
}

static void parse_endpoints(struct parser *ps, yaml_node_t *seq, const struct at *at,
			    struct sm_endpoint **out, size_t *count)
{
	struct sm_endpoint *eps;
	yaml_node_item_t *it;
	const char *s, *why;
	yaml_node_t *n;

	if (!seq || !expect_list(ps, seq, at, "a list of addresses with ports") || !seq_len(seq))
		return;
	eps = calloc(seq_len(seq), sizeof(*eps));
	if (!eps) {
		ps->oom = true;
		return;
	}
	*out = eps;
	for_each_item(ps, seq, it, n)
	{
		/* Unquoted, "[fd00::1]:80" reads as YAML flow syntax. */
		if (n->type != YAML_SCALAR_NODE) {
			bad(ps, n, at,
			    "expected an address with a port, got %s (IPv6 endpoints need quotes: "
			    "\"[fd00::1]:80\")",
			    n->type == YAML_SEQUENCE_NODE ? "a list" : "a mapping");
			continue;
		}
		s = get_str(ps, n, at, "an address with a port");
		if (!s)
			continue;
		why = endpoint_problem(s, &eps[*count]);
		if (why) {
			bad(ps, n, at, "'%.64s' %s", s, why);
			continue;
		}
		eps[(*count)++].loc = node_loc(n);
	}
}

/* --- defaults and outlier detection --- */

enum { OUT_FAILURES, OUT_EJECT, OUT_N };
static const char *const outlier_keys[] = {"failures", "eject_seconds", NULL};
KEYS_CHECK(outlier_keys, OUT_N);

static void parse_outlier(struct parser *ps, yaml_node_t *map, const char *owner,
			  struct sm_outlier *o)
{
	yaml_node_t *v[OUT_N];
	char where[WHERE_LEN];
	struct at at = {.where = where};

	if (!map)
		return;
	snprintf(where, sizeof(where), "outlier of %s", owner);
	if (!collect(ps, map, where, outlier_keys, v))
		return;
	opt_uint(ps, v[OUT_FAILURES], &at, "failures", 0, UINT16_MAX, &o->failures);
	opt_uint(ps, v[OUT_EJECT], &at, "eject_seconds", 1, UINT16_MAX, &o->eject_seconds);
}

enum { DEF_MODE, DEF_EGRESS, DEF_OUTLIER, DEF_N };
static const char *const defaults_keys[] = {"mode", "egress", "outlier", NULL};
KEYS_CHECK(defaults_keys, DEF_N);

static void parse_defaults(struct parser *ps, yaml_node_t *map)
{
	struct sm_policy *p = ps->p;
	struct at at = {.where = "defaults"};
	yaml_node_t *v[DEF_N];
	unsigned int x;

	p->default_mode = SM_MODE_ENFORCE;
	p->egress = SM_EGRESS_ALLOW;
	p->default_outlier.failures = DEFAULT_FAILURES;
	p->default_outlier.eject_seconds = DEFAULT_EJECT_SECONDS;
	if (!collect(ps, map, "defaults", defaults_keys, v))
		return;
	if (opt_enum(ps, v[DEF_MODE], &at, "mode", mode_names, &x))
		p->default_mode = x;
	if (opt_enum(ps, v[DEF_EGRESS], &at, "egress", egress_names, &x))
		p->egress = x;
	parse_outlier(ps, v[DEF_OUTLIER], "defaults", &p->default_outlier);
}

/* --- services and subsets --- */

enum { SUB_WEIGHT, SUB_CGROUPS, SUB_ENDPOINTS, SUB_N };
static const char *const subset_keys[] = {"weight", "cgroups", "endpoints", NULL};
KEYS_CHECK(subset_keys, SUB_N);

/* False unless the subset has a valid weight. */
static bool parse_subset(struct parser *ps, struct sm_service *svc, struct sm_subset *sub,
			 yaml_node_t *map)
{
	struct owner own = {.svc = svc, .sub = sub};
	yaml_node_t *v[SUB_N];
	char where[WHERE_LEN];
	struct at at = {.where = where};

	owner_str(&own, where, sizeof(where));
	if (!collect(ps, map, where, subset_keys, v))
		return false;
	at.field = "cgroups";
	parse_cgroups(ps, v[SUB_CGROUPS], &at, &sub->cgroups, &sub->n_cgroups);
	at.field = "endpoints";
	parse_endpoints(ps, v[SUB_ENDPOINTS], &at, &sub->endpoints, &sub->n_endpoints);
	if (!v[SUB_WEIGHT]) {
		report(ps, sub->loc, "%s has no weight", where);
		return false;
	}
	return opt_uint(ps, v[SUB_WEIGHT], &at, "weight", 0, MAX_WEIGHT, &sub->weight);
}

static const struct sm_subset *find_subset(const struct sm_service *svc, const char *name)
{
	size_t i;

	for (i = 0; i < svc->n_subsets; i++)
		if (!strcmp(svc->subsets[i].name, name))
			return &svc->subsets[i];
	return NULL;
}

/* False unless the subset was read with a valid weight. */
static bool add_subset(struct parser *ps, struct sm_service *svc, const yaml_node_pair_t *pair)
{
	yaml_node_t *k = node_at(ps, pair->key);
	const struct sm_subset *prev;
	struct sm_subset *sub;
	const char *name;

	name = entry_name(ps, k, "subset");
	if (!name)
		return false;
	prev = find_subset(svc, name);
	if (prev) {
		report(ps, node_loc(k),
		       "duplicate subset '%.64s' in service '%s' (first at line %u)", name,
		       svc->name, prev->loc.line);
		return false;
	}
	sub = &svc->subsets[svc->n_subsets++];
	snprintf(sub->name, sizeof(sub->name), "%s", name);
	sub->loc = node_loc(k);
	return parse_subset(ps, svc, sub, node_at(ps, pair->value));
}

static void check_weights(struct parser *ps, const struct sm_service *svc, bool weights_ok)
{
	uint64_t total = 0;
	size_t i;

	if (svc->n_subsets > SM_MAX_SUBSETS)
		report(ps, svc->subsets[SM_MAX_SUBSETS].loc,
		       "service '%s' has %zu subsets; at most %d are allowed", svc->name,
		       svc->n_subsets, SM_MAX_SUBSETS);
	for (i = 0; i < svc->n_subsets; i++)
		total += svc->subsets[i].weight;
	/* A weight already reported wrong would make this one noise. */
	if (weights_ok && svc->n_subsets && !total)
		report(ps, svc->loc,
		       "every subset of service '%s' has weight 0; at least one needs a positive "
		       "weight",
		       svc->name);
}

static void parse_subsets(struct parser *ps, struct sm_service *svc, yaml_node_t *map,
			  struct at *at)
{
	yaml_node_pair_t *pair;
	bool weights_ok = true;
	char got[GOT_LEN];

	if (!map)
		return;
	at->field = "subsets";
	if (map->type != YAML_MAPPING_NODE) {
		bad(ps, map, at, "expected a mapping of subset names to subsets, got %s",
		    describe(map, got, sizeof(got)));
		return;
	}
	if (!map_len(map))
		return;
	svc->subsets = calloc(map_len(map), sizeof(*svc->subsets));
	if (!svc->subsets) {
		ps->oom = true;
		return;
	}
	for_each_pair(map, pair) if (!add_subset(ps, svc, pair)) weights_ok = false;
	check_weights(ps, svc, weights_ok);
}

enum {
	SVC_CGROUPS,
	SVC_ENDPOINTS,
	SVC_VIP,
	SVC_PROTOCOL,
	SVC_AFFINITY,
	SVC_MODE,
	SVC_DRAIN,
	SVC_OUTLIER,
	SVC_SUBSETS,
	SVC_N
};
static const char *const service_keys[] = {"cgroups",  "endpoints", "vip",   "protocol",
					   "affinity", "mode",	    "drain", "outlier",
					   "subsets",  NULL};
KEYS_CHECK(service_keys, SVC_N);

static void parse_service_lists(struct parser *ps, struct sm_service *svc, yaml_node_t **v,
				struct at *at)
{
	at->field = "cgroups";
	parse_cgroups(ps, v[SVC_CGROUPS], at, &svc->cgroups, &svc->n_cgroups);
	at->field = "endpoints";
	parse_endpoints(ps, v[SVC_ENDPOINTS], at, &svc->endpoints, &svc->n_endpoints);
	at->field = "vip";
	parse_endpoints(ps, v[SVC_VIP], at, &svc->vips, &svc->n_vips);
}

static void parse_service_options(struct parser *ps, struct sm_service *svc, yaml_node_t **v,
				  struct at *at)
{
	unsigned int x;

	if (opt_enum(ps, v[SVC_PROTOCOL], at, "protocol", proto_names, &x))
		svc->protocols = x + 1;
	if (opt_enum(ps, v[SVC_AFFINITY], at, "affinity", affinity_names, &x))
		svc->affinity = x;
	if (opt_enum(ps, v[SVC_MODE], at, "mode", mode_names, &x))
		svc->mode = x;
	if (opt_enum(ps, v[SVC_DRAIN], at, "drain", drain_names, &x))
		svc->drain = x;
	parse_outlier(ps, v[SVC_OUTLIER], at->where, &svc->outlier);
}

static bool given(const yaml_node_t *n)
{
	return n && !is_empty(n);
}

static void parse_service(struct parser *ps, struct sm_service *svc, yaml_node_t *map)
{
	char where[WHERE_LEN];
	struct at at = {.where = where};
	yaml_node_t *v[SVC_N];

	svc->protocols = SM_PROTO_TCP;
	svc->mode = ps->p->default_mode;
	svc->outlier = ps->p->default_outlier;
	snprintf(where, sizeof(where), "service '%s'", svc->name);
	if (!collect(ps, map, where, service_keys, v))
		return;
	parse_service_lists(ps, svc, v, &at);
	parse_service_options(ps, svc, v, &at);
	parse_subsets(ps, svc, v[SVC_SUBSETS], &at);
	if (!given(v[SVC_CGROUPS]) && !given(v[SVC_ENDPOINTS]) && !given(v[SVC_VIP]) &&
	    !given(v[SVC_SUBSETS]))
		report(ps, svc->loc, "service '%s' has no cgroups, endpoints, vip or subsets",
		       svc->name);
}

static void add_service(struct parser *ps, const yaml_node_pair_t *pair)
{
	yaml_node_t *k = node_at(ps, pair->key);
	struct sm_policy *p = ps->p;
	const struct owner *prev;
	struct sm_service *svc;
	struct owner own = {0};
	const char *name;

	name = entry_name(ps, k, "service");
	if (!name)
		return;
	prev = htab_find(&ps->names, name, strlen(name));
	if (prev) {
		report(ps, node_loc(k), "duplicate service '%.64s' (first at line %u)", name,
		       prev->loc.line);
		return;
	}
	svc = &p->services[p->n_services++];
	snprintf(svc->name, sizeof(svc->name), "%s", name);
	svc->loc = node_loc(k);
	own.svc = svc;
	own.loc = svc->loc;
	if (htab_add(&ps->names, name, strlen(name), &own))
		ps->oom = true;
	parse_service(ps, svc, node_at(ps, pair->value));
}

static void parse_services(struct parser *ps, yaml_node_t *map)
{
	struct at at = {"services", "policy"};
	struct sm_policy *p = ps->p;
	yaml_node_pair_t *pair;
	char got[GOT_LEN];

	if (!map)
		return;
	if (map->type != YAML_MAPPING_NODE) {
		bad(ps, map, &at, "expected a mapping of service names to services, got %s",
		    describe(map, got, sizeof(got)));
		ps->names_broken = true;
		return;
	}
	if (!map_len(map))
		return;
	p->services = calloc(map_len(map), sizeof(*p->services));
	if (!p->services) {
		ps->oom = true;
		return;
	}
	for_each_pair(map, pair) add_service(ps, pair);
}

/* --- cross-checks between services --- */

static const char *const kind_name[] = {"cgroup", "endpoint", "VIP"};
static const char *const kind_role[] = {"a cgroup", "an endpoint", "the VIP"};

static bool loc_before(struct sm_loc a, struct sm_loc b)
{
	return a.line < b.line || (a.line == b.line && a.col < b.col);
}

/* Two owners claim one item: report at the later, naming the earlier. */
static void clash(struct parser *ps, const char *item, const struct owner *a, const struct owner *b)
{
	char wa[WHERE_LEN], wb[WHERE_LEN];
	const struct owner *t;

	if (loc_before(a->loc, b->loc)) {
		t = a;
		a = b;
		b = t;
	}
	owner_str(a, wa, sizeof(wa));
	owner_str(b, wb, sizeof(wb));
	if (a->svc == b->svc && a->sub == b->sub && a->kind == b->kind)
		report(ps, a->loc, "duplicate %s '%s' in %s (first at line %u)", kind_name[a->kind],
		       item, wa, b->loc.line);
	else
		report(ps, a->loc, "%s '%s' in %s is already %s of %s (line %u)",
		       kind_name[a->kind], item, wa, kind_role[b->kind], wb, b->loc.line);
}

static void claim_cgroups(struct parser *ps, struct owner own, const struct sm_cgroup_ref *cg,
			  size_t n)
{
	const struct owner *prev;
	size_t i;

	own.kind = ITEM_CGROUP;
	for (i = 0; i < n; i++) {
		own.loc = cg[i].loc;
		prev = htab_find(&ps->cgroups, cg[i].path, strlen(cg[i].path));
		if (prev)
			clash(ps, cg[i].path, &own, prev);
		else if (htab_add(&ps->cgroups, cg[i].path, strlen(cg[i].path), &own))
			ps->oom = true;
	}
}

/*
 * Endpoints clash when their protocols overlap: the datapath keys them by
 * address, port and protocol. A VIP is never a real host, so it clashes
 * with any endpoint or VIP at its address and port, whatever the protocol.
 */
static const struct owner *dest_clash(const struct htab *t, const struct sm_sockaddr *sa,
				      const struct owner *own)
{
	const struct owner *o;
	size_t pos = 0;

	while ((o = htab_next(t, sa, sizeof(*sa), &pos)))
		if (o->kind == ITEM_VIP || own->kind == ITEM_VIP || (o->protocols & own->protocols))
			return o;
	return NULL;
}

static void claim_dests(struct parser *ps, struct owner own, enum item_kind kind,
			const struct sm_endpoint *ep, size_t n)
{
	const struct owner *prev;
	char item[64];
	size_t i;

	own.kind = kind;
	for (i = 0; i < n; i++) {
		own.loc = ep[i].loc;
		prev = dest_clash(&ps->dests, &ep[i].sa, &own);
		if (prev) {
			sm_sockaddr_str(&ep[i].sa, item, sizeof(item));
			clash(ps, item, &own, prev);
		}
		/*
		 * Kept even when it clashes, so later entries are checked
		 * against it too: after a tcp endpoint and a clashing
		 * tcp+udp one, a third, udp only, clashes with the second.
		 */
		if (htab_add(&ps->dests, &ep[i].sa, sizeof(ep[i].sa), &own))
			ps->oom = true;
	}
}

static void claim_service(struct parser *ps, const struct sm_service *svc)
{
	struct owner own = {.svc = svc, .protocols = svc->protocols};
	const struct sm_subset *sub;
	size_t i;

	claim_cgroups(ps, own, svc->cgroups, svc->n_cgroups);
	claim_dests(ps, own, ITEM_ENDPOINT, svc->endpoints, svc->n_endpoints);
	claim_dests(ps, own, ITEM_VIP, svc->vips, svc->n_vips);
	for (i = 0; i < svc->n_subsets; i++) {
		sub = &svc->subsets[i];
		own.sub = sub;
		claim_cgroups(ps, own, sub->cgroups, sub->n_cgroups);
		claim_dests(ps, own, ITEM_ENDPOINT, sub->endpoints, sub->n_endpoints);
	}
}

/* --- rules --- */

static void add_name(struct parser *ps, const yaml_node_t *n, const struct at *at, bool dest,
		     char (*names)[SM_NAME_LEN], size_t *count)
{
	const char *s = get_str(ps, n, at, "a service name");
	size_t slot;

	if (!s || !resolve(ps, n, at, s, dest, &slot))
		return;
	if (ps->mark[slot] == ps->mark_gen) {
		bad(ps, n, at, "'%s' is listed twice", s);
		return;
	}
	ps->mark[slot] = ps->mark_gen;
	snprintf(names[(*count)++], SM_NAME_LEN, "%s", s);
}

/* A name or a list of names: a rule's from or to. */
static void parse_names(struct parser *ps, yaml_node_t *n, const struct at *at, bool dest,
			char (**out)[SM_NAME_LEN], size_t *count)
{
	char(*names)[SM_NAME_LEN];
	yaml_node_item_t *it;
	yaml_node_t *item;
	char got[GOT_LEN];
	size_t max = 1;

	if (n->type == YAML_MAPPING_NODE) {
		bad(ps, n, at, "expected a service name or a list of them, got %s",
		    describe(n, got, sizeof(got)));
		return;
	}
	if (n->type == YAML_SEQUENCE_NODE)
		max = seq_len(n);
	if (!max) {
		bad(ps, n, at, "the list is empty");
		return;
	}
	names = calloc(max, sizeof(*names));
	if (!names) {
		ps->oom = true;
		return;
	}
	*out = names;
	/* A new generation of marks: no name seen in this list yet. */
	ps->mark_gen++;
	if (n->type == YAML_SCALAR_NODE)
		add_name(ps, n, at, dest, names, count);
	else
		for_each_item(ps, n, it, item) add_name(ps, item, at, dest, names, count);
}

/* "80" or "8000-8080" -> [lo, hi]; false if s is neither. */
static bool text_range(const char *s, unsigned int *lo, unsigned int *hi)
{
	const char *dash = strchr(s, '-');
	uint64_t a, b;
	char first[8];

	if (!dash) {
		if (parse_dec(s, &a))
			return false;
		b = a;
	} else {
		if ((size_t)(dash - s) >= sizeof(first))
			return false;
		memcpy(first, s, dash - s);
		first[dash - s] = '\0';
		if (parse_dec(first, &a) || parse_dec(dash + 1, &b))
			return false;
	}
	if (a < 1 || b < 1 || a > 65535 || b > 65535)
		return false;
	*lo = a;
	*hi = b;
	return true;
}

static bool port_range(struct parser *ps, const yaml_node_t *n, const struct at *at,
		       unsigned int *lo, unsigned int *hi)
{
	const char *s = get_str(ps, n, at, "a port or a range like 8000-8080");

	if (!s)
		return false;
	if (!text_range(s, lo, hi)) {
		bad(ps, n, at, "'%.40s' is not a port or a port range (ports are 1-65535)", s);
		return false;
	}
	if (*lo > *hi) {
		bad(ps, n, at, "port range '%s' runs backwards", s);
		return false;
	}
	return true;
}

/*
 * Ports are kept in the order written, ranges expanded. A port listed
 * twice is an error, which also bounds a rule at 65535 ports.
 */
static void add_ports(struct parser *ps, const yaml_node_t *n, const struct at *at,
		      struct sm_rule *r, unsigned int lo, unsigned int hi)
{
	bool reported = false;
	unsigned int port;

	for (port = lo; port <= hi; port++) {
		if (ps->ports[port / 64] & (1ULL << (port % 64))) {
			if (!reported)
				bad(ps, n, at, "port %u is listed twice", port);
			reported = true;
			continue;
		}
		ps->ports[port / 64] |= 1ULL << (port % 64);
		r->ports[r->n_ports++] = port;
	}
}

/* How many ports the list can hold at most, for one allocation. */
static size_t count_ports(struct parser *ps, yaml_node_t *seq)
{
	unsigned int lo, hi;
	yaml_node_item_t *it;
	yaml_node_t *n;
	size_t total = 0;

	for_each_item(ps, seq, it, n) if (n->type == YAML_SCALAR_NODE &&
					  text_range(text(n), &lo, &hi) && lo <= hi)
		total += hi - lo + 1;
	return total < 65535 ? total : 65535;
}

static void parse_ports(struct parser *ps, yaml_node_t *seq, const struct at *at, struct sm_rule *r)
{
	yaml_node_item_t *it;
	unsigned int lo, hi;
	yaml_node_t *n;
	size_t total, i;

	if (!expect_list(ps, seq, at, "a list of ports"))
		return;
	/* Read as "no port" it would allow nothing; as "every port", all. */
	if (!seq_len(seq)) {
		bad(ps, seq, at, "the list is empty; leave ports out to allow every port");
		return;
	}
	total = count_ports(ps, seq);
	if (total) {
		r->ports = calloc(total, sizeof(*r->ports));
		if (!r->ports) {
			ps->oom = true;
			return;
		}
	}
	for_each_item(ps, seq, it, n) if (port_range(ps, n, at, &lo, &hi))
		add_ports(ps, n, at, r, lo, hi);
	/* Every bit set belongs to this rule: clear whole words. */
	for (i = 0; i < r->n_ports; i++)
		ps->ports[r->ports[i] / 64] = 0;
}

enum { RULE_FROM, RULE_TO, RULE_PORTS, RULE_PROTOCOL, RULE_N };
static const char *const rule_keys[] = {"from", "to", "ports", "protocol", NULL};
KEYS_CHECK(rule_keys, RULE_N);

/* A protocol a destination does not speak would make the rule allow nothing. */
static void check_rule_protocol(struct parser *ps, const yaml_node_t *n, const struct at *at,
				const struct sm_rule *r)
{
	static const char *const names[] = {"", "tcp", "udp", "tcp and udp"};
	const struct sm_service *s;
	size_t i;

	for (i = 0; i < r->n_to; i++) {
		s = sm_policy_service(ps->p, r->to[i]);
		if (s && !(s->protocols & r->protocols))
			bad(ps, n, at,
			    "service '%s' speaks %s only: this rule "
			    "would allow nothing there",
			    s->name, names[s->protocols & 3]);
	}
}

static void parse_rule(struct parser *ps, struct sm_rule *r, size_t idx, yaml_node_t *map)
{
	yaml_node_t *v[RULE_N];
	struct at at = {0};
	char where[32];
	unsigned int x;

	/* "rule N" counts from 0, as the flow log's rule field does. */
	snprintf(where, sizeof(where), "rule %zu", idx);
	at.where = where;
	r->loc = node_loc(map);
	r->protocols = SM_PROTO_TCP | SM_PROTO_UDP;
	if (!collect(ps, map, where, rule_keys, v))
		return;
	at.field = "from";
	if (require(ps, map, where, v[RULE_FROM], "from"))
		parse_names(ps, v[RULE_FROM], &at, false, &r->from, &r->n_from);
	at.field = "to";
	if (require(ps, map, where, v[RULE_TO], "to"))
		parse_names(ps, v[RULE_TO], &at, true, &r->to, &r->n_to);
	at.field = "ports";
	if (v[RULE_PORTS])
		parse_ports(ps, v[RULE_PORTS], &at, r);
	if (opt_enum(ps, v[RULE_PROTOCOL], &at, "protocol", proto_names, &x)) {
		r->protocols = x + 1;
		check_rule_protocol(ps, v[RULE_PROTOCOL], &at, r);
	}
}

static void parse_rules(struct parser *ps, yaml_node_t *seq)
{
	struct at at = {"rules", "policy"};
	struct sm_policy *p = ps->p;
	yaml_node_item_t *it;
	yaml_node_t *n;

	if (!seq || !expect_list(ps, seq, &at, "a list of rules") || !seq_len(seq))
		return;
	p->rules = calloc(seq_len(seq), sizeof(*p->rules));
	if (!p->rules) {
		ps->oom = true;
		return;
	}
	for_each_item(ps, seq, it, n)
	{
		parse_rule(ps, &p->rules[p->n_rules], p->n_rules, n);
		p->n_rules++;
	}
}

/* --- quotas --- */

static bool quota_name(struct parser *ps, const yaml_node_t *n, const struct at *at, bool dest,
		       char *out)
{
	const char *s = get_str(ps, n, at, "a service name");
	size_t slot;

	if (!s || !resolve(ps, n, at, s, dest, &slot))
		return false;
	snprintf(out, SM_NAME_LEN, "%s", s);
	return true;
}

enum { Q_FROM, Q_TO, Q_RATE, Q_BURST, Q_MAX, Q_N };
static const char *const quota_keys[] = {"from",	   "to", "connections_per_second", "burst",
					 "max_concurrent", NULL};
KEYS_CHECK(quota_keys, Q_N);

static void parse_limits(struct parser *ps, struct sm_quota *q, yaml_node_t **v, struct at *at)
{
	if (!v[Q_RATE] && !v[Q_MAX])
		report(ps, q->loc, "%s sets neither connections_per_second nor max_concurrent",
		       at->where);
	if (v[Q_BURST] && !v[Q_RATE]) {
		at->field = "burst";
		bad(ps, v[Q_BURST], at, "burst needs connections_per_second");
	}
	opt_uint(ps, v[Q_RATE], at, "connections_per_second", 1, MAX_RATE, &q->rate);
	opt_uint(ps, v[Q_MAX], at, "max_concurrent", 1, UINT32_MAX, &q->max_concurrent);
	q->burst = q->rate;
	opt_uint(ps, v[Q_BURST], at, "burst", 1, UINT32_MAX, &q->burst);
}

/* One quota per (from, to) pair: a second could only contradict it. */
static void claim_pair(struct parser *ps, const struct sm_quota *q)
{
	struct owner own = {.loc = q->loc};
	const struct owner *prev;

	prev = htab_find(&ps->pairs, q->from, 2 * SM_NAME_LEN);
	if (prev)
		report(ps, q->loc, "second quota for %s -> %s (the first is at line %u)", q->from,
		       q->to, prev->loc.line);
	else if (htab_add(&ps->pairs, q->from, 2 * SM_NAME_LEN, &own))
		ps->oom = true;
}

static void parse_quota(struct parser *ps, struct sm_quota *q, size_t idx, yaml_node_t *map)
{
	yaml_node_t *v[Q_N];
	struct at at = {0};
	char where[32];
	bool names_ok;

	snprintf(where, sizeof(where), "quota %zu", idx);
	at.where = where;
	q->loc = node_loc(map);
	if (!collect(ps, map, where, quota_keys, v))
		return;
	at.field = "from";
	names_ok = require(ps, map, where, v[Q_FROM], "from") &&
		   quota_name(ps, v[Q_FROM], &at, false, q->from);
	at.field = "to";
	if (!require(ps, map, where, v[Q_TO], "to") || !quota_name(ps, v[Q_TO], &at, true, q->to))
		names_ok = false;
	parse_limits(ps, q, v, &at);
	if (names_ok)
		claim_pair(ps, q);
}

static void parse_quotas(struct parser *ps, yaml_node_t *seq)
{
	struct at at = {"quotas", "policy"};
	struct sm_policy *p = ps->p;
	yaml_node_item_t *it;
	yaml_node_t *n;

	if (!seq || !expect_list(ps, seq, &at, "a list of quotas") || !seq_len(seq))
		return;
	p->quotas = calloc(seq_len(seq), sizeof(*p->quotas));
	if (!p->quotas) {
		ps->oom = true;
		return;
	}
	for_each_item(ps, seq, it, n)
	{
		parse_quota(ps, &p->quotas[p->n_quotas], p->n_quotas, n);
		p->n_quotas++;
	}
}

/* --- the document --- */

enum { TOP_API, TOP_NODE, TOP_DEFAULTS, TOP_SERVICES, TOP_RULES, TOP_QUOTAS, TOP_N };
static const char *const top_keys[] = {"apiVersion", "node",   "defaults", "services",
				       "rules",	     "quotas", NULL};
KEYS_CHECK(top_keys, TOP_N);

/* False when the file is for another schema: its content means nothing. */
static bool check_api(struct parser *ps, const yaml_node_t *root, const yaml_node_t *n)
{
	struct at at = {"apiVersion", "policy"};
	const char *s;

	if (!n) {
		report(ps, node_loc(root), "policy has no apiVersion (want 'apiVersion: %s')",
		       SM_POLICY_API_VERSION);
		return true;
	}
	s = get_str(ps, n, &at, "a version");
	if (s && !strcmp(s, SM_POLICY_API_VERSION))
		return true;
	if (s)
		bad(ps, n, &at, "unsupported version '%.40s' (this agent reads %s)", s,
		    SM_POLICY_API_VERSION);
	return false;
}

static void parse_node_name(struct parser *ps, const yaml_node_t *n)
{
	struct at at = {"node", "policy"};
	char *node = ps->p->node;
	size_t len = sizeof(ps->p->node);
	const char *s;

	if (!n) {
		/* Never fails for a buffer this size on Linux (HOST_NAME_MAX
		 * is 64); the fallback only keeps the name defined. */
		if (gethostname(node, len - 1))
			snprintf(node, len, "localhost");
		return;
	}
	s = get_str(ps, n, &at, "a node name");
	if (!s)
		return;
	/* It goes into every flow record: a host name's characters only. */
	if (!*s || strlen(s) >= len ||
	    strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		      "0123456789.-_") != strlen(s))
		bad(ps, n, &at,
		    "a node name has 1 to %zu letters, digits, "
		    "'.', '-' or '_'",
		    len - 1);
	else
		snprintf(node, len, "%s", s);
}

static void parse_root(struct parser *ps, yaml_node_t *root)
{
	struct sm_policy *p = ps->p;
	yaml_node_t *v[TOP_N];
	size_t i;

	if (!collect(ps, root, "policy", top_keys, v) || !check_api(ps, root, v[TOP_API]))
		return;
	parse_node_name(ps, v[TOP_NODE]);
	parse_defaults(ps, v[TOP_DEFAULTS]);
	parse_services(ps, v[TOP_SERVICES]);
	ps->mark = calloc(p->n_services + 1, sizeof(*ps->mark));
	if (!ps->mark) {
		ps->oom = true;
		return;
	}
	for (i = 0; i < p->n_services; i++)
		claim_service(ps, &p->services[i]);
	parse_rules(ps, v[TOP_RULES]);
	parse_quotas(ps, v[TOP_QUOTAS]);
}

/*
 * A VIP over plain endpoints and no subsets: the endpoints move into one
 * subset "default" of weight 1, so backend selection only sees subsets and
 * every endpoint is still listed once in the policy. A service that has
 * subsets keeps its plain endpoints as its own: they say where it is when
 * dialled directly, and are not backends of its VIP.
 */
static int add_default_subset(struct sm_service *svc)
{
	struct sm_subset *sub;

	if (!svc->n_vips || svc->n_subsets || !svc->n_endpoints)
		return 0;
	sub = calloc(1, sizeof(*sub));
	if (!sub)
		return -ENOMEM;
	snprintf(sub->name, sizeof(sub->name), "default");
	sub->weight = 1;
	sub->endpoints = svc->endpoints;
	sub->n_endpoints = svc->n_endpoints;
	sub->loc = svc->loc;
	free(svc->subsets);
	svc->subsets = sub;
	svc->n_subsets = 1;
	svc->endpoints = NULL;
	svc->n_endpoints = 0;
	return 0;
}

static int build_index(struct sm_policy *p)
{
	struct owner own = {0};
	size_t i;

	p->index = calloc(1, sizeof(*p->index));
	if (!p->index)
		return -ENOMEM;
	for (i = 0; i < p->n_services; i++) {
		own.svc = &p->services[i];
		if (htab_add(&p->index->names, own.svc->name, strlen(own.svc->name), &own))
			return -ENOMEM;
	}
	return 0;
}

static int finish(struct sm_policy *p)
{
	size_t i;
	int err;

	for (i = 0; i < p->n_services; i++) {
		err = add_default_subset(&p->services[i]);
		if (err)
			return err;
	}
	return build_index(p);
}

static void parser_free(struct parser *ps)
{
	sm_policy_free(ps->p);
	free(ps->names.e);
	free(ps->unknown.e);
	free(ps->cgroups.e);
	free(ps->dests.e);
	free(ps->pairs.e);
	free(ps->mark);
	free(ps->ports);
}

static int parse_document(struct parser *ps, struct sm_policy **out)
{
	int err = -ENOMEM;

	ps->p = calloc(1, sizeof(*ps->p));
	ps->ports = calloc(PORT_WORDS, sizeof(*ps->ports));
	if (!ps->p || !ps->ports)
		goto out;
	parse_root(ps, yaml_document_get_root_node(ps->doc));
	if (ps->oom)
		goto out;
	err = -EINVAL;
	if (ps->errors)
		goto out;
	err = finish(ps->p);
	if (err)
		goto out;
	*out = ps->p;
	ps->p = NULL;
out:
	parser_free(ps);
	return err;
}

/* Reader errors carry a byte offset rather than a mark. */
static struct sm_loc offset_loc(const char *buf, size_t len, size_t off)
{
	struct sm_loc loc = {1, 1};
	size_t i;

	for (i = 0; i < off && i < len; i++) {
		if (buf[i] == '\n') {
			loc.line++;
			loc.col = 1;
		} else {
			loc.col++;
		}
	}
	return loc;
}

static int yaml_error(struct parser *ps, const yaml_parser_t *yp, const char *buf, size_t len)
{
	const char *problem = yp->problem ? yp->problem : "unreadable";
	struct sm_loc loc = {yp->problem_mark.line + 1, yp->problem_mark.column + 1};

	if (yp->error == YAML_MEMORY_ERROR)
		return -ENOMEM;
	if (yp->error == YAML_READER_ERROR)
		loc = offset_loc(buf, len, yp->problem_offset);
	/* The one cause of this that people meet: an editor's tab. */
	if (!strcmp(problem, "found character that cannot start any token") &&
	    yp->problem_mark.index < len && buf[yp->problem_mark.index] == '\t')
		problem = "a tab here; YAML indents with spaces only";
	if (yp->context)
		report(ps, loc, "invalid YAML: %s (%s at line %zu, column %zu)", problem,
		       yp->context, yp->context_mark.line + 1, yp->context_mark.column + 1);
	else
		report(ps, loc, "invalid YAML: %s", problem);
	return -EINVAL;
}

/* One document, not empty; the loader has read the first one already. */
static int check_document(struct parser *ps, yaml_parser_t *yp, yaml_document_t *doc,
			  const char *buf, size_t len)
{
	yaml_node_t *root = yaml_document_get_root_node(doc);
	yaml_document_t next;
	int err = 0;

	if (!root || is_null(root)) {
		report(ps, (struct sm_loc){0, 0}, "empty policy");
		return -EINVAL;
	}
	if (!yaml_parser_load(yp, &next))
		return yaml_error(ps, yp, buf, len);
	if (yaml_document_get_root_node(&next)) {
		report(ps, (struct sm_loc){next.start_mark.line + 1, next.start_mark.column + 1},
		       "a policy is one YAML document, but a second one starts here");
		err = -EINVAL;
	}
	yaml_document_delete(&next);
	return err;
}

/*
 * A policy nests a few levels; a file of nothing but brackets nests
 * thousands, and libyaml's scanner takes time that grows with the square
 * of the depth. Refuse deep flow nesting before libyaml sees it. Quoted
 * scalars and comments are skipped the way YAML reads them; block
 * nesting needs indentation, so its depth is bounded by the line length.
 */
#define MAX_FLOW_DEPTH 64

static int nesting_check(struct parser *ps, const char *buf, size_t len)
{
	unsigned int depth = 0, line = 1, col = 0;
	char quote = 0, prev = '\n';
	bool comment = false;
	size_t i;

	for (i = 0; i < len; prev = buf[i++]) {
		char c = buf[i];

		col++;
		if (c == '\n') {
			line++;
			col = 0;
			comment = false;
			continue;
		}
		if (comment)
			continue;
		if (quote) {
			if (quote == '"' && c == '\\' && i + 1 < len && buf[i + 1] != '\n') {
				i++;
				col++;
			} else if (c == quote) {
				quote = 0;
			}
			continue;
		}
		/* What starts a quoted scalar or a comment follows a separator. */
		if (prev && strchr(" \t\n[{,:", prev)) {
			if (c == '\'' || c == '"') {
				quote = c;
				continue;
			}
			if (c == '#') {
				comment = true;
				continue;
			}
		}
		if ((c == '[' || c == '{') && ++depth > MAX_FLOW_DEPTH) {
			report(ps, (struct sm_loc){line, col},
			       "invalid YAML: nested deeper than %d levels", MAX_FLOW_DEPTH);
			return -EINVAL;
		}
		if ((c == ']' || c == '}') && depth)
			depth--;
	}
	return 0;
}

static int load_document(struct parser *ps, const char *buf, size_t len, yaml_document_t *doc)
{
	yaml_parser_t yp;
	int err;

	err = nesting_check(ps, buf, len);
	if (err)
		return err;

	if (!yaml_parser_initialize(&yp))
		return -ENOMEM;
	yaml_parser_set_input_string(&yp, (const unsigned char *)buf, len);
	if (!yaml_parser_load(&yp, doc)) {
		err = yaml_error(ps, &yp, buf, len);
		goto out;
	}
	err = check_document(ps, &yp, doc, buf, len);
	if (err)
		yaml_document_delete(doc);
out:
	yaml_parser_delete(&yp);
	return err;
}

/*
 * diags must have been set up with sm_diags_init() (or zeroed); problems
 * are added after what it holds, and its file name becomes name.
 */
int sm_policy_parse(const char *buf, size_t len, const char *name, struct sm_policy **out,
		    struct sm_diags *diags)
{
	struct parser ps = {.diags = diags};
	size_t first = diags ? diags->n : 0;
	yaml_document_t doc;
	int err;

	if (diags && name)
		snprintf(diags->file, sizeof(diags->file), "%s", name);
	err = load_document(&ps, buf, len, &doc);
	if (err)
		goto out;
	ps.doc = &doc;
	err = parse_document(&ps, out);
	yaml_document_delete(&doc);
out:
	if (diags)
		sort_diags(diags, first);
	return err;
}

static int read_all(int fd, char **out, size_t *len)
{
	size_t cap = 0, n = 0;
	char *buf = NULL, *tmp;
	ssize_t r;
	int err;

	for (;;) {
		/* One byte more than read, for the terminating NUL. */
		if (n + 1 >= cap) {
			err = -EFBIG;
			if (n > MAX_FILE)
				goto err_free;
			cap = cap ? cap * 2 : 65536;
			/* MAX_FILE bytes, one to tell a longer file, and the NUL. */
			if (cap > MAX_FILE + 2)
				cap = MAX_FILE + 2;
			err = -ENOMEM;
			tmp = realloc(buf, cap);
			if (!tmp)
				goto err_free;
			buf = tmp;
		}
		r = read(fd, buf + n, cap - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err = -errno;
			goto err_free;
		}
		if (!r)
			break;
		n += r;
	}
	err = -EFBIG;
	if (n > MAX_FILE)
		goto err_free;
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
err_free:
	free(buf);
	return err;
}

int sm_policy_read(const char *path, char **buf, size_t *len)
{
	struct stat st;
	int fd, err;

	/* Not blocking: a FIFO put at the path must not stall the agent. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st))
		err = -errno;
	else if (S_ISDIR(st.st_mode))
		err = -EISDIR;
	else if (!S_ISREG(st.st_mode))
		err = -EINVAL;
	else
		err = read_all(fd, buf, len);
	close(fd);
	return err;
}

const char *sm_policy_read_error(int err)
{
	switch (err) {
	case -EINVAL: return "not a regular file";
	case -EFBIG: return "larger than 64 MiB";
	default: return strerror(-err);
	}
}

int sm_policy_load(const char *path, struct sm_policy **out, struct sm_diags *diags)
{
	char *buf = NULL;
	size_t len = 0;
	int err;

	err = sm_policy_read(path, &buf, &len);
	if (err) {
		if (diags) {
			snprintf(diags->file, sizeof(diags->file), "%s", path);
			sm_diags_add(diags, (struct sm_loc){0, 0}, "cannot read the policy: %s",
				     sm_policy_read_error(err));
		}
		return err;
	}
	err = sm_policy_parse(buf, len, path, out, diags);
	free(buf);
	return err;
}

/* --- the parsed policy --- */

const struct sm_service *sm_policy_service(const struct sm_policy *p, const char *name)
{
	const struct owner *o;
	size_t i;

	if (p->index) {
		o = htab_find(&p->index->names, name, strlen(name));
		return o ? o->svc : NULL;
	}
	/* A policy put together by hand (tests, tools) has no index. */
	for (i = 0; i < p->n_services; i++)
		if (!strcmp(p->services[i].name, name))
			return &p->services[i];
	return NULL;
}

static void free_cgroups(struct sm_cgroup_ref *cg, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(cg[i].path);
	free(cg);
}

static void free_service(struct sm_service *svc)
{
	size_t i;

	free_cgroups(svc->cgroups, svc->n_cgroups);
	free(svc->endpoints);
	free(svc->vips);
	for (i = 0; i < svc->n_subsets; i++) {
		free_cgroups(svc->subsets[i].cgroups, svc->subsets[i].n_cgroups);
		free(svc->subsets[i].endpoints);
	}
	free(svc->subsets);
}

void sm_policy_free(struct sm_policy *p)
{
	size_t i;

	if (!p)
		return;
	for (i = 0; i < p->n_services; i++)
		free_service(&p->services[i]);
	free(p->services);
	for (i = 0; i < p->n_rules; i++) {
		free(p->rules[i].from);
		free(p->rules[i].to);
		free(p->rules[i].ports);
	}
	free(p->rules);
	free(p->quotas);
	if (p->index)
		free(p->index->names.e);
	free(p->index);
	free(p);
}
