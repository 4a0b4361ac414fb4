// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * The flow log: every record becomes one JSON line appended to a file that
 * rotates by size, and a copy of the record goes into a ring in memory that
 * /v1/flows queries read.
 *
 * Two locks keep the two halves apart: file_lock covers the file and the
 * line buffer, win_lock covers the ring. A query therefore never waits for
 * a write() to the disk, and the writer holds win_lock only for one copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "flowlog.h"
#include "log.h"

#define NSEC_PER_SEC 1000000000ULL

/*
 * Node names are host names or policy names; DNS caps names at 253 bytes,
 * so a longer one is cut here. SM_FLOW_JSON_MAX is sized for this.
 */
#define NODE_MAX 256

/* The longest string field (cgroup) and the longest node name. */
#define FIELD_MAX 256
_Static_assert(sizeof(((struct sm_flow *)0)->cgroup) <= FIELD_MAX, "cgroup outgrew FIELD_MAX");
_Static_assert(NODE_MAX <= FIELD_MAX, "node outgrew FIELD_MAX");

/* How often a log file that cannot be opened is tried again. */
#define RETRY_NS NSEC_PER_SEC

/* Slashes stay unescaped so cgroup paths in the log can be grepped as is. */
#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* Every key is a literal, added once to a fresh object. */
#define KEY_FLAGS (JSON_C_OBJECT_ADD_KEY_IS_NEW | JSON_C_OBJECT_KEY_IS_CONSTANT)

/* --- one record as JSON --- */

/*
 * The keys of a record in the order the contract lists them: the ones
 * every record has, then those only close records have, then "error";
 * deny records end with "folded".
 */
enum fkey {
	K_TS,
	K_NODE,
	K_EVENT,
	K_SIDE,
	K_TRACE_ID,
	K_SRC,
	K_DST,
	K_SUBSET,
	K_SRC_SUBSET,
	K_SRC_ADDR,
	K_ORIG_DST,
	K_DST_ADDR,
	K_PROTO,
	K_VERDICT,
	K_REASON,
	K_RULE,
	K_PID,
	K_COMM,
	K_CGROUP,
	K_COOKIE,
	K_DURATION,
	K_BYTES_SENT,
	K_BYTES_RECEIVED,
	K_SRTT,
	K_RETRANS,
	K_ERROR,
	K_FOLDED,
	K_MAX,
};

enum ktype { T_STR, T_U64, T_I64, T_CONST };

static const struct {
	const char *name;
	enum ktype type;
} keys[K_MAX] = {
	[K_TS] = {"ts", T_STR},
	[K_NODE] = {"node", T_STR},
	[K_EVENT] = {"event", T_STR},
	[K_SIDE] = {"side", T_STR},
	[K_TRACE_ID] = {"trace_id", T_STR},
	[K_SRC] = {"src", T_STR},
	[K_DST] = {"dst", T_STR},
	[K_SUBSET] = {"subset", T_STR},
	[K_SRC_SUBSET] = {"src_subset", T_STR},
	[K_SRC_ADDR] = {"src_addr", T_STR},
	[K_ORIG_DST] = {"orig_dst", T_STR},
	[K_DST_ADDR] = {"dst_addr", T_STR},
	[K_PROTO] = {"proto", T_STR},
	[K_VERDICT] = {"verdict", T_STR},
	[K_REASON] = {"reason", T_STR},
	[K_RULE] = {"rule", T_I64},
	[K_PID] = {"pid", T_U64},
	[K_COMM] = {"comm", T_STR},
	[K_CGROUP] = {"cgroup", T_STR},
	[K_COOKIE] = {"cookie", T_U64},
	[K_DURATION] = {"duration_ns", T_U64},
	[K_BYTES_SENT] = {"bytes_sent", T_U64},
	[K_BYTES_RECEIVED] = {"bytes_received", T_U64},
	[K_SRTT] = {"srtt_us", T_U64},
	[K_RETRANS] = {"retransmits", T_U64},
	[K_ERROR] = {"error", T_CONST},
	[K_FOLDED] = {"folded", T_U64},
};

/* The shapes a record takes. */
enum shape { SHAPE_OPEN, SHAPE_DENY, SHAPE_CLOSE, SHAPE_CLOSE_ERR, SHAPE_MAX };

