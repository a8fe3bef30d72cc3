"""The database failing under a running `mailcloak smtpd`: a 451 for what cannot be stored,
never a 250 that is lost, and mail accepted again as soon as storage is back, without a restart.
A group commit whose connection breaks stores none of its batch, and says so to each message.
A delivery worker records what it delivered once the database is back, rather than send it again.

The slow ones run real processes: `mailcloak smtpd` and `mailcloak worker` on a throwaway
PostgreSQL cluster that the test stops and starts, and on SQLite on a tiny tmpfs that it fills.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import smtplib
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import DatabaseError, OperationalError, connection, transaction

from mailcloak import settings as mailcloak_settings
from mailcloak.aliases.models import Domain
from mailcloak.mail import worker
from mailcloak.mail.committer import GroupCommitter
from mailcloak.mail.models import DeliveryJob, QueuedMessage
from mailcloak.mail.queue import enqueue
from tests.support.postgres import throwaway_cluster
from tests.support.processes import Deployment
from tests.support.sink import SmtpSink

LENIENT_SPAM = {"spam_quarantine_score": "1000", "spam_reject_score": "2000"}


real_record_outcomes = worker.record_outcomes
real_record_outcome = worker.record_outcome
real_record_results_together = worker.record_results_together


def message(alias: str, subject: str, body: str = "Hello there.\r\n") -> bytes:
    return (f"From: Jane <jane@example.org>\r\nTo: <{alias}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@example.org>\r\n\r\n{body}").encode()


def subjects(sink: SmtpSink) -> list[str]:
    return [m.content.split(b"Subject: ")[1].split(b"\r\n")[0].decode() for m in sink.messages]


def set_up(deployment: Deployment) -> str:
    """Tables, an owner and an alias; returns the alias."""
    deployment.cli("migrate")
    deployment.cli("user", "add", "owner@mailbox.test")
    return deployment.cli("alias", "add", "owner@mailbox.test").strip().splitlines()[-1]


@pytest.mark.slow
def test_a_postgresql_restart_tempfails_then_mail_flows_again(tmp_path: Path) -> None:
    with SmtpSink("127.0.0.3") as sink, throwaway_cluster() as cluster:
        deployment = Deployment(tmp_path, cluster.url, **LENIENT_SPAM,
                                transports=f"mailbox.test=[127.0.0.3]:{sink.port}")
        alias = set_up(deployment)
        try:
            deployment.start("smtpd", "smtpd")
            deployment.start("worker", "worker")
            with smtplib.SMTP("127.0.0.1", deployment.smtp_port, timeout=30) as client:
                client.sendmail("jane@example.org", [alias], message(alias, "before"))
                assert sink.wait_for(lambda s: subjects(s) == ["before"], timeout=30)

                client.ehlo("client.example.org")
                assert client.mail("jane@example.org")[0] == 250
                assert client.rcpt(alias)[0] == 250
                cluster.stop()  # the database goes away between RCPT and DATA
                code, text = client.data(message(alias, "during"))
                assert (code, text[:5]) == (451, b"4.3.0"), text

            with smtplib.SMTP("127.0.0.1", deployment.smtp_port, timeout=30) as client:
                client.ehlo("client.example.org")
                client.mail("jane@example.org")
                code, text = client.rcpt(alias)  # the alias cannot be looked up either
                assert (code, text[:5]) == (451, b"4.3.0")

            cluster.start()
            with smtplib.SMTP("127.0.0.1", deployment.smtp_port, timeout=30) as client:
                assert client.sendmail("jane@example.org", [alias],
                                       message(alias, "after")) == {}
            assert sink.wait_for(lambda s: len(s.messages) == 2, timeout=30)
        finally:
            deployment.stop_all()
    assert subjects(sink) == ["before", "after"]  # what got a 451 is the client's to resend


# --- disk full --------------------------------------------------------------------------------


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root or CAP_SYS_ADMIN): "
                    f"{mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(filesystem: Path) -> Path:
    """Write a file until the filesystem has no room left; returns it."""
    filler = filesystem / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def stored_messages(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        return int(conn.execute("SELECT count(*) FROM mail_queuedmessage").fetchone()[0])


@pytest.mark.slow
def test_a_full_disk_tempfails_then_mail_is_accepted_once_there_is_room(tmp_path: Path) -> None:
    with tiny_tmpfs(tmp_path / "disk", "16m") as disk:
        database = disk / "mailcloak.sqlite3"
        deployment = Deployment(tmp_path, f"sqlite:///{database}", **LENIENT_SPAM)
        alias = set_up(deployment)
        try:
            deployment.start("smtpd", "smtpd")
            filler = fill(disk)
            big = message(alias, "too big for the disk", "line of text\r\n" * 20_000)
            with smtplib.SMTP("127.0.0.1", deployment.smtp_port, timeout=30) as client:
                with pytest.raises(smtplib.SMTPDataError) as refused:
                    client.sendmail("jane@example.org", [alias], big)
                assert refused.value.smtp_code == 451
                filler.unlink()
                assert client.sendmail("jane@example.org", [alias], big) == {}
        finally:
            deployment.stop_all()
        assert stored_messages(database) == 1


# --- the database failing while a worker records what it delivered ----------------------------


def fail_the_transaction(monkeypatch: pytest.MonkeyPatch, failures: list[Exception]) -> None:
    """The first recording fails as a whole (the database is gone when it starts)."""

    def record_outcomes(*args: Any) -> list[worker.Outcome]:
        if failures:
            raise failures.pop()
        return real_record_outcomes(*args)

    monkeypatch.setattr(worker, "record_outcomes", record_outcomes)


def lose_the_connection_midway(monkeypatch: pytest.MonkeyPatch,
                               failures: list[Exception]) -> None:
    """The first recording fails in a way that leaves the transaction to be rolled back (the
    connection broke under it): Django then rolls back on leaving the block, silently. Both
    ways of recording fail: all together, then one by one."""

    def record_results_together(*args: Any) -> None:
        if failures:
            transaction.set_rollback(True)
            raise OperationalError("the connection broke")
        real_record_results_together(*args)

    def record_outcome(*args: Any) -> None:
        if failures:
            transaction.set_rollback(True)
            raise failures.pop()
        real_record_outcome(*args)

    monkeypatch.setattr(worker, "record_results_together", record_results_together)
    monkeypatch.setattr(worker, "record_outcome", record_outcome)


@pytest.mark.parametrize("fault", [fail_the_transaction, lose_the_connection_midway])
@pytest.mark.django_db(transaction=True)
def test_a_delivery_whose_recording_failed_is_recorded_later_not_sent_again(
        monkeypatch: pytest.MonkeyPatch, fault: Any) -> None:
    failures: list[Exception] = [OperationalError("the database went away")]
    fault(monkeypatch, failures)
    monkeypatch.setattr(worker, "DATABASE_RETRY", 0.1)
    with SmtpSink("127.0.0.3") as sink:
        monkeypatch.setenv("MAILCLOAK_TRANSPORTS", f"mailbox.test=[127.0.0.3]:{sink.port}")
        mailcloak_settings.reset()
        queued = enqueue(kind=QueuedMessage.Kind.FORWARD, mail_from="bounce@alias.test",
                         recipients=["owner@mailbox.test"],
                         content=message("owner@mailbox.test", "recorded"))
        with running_worker():
            job = DeliveryJob.objects.filter(message=queued)
            assert sink.wait_for(lambda _: job.filter(state="delivered").exists(), timeout=10)
    assert not failures  # the first attempt to record did fail
    assert len(sink.messages) == 1
    assert (job.get().attempts, job.get().crashes) == (1, 0)


@contextlib.contextmanager
def running_worker() -> Iterator[None]:
    """`run_worker` in a thread of its own, stopped afterwards."""
    started = threading.Event()
    control: dict[str, Any] = {}

    def serve() -> None:
        async def main() -> None:
            control.update(loop=asyncio.get_running_loop(), stop=asyncio.Event())
            started.set()
            await worker.run_worker(control["stop"], worker_id="fault-test-worker")

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(5)
    try:
        yield
    finally:
        control["loop"].call_soon_threadsafe(control["stop"].set)
        thread.join(timeout=30)


# --- the connection breaking under a group commit ---------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_no_message_of_a_batch_whose_transaction_was_lost_is_taken_as_stored() -> None:
    committer = GroupCommitter()
    gate = threading.Event()

    def first() -> str:
        gate.wait(10)  # hold the writer while the batch queues up behind it
        return add_domain("first.test")

    def connection_breaks() -> None:
        """Fails so that its savepoint cannot be undone either, as when the server is gone."""
        writer_connection = connection  # this thread's

        def savepoint_rollback(sid: str) -> None:
            del writer_connection.savepoint_rollback  # once
            raise OperationalError("server closed the connection unexpectedly")

        writer_connection.savepoint_rollback = savepoint_rollback  # type: ignore[method-assign]
        raise OperationalError("server closed the connection unexpectedly")

    async def main() -> list[object]:
        head = asyncio.ensure_future(committer.run(first))
        await asyncio.sleep(0.05)
        batch = [asyncio.ensure_future(committer.run(add_domain, "stored.test")),
                 asyncio.ensure_future(committer.run(connection_breaks))]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(head, *batch, return_exceptions=True)

    try:
        head, stored, broken = asyncio.run(main())
    finally:
        committer.close()
    assert head == "first.test"
    assert isinstance(broken, DatabaseError)
    assert isinstance(stored, DatabaseError), "its 250 would be a lie"
    assert not Domain.objects.filter(name="stored.test").exists()


def add_domain(name: str) -> str:
    Domain.objects.create(name=name)
    return name
