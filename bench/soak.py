"""Soak: thousands of messages while `mailcloak smtpd` and `mailcloak worker` are killed (-9)
and restarted, round after round; then count at the sink what was lost and what came twice.

    .venv/bin/python bench/soak.py --messages 5000 --rounds 5
    make soak                      # the same against a throwaway PostgreSQL

Runs real processes in a fresh data directory: a sink MX on 127.0.0.3 (bench/sink.py, which
is never killed), `mailcloak smtpd` with several SMTP processes and `mailcloak worker`, all on
loopback, with DNS from a loopback server. Sender threads send every message until it gets a
250, reconnecting and sending again after a refusal or a lost connection, as an SMTP client
does. Each round waits for its share of the messages, then a random moment more, and kills
every Mailcloak process at once. At the end it waits for the sink to have every accepted
message, and prints: messages sent (SMTP transactions tried), accepted, delivered, lost (a 250
that never arrived), duplicated (arrivals beyond the first: deliveries in flight at a kill,
or messages stored whose 250 the client never saw), and jobs still queued. Exit status 1 when
anything was lost or is stuck.

With MAILCLOAK_DATABASE_URL pointing at PostgreSQL it uses a fresh database there; otherwise
SQLite in the data directory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import smtplib
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MAILBOX_DOMAIN = "mailbox.test"  # the test deployment routes it to the sink
SERVICES = ("smtpd", "worker")


def message(index: int, alias: str) -> bytes:
    return (f"From: Soak Sender <sender{index % 50}@sender.test>\r\nTo: <{alias}>\r\n"
            f"Subject: soak message {index}\r\nMessage-ID: <soak-{index}@sender.test>\r\n"
            f"Date: Fri, 04 Dec 2026 12:00:00 +0000\r\nX-Bench-Id: {index}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"Message {index} of the soak run. The quick brown fox jumps over the lazy dog.\r\n"
            ).encode()


@dataclass
class Senders:
    """Threads that send every message until it is accepted (250)."""

    host: str
    port: int
    aliases: list[str]
    todo: list[int]
    accepted: set[int] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)  # sent, refused, disconnected
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, threads: int) -> list[threading.Thread]:
        started = [threading.Thread(target=self._send_all, daemon=True) for _ in range(threads)]
        for thread in started:
            thread.start()
        return started

    def _next(self) -> int | None:
        with self.lock:
            return self.todo.pop() if self.todo else None

    def _count(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    def _send_all(self) -> None:
        client: smtplib.SMTP | None = None
        index = self._next()
        while index is not None:
            alias = self.aliases[index % len(self.aliases)]
            self._count("sent")
            try:
                if client is None:
                    client = smtplib.SMTP(self.host, self.port, timeout=30)
                client.sendmail(f"sender{index % 50}@sender.test", [alias],
                                message(index, alias))
            except smtplib.SMTPResponseException:  # a 4xx (storage down, shutting down...)
                self._count("refused")
                _drop(client)
                client = None
                time.sleep(0.05)
                continue
            except (OSError, smtplib.SMTPException):  # the server went away mid-session
                self._count("disconnected")
                _drop(client)
                client = None
                time.sleep(0.05)
                continue
            with self.lock:
                self.accepted.add(index)
            index = self._next()
        _drop(client)


def _drop(client: smtplib.SMTP | None) -> None:
    if client is not None:
        with contextlib.suppress(OSError, smtplib.SMTPException):
            client.close()


def arrivals(results: Path) -> Counter[int]:
    """How many times the sink received each message."""
    if not results.exists():
        return Counter()
    lines = results.read_text().splitlines(keepends=True)
    return Counter(json.loads(line)["id"] for line in lines if line.endswith("\n"))


def queued_jobs(database_url: str) -> int:
    query = "SELECT count(*) FROM mail_deliveryjob WHERE state = 'queued'"
    if database_url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(database_url[len("sqlite:///"):])) as conn:
            return int(conn.execute(query).fetchone()[0])
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute(query).fetchone()
        return int(row[0]) if row else 0


@contextlib.contextmanager
def sink_process(port: int, results: Path) -> Iterator[None]:
    process = subprocess.Popen([sys.executable, str(HERE / "sink.py"), "127.0.0.3", str(port),
                                str(results)])
    try:
        yield
    finally:
        process.terminate()
        process.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5, help="kill -9 rounds")
    parser.add_argument("--senders", type=int, default=8, help="concurrent SMTP clients")
    parser.add_argument("--aliases", type=int, default=10)
    parser.add_argument("--smtp-processes", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds to wait for the last deliveries")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    chance = random.Random(args.seed)

    from tests.support.dns_server import DnsServer
    from tests.support.processes import Deployment, free_port, fresh_database, wait_for_port

    data_dir = Path(tempfile.mkdtemp(prefix="mailcloak-soak-"))
    results = data_dir / "sink.jsonl"
    sink_port = free_port("127.0.0.3")
    started = time.monotonic()
    with DnsServer() as dns, fresh_database(data_dir) as database_url, \
            sink_process(sink_port, results):
        deployment = Deployment(
            data_dir, database_url, dns_servers=dns.nameserver,
            transports=f"{MAILBOX_DOMAIN}=[127.0.0.3]:{sink_port}",
            smtp_processes=str(args.smtp_processes),
            spam_quarantine_score="1000", spam_reject_score="2000")
        deployment.cli("migrate")
        deployment.cli("user", "add", f"owner@{MAILBOX_DOMAIN}")
        aliases = [deployment.cli("alias", "add", f"owner@{MAILBOX_DOMAIN}").split()[-1]
                   for _ in range(args.aliases)]
        wait_for_port("127.0.0.3", sink_port)
        try:
            for service in SERVICES:
                deployment.start(service, service)
            senders = Senders("127.0.0.1", deployment.smtp_port, aliases,
                              list(range(args.messages - 1, -1, -1)))
            threads = senders.run(args.senders)
            for round_number in range(1, args.rounds + 1):
                share = round_number * args.messages // (args.rounds + 1)
                while len(senders.accepted) < share:
                    time.sleep(0.01)
                time.sleep(chance.uniform(0, 1.0))  # a random moment within the load
                for service in SERVICES:
                    deployment.kill(service)
                print(f"round {round_number}: killed smtpd and worker after "
                      f"{len(senders.accepted)} accepted", flush=True)
                time.sleep(chance.uniform(0.1, 1.0))
                for service in SERVICES:
                    deployment.start(service, service)
            for thread in threads:
                thread.join()
            deadline = time.monotonic() + args.timeout
            # Every accepted message arrived and no job is left (jobs a killed worker held
            # come back when their lease runs out, and may arrive a second time then).
            while time.monotonic() < deadline and not (
                    senders.accepted <= set(arrivals(results)) and not queued_jobs(database_url)):
                time.sleep(1)
            received = arrivals(results)
            stuck = queued_jobs(database_url)
        finally:
            deployment.stop_all()
    shutil.rmtree(data_dir, ignore_errors=True)

    lost = senders.accepted - set(received)
    report = {
        "messages": args.messages, "kill_rounds": args.rounds, "senders": args.senders,
        "database": "postgresql" if database_url.startswith("postgres") else "sqlite",
        "sent": senders.counts["sent"], "refused_4xx": senders.counts["refused"],
        "disconnected": senders.counts["disconnected"], "accepted": len(senders.accepted),
        "delivered": len(set(received) & senders.accepted), "lost": len(lost),
        "duplicated": sum(count - 1 for count in received.values()), "stuck_jobs": stuck,
        "seconds": round(time.monotonic() - started, 1),
    }
    for key, value in report.items():
        print(f"{key:>14}: {value}")
    if lost:
        print("lost, e.g.:", sorted(lost)[:10])
    print(json.dumps(report))
    return 1 if lost or stuck or len(senders.accepted) < args.messages else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
