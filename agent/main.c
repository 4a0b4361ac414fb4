// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * sockmesh-agent: loads the datapath, keeps the policy in force, writes
 * the flow log and serves HTTP. See `sockmesh-agent --help`.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <bpf/libbpf.h>
#include <systemd/sd-daemon.h>

#include "agent.h"
#include "cgroup.h"
#include "compile.h"
#include "http.h"
#include "log.h"
#include "pins.h"

static const char usage[] =
	"Usage: sockmesh-agent --policy FILE [options]\n"
	"\n"
	"  --policy FILE        policy file (YAML); reloaded on change and SIGHUP\n"
	"  --cgroup PATH        cgroup subtree to manage, relative to the cgroup2\n"
	"                       mount (default: the mount's root)\n"
	"  --bpffs DIR          pin directory (default " SM_DEFAULT_BPFFS ")\n"
	"  --listen ADDR:PORT   HTTP address (default " SM_DEFAULT_LISTEN ")\n"
	"  --flow-log FILE      flow log, JSON lines (default " SM_DEFAULT_FLOW_LOG ");\n"
	"                       \"\" keeps flows in memory only\n"
	"  --flow-log-max-bytes N   rotate the flow log at N bytes (default 64 MiB;\n"
	"                       0: never)\n"
	"  --flow-log-keep N    rotated flow logs kept (default 3)\n"
	"  --flow-window N      flow records kept in memory for /v1/flows (default\n"
	"                       65536; 0: none)\n"
	"  --map-size NAME=N    entries of a map (per policy for policy maps; bytes\n"
	"                       for events); the names and defaults are below\n"
	"  --token-file FILE    require 'Authorization: Bearer <token>' over HTTP\n"
	"  --tls-cert FILE, --tls-key FILE   serve HTTPS\n"
	"  --allow-policy-put   accept PUT /v1/policy (needs --token-file)\n"
	"  --deny-records-per-second N   deny records written per second for\n"
	"                       each source, destination and verdict; the rest\n"
	"                       are counted and folded into the next (default\n"
	"                       100; 0 writes every one)\n"
	"  -v, --verbose        more detail; twice: libbpf's too\n"
	"  -h, --help\n";

static void print_usage(void)
{
	uint32_t sizes[SM_SIZE_MAX];
	int i;

	fputs(usage, stdout);
	sm_dp_default_sizes(sizes);
	printf("\nMap sizes (--map-size NAME=N), defaults:\n");
	for (i = 0; i < SM_SIZE_MAX; i++)
		printf("  %-8s %u\n", sm_dp_size_name(i), sizes[i]);
}

enum {
	OPT_POLICY = 256,
	OPT_CGROUP,
	OPT_BPFFS,
	OPT_LISTEN,
	OPT_FLOW_LOG,
	OPT_FLOW_MAX,
	OPT_FLOW_KEEP,
	OPT_FLOW_WINDOW,
	OPT_MAP_SIZE,
	OPT_TOKEN_FILE,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_POLICY_PUT,
	OPT_DENY_RECORDS,
};

static const struct option long_opts[] = {
	{"policy", required_argument, NULL, OPT_POLICY},
	{"cgroup", required_argument, NULL, OPT_CGROUP},
	{"bpffs", required_argument, NULL, OPT_BPFFS},
	{"listen", required_argument, NULL, OPT_LISTEN},
	{"flow-log", required_argument, NULL, OPT_FLOW_LOG},
	{"flow-log-max-bytes", required_argument, NULL, OPT_FLOW_MAX},
	{"flow-log-keep", required_argument, NULL, OPT_FLOW_KEEP},
	{"flow-window", required_argument, NULL, OPT_FLOW_WINDOW},
	{"map-size", required_argument, NULL, OPT_MAP_SIZE},
	{"token-file", required_argument, NULL, OPT_TOKEN_FILE},
	{"tls-cert", required_argument, NULL, OPT_TLS_CERT},
	{"tls-key", required_argument, NULL, OPT_TLS_KEY},
	{"allow-policy-put", no_argument, NULL, OPT_POLICY_PUT},
	{"deny-records-per-second", required_argument, NULL, OPT_DENY_RECORDS},
	{"verbose", no_argument, NULL, 'v'},
	{"help", no_argument, NULL, 'h'},
	{}};

