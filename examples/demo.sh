#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# `sudo make demo`: the example mesh (examples/policy.yaml) on real traffic,
# in a sandbox of its own: one network namespace as the node, a cgroup per
# service, the agent managing that cgroup subtree only. It shows allows and
# denies (with the errno the client saw), the canary split, one trace id on
# both ends of a connection, and the metrics. Everything it made is removed
# at the end, also on Ctrl-C.
set -euo pipefail

SB_TAG=demo
# shellcheck source=../tests/lib/sandbox.sh
source "$(dirname "$0")/../tests/lib/sandbox.sh"
sb_log() { :; }		# the demo prints its own report

CANARY_CONNS=${CANARY_CONNS:-1000}
SMTEST=$SB_SMTEST
CLI=$SB_BUILD/sockmesh

bold=$(tput bold 2>/dev/null || true)
plain=$(tput sgr0 2>/dev/null || true)
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
say() { printf '   %s\n' "$*"; }

sb_need_root
sb_need_build "$SB_BUILD/sockmesh-agent" "$CLI" "$SMTEST"
sb_need_cmd jq curl ip
sb_init

step "A node in a sandbox"
# The policy's cgroups live under /sockmesh-demo; here they live under the
# sandbox's own cgroup, so the demo never touches anything else.
policy=$SB_WORK/policy.yaml
sed "s|/sockmesh-demo/|$SB_CGROOT/|g" "$SB_ROOT/examples/policy.yaml" >"$policy"
sb_netns node 198.18.1.1/32 198.18.1.2/32 198.18.1.3/32 198.18.1.4/32
for cg in frontend reviews-v1 reviews-v2 ratings outside; do
	sb_cgroup "/$cg" >/dev/null
done
say "network namespace $SB_ID-node: frontend 198.18.1.1, reviews v1/v2"
say "198.18.1.2/.3, ratings 198.18.1.4; VIP reviews 198.19.0.10:9080"
say "cgroups under $SB_CGMOUNT$SB_CGROOT: one per service, and 'outside'"
say "(in no service: the mesh calls it world)"

serve() {	# CGROUP ADDR TAG
	local pid
	pid=$(sb_run "$1" node "$SMTEST" serve --listen "$2" --tag "$3" \
		--log "$SB_WORK/$3.conns.jsonl" --timeout 300)
	sb_wait_ready "$pid"
}
serve /frontend 198.18.1.1:8080 frontend
serve /reviews-v1 198.18.1.2:9080 v1
serve /reviews-v2 198.18.1.3:9080 v2
serve /ratings 198.18.1.4:9090 ratings

step "The agent, on the example policy"
"$CLI" --cgroup "$SB_CGROOT" check "$policy" | sed 's/^/   /'
sb_agent_start sockmesh "$policy"
url=$(sb_agent sockmesh url)
flows=$(sb_agent sockmesh flows)
say "sockmesh-agent is ready: $url/readyz -> $(curl -s "$url/readyz")"

# One connection attempt from a cgroup: what the client application saw.
attempt() {	# CGROUP TO
	sb_exec "$1" node "$SMTEST" connect --to "$2" --count 1 \
		--timeout-ms 1000 2>/dev/null |
		jq -r '(.results | keys[0]) as $r |
		       if $r == "ok" then "ok, answered by \(.tags | keys[0])"
		       else "failed: \($r)" end'
}

step "Allowed and denied connections"
printf '   %-38s %s\n' "world -> frontend 198.18.1.1:8080" \
	"$(attempt /outside 198.18.1.1:8080)"
printf '   %-38s %s\n' "frontend -> reviews VIP 198.19.0.10:9080" \
	"$(attempt /frontend 198.19.0.10:9080)"
printf '   %-38s %s\n' "reviews -> ratings 198.18.1.4:9090" \
	"$(attempt /reviews-v1 198.18.1.4:9090)"
printf '   %-38s %s\n' "frontend -> ratings 198.18.1.4:9090" \
	"$(attempt /frontend 198.18.1.4:9090)"
printf '   %-38s %s\n' "world -> reviews VIP 198.19.0.10:9080" \
	"$(attempt /outside 198.19.0.10:9080)"
say "EPERM is sockmesh's deny: connect() failed at once, no SYN was sent."
sleep 0.3	# the flow log trails the kernel by a ring buffer poll
deny=$(jq -c 'select(.event == "deny")' "$flows" | head -1)
say "The flow log says who was denied, by what, and which process asked:"
jq -r '"     \(.src) -> \(.dst) \(.orig_dst): \(.verdict) (\(.reason)), pid \(.pid) \(.comm), cgroup \(.cgroup)"' <<<"$deny"

step "The canary split: $CANARY_CONNS connections from frontend to the VIP"
out=$(sb_exec /frontend node "$SMTEST" connect --to 198.19.0.10:9080 \
	--count "$CANARY_CONNS" --parallel 4)
v1=$(jq '.tags.v1 // 0' <<<"$out")
v2=$(jq '.tags.v2 // 0' <<<"$out")
say "results: $(jq -r '.results | to_entries | map("\(.key) \(.value)") | join(", ")' <<<"$out")"
say "policy weights v1 90 / v2 10; observed v1 $v1 / v2 $v2" \
	"($(jq -n "$v2 * 1000 / ($v1 + $v2) | floor / 10")% to v2)"
say "getpeername() in the client showed: $(jq -r '.peers | keys | join(", ")' <<<"$out")"
say "(the VIP it dialled, never the backend it reached)"

step "One trace id, seen on both ends"
out=$(sb_exec /frontend node "$SMTEST" trace --to 198.19.0.10:9080)
id=$(jq -r .trace_id <<<"$out")
say "client getsockopt(SOL_SOCKMESH, SOCKMESH_TRACE_ID): $id"
sb_wait_for "server record" 5 grep -qs "$id" "$SB_WORK/v1.conns.jsonl" \
	"$SB_WORK/v2.conns.jsonl" >/dev/null
srv=$(cat "$SB_WORK"/v[12].conns.jsonl | jq -r --arg id "$id" \
	'select(.trace_id == $id) | .trace_id')
say "server getsockopt on the accepted socket:            $srv"
sb_wait_for "flow records" 5 bash -c "[ \$(grep -c '$id' '$flows') -ge 4 ]" >/dev/null
say "flow log records with this trace id (both sides, open and close):"
jq -r --arg id "$id" 'select(.trace_id == $id) |
	"     \(.event) \(.side): \(.src) -> \(.dst)/\(.subset // "-") \(.orig_dst) -> \(.dst_addr)" +
	(if .event == "close" then ", \(.bytes_sent) B sent, \(.bytes_received) B received" else "" end)' "$flows"
say "the same from the agent's API: GET /v1/flows?trace_id=$id -> $(curl -s "$url/v1/flows?trace_id=$id" | jq length) records"

step "Metrics (GET $url/metrics)"
curl -s "$url/metrics" | grep -E '^sockmesh_(connections_total|canary_connections_total|trace_options_total|policy_generation)' |
	grep -v ' 0$' | sed 's/^/   /'

step "Clean-up"
say "stopping the agent and removing programs, pins, cgroups and namespace"
