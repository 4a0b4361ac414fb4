#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# The VIP is all the application sees, TCP and UDP, IPv4, IPv6 and
# IPv4-mapped:
#   - TCP: getpeername() is the VIP, also on a socket that dials again
#     after a failed connect() and reaches another backend;
#   - UDP: recvfrom() and recvmsg() give the VIP as the source of every
#     reply, on connected and unconnected sockets, also on a dual-stack
#     AF_INET6 socket handed an AF_INET address (the send takes the IPv4
#     hook, the receive the IPv6 one); getpeername() of a connected one
#     is the VIP;
#   - UDP stickiness: one socket keeps its backend for its lifetime, many
#     sockets spread over the backends;
#   - per socket: a socket that never dialled the VIP sees the backend's
#     real address, even while another socket of the same process talks
#     to that backend through the VIP;
#   - no backend: a VIP with no endpoints fails at once with EHOSTUNREACH
#     (TCP, UDP connect, UDP sendto), counted and logged as no_backend.
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"
# shellcheck source=tests/netns/lb_lib.sh
source "$(dirname "$0")/lb_lib.sh"

sb_need_root
sb_init

lb_setup 198.18.2.1/32 198.18.2.2/32 198.18.2.3/32 \
	fd00::2:1/128 fd00::2:2/128 fd00::2:3/128
sb_cgroup /client >/dev/null
sb_cgroup /backend >/dev/null

VIP4=198.19.2.1:53
VIP6="[fd00::ff:1]:53"
MAPPED="[::ffff:198.19.2.1]:53"
SOLO4=198.19.2.2:53
SOLO6="[fd00::ff:2]:53"
EMPTY4=198.19.2.9:53
EMPTY6="[fd00::ff:9]:53"
REDIAL=198.19.2.4:80

lb_policy "$(cat <<EOF
services:
  client:
    cgroups: [$SB_CGROOT/client]
  dns:
    vip: [$VIP4, "$VIP6"]
    protocol: both
    subsets:
      v1: {weight: 50, endpoints: [198.18.2.1:53, "[fd00::2:1]:53"]}
      v2: {weight: 50, endpoints: [198.18.2.2:53, "[fd00::2:2]:53"]}
  solo:
    vip: [$SOLO4]
    protocol: both
    endpoints: [198.18.2.3:53]
  solo6:
    vip: ["$SOLO6"]
    protocol: both
    endpoints: ["[fd00::2:3]:53"]
  redial:
    vip: [$REDIAL]
    endpoints: [198.18.2.1:80, 198.18.2.2:80]
  empty:
    vip: [$EMPTY4, "$EMPTY6"]
    protocol: both
    subsets:
      v1: {weight: 1, endpoints: []}
rules:
  - {from: client, to: [dns, solo, solo6, empty], ports: [53]}
  - {from: client, to: [redial], ports: [80]}
EOF
)"
lb_agent

# A TCP and a UDP server on every endpoint; tags say which endpoint:
# a/b (subset v1/v2) and 4/6, s4/s6 for solo and solo6.
serve_both() {
	lb_serve /backend "$1" "$2"
	lb_serve /backend "$1" "$2u" --udp
}
serve_both 198.18.2.1:53 a4
serve_both 198.18.2.2:53 b4
serve_both "[fd00::2:1]:53" a6
serve_both "[fd00::2:2]:53" b6
serve_both 198.18.2.3:53 s4
serve_both "[fd00::2:3]:53" s6

# --- TCP: getpeername() is the VIP ---
for fam in 4 6 mapped; do
	case $fam in
	4) to=$VIP4 want=$VIP4 tags='["a4", "b4"]' ;;
	6) to=$VIP6 want=$VIP6 tags='["a4", "a6", "b4", "b6"]' ;;
	mapped) to=$VIP4 want=$MAPPED tags='["a4", "a6", "b4", "b6"]' ;;
	esac
	lb_smtest /client connect --to "$to" --family "$fam" --count 60 \
		--timeout-ms 10000
	sb_assert_json "tcp $fam: 60 connections answered, by the VIP's backends" \
		".results == {\"ok\": 60} and (.tags | keys) - $tags == [] and
		 (.tags | length) >= 2" "$LB_OUT"
	sb_assert_json "tcp $fam: getpeername() is $want every time" \
		".peers == {\"$want\": 60}" "$LB_OUT"
