#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# affinity: source, on real connections from many callers:
#   - each of 240 caller services (a cgroup each) lands on one subset for
#     all of its connections, and so does each of 120 unmanaged cgroups
#     ("world": the caller is its cgroup);
#   - across the callers the subsets' shares follow the weights 75/25
#     within 5 sigma (of the number of callers), and the connections of
#     the callers of subset a still spread over both of a's endpoints;
#   - the same callers to a VIP without affinity mix subsets, so it is
#     the affinity that keeps them together.
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"
# shellcheck source=tests/netns/lb_lib.sh
source "$(dirname "$0")/lb_lib.sh"

sb_need_root
sb_init

NSVC=240
NWORLD=120
K=12
lb_setup 198.18.3.1/32 198.18.3.2/32 198.18.3.3/32 198.18.3.4/32 \
	198.18.3.5/32 198.18.3.6/32
sb_cgroup /backend >/dev/null

# Caller cgroups: services c1..cN, then world cgroups w1..wM.
callers=$SB_WORK/callers.txt
world=$SB_WORK/world.txt
: >"$callers"
: >"$world"
for i in $(seq 1 "$NSVC"); do
	sb_cgroup "/callers/c$i" >>"$callers"
done
for i in $(seq 1 "$NWORLD"); do
	sb_cgroup "/world/w$i" >>"$world"
done

{
	echo "services:"
	for i in $(seq 1 "$NSVC"); do
		echo "  c$i: {cgroups: [$SB_CGROOT/callers/c$i]}"
	done
	cat <<EOF
  api:
    vip: [198.19.3.1:80]
    affinity: source
    subsets:
      a: {weight: 75, endpoints: [198.18.3.1:80, 198.18.3.2:80]}
      b: {weight: 25, endpoints: [198.18.3.3:80]}
  plain:
    vip: [198.19.3.2:80]
    subsets:
      a: {weight: 75, endpoints: [198.18.3.4:80, 198.18.3.5:80]}
      b: {weight: 25, endpoints: [198.18.3.6:80]}
rules:
  - {from: world, to: [api, plain], ports: [80]}
EOF
	echo -n "  - {from: ["
	for i in $(seq 1 "$NSVC"); do
		echo -n "c$i"
		((i == NSVC)) || echo -n ", "
	done
	echo "], to: [api, plain], ports: [80]}"
} >"$SB_WORK/body.yaml"
lb_policy "$(cat "$SB_WORK/body.yaml")"
lb_agent

lb_serve /backend 198.18.3.1:80 a1
lb_serve /backend 198.18.3.2:80 a2
lb_serve /backend 198.18.3.3:80 b1
lb_serve /backend 198.18.3.4:80 a1
lb_serve /backend 198.18.3.5:80 a2
lb_serve /backend 198.18.3.6:80 b1

# K connections from every cgroup in FILE to VIP; the tool joins the
# node's netns itself and moves from cgroup to cgroup.
from_each() {
	LB_RUN_NS="" lb_tool "" callers --to "$2" --netns "$LB_NS" \
		--cgroups "$1" --count "$K"
}

# Per caller: the subsets it reached ("a" for a1/a2, "b" for b1).
subsets_of='.callers | map_values([keys[] | .[0:1]] | unique)'

declare -A SPLIT
for who in services world; do
	if [[ $who == services ]]; then
		file=$callers n=$NSVC
	else
		file=$world n=$NWORLD
	fi
	from_each "$file" 198.19.3.1:80
	sb_assert_json "affinity, $who: all $((n * K)) connections answered" \
		".results == {\"ok\": $((n * K))} and (.callers | length) == $n and
		 all(.callers[]; ([.[]] | add) == $K)" "$LB_OUT"
	sb_assert_json "affinity, $who: every caller kept one subset for $K connections" \
		"all($subsets_of | .[]; length == 1)" "$LB_OUT"
	on_a=$(sb_json "[$subsets_of | .[] | select(. == [\"a\"])] | length" \
		"$LB_OUT")
	# 50/50 (weights ignored) or 100/0 must fail.
	lb_binom "affinity, $who: callers on subset a (weight 75)" "$on_a" \
		"$n" 0.75 0.5 1
	sb_assert_json "affinity, $who: subset a's connections use both its endpoints" \
		'[.callers[] | keys[]] | unique | contains(["a1", "a2"])' "$LB_OUT"
	SPLIT[$who]="$on_a/$((n - on_a))"

	# The same callers without affinity mix subsets (each caller: both
	# with probability 1 - 0.75^12 - 0.25^12 = 0.97).
	from_each "$file" 198.19.3.2:80
	mixed=$(sb_json "[$subsets_of | .[] | select(length == 2)] | length" \
		"$LB_OUT")
	sb_log "no affinity, $who: $mixed of $n callers reached both subsets"
	sb_assert_ge "no affinity, $who: callers mix subsets" "$mixed" \
		$((n * 8 / 10))
done

# The canary metric counts the affinity connections too.
sb_assert_eq "canary metric: every api connection counted" \
	$(((NSVC + NWORLD) * K)) \
	"$(lb_metric sockmesh_canary_connections_total 'service="api"')"
sb_log "affinity: callers per subset a/b: services ${SPLIT[services]}," \
	"world ${SPLIT[world]}"
echo "affinity splits (callers a/b): services ${SPLIT[services]}," \
	"world ${SPLIT[world]}"
