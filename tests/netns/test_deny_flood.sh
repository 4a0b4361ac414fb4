#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# A flood of refused connects: every deny is counted, but the flow log
# takes at most 100 deny records a second per pair and verdict, so the
# flood cannot crowd other records out. The records say how many denies
# were folded into them, and those plus the records add up to the count.
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"
# shellcheck source=tests/netns/mesh_lib.sh
source "$(dirname "$0")/mesh_lib.sh"

sb_need_root
sb_init
mesh_start

FLOOD=3000	# frontend -> ratings, no rule: EPERM each
LIMIT=100	# records per second, pair and verdict (bpf/lib/stats.h)

denied() {
	mesh_metric sockmesh_connections_total \
		'src="frontend",dst="ratings",verdict="denied"'
}

# Step 1: the flood, flat out from one process.
t0=$(date +%s%N)
mesh_smtest /frontend connect --to "$MESH_RATINGS" --count "$FLOOD"
t1=$(date +%s%N)
sb_assert_json "frontend -> ratings: $FLOOD times EPERM" \
	".results == {\"EPERM\": $FLOOD}" "$MESH_OUT"
sb_assert_eq "every deny counted" "$FLOOD" "$(denied)"

# Step 2: one allowed connection right after: its records are not lost.
mesh_smtest /frontend connect --to "$MESH_VIP" --count 1
sb_assert_json "frontend -> reviews still answered" \
	'.results == {"ok": 1}' "$MESH_OUT"
sb_wait_for "the allowed connection's close record" 10 bash -c \
	"jq -e -s 'map(select(.event == \"close\" and .side == \"client\" and
	 .dst == \"reviews\")) | length == 1' '$MESH_FLOWS' >/dev/null"

# Step 3: the deny records: few, and with the folded ones, all of them.
secs=$(((t1 - t0 + 999999999) / 1000000000))
records=$(jq -s '[.[] | select(.event == "deny" and .dst == "ratings")]' \
	"$MESH_FLOWS")
n=$(jq length <<<"$records")
folded=$(jq 'map(.folded) | add' <<<"$records")
pending=$(mesh_metric sockmesh_deny_records_folded_total)
sb_log "flood of $FLOOD in ${secs}s: $n records, $folded folded into them"
sb_assert_ge "at least one second's worth of records" "$n" "$LIMIT"
# One window per second of flood, plus the window it started in, plus
# the few records two CPUs may write past a full window.
sb_assert_le "at most $LIMIT a second" "$n" $((LIMIT * (secs + 1) + 4))
sb_assert_eq "folded denies counted" $((FLOOD - n)) "$pending"
sb_assert_le "records carry the folded count they stand for" "$folded" \
	$((FLOOD - n))
sb_assert_json "every record names who, what and why" \
	'all(.[]; .verdict == "denied" and .reason == "no_rule" and
	 .src == "frontend" and .comm == "smtest")' "$records"

# Step 4: a deny after a quiet second carries what was folded before it.
sleep 1.1
mesh_smtest /frontend connect --to "$MESH_RATINGS" --count 1
sb_wait_for "the next deny record" 10 bash -c \
	"[[ \$(jq -s '[.[] | select(.event == \"deny\" and
	   .dst == \"ratings\")] | length' '$MESH_FLOWS') -eq $((n + 1)) ]]"
last=$(jq -s '[.[] | select(.event == "deny" and .dst == "ratings")] |
	last | .folded' "$MESH_FLOWS")
sb_assert_eq "records plus folded counts equal every deny" $((FLOOD + 1)) \
	$((n + 1 + folded + last))
