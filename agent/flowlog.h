/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * The flow log: one JSON object per line in a file that rotates by size,
 * and the newest records in memory for /v1/flows queries.
 *
 * Records arrive from the ring buffer thread; queries come from HTTP
 * threads. Both sides lock internally.
 */
#ifndef SM_FLOWLOG_H
#define SM_FLOWLOG_H

#include <stddef.h>
#include <stdint.h>

/* One record, every field ready to print. Strings are NUL-terminated. */
struct sm_flow {
	uint64_t ts_ns;	   /* wall clock, ns since the epoch */
	char event[8];	   /* connect | deny | audit | close */
	char side[8];	   /* client | server */
	char trace_id[33]; /* 32 hex digits */
	char src[64];	   /* service names; "world" outside the mesh */
	char dst[64];
	char src_subset[64]; /* "" when none */
	char subset[64];     /* destination subset, "" when none */
	char src_addr[64];   /* "198.18.1.1:40000", "[fd00::1]:53" */
	char orig_dst[64];   /* the address dialled */
	char dst_addr[64];   /* after translation */
	char proto[4];	     /* tcp | udp */
	char verdict[16];    /* allowed | denied | audit | no_backend | quota */
	char reason[32];     /* what decided: rule | no_rule | egress | ... */
	int64_t rule;	     /* index in the policy's rules; -1: none */
	uint32_t pid;
	char comm[16];
	char cgroup[256]; /* cgroup path of the socket, "" if unknown */
	uint64_t cookie;  /* socket cookie */
	/* event == close only */
	uint64_t duration_ns;
	uint64_t bytes_sent;
	uint64_t bytes_received;
	uint32_t srtt_us;
	uint32_t retransmits;
	int32_t err; /* 1: never established */
	/* event == deny: denies of this pair not written since the last */
	uint32_t folded;
};

struct sm_flowlog_opts {
	const char *path;  /* NULL: no file, memory only */
	const char *node;  /* the `node` field */
	size_t max_bytes;  /* rotate when the file would pass this */
	unsigned int keep; /* rotated files kept: path.1 .. path.keep */
	size_t window;	   /* records kept in memory */
};

struct sm_flowlog;

int sm_flowlog_open(struct sm_flowlog **out, const struct sm_flowlog_opts *opts);
void sm_flowlog_close(struct sm_flowlog *fl);
/* Change the node name (a reload may change it). */
void sm_flowlog_set_node(struct sm_flowlog *fl, const char *node);
/* Append one record to the file and the window. 0 or -errno (file). */
int sm_flowlog_add(struct sm_flowlog *fl, const struct sm_flow *f);
/* Reopen the file (after logrotate moved it away). */
int sm_flowlog_reopen(struct sm_flowlog *fl);

struct sm_flow_query {
	const char *trace_id; /* NULL: any */
	const char *service;  /* matches src or dst; NULL: any */
	const char *verdict;  /* NULL: any */
	const char *event;    /* NULL: any */
	size_t limit;	      /* 0: no limit */
};

/*
 * The window's records that match, newest last, as a JSON array written
 * into a malloc'd string (*json, *len). 0 or -ENOMEM.
 */
int sm_flowlog_query(struct sm_flowlog *fl, const struct sm_flow_query *q, char **json,
		     size_t *len);

/*
 * A buffer this size holds the JSON line of any record with a node name up
 * to 255 bytes, even when every string is made of control characters.
 */
#define SM_FLOW_JSON_MAX 8192

/*
 * The JSON line of one record, without the newline, into buf.
 * 0, -ENOSPC when it does not fit in len bytes with its NUL, or -ENOMEM.
 */
int sm_flow_to_json(const struct sm_flow *f, const char *node, char *buf, size_t len);

#endif /* SM_FLOWLOG_H */
