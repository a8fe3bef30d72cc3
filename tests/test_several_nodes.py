"""Two Mailcloak nodes sharing one PostgreSQL: `mailcloak smtpd` and `mailcloak worker` each,
listening on 127.0.0.21 and 127.0.0.22, delivering to one sink MX on 127.0.0.3.

Both accept and both deliver; the sink sees each message once per recipient; a node killed
(-9) in the middle of deliveries has its jobs finished by the other once their lease expires;
a per-user sending limit holds across the two; Rspamd serves both as one shared spam engine.
"""

from __future__ import annotations

import email
import email.policy
import json
import smtplib
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from mailcloak.mail.jobs import WORKER_LEASE
from tests.support.daemons import GTUBE, RspamdDaemon, ham, missing, running_rspamd
from tests.support.dns_server import DnsServer
from tests.support.postgres import shared_database
from tests.support.processes import Deployment
from tests.support.sink import SmtpSink

pytestmark = pytest.mark.slow

HOSTS = {"a": "127.0.0.21", "b": "127.0.0.22"}
SENDER = "jane@example.org"


@dataclass
class Nodes:
    nodes: dict[str, Deployment]
    database_url: str
    alias: str

    def start(self, name: str, *services: str) -> None:
        for service in services:
            self.nodes[name].start(f"{service}-{name}", service)

    def kill(self, name: str) -> None:
        for service in ("smtpd", "worker"):
            self.nodes[name].kill(f"{service}-{name}")

    def send(self, name: str, numbers: range) -> None:
        node = self.nodes[name]
        with smtplib.SMTP(node.host, node.smtp_port, timeout=30) as client:
            for number in numbers:
                client.sendmail(SENDER, [self.alias], message(number, self.alias))

    def deliveries_by(self, name: str) -> int:
        """Deliveries the node's worker logged (one line per delivered job)."""
        return self.nodes[name].log(f"worker-{name}").count("msg=delivered")

    def leases(self) -> Counter[str]:
        """Jobs in hand, by worker process id."""
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute("SELECT leased_by FROM mail_deliveryjob "
                                "WHERE state = 'queued' AND leased_by <> ''").fetchall()
        return Counter(leased_by.split(":")[1] for (leased_by,) in rows)

    def pid(self, name: str) -> str:
        return str(self.nodes[name].processes[f"worker-{name}"].pid)

    def jobs(self) -> list[tuple[str, int]]:
        """(state, crashes) of every job."""
        with psycopg.connect(self.database_url) as conn:
            return [(state, crashes) for state, crashes in conn.execute(
                "SELECT state, crashes FROM mail_deliveryjob").fetchall()]


def message(number: int, alias: str) -> bytes:
    return (f"From: Jane <{SENDER}>\r\nTo: <{alias}>\r\nSubject: node test {number}\r\n"
            f"Message-ID: <node-{number}@example.org>\r\nX-Test-Id: {number}\r\n\r\n"
            f"Hello, this is message {number}.\r\n").encode()


def test_ids(sink: SmtpSink) -> Counter[int]:
    return Counter(int(m.content.split(b"X-Test-Id: ")[1].split(b"\r\n")[0])
                   for m in list(sink.messages) if b"X-Test-Id: " in m.content)


test_ids.__test__ = False  # type: ignore[attr-defined]  # not a test for pytest