/* Does a record of shape s carry key k? */
static bool shape_has(enum shape s, enum fkey k)
{
	if (k < K_DURATION)
		return true;
	if (k == K_FOLDED)
		return s == SHAPE_DENY;
	if (k == K_ERROR)
		return s == SHAPE_CLOSE_ERR;
	return s == SHAPE_CLOSE || s == SHAPE_CLOSE_ERR;
}

/*
 * A record built fresh for every line costs some 26 allocations and a
 * hash insert per key; that alone held the writer near 100k lines/s. So
 * the objects are built once: one value object per key, shared by three
 * json-c objects, one per shape. Rendering a record sets the values in
 * place and serializes the shape it needs; json-c still does all of the
 * escaping. A key that is null in this record has its value swapped for
 * null in that shape only, and `shown` remembers which way each one is.
 */
struct flow_json {
	struct json_object *val[K_MAX];
	struct json_object *shape[SHAPE_MAX];
	bool shown[SHAPE_MAX][K_MAX];
	time_t ts_sec;	  /* the second ts_date holds */
	char ts_date[80]; /* "2026-12-03T13:20:00." */
};

static struct json_object *val_new(enum fkey k)
{
	switch (keys[k].type) {
	case T_U64: return json_object_new_uint64(0);
	case T_I64: return json_object_new_int64(0);
	case T_CONST: return json_object_new_string("not_established");
	default: return json_object_new_string("");
	}
}

/* Adds v under k to a shape, taking over the reference to v. */
static int shape_add(struct json_object *shape, enum fkey k, struct json_object *v)
{
	if (json_object_object_add_ex(shape, keys[k].name, v, KEY_FLAGS)) {
		json_object_put(v);
		return -ENOMEM;
	}
	return 0;
}

static void flow_json_fini(struct flow_json *fj)
{
	int i;

	for (i = 0; i < SHAPE_MAX; i++)
		json_object_put(fj->shape[i]);
	for (i = 0; i < K_MAX; i++)
		json_object_put(fj->val[i]);
}

static int flow_json_init(struct flow_json *fj)
{
	int k;

	memset(fj, 0, sizeof(*fj));
	fj->ts_sec = -1;
	for (k = 0; k < K_MAX; k++) {
		fj->val[k] = val_new(k);
		if (!fj->val[k])
			goto err_fini;
	}
	return 0;
err_fini:
	flow_json_fini(fj);
	return -ENOMEM;
}

/*
 * Shapes are built when first needed: sm_flow_to_json() renders one record
 * and needs one shape, and many windows never see a failed connection.
 */
static int shape_build(struct flow_json *fj, enum shape s)
{
	struct json_object *obj;
	int k;

	if (fj->shape[s])
		return 0;
	obj = json_object_new_object();
	if (!obj)
		return -ENOMEM;
	for (k = 0; k < K_MAX; k++) {
		if (!shape_has(s, k))
			continue;
		if (shape_add(obj, k, json_object_get(fj->val[k])))
			goto err_put;
		fj->shown[s][k] = true;
	}
	fj->shape[s] = obj;
	return 0;
err_put:
	json_object_put(obj);
	return -ENOMEM;
}

/* Puts k's value, or null, in place in one shape. */
static int shape_show(struct flow_json *fj, enum shape s, enum fkey k, bool show)
{
	struct json_object *v;

	if (fj->shown[s][k] == show)
		return 0;
	v = show ? json_object_get(fj->val[k]) : NULL;
	if (json_object_object_add(fj->shape[s], keys[k].name, v)) {
		json_object_put(v);
		return -ENOMEM;
	}
	fj->shown[s][k] = show;
	return 0;
}

/*
 * Length of the well-formed UTF-8 sequence at s (at most n bytes), or 0.
 * Overlong forms, UTF-16 surrogates and code points past U+10FFFF are
 * ill-formed: a strict JSON reader rejects the whole line for them.
 */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	size_t len, i;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (len > n)
		return 0;

	cp = s[0] & (0x7f >> len);
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

/* Copies s (n bytes) to out with each ill-formed byte as U+FFFD. */
static size_t utf8_clean(const char *s, size_t n, char *out)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i, o = 0, seq;

	for (i = 0; i < n; i += seq ? seq : 1) {
		seq = utf8_seq(u + i, n - i);
		if (seq) {
			memcpy(out + o, s + i, seq);
			o += seq;
		} else {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
		}
	}
	return o;
}

