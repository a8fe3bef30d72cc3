"""Measured accuracy: cross validation with near-duplicates kept in one fold, the figures it
reports, and `mailcloak spam train` / `mailcloak spam eval` on a small synthetic corpus."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from mailcloak import cli
from mailcloak.mail.spam import corpus, evaluate
from mailcloak.mail.spam.classifier import TokenCounts, load
from mailcloak.mail.spam.features import parse
from mailcloak.mail.spam.tokenize import tokens
from mailcloak.mail.spam.verdict import Thresholds

DATA = Path(__file__).parent / "data" / "spam"
SHARED_CORPUS = Path(os.environ.get("MAILCLOAK_TEST_CORPUS",
                                    Path(__file__).resolve().parents[2] / "shared" / "corpus"))
REQUIRED_KEYS = {"spam_recall", "ham_fp_rate", "precision", "recall_at_fp_0_5", "median_ms",
                 "p99_ms", "n_ham", "n_spam"}


def test_cross_validation_on_the_synthetic_corpus() -> None:
    messages = corpus.read([DATA / "ham"], [DATA / "spam"])
    stream = io.StringIO()
    report = evaluate.cross_validate(messages, Thresholds(5, 10), folds=3, stream=stream)
    assert (report.n_ham, report.n_spam, report.folds) == (15, 15, 3)
    assert report.spam_recall >= 0.8 and report.ham_fp_rate <= 0.1
    assert 0 < report.median_ms <= report.p99_ms
    assert "scanning: 30/30" in stream.getvalue()  # progress on the given stream
    assert "15 ham, 15 spam (3-fold cross validation" in report.text()


def test_duplicates_stay_in_one_fold() -> None:
    text = "the same offer sent to everyone on the list, word for word, again and again"
    signatures = [corpus.signature(text), corpus.signature(text + " once more"),
                  corpus.signature("a completely different note about the garden and tomatoes"),
                  corpus.signature(text)]
    groups = corpus.near_duplicate_groups(signatures)
    assert groups[0] == groups[1] == groups[3] != groups[2]
    labels = [True, True, False, True]
    folds = corpus.assign_folds(labels, groups, 2)
    assert folds[0] == folds[1] == folds[3]


def test_folds_are_balanced_per_label() -> None:
    labels = [index % 3 == 0 for index in range(60)]
    folds = corpus.assign_folds(labels, list(range(60)), 5)
    for fold in range(5):
        assert sum(1 for f, spam in zip(folds, labels, strict=True) if f == fold and spam) == 4
        assert sum(1 for f, spam in zip(folds, labels, strict=True) if f == fold and not spam) == 8


def test_recall_at_the_false_positive_budget() -> None:
    ham = [0.0] * 400 + [6.0, 9.0]  # 0.5% of 402 ham is 2: both may be blocked
    spam = [5.0, 7.0, 9.5, 20.0]
    threshold, recall = evaluate.recall_at_fp_budget(ham, spam)
    assert threshold == 0.01 and recall == 1.0
    threshold, recall = evaluate.recall_at_fp_budget([*ham[:-1], 6.0], spam, budget=0.0)
    assert threshold == 6.01 and recall == 0.75


def test_corpus_reader_skips_documentation_and_rejects_missing_dirs(tmp_path: Path) -> None:
    (tmp_path / "README.txt").write_text("about this corpus")
    (tmp_path / "one.eml").write_bytes(b"Subject: x\r\n\r\nbody\r\n")
    messages = corpus.read([tmp_path], [])
    assert [m.path.name for m in messages] == ["one.eml"]
    with pytest.raises(corpus.CorpusError, match="is not a directory"):
        corpus.read([tmp_path / "missing"], [])


def test_train_then_eval_a_saved_model_on_the_command_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model.bin"
    assert cli.main(["spam", "train", "--ham", str(DATA / "ham"), "--spam", str(DATA / "spam"),
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "model written to" in printed
    model = load(out)
    assert (model.ham_messages, model.spam_messages) == (15, 15)
    # Every token ships, those seen in one message too: the cross validation measures
    # models that keep them.
    seen_once = [v for v in model.counts.values() if (v >> 32) + (v & 0xFFFFFFFF) == 1]
    assert seen_once and f"{len(model.counts)} tokens" in printed
    assert cli.main(["spam", "eval", "--ham", str(DATA / "ham"), "--spam", str(DATA / "spam"),
                     "--model", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    figures = json.loads(captured.out.strip().splitlines()[-1])
    assert figures.keys() >= REQUIRED_KEYS
    assert figures["folds"] == 0 and figures["n_ham"] == 15
    assert figures["spam_recall"] == 1.0  # it learned these very messages


def test_eval_cross_validates_and_prints_json_last(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["spam", "eval", "--ham", str(DATA / "ham"), "--spam", str(DATA / "spam"),
                     "--folds", "3", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(lines[-1])
    assert figures.keys() >= REQUIRED_KEYS and figures["folds"] == 3
    assert lines[0].startswith("15 ham, 15 spam")


@pytest.mark.parametrize(("argv", "message"), [
    (["--folds", "1"], "folds must be"),
    (["--model", "/nonexistent/model.bin"], "cannot read the spam model"),
])
def test_eval_refuses_bad_arguments(argv: list[str], message: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    args = ["spam", "eval", "--ham", str(DATA / "ham"), "--spam", str(DATA / "spam"), *argv]
    try:
        status = cli.main(args)
    except SystemExit as exit_:  # argparse refuses bad option values itself
        status = int(exit_.code or 0)
    assert status != 0
    assert message in capsys.readouterr().err


def test_train_refuses_a_corpus_without_spam(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    status = cli.main(["spam", "train", "--ham", str(DATA / "ham"), "--spam", str(empty),
                       "--out", str(tmp_path / "m.bin")])
    assert status == 1 and "no spam or no ham" in capsys.readouterr().err


def test_evaluating_with_an_empty_model_delivers_everything() -> None:
    messages = corpus.read([DATA / "ham"], [DATA / "spam"])[:3]
    report = evaluate.evaluate_model(messages, TokenCounts(), Thresholds(50, 60),
                                     stream=io.StringIO())
    assert report.ham_fp_rate == 0.0 and report.blocked_ham == []


# --- the shared corpora (skipped where they are not installed) ------------------------------

needs_corpus = pytest.mark.skipif(not (SHARED_CORPUS / "modern-ham").is_dir(),
                                  reason=f"the shared corpora are not at {SHARED_CORPUS} "
                                         "(set MAILCLOAK_TEST_CORPUS)")


@needs_corpus
@pytest.mark.parametrize("directory", ["modern-ham", "modern-spam", "spamassassin/ham",
                                       "spamassassin/spam"])
def test_collection_artifacts_never_become_tokens(directory: str) -> None:
    """List footers, archive hosts and anonymised names say how a corpus was collected: a
    model that learned them would judge the collection, not the mail. (A list's name may still
    be a word of the text: the speakup list talks about speakup.)"""
    messages = corpus.read([SHARED_CORPUS / directory], [])[::25]
    assert messages
    for message in messages:
        found = tokens(parse(message.raw), masked=corpus.ANONYMISED)
        leaks = {tok for tok in found
                 if any(artifact in tok for artifact in ("lfdr", "example.com", "taint.org",
                                                         "listinfo", "mailing list"))}
        assert not leaks, f"{message.path.name}: {sorted(leaks)}"
