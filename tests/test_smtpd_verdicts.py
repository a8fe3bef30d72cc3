"""Spam verdicts in the SMTP conversation: reject during DATA, quarantine, forward with results.

A real SMTP server on loopback, the real builtin engine (its test patterns drive each path),
a real DNS server for the DMARC case, and a real but unreachable spamd for the engine-down case.
"""

from __future__ import annotations

import smtplib

import pytest

from mailcloak.accounts.models import User
from mailcloak.aliases.models import Alias
from mailcloak.aliases.services import create_alias
from mailcloak.mail import dns as mail_dns
from mailcloak.mail.analysis import Analysis
from mailcloak.mail.auth import authenticate
from mailcloak.mail.models import QueuedMessage
from mailcloak.mail.spam.engine import reset_engine
from mailcloak.mail.spam.verdict import Action, Verdict
from mailcloak.quarantine.models import QuarantinedMessage, RejectionLog
from tests.support.dns_server import DnsServer
from tests.support.processes import free_port
from tests.support.smtp_client import RunningServer

pytestmark = pytest.mark.django_db(transaction=True)

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
GTUBE_QUARANTINE = "YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def message(body: str, sender: str = "sender@sender.test") -> bytes:
    return (f"From: Sender <{sender}>\r\nTo: someone\r\nSubject: verdict test\r\n"
            f"Message-ID: <verdict@sender.test>\r\n\r\n{body}\r\n").encode()


@pytest.fixture(autouse=True)
def _fresh_engine():
    reset_engine()
    yield
    reset_engine()


def send(alias: Alias, content: bytes, sender: str = "sender@sender.test") -> tuple[int, str]:
    with RunningServer() as server, smtplib.SMTP(server.host, server.port) as client:
        client.ehlo("client.test")
        client.mail(sender)
        assert client.rcpt(alias.address)[0] == 250
        code, text = client.data(content)
    return code, text.decode()


def test_gtube_is_refused_during_data_and_only_logged(alias: Alias) -> None:
    code, text = send(alias, message(f"Buy now {GTUBE}"))
    assert (code, text) == (550, "5.7.1 Message refused as spam")
    assert not QueuedMessage.objects.exists() and not QuarantinedMessage.objects.exists()
    logged = RejectionLog.objects.get()
    assert logged.alias == alias and logged.subject == "verdict test"
    assert "GTUBE" in logged.reason


def test_grey_band_is_accepted_and_quarantined_not_forwarded(alias: Alias) -> None:
    code, _ = send(alias, message(f"Maybe spam {GTUBE_QUARANTINE}"))
    assert code == 250
    held = QuarantinedMessage.objects.get()
    assert held.alias == alias and held.direction == "inbound"
    assert not QueuedMessage.objects.exists()
    alias.refresh_from_db()
    assert alias.blocked_count == 1 and alias.forwarded_count == 0


def test_clean_mail_is_forwarded_with_results_score_and_arc_seal(alias: Alias) -> None:
    code, _ = send(alias, message("Lunch on Friday? Let me know which place you prefer."))
    assert code == 250
    content = bytes(QueuedMessage.objects.get().content)
    header = content.split(b"\r\n\r\n", 1)[0]
    assert b"Authentication-Results: mail.alias.test;" in header
    assert b"X-Mailcloak-Spam-Score: " in header
    assert b"ARC-Seal: i=1;" in header and b"ARC-Authentication-Results: i=1;" in header


def test_engine_down_is_a_temporary_failure_and_nothing_is_stored(
        alias: Alias, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailcloak import settings as mailcloak_settings

    monkeypatch.setenv("MAILCLOAK_SPAM_ENGINE", "spamassassin")
    monkeypatch.setenv("MAILCLOAK_SPAMD_ADDRESS", f"127.0.0.1:{free_port()}")  # nothing there
    mailcloak_settings.reset()
    code, text = send(alias, message("hello"))
    assert (code, text) == (451, "4.7.1 Message could not be checked for spam, try again later")
    assert not QueuedMessage.objects.exists() and not QuarantinedMessage.objects.exists()


def test_dmarc_reject_policy_failure_is_refused(alias: Alias) -> None:
    with DnsServer() as dns_server:
        dns_server.add("sender.test", "TXT", "v=spf1 -all")
        dns_server.add("_dmarc.sender.test", "TXT", "v=DMARC1; p=reject")
        with mail_dns.use_resolver(dns_server.resolver()):
            code, text = send(alias, message("hello from a forger"))
    assert code == 550 and text.startswith("5.7.1 Message refused: it fails DMARC")
    assert "DMARC" in RejectionLog.objects.get().reason
    assert not QueuedMessage.objects.exists()


def test_each_owner_gets_the_verdict_of_their_own_sensitivity(user: User,
                                                               make_user) -> None:
    """One message, two owners: what is grey for one is still fine for a relaxed one."""
    relaxed_owner = make_user("relaxed@mailbox.test")
    relaxed_owner.spam_sensitivity = "relaxed"
    relaxed_owner.save()
    auth = authenticate(message("x"), peer_ip="127.0.0.1", helo="client.test",
                        mail_from="sender@sender.test")
    grey = Analysis(auth, Verdict(6.0, Action.QUARANTINE))
    assert grey.action_for("normal") is Action.QUARANTINE
    assert grey.action_for("relaxed") is Action.DELIVER
    assert grey.action_for("strict") is Action.QUARANTINE
    assert Analysis(auth, Verdict(9.0, Action.QUARANTINE)).action_for("strict") is Action.REJECT

    normal_alias = create_alias(user)
    relaxed_alias = create_alias(relaxed_owner)
    with RunningServer() as server, smtplib.SMTP(server.host, server.port) as client:
        client.ehlo("client.test")
        client.mail("sender@sender.test")
        client.rcpt(normal_alias.address)
        client.rcpt(relaxed_alias.address)
        assert client.data(message(f"grey {GTUBE_QUARANTINE}"))[0] == 250
    # The quarantine test pattern sits between each owner's thresholds: both hold it.
    assert set(QuarantinedMessage.objects.values_list("alias", flat=True)) == {
        normal_alias.pk, relaxed_alias.pk}


def test_one_transaction_forwarding_and_replying_is_scanned_each_way(
        user: User, alias: Alias, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply to a reverse alias that also copies an alias: the forwarded copy is judged as
    inbound mail, the reply as outbound, each with its own recipients."""
    from mailcloak.mail import smtpd
    from mailcloak.mail.contacts import contact_for

    scans: list[tuple[str, tuple[str, ...]]] = []

    async def recording(raw: bytes, **kwargs: object) -> Analysis:
        scans.append((str(kwargs["direction"]), kwargs["recipients"]))  # type: ignore[arg-type]
        return await real_analyse(raw, **kwargs)  # type: ignore[arg-type]

    real_analyse = smtpd.analyse
    monkeypatch.setattr(smtpd, "analyse", recording)
    contact = contact_for(alias, "friend@example.org")
    other = create_alias(user)
    owner = alias.mailbox.email
    with RunningServer() as server, smtplib.SMTP(server.host, server.port) as client:
        client.ehlo("client.test")
        client.mail(owner)
        assert client.rcpt(contact.reverse_address)[0] == 250
        assert client.rcpt(other.address)[0] == 250
        client.data(message("hello both", sender=owner))
    assert sorted(scans) == [("inbound", (other.address,)),
                             ("outbound", (contact.reverse_address,))]
