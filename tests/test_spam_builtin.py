"""The builtin spam engine as the mail path uses it: test patterns, verdicts with reasons,
learning from owners' decisions (in memory and in the database), and `mailcloak spam check`."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from mailcloak import cli
from mailcloak import settings as mailcloak_settings
from mailcloak.mail.spam import testpatterns
from mailcloak.mail.spam.builtin import BuiltinEngine, MemoryStore, default_model
from mailcloak.mail.spam.classifier import TokenCounts
from mailcloak.mail.spam.features import parse
from mailcloak.mail.spam.verdict import Action, Reason, ScanRequest, Sensitivity, Thresholds
from mailcloak.spamdata.models import LearnedMessage, LearnedToken
from mailcloak.spamdata.store import DatabaseStore

DATA = Path(__file__).parent / "data" / "spam"
NORMAL = Thresholds(5.0, 10.0)
GTUBE = testpatterns.GTUBE.decode()
GTUBE_QUARANTINE = testpatterns.GTUBE_QUARANTINE.decode()


def raw_message(body: str, subject: str = "Hello", *, encoding: str = "8bit") -> bytes:
    payload = base64.encodebytes(body.encode()).decode() if encoding == "base64" else body
    return (f"From: Alice <alice@mailbox.test>\r\nTo: bob@alias.test\r\nSubject: {subject}\r\n"
            "Date: Mon, 1 Jun 2026 10:00:00 +0000\r\nMessage-ID: <a.1@mailbox.test>\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {encoding}"
            f"\r\n\r\n{payload}\r\n").encode()


def scan(engine: BuiltinEngine, raw: bytes, thresholds: Thresholds = NORMAL,
         **request: object) -> object:
    return asyncio.run(engine.scan(ScanRequest(raw=raw, **request), thresholds))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def small_model() -> TokenCounts:
    """A model trained on the synthetic test corpus only."""
    from mailcloak.mail.spam import corpus, train

    messages = corpus.read([DATA / "ham"], [DATA / "spam"])
    prepared = corpus.prepare(messages)
    return train.count(prepared)


# --- test patterns --------------------------------------------------------------------------


@pytest.mark.parametrize("sensitivity", list(Sensitivity))
@pytest.mark.parametrize("patterns_on", [True, False])
def test_gtube_is_always_rejected(sensitivity: Sensitivity, patterns_on: bool) -> None:
    engine = BuiltinEngine(TokenCounts(), test_patterns=patterns_on)
    verdict = engine.scan_sync(ScanRequest(raw_message(f"test {GTUBE} test")),
                               NORMAL.shifted(sensitivity))
    assert verdict.action is Action.REJECT
    assert verdict.reasons == (Reason("GTUBE", "Standard anti-spam test message (GTUBE)",
                                      1000.0),)
    assert verdict.engine == "builtin"


def test_gtube_inside_an_encoded_part_is_found() -> None:
    engine = BuiltinEngine(TokenCounts())
    verdict = engine.scan_sync(ScanRequest(raw_message(GTUBE, encoding="base64")), NORMAL)
    assert verdict.action is Action.REJECT


@pytest.mark.parametrize("sensitivity", list(Sensitivity))
def test_quarantine_pattern_lands_between_the_thresholds(sensitivity: Sensitivity) -> None:
    thresholds = NORMAL.shifted(sensitivity)
    engine = BuiltinEngine(TokenCounts(), test_patterns=True)
    verdict = scan(engine, raw_message(f"please hold {GTUBE_QUARANTINE}"), thresholds)
    assert verdict.action is Action.QUARANTINE  # type: ignore[attr-defined]
    assert thresholds.quarantine <= verdict.score < thresholds.reject  # type: ignore[attr-defined]


def test_quarantine_pattern_is_ignored_when_test_patterns_are_off(
        small_model: TokenCounts) -> None:
    engine = BuiltinEngine(small_model, test_patterns=False)
    verdict = engine.scan_sync(ScanRequest(raw_message(f"hi {GTUBE_QUARANTINE}")), NORMAL)
    assert not any(reason.code.startswith("GTUBE") for reason in verdict.reasons)


def test_test_pattern_finder() -> None:
    assert testpatterns.find(b"x" + testpatterns.GTUBE) is testpatterns.TestPattern.REJECT
    assert testpatterns.find("a", GTUBE_QUARANTINE) is testpatterns.TestPattern.QUARANTINE
    assert testpatterns.find(testpatterns.GTUBE[1:]) is None
    assert testpatterns.find(b"nothing here") is None


# --- verdicts -------------------------------------------------------------------------------


def test_verdict_adds_rules_classifier_and_authentication(small_model: TokenCounts) -> None:
    engine = BuiltinEngine(small_model)
    spf = Reason("SPF_FAIL", "SPF failed for bank.test", 3.0)
    raw = (DATA / "spam" / "spam01.eml").read_bytes()
    verdict = engine.scan_sync(ScanRequest(raw, auth_reasons=(spf,)), NORMAL)
    codes = [reason.code for reason in verdict.reasons]
    assert codes[0] == "SPF_FAIL" and codes[-1].startswith("BAYES_")
    assert "BULK_HIDDEN_RECIPIENTS" in codes
    assert verdict.score == pytest.approx(sum(r.score for r in verdict.reasons), abs=0.01)
    assert verdict.action is NORMAL.action_for(verdict.score)


def test_spam_and_ham_of_the_test_corpus_get_their_verdicts(small_model: TokenCounts) -> None:
    engine = BuiltinEngine(small_model)
    spam = engine.scan_sync(ScanRequest((DATA / "spam" / "spam03.eml").read_bytes()), NORMAL)
    ham = engine.scan_sync(ScanRequest((DATA / "ham" / "ham03.eml").read_bytes()), NORMAL)
    assert spam.action is not Action.DELIVER
    assert ham.action is Action.DELIVER
    assert spam.score > ham.score


def test_shipped_model_loads_once_and_scores_mail() -> None:
    assert default_model() is default_model()
    assert default_model().spam_messages > 1000 and default_model().ham_messages > 1000
    engine = BuiltinEngine()
    verdict = engine.scan_sync(ScanRequest((DATA / "spam" / "spam00.eml").read_bytes()), NORMAL)
    assert verdict.action is not Action.DELIVER
    # The shipped model weighs the words and the form apart: a reason for each.
    assert default_model().calibration.form_weight is not None
    words, form = verdict.reasons[-2:]
    assert words.code.startswith("BAYES_") and form.code.startswith("BAYES_FORM_")
    assert "written and sent" in form.text
    assert verdict.score == pytest.approx(sum(r.score for r in verdict.reasons), abs=0.01)


def test_the_first_scan_loads_the_shipped_model_off_the_event_loop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    loaded_in = []

    def load() -> TokenCounts:
        loaded_in.append(threading.current_thread())
        return default_model()

    monkeypatch.setattr("mailcloak.mail.spam.builtin.default_model", load)
    engine = BuiltinEngine()
    raw = (DATA / "spam" / "spam00.eml").read_bytes()
    verdict = asyncio.run(engine.scan(ScanRequest(raw), NORMAL))
    assert verdict.action is not Action.DELIVER
    assert len(loaded_in) == 1 and loaded_in[0] is not threading.main_thread()


@pytest.mark.parametrize("raw", [
    b"",
    b"\x00\xff\xfe garbage without headers",
    b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/html\r\n\r\n<a",
    b"Subject: =?unknown-8bit?q?=FF?=\r\nContent-Type: text/plain; charset=no-such\r\n\r\n\xff",
    b"Content-Type: text/html\r\n\r\n" + b"<div>" * 5000 + b"<a href='http://[::1'>x",
    b"Subject: x\r\n\r\n" + b"a" * 300_000,  # one long run with no "@": linear, not quadratic
    b"Subject: " + b"a@" * 20_000 + b"\r\nMessage-ID: <" + b"@" * 20_000 + b">\r\n\r\nx",
])
def test_hostile_input_gets_a_verdict_not_an_exception(raw: bytes) -> None:
    verdict = BuiltinEngine(TokenCounts()).scan_sync(ScanRequest(raw), NORMAL)
    assert verdict.engine == "builtin"


def test_large_parts_are_truncated_not_skipped() -> None:
    body = "ordinary words " * 30_000 + " zorblax"
    view = parse(raw_message(body), scan_limit=1000)
    assert view.truncated and len(view.plain_text) <= 1000
    engine = BuiltinEngine(TokenCounts(), scan_limit=1000)
    tail_gtube = raw_message(body + " " + GTUBE)
    assert engine.scan_sync(ScanRequest(tail_gtube), NORMAL).action is Action.REJECT


# --- learning -------------------------------------------------------------------------------


LESSON = raw_message("The zorblax quantum widget is ready for you", "zorblax widget")


def test_learning_in_memory_moves_the_score(small_model: TokenCounts) -> None:
    engine = BuiltinEngine(small_model)
    before = engine.scan_sync(ScanRequest(LESSON), NORMAL).score
    for index in range(3):
        lesson = raw_message(f"zorblax quantum widget offer {index}", "zorblax")
        asyncio.run(engine.learn(lesson, is_spam=True))
    after = engine.scan_sync(ScanRequest(LESSON), NORMAL).score
    assert after > before + 1
    assert small_model.spam_messages == 15  # the model itself is not changed


def test_memory_store_moves_a_message_that_is_learned_again() -> None:
    store = MemoryStore()
    store.learn([1, 2], is_spam=True, digest="d")
    store.learn([1, 2], is_spam=True, digest="d")
    assert store.lookup([1]) == ({1: (1, 0)}, (1, 0))
    store.learn([1, 2], is_spam=False, digest="d")
    assert store.lookup([1, 3]) == ({1: (0, 1), 3: (0, 0)}, (0, 1))


def test_database_store_counts_moves_and_forgets(db: None) -> None:
    store = DatabaseStore()
    assert store.lookup([1, 2]) == ({}, (0, 0))
    store.learn([1, 2, 2], is_spam=True, digest="a" * 64)
    store.learn([2, 3], is_spam=True, digest="b" * 64)
    assert store.lookup([1, 2, 3, 4]) == ({1: (1, 0), 2: (2, 0), 3: (1, 0)}, (2, 0))
    store.learn([2, 3], is_spam=True, digest="b" * 64)  # the same decision again: no change
    store.learn([2, 3], is_spam=False, digest="b" * 64)  # the owner changed their mind
    assert store.lookup([2, 3]) == ({2: (1, 1), 3: (0, 1)}, (1, 1))
    assert LearnedMessage.objects.count() == 2
    store.forget_all()
    assert store.lookup([2]) == ({}, (0, 0)) and not LearnedToken.objects.exists()


def test_database_store_handles_more_tokens_than_one_query_takes(db: None) -> None:
    store = DatabaseStore()
    tokens = list(range(1, 2501))
    store.learn(tokens, is_spam=False, digest="c" * 64)
    counts, totals = store.lookup(tokens)
    assert totals == (0, 1) and len(counts) == 2500 and counts[2500] == (0, 1)


def test_engine_learns_through_the_database(transactional_db: None,
                                            small_model: TokenCounts) -> None:
    engine = BuiltinEngine(small_model, store=DatabaseStore())
    try:
        before = scan(engine, LESSON).score  # type: ignore[attr-defined]
        for index in range(3):
            lesson = raw_message(f"zorblax quantum widget offer {index}", "zorblax")
            asyncio.run(engine.learn(lesson, is_spam=True))
        assert LearnedMessage.objects.filter(is_spam=True).count() == 3
        after = scan(engine, LESSON).score  # type: ignore[attr-defined]
        assert after > before + 1
    finally:  # the ORM ran in Django's sync thread: close its connection there
        asyncio.run(sync_to_async(connections.close_all)())


def test_engine_from_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                              small_model: TokenCounts) -> None:
    from mailcloak.mail.spam import classifier

    path = tmp_path / "model.bin"
    classifier.save(small_model, path)
    monkeypatch.setenv("MAILCLOAK_SPAM_MODEL", str(path))
    monkeypatch.setenv("MAILCLOAK_SPAM_SCAN_LIMIT", "10K")
    monkeypatch.setenv("MAILCLOAK_SPAM_TEST_PATTERNS", "false")
    mailcloak_settings.reset()
    engine = BuiltinEngine.from_settings(mailcloak_settings.get())
    assert engine.scan_limit == 10_000 and not engine.test_patterns
    assert engine.model.counts == small_model.counts
    assert isinstance(engine.store, DatabaseStore)


# --- mailcloak spam check -------------------------------------------------------------------


def test_spam_check_prints_the_verdict_as_json(db: None, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gtube.eml"
    path.write_bytes(raw_message(GTUBE))
    assert cli.main(["spam", "check", str(path)]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["action"] == "reject" and verdict["score"] == 1000.0
    assert verdict["reasons"][0]["code"] == "GTUBE"
    assert verdict["thresholds"] == {"quarantine": 5.0, "reject": 10.0}


def test_spam_check_of_ordinary_mail_with_a_sensitivity(
        db: None, capsys: pytest.CaptureFixture[str]) -> None:
    path = DATA / "ham" / "ham01.eml"
    assert cli.main(["spam", "check", str(path), "--sensitivity", "strict"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["thresholds"] == {"quarantine": 3.0, "reject": 8.0}
    assert verdict["action"] in {"deliver", "quarantine", "reject"}
    assert verdict["reasons"][-1]["code"].startswith("BAYES_")


def test_spam_check_of_a_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["spam", "check", "/nonexistent/message.eml"]) == 1
    assert "cannot read /nonexistent/message.eml" in capsys.readouterr().err


def test_learn_sync_counts_in_the_database(db: None, small_model: TokenCounts) -> None:
    engine = BuiltinEngine(small_model, store=DatabaseStore())
    engine.learn_sync(LESSON, is_spam=False)
    engine.learn_sync(LESSON, is_spam=False)
    assert list(LearnedMessage.objects.values_list("is_spam", flat=True)) == [False]
    assert LearnedToken.objects.filter(ham=1).exists()


class BrokenStore(MemoryStore):
    def lookup(self, token_ids: object) -> object:  # type: ignore[override]
        from django.db import OperationalError

        raise OperationalError("database is locked")


def test_a_scan_that_cannot_read_learned_counts_is_a_temporary_failure(
        small_model: TokenCounts) -> None:
    from mailcloak.mail.spam.verdict import EngineUnavailable

    engine = BuiltinEngine(small_model, store=BrokenStore())
    with pytest.raises(EngineUnavailable, match="database is unavailable"):
        scan(engine, LESSON)
    gtube = BuiltinEngine(small_model, store=BrokenStore())  # test patterns need no counts
    assert gtube.scan_sync(ScanRequest(raw_message(GTUBE)), NORMAL).action is Action.REJECT
