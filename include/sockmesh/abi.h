/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * What the datapath and the agent must agree on: map key and value layouts,
 * map names, enums and size limits. Map definitions live in bpf/lib/maps.h.
 *
 * Every struct here uses fixed-width fields only, spells its padding out and
 * has its size checked at the bottom of this file, so the BPF object and the
 * host programs can never disagree about a layout.
 */
#ifndef SOCKMESH_ABI_H
#define SOCKMESH_ABI_H

#include <linux/types.h>
#include <linux/bpf.h>

/*
 * Bump on any change to a pinned map's layout. The agent refuses to adopt
 * pinned state written with another schema (see agent/loader.c).
 */
#define SM_SCHEMA_VERSION 1

/* Map names, at most 15 characters: bpftool finds maps by these. */
#define SM_MAP_ACTIVE	sm_active
#define SM_MAP_CONFIG	sm_config
#define SM_MAP_CGROUP	sm_cgroup
#define SM_MAP_DEST	sm_dest
#define SM_MAP_SVC	sm_svc
#define SM_MAP_BACKEND	sm_backend
#define SM_MAP_RULE	sm_rule
#define SM_MAP_QCFG	sm_quota_cfg
#define SM_MAP_QSTATE	sm_quota
#define SM_MAP_SK	sm_sk
#define SM_MAP_TRACE	sm_trace_syn
#define SM_MAP_STATS	sm_stats
#define SM_MAP_PAIR	sm_pair_stats
#define SM_MAP_CANARY	sm_canary
#define SM_MAP_EVENTS	sm_events
#define SM_MAP_NAMES	sm_names
#define SM_MAP_OUTLIER	sm_outlier
#define SM_MAP_LOCAL	sm_local
#define SM_MAP_DRAIN	sm_drain
#define SM_MAP_DENYRATE sm_deny_rate

#define SM__STR(x) #x
#define SM_STR(x)  SM__STR(x)

/* Limits. */
#define SM_MAX_SUBSETS	    8  /* subsets per service */
#define SM_CGROUP_MAX_DEPTH 32 /* cgroup levels walked for identity */
#define SM_SK_XLATE	    4  /* VIP translations kept per UDP socket */
#define SM_SK_PEERS	    4  /* UDP peers a socket last heard from */
#define SM_NAME_LEN	    64 /* service and subset names, with NUL */
#define SM_DUR_BUCKETS	    14 /* duration histogram, +Inf included */
#define SM_TRACE_ID_LEN	    16

/* Service id 0 is "world": every source or destination outside the mesh. */
#define SM_SVC_WORLD 0
/* No rule decided (rule field of events and socket state). */
#define SM_RULE_NONE 0xffffffffU
/* No subset. Subset indices are 0..SM_MAX_SUBSETS-1. */
#define SM_SUBSET_NONE 0xff

/* Policy maps hold two slots; the datapath reads only the active one. */
#define SM_SLOTS 2

/* Verdicts, also the `verdict` label of sockmesh_connections_total. */
enum sm_verdict {
	SM_V_ALLOWED = 0,
	SM_V_DENIED,
	SM_V_AUDIT,
	SM_V_NO_BACKEND,
	SM_V_QUOTA,
	SM_V_MAX,
};

/* What decided a verdict: the flow log's `reason` field. */
enum sm_reason {
	SM_WHY_RULE = 0,	 /* a rule allowed it */
	SM_WHY_NO_RULE,		 /* mesh destination, no rule matched */
	SM_WHY_EGRESS,		 /* non-mesh destination, defaults.egress */
	SM_WHY_EGRESS_ALLOW,	 /* non-mesh destination, allowed */
	SM_WHY_NO_ENDPOINTS,	 /* VIP with no endpoint of this family */
	SM_WHY_QUOTA_RATE,	 /* connections_per_second exhausted */
	SM_WHY_QUOTA_CONCURRENT, /* max_concurrent reached */
	SM_WHY_PEER,		 /* accepted connection (server side) */
	SM_WHY_CONNECT_FAILED,	 /* outlier: connects to a backend kept failing */
	SM_WHY_MAX,
};

