/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * Every map of the datapath. BPF-only: the agent sees these through the
 * skeleton and include/sockmesh/abi.h. Sizes here are defaults; the agent
 * sets max_entries before load from its --map-size options.
 *
 * Policy maps carry a slot in their key. The agent fills the inactive slot,
 * then flips sm_active, so a program, which reads the slot once, sees one
 * policy from its first lookup to its last.
 */
#ifndef SM_BPF_MAPS_H
#define SM_BPF_MAPS_H

#include "sockmesh/abi.h"

/* The active slot and generation: one entry. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sm_active);
} SM_MAP_ACTIVE SEC(".maps");

/* Defaults of each slot's policy. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SM_SLOTS);
	__type(key, __u32);
	__type(value, struct sm_config);
} SM_MAP_CONFIG SEC(".maps");

/* Service cgroups: cgroup id -> service, subset. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 2 * 4096);
	__type(key, struct sm_cgroup_key);
	__type(value, struct sm_cgroup_val);
} SM_MAP_CGROUP SEC(".maps");

/* VIPs, endpoints and endpoint hosts. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 2 * 16384);
	__type(key, struct sm_dest_key);
	__type(value, struct sm_dest_val);
} SM_MAP_DEST SEC(".maps");

/* Subset weights of each service. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 2 * 4096);
	__type(key, struct sm_svc_key);
	__type(value, struct sm_svc_val);
} SM_MAP_SVC SEC(".maps");

/* Endpoints of each subset, as two lists (enum sm_list in sockmesh/abi.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 2 * 32768);
	__type(key, struct sm_backend_key);
	__type(value, struct sm_backend_val);
} SM_MAP_BACKEND SEC(".maps");

/* Allow rules, one entry per (from, to, port, protocol). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 2 * 131072);
	__type(key, struct sm_rule_key);
	__type(value, struct sm_rule_val);
} SM_MAP_RULE SEC(".maps");

/* Quota limits per pair and slot. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 2 * 4096);
	__type(key, struct sm_quota_cfg_key);
	__type(value, struct sm_quota_cfg);
} SM_MAP_QCFG SEC(".maps");

/* Quota buckets and live counts per pair, kept across reloads. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct sm_quota_key);
	__type(value, struct sm_quota_state);
} SM_MAP_QSTATE SEC(".maps");

/* Per-socket state; BPF_F_CLONE hands it to accepted children. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct sm_sk);
} SM_MAP_SK SEC(".maps");

/*
 * Trace ids read from SYNs, by connection, until the accepted socket
 * exists. Not used for SYN-cookie handshakes, which keep no state.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sm_trace_key);
	__type(value, struct sm_trace_val);
} SM_MAP_TRACE SEC(".maps");

/* TCP clients on this node, by connection, while they are open. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sm_flow_key);
	__type(value, struct sm_local_val);
} SM_MAP_LOCAL SEC(".maps");

/* Outlier state per backend address, kept across policies. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sm_sockaddr);
	__type(value, struct sm_outlier_val);
} SM_MAP_OUTLIER SEC(".maps");

/*
 * Endpoints just removed from a service with drain: close. The agent fills
 * it, runs the drain iterator in every network namespace, and empties it.
 * Sized at load like the backend map.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct sm_sockaddr);
	__type(value, __u32);
} SM_MAP_DRAIN SEC(".maps");

/* Deny records written per pair and verdict in the current second. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct sm_deny_key);
	__type(value, struct sm_deny_val);
} SM_MAP_DENYRATE SEC(".maps");

/* Global counters, indexed by enum sm_stat. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SM_S_MAX);
	__type(key, __u32);
	__type(value, __u64);
} SM_MAP_STATS SEC(".maps");

/* Counters per service pair. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sm_pair_key);
	__type(value, struct sm_pair_val);
} SM_MAP_PAIR SEC(".maps");

/* Connections per service subset. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct sm_canary_key);
	__type(value, __u64);
} SM_MAP_CANARY SEC(".maps");

/* Service and subset names, written by the agent for the CLI. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 8192);
	__type(key, struct sm_name_key);
	__type(value, struct sm_name_val);
} SM_MAP_NAMES SEC(".maps");

/* Flow events for the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} SM_MAP_EVENTS SEC(".maps");

#endif /* SM_BPF_MAPS_H */
