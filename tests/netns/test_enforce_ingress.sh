#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# The way in: connections that arrive at a managed service from another
# node are checked against the rules too. Two network namespaces are two
# nodes joined by a veth, each with its own agent (its own --cgroup and
# --bpffs); a third namespace is a host outside the mesh.
#
#   node-a (ns a)  client  198.18.50.1, fd00:50::1   --veth--+
#   node-b (ns b)  server  198.18.50.2, fd00:50::2   <-------+
#                  neighbour (a second service on node-b)    |
#   outside (ns c)         198.18.51.1               --veth--+
#
# node-b's rules: client -> server on 8080 only, world -> server on 8081
# only, neighbour -> server on 8081 only. A SYN that no rule lets in is
# dropped: the client's connect() runs into its own timeout, and node-b's
# flow log has a deny on the server side naming the peer by its address.
# legacy (node-b, port 9090) is in audit mode: no rule lets client in,
# and both nodes let it through and record and count one audit. reviews
# is a VIP (port 80) whose backend listens on node-b's port 9091: a rule
# names the port dialled, 80, and node-b lets in what it translated to.
set -euo pipefail
# shellcheck source=tests/netns/enforce_lib.sh
source "$(dirname "$0")/enforce_lib.sh"

sb_need_root
enf_need
sb_init

SM=$SB_SMTEST
A4=198.18.50.1 A6=fd00:50::1
B4=198.18.50.2 B6=fd00:50::2
C4=198.18.51.1
VIP=198.19.50.10:80
# A dropped SYN: our timeout, short but far above a loopback/veth RTT.
TMO=1500

sb_netns a
sb_netns b
sb_netns c
sb_veth a "$A4/24,$A6/64" b "$B4/24,$B6/64"
sb_veth c "$C4/24" b 198.18.51.2/24
sb_route c "$B4/32" 198.18.51.2

enf_cgroups /node-a/client /node-b/server /node-b/neighbour /node-b/legacy \
	/node-b/reviews

# Both nodes know both services; each has the cgroups of its own.
cat >"$SB_WORK/node-a.yaml" <<EOF
apiVersion: sockmesh/v1
node: node-a
services:
  client:
    cgroups: [$SB_CGROOT/node-a/client]
    endpoints: [$A4:7000, "[$A6]:7000"]
  server:
    endpoints: [$B4:8080, $B4:8081, "[$B6]:8080", "[$B6]:8081"]
  legacy:
    endpoints: [$B4:9090]
    mode: audit
  reviews:
    vip: [$VIP]
    subsets:
      v1: {weight: 1, endpoints: [$B4:9091]}
rules:
  - {from: [client], to: [server], ports: [8080, 8081]}
  - {from: [client], to: [reviews], ports: [80]}
EOF
cat >"$SB_WORK/node-b.yaml" <<EOF
apiVersion: sockmesh/v1
node: node-b
services:
  client:
    endpoints: [$A4:7000, "[$A6]:7000"]
  server:
    cgroups: [$SB_CGROOT/node-b/server]
    endpoints: [$B4:8080, $B4:8081, "[$B6]:8080", "[$B6]:8081"]
  neighbour:
    cgroups: [$SB_CGROOT/node-b/neighbour]
  legacy:
    cgroups: [$SB_CGROOT/node-b/legacy]
    endpoints: [$B4:9090]
    mode: audit
  reviews:
    vip: [$VIP]
    subsets:
      v1: {weight: 1, cgroups: [$SB_CGROOT/node-b/reviews],
           endpoints: [$B4:9091]}
rules:
  - {from: [client], to: [reviews], ports: [80]}
  - {from: [client], to: [server], ports: [8080]}
  - {from: [world], to: [server], ports: [8081]}
  - {from: [neighbour], to: [server], ports: [8081]}
EOF
sb_agent_start node-a "$SB_WORK/node-a.yaml" --timeout 120 --cgroup "$SB_CGROOT/node-a"
sb_agent_start node-b "$SB_WORK/node-b.yaml" --timeout 120 --cgroup "$SB_CGROOT/node-b"
FLOWS_A=$(sb_agent node-a flows)
FLOWS_B=$(sb_agent node-b flows)

SLOG=$SB_WORK/server.jsonl
for port in 8080 8081; do
	enf_serve /node-b/server b "[::]:$port" "srv$port" --log "$SLOG"
done
enf_serve /node-b/legacy b "$B4:9090" legacy
enf_serve /node-b/reviews b "$B4:9091" reviews --log "$SLOG"

# sockmesh_connections_total of node NODE for SRC -> server, VERDICT.
# ... or for SRC -> DST_SVC when a fourth argument names it.
conns() {
	sb_metric "$1" sockmesh_connections_total \
		"src=\"$2\",dst=\"${4:-server}\",verdict=\"$3\""
}

# The records of FILE (a flow log) matching the jq condition COND.
records() {
	jq -sc "map(select($2))" "$1"
}

# True once FILE has at least N records matching COND.
records_ge() {
	[[ -s $1 ]] && (($(jq -s "map(select($2)) | length" "$1") >= $3))
}

