#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# The self-check. Someone detaches one of the agent's links behind its
# back (bpftool link detach): within a few seconds /readyz answers 503
# naming the hook, sockmesh_hook_attached{hook="connect4"} is 0 (the
# other hooks stay 1), /v1/status and the log say so too. A restart of
# the agent attaches a new link in place of the dead one: ready again,
# one program per hook, and the hook enforces again.
set -euo pipefail
# shellcheck source=tests/netns/ops_lib.sh
source "$(dirname "$0")/ops_lib.sh"

sb_need_root
sb_init
ops_node 0
ops_agent
URL=$(sb_agent sockmesh url)
LOG=$(sb_agent sockmesh log)

locked_result() {
	sb_exec /client node "$SB_SMTEST" connect --to "$OPS_LOCKED" \
		--timeout-ms 10000 | jq -c .results
}

readyz_code() {
	curl -sS --max-time 5 -o "$SB_WORK/readyz" -w '%{http_code}' \
		"$URL/readyz"
}

readyz_is() {
	[[ $(readyz_code) == "$1" ]]
}

sb_assert_eq "/readyz: 200" 200 "$(readyz_code)"
sb_assert_eq "sockmesh_hook_attached: 13 hooks at 1" 13 \
	"$(sb_metric sockmesh sockmesh_hook_attached)"
sb_assert_eq "locked is denied" '{"EPERM":1}' "$(locked_result)"

# Behind the agent's back.
read -r _ link prog < <(ops_pinned_links | grep '^sm_connect4 ')
bpftool link detach id "$link"
t0=$(_sb_now_ms)
sb_wait_for "/readyz turns 503" 10 readyz_is 503
sb_log "noticed after $(($(_sb_now_ms) - t0)) ms"
sb_assert_json "/readyz names the hook" \
	'.ready == false and .hooks_not_attached == ["connect4"]' \
	"$(cat "$SB_WORK/readyz")"
sb_assert_eq "sockmesh_hook_attached{hook=\"connect4\"} is 0" 0 \
	"$(sb_metric sockmesh sockmesh_hook_attached 'hook="connect4"')"
sb_assert_eq "the other hooks stay at 1" 12 \
	"$(sb_metric sockmesh sockmesh_hook_attached)"
sb_assert_json "/v1/status: connect4 not attached" \
	'.hooks_attached.connect4 == false and .hooks_attached.connect6 == true' \
	"$(ops_get /v1/status)"
grep -q "hook connect4: program sm_connect4 (id $prog) is no longer attached" \
	"$LOG" || sb_fail "no warning about connect4 in the log"
echo "ok: the log says so"
sb_assert_eq "/healthz still 200: the agent itself is fine" 200 \
	"$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$URL/healthz")"
# What a missing connect4 means: IPv4 connects are no longer decided.
sb_assert_eq "without connect4, locked is reachable" '{"ok":1}' \
	"$(locked_result)"

# A restart repairs it: the dead link gives way to a new one.
sb_agent_stop sockmesh
ops_agent
URL=$(sb_agent sockmesh url)
sb_assert_eq "restarted: /readyz 200" 200 "$(readyz_code)"
sb_assert_eq "restarted: 13 hooks at 1" 13 \
	"$(sb_metric sockmesh sockmesh_hook_attached)"
ops_assert_one_per_hook "restarted: one program per hook" >/dev/null
read -r _ link2 _ < <(ops_pinned_links | grep '^sm_connect4 ')
[[ $link2 != "$link" ]] || sb_fail "connect4: the dead link $link is still pinned"
echo "ok: connect4 has a new link ($link -> $link2)"
sb_assert_eq "restarted: locked is denied again" '{"EPERM":1}' \
	"$(locked_result)"
