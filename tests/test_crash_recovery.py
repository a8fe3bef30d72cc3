"""kill -9 of the SMTP server and the delivery worker under load loses nothing.

Real processes (`mailcloak smtpd`, `mailcloak worker`), a real sink MX on 127.0.0.3, real SMTP
clients. Every message that got a 250 must reach the sink; a duplicate is allowed only for a
delivery that was in flight at the moment of a kill (or a message committed whose 250 the
client never saw, which it then sent again, as any SMTP client would).
"""

from __future__ import annotations

import contextlib
import smtplib
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.processes import Deployment, fresh_database
from tests.support.sink import SmtpSink

pytestmark = pytest.mark.slow

MESSAGES = 600
SENDERS = 6
KILLS = 3


def message(number: int, alias: str) -> bytes:
    return (
        f"From: Sender <sender@example.test>\r\nTo: <{alias}>\r\n"
        f"Subject: crash test {number}\r\nMessage-ID: <crash-{number}@example.test>\r\n"
        f"X-Test-Id: {number}\r\n\r\nbody of message {number}\r\n"
    ).encode()


class Senders:
    """Threads that send every message until it gets a 250, retrying after failures."""

    def __init__(self, port: int, alias: str) -> None:
        self.port = port
        self.alias = alias
        self.accepted: set[int] = set()
        self.lock = threading.Lock()
        self.todo = list(range(MESSAGES))
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(SENDERS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self, timeout: float) -> None:
        for thread in self.threads:
            thread.join(timeout)

    def _next(self) -> int | None:
        with self.lock:
            return self.todo.pop() if self.todo else None

    def _run(self) -> None:
        client: smtplib.SMTP | None = None
        number = self._next()
        while number is not None:
            try:
                if client is None:
                    client = smtplib.SMTP("127.0.0.1", self.port, timeout=10)
                client.sendmail("sender@example.test", [self.alias], message(number, self.alias))
            except (OSError, smtplib.SMTPException):
                client = None  # the server went away: reconnect and send the message again
                time.sleep(0.05)
                continue
            with self.lock:
                self.accepted.add(number)
            number = self._next()
        if client is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                client.quit()


def test_kill_9_under_load_loses_nothing(tmp_path: Path) -> None:
    with SmtpSink("127.0.0.3") as sink, fresh_database(tmp_path) as database_url:
        deployment = Deployment(tmp_path, database_url,
                                transports=f"mailbox.test=[127.0.0.3]:{sink.port}",
                                smtp_processes="2")
        deployment.cli("migrate")
        deployment.cli("user", "add", "owner@mailbox.test")
        alias = deployment.cli("alias", "add", "owner@mailbox.test").strip().splitlines()[-1]
        try:
            deployment.start("smtpd", "smtpd")
            deployment.start("worker", "worker")
            senders = Senders(deployment.smtp_port, alias)
            senders.start()
            for kill in range(1, KILLS + 1):
                while len(senders.accepted) < kill * MESSAGES // (KILLS + 1):
                    time.sleep(0.01)
                deployment.kill("smtpd")
                deployment.kill("worker")
                time.sleep(0.2)
                deployment.start("smtpd", "smtpd")
                deployment.start("worker", "worker")
            senders.join(timeout=120)
            assert len(senders.accepted) == MESSAGES

            def delivered_ids() -> Counter[int]:
                return Counter(int(m.content.split(b"X-Test-Id: ")[1].split(b"\r\n")[0])
                               for m in list(sink.messages))

            sink.wait_for(lambda s: set(delivered_ids()) >= senders.accepted, timeout=120)
            delivered = delivered_ids()
        finally:
            deployment.stop_all()
        lost = senders.accepted - set(delivered)
        duplicates = sum(count - 1 for count in delivered.values())
        print(f"\naccepted={len(senders.accepted)} delivered={len(delivered)} lost={len(lost)} "
              f"duplicates={duplicates} kills={KILLS}")
        assert not lost, f"{len(lost)} accepted messages never arrived, e.g. {sorted(lost)[:5]}"
        # At each kill: at most the sessions mid-DATA plus the deliveries in flight.
        assert duplicates <= KILLS * (SENDERS + 16)