/* Errnos a denied connect()/sendmsg() returns; documented in the README. */
#define SM_ERRNO_DENIED	    1	/* EPERM */
#define SM_ERRNO_NO_BACKEND 113 /* EHOSTUNREACH */
#define SM_ERRNO_QUOTA	    122 /* EDQUOT */

/* Destination kinds in sm_dest. */
enum sm_dest_kind {
	SM_DEST_VIP = 1,  /* a virtual address: translate */
	SM_DEST_ENDPOINT, /* a real endpoint of a service */
	SM_DEST_HOST,	  /* address only (port 0, proto 0): peer lookup */
};

enum sm_mode {
	SM_MODE_ENFORCE = 0,
	SM_MODE_AUDIT,
};

enum sm_egress {
	SM_EGRESS_ALLOW = 0,
	SM_EGRESS_DENY,
};

enum sm_affinity {
	SM_AFFINITY_NONE = 0,
	SM_AFFINITY_SOURCE,
};

enum sm_drain {
	SM_DRAIN_CLOSE = 0,
	SM_DRAIN_KEEP,
};

/* Protocol bits of sm_svc.proto_mask. */
#define SM_PROTO_TCP (1U << 0)
#define SM_PROTO_UDP (1U << 1)

/* Global counters, one per-CPU slot each in sm_stats. */
enum sm_stat {
	SM_S_TRACE_WRITTEN = 0, /* trace option written on a segment */
	SM_S_TRACE_RECEIVED,	/* trace option adopted by a server socket */
	SM_S_TRACE_NO_SPACE,	/* SYN had no room for the option */
	SM_S_TRACE_MISSING,	/* server saw no option: local id made */
	SM_S_EVENTS_LOST,	/* ring buffer full */
	SM_S_NO_STORAGE,	/* socket storage could not be made */
	SM_S_PAIR_FULL,		/* sm_pair_stats full */
	SM_S_UNTRACKED,		/* socket older than the agent */
	SM_S_DRAINED,		/* connection closed: its endpoint was removed */
	SM_S_EJECTIONS,		/* backend taken out of selection (outlier) */
	SM_S_DENIES_FOLDED,	/* deny records not written (rate limit) */
	SM_S_MAX,
};

/*
 * An address in one form for both families: IPv4 is stored IPv4-mapped
 * (::ffff:a.b.c.d), so an IPv4-mapped IPv6 destination and the IPv4
 * address it maps hit the same map entries.
 */
struct sm_addr {
	__be32 a[4];
};

struct sm_sockaddr {
	struct sm_addr addr;
	__be16 port;
	__u16 pad;
};

/* Active slot and generation of the policy in force. */
struct sm_active {
	__u32 slot;
	__u32 schema;
	__u64 generation;
};

/* Per-slot defaults. Indexed by slot. */
struct sm_config {
	__u64 generation;
	__u8 egress; /* enum sm_egress */
	__u8 pad[7];
};

/* cgroup id -> service. Walked from the socket's cgroup upwards. */
struct sm_cgroup_key {
	__u64 cgid;
	__u32 slot;
	__u32 pad;
};

struct sm_cgroup_val {
	__u32 svc;
	__u8 subset; /* SM_SUBSET_NONE when the cgroup is the service's */
	__u8 pad[3];
};

/* (address, port, protocol) -> what it is in the mesh. */
struct sm_dest_key {
	struct sm_addr addr;
	__be16 port; /* 0 for SM_DEST_HOST */
	__u8 proto;  /* IPPROTO_TCP or IPPROTO_UDP; 0 for HOST */
	__u8 slot;
};

struct sm_dest_val {
	__u32 svc;
	__u8 kind;   /* enum sm_dest_kind */
	__u8 mode;   /* enum sm_mode of svc */
	__u8 subset; /* for endpoints: subset index or NONE */
	__u8 pad;
};

struct sm_svc_key {
	__u32 svc;
	__u32 slot;
};

/*
 * Endpoint lists of a service. IPv4 sockets choose from list SM_LIST_V4
 * (IPv4 endpoints only); IPv6 sockets from SM_LIST_ALL (every endpoint,
 * IPv4 ones as IPv4-mapped addresses), except in sendmsg6: the kernel
 * fails a datagram whose address a sendmsg6 program turned into an
 * IPv4-mapped one (ENOTSUPP), so unconnected IPv6 UDP chooses from
 * SM_LIST_V6 (IPv6 endpoints only).
 */