/*
 * Sets a string value from a field that may hold any bytes: comm is what
 * the process passed to prctl(PR_SET_NAME), cgroup names come from mkdir.
 * json-c escapes quotes, backslashes and control characters but copies
 * other bytes as they are, so ill-formed UTF-8 becomes U+FFFD here first.
 * max is the field's size, at most FIELD_MAX.
 */
static int val_str(struct flow_json *fj, enum fkey k, const char *s, size_t max)
{
	const unsigned char *u = (const unsigned char *)s;
	char clean[3 * FIELD_MAX];
	size_t n, i, seq;

	n = strnlen(s, max);
	for (i = 0; i < n && u[i] < 0x80; i++)
		;
	for (; i < n; i += seq) {
		seq = utf8_seq(u + i, n - i);
		if (!seq)
			break;
	}
	if (i < n) {
		n = utf8_clean(s, n, clean);
		s = clean;
	}
	if (!json_object_set_string_len(fj->val[k], s, n))
		return -ENOMEM;
	return 0;
}

/*
 * RFC 3339 in UTC with all nine digits: 2026-12-03T13:20:00.123456789Z.
 * Records come in time order, so the date part is formatted once a second.
 */
static int val_ts(struct flow_json *fj, uint64_t ts_ns)
{
	unsigned int ns = ts_ns % NSEC_PER_SEC;
	time_t sec = ts_ns / NSEC_PER_SEC;
	char buf[96];
	struct tm tm;
	size_t n;
	int i;

	if (sec != fj->ts_sec) {
		if (!gmtime_r(&sec, &tm))
			return -EOVERFLOW;
		snprintf(fj->ts_date, sizeof(fj->ts_date), "%04d-%02d-%02dT%02d:%02d:%02d.",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec);
		fj->ts_sec = sec;
	}
	n = strlen(fj->ts_date);
	memcpy(buf, fj->ts_date, n);
	for (i = 8; i >= 0; i--, ns /= 10)
		buf[n + i] = '0' + ns % 10;
	buf[n + 9] = 'Z';
	if (!json_object_set_string_len(fj->val[K_TS], buf, n + 10))
		return -ENOMEM;
	return 0;
}

/* Fields are fixed arrays; sizeof bounds a producer that filled one up. */
#define VAL_STR(fj, k, f, field) val_str(fj, k, (f)->field, sizeof((f)->field))

static int vals_strings(struct flow_json *fj, const struct sm_flow *f, const char *node)
{
	return val_str(fj, K_NODE, node, NODE_MAX) ?:
	       VAL_STR(fj, K_EVENT, f, event) ?:
	       VAL_STR(fj, K_SIDE, f, side) ?:
	       VAL_STR(fj, K_TRACE_ID, f, trace_id) ?:
	       VAL_STR(fj, K_SRC, f, src) ?:
	       VAL_STR(fj, K_DST, f, dst) ?:
	       VAL_STR(fj, K_SUBSET, f, subset) ?:
	       VAL_STR(fj, K_SRC_SUBSET, f, src_subset) ?:
	       VAL_STR(fj, K_SRC_ADDR, f, src_addr) ?:
	       VAL_STR(fj, K_ORIG_DST, f, orig_dst) ?:
	       VAL_STR(fj, K_DST_ADDR, f, dst_addr) ?:
	       VAL_STR(fj, K_PROTO, f, proto) ?:
	       VAL_STR(fj, K_VERDICT, f, verdict) ?:
	       VAL_STR(fj, K_REASON, f, reason) ?:
	       VAL_STR(fj, K_COMM, f, comm) ?:
	       VAL_STR(fj, K_CGROUP, f, cgroup);
}

/* The values' types are fixed at init, so setting them cannot fail. */
static void vals_numbers(struct flow_json *fj, const struct sm_flow *f)
{
	json_object_set_int64(fj->val[K_RULE], f->rule);
	json_object_set_uint64(fj->val[K_PID], f->pid);
	json_object_set_uint64(fj->val[K_COOKIE], f->cookie);
	json_object_set_uint64(fj->val[K_DURATION], f->duration_ns);
	json_object_set_uint64(fj->val[K_BYTES_SENT], f->bytes_sent);
	json_object_set_uint64(fj->val[K_BYTES_RECEIVED], f->bytes_received);
	json_object_set_uint64(fj->val[K_SRTT], f->srtt_us);
	json_object_set_uint64(fj->val[K_RETRANS], f->retransmits);
	json_object_set_uint64(fj->val[K_FOLDED], f->folded);
}

