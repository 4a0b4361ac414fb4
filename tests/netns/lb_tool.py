#!/usr/bin/env python3
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
"""lb_tool: socket uses the load-balancing tests need and smtest does not do.

  lb_tool.py serve --listen ADDR:PORT --tag TAG
      TCP server that keeps each connection open and answers every line
      with "TAG <conn>" (conn: its connection number, from 1), so a client
      can tell the same connection from a new one.
  lb_tool.py hold --to ADDR:PORT [--go DIR --rounds R | --read-wait S]
                  [--family F]
      one long-lived connection: exchange a line now, then once for each
      file DIR/go.1 .. DIR/go.R as it appears. A failed exchange is
      reported with its errno, then the client reconnects and exchanges
      again, as a pooled client would. A failed connect() is reported as
      step "connect". With --read-wait S it instead blocks in recv() for
      up to S seconds after the first exchange and reports what ended it.
  lb_tool.py redial --to ADDR:PORT [--attempts N] [--family F]
      new TCP sockets, one after another, until one's connect() fails;
      then that same socket calls connect() again until it succeeds, and
      exchanges a line: the tag that answered and getpeername(). At most
      N of each. (With a timeout set, the first connect() after the
      failure says ECONNABORTED: the kernel's way of resetting the
      socket once its error was read; the next one dials.)
  lb_tool.py udp --to ADDR:PORT [--family F] [--connected] [--recvmsg]
                 [--sockets M] [--count N]
      M UDP sockets, each sending N datagrams to ADDR and reading each
      reply: which server answered (first word of the reply) and which
      source recvfrom()/recvmsg() gave, per socket.
  lb_tool.py udp-hold --to ADDR:PORT --go DIR --rounds R [--family F]
      one unconnected UDP socket for its whole life: a query now, then
      one for each file DIR/go.1 .. DIR/go.R as it appears.
  lb_tool.py udp-pair --vip ADDR:PORT --direct ADDR:PORT [--family F]
      two sockets open at once: one sends to the VIP, the other to a
      backend directly; the sources each of them sees.
  lb_tool.py callers --to ADDR:PORT --netns NAME --cgroups FILE --count K
      join netns NAME, then for each cgroup directory in FILE move into it
      and make K TCP connections (a caller service per cgroup).
  lb_tool.py connects --to ADDR:PORT [--count N | --until FILE]
                      [--ready-after M] [--times] [--timeout-ms MS]
                      [--stop-after-errors E]
      TCP connections one after another: N of them, or until FILE
      exists, or until E have failed; "ready" after the first M. Reports results, tags and the
      sequence as runs ([tag or errno, count], ...); --times adds each
      connection's CLOCK_MONOTONIC start time and result. --timeout-ms
      bounds connect() only.

Families: 4 (AF_INET), 6 (AF_INET6), mapped (AF_INET6 socket, IPv4-mapped
address), dual4 (AF_INET6 dual-stack socket given an AF_INET address,
which the kernel passes to its IPv4 path). The last line of output is
JSON. Every blocking call is bounded by a timeout.
"""
import argparse
import ctypes
import errno
import json
import os
import select
import socket
import struct
import sys
import threading
import time

TIMEOUT_S = 20.0
GO_WAIT_S = 300.0

libc = ctypes.CDLL(None, use_errno=True)


def ename(e):
    return errno.errorcode.get(e, "E%d" % e)


def err_of(ex):
    if isinstance(ex, socket.timeout):
        return "ETIMEDOUT"
    if isinstance(ex, EOFError):
        return "EOF"
    if isinstance(ex, OSError) and ex.errno:
        return ename(ex.errno)
    return type(ex).__name__


def split_addr(s):
    """"1.2.3.4:80" or "[fd00::1]:80" -> (host, port)."""
    if s.startswith("["):
        host, _, port = s[1:].partition("]:")
    else:
        host, _, port = s.rpartition(":")
    return host, int(port)


def fmt(sa):
    """A socket address as smtest prints it."""
    if sa is None:
        return ""
    host, port = sa[0], sa[1]
    if ":" in host:
        return "[%s]:%d" % (host, port)
    return "%s:%d" % (host, port)


