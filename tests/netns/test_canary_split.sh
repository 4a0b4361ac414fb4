#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# Canary split on real traffic: with subsets weighted 90/10, the share of
# connections through the VIP that v1 answers lies within 5 sigma of the
# binomial mean, and the canary metric counts exactly what the clients
# saw. A policy reload to 100/0 (the file rewritten; the agent watches it)
# then sends every connection to v1 and none to v2.
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"
# shellcheck source=tests/netns/mesh_lib.sh
source "$(dirname "$0")/mesh_lib.sh"

sb_need_root
sb_init
mesh_start 90 10

N=2000
P=4
AFTER=500

canary() {
	mesh_metric sockmesh_canary_connections_total \
		"service=\"reviews\",subset=\"$1\""
}

# Step 1: N connections through the VIP, P at a time.
mesh_smtest /frontend connect --to "$MESH_VIP" --count "$N" --parallel "$P" \
	--timeout-ms 20000
sb_assert_json "$N connections through the VIP, all answered" \
	".count == $N and .results == {\"ok\": $N} and
	 (.tags | keys - [\"v1\", \"v2\"]) == [] and
	 ((.tags.v1 // 0) + (.tags.v2 // 0)) == $N" "$MESH_OUT"
v1=$(sb_json '.tags.v1 // 0' "$MESH_OUT")
v2=$(sb_json '.tags.v2 // 0' "$MESH_OUT")
sb_log "split over $N connections: v1 $v1, v2 $v2"

# Binomial: mean n p = 1800, sigma = sqrt(n p (1 - p)) = 13.4; 5 sigma.
read -r mean bound < <(awk -v n="$N" 'BEGIN {
	p = 0.9; printf "%d %d\n", n * p, int(5 * sqrt(n * p * (1 - p)))
}')
dev=$((v1 > mean ? v1 - mean : mean - v1))
share=$(awk -v a="$v1" -v n="$N" 'BEGIN { printf "%.4f", a / n }')
sb_log "v1 share $share, |v1 - $mean| = $dev, 5 sigma = $bound"
sb_assert_le "v1 count within 5 sigma of $mean" "$dev" "$bound"

# The metric counts what the clients saw, exactly; so do the servers.
sb_assert_eq "canary metric, subset v1 = connections v1 answered" "$v1" \
	"$(canary v1)"
sb_assert_eq "canary metric, subset v2 = connections v2 answered" "$v2" \
	"$(canary v2)"
sb_assert_eq "v1 server logged its connections" "$v1" \
	"$(mesh_lines "$MESH_LOG_V1")"
sb_assert_eq "v2 server logged its connections" "$v2" \
	"$(mesh_lines "$MESH_LOG_V2")"
sb_assert_eq "every connection counted allowed" "$N" \
	"$(mesh_metric sockmesh_connections_total \
		'src="frontend",dst="reviews",verdict="allowed"')"

# Step 2: all weight to v1. The agent notices the rewritten file.
gen=$(mesh_metric sockmesh_policy_generation)
reloads=$(mesh_metric sockmesh_policy_reloads_total 'result="success"')
sb_assert_ge "a policy is in force" "$gen" 1
mesh_policy "$MESH_POLICY" 100 0
sb_wait_for "policy generation above $gen" 30 \
	sb_metric_ge sockmesh sockmesh_policy_generation "" $((gen + 1))
sb_assert_eq "the reload succeeded" $((reloads + 1)) \
	"$(mesh_metric sockmesh_policy_reloads_total 'result="success"')"
sb_assert_eq "no reload failed" 0 \
	"$(mesh_metric sockmesh_policy_reloads_total 'result="error"')"
sb_assert_json "the agent serves the new weights" \
	'.services.reviews.subsets.v2.weight == 0 and
	 .services.reviews.subsets.v1.weight == 100' \
	"$(curl -fsS --max-time 5 "$MESH_URL/v1/policy")"

v2_lines=$(mesh_lines "$MESH_LOG_V2")
mesh_smtest /frontend connect --to "$MESH_VIP" --count "$AFTER" \
	--parallel "$P" --timeout-ms 20000
sb_assert_json "weights 100/0: every connection answered by v1" \
	".results == {\"ok\": $AFTER} and .tags == {\"v1\": $AFTER}" \
	"$MESH_OUT"
sb_assert_eq "weights 100/0: canary metric v1 grew by $AFTER" \
	$((v1 + AFTER)) "$(canary v1)"
sb_assert_eq "weights 100/0: canary metric v2 did not move" "$v2" \
	"$(canary v2)"
sb_assert_eq "weights 100/0: the v2 server saw no connection" "$v2_lines" \
	"$(mesh_lines "$MESH_LOG_V2")"
