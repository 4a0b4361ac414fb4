#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# Attributed denies and their errnos. Each kind of refusal reaches the
# application as its own errno, and its flow log record names what decided
# (the reason), the pid, the command and the cgroup; the metrics count it
# under its own verdict:
#
#   no rule for a mesh destination     EPERM         denied      no_rule
#   defaults.egress: deny, elsewhere   EPERM         denied      defaults.egress
#   a VIP with no endpoints            EHOSTUNREACH  no_backend  no_endpoints
#   max_concurrent reached             EDQUOT        quota       quota_concurrent
#
# Each has a must-pass beside it: a rule, a destination in the mesh, a
# process of no service (egress governs services only), the VIP once it
# has an endpoint, egress: allow, the quota once a connection closed.
set -euo pipefail
# shellcheck source=tests/netns/enforce_lib.sh
source "$(dirname "$0")/enforce_lib.sh"

sb_need_root
enf_need
sb_init

SRV=198.18.90.1
OUTSIDE=198.18.90.9	# no endpoint of any service
VIP=198.19.90.10:80

sb_netns n "$SRV/32" "$OUTSIDE/32"
enf_cgroups /server /client /intruder /nobody

# write_policy EGRESS [SCALED_ENDPOINTS]
write_policy() {
	enf_policy <<EOF
apiVersion: sockmesh/v1
node: node-denies
defaults:
  egress: $1
services:
  server:
    cgroups: [$SB_CGROOT/server]
    protocol: both
    endpoints: [$SRV:8080, $SRV:5353]
  scaled:
    vip: [$VIP]
    subsets:
      v1: {weight: 1, endpoints: [${2:-}]}
  client:
    cgroups: [$SB_CGROOT/client]
  intruder:
    cgroups: [$SB_CGROOT/intruder]
rules:
  - {from: [client], to: [server], ports: [8080, 5353]}
  - {from: [client], to: [scaled], ports: [80]}
quotas:
  - {from: client, to: server, max_concurrent: 1}
EOF
}
write_policy deny
enf_agent

ULOG=$SB_WORK/server-udp.jsonl
enf_serve /server n "$SRV:8080" server
enf_serve /server n "$SRV:5353" server-udp --udp --log "$ULOG"
enf_serve "" n "$SRV:9000" scaled
enf_serve "" n "$OUTSIDE:80" outside
enf_serve "" n "$OUTSIDE:53" outside-udp --udp

ERRNOS=()

# refused NAME CG SRC DST ERRNO VERDICT REASON PROTO ORIG ARGS...: one
# connect() or sendto() fails with ERRNO at once; the deny record says who
# and why, the metric counts it under VERDICT.
refused() {
	local name=$1 cg=$2 src=$3 dst=$4 errno=$5 verdict=$6 reason=$7
	local proto=$8 orig=$9 p c0
	shift 9
	c0=$(enf_conns "$src" "$dst" "$verdict")
	p=$(enf_connect "$cg" "$@")
	sb_assert_json "$name: $errno" \
		".results == {\"$errno\": 1} and .tags == {}" \
		"$(enf_result "$p")"
	sb_assert_le "$name: at once (ms)" \
		"$(sb_json .first_errno_ms "$(enf_result "$p")")" 1500
	sb_assert_eq "$name: counted as $verdict" "$((c0 + 1))" \
		"$(enf_conns "$src" "$dst" "$verdict")"
	sb_wait_for "$name: deny record" 20 enf_records_ge "$p" deny 1
	sb_assert_json "$name: the record names who, what and why" \
		"length == 1 and all(.[]; .event == \"deny\" and
		  .side == \"client\" and .src == \"$src\" and
		  .dst == \"$dst\" and .verdict == \"$verdict\" and
		  .reason == \"$reason\" and .proto == \"$proto\" and
		  .orig_dst == \"$orig\" and .pid == $p and
		  .comm == \"smtest\" and .cgroup == \"$SB_CGROOT$cg\")" \
		"$(enf_records "$p" deny)"
	ERRNOS+=("$errno")
}