/* Empty optional strings and rule -1 print as null. */
static int shape_nulls(struct flow_json *fj, enum shape s, const struct sm_flow *f)
{
	return shape_show(fj, s, K_SUBSET, f->subset[0]) ?:
	       shape_show(fj, s, K_SRC_SUBSET, f->src_subset[0]) ?:
	       shape_show(fj, s, K_CGROUP, f->cgroup[0]) ?:
	       shape_show(fj, s, K_RULE, f->rule >= 0);
}

static enum shape flow_shape(const struct sm_flow *f)
{
	if (!strncmp(f->event, "deny", sizeof(f->event)))
		return SHAPE_DENY;
	if (strncmp(f->event, "close", sizeof(f->event)))
		return SHAPE_OPEN;
	return f->err == 1 ? SHAPE_CLOSE_ERR : SHAPE_CLOSE;
}

/* The JSON text of f into buf (NUL-terminated); its length into *out_len. */
static int flow_json_render(struct flow_json *fj, const struct sm_flow *f, const char *node,
			    char *buf, size_t len, size_t *out_len)
{
	enum shape s = flow_shape(f);
	const char *text;
	size_t n;
	int err;

	err = shape_build(fj, s) ?: val_ts(fj, f->ts_ns) ?: vals_strings(fj, f, node) ?:
	      shape_nulls(fj, s, f);
	if (err)
		return err;
	vals_numbers(fj, f);

	text = json_object_to_json_string_length(fj->shape[s], JSON_FLAGS, &n);
	if (!text)
		return -ENOMEM;
	if (n >= len)
		return -ENOSPC;
	memcpy(buf, text, n + 1);
	*out_len = n;
	return 0;
}

int sm_flow_to_json(const struct sm_flow *f, const char *node, char *buf, size_t len)
{
	struct flow_json fj;
	size_t n;
	int err;

	if (!f || !buf)
		return -EINVAL;
	err = flow_json_init(&fj);
	if (err)
		return err;
	err = flow_json_render(&fj, f, node ? node : "", buf, len, &n);
	flow_json_fini(&fj);
	return err;
}

struct sm_flowlog {
	/* The file half: the writer, reopen and set_node. */
	pthread_mutex_t file_lock;
	char *path; /* NULL: memory only */
	char *from; /* scratch for rotated names: path.N */
	char *to;
	size_t name_size;  /* of from and to */
	int fd;		   /* -1 while the file cannot be opened */
	int open_err;	   /* why, returned until the next try */
	uint64_t retry_ns; /* CLOCK_MONOTONIC time of the next try */
	bool failing;	   /* the last write failed (logged once) */
	size_t size;
	size_t max_bytes;
	unsigned int keep;
	char node[NODE_MAX];
	struct flow_json fj;
	char line[SM_FLOW_JSON_MAX + 1]; /* the JSON plus '\n' */

	/* The window half: the writer and queries. */
	pthread_mutex_t win_lock;
	struct sm_flow *ring;
	size_t window;
	size_t head; /* the slot the next record goes to */
	size_t count;
	uint64_t total; /* records ever added */
	char win_node[NODE_MAX];
};

/* --- the file --- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

/* mkdir -p for the directory that holds path, saying what it made. */
static int mkdir_parents(const char *path)
{
	char *dir, *p;
	int err = 0;
	char c;

	dir = strdup(path);
	if (!dir)
		return -ENOMEM;
	p = strrchr(dir, '/');
	if (!p || p == dir)
		goto out_free;
	*p = '\0';

	for (p = dir + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		c = *p;
		*p = '\0';
		if (!mkdir(dir, 0750)) {
			pr_info("flow log: made directory %s\n", dir);
		} else if (errno != EEXIST) {
			err = -errno;
			break;
		}
		if (!c)
			break;
		*p = c;
	}
out_free:
	free(dir);
	return err;
}

/*
 * Opens (or creates) the file and learns its size, so an agent restarted
 * on top of an old log still rotates at max_bytes.
 */
