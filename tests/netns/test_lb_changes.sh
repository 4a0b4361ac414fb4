#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# Policy changes while traffic flows:
#   - a reload from weights 100/0 to 0/100 during a stream of connections:
#     every connection before the switch goes to v1, every one after it to
#     v2, none fails;
#   - a long-lived connection made before the reload still exchanges data
#     with its backend over the same connection afterwards;
#   - drain: close: a reload that removes an endpoint closes the client
#     connections that reached it through the VIP (the application's next
#     send fails with ECONNABORTED), the client's reconnect reaches a live
#     backend, a connection to an endpoint that stays is left alone; the
#     agent logs and counts what it closed;
#   - drain: keep: a connection to a removed endpoint stays open and
#     working;
#   - UDP: an unconnected socket keeps its backend across a weight change,
#     moves to a live endpoint when its own is removed (drain: close), and
#     stays with drain: keep.
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"
# shellcheck source=tests/netns/lb_lib.sh
source "$(dirname "$0")/lb_lib.sh"

sb_need_root
sb_init

lb_setup 198.18.4.1/32 198.18.4.2/32 198.18.4.3/32 198.18.4.4/32 \
	198.18.4.5/32 198.18.4.6/32 198.18.4.7/32 198.18.4.8/32
sb_cgroup /client >/dev/null
sb_cgroup /backend >/dev/null
API=198.19.4.1:80
KEEP=198.19.4.2:80
DNS=198.19.4.3:53
DNSK=198.19.4.4:53

# Weights of api's v1 and v2, then of keepy's; "-" for v1 of either
# lists no endpoint (removed). The UDP services dns and dnsk follow api
# and keepy.
body() {
	local a1="[198.18.4.1:80]" k1="[198.18.4.3:80]" d1="[198.18.4.5:53]"
	local dk1="[198.18.4.7:53]"
	[[ $1 != - ]] || a1="[]" d1="[]"
	[[ $3 != - ]] || k1="[]" dk1="[]"
	cat <<EOF
services:
  client:
    cgroups: [$SB_CGROOT/client]
  api:
    vip: [$API]
    drain: close
    subsets:
      v1: {weight: ${1/-/0}, endpoints: $a1}
      v2: {weight: $2, endpoints: [198.18.4.2:80]}
  keepy:
    vip: [$KEEP]
    drain: keep
    subsets:
      v1: {weight: ${3/-/0}, endpoints: $k1}
      v2: {weight: $4, endpoints: [198.18.4.4:80]}
  dns:
    vip: [$DNS]
    protocol: udp
    subsets:
      v1: {weight: ${1/-/0}, endpoints: $d1}
      v2: {weight: $2, endpoints: [198.18.4.6:53]}
  dnsk:
    vip: [$DNSK]
    protocol: udp
    drain: keep
    subsets:
      v1: {weight: ${3/-/0}, endpoints: $dk1}
      v2: {weight: $4, endpoints: [198.18.4.8:53]}
rules:
  - {from: client, to: [api, keepy], ports: [80]}
  - {from: client, to: [dns, dnsk], ports: [53]}
EOF
}

lb_policy "$(body 100 0 100 0)"
lb_agent
lb_serve_lines /backend 198.18.4.1:80 a1
lb_serve_lines /backend 198.18.4.2:80 a2
lb_serve_lines /backend 198.18.4.3:80 k1
lb_serve_lines /backend 198.18.4.4:80 k2
lb_serve /backend 198.18.4.5:53 u5 --udp
lb_serve /backend 198.18.4.6:53 u6 --udp
lb_serve /backend 198.18.4.7:53 u7 --udp
lb_serve /backend 198.18.4.8:53 u8 --udp

# The clients below, by name: their pids.
declare -A HOLD

# A long-lived client NAME to VIP; its rounds are started by go NAME R.
# More lb_tool.py hold flags may follow (--read-wait S: a reader).
hold_start() {
	local name=$1 to=$2
	shift 2
	mkdir -p "$SB_WORK/go.$name"
	sb_run /client node python3 "$LB_TOOL" hold --to "$to" \
		--go "$SB_WORK/go.$name" --rounds 3 "$@" >/dev/null
	HOLD[$name]=$SB_PID
	sb_wait_for "$name connected" 60 hold_has "$name" 0 first
}