# Connections the servers logged.
served() {
	if [[ -e $SLOG ]]; then wc -l <"$SLOG"; else echo 0; fi
}

served_ge() {
	(($(served) >= $1))
}

# let_in NAME CG NS SRC DST PEER: one connection from SRC (cgroup CG,
# netns NS) to DST; node-b lets it in and names its peer PEER.
let_in() {
	local name=$1 cg=$2 ns=$3 dst=$5 peer=$6 out a0 s0 c0 cond
	local port=${dst##*:} addr=${4#[}
	addr=${addr%]}
	cond=".event == \"connect\" and .side == \"server\" and
	      .orig_dst == \"$dst\" and (.src_addr | contains(\"$addr\"))"
	c0=0
	[[ ! -s $FLOWS_B ]] || c0=$(records "$FLOWS_B" "$cond" | jq length)
	a0=$(conns node-b "$peer" allowed)
	s0=$(served)
	out=$(sb_exec "$cg" "$ns" "$SM" connect --to "$dst" --count 2 \
		--timeout-ms 5000)
	sb_assert_json "$name: the reply arrives" \
		".results == {\"ok\": 2} and .tags == {\"srv$port\": 2}" "$out"
	sb_wait_for "$name: server logged both" 20 served_ge "$((s0 + 2))"
	sb_assert_json "$name: server saw the client's address and bytes" \
		"length == 2 and all(.[]; (.peer | contains(\"$addr\")) and
		  .bytes_received == 18)" \
		"$(tail -n 2 "$SLOG" | jq -sc .)"
	sb_assert_eq "$name: node-b counts $peer -> server allowed" \
		"$((a0 + 2))" "$(conns node-b "$peer" allowed)"
	sb_wait_for "$name: node-b's connect records" 20 \
		records_ge "$FLOWS_B" "$cond" "$((c0 + 2))"
	sb_assert_json "$name: node-b's records name the peer $peer" \
		"length == $((c0 + 2)) and (.[$c0:] | all(.[];
		  .src == \"$peer\" and .dst == \"server\" and
		  .verdict == \"allowed\"))" \
		"$(records "$FLOWS_B" "$cond")"
}