static int file_open(struct sm_flowlog *fl)
{
	struct stat st;
	int err, fd;

	err = mkdir_parents(fl->path);
	if (err)
		return err;
	fd = open(fl->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		err = -errno;
		close(fd);
		return err;
	}
	fl->fd = fd;
	fl->size = st.st_size;
	return 0;
}

static void file_close(struct sm_flowlog *fl)
{
	if (fl->fd >= 0)
		close(fl->fd);
	fl->fd = -1;
}

/*
 * A file that could not be opened is tried again at most once per RETRY_NS,
 * so a missing directory costs one failed open() per second, not one per
 * connection.
 */
static int file_ensure_open(struct sm_flowlog *fl)
{
	uint64_t now;
	int err;

	if (fl->fd >= 0)
		return 0;
	now = now_ns();
	if (now < fl->retry_ns)
		return fl->open_err;

	err = file_open(fl);
	if (err) {
		fl->open_err = err;
		fl->retry_ns = now + RETRY_NS;
	}
	return err;
}

/*
 * path.N -> path.N+1 down to path -> path.1; the oldest is overwritten.
 * A name that is missing (an operator deleted it) is a gap, not an error.
 */
static int file_shift(struct sm_flowlog *fl)
{
	unsigned int i;

	for (i = fl->keep; i >= 1; i--) {
		if (i > 1)
			snprintf(fl->from, fl->name_size, "%s.%u", fl->path, i - 1);
		else
			snprintf(fl->from, fl->name_size, "%s", fl->path);
		snprintf(fl->to, fl->name_size, "%s.%u", fl->path, i);
		if (rename(fl->from, fl->to) && errno != ENOENT)
			return -errno;
	}
	return 0;
}

/*
 * With keep == 0 the file is cut to zero in place. If a rename fails the
 * record is not written: max_bytes is a promise about disk use, and a log
 * that outgrows it could fill the disk the node needs.
 */
static int file_rotate(struct sm_flowlog *fl)
{
	int err;

	if (!fl->keep) {
		if (ftruncate(fl->fd, 0))
			return -errno;
		fl->size = 0;
		return 0;
	}
	err = file_shift(fl);
	if (err)
		return err;
	file_close(fl);
	fl->retry_ns = 0;
	return file_ensure_open(fl);
}

/*
 * One write() per line, so a reader tailing the file sees whole lines. When
 * the disk fills mid-line the fragment is cut off again: otherwise the next
 * record would be glued to it and both lines would be lost to a parser.
 */
static int file_write(struct sm_flowlog *fl, const char *line, size_t len)
{
	ssize_t n;
	off_t end;

	do {
		n = write(fl->fd, line, len);
	} while (n < 0 && errno == EINTR);
	if (n == (ssize_t)len) {
		fl->size += len;
		return 0;
	}
	if (n < 0)
		return -errno;

	end = lseek(fl->fd, 0, SEEK_CUR);
	if (end >= n && ftruncate(fl->fd, end - n) == 0)
		fl->size = end - n;
	return -ENOSPC;
}

/* Logs only the changes between working and failing: never per record. */
static void file_note(struct sm_flowlog *fl, int err)
{
	if (err && !fl->failing)
		pr_warn("flow log '%s': write: %s; records stay in memory until it works again",
			fl->path, strerror(-err));
	else if (!err && fl->failing)
		pr_info("flow log '%s': writing again", fl->path);
	fl->failing = err != 0;
}

static int file_add(struct sm_flowlog *fl, const struct sm_flow *f)
{
	size_t len;
	int err;

	pthread_mutex_lock(&fl->file_lock);
	err = flow_json_render(&fl->fj, f, fl->node, fl->line, sizeof(fl->line), &len);
	if (err)
		goto out_unlock;
	fl->line[len++] = '\n';

	err = file_ensure_open(fl);
	if (err)
		goto out_note;
	/* A line longer than max_bytes still goes into an empty file. */
	if (fl->max_bytes && fl->size && fl->size + len > fl->max_bytes) {
		err = file_rotate(fl);
		if (err)
			goto out_note;
	}
	err = file_write(fl, fl->line, len);
out_note:
	file_note(fl, err);
out_unlock:
	pthread_mutex_unlock(&fl->file_lock);
	return err;
}

/* --- the window --- */

