"""Malformed MIME through the end-of-DATA path: every message ends in exactly one state.

A fixed-seed sample of tests/support/mime_fuzz.py (bench/fuzz_mime.py runs 10,000 and more):
each message is forwarded (one QueuedMessage), quarantined (one QuarantinedMessage) or
refused with a catalogue reply, never an exception and never the 451 that stands for a bug.
Forwarded copies gain no header field the sender did not write (beyond the ones we add), and
quarantined ones open in the quarantine reader.
"""

from __future__ import annotations

import asyncio

import pytest
from django.test import Client

from mailcloak.aliases.models import Alias
from mailcloak.mail import rewrite
from mailcloak.mail.analysis import analyse
from mailcloak.mail.headers import split_message
from mailcloak.mail.models import QueuedMessage
from mailcloak.quarantine.models import QuarantinedMessage
from mailcloak.quarantine.reader import read_message
from tests.support import mime_fuzz
from tests.support.pipeline import PEER_IP, SENDER, check_message, run_message

pytestmark = pytest.mark.django_db

SEED = 20261204


def run_sample(alias: Alias, *, start: int, count: int) -> dict[str, int]:
    """Run `count` cases; the number that ended in each state."""
    failures = [f"{case.name}: {problem}"
                for case in mime_fuzz.cases(SEED, count, start=start)
                if (problem := check_message(case.content, alias)[1])]
    assert failures == [], "\n".join(failures)
    forwarded, held = QueuedMessage.objects.count(), QuarantinedMessage.objects.count()
    return {"forwarded": forwarded, "quarantined": held,
            "rejected": count - forwarded - held}


@pytest.mark.usefixtures("lenient_spam_thresholds")
def test_fuzzed_messages_forwarded_or_refused(alias: Alias, logged_in: Client) -> None:
    """With thresholds no toy message reaches, the forward path meets every case; the
    owner's pages list what was forwarded and the contacts it made."""
    states = run_sample(alias, start=0, count=200)
    assert states["forwarded"] > 100  # most malformed mail is still forwarded
    for page in ("/quarantine/forwarded/", f"/aliases/{alias.pk}/"):
        assert logged_in.get(page).status_code == 200, page


def test_fuzzed_messages_with_the_default_thresholds(alias: Alias, logged_in: Client) -> None:
    """With the shipped thresholds, the quarantine and the DATA-time refusal meet them too,
    and the quarantine shows every held message."""
    states = run_sample(alias, start=200, count=100)
    assert states["quarantined"] > 0 and states["rejected"] > 0
    pages = ["/quarantine/", f"/aliases/{alias.pk}/"] + [
        f"/quarantine/{pk}/" for pk in QuarantinedMessage.objects.values_list("pk", flat=True)]
    assert {page: logged_in.get(page).status_code for page in pages} == dict.fromkeys(pages, 200)


def test_every_kind_is_sampled() -> None:
    names = {case.name.split("#")[0] for case in mime_fuzz.cases(SEED, 24)}
    assert names == set(mime_fuzz.KINDS)


def test_cases_are_reproducible() -> None:
    first = [case.content for case in mime_fuzz.cases(SEED, 12, start=500)]
    again = [case.content for case in mime_fuzz.cases(SEED, 12, start=500)]
    assert first == again
    assert all(b"\r\n" not in c.replace(b"\r\n", b"") and b"\n" not in c.replace(b"\r\n", b"")
               for c in first)


# --- regressions found by the fuzzer ----------------------------------------------------------


@pytest.mark.parametrize("charset", [b"idna", b"utf-8\x00x"])
def test_eight_bit_part_in_a_charset_no_codec_takes_gets_a_verdict(alias: Alias,
                                                                    charset: bytes) -> None:
    """get_payload() decodes 8-bit text with the part's charset and raised for these: the
    spam engine failed (451 for ever) and the quarantine could not show the message."""
    content = (b"From: Friend <friend@sender.test>\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
               b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
               b"Content-Type: application/octet-stream; charset=" + charset + b"\r\n\r\n"
               b"caf\xc3\xa9 \xff\r\n--b--\r\n")
    analysis = asyncio.run(analyse(content, peer_ip=PEER_IP, helo="client.test",
                                   mail_from=SENDER, recipients=(alias.address,)))
    assert analysis.verdict.score >= 0
    assert [a.content_type for a in read_message(content).attachments] == [
        "application/octet-stream"]


@pytest.mark.usefixtures("lenient_spam_thresholds")
def test_a_cc_of_thousands_makes_a_bounded_number_of_contacts(alias: Alias) -> None:
    """Each rewritten address is a contact row, made while the SMTP client waits: 5,000 in a
    Cc took 17 s of the shared commit thread and 5,000 rows."""
    many = b",\r\n ".join(b"u%d@d%d.test" % (i, i) for i in range(5000))
    lists = b"".join(b"List-Post: <mailto:l%d@list.test>\r\n" % i for i in range(500))
    content = (b"From: Friend <friend@sender.test>\r\nTo: " + alias.address.encode()
               + b"\r\nCc: " + many + b"\r\n" + lists + b"Subject: all\r\n\r\nhello\r\n")
    assert run_message(content, alias).state == "forwarded"
    fields = split_message(bytes(QueuedMessage.objects.get().content)).fields
    cc = next(field for field in fields if field.key == "cc")
    assert cc.value.count("@alias.test>") == rewrite.ADDRESS_LIMIT
    assert [field.key for field in fields].count("list-post") == 1
    assert alias.contacts.count() <= rewrite.ADDRESS_LIMIT + 2  # Cc, the sender, one list


BROKEN_ARC_SETS = (
    b"ARC-Seal:b=oCVh+DPMFp8E5x+gHQZYwn2aLdx1Puf6PA==; bh=AAAA; h=from:subject; cv=none;"
    b" c=relaxed/relaxed; a=rsa-sha256; i=\r\n"
    b"DKIM-Signature:d=sender.test\r\n"
    b"ARC-Message-Signature:c=relaxed/relaxed; ;;\r\n"
    b"ARC-Seal:c=relaxed/relaxed; h=from:subject; cv=none; d=sender.test; =\r\n"
    b"ARC-Authentication-Results: ;;; =; i=; a=rsa-sha256; d=sender.test\r\n"
    b"From: Friend <friend@sender.test>\r\nSubject: sets\r\n\r\nhello\r\n")


@pytest.mark.usefixtures("lenient_spam_thresholds")
def test_arc_sets_our_seal_cannot_follow_are_forwarded_unsealed(alias: Alias) -> None:
    """authres raised AttributeError writing back results read from such sets: the seal
    failed outside SealError and the message got 451 for ever."""
    result, problem = check_message(BROKEN_ARC_SETS, alias)
    assert problem is None and result is not None and result.state == "forwarded"