done
# An IPv6 socket can dial an IPv4 VIP only as a mapped address: the
# kernel refuses an AF_INET address on an AF_INET6 TCP socket itself.
lb_tool /client hold --to "$VIP4" --family dual4
sb_assert_json "tcp dual4: the kernel refuses an AF_INET address (EINVAL)" \
	'.step == "connect" and .result == "EINVAL"' "$LB_OUT"

# A socket whose connect() to the VIP was refused (nothing listens on
# 198.18.2.1:80) dials again and reaches 198.18.2.2:80: getpeername() is
# the VIP, not the backend of either attempt.
lb_serve_lines /backend 198.18.2.2:80 r2
lb_tool /client redial --to "$REDIAL"
sb_assert_json "tcp redial: a refused connect() first" \
	'.first == "ECONNREFUSED"' "$LB_OUT"
sb_assert_json "tcp redial: the same socket reaches the live backend" \
	'.tag == "r2"' "$LB_OUT"
sb_assert_json "tcp redial: getpeername() is $REDIAL" \
	".peer == \"$REDIAL\"" "$LB_OUT"

# --- UDP: the reply source is the VIP, per recvfrom() and recvmsg() ---
for fam in 4 6 mapped dual4; do
	case $fam in
	4) to=$VIP4 want=$VIP4 tags='["a4u", "b4u"]' ;;
	6) to=$VIP6 want=$VIP6 tags='["a4u", "a6u", "b4u", "b6u"]' ;;
	mapped) to=$VIP4 want=$MAPPED tags='["a4u", "a6u", "b4u", "b6u"]' ;;
	dual4) to=$VIP4 want=$MAPPED tags='["a4u", "b4u"]' ;;
	esac
	for mode in unconnected connected; do
		# Unconnected IPv6 UDP: IPv6 endpoints only (the kernel
		# refuses a sendmsg6 rewrite to an IPv4-mapped address).
		mtags=$tags
		[[ $fam$mode != 6unconnected ]] || mtags='["a6u", "b6u"]'
		for recv in recvfrom recvmsg; do
			args=(--to "$to" --family "$fam" --sockets 12 --count 4)
			[[ $mode == unconnected ]] || args+=(--connected)
			[[ $recv == recvfrom ]] || args+=(--recvmsg)
			lb_tool /client udp "${args[@]}"
			what="udp $fam $mode $recv"
			sb_assert_json "$what: 48 replies, from the VIP's backends" \
				".results == {\"ok\": 48} and
				 (.tags | keys) - $mtags == []" "$LB_OUT"
			sb_assert_json "$what: every reply's source is $want" \
				".sources == {\"$want\": 48}" "$LB_OUT"
			sb_assert_json "$what: each socket kept one backend" \
				'all(.sockets[]; (.tags | length) == 1)' "$LB_OUT"
			[[ $mode == unconnected ]] ||
				sb_assert_json "$what: getpeername() is $want" \
					"all(.sockets[]; .peer == \"$want\")" "$LB_OUT"
		done
	done
done

# --- UDP stickiness: one socket, one backend; many sockets spread ---
for fam in 4 mapped 6; do
	to=$VIP4
	[[ $fam != 6 ]] || to=$VIP6
	lb_tool /client udp --to "$to" --family "$fam" --count 300
	sb_assert_json "udp $fam: 300 datagrams of one unconnected socket, one backend" \
		'.results == {"ok": 300} and (.tags | length) == 1 and
		 ([.tags[]] | add) == 300' "$LB_OUT"
	lb_tool /client udp --to "$to" --family "$fam" --sockets 60 --count 2
	sb_assert_json "udp $fam: 60 sockets spread over both subsets" \
		'.results == {"ok": 120} and
		 ([.tags | keys[] | .[0:1]] | unique) == ["a", "b"]' "$LB_OUT"
done

