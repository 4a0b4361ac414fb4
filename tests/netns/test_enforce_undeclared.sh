#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# A port a service listens on but does not list among its endpoints is
# still the service's: a client on the same node that dials it, taking it
# for no service (egress), is checked on the way in by the service it is,
# and needs a rule like any other caller.
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"

sb_need_root
sb_init

API=198.18.5.2
sb_netns node "$API/32" 198.18.5.3/32 198.18.5.4/32
for cg in api db web; do
	sb_cgroup "/$cg" >/dev/null
done
policy=$SB_WORK/policy.yaml
cat >"$policy" <<EOF
apiVersion: sockmesh/v1
services:
  api: {cgroups: [$SB_CGROOT/api], endpoints: ["$API:9000"]}
  db: {cgroups: [$SB_CGROOT/db], endpoints: ["198.18.5.3:5432"]}
  web: {cgroups: [$SB_CGROOT/web], endpoints: ["198.18.5.4:80"]}
rules:
  - {from: web, to: api, ports: [9000, 9001]}
EOF
for port in 9000 9001; do
	pid=$(sb_run /api node "$SB_SMTEST" serve --listen "$API:$port" \
		--tag "api$port" --log "$SB_WORK/api$port.jsonl")
	sb_wait_ready "$pid"
done
sb_agent_start sockmesh "$policy"
flows=$(sb_agent sockmesh flows)

connect() {	# CGROUP PORT
	sb_exec "/$1" node "$SB_SMTEST" connect --to "$API:$2" --count 1 \
		--timeout-ms 500
}

# The declared port: db has no rule, so connect() says EPERM at once.
sb_assert_json "db -> api:9000 (declared, no rule): EPERM" \
	'.results == {"EPERM": 1}' "$(connect db 9000)"

# The undeclared port: the client's side takes it for egress (allowed),
# the way in knows better and drops the SYN.
sb_assert_json "db -> api:9001 (undeclared, no rule): no connection" \
	'.results == {"ETIMEDOUT": 1}' "$(connect db 9001)"
sb_assert_eq "db -> api:9001: the server saw nothing" 0 \
	"$(cat "$SB_WORK/api9001.jsonl" 2>/dev/null | wc -l)"
sb_wait_for "the server side's deny record" 10 bash -c \
	"jq -e -s 'map(select(.event == \"deny\" and .side == \"server\" and
	 .src == \"db\" and .dst == \"api\" and
	 .orig_dst == \"$API:9001\")) | length >= 1' '$flows' >/dev/null"
sb_assert_ge "counted as denied db -> api" \
	"$(sb_metric sockmesh sockmesh_connections_total \
		'src="db",dst="api",verdict="denied"')" 1

# With a rule naming the port, the same connection goes through.
sb_assert_json "web -> api:9001 (undeclared, a rule): ok" \
	'.results == {"ok": 1} and .tags == {"api9001": 1}' \
	"$(connect web 9001)"
sb_assert_json "web -> api:9000 (declared, a rule): ok" \
	'.results == {"ok": 1} and .tags == {"api9000": 1}' \
	"$(connect web 9000)"
