#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# Reverse translation on real traffic: after connect() to the VIP the
# application's getpeername() returns the VIP it dialled, never the
# backend that answered, over IPv4 and over an IPv4-mapped address on an
# IPv6 socket. The backends see the connection on their own addresses,
# and a client that dials a backend directly sees that backend.
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"
# shellcheck source=tests/netns/mesh_lib.sh
source "$(dirname "$0")/mesh_lib.sh"

sb_need_root
sb_init
# Equal weights: 40 connections reach both backends (all but 2^-39).
mesh_start 50 50

N=40
MAPPED_VIP="[::ffff:${MESH_VIP%:*}]:${MESH_VIP#*:}"

# Server log lines: where the connections really went.
logged() {
	cat "$MESH_LOG_V1" "$MESH_LOG_V2" | wc -l
}

# IPv4: connect() to the VIP, getpeername() after the exchange.
lines0=$(logged)
mesh_smtest /frontend connect --to "$MESH_VIP" --count "$N" --timeout-ms 10000
sb_assert_json "v4: all connected and answered" \
	".results == {\"ok\": $N} and .tags.v1 > 0 and .tags.v2 > 0 and
	 .tags.v1 + .tags.v2 == $N" "$MESH_OUT"
sb_assert_json "v4: getpeername() is the VIP for every connection" \
	".peers == {\"$MESH_VIP\": $N}" "$MESH_OUT"
sb_assert_eq "v4: the backends got the connections" $((lines0 + N)) \
	"$(logged)"
sb_assert_json "v4: each backend saw the connection on its own address" \
	"all(.[]; .local == \"$MESH_V1\" or .local == \"$MESH_V2\")" \
	"$(cat "$MESH_LOG_V1" "$MESH_LOG_V2" | jq -s .)"

# IPv4-mapped on an AF_INET6 socket: getpeername6 gives the mapped VIP.
mesh_smtest /frontend connect --to "$MESH_VIP" --family mapped --count "$N" \
	--timeout-ms 10000
sb_assert_json "v4-mapped: all connected and answered" \
	".results == {\"ok\": $N} and .tags.v1 > 0 and .tags.v2 > 0" "$MESH_OUT"
sb_assert_json "v4-mapped: getpeername() is the mapped VIP" \
	".peers == {\"$MAPPED_VIP\": $N}" "$MESH_OUT"

# A held connection, right after connect(), before any data moved.
for fam in 4 mapped; do
	mesh_smtest /frontend trace --to "$MESH_VIP" --family "$fam" \
		--timeout-ms 10000
	want=$MESH_VIP
	[[ $fam == 4 ]] || want=$MAPPED_VIP
	sb_assert_json "trace, $fam: getpeername() right after connect()" \
		".result == \"ok\" and .peer == \"$want\"" "$MESH_OUT"
done

# Dialling a backend's own address is not translated back.
mesh_smtest /frontend connect --to "$MESH_V2" --count 3 --timeout-ms 10000
sb_assert_json "direct to v2: getpeername() is v2's address" \
	".results == {\"ok\": 3} and .tags == {\"v2\": 3} and
	 .peers == {\"$MESH_V2\": 3}" "$MESH_OUT"
mesh_smtest /frontend connect --to "$MESH_V1" --family mapped --count 3 \
	--timeout-ms 10000
sb_assert_json "direct to v1, v4-mapped: getpeername() is v1's address" \
	".results == {\"ok\": 3} and .tags == {\"v1\": 3} and
	 .peers == {\"[::ffff:${MESH_V1%:*}]:${MESH_V1#*:}\": 3}" "$MESH_OUT"

# The flow log says where the VIP connections went: orig_dst is the VIP,
# dst_addr the backend.
sb_wait_for "client connect records of the VIP connections" 10 \
	mesh_flow_count_is ".event == \"connect\" and .side == \"client\" and
		.orig_dst == \"$MESH_VIP\"" $((2 * N + 2))
sb_assert_json "flow log: VIP dialled, backend reached" \
	"all(.[]; .dst_addr == \"$MESH_V1\" or .dst_addr == \"$MESH_V2\")" \
	"$(mesh_flows ".event == \"connect\" and .side == \"client\" and
		.orig_dst == \"$MESH_VIP\"" | jq -s .)"
