#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# `sockmesh status` reports map fill with the same numbers as the agent's
# sockmesh_map_entries and sockmesh_map_capacity: for a policy map, the
# entries of the policy in force (the active slot) out of what one policy
# may hold, not both slots out of max_entries. Checked after the first
# policy and after a reload that leaves a smaller policy beside the old
# one in the other slot. `sockmesh policy` shows a port range as one.
set -euo pipefail
# shellcheck source=tests/netns/ops_lib.sh
source "$(dirname "$0")/ops_lib.sh"

sb_need_root
sb_init
ops_node 0 3
sb_need_build "$SB_BUILD/sockmesh"
ops_agent -- --map-size rule=16

metric() {
	sb_metric sockmesh "$@"
}

# Assert status (--json and text) and the metrics agree on every map.
assert_same() {
	local label=$1 status text map e c
	status=$("$SB_BUILD/sockmesh" --json --bpffs "$SB_BPFFS" status)
	text=$("$SB_BUILD/sockmesh" --bpffs "$SB_BPFFS" status)
	for map in $(jq -r '.maps | keys[]' <<<"$status"); do
		e=$(metric sockmesh_map_entries "map=\"$map\"")
		c=$(metric sockmesh_map_capacity "map=\"$map\"")
		[[ -n $e && -n $c ]] || sb_fail "$label: no metric for map $map"
		sb_assert_eq "$label: $map entries / capacity, status --json" \
			"$e / $c" "$(jq -r ".maps.\"$map\" | \"\(.entries) / \(.capacity)\"" \
			<<<"$status")"
		sb_assert_match "$label: $map, status text" \
			"(^|"$'\n'") +$map +$e / $c("$'\n'"|$)" "$text"
	done
	sb_assert_eq "$label: sm_rule capacity is one policy's" 16 \
		"$(jq -r '.maps.sm_rule.capacity' <<<"$status")"
	sb_assert_json "$label: policy maps are marked" \
		'.maps.sm_rule.per_policy and (.maps.sm_names.per_policy | not)' "$status"
}

assert_same "first policy"
first=$(metric sockmesh_map_entries 'map="sm_rule"')

# Generation 1: no rule to web and no extra services, so fewer rules.
g=$(metric sockmesh_policy_generation)
ops_write "$OPS_POLICY" "$(ops_policy 1)"
sb_wait_for "the reload is applied" 30 \
	bash -c "[[ \$(curl -fsS $(sb_agent sockmesh url)/metrics |
		awk '/^sockmesh_policy_generation / { print \$2 }') == $((g + 1)) ]]"
assert_same "after a reload"
sb_assert_le "after a reload: fewer rules in force" \
	"$(metric sockmesh_map_entries 'map="sm_rule"')" $((first - 1))

# `sockmesh policy` shows a rule's consecutive ports as one range, as the
# policy wrote them, though each port is a map entry of its own.
g=$(metric sockmesh_policy_generation)
ops_write "$OPS_POLICY" "$(ops_policy 1 0 '  - {from: client, to: [stable], ports: ["8000-8002", 8080]}')"
sb_wait_for "the reload with a port range is applied" 30 \
	bash -c "[[ \$(curl -fsS $(sb_agent sockmesh url)/metrics |
		awk '/^sockmesh_policy_generation / { print \$2 }') == $((g + 1)) ]]"
text=$("$SB_BUILD/sockmesh" --bpffs "$SB_BPFFS" policy)
sb_assert_match "policy: the range on one line" \
	"rule [0-9]+ +client -> stable port 8000-8002/tcp" "$text"
sb_assert_match "policy: the single port beside it" \
	"rule [0-9]+ +client -> stable port 8080/tcp" "$text"
sb_assert_eq "policy --json: one entry per port" 4 \
	"$("$SB_BUILD/sockmesh" --json --bpffs "$SB_BPFFS" policy |
		jq '[.rules[] | select(.to == "stable" and .port >= 8000)] | length')"
