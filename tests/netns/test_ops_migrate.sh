#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# Pinned state of other sizes or another schema, under load.
#
# 1. Restart with bigger maps (--map-size rule=64 -> 1024, and quota,
#    names, pair, canary, events): the policy maps are made anew as a
#    group and filled, service names and live quota counts are copied,
#    counters start empty; the links are updated in place, so there is
#    no gap. A policy that needs the new size then fits.
# 2. Restart with maps too small for the policy in force: refused with
#    the reason; the programs and maps in force are untouched.
# 3. A pinned schema other than the agent's (written into sm_active
#    with bpftool): refused with the message; the old programs enforce.
# The load (allowed VIP, allowed endpoint, denied endpoint) runs through
# all of it and must never see a wrong verdict.
set -euo pipefail
# shellcheck source=tests/netns/ops_lib.sh
source "$(dirname "$0")/ops_lib.sh"

sb_need_root
sb_init
ops_node

M=$SB_BPFFS/maps
QUOTA='quotas:
  - {from: client, to: stable, max_concurrent: 100}'

# Policy: generation 0 with N extra services and the quota.
policy() {
	ops_write "$OPS_POLICY" "$(ops_policy 0 "$1")
$QUOTA"
}

small=(--map-size rule=64 --map-size quota=64 --map-size names=256
	--map-size pair=256 --map-size canary=256 --map-size events=65536)
big=(--map-size rule=1024 --map-size quota=1024 --map-size names=1024
	--map-size pair=2048 --map-size canary=1024 --map-size events=262144)

map_id() {
	bpftool -j map show pinned "$M/$1" | jq .id
}

map_max() {
	bpftool -j map show pinned "$M/$1" | jq .max_entries
}

# The sorted dump of a pinned map.
map_dump() {
	bpftool -j map dump pinned "$M/$1" | jq -c 'sort'
}

metric() {
	sb_metric sockmesh "$@"
}

policy 10
ops_agent -- "${small[@]}"
LOG=$(sb_agent sockmesh log)
links0=$(ops_pinned_links | awk '{ print $1, $2 }')
sb_assert_eq "rule map: 2 slots of 64" 128 "$(map_max sm_rule)"

# Three connections held open: they hold 3 of stable's max_concurrent.
sb_run /client node "$SB_SMTEST" connect --to "$OPS_STABLE" --count 3 \
	--hold --hold-max 200 >/dev/null
HOLD=$SB_PID
sb_wait_ready "$HOLD" 20 "held 3"
sb_assert_eq "3 connections held against the quota" 3 \
	"$(metric sockmesh_quota_active 'src="client",dst="stable"')"

# The load leaves the quota's pair alone: a connection that closes while
# the count is copied is given back to the old map (docs/operations.md).
ops_load_start 600 web="$OPS_WEB" locked="$OPS_LOCKED"
sb_wait_for "the load is running" 30 ops_load_runs_ge locked 3

# --- 1. bigger maps ---

declare -A id0
for m in sm_rule sm_dest sm_active sm_config sm_names sm_quota \
	sm_pair_stats sm_events sm_sk sm_trace_syn sm_stats; do
	id0[$m]=$(map_id "$m")
done
names0=$(map_dump sm_names)
gen0=$(metric sockmesh_policy_generation)
n=$(wc -l <"$LOG")

sb_agent_stop sockmesh
before=$(ops_load_runs locked)
sb_wait_for "load rounds with no agent" 60 ops_load_runs_ge locked $((before + 2))
ops_agent -- "${big[@]}"

sb_assert_eq "rule map now 2 slots of 1024" 2048 "$(map_max sm_rule)"
sb_assert_eq "sockmesh_map_capacity{map=\"sm_rule\"}" 1024 \
	"$(metric sockmesh_map_capacity 'map="sm_rule"')"
sb_assert_eq "quota state map now 1024" 1024 "$(map_max sm_quota)"
sb_assert_eq "names map now 1024" 1024 "$(map_max sm_names)"
for m in sm_rule sm_dest sm_active sm_config sm_names sm_quota \
	sm_pair_stats sm_events; do
	[[ $(map_id "$m") != "${id0[$m]}" ]] ||
		sb_fail "$m: still the old map ${id0[$m]}"
done
echo "ok: the policy group, names, quota state, counters, events: new maps"
for m in sm_sk sm_trace_syn sm_stats; do
	sb_assert_eq "$m (same size): kept" "${id0[$m]}" "$(map_id "$m")"
done
sb_assert_eq "service names copied" "$names0" "$(map_dump sm_names)"
sb_assert_eq "live quota count copied: 3 still held" 3 \
	"$(metric sockmesh_quota_active 'src="client",dst="stable"')"
sb_assert_eq "the same links, updated in place" "$links0" \
	"$(ops_pinned_links | awk '{ print $1, $2 }')"
ops_assert_one_per_hook "one program per hook" >/dev/null
sb_assert_eq "the generation goes on: +1 for the new maps" $((gen0 + 1)) \
	"$(metric sockmesh_policy_generation)"
tail -n +$((n + 1)) "$LOG" | grep -q 'policy maps under .* have other sizes' ||
	sb_fail "the log does not say the policy maps were made anew"