# keep_out NAME CG NS SRC DST PEER [SVC]: node-b drops the SYNs to SVC
# (default server); the client times out, and node-b records and counts a
# deny naming PEER.
keep_out() {
	local name=$1 cg=$2 ns=$3 src=$4 dst=$5 peer=$6 svc=${7:-server}
	local out d0 s0 cond n
	local port=${dst##*:} addr
	addr=${dst%:*}
	d0=$(conns node-b "$peer" denied "$svc")
	s0=$(served)
	out=$(sb_exec "$cg" "$ns" "$SM" connect --to "$dst" \
		--timeout-ms "$TMO")
	sb_assert_json "$name: connect() times out" \
		'.results == {"ETIMEDOUT": 1} and .tags == {}' "$out"
	sb_assert_ge "$name: after our timeout, not before (ms)" \
		"$(sb_json .first_errno_ms "$out")" "$((TMO - 100))"

	cond=".event == \"deny\" and .orig_dst == \"$addr:$port\" and
	      (.src_addr | startswith(\"$src\"))"
	sb_wait_for "$name: node-b's deny record" 20 \
		records_ge "$FLOWS_B" "$cond" 1
	sb_assert_json "$name: deny on the server side, peer named" \
		"all(.[]; .node == \"node-b\" and .side == \"server\" and
		  .src == \"$peer\" and .dst == \"$svc\" and
		  .verdict == \"denied\" and .reason == \"no_rule\" and
		  .proto == \"tcp\" and .comm == \"smtest\" and
		  .cgroup == \"$SB_CGROOT/node-b/$svc\")" \
		"$(records "$FLOWS_B" "$cond")"
	# Each SYN (the first and its retransmissions) is one deny.
	n=$(records "$FLOWS_B" "$cond" | jq length)
	sb_assert_le "$name: one deny per SYN sent" "$n" 4
	sb_assert_eq "$name: node-b counts what it logged" "$((d0 + n))" \
		"$(conns node-b "$peer" denied "$svc")"
	sb_assert_eq "$name: the server accepted nothing" "$s0" "$(served)"
}

# node-a lets the client out to both ports; node-b decides.
test_remote_service() {
	local a0
	a0=$(conns node-a client allowed)
	let_in "client v4 :8080" /node-a/client a "$A4" "$B4:8080" client
	keep_out "client v4 :8081" /node-a/client a "$A4" "$B4:8081" client
	let_in "client v6 :8080" /node-a/client a "[$A6]" "[$B6]:8080" client
	keep_out "client v6 :8081" /node-a/client a "[$A6]" "[$B6]:8081" \
		client
	sb_assert_eq "node-a allowed all 6 connects" "$((a0 + 6))" \
		"$(conns node-a client allowed)"
	sb_assert_eq "node-a denied none" 0 \
		"$(records "$FLOWS_A" '.event == "deny"' | jq length)"
}

# An address that is no endpoint of any service is world.
test_remote_world() {
	let_in "outside host :8081" "" c "$C4" "$B4:8081" world
	keep_out "outside host :8080" "" c "$C4" "$B4:8080" world
}

# On node-b itself: a managed client was checked at connect() and passes
# the way in as it is; a process outside the managed cgroup is world,
# whatever address it uses.
test_same_node() {
	local out d0
	let_in "neighbour :8081" /node-b/neighbour b "$B4" "$B4:8081" \
		neighbour
	d0=$(conns node-b neighbour denied)
	out=$(sb_exec /node-b/neighbour b "$SM" connect --to "$B4:8080")
	sb_assert_json "neighbour :8080: EPERM at connect()" \
		'.results == {"EPERM": 1}' "$out"
	sb_assert_eq "neighbour :8080: counted once" "$((d0 + 1))" \
		"$(conns node-b neighbour denied)"
	keep_out "unmanaged local process :8080" "" b "$B4" "$B4:8080" world
	let_in "unmanaged local process :8081" "" b "$B4" "$B4:8081" world
}

# node-b's legacy is in audit mode: a connection no rule allows comes in,
# recorded as audit on both nodes and counted once on each.
test_remote_audit() {
	local out cond
	out=$(sb_exec /node-a/client a "$SM" connect --to "$B4:9090" --count 2 \
		--timeout-ms 5000)
	sb_assert_json "client -> legacy (audit): the reply arrives" \
		'.results == {"ok": 2} and .tags == {"legacy": 2}' "$out"
	for node in node-a node-b; do
		sb_assert_eq "$node: 2 audits counted" 2 \
			"$(sb_metric "$node" sockmesh_connections_total \
				'src="client",dst="legacy",verdict="audit"')"
		sb_assert_eq "$node: nothing else counted for the pair" 2 \
			"$(sb_metric "$node" sockmesh_connections_total \
				'src="client",dst="legacy"')"
	done
	cond='.event == "audit" and .src == "client" and .dst == "legacy"'
	sb_wait_for "node-a: audit records" 20 records_ge "$FLOWS_A" "$cond" 2
	sb_wait_for "node-b: audit records" 20 records_ge "$FLOWS_B" "$cond" 2
	sb_assert_json "node-a: client side, the port dialled" \
		"length == 2 and all(.[]; .side == \"client\" and
		  .orig_dst == \"$B4:9090\" and .verdict == \"audit\" and
		  .reason == \"no_rule\")" "$(records "$FLOWS_A" "$cond")"
	sb_assert_json "node-b: server side, peer by address, the port" \
		"length == 2 and all(.[]; .side == \"server\" and
		  (.src_addr | startswith(\"$A4:\")) and
		  .orig_dst == \"$B4:9090\" and .verdict == \"audit\" and
		  .reason == \"no_rule\")" "$(records "$FLOWS_B" "$cond")"
	sb_wait_for "node-b: connect records" 20 records_ge "$FLOWS_B" \
		'.event == "connect" and .dst == "legacy"' 2
	sb_assert_json "node-b: its connect records say audit too" \
		'all(.[]; .src == "client" and .verdict == "audit")' \
		"$(records "$FLOWS_B" '.event == "connect" and .dst == "legacy"')"
}

# A VIP dialled on node-a, its backend on node-b: node-b checks the rule
# for the port dialled (80), not the backend's port (9091).
test_remote_vip() {
	local out cond
	out=$(sb_exec /node-a/client a "$SM" connect --to "$VIP" --count 2 \
		--timeout-ms 3000)
	sb_assert_json "client -> reviews VIP: the backend on node-b answers" \
		'.results == {"ok": 2} and .tags == {"reviews": 2} and
		 .peers == {"'"$VIP"'": 2}' "$out"
	sb_assert_eq "node-b: no denies for reviews" 0 \
		"$(sb_metric node-b sockmesh_connections_total \
			'dst="reviews",verdict="denied"')"
	cond='.event == "connect" and .side == "server" and .dst == "reviews"'
	sb_wait_for "node-b: connect records" 20 records_ge "$FLOWS_B" "$cond" 2
	sb_assert_json "node-b: the peer is client, allowed" \
		'all(.[]; .src == "client" and .verdict == "allowed")' \
		"$(records "$FLOWS_B" "$cond")"

	# The rule names the VIP's port: dialling the backend's port
	# directly is refused on node-a, and dropped on node-b for others.
	out=$(sb_exec /node-a/client a "$SM" connect --to "$B4:9091")
	sb_assert_json "client -> reviews backend port directly: EPERM" \
		'.results == {"EPERM": 1}' "$out"
	keep_out "outside host -> reviews backend :9091" "" c "$C4" "$B4:9091" \
		world reviews
}

test_remote_service
test_remote_vip
test_remote_world
test_same_node
test_remote_audit

# Both agents ran all along and lost nothing.
for node in node-a node-b; do
	sb_assert_eq "$node: no events lost" 0 \
		"$(sb_metric "$node" sockmesh_events_lost_total)"
done
