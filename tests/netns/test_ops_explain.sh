#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# `sockmesh explain PID FD` says what the datapath decided for one socket
# of a running process, and claims no decision it did not make: a socket
# whose connect() was refused (EPERM) keeps no verdict, so explain says
# "none" rather than the "allowed" an empty record would read as, while a
# socket whose connect() was allowed shows its verdict, reason and rule.
set -euo pipefail
# shellcheck source=tests/netns/ops_lib.sh
source "$(dirname "$0")/ops_lib.sh"

sb_need_root
sb_init
sb_need_cmd python3
ops_node 0
sb_need_build "$SB_BUILD/sockmesh"
ops_agent

# One process in the client cgroup keeps a socket per target open, prints
# {"pid", "socks": [{"to", "fd", "result"}]} and "ready", and waits for
# the file $SB_WORK/go (at most 120 s).
cat >"$SB_WORK/keep.py" <<'PY'
import errno, json, os, socket, sys, time
socks, keep = [], []
for to in sys.argv[2:]:
    host, port = to.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect((host, int(port)))
        res = "ok"
    except OSError as ex:
        res = errno.errorcode.get(ex.errno, str(ex.errno))
    keep.append(s)
    socks.append({"to": to, "fd": s.fileno(), "result": res})
print(json.dumps({"pid": os.getpid(), "socks": socks}))
print("ready", flush=True)
end = time.monotonic() + 120
while not os.path.exists(sys.argv[1]) and time.monotonic() < end:
    time.sleep(0.05)
PY
sb_run /client node python3 "$SB_WORK/keep.py" "$SB_WORK/go" \
	"$OPS_LOCKED" "$OPS_STABLE" >/dev/null
keeper=$SB_PID
sb_wait_ready "$keeper" 20
info=$(head -n 1 "$(sb_out "$keeper")")
pid=$(sb_json '.pid' "$info")
sb_assert_eq "the refused connect" EPERM "$(sb_json '.socks[0].result' "$info")"
sb_assert_eq "the allowed connect" ok "$(sb_json '.socks[1].result' "$info")"

explain() {
	"$SB_BUILD/sockmesh" --bpffs "$SB_BPFFS" "$@" explain "$pid" \
		"$(sb_json ".socks[$FD_IDX].fd" "$info")"
}

# --- refused: no verdict claimed ---

FD_IDX=0
out=$(explain --json)
sb_assert_json "refused: verdict none, no reason, no rule" \
	'.verdict == "none" and .reason == null and .rule == null' "$out"
sb_assert_json "refused: still the client's socket" \
	'.service == "client" and .role == "client" and
	 (.flags | index("managed") | not)' "$out"
sb_assert_json "refused: a note says why" \
	'.note | test("flow log")' "$out"
text=$(explain)
sb_assert_match "refused, text: verdict none" $'(^|\n)verdict +none(\n|$)' "$text"
sb_assert_match "refused, text: reason -" $'(^|\n)reason +-(\n|$)' "$text"
if grep -Eq "^(verdict|reason|rule) +(allowed|rule)" <<<"$text"; then
	sb_fail "refused, text: claims a decision: $text"
fi

# --- allowed: the decision as the datapath made it ---

FD_IDX=1
out=$(explain --json)
sb_assert_json "allowed: verdict, reason and rule" \
	'.verdict == "allowed" and .reason == "rule" and (.rule | type) == "number"
	 and .dst_service == "stable" and (.flags | index("managed"))' "$out"
sb_assert_json "allowed: no note" '.note == null' "$out"

touch "$SB_WORK/go"
sb_wait "$keeper" 20