static int parse_uint(const char *opt, const char *arg, unsigned long long max,
		      unsigned long long *out)
{
	char *end;

	errno = 0;
	*out = strtoull(arg, &end, 10);
	/* Digits only: strtoull would take " 5", "+5" and "-5" too. */
	if (errno || !isdigit((unsigned char)arg[0]) || *end || *out > max) {
		fprintf(stderr,
			"sockmesh-agent: --%s: '%s' is not a number "
			"from 0 to %llu\n",
			opt, arg, max);
		return -EINVAL;
	}
	return 0;
}

static int parse_size_opt(struct sm_opts *o, const char *arg)
{
	int err = sm_dp_parse_size(arg, o->sizes);

	if (err == -ENOENT || err == -EINVAL)
		fprintf(stderr,
			"sockmesh-agent: --map-size: '%s': expected "
			"NAME=N with NAME one of cgroup, dest, service, "
			"backend, rule, quota, pair, canary, trace, local, "
			"names, events\n",
			arg);
	else if (err)
		fprintf(stderr,
			"sockmesh-agent: --map-size: '%s': N must be "
			"1 to 2^30 (events: a power of two, at least 4096)\n",
			arg);
	return err;
}

/*
 * What the flags name, checked before anything is loaded: a typo in a
 * unit file must not cost a round of loading programs on every restart.
 */
static int check_files(const struct sm_opts *o)
{
	const char *files[] = {o->tls_cert, o->tls_key, o->token_file};
	const char *flags[] = {"--tls-cert", "--tls-key", "--token-file"};
	struct sockaddr_storage ss;
	socklen_t len;
	size_t i;
	int err;

	if (sm_http_parse_listen(o->listen, &ss, &len)) {
		fprintf(stderr,
			"sockmesh-agent: --listen '%s': expected IPv4:PORT or "
			"[IPv6]:PORT, PORT from 0 to 65535\n",
			o->listen);
		return -EINVAL;
	}
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if (files[i] && access(files[i], R_OK)) {
			err = -errno;
			fprintf(stderr, "sockmesh-agent: %s '%s': %s\n", flags[i], files[i],
				strerror(-err));
			return err;
		}
	}
	return 0;
}

