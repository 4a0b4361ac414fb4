#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# `sockmesh uninstall --bpffs DIR` leaves nothing behind: no program on
# the managed cgroup, no pinned file, none of the agent's programs or maps
# left in the kernel, and traffic unmanaged again (what was denied now
# connects; a VIP is no longer translated). Once with the agent stopped
# first, as an operator would, and once with it still running: the agent
# then reports itself not ready, and its programs go when it stops.
# Uninstall removes pins only: a --bpffs that is not on a bpf file system,
# or one that holds anything but pins, is refused and left as it was.
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

# True when uninstall --bpffs DIR fails, says ERROR_RE on stderr and
# prints nothing on stdout; LABEL names the case.
assert_refused() {
	local label=$1 dir=$2 error_re=$3 rc=0
	"$SB_BUILD/sockmesh" uninstall --bpffs "$dir" >"$SB_WORK/un.out" \
		2>"$SB_WORK/un.err" || rc=$?
	sb_assert_eq "$label: exit status" 1 "$rc"
	sb_assert_match "$label: the error" "$error_re" "$(cat "$SB_WORK/un.err")"
	sb_assert_eq "$label: nothing on stdout" "" "$(cat "$SB_WORK/un.out")"
}

# --- not a bpf file system: refused, nothing removed ---

fake=$SB_WORK/fake
mkdir -p "$fake/maps" "$fake/links"
echo y >"$fake/maps/sm_rule"
echo y >"$fake/maps/notes.txt"
echo y >"$fake/links/sm_connect4"
before=$(cd "$fake" && find . | sort)
assert_refused "not bpffs" "$fake" \
	"^Error: $fake is not on a bpf file system .*nothing was removed"
sb_assert_eq "not bpffs: every file and directory is still there" \
	"$before" "$(cd "$fake" && find . | sort)"
sb_assert_eq "not bpffs: contents untouched" "y" "$(cat "$fake/maps/notes.txt")"

# The directory is on bpffs but maps/ leads elsewhere.
mkdir -p "$SB_WORK/bpffs/elsewhere"
ln -s "$fake/maps" "$SB_WORK/bpffs/elsewhere/maps"
assert_refused "maps/ not on bpffs" "$SB_WORK/bpffs/elsewhere" \
	"^Error: $SB_WORK/bpffs/elsewhere/maps is not on a bpf file system"
sb_assert_eq "maps/ not on bpffs: every file still there" \
	"$before" "$(cd "$fake" && find . | sort)"
rm "$SB_WORK/bpffs/elsewhere/maps"
rmdir "$SB_WORK/bpffs/elsewhere"

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

# Something in maps/ that is no pin: refused before anything is removed.
pins=$(cd "$SB_BPFFS" && find . | sort)
mkdir "$SB_BPFFS/maps/stray"
assert_refused "a directory among the pins" "$SB_BPFFS" \
	"^Error: $SB_BPFFS/maps/stray is not a sockmesh pin; .*nothing was removed"
rmdir "$SB_BPFFS/maps/stray"
mkdir "$SB_BPFFS/maps/sm_stray"
assert_refused "a directory named like our pins" "$SB_BPFFS" \
	"^Error: $SB_BPFFS/maps/sm_stray is not a BPF pin; .*nothing was removed"
rmdir "$SB_BPFFS/maps/sm_stray"
sb_assert_eq "... every pin still there" "$pins" \
	"$(cd "$SB_BPFFS" && find . | sort)"
sb_assert_eq "... still enforcing" '{"EPERM":1}' "$(result "$OPS_LOCKED")"

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
