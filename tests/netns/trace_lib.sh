# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
# shellcheck shell=bash
#
# trace_lib.sh: two nodes, and a host without sockmesh, for the trace id
# tests (test_trace_*.sh). Source it after tests/lib/sandbox.sh and call
# trace_setup after sb_init.
#
#   node-a (ns a)  service "client"   198.18.60.1  fd00:60::1
#        |  veth (node-a <-> node-b)
#   node-b (ns b)  service "server"   198.18.60.2  fd00:60::2, port 8080
#   plain  (ns c)  no sockmesh: 198.18.61.2, fd00:61::2 (veth to a, whose
#                  end is 198.18.61.1, fd00:61::1; MTU 1400), and
#                  198.18.62.2 (veth to b, whose end is 198.18.62.1)
#
# Each node has its own agent (--cgroup $SB_CGROOT/node-a or node-b, its
# own bpffs), started by trace_agent. Processes of the plain host run in
# the sandbox's unmanaged cgroup. Connections go through smtrace
# (tests/helpers/smtrace.c), which reports both ends' trace ids and bytes.

[[ -n ${_TRACE_LOADED:-} ]] && return 0
_TRACE_LOADED=1

TR_A4=198.18.60.1 TR_A6=fd00:60::1
TR_B4=198.18.60.2 TR_B6=fd00:60::2
TR_CA4=198.18.61.2 TR_CA6=fd00:61::2	# the plain host, from node-a
TR_BC4=198.18.62.1	# node-b, from the plain host
TR_AC_MTU=1400
TR_PORT=8080
TR_SERVER=$TR_B4:$TR_PORT
TR_SERVER6=[$TR_B6]:$TR_PORT
# shellcheck disable=SC2034 # for the tests that source this
TR_HEX='^[0-9a-f]{32}$'
SMTRACE=$SB_BUILD/tests/smtrace

# Make the namespaces, links, cgroups and both nodes' policies. EXTRA is
# appended to each agent's command line by trace_agent.
trace_setup() {
	sb_need_cmd jq ip curl
	sb_need_build "$SMTRACE"
	sb_need_agent

	sb_netns a
	sb_netns b
	sb_netns c
	sb_veth a "$TR_A4/24,$TR_A6/64" b "$TR_B4/24,$TR_B6/64"
	sb_veth a 198.18.61.1/24,fd00:61::1/64 c "$TR_CA4/24,$TR_CA6/64"
	sb_veth b "$TR_BC4/24" c 198.18.62.2/24
	ip -n "$(sb_ns a)" link set sb-c mtu "$TR_AC_MTU"
	ip -n "$(sb_ns c)" link set sb-a mtu "$TR_AC_MTU"
	for cg in /node-a/client /node-b/server; do
		sb_cgroup "$cg" >/dev/null
	done

	# Both nodes know both services; each has its own cgroups. The plain
	# host is world, which may reach the server too.
	cat >"$SB_WORK/node-a.yaml" <<EOF
apiVersion: sockmesh/v1
node: node-a
services:
  client:
    cgroups: [$SB_CGROOT/node-a/client]
    endpoints: [$TR_A4:7000, "[$TR_A6]:7000"]
  server:
    endpoints: [$TR_SERVER, "$TR_SERVER6"]
rules:
  - {from: [client], to: [server], ports: [$TR_PORT]}
EOF
	cat >"$SB_WORK/node-b.yaml" <<EOF
apiVersion: sockmesh/v1
node: node-b
services:
  client:
    endpoints: [$TR_A4:7000, "[$TR_A6]:7000"]
  server:
    cgroups: [$SB_CGROOT/node-b/server]
    endpoints: [$TR_SERVER, "$TR_SERVER6"]
rules:
  - {from: [client], to: [server], ports: [$TR_PORT]}
  - {from: [world], to: [server], ports: [$TR_PORT]}
EOF
}

# Start the agent of NODE (node-a or node-b), extra agent args after it.
trace_agent() {
	local node=$1
	shift
	sb_agent_start "$node" "$SB_WORK/$node.yaml" \
		--cgroup "$SB_CGROOT/$node" --timeout 120 -- "$@"
}

# Start an smtrace server in CGROUP ("" for none) and NETNS on ADDR,
# logging to LOG; extra serve args after. Sets TR_SPID.
trace_serve() {
	local cg=$1 ns=$2 addr=$3 log=$4
	shift 4
	: >"$log"
	sb_run "$cg" "$ns" "$SMTRACE" serve --listen "$addr" --log "$log" \
		--timeout 280 "$@" >/dev/null
	TR_SPID=$SB_PID
	sb_wait_ready "$TR_SPID" 20
}

# Run smtrace SUBCOMMAND ARGS... in CGROUP and NETNS and wait for it.
# Sets TR_OUT (the JSON it printed last) and TR_PID.
trace_run() {
	local cg=$1 ns=$2
	shift 2
	sb_run_json 150 "$cg" "$ns" "$SMTRACE" "$@"
	TR_PID=$SB_PID
	TR_OUT=$SB_OUT
}

# The flow records of NODE (compact JSON lines) for which jq COND is true,
# from its flow log and the files rotated out of it, oldest first.
trace_flows() {
	local f i files=()
	f=$(sb_agent "$1" flows) || exit 1
	for ((i = 9; i >= 1; i--)); do
		[[ ! -e $f.$i ]] || files+=("$f.$i")
	done
	[[ ! -e $f ]] || files+=("$f")
	((${#files[@]})) || return 0
	# A file may be rotated away meanwhile: what is left is read.
	{ cat "${files[@]}" 2>/dev/null || true; } | jq -cR "fromjson? | select($2)"
}

# True when NODE has exactly N records matching COND (for sb_wait_for).
trace_flows_are() {
	[[ $(trace_flows "$1" "$2" | wc -l) -eq $3 ]]
}

# sockmesh_trace_options_total{result=RESULT} of NODE.
trace_opts() {
	sb_metric "$1" sockmesh_trace_options_total "result=\"$2\""
}

# Counter NAME (e.g. TcpRetransSegs, IpFragCreates, Ip6FragOKs,
# TcpExtTCPFastOpenActive) of netns NS, from /proc/net/{snmp,netstat,snmp6}.
trace_snmp() {
	local ns
	ns=$(sb_ns "$1") || exit 1
	ip netns exec "$ns" cat /proc/net/snmp /proc/net/netstat \
		/proc/net/snmp6 | awk -v k="$2" '
		NF == 2 && $1 == k { v = $2 }
		$1 ~ /:$/ {
			p = substr($1, 1, length($1) - 1)
			if (hdr[p] == "") { hdr[p] = $0; next }
			n = split(hdr[p], h)
			for (i = 2; i <= n; i++) if (p h[i] == k) v = $i
			hdr[p] = ""
		}
		END { print v + 0 }'
}
