#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# Outlier ejection on real connections through VIPs:
#   - an endpoint that refuses (nothing listens) is ejected after exactly
#     `failures` refusals: a flow record "outlier" names the service and
#     the endpoint, the metrics count it, and the connections made while
#     it is out all reach the other endpoints;
#   - after eject_seconds (2 s) it is back in selection: refused again,
#     and ejected again after as many failures;
#   - an endpoint whose SYNs are lost is ejected after connects the
#     client gave up on (timed out);
#   - when every endpoint is out, selection falls back to all of them:
#     connections are still attempted and refused (ECONNREFUSED), never
#     failed with the no-backend errno (EHOSTUNREACH).
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"
# shellcheck source=tests/netns/lb_lib.sh
source "$(dirname "$0")/lb_lib.sh"

sb_need_root
sb_init

# 198.18.5.2, .4, .5, .8: nothing listens (refused). 198.18.9.9 is routed
# to netns "void", which does not forward: a SYN sent there is lost.
lb_setup 198.18.5.1/32 198.18.5.2/32 198.18.5.3/32 198.18.5.4/32 \
	198.18.5.5/32 198.18.5.6/32 198.18.5.7/32 198.18.5.8/32
sb_netns void
sb_veth node 198.18.6.1/24 void 198.18.6.2/24
sb_route node 198.18.9.0/24 198.18.6.2
sb_cgroup /client >/dev/null
sb_cgroup /backend >/dev/null

FLAKY=198.19.5.1:80
DEAD=198.19.5.2:80
SLOW=198.19.5.3:80
BRIEF=198.19.5.4:80

lb_policy "$(cat <<EOF
services:
  client:
    cgroups: [$SB_CGROOT/client]
  flaky:
    vip: [$FLAKY]
    outlier: {failures: 3, eject_seconds: 120}
    endpoints: [198.18.5.1:80, 198.18.5.2:80, 198.18.5.3:80]
  brief:
    vip: [$BRIEF]
    outlier: {failures: 3, eject_seconds: 2}
    endpoints: [198.18.5.7:80, 198.18.5.8:80]
  dead:
    vip: [$DEAD]
    outlier: {failures: 2, eject_seconds: 120}
    endpoints: [198.18.5.4:80, 198.18.5.5:80]
  slow:
    vip: [$SLOW]
    outlier: {failures: 2, eject_seconds: 120}
    endpoints: [198.18.5.6:80, 198.18.9.9:80]
rules:
  - {from: client, to: [flaky, brief, dead, slow], ports: [80]}
EOF
)"
lb_agent
sb_assert_json "GET /v1/policy: each service's outlier settings and the defaults" \
	'.services.flaky.outlier == {"failures": 3, "eject_seconds": 120} and
	 .services.brief.outlier == {"failures": 3, "eject_seconds": 2} and
	 (.defaults.outlier | has("failures") and has("eject_seconds"))' \
	"$(curl -fsS --max-time 5 "$LB_URL/v1/policy")"
lb_serve /backend 198.18.5.1:80 f1
lb_serve /backend 198.18.5.3:80 f3
lb_serve /backend 198.18.5.6:80 s1
lb_serve /backend 198.18.5.7:80 b7

outlier_records() {
	lb_flows ".event == \"outlier\" and .dst == \"$1\"" | jq -s .
}

# --- a refusing endpoint is ejected after 3 refusals ---
lb_tool /client connects --to "$FLAKY" --count 150
sb_log "flaky: $(jq -c .runs <<<"$LB_OUT")"
sb_assert_json "flaky: exactly 3 connects refused, none after the ejection" \
	'.results == {"ECONNREFUSED": 3, "ok": 147}' "$LB_OUT"
# After the third refusal: f1 and f3 only, and both of them.
# shellcheck disable=SC2016 # $k is jq's
sb_assert_json "flaky: after the ejection, the connects spread over f1 and f3" \
	'(.runs | (map(.[0]) | rindex("ECONNREFUSED")) as $k | .[$k + 1:]
	  | map(.[0]) | unique) == ["f1", "f3"]' "$LB_OUT"
sb_wait_for "flaky: the outlier record" 60 \
	lb_flows_ge '.event == "outlier" and .dst == "flaky"' 1
sb_assert_json "flaky: one outlier record naming the service and endpoint" \
	"length == 1 and .[0].dst == \"flaky\" and .[0].src == \"client\" and
	 .[0].dst_addr == \"198.18.5.2:80\" and .[0].orig_dst == \"$FLAKY\" and
	 .[0].reason == \"connect_failed\"" "$(outlier_records flaky)"
