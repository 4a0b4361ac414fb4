#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# `sockmesh uninstall --bpffs DIR` leaves nothing behind: no program on
# the managed cgroup, no pinned file, none of the agent's programs or maps
# left in the kernel, and traffic unmanaged again (what was denied now
# connects; a VIP is no longer translated). Once with the agent stopped
# first, as an operator would, and once with it still running: the agent
# then reports itself not ready, and its programs go when it stops.
set -euo pipefail
# shellcheck source=tests/netns/ops_lib.sh
source "$(dirname "$0")/ops_lib.sh"

sb_need_root
sb_init
ops_node 0
sb_need_build "$SB_BUILD/sockmesh"

result() {
	sb_exec /client node "$SB_SMTEST" connect --to "$1" --timeout-ms 10000 |
		jq -c .results
}

# The ids of the pinned maps and of every program that uses one of them:
# what the agent loaded.
agent_objs() {
	local f maps
	maps=$(for f in "$SB_BPFFS"/maps/*; do
		bpftool -j map show pinned "$f" | jq .id
	done | jq -s -c .)
	jq -r '.[] | "map \(.)"' <<<"$maps"
	bpftool -j prog show | jq -r --argjson m "$maps" \
		'.[] | select(any(.map_ids[]?; . as $i | $m | index($i))) |
		 "prog \(.id)"'
}

# True when none of the objects listed in FILE exists any more.
all_gone() {
	local kind id
	while read -r kind id; do
		bpftool "$kind" show id "$id" >/dev/null 2>&1 && return 1
	done <"$1"
	return 0
}

# Assert nothing of ours is left; LABEL names the round.
assert_clean() {
	local label=$1 objs=$2
	sb_assert_eq "$label: nothing on the cgroup" "" "$(ops_cgroup_progs)"
	sb_assert_eq "$label: no pinned file" "" \
		"$(find "$SB_BPFFS" -mindepth 1 2>/dev/null)"
	sb_wait_for "$label: the kernel freed our programs and maps" 20 \
		all_gone "$objs"
	echo "ok: $label: $(wc -l <"$objs") programs and maps freed"
	sb_assert_eq "$label: locked connects now" '{"ok":1}' \
		"$(result "$OPS_LOCKED")"
	sb_assert_eq "$label: the VIP is not translated" '{"ENETUNREACH":1}' \
		"$(result "$OPS_WEB")"
}

# --- the agent stopped first ---

ops_agent
sb_assert_eq "managed: locked denied" '{"EPERM":1}' "$(result "$OPS_LOCKED")"
sb_assert_eq "managed: the VIP works" '{"ok":1}' "$(result "$OPS_WEB")"
agent_objs >"$SB_WORK/objs1"
sb_assert_ge "the agent's programs and maps found" \
	"$(wc -l <"$SB_WORK/objs1")" 20
sb_agent_stop sockmesh
sb_assert_eq "agent stopped: still enforcing" '{"EPERM":1}' \
	"$(result "$OPS_LOCKED")"

out=$("$SB_BUILD/sockmesh" uninstall --bpffs "$SB_BPFFS")
sb_assert_eq "uninstall says what it did" \
	"removed every sockmesh program, link and pin under $SB_BPFFS" "$out"
assert_clean "stopped, uninstalled" "$SB_WORK/objs1"
out=$("$SB_BUILD/sockmesh" uninstall --bpffs "$SB_BPFFS")
sb_assert_match "a second uninstall: nothing to do" "^nothing to remove" "$out"

# --- the agent still running ---

mkdir -p "$SB_BPFFS"
ops_agent
sb_assert_eq "managed again: locked denied" '{"EPERM":1}' \
	"$(result "$OPS_LOCKED")"
agent_objs >"$SB_WORK/objs2"
"$SB_BUILD/sockmesh" uninstall --bpffs "$SB_BPFFS" >/dev/null
sb_assert_eq "uninstalled under a running agent: nothing on the cgroup" "" \
	"$(ops_cgroup_progs)"
sb_assert_eq "... locked connects" '{"ok":1}' "$(result "$OPS_LOCKED")"
sb_wait_for "the running agent is not ready any more" 10 bash -c \
	"[[ \$(curl -sS -o /dev/null -w '%{http_code}' \
		$(sb_agent sockmesh url)/readyz) == 503 ]]"
echo "ok: ... and the agent says so in /readyz"
sb_agent_stop sockmesh
assert_clean "running, uninstalled, then stopped" "$SB_WORK/objs2"