/* Producers promise NUL-terminated fields; queries compare with strcmp. */
static void flow_terminate(struct sm_flow *f)
{
	f->event[sizeof(f->event) - 1] = '\0';
	f->side[sizeof(f->side) - 1] = '\0';
	f->trace_id[sizeof(f->trace_id) - 1] = '\0';
	f->src[sizeof(f->src) - 1] = '\0';
	f->dst[sizeof(f->dst) - 1] = '\0';
	f->verdict[sizeof(f->verdict) - 1] = '\0';
}

static void window_add(struct sm_flowlog *fl, const struct sm_flow *f)
{
	if (!fl->window)
		return;

	pthread_mutex_lock(&fl->win_lock);
	fl->ring[fl->head] = *f;
	flow_terminate(&fl->ring[fl->head]);
	if (++fl->head == fl->window)
		fl->head = 0;
	if (fl->count < fl->window)
		fl->count++;
	fl->total++;
	pthread_mutex_unlock(&fl->win_lock);
}

static bool field_match(const char *want, const char *have)
{
	return !want || !want[0] || !strcmp(want, have);
}

static bool flow_match(const struct sm_flow *f, const struct sm_flow_query *q)
{
	if (q->trace_id && q->trace_id[0] && strcasecmp(q->trace_id, f->trace_id))
		return false;
	if (q->service && q->service[0] && strcmp(q->service, f->src) && strcmp(q->service, f->dst))
		return false;
	return field_match(q->verdict, f->verdict) && field_match(q->event, f->event);
}

/* How many records the window holds now, and how many were ever added. */
static size_t window_snapshot(struct sm_flowlog *fl, uint64_t *total)
{
	size_t count;

	pthread_mutex_lock(&fl->win_lock);
	count = fl->count;
	*total = fl->total;
	pthread_mutex_unlock(&fl->win_lock);
	return count;
}

/*
 * Copies the newest matches as of the snapshot (at most cap) into the tail
 * of hits, oldest first, and returns where they start. Records that arrived
 * after the snapshot are skipped so the answer is one point in time.
 */
static size_t window_collect(struct sm_flowlog *fl, const struct sm_flow_query *q, uint64_t total,
			     struct sm_flow *hits, size_t cap, char *node)
{
	size_t pos = cap, i, idx;
	uint64_t skip;

	pthread_mutex_lock(&fl->win_lock);
	memcpy(node, fl->win_node, NODE_MAX);
	skip = fl->total - total;
	for (i = skip; i < fl->count && pos > 0; i++) {
		idx = (fl->head + fl->window - 1 - i) % fl->window;
		if (flow_match(&fl->ring[idx], q))
			hits[--pos] = fl->ring[idx];
	}
	pthread_mutex_unlock(&fl->win_lock);
	return pos;
}

/* Appends the records to buf as the elements of a JSON array. */
static int render_elems(const struct sm_flow *recs, size_t n, const char *node, char **buf,
			size_t *cap, size_t *used)
{
	struct flow_json fj;
	size_t i, one;
	char *grown;
	int err;

	err = flow_json_init(&fj);
	if (err)
		return err;
	for (i = 0; i < n; i++) {
		if (*cap - *used < SM_FLOW_JSON_MAX + 3) {
			*cap = *cap * 2 + SM_FLOW_JSON_MAX;
			grown = realloc(*buf, *cap);
			if (!grown) {
				err = -ENOMEM;
				break;
			}
			*buf = grown;
		}
		if (i)
			(*buf)[(*used)++] = ',';
		err = flow_json_render(&fj, &recs[i], node, *buf + *used, *cap - *used, &one);
		if (err)
			break;
		*used += one;
	}
	flow_json_fini(&fj);
	return err;
}

/* The records as a JSON array of the same objects the file gets. */
static int render_array(const struct sm_flow *recs, size_t n, const char *node, char **json,
			size_t *len)
{
	size_t cap = 4096, used = 1;
	char *buf;
	int err;

	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	buf[0] = '[';
	err = render_elems(recs, n, node, &buf, &cap, &used);
	if (err) {
		free(buf);
		return err;
	}
	buf[used++] = ']';
	buf[used] = '\0';
	*json = buf;
	*len = used;
	return 0;
}

