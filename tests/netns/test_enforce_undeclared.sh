#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# A port or address a service takes but the policy does not list is still
# the service's, and needs a rule like any other:
#   - on the same network namespace, connect() to a listener of the
#     service that is bound to the address dialled, or bound to all
#     addresses and dialled on a loopback address (127.0.0.1), is decided
#     as a connection to the service at once: EPERM without a rule,
#     through with one, and the client's flow record and the metrics name
#     the service;
#   - UDP to such an address stays egress (a datagram to a bound socket
#     may be a reply): clients of UDP servers on 127.0.0.1, of a service
#     or of none, get their answers;
#   - from another network namespace of the node, the way in knows better:
#     a client that took the port for no service (egress) has its SYN
#     dropped by the service's ingress check unless a rule lets it in.
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"

sb_need_root
sb_need_cmd jq
sb_init

API=198.18.5.2
sb_netns node "$API/32" 198.18.5.3/32 198.18.5.4/32
sb_netns peer
sb_veth node 198.18.6.1/24 peer 198.18.6.2/24
for cg in api db web; do
	sb_cgroup "/$cg" >/dev/null
done
policy=$SB_WORK/policy.yaml
cat >"$policy" <<EOF
apiVersion: sockmesh/v1
services:
  api: {cgroups: [$SB_CGROOT/api], protocol: both, endpoints: ["$API:9000"]}
  db: {cgroups: [$SB_CGROOT/db], endpoints: ["198.18.5.3:5432"]}
  web: {cgroups: [$SB_CGROOT/web], endpoints: ["198.18.5.4:80"]}
rules:
  - {from: web, to: api, ports: [9000, 9001, 9002, 9003]}
EOF
serve() {	# ADDR:PORT TAG [--udp]
	local pid
	pid=$(sb_run /api node "$SB_SMTEST" serve --listen "$1" --tag "$2" \
		--log "$SB_WORK/$2.jsonl" "${@:3}")
	sb_wait_ready "$pid"
}
# A UDP server of no service, older than the agent (its socket has no
# state of ours).
sb_cgroup /other >/dev/null
pid=$(sb_run /other node "$SB_SMTEST" serve --listen 0.0.0.0:9004 --udp \
	--tag world9004)
sb_wait_ready "$pid"
sb_agent_start sockmesh "$policy"
flows=$(sb_agent sockmesh flows)
serve "$API:9000" api9000
serve "$API:9001" api9001
serve "0.0.0.0:9002" any9002
serve "0.0.0.0:9003" udp9003 --udp

connect() {	# CGROUP ADDR:PORT [NETNS [smtest args]]
	sb_exec "/$1" "${3:-node}" "$SB_SMTEST" connect --to "$2" --count 1 \
		--timeout-ms 1500 "${@:4}"
}

# The client's last record of a call from SRC to ORIG_DST.
client_record() {	# SRC ORIG_DST
	sb_wait_for "$1's record for $2" 10 bash -c \
		"jq -e -s 'map(select(.side == \"client\" and .src == \"$1\" and
		 .orig_dst == \"$2\")) | length >= 1' '$flows' >/dev/null"
	jq -c -s "map(select(.side == \"client\" and .src == \"$1\" and
		.orig_dst == \"$2\" and .event != \"close\")) | last" "$flows"
}

# The declared port: db has no rule, so connect() says EPERM at once.
sb_assert_json "db -> api:9000 (declared, no rule): EPERM" \
	'.results == {"EPERM": 1}' "$(connect db "$API:9000")"

# Same namespace, undeclared: decided at once by the service that has it.
sb_assert_json "db -> $API:9001 (bound to it, no rule): EPERM" \
	'.results == {"EPERM": 1}' "$(connect db "$API:9001")"
sb_assert_json "db -> 127.0.0.1:9002 (bound to all, no rule): EPERM" \
	'.results == {"EPERM": 1}' "$(connect db 127.0.0.1:9002)"
sb_assert_json "db -> 127.0.0.1:9002: the client's record names api" \
	'.event == "deny" and .dst == "api" and .verdict == "denied" and
	 .reason == "no_rule"' "$(client_record db 127.0.0.1:9002)"

# With a rule naming the port, the same calls go through, named api.
sb_assert_json "web -> $API:9001 (a rule): ok" \
	'.results == {"ok": 1} and .tags == {"api9001": 1}' \
	"$(connect web "$API:9001")"
sb_assert_json "web -> 127.0.0.1:9002 (a rule): ok" \
	'.results == {"ok": 1} and .tags == {"any9002": 1}' \
	"$(connect web 127.0.0.1:9002)"
sb_assert_json "web -> 127.0.0.1:9002: the client's record names api" \
	'.event == "connect" and .dst == "api" and .verdict == "allowed" and
	 .reason == "rule"' "$(client_record web 127.0.0.1:9002)"
sb_assert_ge "counted as web -> api, allowed" \
	"$(sb_metric sockmesh sockmesh_connections_total \
		'src="web",dst="api",verdict="allowed"')" 2

# UDP on loopback stays egress, so answers come back: from api's server
# (a rule lets web reach it) and from the server of no service, whose
# answer to web's port is no new flow to web.
sb_assert_json "web -> 127.0.0.1:9003 UDP, 8 sockets: all answered" \
	'.results == {"ok": 8} and .tags == {"udp9003": 8}' \
	"$(connect web 127.0.0.1:9003 node --udp --count 8)"
# Unconnected sockets, as resolvers use: the answer goes to a socket
# bound to all addresses, on a loopback address.
sb_assert_json "web -> 127.0.0.1:9004 UDP sendto (a server of no service): answered" \
	'.results == {"ok": 4} and .tags == {"world9004": 4}' \
	"$(sb_exec /web node python3 "$(dirname "$0")/lb_tool.py" udp \
		--to 127.0.0.1:9004 --sockets 2 --count 2)"

# Another namespace of the node: the client (egress to it) is let out;
# api's way in drops the SYN, and records the deny on the server side.
sb_assert_json "db in peer -> 198.18.6.1:9002 (no rule): no connection" \
	'.results == {"ETIMEDOUT": 1}' "$(connect db 198.18.6.1:9002 peer)"
sb_assert_eq "... the server saw nothing" 0 \
	"$(cat "$SB_WORK/any9002.jsonl" | jq -s 'map(select(.peer | startswith("198.18.6.2"))) | length')"
sb_wait_for "the server side's deny record" 10 bash -c \
	"jq -e -s 'map(select(.event == \"deny\" and .side == \"server\" and
	 .src == \"db\" and .dst == \"api\" and
	 .orig_dst == \"198.18.6.1:9002\")) | length >= 1' '$flows' >/dev/null"
sb_assert_json "web in peer -> 198.18.6.1:9002 (a rule): ok" \
	'.results == {"ok": 1} and .tags == {"any9002": 1}' \
	"$(connect web 198.18.6.1:9002 peer)"