def wait_until(condition: object, timeout: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@contextmanager
def two_nodes(tmp_path: Path, sink: SmtpSink, **settings: str) -> Iterator[Nodes]:
    settings = {"transports": f"mailbox.test=[127.0.0.3]:{sink.port}",
                "spam_quarantine_score": "1000", "spam_reject_score": "2000",
                "delivery_workers": "2", "log_level": "info", **settings}
    with shared_database(tmp_path) as database_url:
        nodes = {name: Deployment(tmp_path, database_url, host=host, **settings)
                 for name, host in HOSTS.items()}
        first = nodes["a"]
        first.cli("migrate")
        first.cli("user", "add", "owner@mailbox.test")
        alias = first.cli("alias", "add", "owner@mailbox.test").strip().splitlines()[-1]
        try:
            yield Nodes(nodes, database_url, alias)
        finally:
            for node in nodes.values():
                node.stop_all()


def test_two_nodes_share_work_and_limits_and_finish_a_killed_nodes_jobs(
        tmp_path: Path, dns_server: DnsServer) -> None:
    dns_server.add("mailbox.test", "TXT", "v=spf1 ip4:127.0.0.0/8 -all")  # owner's replies
    try:
        with SmtpSink("127.0.0.3") as sink, two_nodes(
                tmp_path, sink, send_messages_per_user="3/h", new_account_days="0") as nodes:
            for name in HOSTS:
                nodes.start(name, "smtpd", "worker")
            share_the_work(nodes, sink)
            share_a_sending_limit(nodes, sink)
            orphaned = finish_a_killed_nodes_jobs(nodes, sink)
            jobs = nodes.jobs()
            delivered = test_ids(sink)
    finally:
        dns_server.remove("mailbox.test", "TXT")
    assert delivered == Counter(range(36)), "each message exactly once"
    assert orphaned > 0
    assert sum(crashes for _, crashes in jobs) == orphaned  # counted against the lost lease


def share_the_work(nodes: Nodes, sink: SmtpSink) -> None:
    """Both accept, and (with the MX holding every delivery) both workers take jobs."""
    sink.hold()
    nodes.send("a", range(0, 12))
    nodes.send("b", range(12, 24))
    wait_until(lambda: set(nodes.leases()) == {nodes.pid("a"), nodes.pid("b")}, 30,
               "both workers to hold jobs")
    sink.release()
    assert sink.wait_for(lambda s: set(test_ids(s)) == set(range(24)), timeout=60)
    assert nodes.deliveries_by("a") > 0 and nodes.deliveries_by("b") > 0


def share_a_sending_limit(nodes: Nodes, sink: SmtpSink) -> None:
    """The owner's limit (3 messages an hour) counts replies sent through either node."""
    to = reverse_address(sink.messages[0].content)
    codes = [send_reply(nodes.nodes[name], to, number) for number, name in enumerate("abab")]
    assert codes == [250, 250, 250, 452]


def finish_a_killed_nodes_jobs(nodes: Nodes, sink: SmtpSink) -> int:
    """Node a dies with deliveries in hand; node b finishes them once the lease expires.
    Returns how many jobs node a died with."""
    sink.hold()
    nodes.send("a", range(24, 36))
    wait_until(lambda: nodes.leases()[nodes.pid("a")] > 0 and sink.in_data > 0, 30,
               "node a to be delivering")
    dead = nodes.pid("a")
    nodes.kill("a")
    orphaned = nodes.leases()[dead]
    sink.release()
    assert sink.wait_for(lambda s: set(test_ids(s)) == set(range(36)),
                         timeout=WORKER_LEASE.total_seconds() + 30)
    assert sink.wait_for(lambda _: all(state == "delivered" for state, _ in nodes.jobs()))
    return orphaned


# --- a sending limit across nodes ------------------------------------------------------------

REPLY = ("From: Owner <owner@mailbox.test>\r\nTo: {to}\r\nSubject: Re: hello {n}\r\n"
         "Message-ID: <reply-{n}@mailbox.test>\r\n\r\nThanks for writing, {n}.\r\n")


def send_reply(node: Deployment, to: str, number: int) -> int:
    """The owner replies through `node`; returns the reply code to the data."""
    with smtplib.SMTP(node.host, node.smtp_port, timeout=30) as client:
        client.ehlo("client.mailbox.test")
        client.mail("owner@mailbox.test")
        client.rcpt(to)
        return client.data(REPLY.format(to=to, n=number).encode())[0]


def reverse_address(forwarded: bytes) -> str:
    """The contact's reverse alias: the From of a forwarded copy."""
    parsed = email.message_from_bytes(forwarded, policy=email.policy.default)
    return str(parsed["From"].addresses[0].addr_spec)


# --- Rspamd shared by both nodes -------------------------------------------------------------


def test_rspamd_serves_both_nodes_alike(tmp_path: Path) -> None:
    if reason := missing("rspamd"):
        pytest.skip(reason)
    with SmtpSink("127.0.0.3") as sink, running_rspamd() as rspamd, two_nodes(
            tmp_path, sink, spam_engine="rspamd", rspamd_url=rspamd.url,
            rspamd_controller_url=rspamd.controller_url,
            rspamd_password=rspamd.password, spam_quarantine_score="5",
            spam_reject_score="10") as nodes:
        for name in HOSTS:
            nodes.start(name, "smtpd")
        before = scanned(rspamd)
        answers = {(name, kind): send_raw(node, nodes.alias, raw)
                   for name, node in nodes.nodes.items()
                   for kind, raw in (("gtube", GTUBE), ("ham", ham()))}
        assert scanned(rspamd) - before >= len(answers)  # Rspamd, not the builtin engine
    refused, accepted = (550, b"5.7.1"), (250, b"2.0.0")
    assert answers == {("a", "gtube"): refused, ("a", "ham"): accepted,
                       ("b", "gtube"): refused, ("b", "ham"): accepted}


def send_raw(node: Deployment, alias: str, raw: bytes) -> tuple[int, bytes]:
    """The reply code and enhanced status to `raw` sent to `alias` through `node`."""
    with smtplib.SMTP(node.host, node.smtp_port, timeout=30) as client:
        client.ehlo("client.example.org")
        client.mail("ada@sender.test")
        client.rcpt(alias)
        code, text = client.data(raw.replace(b"k3v9@alias.test", alias.encode()))
    return code, text[:5]


def scanned(rspamd: RspamdDaemon) -> int:
    """Messages Rspamd has scanned so far (its controller's statistics)."""
    request = urllib.request.Request(f"{rspamd.controller_url}/stat",
                                     headers={"Password": rspamd.password})
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(json.load(response)["scanned"])