int sm_flowlog_query(struct sm_flowlog *fl, const struct sm_flow_query *q, char **json, size_t *len)
{
	struct sm_flow_query any = {};
	struct sm_flow *hits = NULL;
	char node[NODE_MAX];
	size_t cap, start;
	uint64_t total;
	int err;

	if (!q)
		q = &any;
	cap = window_snapshot(fl, &total);
	if (q->limit && q->limit < cap)
		cap = q->limit;
	if (cap) {
		hits = malloc(cap * sizeof(*hits));
		if (!hits)
			return -ENOMEM;
	}

	start = window_collect(fl, q, total, hits, cap, node);
	err = render_array(cap ? hits + start : NULL, cap - start, node, json, len);
	free(hits);
	return err;
}

/* --- life cycle --- */

/* NULL means this host's name, as it does in the policy file. */
static void node_set(char *dst, const char *node)
{
	if (!node) {
		if (gethostname(dst, NODE_MAX))
			dst[0] = '\0';
		dst[NODE_MAX - 1] = '\0';
		return;
	}
	if (strlen(node) >= NODE_MAX)
		pr_warn("flow log: node name '%.32s...' is longer than %d bytes; cut there", node,
			NODE_MAX - 1);
	snprintf(dst, NODE_MAX, "%s", node);
}

void sm_flowlog_set_node(struct sm_flowlog *fl, const char *node)
{
	char name[NODE_MAX];

	node_set(name, node);
	pthread_mutex_lock(&fl->file_lock);
	memcpy(fl->node, name, NODE_MAX);
	pthread_mutex_unlock(&fl->file_lock);

	pthread_mutex_lock(&fl->win_lock);
	memcpy(fl->win_node, name, NODE_MAX);
	pthread_mutex_unlock(&fl->win_lock);
}

int sm_flowlog_add(struct sm_flowlog *fl, const struct sm_flow *f)
{
	window_add(fl, f);
	if (!fl->path)
		return 0;
	return file_add(fl, f);
}

int sm_flowlog_reopen(struct sm_flowlog *fl)
{
	int err;

	if (!fl->path)
		return 0;
	pthread_mutex_lock(&fl->file_lock);
	file_close(fl);
	fl->retry_ns = 0;
	err = file_ensure_open(fl);
	if (err)
		pr_warn("flow log '%s': reopen: %s", fl->path, strerror(-err));
	pthread_mutex_unlock(&fl->file_lock);
	return err;
}

/* The path and the scratch space file_shift() builds path.N names in. */
static int names_alloc(struct sm_flowlog *fl, const char *path)
{
	fl->name_size = strlen(path) + sizeof(".4294967295");
	fl->path = strdup(path);
	fl->from = malloc(fl->name_size);
	fl->to = malloc(fl->name_size);
	if (!fl->path || !fl->from || !fl->to)
		return -ENOMEM;
	return 0;
}

static void flowlog_free(struct sm_flowlog *fl)
{
	file_close(fl);
	flow_json_fini(&fl->fj);
	free(fl->path);
	free(fl->from);
	free(fl->to);
	free(fl->ring);
	pthread_mutex_destroy(&fl->win_lock);
	pthread_mutex_destroy(&fl->file_lock);
	free(fl);
}

int sm_flowlog_open(struct sm_flowlog **out, const struct sm_flowlog_opts *opts)
{
	struct sm_flowlog *fl;
	int err;

	if (!out || !opts)
		return -EINVAL;
	*out = NULL;
	fl = calloc(1, sizeof(*fl));
	if (!fl)
		return -ENOMEM;
	fl->fd = -1;
	pthread_mutex_init(&fl->file_lock, NULL);
	pthread_mutex_init(&fl->win_lock, NULL);
	fl->max_bytes = opts->max_bytes;
	fl->keep = opts->keep;
	fl->window = opts->window;
	node_set(fl->node, opts->node);
	memcpy(fl->win_node, fl->node, NODE_MAX);

	err = -ENOMEM;
	if (fl->window) {
		fl->ring = calloc(fl->window, sizeof(*fl->ring));
		if (!fl->ring)
			goto err_free;
	}
	if (opts->path) {
		err = names_alloc(fl, opts->path) ?: flow_json_init(&fl->fj);
		if (err)
			goto err_free;
		err = file_open(fl);
		if (err) {
			pr_warn("flow log '%s': open: %s", opts->path, strerror(-err));
			goto err_free;
		}
	}
	*out = fl;
	return 0;
err_free:
	flowlog_free(fl);
	return err;
}

void sm_flowlog_close(struct sm_flowlog *fl)
{
	if (fl)
		flowlog_free(fl);
}
