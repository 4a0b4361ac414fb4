// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bpf/libbpf.h>
#include <netinet/in.h>

#include "cgroup.h"
#include "events.h"
#include "jsonout.h"
#include "log.h"
#include "policy.h"
#include "sockmesh/sockmesh.h"

#define CG_CACHE	  256 /* cgroup paths remembered, by id */
#define SM_EVENTS_POLL_MS 50

struct sm_events {
	struct ring_buffer *rb;
	pthread_t thread;
	atomic_int stop;
	struct sm_flowlog *flowlog;
	struct sm_names *names;
	const char *cg_mount;
	atomic_uint_fast64_t handled;
	atomic_uint_fast64_t write_errors;
	struct {
		uint64_t id;
		char path[256];
	} cg_cache[CG_CACHE];
};

/* Boot-time nanoseconds (the datapath's clock) as wall-clock time. */
static uint64_t wall_ns(uint64_t boot_ns)
{
	struct timespec rt, bt;
	int64_t off;

	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_BOOTTIME, &bt);
	off = (int64_t)(rt.tv_sec - bt.tv_sec) * 1000000000LL + (rt.tv_nsec - bt.tv_nsec);
	return boot_ns + off;
}

static void addr_str(const struct sm_sockaddr *sa, char *buf, size_t len)
{
	static const struct sm_addr zero;

	if (!memcmp(&sa->addr, &zero, sizeof(zero)) && !sa->port)
		buf[0] = '\0';
	else
		sm_sockaddr_str(sa, buf, len);
}

void sm_event_to_flow(const struct sm_event *e, struct sm_names *names, const char *cg_mount,
		      struct sm_flow *f)
{
	memset(f, 0, sizeof(*f));
	f->ts_ns = wall_ns(e->ts_ns);
	snprintf(f->event, sizeof(f->event), "%s", sm_event_name(e->type));
	snprintf(f->side, sizeof(f->side), "%s", e->side == SM_SIDE_SERVER ? "server" : "client");
	sockmesh_trace_id_hex(e->trace_id, f->trace_id);
	sm_names_get(names, e->src_svc, f->src, sizeof(f->src));
	sm_names_get(names, e->dst_svc, f->dst, sizeof(f->dst));
	sm_names_get_subset(names, e->src_svc, e->src_subset, f->src_subset, sizeof(f->src_subset));
	sm_names_get_subset(names, e->dst_svc, e->subset, f->subset, sizeof(f->subset));
	addr_str(&e->src, f->src_addr, sizeof(f->src_addr));
	addr_str(&e->orig, f->orig_dst, sizeof(f->orig_dst));
	addr_str(&e->dst, f->dst_addr, sizeof(f->dst_addr));
	snprintf(f->proto, sizeof(f->proto), "%s", e->proto == IPPROTO_UDP ? "udp" : "tcp");
	snprintf(f->verdict, sizeof(f->verdict), "%s", sm_verdict_name(e->verdict));
	snprintf(f->reason, sizeof(f->reason), "%s", sm_reason_name(e->reason));
	f->rule = e->rule == SM_RULE_NONE ? -1 : (int64_t)e->rule;
	f->pid = e->pid;
	memcpy(f->comm, e->comm, sizeof(f->comm));
	f->comm[sizeof(f->comm) - 1] = '\0';
	f->cookie = e->cookie;
	f->duration_ns = e->duration_ns;
	f->bytes_sent = e->bytes_sent;
	f->bytes_received = e->bytes_received;
	f->srtt_us = e->srtt_us;
	f->retransmits = e->retransmits;
	f->err = e->err;
	f->folded = e->folded;
	if (cg_mount && e->cgid)
		sm_cgroup_path_of(cg_mount, e->cgid, f->cgroup, sizeof(f->cgroup));
}

/* cgroup paths cost two syscalls to find: remember recent ones. */
static void cgroup_cached(struct sm_events *ev, uint64_t id, char *buf, size_t len)
{
	unsigned int i = (unsigned int)(id % CG_CACHE);

	if (ev->cg_cache[i].id != id) {
		ev->cg_cache[i].id = id;
		sm_cgroup_path_of(ev->cg_mount, id, ev->cg_cache[i].path,
				  sizeof(ev->cg_cache[i].path));
	}
	snprintf(buf, len, "%s", ev->cg_cache[i].path);
}

static int handle_event(void *ctx, void *data, size_t size)
{
	struct sm_events *ev = ctx;
	struct sm_flow f;

	if (size < sizeof(struct sm_event))
		return 0;
	sm_event_to_flow(data, ev->names, NULL, &f);
	if (((struct sm_event *)data)->cgid)
		cgroup_cached(ev, ((struct sm_event *)data)->cgid, f.cgroup, sizeof(f.cgroup));
	if (sm_flowlog_add(ev->flowlog, &f))
		atomic_fetch_add(&ev->write_errors, 1);
	atomic_fetch_add(&ev->handled, 1);
	return 0;
}

static void *events_thread(void *arg)
{
	struct sm_events *ev = arg;
	int err;

	/*
	 * The datapath wakes us only when a batch has built up (see
	 * event_submit()); between wakeups the ring is read every
	 * SM_EVENTS_POLL_MS, which bounds how late a flow record is.
	 */
	while (!atomic_load(&ev->stop)) {
		err = ring_buffer__poll(ev->rb, SM_EVENTS_POLL_MS);
		if (err >= 0)
			err = ring_buffer__consume(ev->rb);
		if (err < 0 && err != -EINTR) {
			pr_warn("ring buffer %s: poll: %s\n", SM_STR(SM_MAP_EVENTS),
				strerror(-err));
			break;
		}
	}
	/* What the datapath queued before the stop still gets written. */
	ring_buffer__consume(ev->rb);
	return NULL;
}

int sm_events_start(struct sm_events **out, const struct sm_events_opts *o)
{
	struct sm_events *ev;
	int err;

	ev = calloc(1, sizeof(*ev));
	if (!ev)
		return -ENOMEM;
	ev->flowlog = o->flowlog;
	ev->names = o->names;
	ev->cg_mount = o->cg_mount;
	ev->rb = ring_buffer__new(o->ringbuf_fd, handle_event, ev, NULL);
	if (!ev->rb) {
		err = -errno;
		goto err_free;
	}
	err = -pthread_create(&ev->thread, NULL, events_thread, ev);
	if (err)
		goto err_free_rb;
	*out = ev;
	return 0;

err_free_rb:
	ring_buffer__free(ev->rb);
err_free:
	free(ev);
	return err;
}

void sm_events_stop(struct sm_events *ev)
{
	if (!ev)
		return;
	atomic_store(&ev->stop, 1);
	pthread_join(ev->thread, NULL);
	ring_buffer__free(ev->rb);
	free(ev);
}

uint64_t sm_events_handled(const struct sm_events *ev)
{
	return ev ? atomic_load(&((struct sm_events *)ev)->handled) : 0;
}

uint64_t sm_events_write_errors(const struct sm_events *ev)
{
	return ev ? atomic_load(&((struct sm_events *)ev)->write_errors) : 0;
}