enum sm_list {
	SM_LIST_V4 = 0,
	SM_LIST_ALL,
	SM_LIST_V6,
	SM_LISTS,
};

/*
 * A service's subsets as cumulative weights, per list, for backend
 * selection. A subset with no endpoint in a list has weight 0 there.
 */
struct sm_svc_val {
	__u8 mode;     /* enum sm_mode */
	__u8 affinity; /* enum sm_affinity */
	__u8 drain;    /* enum sm_drain */
	__u8 n_subsets;
	__u16 outlier_failures;	      /* failed connects in a row that eject; 0: off */
	__u16 outlier_eject_s;	      /* seconds an ejected backend sits out */
	__u32 total_weight[SM_LISTS]; /* 0: no backend */
	__u32 cum_weight[SM_LISTS][SM_MAX_SUBSETS];
	__u16 n_endpoints[SM_LISTS][SM_MAX_SUBSETS];
};

/* Endpoint idx of a subset of a service. */
struct sm_backend_key {
	__u32 svc;
	__u16 idx;
	__u8 subset;
	__u8 slot; /* slot | list << 1 */
};

struct sm_backend_val {
	struct sm_sockaddr sa;
	__u8 v4; /* 1: an IPv4 address */
	__u8 pad[3];
};

/* src service -> dst service on port/proto. port 0 matches any port. */
struct sm_rule_key {
	__u32 src;
	__u32 dst;
	__be16 port;
	__u8 proto;
	__u8 slot;
};

struct sm_rule_val {
	__u32 index; /* position in the policy's rules */
};

/*
 * The proto of the rule entries the way in (ingress.h) reads: TCP, where a
 * rule that names a VIP's port also names the ports of the endpoints that
 * VIP translates to, because those are what the server's node sees. A
 * client dialling such an endpoint directly still needs a rule naming its
 * own port (the IPPROTO_TCP entries).
 */
#define SM_RULE_PROTO_IN 0x86 /* 0x80 | IPPROTO_TCP */

struct sm_quota_key {
	__u32 src;
	__u32 dst;
};

struct sm_quota_cfg_key {
	struct sm_quota_key pair;
	__u32 slot;
	__u32 pad;
};

struct sm_quota_cfg {
	__u32 rate;	      /* new connections per second; 0: no rate limit */
	__u32 burst;	      /* bucket size in connections */
	__u64 token_ns;	      /* refill time of one connection: 1e9 / rate */
	__u64 bucket_ns;      /* burst * token_ns */
	__u32 max_concurrent; /* 0: no limit */
	__u32 pad;
};

/*
 * Live quota state per pair, not per slot, so a reload that keeps a quota
 * keeps its count. Tokens are kept in nanoseconds of refill time:
 * tokens_ns / (1e9 / rate) whole tokens.
 */
struct sm_quota_state {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 tokens_ns;
	__u64 last_ns;
	__s64 active; /* live connections held against max_concurrent */
};

/*
 * Outlier state of one backend address, across policies: consecutive
 * failed connects, and until when it is out of selection.
 */
struct sm_outlier_val {
	__u64 ejected_until_ns; /* bpf_ktime_get_ns() clock; 0: in */
	__u32 failures;
	__u32 ejections; /* times ejected, for the metric */
	__u32 svc;
	__u32 pad;
};

/*
 * Deny records per (source, destination, verdict) and second: a flood of
 * refused connects must not crowd every other record out of the ring.
 */
struct sm_deny_key {
	__u32 src;
	__u32 dst;
	__u8 verdict;
	__u8 pad[3];
};

struct sm_deny_val {
	__u64 window_ns; /* start of the current second */
	__u32 written;	 /* records written in it */
	__u32 folded;	 /* denies not written since the last record */
};

/* Names for the CLI and the agent's labels, kept pinned. */
struct sm_name_key {
	__u32 svc;
	__u8 subset; /* SM_SUBSET_NONE for the service itself */
	__u8 pad[3];
};

struct sm_name_val {
	char name[SM_NAME_LEN];
};

/* Per source/destination service pair counters (per-CPU). */
struct sm_pair_key {
	__u32 src;
	__u32 dst;
};

