"""Measured accuracy of the whole builtin engine (rules and classifier, no network checks).

`cross_validate` trains on k-1 folds and scans the held-out fold with a fresh engine, for each
fold in turn: no message is ever scored by a model that learned it, near-identical messages
stay in one fold, and nothing is tuned on the held-out fold. `evaluate_model` scans every
message with a given model (the shipped one, or a saved one) without training.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TextIO

from mailcloak.mail.spam.builtin import BuiltinEngine
from mailcloak.mail.spam.classifier import TokenCounts
from mailcloak.mail.spam.corpus import (
    CorpusMessage,
    Progress,
    assign_folds,
    near_duplicate_groups,
    prepare,
)
from mailcloak.mail.spam.train import train
from mailcloak.mail.spam.verdict import Action, ScanRequest, Thresholds

FP_BUDGET = 0.005  # at most 0.5% of wanted mail blocked


@dataclass(frozen=True)
class Outcome:
    message: CorpusMessage
    score: float
    action: Action
    milliseconds: float

    @property
    def blocked(self) -> bool:
        return self.action is not Action.DELIVER


@dataclass
class Report:
    n_ham: int
    n_spam: int
    spam_recall: float
    ham_fp_rate: float
    precision: float
    recall_at_fp_0_5: float
    threshold_at_fp_0_5: float
    median_ms: float
    p99_ms: float
    quarantine_threshold: float
    reject_threshold: float
    spam_rejected: float
    folds: int = 0                 # 0: one model scanned everything, no training
    duplicate_groups: int = 0      # groups of near-identical messages kept in one fold
    missed_spam: list[str] = field(default_factory=list)
    blocked_ham: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        data = asdict(self)
        data["missed_spam"] = len(self.missed_spam)
        data["blocked_ham"] = len(self.blocked_ham)
        return data

    def text(self) -> str:
        how = (f"{self.folds}-fold cross validation" if self.folds
               else "one model, no training")
        lines = [
            f"{self.n_ham} ham, {self.n_spam} spam ({how}; thresholds: quarantine "
            f"{self.quarantine_threshold:g}, reject {self.reject_threshold:g})",
            f"spam caught (recall):     {self.spam_recall:8.2%}  "
            f"({len(self.missed_spam)} missed; {self.spam_rejected:.2%} rejected at SMTP)",
            f"ham wrongly blocked (FP): {self.ham_fp_rate:8.2%}  "
            f"({len(self.blocked_ham)} messages)",
            f"precision:                {self.precision:8.2%}",
            f"recall at FP <= 0.5%:     {self.recall_at_fp_0_5:8.2%}  "
            f"(score threshold {self.threshold_at_fp_0_5:g})",
            f"scan time per message:    median {self.median_ms:.2f} ms, p99 {self.p99_ms:.2f} ms",
        ]
        if self.duplicate_groups:
            lines.append(f"near-duplicate groups kept within one fold: {self.duplicate_groups}")
        return "\n".join(lines)


def cross_validate(messages: Sequence[CorpusMessage], thresholds: Thresholds, *,
                   folds: int = 5, stream: TextIO | None = None) -> Report:
    if folds < 2:
        raise ValueError("cross validation needs at least 2 folds")
    progress = Progress(len(messages), "reading", stream)
    prepared = prepare(messages, progress=progress)
    progress.finish()
    groups = near_duplicate_groups([item.signature for item in prepared])
    fold_of = assign_folds([m.is_spam for m in messages], groups, folds)
    outcomes: list[Outcome] = []
    progress = Progress(len(messages), "scanning", stream)
    for fold in range(folds):
        training = [(item, group) for item, group, f in zip(prepared, groups, fold_of,
                                                             strict=True) if f != fold]
        model = train([item for item, _ in training], [group for _, group in training])
        held_out = [m for m, f in zip(messages, fold_of, strict=True) if f == fold]
        outcomes += _scan(BuiltinEngine(model), held_out, thresholds, progress)
    progress.finish()
    report = summarise(outcomes, thresholds)
    report.folds = folds
    report.duplicate_groups = _merged_groups(groups)
    return report


def evaluate_model(messages: Sequence[CorpusMessage], model: TokenCounts,
                   thresholds: Thresholds, *, stream: TextIO | None = None) -> Report:
    progress = Progress(len(messages), "scanning", stream)
    outcomes = _scan(BuiltinEngine(model), messages, thresholds, progress)
    progress.finish()
    return summarise(outcomes, thresholds)


def _scan(engine: BuiltinEngine, messages: Sequence[CorpusMessage], thresholds: Thresholds,
          progress: Progress) -> list[Outcome]:
    outcomes = []
    for message in messages:
        started = time.perf_counter()
        verdict = engine.scan_sync(ScanRequest(raw=message.raw), thresholds)
        elapsed = (time.perf_counter() - started) * 1000
        outcomes.append(Outcome(message, verdict.score, verdict.action, elapsed))
        progress.advance()
    return outcomes


def summarise(outcomes: list[Outcome], thresholds: Thresholds) -> Report:
    spam = [o for o in outcomes if o.message.is_spam]
    ham = [o for o in outcomes if not o.message.is_spam]
    caught = sum(o.blocked for o in spam)
    false_positives = sum(o.blocked for o in ham)
    threshold, recall_at_budget = recall_at_fp_budget([o.score for o in ham],
                                                      [o.score for o in spam])
    times = sorted(o.milliseconds for o in outcomes)
    return Report(
        n_ham=len(ham), n_spam=len(spam),
        spam_recall=_ratio(caught, len(spam)),
        ham_fp_rate=_ratio(false_positives, len(ham)),
        precision=_ratio(caught, caught + false_positives),
        recall_at_fp_0_5=recall_at_budget, threshold_at_fp_0_5=threshold,
        median_ms=round(statistics.median(times), 3) if times else 0.0,
        p99_ms=round(times[min(len(times) - 1, int(len(times) * 0.99))], 3) if times else 0.0,
        quarantine_threshold=thresholds.quarantine, reject_threshold=thresholds.reject,
        spam_rejected=_ratio(sum(o.action is Action.REJECT for o in spam), len(spam)),
        missed_spam=sorted(str(o.message.path) for o in spam if not o.blocked),
        blocked_ham=sorted(str(o.message.path) for o in ham if o.blocked),
    )


def recall_at_fp_budget(ham_scores: Sequence[float], spam_scores: Sequence[float],
                        budget: float = FP_BUDGET) -> tuple[float, float]:
    """The lowest score threshold that blocks at most `budget` of the ham, and the share of
    spam it blocks (a message is blocked when its score is at or above the threshold)."""
    if not spam_scores:
        return 0.0, 0.0
    allowed = int(budget * len(ham_scores))
    ranked = sorted(ham_scores, reverse=True)
    # Just above the first ham score that must not be blocked.
    threshold = (min(spam_scores) if allowed >= len(ranked)
                 else round(ranked[allowed] + 0.01, 2))
    recall = sum(score >= threshold for score in spam_scores) / len(spam_scores)
    return threshold, round(recall, 6)


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def _merged_groups(groups: Sequence[int]) -> int:
    sizes: dict[int, int] = {}
    for group in groups:
        sizes[group] = sizes.get(group, 0) + 1
    return sum(size > 1 for size in sizes.values())