# Resolver-like client NAME to VIP: one unconnected UDP socket for its
# life; its queries are started by udp_query NAME R.
udp_start() {
	mkdir "$SB_WORK/go.$1"
	sb_run /client node python3 "$LB_TOOL" udp-hold --to "$2" \
		--go "$SB_WORK/go.$1" --rounds 2 >/dev/null
	HOLD[$1]=$SB_PID
	sb_wait_for "$1 client's first query" 60 hold_has "$1" 0 query
}

# The output file of client NAME.
hold_out() {
	sb_out "${HOLD[$1]}"
}

# Print client NAME's report of round R, step STEP.
hold_get() {
	jq -cR --argjson r "$2" --arg s "$3" \
		'fromjson? | select(.round == $r and .step == $s)' \
		"$(hold_out "$1")"
}

# True when client NAME reported round R, step STEP.
hold_has() {
	[[ -n $(hold_get "$@" 2>/dev/null) ]]
}

# Start round R of client NAME and wait for its report.
go() {
	touch "$SB_WORK/go.$1/go.$2"
	sb_wait_for "$1 round $2" 60 hold_has "$1" "$2" held
}

# Query round R of UDP client NAME.
udp_query() {
	touch "$SB_WORK/go.$1/go.$2"
	sb_wait_for "$1 client's query $2" 60 hold_has "$1" "$2" query
}

# --- before: every client on v1 ---
hold_start api "$API"
hold_start keep "$KEEP"
udp_start udp "$DNS"
sb_assert_json "udp socket: on v1, reply from the VIP" \
	".result == \"ok\" and .tag == \"u5\" and .source == \"$DNS\"" \
	"$(hold_get udp 0 query)"
udp_start udpk "$DNSK"
sb_assert_json "udp socket (drain: keep): on v1" \
	".result == \"ok\" and .tag == \"u7\" and .source == \"$DNSK\"" \
	"$(hold_get udpk 0 query)"

# A client that waits in recv() for the server, as a stream does.
hold_start reader "$API" --read-wait 300
sb_assert_json "api reader: on v1" '.result == "ok" and .tag == "a1"' \
	"$(hold_get reader 0 first)"
sb_assert_json "api holder: on v1 through the VIP" \
	".result == \"ok\" and .tag == \"a1\" and .peer == \"$API\"" \
	"$(hold_get api 0 first)"
api_conn=$(sb_json .conn "$(hold_get api 0 first)")
sb_assert_json "keepy holder: on v1" '.result == "ok" and .tag == "k1"' \
	"$(hold_get keep 0 first)"
keep_conn=$(sb_json .conn "$(hold_get keep 0 first)")

# --- weights 100/0 -> 0/100 while a client keeps connecting ---
stop=$SB_WORK/stop.stream
sb_run /client node python3 "$LB_TOOL" connects --to "$API" --until "$stop" \
	--ready-after 100 >/dev/null
stream=$SB_PID
sb_wait_ready "$stream" 60
lb_reload "$(body 0 100 100 0)"
lb_tool /client connects --to "$API" --count 100
sb_assert_json "after the reload: the next 100 connections all go to v2" \
	'.results == {"ok": 100} and .tags == {"a2": 100}' "$LB_OUT"
touch "$stop"
sb_wait "$stream" 60
out=$(tail -n 1 "$(sb_out "$stream")")
sb_log "stream across the reload: $(jq -c .runs <<<"$out")"
sb_assert_json "stream across the reload: no connection failed" \
	'(.results | keys) == ["ok"]' "$out"
sb_assert_json "stream across the reload: all v1, then all v2, one switch" \
	'(.runs | map(.[0])) == ["a1", "a2"] and .runs[0][1] >= 100' "$out"