struct sm_pair_val {
	__u64 conns[SM_V_MAX];
	__u64 bytes_sent;
	__u64 bytes_received;
	__u64 retransmits;
	__u64 closed;
	__u64 duration_sum_ns;
	__u64 duration_bucket[SM_DUR_BUCKETS];
};

struct sm_canary_key {
	__u32 svc;
	__u32 subset;
};

/* A VIP translation kept on the socket that dialled it. */
struct sm_xlate {
	struct sm_sockaddr vip;
	struct sm_sockaddr backend;
};

/* Socket flags (sm_sk.flags), changed with atomic ops. */
#define SM_SK_MANAGED	    (1U << 0) /* we decided this socket's connect */
#define SM_SK_TRACE_PENDING (1U << 1) /* client: option still to send */
#define SM_SK_TRACE_ACKED   (1U << 2) /* client: server echoed the option */
#define SM_SK_PASSIVE	    (1U << 3) /* accepted socket */
#define SM_SK_TRACE_WAIT    (1U << 4) /* server: id not adopted yet */
#define SM_SK_QUOTA_HELD    (1U << 5) /* holds one max_concurrent unit */
#define SM_SK_ESTABLISHED   (1U << 6)
#define SM_SK_CLOSED	    (1U << 7) /* close already recorded */
#define SM_SK_LATE	    (1U << 8) /* made before the agent started */
#define SM_SK_LISTENER	    (1U << 9)
#define SM_SK_LOCAL_PEER    (1U << 10) /* server: client is on this node */
#define SM_SK_NO_SPACE	    (1U << 11) /* client: SYN had no room */
#define SM_SK_FIN_IN	    (1U << 12) /* the peer's FIN arrived */
#define SM_SK_FIN_ACKED	    (1U << 13) /* our FIN was acknowledged */
#define SM_SK_TRACE_COUNTED (1U << 14) /* client: counted as written */

/*
 * Everything the datapath keeps on a socket (socket storage, cloned to
 * accepted children). The CLI's `explain` reads it with the socket's fd.
 */
struct sm_sk {
	__u64 cgid; /* creating cgroup */
	__u64 start_ns;
	__u32 svc;   /* creating service, SM_SVC_WORLD if none */
	__u32 flags; /* SM_SK_* */
	__u32 pid;
	__u32 rule;
	__u32 dst_svc;
	__u8 subset;
	__u8 dst_subset;
	__u8 verdict;
	__u8 reason;
	char comm[16];
	__u8 trace_id[SM_TRACE_ID_LEN];
	__u8 proto;
	__u8 n_xlate;
	__u8 trace_segs; /* segments that carried the option after the SYN */
	__u8 xlate_next; /* xlate entry to reuse when all are taken */
	__u32 pad2;
	struct sm_sockaddr orig; /* address dialled */
	struct sm_sockaddr dst;	 /* after translation */
	struct sm_xlate xlate[SM_SK_XLATE];
	/* UDP: sources of the last datagrams received, for replies. */
	struct sm_sockaddr peers[SM_SK_PEERS];
	__u8 n_peers;
	__u8 peer_next;
	__u16 pad3;
	__u32 pad4;
};

/* Key of the server-side stash of SYN trace options. */
struct sm_trace_key {
	__u64 netns;
	struct sm_addr saddr;
	struct sm_addr daddr;
	__be16 sport;
	__be16 dport;
	__u32 pad;
};

struct sm_trace_val {
	__u8 id[SM_TRACE_ID_LEN];
};

/*
 * A TCP client on this node, by its connection's addresses as both ends
 * see them (client first). Lets the server side of a connection between
 * two local services, in any network namespace of the node, name its peer
 * exactly, skip the ingress check the client side already made, and leave
 * the counting to the client side.
 */
struct sm_flow_key {
	struct sm_addr saddr;
	struct sm_addr daddr;
	__be16 sport;
	__be16 dport;
	__u32 pad;
};

struct sm_local_val {
	__u32 svc;     /* the client's service */
	__u32 dst_svc; /* the service its connect() was decided for */
	__u8 subset;
	__u8 pad[3];
};

enum sm_event_type {
	SM_EV_CONNECT = 1,
	SM_EV_DENY,
	SM_EV_AUDIT,
	SM_EV_CLOSE,
	SM_EV_OUTLIER, /* a backend was taken out of selection */
	SM_EV_MAX,
};

