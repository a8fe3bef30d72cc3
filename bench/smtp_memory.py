"""Memory per SMTP connection: thousands of hostile sessions against `mailcloak smtpd`.

    .venv/bin/python bench/smtp_memory.py                    # 2,000 connections, 8 at a time
    .venv/bin/python bench/smtp_memory.py --connections 10000 --json

Starts `mailcloak smtpd` (one process) on a fresh SQLite data directory, with a loopback DNS
server answering NXDOMAIN, then opens the given number of connections, each a session picked
at random: a whole message, everything in one write, a line over 64 KiB, NUL and 8-bit junk, a
thousand recipients, a client that vanishes mid-DATA, one that resets the connection. The RSS of
the server is read after a warm-up (the first 10% of the connections) and at the end; the
difference per connection must stay under --max-growth-per-connection bytes (exit status 1
otherwise), and the server must still answer a plain session at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MAILCLOAK = str(Path(sys.executable).with_name("mailcloak"))
MAILBOX = "owner@mailbox.bench"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-growth-per-connection", type=int, default=2048,
                        help="bytes of RSS growth per connection allowed after the warm-up")
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    args = parser.parse_args()

    from tests.support.dns_server import DnsServer
    from tests.support.processes import free_port, wait_for_port

    dns_server = DnsServer().start()
    data_dir = Path(tempfile.mkdtemp(prefix="mailcloak-memory-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILCLOAK_")}
    env |= {"MAILCLOAK_DATA_DIR": str(data_dir), "MAILCLOAK_DOMAINS": "alias.bench",
            "MAILCLOAK_SMTP_LISTEN": f"127.0.0.1:{port}", "MAILCLOAK_LOG_LEVEL": "error",
            "MAILCLOAK_DNS_SERVERS": dns_server.nameserver,
            "MAILCLOAK_SPAM_QUARANTINE_SCORE": "1000", "MAILCLOAK_SPAM_REJECT_SCORE": "2000"}
    subprocess.run([MAILCLOAK, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([MAILCLOAK, "user", "add", MAILBOX], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    alias = subprocess.run([MAILCLOAK, "alias", "add", MAILBOX], env=env, check=True,
                           capture_output=True, text=True).stdout.split()[-1]
    server = subprocess.Popen([MAILCLOAK, "smtpd"], env=env)
    try:
        wait_for_port("127.0.0.1", port)
        summary = measure(port, alias, server.pid, args)
    finally:
        server.terminate()
        server.wait(30)
        dns_server.stop()
    limit = args.max_growth_per_connection
    ok = summary["still_serving"] and summary["growth_per_connection"] <= limit
    print(f"{summary['connections']} connections in {summary['seconds']} s: server RSS "
          f"{summary['rss_start_mb']} MB at start, {summary['rss_warm_mb']} MB after the "
          f"warm-up, {summary['rss_end_mb']} MB at the end; "
          f"{summary['growth_per_connection']} bytes per connection after the warm-up "
          f"(limit {limit}); still serving: {summary['still_serving']}")
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    return 0 if ok else 1


def measure(port: int, alias: str, pid: int, args: argparse.Namespace) -> dict[str, object]:
    warm_up = max(1, args.connections // 10)
    start_rss = rss(pid)
    started = time.monotonic()
    rng = random.Random(2000)
    plans = [rng.choice(SESSIONS) for _ in range(args.connections)]
    with ThreadPoolExecutor(args.concurrency) as pool:
        list(pool.map(lambda plan: plan(port, alias), plans[:warm_up]))
        warm_rss = rss(pid)
        list(pool.map(lambda plan: plan(port, alias), plans[warm_up:]))
    end_rss = rss(pid)
    growth = max(0, end_rss - warm_rss) // max(1, args.connections - warm_up)
    return {"connections": args.connections, "seconds": round(time.monotonic() - started, 1),
            "rss_start_mb": round(start_rss / 2**20, 1), "rss_warm_mb": round(warm_rss / 2**20, 1),
            "rss_end_mb": round(end_rss / 2**20, 1), "growth_per_connection": growth,
            "still_serving": plain_session(port, alias)}


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


# --- sessions ---------------------------------------------------------------------------------


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.recv(1000)  # the greeting
    return sock


def drain(sock: socket.socket) -> None:
    """Half-close and read until the server closes, so every reply has been produced."""
    try:
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    except OSError:
        pass
    finally:
        sock.close()


def envelope(alias: str) -> bytes:
    return (b"EHLO client.bench\r\nMAIL FROM:<a@sender.bench>\r\n"
            + f"RCPT TO:<{alias}>\r\nDATA\r\n".encode())


def whole_message(port: int, alias: str) -> None:
    sock = connect(port)
    sock.sendall(envelope(alias) + b"From: a@sender.bench\r\nSubject: m\r\n\r\nbody\r\n.\r\n"
                 + b"QUIT\r\n")
    drain(sock)


def long_line(port: int, alias: str) -> None:
    sock = connect(port)
    sock.sendall(b"EHLO client.bench\r\nMAIL FROM:<" + b"a" * 70_000 + b">\r\nQUIT\r\n")
    drain(sock)


def junk(port: int, alias: str) -> None:
    sock = connect(port)
    sock.sendall(bytes(random.getrandbits(8) for _ in range(2000)) + b"\r\nQUIT\r\n")
    drain(sock)


def recipient_flood(port: int, alias: str) -> None:
    sock = connect(port)
    sock.sendall(b"EHLO client.bench\r\nMAIL FROM:<a@sender.bench>\r\n"
                 + f"RCPT TO:<{alias}>\r\n".encode() * 1000 + b"QUIT\r\n")
    drain(sock)


def vanish_mid_data(port: int, alias: str) -> None:
    sock = connect(port)
    sock.sendall(envelope(alias) + b"From: a@sender.bench\r\n\r\n" + b"x" * 50_000)
    sock.close()


def reset_mid_data(port: int, alias: str) -> None:
    sock = connect(port)
    sock.sendall(envelope(alias) + b"From: a@sender.bench\r\n\r\npartial")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


SESSIONS = [whole_message, long_line, junk, recipient_flood, vanish_mid_data, reset_mid_data]


def plain_session(port: int, alias: str) -> bool:
    sock = connect(port)
    sock.sendall(envelope(alias) + b"From: a@sender.bench\r\n\r\nlast\r\n.\r\nQUIT\r\n")
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    finally:
        sock.close()
    return b"250 2.0.0 Ok: queued as" in received


if __name__ == "__main__":
    sys.exit(main())
