#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# connections_per_second with burst on real sockets: a token bucket of
# BURST connections refilled at RATE per second. A client connecting flat
# out for about two seconds gets exactly what the bucket allows, within
# bounds a wrong bucket fails: no limit (thousands), no burst (BURST - 1
# fewer), a bucket of RATE instead of BURST or a wrong refill rate (too
# many). Every other connect() fails with EDQUOT; the flow log and
# sockmesh_connections_total record each as quota_rate. A rate-only quota
# holds no unit (the gauge stays 0) and does not limit how many stay
# open; with both limits, concurrency is checked first and a refusal for
# either leaves nothing held.
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"
# shellcheck source=tests/netns/quota_lib.sh
source "$(dirname "$0")/quota_lib.sh"

sb_need_root
sb_init
RATE=100
BURST=20
# The bucket fills from empty in BURST / RATE seconds (0.2 s).
REFILL_S=0.3
# Refills the client could not use are not owed to it (see rate_run):
# a stretch between two refusals longer than GAP_S may overflow the
# bucket, as 1 + RATE * GAP_S tokens may reach BURST (GAP_S < 0.19 s).
GAP_S=0.15
# Timing granularity, in tokens: T in whole milliseconds, and a connect
# record stamped at the handshake's end rather than at connect().
GRAIN=2

q_start "  - {from: client, to: server, connections_per_second: $RATE, burst: $BURST}"

# The time, in ms, within smtest's T during which refills may have gone
# to waste (the client connects flat out, but a busy machine may
# deschedule it), from the times of PID's attempts in the flow log: its
# deny records and its connect records, oldest first. Wasted: everything
# before its first refusal (the bucket may be full until then) and after
# its last refusal, and every stretch between two refusals longer than
# GAP_S. At each refusal less than a token is left, so a shorter stretch
# can't fill the bucket. A record lost to a full ring buffer only makes a
# stretch look longer.
wasted_ms() {
	local pid=$1 t_ms=$2
	q_flows ".pid == $pid and (.event == \"deny\" or
		(.event == \"connect\" and .side == \"client\"))" |
		jq -r '[((.ts[0:19] + "Z" | fromdateiso8601) +
			 (.ts[20:29] | tonumber) / 1e9),
			(if .event == "deny" then 1 else 0 end)] | @tsv' |
		sort -n |
		awk -v T="$t_ms" -v g="$GAP_S" '
		{
			if (NR == 1)
				first = $1
			last = $1
			if ($2 == 1) {
				if (!seen)
					fd = $1
				else if ($1 - pd >= g)
					w += $1 - pd
				seen = 1
				pd = $1
			}
		}
		END {
			if (!seen) { print T; exit }
			edge = T / 1000 - (last - first)
			w += (edge > 0 ? edge : 0) + (fd - first) + (last - pd)
			printf "%.0f\n", w * 1000
		}'
}