# --- per socket: no translation for a socket that never dialled a VIP ---
for fam in 4 mapped 6; do
	case $fam in
	4) vip=$SOLO4 direct=198.18.2.3:53 real=198.18.2.3:53 want=$SOLO4 ;;
	mapped) vip=$SOLO4 direct=198.18.2.3:53 real="[::ffff:198.18.2.3]:53"
		want="[::ffff:198.19.2.2]:53" ;;
	6) vip=$SOLO6 direct="[fd00::2:3]:53" real="[fd00::2:3]:53"
		want=$SOLO6 ;;
	esac
	lb_tool /client udp-pair --vip "$vip" --direct "$direct" --family "$fam"
	sb_assert_json "udp $fam: VIP socket and direct socket reach one backend" \
		'.vip_tag == .direct_tag and (.vip_tag | test("^s[46]u$"))' \
		"$LB_OUT"
	sb_assert_json "udp $fam: the VIP socket sees the VIP" \
		"[.vip_source_0, .vip_source_1, .vip_source_2] ==
		 [\"$want\", \"$want\", \"$want\"]" "$LB_OUT"
	sb_assert_json "udp $fam: the other socket sees the backend, $real" \
		"[.direct_source_0, .direct_source_1, .direct_source_2] ==
		 [\"$real\", \"$real\", \"$real\"]" "$LB_OUT"
done
lb_smtest /client connect --to 198.18.2.3:53 --count 5 --timeout-ms 10000
sb_assert_json "tcp direct to a backend: getpeername() is the backend" \
	'.results == {"ok": 5} and .peers == {"198.18.2.3:53": 5}' "$LB_OUT"
lb_smtest /client connect --to "[fd00::2:3]:53" --count 5 --timeout-ms 10000
sb_assert_json "tcp direct to a v6 backend: getpeername() is the backend" \
	'.results == {"ok": 5} and .peers == {"[fd00::2:3]:53": 5}' "$LB_OUT"

# --- no backend: EHOSTUNREACH at once, everywhere ---
nb0=$(lb_metric sockmesh_connections_total \
	'src="client",dst="empty",verdict="no_backend"')
for fam in 4 6 mapped; do
	to=$EMPTY4
	[[ $fam != 6 ]] || to=$EMPTY6
	lb_smtest /client connect --to "$to" --family "$fam" --count 5 \
		--timeout-ms 10000
	sb_assert_json "no backend, tcp $fam: EHOSTUNREACH" \
		'.results == {"EHOSTUNREACH": 5}' "$LB_OUT"
	# connect() fails inside the call; a SYN retry alone would take 1 s.
	sb_assert_le "no backend, tcp $fam: failed at once (ms)" \
		"$(sb_json .first_errno_ms "$LB_OUT")" 900
	lb_tool /client udp --to "$to" --family "$fam" --sockets 2 --connected
	sb_assert_json "no backend, udp $fam connect(): EHOSTUNREACH" \
		'.results == {"EHOSTUNREACH": 2}' "$LB_OUT"
	lb_tool /client udp --to "$to" --family "$fam" --sockets 2
	sb_assert_json "no backend, udp $fam sendto(): EHOSTUNREACH" \
		'.results == {"EHOSTUNREACH": 2}' "$LB_OUT"
done
lb_tool /client udp --to "$EMPTY4" --family dual4 --sockets 2
sb_assert_json "no backend, udp dual4 sendto (IPv4 hook): EHOSTUNREACH" \
	'.results == {"EHOSTUNREACH": 2}' "$LB_OUT"
# 3 families x (5 TCP + 2 + 2 UDP), and 2 dual4.
sb_assert_eq "no backend: counted as no_backend" $((nb0 + 3 * 9 + 2)) \
	"$(lb_metric sockmesh_connections_total \
		'src="client",dst="empty",verdict="no_backend"')"
sb_wait_for "no backend: deny records in the flow log" 60 \
	lb_flows_ge '.event == "deny" and .verdict == "no_backend" and
		.dst == "empty"' 29
sb_assert_json "no backend: the records name what was dialled" \
	"all(.[]; .orig_dst == \"$EMPTY4\" or .orig_dst == \"$EMPTY6\" or
		  .orig_dst == \"[::ffff:198.19.2.9]:53\")" \
	"$(lb_flows '.event == "deny" and .dst == "empty"' | jq -s .)"
