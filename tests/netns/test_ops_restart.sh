#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# Restarts and crashes under load. A loop of new connections runs for the
# whole test (an allowed VIP, an allowed endpoint over IPv4 and IPv6, a
# denied endpoint) while the agent is killed with SIGKILL and started
# again five times, then stopped with SIGTERM and started once more. Each
# time the load also runs a few rounds with no agent at all.
#
# Asserts: no allowed connection ever failed and no denied one ever
# succeeded (every run of the load); after every start the managed cgroup
# has exactly one program per hook, all sm_*, new ones each time, while
# the bpf links stay the same (updated in place, never detached) and so
# do the pinned maps and the policy generation (adopted, not rebuilt).
set -euo pipefail
# shellcheck source=tests/netns/ops_lib.sh
source "$(dirname "$0")/ops_lib.sh"

sb_need_root
sb_init
ops_node 0 3
ops_agent
LOG=$(sb_agent sockmesh log)

ids=$(ops_assert_one_per_hook "first start: one program per hook")
links0=$(ops_cgroup_link_ids)
pins0=$(ops_pinned_links | awk '{ print $1, $2 }')
maps0=$(ops_pinned_maps)
gen0=$(sb_metric sockmesh sockmesh_policy_generation)
sb_assert_eq "13 links on the cgroup" 13 "$(wc -w <<<"$links0")"
sb_assert_eq "13 pinned links" 13 "$(wc -l <<<"$pins0")"

ops_load_start 600 web="$OPS_WEB" stable="$OPS_STABLE" \
	stable6="$OPS_STABLE6" locked="$OPS_LOCKED"
sb_wait_for "the load is running" 30 ops_load_runs_ge locked 3

# Stop the agent (kill or term), let the load run a few rounds with no
# agent, start it again and check the programs and links.
restart() {
	local how=$1 n=$2 before t0 ms new common
	if [[ $how == kill ]]; then
		sb_agent_kill sockmesh
	else
		sb_agent_stop sockmesh
	fi
	before=$(ops_load_runs locked)
	sb_wait_for "3 load rounds with no agent" 60 \
		ops_load_runs_ge locked $((before + 3))

	t0=$(_sb_now_ms)
	ops_agent
	ms=$(($(_sb_now_ms) - t0))
	sb_log "restart $n ($how): ready after $ms ms"
	echo "$ms" >>"$SB_WORK/restart_ms"

	new=$(ops_assert_one_per_hook "restart $n ($how): one program per hook")
	common=$(comm -12 <(tr ' ' '\n' <<<"$ids" | sort) \
		<(tr ' ' '\n' <<<"$new" | sort) | grep -c . || true)
	sb_assert_eq "restart $n ($how): every program is new" 0 "$common"
	ids=$new
	sb_assert_eq "restart $n ($how): the same 13 links on the cgroup" \
		"$links0" "$(ops_cgroup_link_ids)"
	sb_assert_eq "restart $n ($how): the same pinned links" "$pins0" \
		"$(ops_pinned_links | awk '{ print $1, $2 }')"
	sb_assert_eq "restart $n ($how): the links run the new programs" \
		"$ids" "$(ops_pinned_links | awk '{ print $3 }' | sort -n |
			tr '\n' ' ')"
	sb_assert_json "restart $n ($how): pinned state adopted" \
		".adopted_pinned_state == true and .last_error == null and
		 .policy_generation == $gen0" "$(ops_get /v1/status)"
	sb_assert_eq "restart $n ($how): the same pinned maps" "$maps0" \
		"$(ops_pinned_maps)"
	sb_assert_eq "restart $n ($how): sockmesh_hook_attached" 13 \
		"$(sb_metric sockmesh sockmesh_hook_attached)"
}

for n in 1 2 3 4 5; do
	restart kill "$n"
done
restart term 6
grep -q 'stopping; programs stay attached' "$LOG" ||
	sb_fail "SIGTERM: the agent did not say it leaves its programs"
sb_assert_eq "every start adopted the pinned maps" 6 \
	"$(grep -c 'maps adopted' "$LOG")"

# A few more rounds with the last agent, then the verdict of every run.
before=$(ops_load_runs locked)
sb_wait_for "3 more load rounds" 60 ops_load_runs_ge locked $((before + 3))
ops_load_stop
ops_load_assert web '.results == {"ok": .count} and .tags == {"a": .count}' \
	"VIP: every connection allowed, to its backend"
ops_load_assert stable \
	'.results == {"ok": .count} and .tags == {"stable": .count}' \
	"IPv4 endpoint: every connection allowed"
ops_load_assert stable6 \
	'.results == {"ok": .count} and .tags == {"stable": .count}' \
	"IPv6 endpoint: every connection allowed"
ops_load_assert locked '.results == {"EPERM": .count}' \
	"denied endpoint: every connection denied"

sb_log "restart times (ms): $(tr '\n' ' ' <"$SB_WORK/restart_ms")"
sb_log "connections: web $(ops_load_conns web), stable $(ops_load_conns stable)," \
	"stable6 $(ops_load_conns stable6), locked $(ops_load_conns locked)"