def target(addr, family):
    """(socket family, address for it) for FAMILY."""
    host, port = split_addr(addr)
    if family == "4":
        return socket.AF_INET, (host, port)
    if family == "6":
        return socket.AF_INET6, (host, port, 0, 0)
    if family == "mapped":
        return socket.AF_INET6, ("::ffff:" + host, port, 0, 0)
    if family == "dual4":
        return socket.AF_INET6, (host, port)
    raise SystemExit("bad family " + family)


def sockaddr_in(addr):
    """A struct sockaddr_in: family in host order, then port and address."""
    host, port = addr
    return (struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) +
            socket.inet_aton(host) + bytes(8))


def raw_call(fn, *args):
    ret = fn(*args)
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return ret


def new_sock(fam, kind):
    """A socket with a timeout; an IPv6 one is dual-stack."""
    s = socket.socket(fam, kind)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.settimeout(TIMEOUT_S)
    return s


def do_connect(s, addr, family):
    """connect(); dual4 hands the kernel a struct sockaddr_in."""
    if family != "dual4":
        s.connect(addr)
        return
    sa = sockaddr_in(addr)
    s.setblocking(True)
    raw_call(libc.connect, s.fileno(), sa, len(sa))
    s.settimeout(TIMEOUT_S)


def do_sendto(s, data, addr, family):
    if family != "dual4":
        s.sendto(data, addr)
        return
    sa = sockaddr_in(addr)
    raw_call(libc.sendto, s.fileno(), data, len(data), 0, sa, len(sa))


def out(obj):
    print(json.dumps(obj, sort_keys=True), flush=True)


def tally(d, k):
    d[k] = d.get(k, 0) + 1


# --- serve ---

def serve(a):
    host, port = split_addr(a.listen)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(128)
    n = 0

    def one(c, n):
        c.settimeout(a.timeout)
        buf = b""
        try:
            while True:
                d = c.recv(4096)
                if not d:
                    break
                buf += d
                while b"\n" in buf:
                    _, buf = buf.split(b"\n", 1)
                    c.sendall(("%s %d\n" % (a.tag, n)).encode())
        except OSError:
            pass
        c.close()

    print("ready", flush=True)
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([ls], [], [], 0.5)
        if not r:
            continue
        c, _ = ls.accept()
        n += 1
        threading.Thread(target=one, args=(c, n), daemon=True).start()


# --- hold ---

def exchange(s):
    """Send a line, read the answer line: (tag, conn)."""
    s.sendall(b"ping\n")
    buf = b""
    while b"\n" not in buf:
        d = s.recv(4096)
        if not d:
            raise EOFError()
        buf += d
    words = buf.split(b"\n", 1)[0].decode().split() or [""]
    return words[0], int(words[1]) if len(words) > 1 else 0


def hold_open(a):
    fam, addr = target(a.to, a.family)
    s = new_sock(fam, socket.SOCK_STREAM)
    do_connect(s, addr, a.family)
    return s


def hold_report(s, rnd, step):
    """Exchange a line on s and report it as round RND, step STEP."""
    r = {"round": rnd, "step": step}
    try:
        r["tag"], r["conn"] = exchange(s)
        r["peer"] = fmt(s.getpeername())
        r["result"] = "ok"
    except Exception as ex:  # every failure is a result to report
        r["result"] = err_of(ex)
    out(r)
    return r["result"] == "ok"


def wait_go(d, rnd):
    """Wait (bounded) for the file d/go.RND; False on timeout."""
    go = os.path.join(d, "go.%d" % rnd)
    deadline = time.monotonic() + GO_WAIT_S
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def hold(a):
    try:
        s = hold_open(a)
    except OSError as ex:
        out({"round": 0, "step": "connect", "result": err_of(ex)})
        return 0
    hold_report(s, 0, "first")
    if a.read_wait:
        # Sit in recv(), as a client waiting for a server stream does.
        s.settimeout(a.read_wait)
        try:
            d = s.recv(4096)
            res = "data" if d else "EOF"
        except Exception as ex:  # the error is the result
            res = err_of(ex)
        out({"round": 1, "step": "read", "result": res})
        s.close()
        return 0
    for rnd in range(1, a.rounds + 1):
        if not wait_go(a.go, rnd):
            out({"round": rnd, "result": "no-go"})
            return 1
        if hold_report(s, rnd, "held"):
            continue
        # A pooled client drops the broken connection and dials again.
        s.close()
        try:
            s = hold_open(a)
        except OSError as ex:
            out({"round": rnd, "step": "reconnect", "result": err_of(ex)})
            return 1
        hold_report(s, rnd, "reconnect")
    s.close()
    return 0