static int parse_args(int argc, char **argv, struct sm_opts *o)
{
	unsigned long long v;
	int c, err = 0;

	o->cgroup = "/";
	o->bpffs = SM_DEFAULT_BPFFS;
	o->listen = SM_DEFAULT_LISTEN;
	o->flow_log = SM_DEFAULT_FLOW_LOG;
	o->flow_log_max = 64 << 20;
	o->flow_log_keep = 3;
	o->flow_window = 65536;
	o->deny_records = 100;
	sm_dp_default_sizes(o->sizes);

	while (!err && (c = getopt_long(argc, argv, "vh", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_POLICY: o->policy = optarg; break;
		case OPT_CGROUP: o->cgroup = optarg; break;
		case OPT_BPFFS: o->bpffs = optarg; break;
		case OPT_LISTEN: o->listen = optarg; break;
		case OPT_FLOW_LOG: o->flow_log = optarg; break;
		case OPT_FLOW_MAX:
			err = parse_uint("flow-log-max-bytes", optarg, 1ULL << 40, &v);
			o->flow_log_max = v;
			break;
		case OPT_FLOW_KEEP:
			err = parse_uint("flow-log-keep", optarg, 100, &v);
			o->flow_log_keep = (unsigned int)v;
			break;
		case OPT_FLOW_WINDOW:
			err = parse_uint("flow-window", optarg, 1 << 24, &v);
			o->flow_window = v;
			break;
		case OPT_MAP_SIZE: err = parse_size_opt(o, optarg); break;
		case OPT_TOKEN_FILE: o->token_file = optarg; break;
		case OPT_TLS_CERT: o->tls_cert = optarg; break;
		case OPT_TLS_KEY: o->tls_key = optarg; break;
		case OPT_POLICY_PUT: o->allow_policy_put = true; break;
		case OPT_DENY_RECORDS:
			err = parse_uint("deny-records-per-second", optarg, 1000000, &v);
			o->deny_records = (uint32_t)v;
			break;
		case 'v': o->verbose++; break;
		case 'h': print_usage(); exit(EXIT_SUCCESS);
		default: err = -EINVAL; break;
		}
	}
	if (err)
		return err;
	if (optind < argc) {
		fprintf(stderr, "sockmesh-agent: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (!o->policy) {
		fprintf(stderr, "sockmesh-agent: --policy FILE is required\n");
		return -EINVAL;
	}
	/* Logs and /v1/status name the file in full; a symlink stays one. */
	if (o->policy[0] != '/') {
		static char abs_policy[PATH_MAX];
		char cwd[PATH_MAX];

		if (!getcwd(cwd, sizeof(cwd))) {
			fprintf(stderr,
				"sockmesh-agent: --policy '%s': the working directory: %s; "
				"give the full path\n",
				o->policy, strerror(errno));
			return -EINVAL;
		}
		if (snprintf(abs_policy, sizeof(abs_policy), "%s/%s", cwd, o->policy) >=
		    (int)sizeof(abs_policy)) {
			fprintf(stderr, "sockmesh-agent: --policy '%s': path too long\n",
				o->policy);
			return -ENAMETOOLONG;
		}
		o->policy = abs_policy;
	}
	if (!o->tls_cert != !o->tls_key) {
		fprintf(stderr, "sockmesh-agent: --tls-cert and --tls-key go "
				"together\n");
		return -EINVAL;
	}
	if (o->allow_policy_put && !o->token_file) {
		fprintf(stderr, "sockmesh-agent: --allow-policy-put needs "
				"--token-file: nobody may change policy unauthenticated\n");
		return -EINVAL;
	}
	return check_files(o);
}

static uint64_t fnv1a(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

/* Diagnostics as one string for logs, /v1/status and HTTP answers. */
static void diags_to(const struct sm_diags *d, char *buf, size_t len)
{
	size_t i, off = 0;

	buf[0] = '\0';
	for (i = 0; i < d->n && off < len; i++) {
		int n = d->items[i].loc.line
				? snprintf(buf + off, len - off, "%s%s:%u:%u: error: %s",
					   i ? "\n" : "", d->file, d->items[i].loc.line,
					   d->items[i].loc.col, d->items[i].msg)
				: snprintf(buf + off, len - off, "%s%s: error: %s", i ? "\n" : "",
					   d->file, d->items[i].msg);
		if (n < 0)
			break;
		off += (size_t)n;
	}
}

/*
 * Compile and apply a parsed policy; on success it is the one in force.
 * Returns 1 when nothing changed, 0 when applied, -errno on failure.
 */
static int put_in_force(struct sm_agent *a, struct sm_policy *p, uint64_t hash, struct sm_diags *d)
{
	struct sm_compile_ctx ctx = {
		.cg_mount = a->cg_mount,
		.cg_root = a->cg_root,
		.names = &a->names,
	};
	struct sm_image *img = NULL;
	uint64_t gen = a->applier.generation;
	unsigned int missing;
	char first[256];
	int err;

	err = sm_compile(p, &ctx, &img, d);
	if (!err) {
		missing = img->missing_cgroups;
		snprintf(first, sizeof(first), "%s", img->first_missing);
		err = sm_apply(&a->applier, img, d);
		if (err)
			sm_image_free(img);
	}
	if (err) {
		/* A refused policy keeps none of the ids it was given. */
		if (sm_names_rollback(&a->names))
			pr_warn("map %s: taking back the names of a refused policy failed\n",
				SM_STR(SM_MAP_NAMES));
		return err;
	}
	sm_names_commit(&a->names);
	if (gen != a->applier.generation)
		sm_drain(a, a->applier.slot[a->applier.active ^ 1],
			 a->applier.slot[a->applier.active]);

	if (a->flowlog && (!a->policy || strcmp(a->policy->node, p->node)))
		sm_flowlog_set_node(a->flowlog, p->node);
	/* Said once per change, not on every retry. */
	if (missing && (missing != a->missing_cgroups || strcmp(first, a->first_missing)))
		pr_info("policy: %u service cgroup(s) do not exist yet (first: "
			"%s); they take effect when created\n",
			missing, first);
	pthread_mutex_lock(&a->lock);
	if (a->policy != p) {
		sm_policy_free(a->policy);
		a->policy = p;
	}
	a->policy_hash = hash;
	a->missing_cgroups = missing;
	snprintf(a->first_missing, sizeof(a->first_missing), "%s", first);
	pthread_mutex_unlock(&a->lock);
	return gen == a->applier.generation ? 1 : 0;
}

/*
 * The policy text from the file (text NULL) or as given, parsed. On error
 * diags say why and *p is NULL.
 */
static int policy_read(struct sm_agent *a, const char *text, size_t len, struct sm_policy **p,
		       uint64_t *hash, struct sm_diags *d)
{
	char *owned = NULL;
	int err;

	*p = NULL;
	sm_diags_init(d, text ? "PUT /v1/policy" : a->opts.policy);
	if (!text) {
		err = sm_policy_read(a->opts.policy, &owned, &len);
		if (err) {
			sm_diags_add(d, (struct sm_loc){0, 0}, "cannot read: %s",
				     sm_policy_read_error(err));
			return err;
		}
		text = owned;
	}
	*hash = fnv1a(text, len);
	/* Not d->file: the parser copies the name into it. */
	err = sm_policy_parse(text, len, owned ? a->opts.policy : "PUT /v1/policy", p, d);
	free(owned);
	return err;
}

/*
 * Put a parsed policy in force (err: what reading it gave) and account
 * for the reload in the log, the counters and /v1/status. Frees diags.
 */
static int reload_apply(struct sm_agent *a, struct sm_policy *p, uint64_t hash, int err,
			struct sm_diags *d, char *errbuf, size_t errlen)
{
	if (!err)
		err = put_in_force(a, p, hash, d);
	if (err < 0)
		sm_policy_free(p);

	pthread_mutex_lock(&a->lock);
	a->last_reload = time(NULL);
	if (err < 0) {
		a->reloads_error++;
		diags_to(d, a->last_error, sizeof(a->last_error));
		if (errbuf)
			snprintf(errbuf, errlen, "%s", a->last_error);
	} else {
		a->last_error[0] = '\0';
		if (err == 1)
			a->reloads_unchanged++;
		else
			a->reloads_ok++;
	}
	pthread_mutex_unlock(&a->lock);

	if (err < 0) {
		pr_warn("policy not applied; %s:\n", a->policy || a->dp.adopted
							     ? "the previous one stays in force"
							     : "no policy is in force");
		sm_diags_print(d, stderr);
	} else if (!err) {
		pr_info("policy generation %llu in force (%zu services, %zu "
			"rules)\n",
			(unsigned long long)a->applier.generation, a->policy->n_services,
			a->policy->n_rules);
	}
	sm_diags_free(d);
	return err < 0 ? err : 0;
}

int sm_agent_reload(struct sm_agent *a, const char *text, size_t len, char *errbuf, size_t errlen)
{
	struct sm_policy *p;
	struct sm_diags d;
	uint64_t hash = 0;
	int err;

	pthread_mutex_lock(&a->reload_lock);
	err = policy_read(a, text, len, &p, &hash, &d);
	err = reload_apply(a, p, hash, err, &d, errbuf, errlen);
	pthread_mutex_unlock(&a->reload_lock);
	return err;
}

/* The file's identity: a change of any of these means "read it again". */
struct file_id {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

static void file_id(const char *path, struct file_id *id)
{
	struct stat st;

	memset(id, 0, sizeof(*id));
	if (stat(path, &st))
		return;
	id->dev = st.st_dev;
	id->ino = st.st_ino;
	id->size = st.st_size;
	id->mtime = st.st_mtim;
}

static int file_id_eq(const struct file_id *x, const struct file_id *y)
{
	return x->dev == y->dev && x->ino == y->ino && x->size == y->size &&
	       x->mtime.tv_sec == y->mtime.tv_sec && x->mtime.tv_nsec == y->mtime.tv_nsec;
}

/*
 * Read the file again if it may have changed and its text did. A file
 * put back to the text in force after a failed reload is reloaded too
 * (as unchanged), so the failure stops showing in /v1/status.
 */
static void maybe_reload(struct sm_agent *a, struct file_id *last, int force)
{
	struct file_id now;
	uint64_t hash, in_force;
	bool failed;
	size_t len;
	char *text;

	file_id(a->opts.policy, &now);
	if (!force && file_id_eq(&now, last))
		return;
	*last = now;
	pthread_mutex_lock(&a->lock);
	failed = a->last_error[0];
	in_force = a->policy_hash;
	pthread_mutex_unlock(&a->lock);
	if (!sm_policy_read(a->opts.policy, &text, &len)) {
		hash = fnv1a(text, len);
		free(text);
		if (!force && !failed && hash == in_force)
			return;
	}
	sm_agent_reload(a, NULL, 0, NULL, 0);
}

/*
 * Polling: a file whose identity changed since the last tick may still be
 * being written in place. Read it once it has stayed the same for a tick.
 */
static void poll_reload(struct sm_agent *a, struct file_id *last, struct file_id *seen)
{
	struct file_id now;

	file_id(a->opts.policy, &now);
	if (!file_id_eq(&now, last) && file_id_eq(&now, seen))
		maybe_reload(a, last, 0);
	*seen = now;
}

/*
 * Did one of these events finish a write of the policy file, or move
 * something into place (an editor's rename, a ConfigMap's ..data swap)?
 * Other events, such as a file just created and still being written, are
 * left to polling.
 */
static int events_finished(const char *buf, ssize_t len, const char *base)
{
	const struct inotify_event *ev;
	ssize_t off = 0;

	while (off + (ssize_t)sizeof(*ev) <= len) {
		ev = (const struct inotify_event *)(buf + off);
		if (ev->mask & IN_MOVED_TO ||
		    (ev->mask & IN_CLOSE_WRITE && ev->len && !strcmp(ev->name, base)))
			return 1;
		off += (ssize_t)(sizeof(*ev) + ev->len);
	}
	return 0;
}

/* Service cgroups that did not exist may exist now. */
static void retry_missing(struct sm_agent *a)
{
	struct sm_diags d;
	int err;

	if (!a->missing_cgroups || !a->policy)
		return;
	sm_diags_init(&d, a->opts.policy);
	pthread_mutex_lock(&a->reload_lock);
	err = put_in_force(a, a->policy, a->policy_hash, &d);
	pthread_mutex_unlock(&a->reload_lock);
	if (err < 0) {
		pr_warn("policy: cgroups: re-resolving failed:\n");
		sm_diags_print(&d, stderr);
	}
	sm_diags_free(&d);
}

static int setup_paths(struct sm_agent *a)
{
	int err;

	err = sm_cgroup_mount(a->cg_mount, sizeof(a->cg_mount));
	if (err) {
		pr_warn("cgroup2: no cgroup2 file system mounted "
			"(/proc/self/mountinfo)\n");
		return err;
	}
	err = sm_cgroup_root(a->cg_mount, a->opts.cgroup, a->cg_root, sizeof(a->cg_root));
	if (!err)
		err = sm_cgroup_abs(a->cg_mount, a->cg_root, a->cg_abs, sizeof(a->cg_abs));
	if (err) {
		pr_warn("--cgroup '%s': not a clean path under the cgroup2 "
			"mount %s\n",
			a->opts.cgroup, a->cg_mount);
		return err;
	}
	if (access(a->cg_abs, F_OK)) {
		err = -errno;
		pr_warn("--cgroup '%s': %s: %s\n", a->opts.cgroup, a->cg_abs, strerror(-err));
		return err;
	}
	return 0;
}

static char *read_token(const char *path)
{
	size_t len;
	char *t;
	int err;

	err = sm_policy_read(path, &t, &len);
	if (err) {
		pr_warn("--token-file '%s': %s\n", path, sm_policy_read_error(err));
		return NULL;
	}
	while (len && (t[len - 1] == '\n' || t[len - 1] == '\r' || t[len - 1] == ' '))
		t[--len] = '\0';
	if (!len) {
		pr_warn("--token-file '%s': empty\n", path);
		free(t);
		return NULL;
	}
	return t;
}

/* Load the datapath, put the first policy in force, attach. */
static int start(struct sm_agent *a)
{
	struct sm_dp_opts dpo = {.bpffs = a->opts.bpffs, .cgroup = a->cg_abs};
	struct sm_flowlog_opts flo = {
		.path = a->opts.flow_log[0] ? a->opts.flow_log : NULL,
		.max_bytes = a->opts.flow_log_max,
		.keep = a->opts.flow_log_keep,
		.window = a->opts.flow_window,
	};
	struct sm_events_opts evo = {.cg_mount = a->cg_mount};
	struct sm_policy *first;
	struct sm_diags d;
	uint64_t hash = 0;
	int err;

	dpo.root_level = sm_cgroup_level(a->cg_mount, a->cg_abs);
	dpo.deny_records = a->opts.deny_records;
	memcpy(dpo.sizes, a->opts.sizes, sizeof(dpo.sizes));
	/*
	 * A policy file that does not parse or validate: refuse to start
	 * before anything is loaded, pinned or changed; the programs of an
	 * earlier agent stay in force with their policy.
	 */
	err = policy_read(a, NULL, 0, &first, &hash, &d);
	if (err) {
		pr_warn("policy refused; nothing was loaded or changed:\n");
		sm_diags_print(&d, stderr);
		sm_diags_free(&d);
		return err;
	}
	err = sm_dp_load(&a->dp, &dpo);
	if (err) {
		sm_policy_free(first);
		sm_diags_free(&d);
		return err;
	}
	err = sm_names_init(&a->names, sm_dp_map_fd(&a->dp, SM_STR(SM_MAP_NAMES)),
			    a->opts.sizes[SM_SIZE_NAMES]);
	if (!err)
		err = sm_applier_init(&a->applier, &a->dp, a->opts.sizes);
	if (err) {
		pr_warn("policy maps: read: %s\n", strerror(-err));
		sm_policy_free(first);
		sm_diags_free(&d);
		return err;
	}

	/* A first policy that does not fit the maps: refuse to start. */
	pthread_mutex_lock(&a->reload_lock);
	err = reload_apply(a, first, hash, 0, &d, NULL, 0);
	pthread_mutex_unlock(&a->reload_lock);
	if (err)
		return err;
	/*
	 * Everything that can still fail (flow log, ring buffer, HTTP) comes
	 * before the attach: an agent that cannot run must not have replaced
	 * the programs in force.
	 */
	flo.node = a->policy->node;
	err = sm_flowlog_open(&a->flowlog, &flo);
	if (err)
		return err;
	evo.ringbuf_fd = sm_dp_map_fd(&a->dp, SM_STR(SM_MAP_EVENTS));
	evo.flowlog = a->flowlog;
	evo.names = &a->names;
	err = sm_events_start(&a->events, &evo);
	if (err) {
		pr_warn("ring buffer: %s\n", strerror(-err));
		return err;
	}
	err = sm_api_start(a);
	if (err)
		return err;

	err = sm_dp_attach(&a->dp);
	if (err)
		return err;
	pr_info("managing cgroup %s (%s)\n", a->cg_root, a->cg_abs);
	/* A failed count of older connections is worth no refusal to start. */
	sm_late_scan(a);
	sm_selfcheck(a);
	return 0;
}

static int watch_policy(const char *path)
{
	char dir[PATH_MAX];
	int fd;

	/* The directory: editors and ConfigMaps replace the file by rename. */
	snprintf(dir, sizeof(dir), "%s", path);
	fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (inotify_add_watch(fd, dirname(dir),
			      IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ATTRIB) <
	    0) {
		pr_warn("policy: cannot watch %s: %s; changes are noticed "
			"within two seconds by polling\n",
			dir, strerror(errno));
	}
	return fd;
}

static int loop(struct sm_agent *a)
{
	struct itimerspec tick = {{1, 0}, {1, 0}};
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	char pbuf[PATH_MAX], *base;
	struct signalfd_siginfo si;
	struct file_id last, seen;
	struct pollfd pfd[3];
	int finished, err = 0;
	sigset_t mask;
	ssize_t r;
	uint64_t n;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	pfd[0].fd = signalfd(-1, &mask, SFD_CLOEXEC);
	pfd[1].fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	pfd[2].fd = watch_policy(a->opts.policy);
	if (pfd[0].fd < 0 || pfd[1].fd < 0 || timerfd_settime(pfd[1].fd, 0, &tick, NULL)) {
		err = -errno;
		goto out;
	}
	pfd[0].events = pfd[1].events = pfd[2].events = POLLIN;
	file_id(a->opts.policy, &last);
	seen = last;
	snprintf(pbuf, sizeof(pbuf), "%s", a->opts.policy);
	base = basename(pbuf);

	sd_notify(0, "READY=1\nSTATUS=enforcing");
	pr_info("ready\n");
	for (;;) {
		a->heartbeat = time(NULL);
		if (poll(pfd, 3, -1) < 0 && errno != EINTR) {
			err = -errno;
			goto out;
		}
		if (pfd[0].revents & POLLIN && read(pfd[0].fd, &si, sizeof(si)) == sizeof(si)) {
			if (si.ssi_signo != SIGHUP)
				break;
			pr_info("SIGHUP: reloading %s\n", a->opts.policy);
			maybe_reload(a, &last, 1);
		}
		if (pfd[2].fd >= 0 && pfd[2].revents & POLLIN) {
			finished = 0;
			while ((r = read(pfd[2].fd, buf, sizeof(buf))) > 0)
				finished |= events_finished(buf, r, base);
			if (finished)
				maybe_reload(a, &last, 0);
		}
		if (pfd[1].revents & POLLIN && read(pfd[1].fd, &n, sizeof(n)) == sizeof(n)) {
			poll_reload(a, &last, &seen);
			retry_missing(a);
			sm_selfcheck(a);
		}
	}
	if (a->all_attached)
		pr_info("stopping; programs stay attached and pinned under %s "
			"(remove with 'sockmesh uninstall')\n",
			a->opts.bpffs);
	else
		pr_warn("stopping; not every program is attached (see "
			"'sockmesh status --bpffs %s')\n",
			a->opts.bpffs);
	sd_notify(0, "STOPPING=1");
out:
	for (n = 0; n < 3; n++)
		if (pfd[n].fd >= 0)
			close(pfd[n].fd);
	return err;
}

int main(int argc, char **argv)
{
	static struct sm_agent a;
	bool first = false, start_failed;
	sigset_t mask;
	int err;

	if (parse_args(argc, argv, &a.opts)) {
		fputs("Try 'sockmesh-agent --help'.\n", stderr);
		return EXIT_FAILURE;
	}
	sm_log_init("sockmesh-agent", a.opts.verbose >= 2 ? SM_LOG_LIBBPF
				      : a.opts.verbose	  ? SM_LOG_DEBUG
							  : SM_LOG_INFO);
	pthread_mutex_init(&a.lock, NULL);
	pthread_mutex_init(&a.reload_lock, NULL);
	a.dp.cgroup_fd = a.dp.lock_fd = -1;
	a.started = time(NULL);

	/* Signals are read from a signalfd; threads must not take them. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	/* A client that goes away mid-answer is an EPIPE, not a death. */
	signal(SIGPIPE, SIG_IGN);

	if (a.opts.token_file) {
		a.token = read_token(a.opts.token_file);
		if (!a.token)
			return EXIT_FAILURE;
	}
	err = setup_paths(&a);
	if (!err) {
		first = !sm_pins_exist(a.opts.bpffs);
		err = start(&a);
	}
	start_failed = err;
	if (!err)
		err = loop(&a);

	sm_api_stop(&a);
	bpf_link__destroy(a.drain_link);
	sm_events_stop(a.events);
	sm_flowlog_close(a.flowlog);
	sm_applier_free(&a.applier);
	if (a.names.e)
		sm_names_free(&a.names);
	sm_dp_close(&a.dp);
	/* A first install that did not start leaves nothing behind. */
	if (start_failed && first && sm_pins_exist(a.opts.bpffs))
		sm_pins_uninstall(a.opts.bpffs);
	sm_policy_free(a.policy);
	free(a.token);
	return err ? EXIT_FAILURE : EXIT_SUCCESS;
}
