"""Load benchmark: many concurrent SMTP sessions send to aliases; a sink MX on loopback receives.

    .venv/bin/python bench/load.py --messages 5000 --sessions 20 --size 4096

Starts, each in its own process and with a fresh data directory: a sink MX on 127.0.0.3, then
`mailcloak smtpd` and `mailcloak worker` (routing the mailbox domain to the sink with
MAILCLOAK_TRANSPORTS). Sends N messages of the given size from S concurrent SMTP sessions and
prints accepted/s, delivered/s, p50/p99 latency from 250 to arrival at the sink, and the peak RSS
of the Mailcloak processes. `--database-url` runs it against PostgreSQL instead of SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MAILCLOAK = str(Path(sys.executable).with_name("mailcloak"))
MAILBOX_DOMAIN = "mailbox.bench"
T = TypeVar("T")


def free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def make_message(index: int, size: int, alias: str) -> bytes:
    head = (
        f"From: Load Sender <sender{index % 50}@sender.bench>\r\n"
        f"To: <{alias}>\r\n"
        f"Subject: load test message {index}\r\n"
        f"Message-ID: <bench-{index}@sender.bench>\r\n"
        f"Date: Fri, 04 Dec 2026 12:00:00 +0000\r\n"
        f"X-Bench-Id: {index}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog; lorem ipsum dolor sit amet.\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


async def send_session(host: str, port: int, jobs: asyncio.Queue[tuple[int, bytes, str]],
                       accepted: dict[int, float], failures: list[str]) -> None:
    """One SMTP session that sends messages from the queue until it is empty (RSET-free reuse)."""
    reader, writer = await asyncio.open_connection(host, port)

    async def reply() -> str:
        lines = []
        while True:
            line = (await reader.readline()).decode()
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return "".join(lines)

    await reply()
    writer.write(b"EHLO load.bench\r\n")
    await reply()
    while True:
        try:
            index, data, alias = jobs.get_nowait()
        except asyncio.QueueEmpty:
            break
        writer.write(f"MAIL FROM:<sender{index % 50}@sender.bench>\r\n".encode())
        writer.write(f"RCPT TO:<{alias}>\r\nDATA\r\n".encode())
        answers = [await reply() for _ in range(3)]
        if not answers[2].startswith("354"):
            failures.append(f"{index}: {answers}")
            writer.write(b"RSET\r\n")
            await reply()
            continue
        writer.write(data + b".\r\n")
        final = await reply()
        if final.startswith("250"):
            accepted[index] = time.time()
        else:
            failures.append(f"{index}: {final.strip()}")
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()


async def drive(host: str, port: int, messages: int, sessions: int, size: int,
                aliases: list[str]) -> tuple[dict[int, float], list[str], float]:
    jobs: asyncio.Queue[tuple[int, bytes, str]] = asyncio.Queue()
    for index in range(messages):
        alias = aliases[index % len(aliases)]
        jobs.put_nowait((index, make_message(index, size, alias), alias))
    accepted: dict[int, float] = {}
    failures: list[str] = []
    started = time.time()
    await asyncio.gather(*(send_session(host, port, jobs, accepted, failures)
                           for _ in range(sessions)))
    return accepted, failures, started


def harness_loop_run(main: Coroutine[Any, Any, T]) -> T:
    """Run the sending client on uvloop where installed: the CPU it saves is the machine's."""
    from mailcloak.mail.eventloop import run

    return run(main, kind="uvloop")