echo "ok: the log says the policy maps were made anew"
sb_assert_eq "no leftover temporary pins" "" "$(find "$M" -name '*-new')"
for m in sm_rule sm_names; do
	sb_wait_for "old $m freed" 20 bash -c "! bpftool map show id ${id0[$m]} \
		>/dev/null 2>&1"
done
echo "ok: the old maps are freed"

# The held connections give their units back to the copied count.
sb_stop "$HOLD"
sb_wait_for "quota count back to 0" 10 bash -c "[[ \$(curl -fsS \
	$(sb_agent sockmesh url)/metrics | grep -c \
	'^sockmesh_quota_active{src=\"client\",dst=\"stable\"} 0\$') == 1 ]]"
echo "ok: released: the quota count is 0"

# A policy that needs more than the old size fits now: 100 rules.
gen1=$(metric sockmesh_policy_generation)
policy 100
sb_wait_for "a 100-service policy applies" 20 bash -c \
	"[[ \$(curl -fsS $(sb_agent sockmesh url)/metrics |
		awk '\$1 == \"sockmesh_policy_generation\" { print \$2 }') == $((gen1 + 1)) ]]"
entries=$(metric sockmesh_map_entries 'map="sm_rule"')
sb_assert_ge "sockmesh_map_entries{map=\"sm_rule\"}: more than the old 64" \
	"$entries" 65
sb_assert_le "... within the new 1024" "$entries" 1024

# The same sizes again: everything adopted as it is.
id1=$(map_id sm_rule)
sb_agent_stop sockmesh
ops_agent -- "${big[@]}"
sb_assert_eq "same sizes: the rule map adopted" "$id1" "$(map_id sm_rule)"

# --- 2. maps too small for the policy in force ---

n=$(wc -l <"$LOG")
sb_agent_stop sockmesh
sb_agent_start sockmesh "$OPS_POLICY" --no-wait -- "${small[@]}"
rc=0
sb_wait "$(sb_agent sockmesh pid)" "$OPS_AGENT_TIMEOUT" || rc=$?
sb_assert_eq "too small for the policy: refused" 1 "$rc"
tail -n +$((n + 1)) "$LOG" | grep -q \
	"policy needs $entries entries in map sm_rule, which holds 64 per policy (raise --map-size rule=N)" ||
	sb_fail "refused without the reason: $(tail -n +$((n + 1)) "$LOG")"
echo "ok: ... saying why"
sb_assert_eq "refused: the rule map in force untouched" "$id1" \
	"$(map_id sm_rule)"
sb_assert_eq "refused: the links untouched" "$links0" \
	"$(ops_pinned_links | awk '{ print $1, $2 }')"
sb_assert_eq "no leftover temporary pins" "" "$(find "$M" -name '*-new')"
ops_assert_one_per_hook "refused: still one program per hook" >/dev/null

# --- 3. another schema ---

# sm_active is {slot, schema, generation}: bytes 4-7 are the schema.
val=$(bpftool -j map lookup pinned "$M/sm_active" key 0 0 0 0 |
	jq -r '(.value // .formatted.value) | if type == "array" then
		map(tonumber? // (ltrimstr("0x") | explode |
			map(if . >= 97 then . - 87 else . - 48 end) |
			.[0] * 16 + .[1])) | map(tostring) | join(" ")
		else empty end')
read -ra bytes <<<"$val"
((${#bytes[@]} == 16)) || sb_fail "sm_active value: '$val'"
bytes[4]=99
bpftool map update pinned "$M/sm_active" key 0 0 0 0 value "${bytes[@]}"
n=$(wc -l <"$LOG")
sb_agent_start sockmesh "$OPS_POLICY" --no-wait -- "${big[@]}"
rc=0
sb_wait "$(sb_agent sockmesh pid)" "$OPS_AGENT_TIMEOUT" || rc=$?
sb_assert_eq "schema 99: refused" 1 "$rc"
want="pinned state under $SB_BPFFS has schema 99, this agent writes"
tail -n +$((n + 1)) "$LOG" | grep -qF "$want" ||
	sb_fail "no '$want' in: $(tail -n +$((n + 1)) "$LOG")"
tail -n +$((n + 1)) "$LOG" | grep -qF "run 'sockmesh uninstall --bpffs $SB_BPFFS'" ||
	sb_fail "the message does not say what to do"
echo "ok: ... saying why and what to do"
sb_assert_eq "schema refused: the links untouched" "$links0" \
	"$(ops_pinned_links | awk '{ print $1, $2 }')"
sb_assert_eq "schema refused: the rule map untouched" "$id1" \
	"$(map_id sm_rule)"

# Put the schema back: the agent starts again.
bytes[4]=1
bpftool map update pinned "$M/sm_active" key 0 0 0 0 value "${bytes[@]}"
ops_agent -- "${big[@]}"
ops_assert_one_per_hook "started again: one program per hook" >/dev/null

# --- the load, through all of it ---

before=$(ops_load_runs locked)
sb_wait_for "3 more load rounds" 60 ops_load_runs_ge locked $((before + 3))
ops_load_stop
ops_load_assert web '.results == {"ok": .count} and .tags == {"a": .count}' \
	"VIP: every connection allowed, to its backend"
ops_load_assert locked '.results == {"EPERM": .count}' \
	"locked: every connection denied"