enum sm_side {
	SM_SIDE_CLIENT = 0,
	SM_SIDE_SERVER,
};

/* One ring buffer record. */
struct sm_event {
	__u64 ts_ns;  /* CLOCK_BOOTTIME */
	__u64 cookie; /* socket cookie */
	__u64 cgid;
	__u8 trace_id[SM_TRACE_ID_LEN];
	__u8 type;    /* enum sm_event_type */
	__u8 verdict; /* enum sm_verdict */
	__u8 reason;  /* enum sm_reason */
	__u8 proto;
	__u8 side;   /* enum sm_side */
	__u8 subset; /* destination subset */
	__u8 src_subset;
	__u8 pad;
	__u32 src_svc;
	__u32 dst_svc;
	__u32 rule;
	__u32 pid;
	char comm[16];
	struct sm_sockaddr src;
	struct sm_sockaddr orig;
	struct sm_sockaddr dst;
	__s32 err; /* close: socket error (positive errno), 0 if none */
	/* close only */
	__u64 duration_ns;
	__u64 bytes_sent;
	__u64 bytes_received;
	__u32 srtt_us;
	__u32 retransmits;
	/* deny: denies of this pair and verdict not written since the last */
	__u32 folded;
	__u32 pad2;
};

/* Trace option on the wire: RFC 6994 shared experimental kind + ExID. */
#define SM_TCPOPT_KIND	   253
#define SM_TCPOPT_EXID	   0x534d /* "SM" */
#define SM_TCPOPT_LEN	   (4 + SM_TRACE_ID_LEN)
#define SM_TCPOPT_ECHO_LEN 4 /* server's "got it" on the SYN-ACK */

/* Bounds of sockmesh_connection_duration_seconds, in milliseconds. */
#define SM_DUR_BOUNDS_MS                                                                 \
	{                                                                                \
		1, 5, 10, 50, 100, 500, 1000, 5000, 10000, 30000, 60000, 300000, 3600000 \
	}

#define SM_ABI_ASSERT(type, size) _Static_assert(sizeof(type) == (size), #type " changed size")

SM_ABI_ASSERT(struct sm_addr, 16);
SM_ABI_ASSERT(struct sm_sockaddr, 20);
SM_ABI_ASSERT(struct sm_active, 16);
SM_ABI_ASSERT(struct sm_config, 16);
SM_ABI_ASSERT(struct sm_cgroup_key, 16);
SM_ABI_ASSERT(struct sm_cgroup_val, 8);
SM_ABI_ASSERT(struct sm_dest_key, 20);
SM_ABI_ASSERT(struct sm_dest_val, 8);
SM_ABI_ASSERT(struct sm_svc_key, 8);
SM_ABI_ASSERT(struct sm_svc_val, 8 + SM_LISTS * (4 + 6 * SM_MAX_SUBSETS));
SM_ABI_ASSERT(struct sm_backend_key, 8);
SM_ABI_ASSERT(struct sm_backend_val, 24);
SM_ABI_ASSERT(struct sm_rule_key, 12);
SM_ABI_ASSERT(struct sm_quota_cfg_key, 16);
SM_ABI_ASSERT(struct sm_quota_cfg, 32);
SM_ABI_ASSERT(struct sm_quota_state, 32);
SM_ABI_ASSERT(struct sm_outlier_val, 24);
SM_ABI_ASSERT(struct sm_deny_key, 12);
SM_ABI_ASSERT(struct sm_deny_val, 16);
SM_ABI_ASSERT(struct sm_name_key, 8);
SM_ABI_ASSERT(struct sm_pair_val, 8 * (SM_V_MAX + 5 + SM_DUR_BUCKETS));
SM_ABI_ASSERT(struct sm_xlate, 40);
SM_ABI_ASSERT(struct sm_sk, 128 + 40 * SM_SK_XLATE + 20 * SM_SK_PEERS);
SM_ABI_ASSERT(struct sm_trace_key, 48);
SM_ABI_ASSERT(struct sm_flow_key, 40);
SM_ABI_ASSERT(struct sm_local_val, 12);
SM_ABI_ASSERT(struct sm_event, 184);

#endif /* SOCKMESH_ABI_H */