# The connections held from before are untouched: same connection, same
# backend, and it still answers.
go api 1
sb_assert_json "api holder after the weight change: same connection to v1" \
	".result == \"ok\" and .tag == \"a1\" and .conn == $api_conn and
	 .peer == \"$API\"" "$(hold_get api 1 held)"

# The UDP socket keeps its backend across the weight change.
udp_query udp 1
sb_assert_json "udp socket after the weight change: still v1" \
	".result == \"ok\" and .tag == \"u5\" and .source == \"$DNS\"" \
	"$(hold_get udp 1 query)"
lb_tool /client udp --to "$DNS" --sockets 20
sb_assert_json "udp: new sockets follow the new weights" \
	'.results == {"ok": 20} and .tags == {"u6": 20}' "$LB_OUT"

# A second api holder, on v2: its endpoint is never removed.
hold_start stay "$API"
sb_assert_json "second api holder: on v2" '.result == "ok" and .tag == "a2"' \
	"$(hold_get stay 0 first)"
stay_conn=$(sb_json .conn "$(hold_get stay 0 first)")

# --- remove api's and keepy's v1 endpoints ---
drained0=$(lb_metric sockmesh_drained_connections_total)
lb_reload "$(body - 100 - 100)"
sb_wait_for "the drain counted" 60 \
	sb_metric_ge sockmesh sockmesh_drained_connections_total "" \
	$((drained0 + 2))
sb_wait_for "the agent logged the drain" 60 \
	grep -q "drain: 2 endpoint(s) removed; 2 connection(s) to them closed" \
	"$LB_LOG"
sb_assert_eq "drain: exactly the two api connections to v1 closed" \
	$((drained0 + 2)) "$(lb_metric sockmesh_drained_connections_total)"

# A client blocked in recv() is woken with the error at once.
sb_wait_for "api reader woken" 60 hold_has reader 1 read
sb_assert_json "drain close: the waiting recv() fails with ECONNABORTED" \
	'.result == "ECONNABORTED"' "$(hold_get reader 1 read)"

# drain: close: the application's next send fails, a reconnect works.
go api 2
sb_assert_json "drain close: the held connection's next exchange fails" \
	'.result == "ECONNABORTED"' "$(hold_get api 2 held)"
sb_wait_for "api holder reconnected" 60 hold_has api 2 reconnect
sb_assert_json "drain close: the reconnect reaches a live backend (v2)" \
	".result == \"ok\" and .tag == \"a2\" and .peer == \"$API\"" \
	"$(hold_get api 2 reconnect)"
go stay 1
sb_assert_json "drain close: a connection to a kept endpoint stays open" \
	".result == \"ok\" and .tag == \"a2\" and .conn == $stay_conn" \
	"$(hold_get stay 1 held)"

# The UDP socket's backend is gone from the policy: it moves on.
udp_query udp 2
sb_assert_json "udp socket after its endpoint was removed: on v2" \
	".result == \"ok\" and .tag == \"u6\" and .source == \"$DNS\"" \
	"$(hold_get udp 2 query)"
udp_query udpk 1
sb_assert_json "udp socket, drain: keep: stays on the removed endpoint" \
	".result == \"ok\" and .tag == \"u7\" and .source == \"$DNSK\"" \
	"$(hold_get udpk 1 query)"

# drain: keep: the connection to the removed endpoint goes on.
go keep 1
sb_assert_json "drain keep: the held connection still works, same one" \
	".result == \"ok\" and .tag == \"k1\" and .conn == $keep_conn" \
	"$(hold_get keep 1 held)"
lb_tool /client connects --to "$KEEP" --count 50
sb_assert_json "drain keep: new connections go to the remaining endpoint" \
	'.results == {"ok": 50} and .tags == {"k2": 50}' "$LB_OUT"

# Still so a while later: once more each.
go keep 2
sb_assert_json "drain keep: still open on the next exchange" \
	".result == \"ok\" and .tag == \"k1\" and .conn == $keep_conn" \
	"$(hold_get keep 2 held)"
go api 3
sb_assert_json "drain close: the new connection goes on working" \
	'.result == "ok" and .tag == "a2"' "$(hold_get api 3 held)"
