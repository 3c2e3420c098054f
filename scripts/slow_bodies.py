"""Slow request bodies against a running server (used by scripts/slow-bodies.sh).

python3 scripts/slow_bodies.py memory PID HOST:PORT PATH [BYTES] [CONNECTIONS] [CONTENT_LENGTH]
    Opens CONNECTIONS connections (TCP_NODELAY) to HOST:PORT, sends on each a `POST PATH`
    head declaring CONTENT_LENGTH bytes, then BYTES body bytes in all, one byte per `send`
    in turn over the connections, and closes them without finishing the bodies. Prints one
    JSON line: the VmRSS of process PID (MB) before, at the peak while sending (sampled
    every 1000 bytes), once every byte is sent, and 2 s after the connections closed.

python3 scripts/slow_bodies.py trickle HOST:PORT PATH [INTERVAL] [GIVE_UP]
    Sends a `POST PATH` head declaring 1,000,000 bytes, then one body byte every INTERVAL
    seconds (default 1) until the server answers or GIVE_UP seconds (default 120) pass.
    Prints one JSON line: the answer's status line (or null) and when it came.
"""

import json
import select
import socket
import sys
import time


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def head(host, path, content_length):
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {content_length}\r\n\r\n"
    ).encode()


def connect(address):
    host, port = address.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s, host


def memory(pid, address, path, total=200_000, connections=4, content_length=1_000_000):
    socks = []
    for _ in range(connections):
        s, host = connect(address)
        s.sendall(head(host, path, content_length))
        socks.append(s)
    time.sleep(0.2)
    before = rss_mb(pid)
    peak = before
    started = time.monotonic()
    for i in range(total):
        socks[i % connections].send(b" ")
        if i % 1000 == 0:
            peak = max(peak, rss_mb(pid))
    seconds = time.monotonic() - started
    time.sleep(0.2)
    sent = rss_mb(pid)
    peak = max(peak, sent)
    for s in socks:
        s.close()
    time.sleep(2)
    after = rss_mb(pid)
    return {
        "path": path, "bytes": total, "connections": connections,
        "content_length": content_length, "seconds": round(seconds, 2),
        "rss_before_mb": round(before, 1), "rss_peak_mb": round(peak, 1),
        "rss_sent_mb": round(sent, 1), "rss_after_mb": round(after, 1),
        "growth_peak_mb": round(peak - before, 1), "growth_after_mb": round(after - before, 1),
    }


def trickle(address, path, interval=1.0, give_up=120.0):
    s, host = connect(address)
    s.sendall(head(host, path, 1_000_000))
    started = time.monotonic()
    sent = 0
    answer = b""
    while time.monotonic() - started < give_up:
        try:
            s.send(b" ")
            sent += 1
        except OSError:
            pass
        ready, _, _ = select.select([s], [], [], interval)
        if ready:
            try:
                chunk = s.recv(4096)
            except OSError:
                chunk = b""
            answer += chunk
            if not chunk or b"\r\n\r\n" in answer:
                break
    status = answer.split(b"\r\n", 1)[0].decode() if answer else None
    body = answer.split(b"\r\n\r\n", 1)[1].decode() if b"\r\n\r\n" in answer else None
    return {
        "path": path, "interval_s": interval, "bytes_sent": sent,
        "status": status, "body": body, "after_s": round(time.monotonic() - started, 1),
    }


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "memory":
        pid, address, path, *rest = args
        result = memory(int(pid), address, path, *map(int, rest))
    elif mode == "trickle":
        address, path, *rest = args
        result = trickle(address, path, *map(float, rest))
    else:
        sys.exit(__doc__)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
