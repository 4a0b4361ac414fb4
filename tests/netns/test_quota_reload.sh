#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# Quotas across policy reloads. The count and the bucket of a pair live
# outside the policy, so a reload that keeps the quota keeps both: with
# K connections held, a reload that changes an unrelated part of the
# policy and the quota's own numbers leaves the gauge at K and the new
# limit applies against K; a bucket emptied before a reload is still
# empty after it. Removing the quota stops limiting at once. Adding it
# back counts the connections opened under it before that are still
# open (not those opened while there was no quota).
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"
# shellcheck source=tests/netns/quota_lib.sh
source "$(dirname "$0")/quota_lib.sh"

sb_need_root
sb_init

BATCH_QUOTA="  - {from: batch, to: server, connections_per_second: 1, burst: 10}"

# Set POLICY_ARGS (for q_start and q_reload) to the policy with the
# client -> server quota CLIENT_QUOTA ("" for none), service batch with
# its rate quota, and with EXTRA=1 the unrelated service extra and a rule
# extra -> server on PORTS.
policy() {
	local client_quota=$1 extra=${2:-0} ports=${3:-8080}
	local svc rules quotas=$BATCH_QUOTA
	svc="  batch:
    cgroups: [$SB_CGROOT/batch]"
	rules="  - {from: batch, to: server, ports: [8080]}"
	if ((extra)); then
		svc+="
  extra:
    cgroups: [$SB_CGROOT/extra]"
		rules+="
  - {from: extra, to: server, ports: [$ports]}"
	fi
	[[ -z $client_quota ]] || quotas="$client_quota
$quotas"
	POLICY_ARGS=("$quotas" "$svc" "$rules")
}

sb_cgroup /extra >/dev/null
policy "  - {from: client, to: server, max_concurrent: 10}"
q_start "${POLICY_ARGS[@]}"

# Step 1: K = 6 held; batch empties its bucket (10 of 15 get in).
q_hold /client "$Q_SRV" 6
k=$Q_HOLD_PID
q_assert_active "6 held" client server 6
t_a=$(_sb_now_ms)
q_smtest /batch connect --to "$Q_SRV" --count 15
batch1=$(sb_json '.results.ok // 0' "$Q_OUT")
sb_assert_ge "batch: the burst of 10 gets in" "$batch1" 10

# Step 2: reload with an unrelated change (a new service and rule) and
# the client quota's own numbers changed (max_concurrent 10 -> 8).
gen0=$(q_generation)
policy "  - {from: client, to: server, max_concurrent: 8}" 1
q_reload "${POLICY_ARGS[@]}"
sb_assert_ge "the reload is in force" "$(q_generation)" $((gen0 + 1))
q_assert_active "the reload keeps the count" client server 6

# The bucket was kept: batch gets only what refilled since t_a (1/s).
q_smtest /batch connect --to "$Q_SRV" --count 5
batch2=$(sb_json '.results.ok // 0' "$Q_OUT")
t_b=$(_sb_now_ms)
max=$((10 + (t_b - t_a) / 1000 + 1))
sb_log "batch: $batch1 + $batch2 in $((t_b - t_a)) ms across the reload"
sb_assert_le "the reload keeps the bucket (allowed <= 10 + 1/s * T + 1)" \
	$((batch1 + batch2)) "$max"
sb_assert_json "batch, after the reload: the rest got EDQUOT" \
	"(.results | keys - [\"ok\", \"EDQUOT\"]) == []" "$Q_OUT"

# The new limit applies against the 6 already held: 2 of 5 get in.
q_hold /client "$Q_SRV" 5
two=$Q_HOLD_PID
sb_assert_eq "new limit 8 against the 6 held: 2 of 5 get in" 2 "$Q_HELD"
q_assert_active "at the new limit" client server 8

# Step 3: an unrelated change only; the count stays, the limit holds.
policy "  - {from: client, to: server, max_concurrent: 8}" 1 "8080, 8081"
q_reload "${POLICY_ARGS[@]}"
q_assert_active "an unrelated reload keeps the count" client server 8
q_smtest /client connect --to "$Q_SRV" --count 1
sb_assert_json "still at the limit: EDQUOT" '.results == {"EDQUOT": 1}' \
	"$Q_OUT"
q_assert_quota_records "still at the limit" "$Q_PID" 1 client server \
	quota_concurrent

# Step 4: the quota removed: new connections are not limited at once.
policy "" 1 "8080, 8081"
q_reload "${POLICY_ARGS[@]}"
q_hold /client "$Q_SRV" 20
free=$Q_HOLD_PID
sb_assert_eq "no quota: all 20 new connections get in" 20 "$Q_HELD"
sb_assert_eq "no quota: no refusal" 0 "$(q_deny_count "$free")"
# The gauge still counts the connections opened under the quota.
q_assert_active "the units of connections opened under the quota" \
	client server 8

# Step 5: the quota back (max_concurrent 10): it counts the 8 opened
# under the old quota, not the 20 opened without one: 2 of 5 get in.
policy "  - {from: client, to: server, max_concurrent: 10}" 1 "8080, 8081"
q_reload "${POLICY_ARGS[@]}"
q_assert_active "the quota back: the kept count" client server 8
q_hold /client "$Q_SRV" 5
back=$Q_HOLD_PID
sb_assert_eq "the quota back: 2 of 5 get in" 2 "$Q_HELD"
q_assert_active "the quota back: at its limit" client server 10

# Step 6: everything closed; the count is 0 and the limit exact.
for p in "$k" "$two" "$free" "$back"; do
	q_release "$p"
done
sb_assert_json "the last holder: 2 ok, 3 EDQUOT" \
	'.results == {"ok": 2, "EDQUOT": 3}' "$Q_OUT"
q_assert_quota_records "the last holder" "$back" 3 client server \
	quota_concurrent
q_assert_active "all closed" client server 0
q_assert_exact_limit "after the reloads" /client "$Q_SRV" 10 client server
