"""Real mail through the end-of-DATA path: the public corpora in ../shared/corpus.

Every message is sent as an SMTP client would (CRLF line ends) to an alias, through the
forward check, authentication, the builtin spam engine and intake; each must end forwarded,
quarantined or refused with a catalogue reply, never with an exception (see
tests/support/pipeline.py for everything checked). The whole corpus (some 7,300 messages)
takes longer than the suite should, so this runs a fixed-seed sample; the full pass is
`bench/fuzz_mime.py --corpus ../shared/corpus`.

Set MAILCLOAK_TEST_CORPUS to use a corpus elsewhere; without one, the test is skipped.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path

import pytest

from mailcloak.aliases.models import Alias
from mailcloak.mail.models import QueuedMessage
from mailcloak.mail.spam import corpus
from tests.support.mime_fuzz import crlf
from tests.support.pipeline import check_message

SHARED_CORPUS = Path(os.environ.get("MAILCLOAK_TEST_CORPUS",
                                    Path(__file__).resolve().parents[2] / "shared" / "corpus"))
MESSAGE_DIRS = ["spamassassin/ham", "spamassassin/spam", "modern-ham", "modern-spam"]
SAMPLE = 1500
SEED = 7300


def corpus_messages(root: Path) -> list[corpus.CorpusMessage]:
    """Every message of the corpus directories that exist under `root`."""
    directories = [root / name for name in MESSAGE_DIRS if (root / name).is_dir()]
    if not directories:
        pytest.skip(f"no mail corpus at {root} (set MAILCLOAK_TEST_CORPUS to use one)")
    return corpus.read(directories, [])


@pytest.mark.django_db
def test_a_sample_of_the_corpus_ends_in_one_state_each(alias: Alias) -> None:
    messages = corpus_messages(SHARED_CORPUS)
    sample = random.Random(SEED).sample(messages, min(SAMPLE, len(messages)))
    failures, states = [], Counter[str]()
    for message in sample:
        result, problem = check_message(crlf(message.raw), alias)
        if problem:
            failures.append(f"{message.path.name}: {problem}")
        elif result is not None:
            states[result.state] += 1
    assert failures == [], "\n".join(failures)
    assert sum(states.values()) == len(sample)
    # Real mail takes every road: most is forwarded, and spam is held or refused.
    assert states["forwarded"] > len(sample) / 2
    assert states["quarantined"] + states["rejected"] > 0


ARC_WITHOUT_SPACES = (
    b"ARC-Seal:i=1; a=rsa-sha256; d=list.test; s=arc; t=1700000000; cv=none; b=AAAA\r\n"
    b"ARC-Message-Signature:i=1; a=rsa-sha256; d=list.test; s=arc; c=relaxed/simple;\r\n"
    b" h=from:subject; bh=AAAA; b=AAAA\r\n"
    b"ARC-Authentication-Results:i=1; list.test; spf=pass smtp.mailfrom=sender.test\r\n"
    b"From: Friend <friend@sender.test>\r\nSubject: on a list\r\n\r\nhello\r\n")


@pytest.mark.django_db
@pytest.mark.usefixtures("lenient_spam_thresholds")
def test_an_arc_set_written_without_spaces_is_a_broken_chain(alias: Alias) -> None:
    """Found in the corpus (a kernel.org list): dkimpy raised IndexError reading such a set,
    and the message got 451 for ever instead of a verdict."""
    result, problem = check_message(ARC_WITHOUT_SPACES, alias)
    assert problem is None and result is not None and result.state == "forwarded"
    assert result.outcome is not None
    copy = bytes(QueuedMessage.objects.get(queue_id=result.outcome.queue_ids[0]).content)
    assert b"arc=fail" in copy