sb_assert_eq "flaky: sockmesh_outlier_ejections_total" 1 \
	"$(lb_metric sockmesh_outlier_ejections_total 'service="flaky"')"
sb_assert_eq "flaky: sockmesh_outlier_ejected" 1 \
	"$(lb_metric sockmesh_outlier_ejected 'service="flaky"')"
# Its share goes evenly to the others: a pick that moved on to the next
# endpoint would give f3 (after the ejected .2) two thirds.
lb_smtest /client connect --to "$FLAKY" --count 4000 --parallel 4 \
	--timeout-ms 20000
sb_assert_json "flaky: while it is out, 4000 more connects all answered" \
	'.results == {"ok": 4000} and (.tags | keys) == ["f1", "f3"]' "$LB_OUT"
lb_binom "flaky: f1's share while .2 is out" "$(sb_json .tags.f1 "$LB_OUT")" \
	4000 0.5 0.3333 0.6667

# --- eject_seconds: 2: out, then back in selection ---
lb_tool /client connects --to "$BRIEF" --count 1000 --stop-after-errors 3
sb_assert_json "brief: ejected at its third refusal" \
	'.results.ECONNREFUSED == 3 and (.runs | last | .[0]) == "ECONNREFUSED"' \
	"$LB_OUT"
sb_wait_for "brief: the first outlier record" 60 \
	lb_flows_ge '.event == "outlier" and .dst == "brief"' 1
sb_wait_for "brief: back in selection after 2 s" 60 \
	bash -c "curl -fsS --max-time 5 '$LB_URL/metrics' |
		grep -qx 'sockmesh_outlier_ejected{service=\"brief\"} 0'"
lb_tool /client connects --to "$BRIEF" --count 1000 --stop-after-errors 3
sb_assert_json "brief: after eject_seconds it is refused again, 3 times" \
	'.results.ECONNREFUSED == 3 and
	 (.results | keys) - ["ECONNREFUSED", "ok"] == []' "$LB_OUT"
sb_wait_for "brief: the second outlier record" 60 \
	lb_flows_ge '.event == "outlier" and .dst == "brief"' 2
sb_assert_json "brief: both records name the refusing endpoint" \
	'length == 2 and all(.[]; .dst_addr == "198.18.5.8:80")' \
	"$(outlier_records brief)"
sb_assert_eq "brief: sockmesh_outlier_ejections_total" 2 \
	"$(lb_metric sockmesh_outlier_ejections_total 'service="brief"')"

# --- an endpoint whose SYNs are lost: connects time out ---
lb_tool /client connects --to "$SLOW" --count 40 --timeout-ms 1000
sb_assert_json "slow: exactly 2 timeouts, then every connect answered by s1" \
	'.results == {"ETIMEDOUT": 2, "ok": 38} and .tags == {"s1": 38} and
	 ([.runs[] | .[0]] | last) == "s1"' "$LB_OUT"
sb_wait_for "slow: the outlier record" 60 \
	lb_flows_ge '.event == "outlier" and .dst == "slow"' 1
sb_assert_json "slow: the record names the endpoint whose SYNs are lost" \
	'length == 1 and .[0].dst_addr == "198.18.9.9:80" and
	 .[0].reason == "connect_failed"' "$(outlier_records slow)"

# --- every endpoint out: selection falls back to all of them ---
lb_tool /client connects --to "$DEAD" --count 30
sb_assert_json "dead: every connect attempted and refused" \
	'.results == {"ECONNREFUSED": 30}' "$LB_OUT"
sb_wait_for "dead: both endpoints ejected" 60 \
	lb_flows_ge '.event == "outlier" and .dst == "dead"' 2
sb_assert_json "dead: both endpoints named" \
	'length == 2 and ([.[].dst_addr] | sort) ==
	 ["198.18.5.4:80", "198.18.5.5:80"]' "$(outlier_records dead)"
sb_assert_eq "dead: both out of selection now" 2 \
	"$(lb_metric sockmesh_outlier_ejected 'service="dead"')"
lb_tool /client connects --to "$DEAD" --count 20
sb_assert_json "dead, all ejected: still attempted (ECONNREFUSED, not EHOSTUNREACH)" \
	'.results == {"ECONNREFUSED": 20}' "$LB_OUT"
sb_assert_eq "dead: no connection counted no_backend" 0 \
	"$(lb_metric sockmesh_connections_total 'dst="dead",verdict="no_backend"')"
sb_assert_eq "dead: ejections counted" 2 \
	"$(lb_metric sockmesh_outlier_ejections_total 'service="dead"')"
