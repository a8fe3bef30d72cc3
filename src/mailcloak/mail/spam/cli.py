"""`mailcloak spam train | eval | check`: the builtin engine's model and its measured accuracy.

    mailcloak spam train --ham DIR --spam DIR --out PATH     (DIR options may be repeated)
    mailcloak spam eval --ham DIR --spam DIR [--folds K] [--model default|PATH] [--json]
    mailcloak spam check FILE.eml [--sensitivity relaxed|normal|strict]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailcloak import settings as mailcloak_settings
from mailcloak.mail.spam.verdict import Sensitivity, Thresholds, Verdict

if TYPE_CHECKING:
    from mailcloak.mail.spam.builtin import LearnedStore
    from mailcloak.mail.spam.classifier import TokenCounts

MAX_CHECK_BYTES = 100_000_000


def add_commands(sub: Any) -> None:
    """Add the `spam` command group to the main parser's subparsers."""
    spam = sub.add_parser("spam", help="train, measure and try the builtin spam engine")
    actions = spam.add_subparsers(dest="action", required=True, metavar="ACTION")

    train = actions.add_parser("train", help="train a model on labelled mail directories")
    _corpus_options(train)
    train.add_argument("--out", type=Path, required=True, help="where to write the model")
    train.set_defaults(handler=cmd_train)

    evaluate = actions.add_parser(
        "eval", help="measure the builtin engine (rules and classifier, no network checks)")
    _corpus_options(evaluate)
    evaluate.add_argument("--folds", type=_folds, default=5,
                          help="k-fold cross validation (default 5)")
    evaluate.add_argument("--model", help="`default` (the shipped model) or a model file: "
                          "scan everything with it instead of cross validation")
    evaluate.add_argument("--json", action="store_true",
                          help="also print the figures as one JSON object, last line")
    evaluate.set_defaults(handler=cmd_eval)

    check = actions.add_parser("check", help="print a message's verdict as JSON")
    check.add_argument("file", type=Path, metavar="FILE.eml")
    check.add_argument("--sensitivity", choices=[s.value for s in Sensitivity],
                       default=Sensitivity.NORMAL.value)
    check.set_defaults(handler=cmd_check)


def _corpus_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ham", type=Path, action="append", required=True, metavar="DIR",
                        help="directory of wanted mail, one message per file (repeatable)")
    parser.add_argument("--spam", type=Path, action="append", required=True, metavar="DIR",
                        help="directory of spam, one message per file (repeatable)")


def _folds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 2:
        raise argparse.ArgumentTypeError("folds must be a whole number of at least 2")
    return value


# --- commands -------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from mailcloak.mail.spam.corpus import CorpusError, read
    from mailcloak.mail.spam.train import train_command

    try:
        messages = read(args.ham, args.spam)
    except (CorpusError, OSError) as exc:
        raise _error(f"cannot read the corpus: {exc}") from None
    if not any(m.is_spam for m in messages) or all(m.is_spam for m in messages):
        raise _error("cannot train: the directories hold no spam or no ham messages")
    try:
        model, written = train_command(args.ham, args.spam, args.out, messages=messages)
    except OSError as exc:
        raise _error(f"cannot write the model: {exc}") from None
    print(f"model written to {args.out}: {model.ham_messages} ham, {model.spam_messages} spam, "
          f"{written} tokens")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from mailcloak.mail.spam import corpus, evaluate
    from mailcloak.mail.spam.classifier import ModelError

    thresholds = _thresholds(Sensitivity.NORMAL)
    try:
        messages = corpus.read(args.ham, args.spam)
    except (corpus.CorpusError, OSError) as exc:
        raise _error(f"cannot read the corpus: {exc}") from None
    if not any(m.is_spam for m in messages) or all(m.is_spam for m in messages):
        raise _error("the directories hold no spam or no ham messages")
    if args.model:
        try:
            model = _model(args.model)
        except ModelError as exc:
            raise _error(str(exc)) from None
        report = evaluate.evaluate_model(messages, model, thresholds)
    else:
        report = evaluate.cross_validate(messages, thresholds, folds=args.folds)
    print(report.text())
    if args.json:
        print(json.dumps(report.summary(), sort_keys=True))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from mailcloak.mail.spam.builtin import BuiltinEngine
    from mailcloak.mail.spam.classifier import ModelError
    from mailcloak.mail.spam.verdict import EngineUnavailable, ScanRequest

    try:
        if args.file.stat().st_size > MAX_CHECK_BYTES:
            raise _error(f"{args.file} is larger than {MAX_CHECK_BYTES // 1_000_000} MB")
        raw = args.file.read_bytes()
    except OSError as exc:
        raise _error(f"cannot read {args.file}: {exc.strerror}") from None
    config = mailcloak_settings.get()
    thresholds = _thresholds(Sensitivity(args.sensitivity))
    try:
        model = _model(config.spam_model or "default")
        engine = BuiltinEngine(model, store=_learned_store(), scan_limit=config.spam_scan_limit,
                               test_patterns=_patterns_enabled(config))
        verdict = engine.scan_sync(ScanRequest(raw=raw), thresholds)
    except (ModelError, EngineUnavailable) as exc:
        raise _error(str(exc)) from None
    print(json.dumps(verdict_json(verdict, thresholds), indent=2, ensure_ascii=False))
    return 0


def verdict_json(verdict: Verdict, thresholds: Thresholds) -> dict[str, object]:
    return {
        "score": verdict.score,
        "action": verdict.action.value,
        "engine": verdict.engine,
        "thresholds": {"quarantine": thresholds.quarantine, "reject": thresholds.reject},
        "reasons": [{"code": r.code, "text": r.text, "score": r.score} for r in verdict.reasons],
    }


# --- helpers --------------------------------------------------------------------------------


def _error(message: str) -> Exception:
    from mailcloak.cli import CommandError

    return CommandError(message)


def _thresholds(sensitivity: Sensitivity) -> Thresholds:
    from mailcloak.mail.spam.engine import base_thresholds

    return base_thresholds(mailcloak_settings.get()).shifted(sensitivity)


def _patterns_enabled(config: mailcloak_settings.Config) -> bool:
    from mailcloak.mail.spam.engine import quarantine_pattern_enabled

    return quarantine_pattern_enabled(config)


def _model(name: str) -> TokenCounts:
    from mailcloak.mail.spam.builtin import default_model, load_model

    return default_model() if name == "default" else load_model(Path(name))


def _learned_store() -> LearnedStore | None:
    """What this installation learned, when its database is ready; else the model alone."""
    from django.db import DatabaseError

    from mailcloak.cli import setup_django

    setup_django()
    from mailcloak.spamdata.store import DatabaseStore

    store = DatabaseStore()
    try:
        store.totals()
    except DatabaseError:
        print("mailcloak: database not ready: the verdict uses the model alone",
              file=sys.stderr)
        return None
    return store
