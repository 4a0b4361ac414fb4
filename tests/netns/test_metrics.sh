#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# /metrics on real traffic: the page passes `promtool check metrics`, and
# its counters equal the traffic sent: a known number of allowed, denied
# (EPERM) and no-backend (EHOSTUNREACH) connections, the bytes of the
# allowed ones, one trace option written and one received per allowed TCP
# connection, a policy generation, every hook attached.
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"
# shellcheck source=tests/netns/mesh_lib.sh
source "$(dirname "$0")/mesh_lib.sh"

sb_need_root
sb_need_cmd promtool
sb_init

# "details": a VIP whose only subset lists no endpoints (scaled to zero).
DETAILS_VIP=198.19.0.20:9080
mesh_start 90 10 "  details:
    vip: [$DETAILS_VIP]
    subsets:
      v1: {weight: 1, endpoints: []}" \
	"  - {from: frontend, to: details, ports: [9080]}"

ALLOWED=30	# frontend -> reviews VIP
SEND=1000	# bytes each of them sends
R_ALLOWED=4	# reviews -> ratings
R_SEND=100
DENIED=7	# frontend -> ratings: no rule
NO_BACKEND=5	# frontend -> details VIP
FAST_MS=200

m() {
	mesh_metric "$@"
}

conns() {
	m sockmesh_connections_total "src=\"$1\",dst=\"$2\",verdict=\"$3\""
}

# Step 1: the traffic.
mesh_smtest /frontend connect --to "$MESH_VIP" --count "$ALLOWED" \
	--parallel 2 --send "$SEND" --timeout-ms 10000
sb_assert_json "frontend -> reviews: $ALLOWED connections answered" \
	".results == {\"ok\": $ALLOWED} and
	 ((.tags.v1 // 0) + (.tags.v2 // 0)) == $ALLOWED" "$MESH_OUT"
reviews_tags=$MESH_OUT
mesh_smtest /reviews-v1 connect --to "$MESH_RATINGS" --count "$R_ALLOWED" \
	--send "$R_SEND" --timeout-ms 10000
sb_assert_json "reviews -> ratings: $R_ALLOWED connections answered" \
	".results == {\"ok\": $R_ALLOWED} and .tags == {\"ratings\": $R_ALLOWED}" \
	"$MESH_OUT"
opens0=$(mesh_tcp_counter ActiveOpens)
mesh_smtest /frontend connect --to "$MESH_RATINGS" --count "$DENIED"
sb_assert_json "frontend -> ratings: $DENIED times EPERM" \
	".results == {\"EPERM\": $DENIED}" "$MESH_OUT"
mesh_smtest /frontend connect --to "$DETAILS_VIP" --count "$NO_BACKEND"
sb_assert_json "frontend -> details: $NO_BACKEND times EHOSTUNREACH" \
	".results == {\"EHOSTUNREACH\": $NO_BACKEND}" "$MESH_OUT"
sb_assert_le "no backend: fails at once (slowest, ms)" \
	"$(sb_json .first_errno_ms "$MESH_OUT")" "$FAST_MS"
sb_assert_eq "neither denied nor no-backend connects sent a SYN" "$opens0" \
	"$(mesh_tcp_counter ActiveOpens)"

# Closed connections are counted when the close is seen; wait for all.
sb_wait_for "$ALLOWED frontend -> reviews closes counted" 10 mesh_metric_is \
	sockmesh_connection_duration_seconds_count \
	'src="frontend",dst="reviews"' "$ALLOWED"
sb_wait_for "$R_ALLOWED reviews -> ratings closes counted" 10 mesh_metric_is \
	sockmesh_connection_duration_seconds_count \
	'src="reviews",dst="ratings"' "$R_ALLOWED"

# Step 2: the page is valid Prometheus text.
page=$SB_WORK/metrics.txt
curl -fsS --max-time 5 "$MESH_URL/metrics" >"$page" || sb_fail "GET /metrics"
if ! promtool check metrics <"$page" >"$SB_WORK/promtool.out" 2>&1; then
	sed 's/^/  | /' "$SB_WORK/promtool.out" >&2
	sb_fail "promtool check metrics rejects /metrics"
fi
sb_log "promtool check metrics: ok ($(grep -vc '^#' "$page") samples)"

# Step 3: connections by verdict, exactly; same-node pairs counted once.
sb_assert_eq "allowed frontend -> reviews" "$ALLOWED" \
	"$(conns frontend reviews allowed)"
sb_assert_eq "allowed reviews -> ratings" "$R_ALLOWED" \
	"$(conns reviews ratings allowed)"
sb_assert_eq "denied frontend -> ratings" "$DENIED" \
	"$(conns frontend ratings denied)"
sb_assert_eq "no_backend frontend -> details" "$NO_BACKEND" \
	"$(conns frontend details no_backend)"
total=$((ALLOWED + R_ALLOWED + DENIED + NO_BACKEND))
sb_assert_eq "nothing else counted (every pair, every verdict)" "$total" \
	"$(m sockmesh_connections_total)"
sb_assert_eq "canary: every VIP connection that reached a backend" \
	"$ALLOWED" "$(m sockmesh_canary_connections_total 'service="reviews"')"
sb_assert_eq "canary: v1 as the clients saw it" \
	"$(sb_json '.tags.v1 // 0' "$reviews_tags")" \
	"$(m sockmesh_canary_connections_total 'service="reviews",subset="v1"')"

# Step 4: bytes of the allowed connections, both ways.
sb_assert_eq "bytes frontend -> reviews, sent" $((ALLOWED * SEND)) \
	"$(m sockmesh_bytes_total 'src="frontend",dst="reviews",direction="sent"')"
sb_assert_eq "bytes frontend -> reviews, received (\"vN\\n\")" \
	$((ALLOWED * 3)) \
	"$(m sockmesh_bytes_total 'src="frontend",dst="reviews",direction="received"')"
sb_assert_eq "bytes reviews -> ratings, sent" $((R_ALLOWED * R_SEND)) \
	"$(m sockmesh_bytes_total 'src="reviews",dst="ratings",direction="sent"')"
sb_assert_eq "bytes reviews -> ratings, received (\"ratings\\n\")" \
	$((R_ALLOWED * 8)) \
	"$(m sockmesh_bytes_total 'src="reviews",dst="ratings",direction="received"')"

# Step 5: trace options, one each way per allowed TCP connection.
sb_assert_eq "trace options written" $((ALLOWED + R_ALLOWED)) \
	"$(m sockmesh_trace_options_total 'result="written"')"
sb_assert_eq "trace options received" $((ALLOWED + R_ALLOWED)) \
	"$(m sockmesh_trace_options_total 'result="received"')"
sb_assert_eq "no trace option missing" 0 \
	"$(m sockmesh_trace_options_total 'result="missing"')"

# Step 6: the agent's own state.
sb_assert_ge "policy generation" "$(m sockmesh_policy_generation)" 1
hooks=$(grep -E '^sockmesh_hook_attached\{' "$page" || true)
sb_assert_ge "hooks reported" "$(grep -c . <<<"$hooks")" 13
sb_assert_eq "every hook attached" "" \
	"$(awk '$NF != 1' <<<"$hooks")"
sb_assert_eq "no flow event lost" 0 "$(m sockmesh_events_lost_total)"
sb_assert_eq "labels carry no addresses" "" \
	"$(grep -E '^sockmesh_[a-z_]+\{[^}]*(198\.1[89]\.|fd00:)' "$page" || true)"
