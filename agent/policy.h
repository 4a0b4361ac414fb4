/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * The policy file, parsed and validated. Parsing knows nothing of cgroup
 * ids or BPF maps: compile.c turns a policy into map entries.
 *
 * Every element keeps the line and column it came from, so that errors
 * found later (a cgroup that does not exist, a map that is too small) can
 * still point into the file.
 */
#ifndef SM_POLICY_H
#define SM_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sockmesh/abi.h"

#define SM_POLICY_API_VERSION "sockmesh/v1"
#define SM_WORLD_NAME	      "world"

/* A place in the file; 1-based. */
struct sm_loc {
	unsigned int line;
	unsigned int col;
};

/* Diagnostics: every problem found, each with its place. */
struct sm_diag {
	struct sm_loc loc; /* line 0: about the file as a whole */
	char msg[256];
};

struct sm_diags {
	char file[256];
	struct sm_diag *items;
	size_t n;
	size_t cap;
};

/* An address with a port, as in "198.18.1.1:8080" or "[fd00::10]:9080". */
struct sm_endpoint {
	struct sm_sockaddr sa; /* IPv4 as IPv4-mapped (abi.h) */
	bool v4;
	struct sm_loc loc;
};

/* A cgroup path as written: relative to the cgroup2 mount, "/" first. */
struct sm_cgroup_ref {
	char *path;
	struct sm_loc loc;
};

struct sm_outlier {
	uint32_t failures; /* consecutive failed connects; 0: off */
	uint32_t eject_seconds;
};

struct sm_subset {
	char name[SM_NAME_LEN];
	uint32_t weight;
	struct sm_cgroup_ref *cgroups;
	size_t n_cgroups;
	struct sm_endpoint *endpoints;
	size_t n_endpoints;
	struct sm_loc loc;
};

struct sm_service {
	char name[SM_NAME_LEN];
	struct sm_cgroup_ref *cgroups;
	size_t n_cgroups;
	struct sm_endpoint *endpoints; /* the service's own, outside subsets */
	size_t n_endpoints;
	struct sm_endpoint *vips;
	size_t n_vips;
	unsigned int protocols;	   /* SM_PROTO_TCP | SM_PROTO_UDP */
	uint8_t mode;		   /* enum sm_mode, defaults applied */
	uint8_t affinity;	   /* enum sm_affinity */
	uint8_t drain;		   /* enum sm_drain */
	struct sm_outlier outlier; /* defaults applied */
	/*
	 * A service with a VIP and plain endpoints but no subsets gets one
	 * subset named "default" of weight 1 holding those endpoints, so
	 * that backend selection only ever deals with subsets.
	 */
	struct sm_subset *subsets;
	size_t n_subsets;
	struct sm_loc loc;
};

/*
 * The endpoints of that implicit "default" subset move there: they are
 * no longer in endpoints, so every endpoint is listed once in a policy.
 * A service with subsets of its own keeps its plain endpoints: they say
 * where it is when dialled directly and are not backends of its VIP.
 */

struct sm_rule {
	char (*from)[SM_NAME_LEN]; /* service names, or "world" */
	size_t n_from;
	char (*to)[SM_NAME_LEN];
	size_t n_to;
	uint16_t *ports; /* none: every port */
	size_t n_ports;
	unsigned int protocols; /* SM_PROTO_*; default both */
	struct sm_loc loc;
};

struct sm_quota {
	char from[SM_NAME_LEN]; /* a service, or "world" */
	char to[SM_NAME_LEN];
	uint32_t rate;		 /* connections_per_second; 0: none */
	uint32_t burst;		 /* default: rate */
	uint32_t max_concurrent; /* 0: none */
	struct sm_loc loc;
};

struct sm_policy_index;

struct sm_policy {
	char node[256];	      /* defaults to the host name */
	uint8_t default_mode; /* enum sm_mode */
	uint8_t egress;	      /* enum sm_egress */
	struct sm_outlier default_outlier;
	struct sm_service *services;
	size_t n_services;
	struct sm_rule *rules;
	size_t n_rules;
	struct sm_quota *quotas;
	size_t n_quotas;
	/*
	 * Private to policy.c: name lookups for sm_policy_service(). NULL in
	 * a policy put together by hand, which is then searched in order.
	 */
	struct sm_policy_index *index;
};

/*
 * Parse and validate. On success returns 0 and sets *out. On any problem
 * returns -EINVAL with every problem found in diags (file, line, column)
 * and *out untouched; a file that cannot be read gives -errno.
 */
int sm_policy_load(const char *path, struct sm_policy **out, struct sm_diags *diags);
/*
 * A whole regular file of at most the size a policy may have (64 MiB),
 * with a NUL after its len bytes. 0, -EFBIG when larger, -EINVAL when not
 * a regular file (a FIFO, a device), -EISDIR, or another -errno.
 */
int sm_policy_read(const char *path, char **buf, size_t *len);
/* What sm_policy_read's error means, for messages. */
const char *sm_policy_read_error(int err);
int sm_policy_parse(const char *buf, size_t len, const char *name, struct sm_policy **out,
		    struct sm_diags *diags);
void sm_policy_free(struct sm_policy *p);

/* Lookups by name; NULL when absent. */
const struct sm_service *sm_policy_service(const struct sm_policy *p, const char *name);

void sm_diags_init(struct sm_diags *d, const char *file);
void sm_diags_add(struct sm_diags *d, struct sm_loc loc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void sm_diags_free(struct sm_diags *d);
/* "file:line:col: error: msg", one per line. */
void sm_diags_print(const struct sm_diags *d, FILE *f);

/* "198.18.1.1:8080" / "[fd00::1]:53" -> endpoint; 0 or -EINVAL. */
int sm_endpoint_parse(const char *s, struct sm_endpoint *ep);
/* The reverse, into buf (at least 64 bytes). */
void sm_sockaddr_str(const struct sm_sockaddr *sa, char *buf, size_t len);

#endif /* SM_POLICY_H */