# --- redial ---

def redial(a):
    fam, addr = target(a.to, a.family)
    res = {"tries": 0, "redials": 0}
    s = None
    while s is None and res["tries"] < a.attempts:
        res["tries"] += 1
        s = new_sock(fam, socket.SOCK_STREAM)
        try:
            do_connect(s, addr, a.family)
        except OSError as ex:
            res["first"] = err_of(ex)
            break
        s.close()
        s = None
    while s is not None and res["redials"] < a.attempts:
        res["redials"] += 1
        try:
            do_connect(s, addr, a.family)
        except OSError as ex:
            res["last"] = err_of(ex)
            continue
        try:
            res["tag"], _ = exchange(s)
            res["peer"] = fmt(s.getpeername())
        except Exception as ex:  # the failure is the result
            res["last"] = err_of(ex)
        break
    if s is not None:
        s.close()
    out(res)
    return 0


# --- udp ---

def udp_recv(s, use_recvmsg):
    if use_recvmsg:
        data, _, _, src = s.recvmsg(4096)
    else:
        data, src = s.recvfrom(4096)
    return data.decode().split()[0], fmt(src)


def udp(a):
    fam, addr = target(a.to, a.family)
    res = {"sockets": [], "tags": {}, "sources": {}, "results": {}}
    for _ in range(a.sockets):
        s = new_sock(fam, socket.SOCK_DGRAM)
        one = {"tags": {}, "sources": {}, "peer": ""}
        try:
            if a.connected:
                do_connect(s, addr, a.family)
                one["peer"] = fmt(s.getpeername())
            for _ in range(a.count):
                if a.connected:
                    s.send(b"query\n")
                else:
                    do_sendto(s, b"query\n", addr, a.family)
                tag, src = udp_recv(s, a.recvmsg)
                tally(one["tags"], tag)
                tally(one["sources"], src)
                tally(res["tags"], tag)
                tally(res["sources"], src)
                tally(res["results"], "ok")
        except Exception as ex:  # reported, and counted per socket
            tally(res["results"], err_of(ex))
        s.close()
        res["sockets"].append(one)
    out(res)
    return 0


def udp_hold(a):
    """One unconnected socket for the whole test, a query per round."""
    fam, addr = target(a.to, a.family)
    s = new_sock(fam, socket.SOCK_DGRAM)
    for rnd in range(0, a.rounds + 1):
        if rnd and not wait_go(a.go, rnd):
            out({"round": rnd, "result": "no-go"})
            return 1
        r = {"round": rnd, "step": "query"}
        try:
            do_sendto(s, b"query\n", addr, a.family)
            r["tag"], r["source"] = udp_recv(s, False)
            r["result"] = "ok"
        except Exception as ex:  # the error is the result
            r["result"] = err_of(ex)
        out(r)
    return 0


def udp_pair(a):
    vfam, vaddr = target(a.vip, a.family)
    dfam, daddr = target(a.direct, a.family)
    v = new_sock(vfam, socket.SOCK_DGRAM)
    d = new_sock(dfam, socket.SOCK_DGRAM)
    res = {}
    for i in range(3):
        do_sendto(v, b"query\n", vaddr, a.family)
        res["vip_tag"], res["vip_source_%d" % i] = udp_recv(v, False)
        do_sendto(d, b"query\n", daddr, a.family)
        res["direct_tag"], res["direct_source_%d" % i] = udp_recv(d, True)
    out(res)
    return 0


# --- callers ---

