#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# A canary subset whose only endpoint keeps refusing is ejected as a whole:
# its share goes to the other subsets until it is back in selection.
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"

sb_need_root
sb_init

VIP=198.19.0.30:80
sb_netns node 198.18.6.2/32 198.18.6.3/32
for cg in client v1 v2; do
	sb_cgroup "/$cg" >/dev/null
done
policy=$SB_WORK/policy.yaml
cat >"$policy" <<EOF2
apiVersion: sockmesh/v1
services:
  client: {cgroups: [$SB_CGROOT/client]}
  api:
    vip: ["$VIP"]
    outlier: {failures: 2, eject_seconds: 3}
    subsets:
      v1: {weight: 50, cgroups: [$SB_CGROOT/v1], endpoints: ["198.18.6.2:80"]}
      v2: {weight: 50, cgroups: [$SB_CGROOT/v2], endpoints: ["198.18.6.3:80"]}
rules:
  - {from: client, to: api, ports: [80]}
EOF2
# v2's only endpoint has no listener: every connect to it is refused.
pid=$(sb_run /v1 node "$SB_SMTEST" serve --listen 198.18.6.2:80 --tag v1)
sb_wait_ready "$pid"
sb_agent_start sockmesh "$policy"

connect() {	# COUNT
	sb_exec /client node "$SB_SMTEST" connect --to "$VIP" --count "$1"
}

# Until v2 is ejected, about half the connects are refused; 2 refusals
# eject it (50 connects leave that to chance less than once in 10^13).
out=$(connect 50)
sb_assert_json "before: some refused, the rest reached v1" \
	'(.results.ECONNREFUSED // 0) >= 2 and
	 .results.ok == (.tags.v1 // 0)' "$out"
sb_assert_eq "v2 ejected once" 1 \
	"$(sb_metric sockmesh sockmesh_outlier_ejections_total 'service="api"')"

# While v2 is out, its share goes to v1: no refusal at all.
sb_assert_json "v2 out: all 200 reach v1" \
	'.results == {"ok": 200} and .tags == {"v1": 200}' "$(connect 200)"
sb_assert_eq "canary: v2 chosen no more" \
	"$(sb_metric sockmesh sockmesh_canary_connections_total \
		'service="api",subset="v2"')" \
	"$(sb_json '.results.ECONNREFUSED // 0' "$out")"

# Back in selection after eject_seconds: refused again, ejected again.
sleep 3.2
sb_assert_json "after eject_seconds: v2 is tried again" \
	'(.results.ECONNREFUSED // 0) >= 2' "$(connect 50)"
sb_assert_eq "v2 ejected a second time" 2 \
	"$(sb_metric sockmesh sockmesh_outlier_ejections_total 'service="api"')"