# Connect COUNT times flat out, one at a time, each connection closed
# before the next; the bucket must be full at the start. Checks what got
# through against the bucket over smtest's measured duration T:
#   allowed <= BURST + RATE * (T + 1 ms)      nothing else makes tokens
#   allowed >= BURST + RATE * (T - W) - GRAIN  W: time that may have wasted
#                                              refills (wasted_ms)
# and that the rest were refused with EDQUOT, counted, and recorded with
# REASON. Sets ALLOWED and T_MS.
rate_run() {
	local label=$1 count=$2 reason=$3
	local q0 a0 lost0 lo hi refused records lost w_ms

	q0=$(q_conns client server quota)
	a0=$(q_conns client server allowed)
	lost0=$(sb_metric sockmesh sockmesh_events_lost_total)
	q_smtest /client connect --to "$Q_SRV" --count "$count" \
		--timeout-ms 10000
	ALLOWED=$(sb_json '.results.ok // 0' "$Q_OUT")
	T_MS=$(sb_json .elapsed_ms "$Q_OUT")
	refused=$((count - ALLOWED))
	hi=$(awk -v b=$BURST -v r=$RATE -v t="$T_MS" \
		'BEGIN { printf "%.2f\n", b + r * (t + 1) / 1000 }')
	sb_assert_le "$label: allowed <= burst + rate * (T + 1 ms)" \
		"$ALLOWED" "$hi"
	sb_assert_json "$label: the rest got EDQUOT; every allowed one a reply" \
		"(.results | keys - [\"ok\", \"EDQUOT\"]) == [] and
		 (.results.EDQUOT // 0) == $refused and
		 (.tags.srv // 0) == $ALLOWED" "$Q_OUT"
	sb_assert_eq "$label: refusals counted (verdict=quota)" \
		$((q0 + refused)) "$(q_conns client server quota)"
	sb_assert_eq "$label: connections counted (verdict=allowed)" \
		$((a0 + ALLOWED)) "$(q_conns client server allowed)"

	# A flood of refusals can outrun the flow log; what the ring buffer
	# could not take is counted in sockmesh_events_lost_total.
	sb_wait_for "$label: every refusal recorded or counted as lost" 60 \
		_records_or_lost "$Q_PID" "$refused" "$lost0"
	records=$(q_deny_count "$Q_PID")
	lost=$(($(sb_metric sockmesh sockmesh_events_lost_total) - lost0))
	sb_log "$label: $records deny records, $lost events lost"
	sb_assert_le "$label: no more deny records than refusals" "$records" \
		"$refused"
	sb_assert_json "$label: every deny record says quota, $reason" \
		"all(.verdict == \"quota\" and .reason == \"$reason\" and
		     .src == \"client\" and .dst == \"server\" and
		     .proto == \"tcp\")" \
		"$(q_flows ".event == \"deny\" and .pid == $Q_PID" | jq -s .)"

	w_ms=$(wasted_ms "$Q_PID" "$T_MS")
	lo=$(awk -v b=$BURST -v r=$RATE -v t="$T_MS" -v w="$w_ms" -v s=$GRAIN \
		'BEGIN { printf "%.2f\n", b + r * (t - w) / 1000 - s }')
	sb_log "$label: $ALLOWED of $count in $T_MS ms ($w_ms ms may have" \
		"wasted refills); bounds [$lo, $hi]"
	sb_assert_ge "$label: allowed >= burst + rate * (T - W) - $GRAIN" \
		"$ALLOWED" "$lo"
}

# True once PID's deny records plus the events lost since LOST0 cover
# REFUSED refusals.
_records_or_lost() {
	local pid=$1 refused=$2 lost0=$3 records lost
	records=$(q_deny_count "$pid")
	lost=$(($(sb_metric sockmesh sockmesh_events_lost_total) - lost0))
	((records + lost >= refused)) ||
		{ echo "$records records + $lost lost < $refused"; return 1; }
}

# Step 1: a short run, which also says how fast this machine connects.
rate_run "short run" 3000 quota_rate
per_attempt_us=$(((T_MS * 1000 + 2999) / 3000))
((per_attempt_us > 0)) || per_attempt_us=1

# Step 2: about two seconds flat out, with the bucket full again. How fast
# this machine connects changes with its load, so a run that came out
# shorter than 1.5 s is followed by a longer one (at most 4 runs).
count=$((2500000 / per_attempt_us))
for ((run = 1; run <= 4; run++)); do
	((count >= 3000)) || count=3000
	((count <= 400000)) || count=400000
	sleep "$REFILL_S"
	rate_run "flat out, run $run" "$count" quota_rate
	((T_MS < 1500)) || break
	count=$((count * 2500 / (T_MS > 0 ? T_MS : 1)))
done
sb_assert_ge "a run lasted 1.5 s or more (ms)" "$T_MS" 1500
q_assert_active "a rate-only quota holds no unit" client server 0

# Step 3: a rate-only quota does not limit what stays open: two bursts
# held at once, more than BURST open together.
sleep "$REFILL_S"
q_hold /client "$Q_SRV" 15
h1=$Q_HOLD_PID
sb_assert_eq "15 of a full bucket held" 15 "$Q_HELD"
sleep "$REFILL_S"
q_hold /client "$Q_SRV" 15
h2=$Q_HOLD_PID
sb_assert_eq "15 more held once the bucket refilled (30 open)" 15 "$Q_HELD"
q_assert_active "still no unit held" client server 0
q_release "$h1"
q_release "$h2"

# Step 4: both limits. Concurrency is checked first: with 5 open, every
# new connection is refused as quota_concurrent.
q_reload "  - {from: client, to: server, connections_per_second: $RATE, burst: $BURST, max_concurrent: 5}"
sleep "$REFILL_S"
q_hold /client "$Q_SRV" 8
both=$Q_HOLD_PID
sb_assert_eq "5 of 8 held" 5 "$Q_HELD"
q_assert_active "5 held" client server 5
q_smtest /client connect --to "$Q_SRV" --count 30
sb_assert_json "at the limit every connect() gets EDQUOT at once" \
	".results == {\"EDQUOT\": 30} and .first_errno_ms <= $Q_FAST_MS" \
	"$Q_OUT"
q_assert_quota_records "at the limit" "$Q_PID" 30 client server \
	quota_concurrent
q_release "$both"
sb_assert_json "the holder: 5 ok, 3 EDQUOT" \
	'.results == {"ok": 5, "EDQUOT": 3}' "$Q_OUT"
q_assert_quota_records "the holder of 8" "$both" 3 client server \
	quota_concurrent
q_assert_active "closed" client server 0

# One at a time, only the rate limits; refusals for rate hold nothing.
sleep "$REFILL_S"
rate_run "both limits, one at a time" 3000 quota_rate
q_assert_active "rate refusals hold nothing" client server 0
sleep "$REFILL_S"
q_assert_exact_limit "max_concurrent after it all" /client "$Q_SRV" 5 \
	client server
