#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# max_concurrent on real sockets. With max_concurrent: 50 from client to
# server (and no rate limit), fifty held connections fill the quota, the
# fifty-first connect() fails at once with EDQUOT, and closing one lets
# exactly one more in; closing a batch lets exactly that many in. The
# gauge sockmesh_quota_active follows every step; the flow log and
# sockmesh_connections_total{verdict="quota"} record each refusal, naming
# the pair and the limit. IPv4-mapped IPv6 sockets count against the same
# quota, and UDP is never limited, not even while TCP is at its limit.
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"
# shellcheck source=tests/netns/quota_lib.sh
source "$(dirname "$0")/quota_lib.sh"

sb_need_root
sb_init
N=50
q_start "  - {from: client, to: server, max_concurrent: $N}"

refused=0

# Step 1: fill the quota with two holders, 49 and 1 connections.
q_hold /client "$Q_SRV" 49
big=$Q_HOLD_PID
sb_assert_eq "49 connections held" 49 "$Q_HELD"
q_assert_active "49 held" client server 49
q_hold /client "$Q_SRV" 1
one=$Q_HOLD_PID
sb_assert_eq "the fiftieth connection held" 1 "$Q_HELD"
q_assert_active "50 held" client server 50
sb_assert_eq "50 allowed (sockmesh_connections_total)" 50 \
	"$(q_conns client server allowed)"
sb_assert_eq "none refused yet" 0 "$(q_conns client server quota)"

# Step 2: the fifty-first fails at once with EDQUOT, and is recorded.
q_smtest /client connect --to "$Q_SRV" --count 1 --timeout-ms 5000
sb_assert_json "the 51st connect() gets EDQUOT" \
	'.results == {"EDQUOT": 1}' "$Q_OUT"
sb_assert_le "the 51st fails at once (ms)" \
	"$(sb_json .first_errno_ms "$Q_OUT")" "$Q_FAST_MS"
refused=$((refused + 1))
q_assert_quota_records "the 51st" "$Q_PID" 1 client server quota_concurrent
sb_assert_json "its record names the address, cgroup and the rule that matched" \
	".orig_dst == \"$Q_SRV\" and .cgroup == \"$SB_CGROOT/client\" and
	 .rule == 0" \
	"$(q_flows ".event == \"deny\" and .pid == $Q_PID")"
sb_assert_eq "refusals counted (verdict=quota)" "$refused" \
	"$(q_conns client server quota)"
q_assert_active "a refusal holds nothing" client server 50

# Step 3: close one; exactly one new connection gets in.
q_release "$one"
sb_assert_json "the single holder had connected" '.results == {"ok": 1}' \
	"$Q_OUT"
q_assert_active "one closed" client server 49
q_hold /client "$Q_SRV" 2
two=$Q_HOLD_PID
sb_assert_eq "after one close, one of two new connections gets in" 1 \
	"$Q_HELD"
q_assert_active "full again" client server 50
refused=$((refused + 1))

# UDP is not limited: connected and unconnected sockets, TCP at its limit.
q_smtest /client connect --to "$Q_SRV" --udp --count 5
sb_assert_json "UDP connect() and exchange work with TCP at the limit" \
	'.results == {"ok": 5} and .tags == {"srv-udp": 5}' "$Q_OUT"
q_assert_quota_records "UDP, connected" "$Q_PID" 0 client server -
q_smtest /client connect --to "$Q_SRV" --udp --unconnected --count 5
sb_assert_json "UDP sendto() works with TCP at the limit" \
	'.results == {"ok": 5} and .tags == {"srv-udp": 5}' "$Q_OUT"
q_assert_quota_records "UDP, unconnected" "$Q_PID" 0 client server -
q_assert_active "UDP takes no unit" client server 50

# Step 4: close the batch of 49; exactly 49 of 60 new ones get in.
q_release "$big"
sb_assert_json "the batch had 49 connected" '.results == {"ok": 49}' "$Q_OUT"
q_assert_active "batch closed" client server 1
q_hold /client "$Q_SRV" 60 --parallel 4
three=$Q_HOLD_PID
sb_assert_eq "after 49 closes, 49 of 60 get in" 49 "$Q_HELD"
q_assert_active "full again" client server 50
refused=$((refused + 11))

# Step 5: everything closed; the refusals are in the holders' reports.
q_release "$two"
sb_assert_json "holder of two: one ok, one EDQUOT at once" \
	".results == {\"ok\": 1, \"EDQUOT\": 1} and
	 .first_errno_ms <= $Q_FAST_MS" "$Q_OUT"
q_assert_quota_records "holder of two" "$two" 1 client server \
	quota_concurrent
q_release "$three"
sb_assert_json "holder of 60: 49 ok, 11 EDQUOT" \
	'.results == {"ok": 49, "EDQUOT": 11}' "$Q_OUT"
q_assert_quota_records "holder of 60" "$three" 11 client server \
	quota_concurrent
q_assert_active "all closed" client server 0
sb_assert_eq "every refusal counted (verdict=quota)" "$refused" \
	"$(q_conns client server quota)"
sb_assert_eq "every connection counted (verdict=allowed), UDP too" \
	$((50 + 1 + 49 + 10)) \
	"$(q_conns client server allowed)"

# Step 6: IPv4-mapped IPv6 sockets count against the same quota.
q_hold /client "$Q_SRV" 30
v4=$Q_HOLD_PID
q_hold /client "$Q_SRV" 30 --family mapped
mapped=$Q_HOLD_PID
sb_assert_eq "30 IPv4 + 20 of 30 IPv4-mapped fill the quota" 20 "$Q_HELD"
q_assert_active "IPv4 and IPv4-mapped together" client server 50
q_release "$mapped"
sb_assert_json "the IPv6 socket's refusals are EDQUOT" \
	'.results == {"ok": 20, "EDQUOT": 10}' "$Q_OUT"
q_assert_quota_records "IPv4-mapped" "$mapped" 10 client server \
	quota_concurrent
q_release "$v4"
q_assert_active "all closed again" client server 0

q_assert_exact_limit "after it all" /client "$Q_SRV" "$N" client server