def setns(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        raw_call(libc.setns, fd, 0x40000000)  # CLONE_NEWNET
    finally:
        os.close(fd)


def tcp_once(fam, addr, connect_timeout=TIMEOUT_S):
    """One connection: connect (bounded by connect_timeout), a line out,
    the reply in; (result, first word of the reply)."""
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(connect_timeout)
    try:
        s.connect(addr)
        s.settimeout(TIMEOUT_S)
        s.sendall(b"hello\n")
        s.shutdown(socket.SHUT_WR)
        buf = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            buf += d
        words = buf.decode().split()
        return "ok", words[0] if words else ""
    except Exception as ex:  # the result of this connection
        return err_of(ex), ""
    finally:
        s.close()


def callers(a):
    fam, addr = target(a.to, "4" if ":" not in split_addr(a.to)[0] else "6")
    setns(os.path.join("/run/netns", a.netns))
    res = {"callers": {}, "results": {}}
    with open(a.cgroups) as f:
        cgs = [ln.strip() for ln in f if ln.strip()]
    for cg in cgs:
        with open(os.path.join(cg, "cgroup.procs"), "w") as p:
            p.write(str(os.getpid()))
        tags = {}
        for _ in range(a.count):
            r, tag = tcp_once(fam, addr)
            tally(res["results"], r)
            if tag:
                tally(tags, tag)
        res["callers"][os.path.basename(cg)] = tags
    out(res)
    return 0


# --- connects ---

def connects(a):
    fam, addr = target(a.to, "4")
    res = {"results": {}, "tags": {}, "runs": []}
    times = []
    deadline = time.monotonic() + GO_WAIT_S
    i = fails = 0
    while True:
        if a.until:
            if os.path.exists(a.until) or time.monotonic() > deadline:
                break
        elif i >= a.count:
            break
        if a.stop_after_errors and fails >= a.stop_after_errors:
            break
        t = time.monotonic()
        r, tag = tcp_once(fam, addr, a.timeout_ms / 1000.0)
        what = tag if r == "ok" else r
        tally(res["results"], r)
        fails += r != "ok"
        if tag:
            tally(res["tags"], tag)
        if res["runs"] and res["runs"][-1][0] == what:
            res["runs"][-1][1] += 1
        else:
            res["runs"].append([what, 1])
        if a.times:
            times.append({"t": t, "result": r, "tag": tag})
        i += 1
        if i == a.ready_after:
            print("ready", flush=True)
    if a.times:
        res["connects"] = times
    res["now"] = time.monotonic()
    out(res)
    return 0


def main():
    p = argparse.ArgumentParser(prog="lb_tool.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("serve")
    c.add_argument("--listen", required=True)
    c.add_argument("--tag", required=True)
    c.add_argument("--timeout", type=float, default=600)
    c = sub.add_parser("hold")
    c.add_argument("--to", required=True)
    c.add_argument("--family", default="4")
    c.add_argument("--go", default=".")
    c.add_argument("--rounds", type=int, default=0)
    c.add_argument("--read-wait", type=float, default=0)
    c = sub.add_parser("redial")
    c.add_argument("--to", required=True)
    c.add_argument("--family", default="4")
    c.add_argument("--attempts", type=int, default=64)
    c = sub.add_parser("udp")
    c.add_argument("--to", required=True)
    c.add_argument("--family", default="4")
    c.add_argument("--connected", action="store_true")
    c.add_argument("--recvmsg", action="store_true")
    c.add_argument("--sockets", type=int, default=1)
    c.add_argument("--count", type=int, default=1)
    c = sub.add_parser("udp-hold")
    c.add_argument("--to", required=True)
    c.add_argument("--family", default="4")
    c.add_argument("--go", default=".")
    c.add_argument("--rounds", type=int, default=0)
    c = sub.add_parser("udp-pair")
    c.add_argument("--vip", required=True)
    c.add_argument("--direct", required=True)
    c.add_argument("--family", default="4")
    c = sub.add_parser("callers")
    c.add_argument("--to", required=True)
    c.add_argument("--netns", required=True)
    c.add_argument("--cgroups", required=True)
    c.add_argument("--count", type=int, default=1)
    c = sub.add_parser("connects")
    c.add_argument("--to", required=True)
    c.add_argument("--count", type=int, default=1)
    c.add_argument("--until", default="")
    c.add_argument("--ready-after", type=int, default=0)
    c.add_argument("--times", action="store_true")
    c.add_argument("--stop-after-errors", type=int, default=0)
    c.add_argument("--timeout-ms", type=int, default=int(TIMEOUT_S * 1000))
    a = p.parse_args()
    fn = {"serve": serve, "hold": hold, "udp": udp, "udp-hold": udp_hold, "redial": redial,
          "udp-pair": udp_pair,
          "callers": callers, "connects": connects}[a.cmd]
    return fn(a)


if __name__ == "__main__":
    sys.exit(main())