def with_children(pid: int) -> list[int]:
    """A process and its children (smtpd's server processes)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [pid, *(int(p) for p in children.read_text().split())] if children.exists() else [pid]


def peak_rss_kib(pid: int) -> int:
    """VmHWM of a process and its children, in KiB."""
    total = 0
    for one in with_children(pid):
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children so far, in seconds."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for one in with_children(pid):
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (PostgreSQL included)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--aliases", type=int, default=20)
    parser.add_argument("--smtp-processes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--event-loop", choices=["uvloop", "asyncio"],
                        default=os.environ.get("MAILCLOAK_EVENT_LOOP", "uvloop"),
                        help="MAILCLOAK_EVENT_LOOP of the Mailcloak processes (the sink and the "
                             "client run on uvloop either way)")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    args = parser.parse_args()

    from tests.support.dns_server import DnsServer

    # A caching resolver next door answers every lookup (SPF, DKIM, DMARC) at once: NXDOMAIN.
    dns_server = DnsServer().start()
    data_dir = Path(tempfile.mkdtemp(prefix="mailcloak-bench-"))
    sink_port = free_port("127.0.0.3")
    smtp_port = free_port("127.0.0.1")
    results = data_dir / "sink.jsonl"
    env = dict(os.environ, MAILCLOAK_DATA_DIR=str(data_dir), MAILCLOAK_DOMAINS="alias.bench",
               MAILCLOAK_SMTP_LISTEN=f"127.0.0.1:{smtp_port}",
               MAILCLOAK_TRANSPORTS=f"{MAILBOX_DOMAIN}=[127.0.0.3]:{sink_port}",
               MAILCLOAK_SMTP_PROCESSES=str(args.smtp_processes), MAILCLOAK_LOG_LEVEL="warning",
               MAILCLOAK_DNS_SERVERS=dns_server.nameserver, MAILCLOAK_EVENT_LOOP=args.event_loop)
    if args.database_url:
        env["MAILCLOAK_DATABASE_URL"] = args.database_url
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sink = subprocess.Popen([sys.executable, str(HERE / "sink.py"), "127.0.0.3",
                                 str(sink_port), str(results)])
        procs.append(sink)
        subprocess.run([MAILCLOAK, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run([MAILCLOAK, "user", "add", f"owner@{MAILBOX_DOMAIN}"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        aliases = [
            subprocess.run([MAILCLOAK, "alias", "add", f"owner@{MAILBOX_DOMAIN}"], env=env,
                           check=True, capture_output=True, text=True).stdout.split()[-1]
            for _ in range(args.aliases)
        ]
        smtpd = subprocess.Popen([MAILCLOAK, "smtpd"], env=env)
        workers = [subprocess.Popen([MAILCLOAK, "worker"], env=env) for _ in range(args.workers)]
        procs += [smtpd, *workers]
        wait_for_port("127.0.0.1", smtp_port)
        wait_for_port("127.0.0.3", sink_port)

        busy_before = machine_busy_seconds()
        accepted, failures, started = harness_loop_run(
            drive("127.0.0.1", smtp_port, args.messages, args.sessions, args.size, aliases))
        accept_done = time.time()
        arrivals = wait_for_arrivals(results, set(accepted), started + args.timeout)
        delivered_done = max(arrivals.values(), default=accept_done)
        machine_busy = machine_busy_seconds() - busy_before
        rss = {"smtpd": peak_rss_kib(smtpd.pid), "workers": sum(peak_rss_kib(w.pid)
                                                                for w in workers)}
        # Where the machine's two cores went: which process to make cheaper next.
        cpu = {"smtpd": cpu_seconds(smtpd.pid),
               "workers": sum(cpu_seconds(w.pid) for w in workers),
               "sink": cpu_seconds(sink.pid), "client_and_dns": time.process_time(),
               "machine": machine_busy}
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    latencies = [arrivals[i] - accepted[i] for i in arrivals if i in accepted]
    lost = sorted(set(accepted) - set(arrivals))
    report = {
        "messages": args.messages, "sessions": args.sessions, "size": args.size,
        "accepted": len(accepted), "rejected": len(failures), "delivered": len(arrivals),
        "lost": len(lost),
        "accepted_per_s": round(len(accepted) / max(accept_done - started, 1e-9), 1),
        "delivered_per_s": round(len(arrivals) / max(delivered_done - started, 1e-9), 1),
        "latency_p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "latency_p99_ms": round(1000 * percentile(latencies, 0.99), 1) if latencies else None,
        "peak_rss_mib": {k: round(v / 1024, 1) for k, v in rss.items()},
        "cpu_ms_per_message": {k: round(1000 * v / max(len(arrivals), 1), 2)
                               for k, v in cpu.items()},
        "database": "postgresql" if env.get("MAILCLOAK_DATABASE_URL") else "sqlite",
        "event_loop": args.event_loop,
    }
    for key, value in report.items():
        print(f"{key:>16}: {value}")
    if failures:
        print("first failures:", *failures[:5], sep="\n  ")
    if args.json:
        print(json.dumps(report))
    shutil.rmtree(data_dir, ignore_errors=True)
    return 0 if not lost and not failures else 1


def wait_for_port(host: str, port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listening on {host}:{port}")


def wait_for_arrivals(results: Path, expected: set[int], deadline: float) -> dict[int, float]:
    arrivals: dict[int, float] = {}
    while time.time() < deadline:
        if results.exists():
            for line in results.read_text().splitlines(keepends=True):
                if line.endswith("\n"):
                    record = json.loads(line)
                    arrivals.setdefault(record["id"], record["t"])
        if expected <= set(arrivals):
            break
        time.sleep(0.5)
    return arrivals


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