# passes NAME CG TAG ARGS...: one exchange that gets the reply TAG; prints
# the client's pid (the check's own line goes to stderr).
passes() {
	local name=$1 cg=$2 tag=$3 p
	shift 3
	p=$(enf_connect "$cg" "$@")
	sb_assert_json "$name: passes" \
		".results == {\"ok\": 1} and .tags == {\"$tag\": 1}" \
		"$(enf_result "$p")" >&2
	echo "$p"
}

test_no_rule() {
	refused "intruder -> server" /intruder intruder server EPERM denied \
		no_rule tcp "$SRV:8080" --to "$SRV:8080"
	passes "client -> server (a rule)" /client server --to "$SRV:8080" \
		>/dev/null
}

test_egress_deny() {
	refused "client -> outside tcp (egress: deny)" /client client world \
		EPERM denied defaults.egress tcp "$OUTSIDE:80" \
		--to "$OUTSIDE:80"
	refused "client -> outside udp (egress: deny)" /client client world \
		EPERM denied defaults.egress udp "$OUTSIDE:53" \
		--udp --unconnected --to "$OUTSIDE:53"
	passes "no service -> outside (egress is for services)" /nobody \
		outside --to "$OUTSIDE:80" >/dev/null
	# In the mesh, egress does not apply: the datagram goes out and
	# arrives, and the server's answer to the client's ephemeral port
	# (no mesh address) is a reply, not egress: it comes back.
	passes "client -> server udp, and the reply (egress: deny)" /client \
		server-udp --udp --unconnected --to "$SRV:5353" >/dev/null
	sb_wait_for "client -> server udp: the datagram arrived" 20 \
		test -s "$ULOG"
	sb_assert_json "client -> server udp: all of it" \
		'.bytes_received == 18' "$(tail -n 1 "$ULOG")"
}

test_no_backend() {
	refused "client -> VIP with no endpoints" /client client scaled \
		EHOSTUNREACH no_backend no_endpoints tcp "$VIP" --to "$VIP"
}

quota_active() {
	sb_metric sockmesh sockmesh_quota_active 'src="client",dst="server"'
}

quota_free() {
	[[ $(quota_active) == 0 ]]
}

test_quota() {
	local h p
	sb_wait_for "no quota held" 20 quota_free
	h=$(sb_run /client n "$SB_SMTEST" connect --to "$SRV:8080" --hold)
	sb_wait_ready "$h" 20 "held 1"
	sb_assert_eq "one connection held" 1 "$(quota_active)"
	refused "client -> server over max_concurrent" /client client server \
		EDQUOT quota quota_concurrent tcp "$SRV:8080" --to "$SRV:8080"
	sb_stop "$h"
	sb_wait_for "the held connection gave its unit back" 20 quota_free
	passes "client -> server once the quota is free" /client server \
		--to "$SRV:8080" >/dev/null
}

# Phase 2: egress allowed, and the VIP has an endpoint.
test_after_reload() {
	local p a0
	enf_reload write_policy allow "$SRV:9000"

	a0=$(enf_conns client world allowed)
	p=$(passes "client -> outside (egress: allow)" /client outside \
		--to "$OUTSIDE:80")
	sb_assert_eq "client -> outside: counted allowed" "$((a0 + 1))" \
		"$(enf_conns client world allowed)"
	sb_wait_for "client -> outside: connect record" 20 enf_records_ge "$p" \
		connect 1
	sb_assert_json "client -> outside: record says why" \
		'all(.[]; .dst == "world" and .verdict == "allowed" and
		 .reason == "egress_allowed")' "$(enf_records "$p" connect)"
	passes "client -> VIP with an endpoint" /client scaled --to "$VIP" \
		>/dev/null
}

test_no_rule
test_egress_deny
test_no_backend
test_quota
test_after_reload

sb_assert_eq "three kinds, three errnos" "EPERM EHOSTUNREACH EDQUOT" \
	"$(printf '%s\n' "${ERRNOS[@]}" | awk '!seen[$0]++' | tr '\n' ' ' |
		sed 's/ $//')"
