#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# One agent per cgroup. A second agent started on the same --cgroup with
# a pin directory of its own would attach a second set of programs that
# decide every connection again, by its own policy. It is refused, saying
# which program of the other agent it found and what to do; nothing of
# its own stays pinned or attached, and the first agent goes on
# enforcing with exactly one program per hook. Restarting the first one
# on its own pins is still fine.
set -euo pipefail
# shellcheck source=tests/netns/ops_lib.sh
source "$(dirname "$0")/ops_lib.sh"

sb_need_root
sb_init
ops_node 0
ops_agent
before=$(ops_assert_one_per_hook "first agent: one program per hook")

locked_result() {
	sb_exec /client node "$SB_SMTEST" connect --to "$OPS_LOCKED" \
		--timeout-ms 10000 | jq -c .results
}
sb_assert_eq "first agent: locked is denied" '{"EPERM":1}' "$(locked_result)"

sb_agent_start second "$OPS_POLICY" --no-wait --bpffs "$SB_WORK/bpffs/second"
rc=0
sb_wait "$(sb_agent second pid)" "$OPS_AGENT_TIMEOUT" || rc=$?
sb_assert_eq "second agent on the same cgroup: exit status" 1 "$rc"
sb_assert_match "second agent: says whose programs it found" \
	"program sm_[a-z0-9_]+ \\(id [0-9]+\\) of another sockmesh agent is attached already" \
	"$(cat "$(sb_agent second log)")"
sb_assert_eq "second agent: nothing left pinned" "" \
	"$(find "$SB_WORK/bpffs/second" -mindepth 1 2>/dev/null)"
sb_assert_eq "first agent: the same programs, one per hook" "$before" \
	"$(ops_assert_one_per_hook "after the second agent")"
sb_assert_eq "first agent: locked still denied" '{"EPERM":1}' \
	"$(locked_result)"

# The first agent restarts on its own pins: its programs are its own.
sb_agent_stop sockmesh
ops_agent
ops_assert_one_per_hook "first agent restarted: one program per hook" >/dev/null
sb_assert_eq "first agent restarted: locked denied" '{"EPERM":1}' \
	"$(locked_result)"
