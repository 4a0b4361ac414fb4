#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# A quota from world: processes in the managed subtree that belong to no
# service are "world", and a quota from world to a service holds them
# like any other caller: max_concurrent 5 lets five in and refuses the
# rest with EDQUOT, recorded and counted with src "world"; a rate quota
# from world works the same. The pair is world -> server only: the client
# service, which has no quota, is not held by it. A process outside the
# agent's cgroup subtree is not seen by its hooks at all, so no quota of
# this agent holds it.
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"
# shellcheck source=tests/netns/quota_lib.sh
source "$(dirname "$0")/quota_lib.sh"

sb_need_root
sb_init

# True if sockmesh_connections_total{SRC,DST,allowed} is N.
_allowed_is() {
	local v
	v=$(q_conns "$1" "$2" allowed)
	[[ $v == "$3" ]] || { echo "allowed is $v, want $3"; return 1; }
}

q_start "  - {from: world, to: server, max_concurrent: 5}"

# Step 1: world (cgroup "other") holds five; three more are refused.
q_hold /other "$Q_SRV" 8
world=$Q_HOLD_PID
sb_assert_eq "world: 5 of 8 held" 5 "$Q_HELD"
q_assert_active "world at its limit" world server 5
sb_assert_eq "world's refusals counted (verdict=quota)" 3 \
	"$(q_conns world server quota)"
sb_assert_eq "world's connections counted (verdict=allowed)" 5 \
	"$(q_conns world server allowed)"

# Step 2: another caller is another pair.
q_hold /client "$Q_SRV" 8
client=$Q_HOLD_PID
sb_assert_eq "client (no quota of its own): all 8 held" 8 "$Q_HELD"
q_assert_active "world's gauge unmoved by client" world server 5
sb_assert_eq "client holds no unit" 0 "$(q_active client server)"

# Step 3: outside the agent's subtree (the sandbox's host cgroup) no hook
# runs: what the agent cannot see, it cannot hold.
q_hold "" "$Q_SRV" 8
outside=$Q_HOLD_PID
sb_assert_eq "outside the managed subtree: all 8 held" 8 "$Q_HELD"
q_assert_active "world's gauge unmoved by the outsider" world server 5

q_release "$world"
sb_assert_json "world's holder: 5 ok, 3 EDQUOT at once" \
	".results == {\"ok\": 5, \"EDQUOT\": 3} and
	 .first_errno_ms <= $Q_FAST_MS" "$Q_OUT"
q_assert_quota_records "world" "$world" 3 world server quota_concurrent
sb_assert_json "world's records: cgroup, no service subset, rule 1" \
	"all(.cgroup == \"$SB_CGROOT/other\" and .src_subset == null and
	     .rule == 1)" \
	"$(q_flows ".event == \"deny\" and .pid == $world" | jq -s .)"
q_release "$client"
sb_assert_json "client's holder: 8 ok" '.results == {"ok": 8}' "$Q_OUT"
sb_assert_eq "client: nothing refused" 0 "$(q_conns client server quota)"
q_release "$outside"
q_assert_active "all closed" world server 0
# The outsider's connections were never decided at connect(); the
# server's side counts them as world's once it knows there is no trace id
# coming (at the latest when they close). The quota never held them.
sb_wait_for "the outsider's 8 counted by the server side, as world" 20 \
	_allowed_is world server 13
sb_assert_eq "world's refusals: still 3" 3 "$(q_conns world server quota)"
q_assert_exact_limit "world, after it all" /other "$Q_SRV" 5 world server

# Step 4: a rate quota from world: 20 at once, then 100 per second.
q_reload "  - {from: world, to: server, connections_per_second: 100, burst: 20}"
q_smtest /other connect --to "$Q_SRV" --count 2000
ok=$(sb_json '.results.ok // 0' "$Q_OUT")
t_ms=$(sb_json .elapsed_ms "$Q_OUT")
sb_log "world, rate: $ok of 2000 in $t_ms ms"
sb_assert_ge "world, rate: the burst gets in" "$ok" 20
sb_assert_le "world, rate: no more than burst + rate * T + 1" "$ok" \
	"$(awk -v t="$t_ms" 'BEGIN { printf "%.2f\n", 20 + 100 * (t + 1) / 1000 + 1 }')"
sb_assert_json "world, rate: the rest got EDQUOT" \
	"(.results | keys - [\"ok\", \"EDQUOT\"]) == [] and
	 .results.EDQUOT == 2000 - $ok" "$Q_OUT"
q_assert_quota_records "world, rate" "$Q_PID" $((2000 - ok)) world server \
	quota_rate
