"""The builtin spam engine: test patterns, named rules, authentication results and a
statistical classifier, added up into one verdict. No extra service to run.

The shipped model loads once per process. What users teach it ("spam" / "not spam" in the
quarantine) is kept per installation by a LearnedStore (a database table, shared by every
node) and counted on top of the shipped model at every scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from mailcloak.mail.spam import classifier, testpatterns
from mailcloak.mail.spam.classifier import ModelError, TokenCounts
from mailcloak.mail.spam.features import DEFAULT_SCAN_LIMIT, MessageView, parse
from mailcloak.mail.spam.rules import DEFAULT_RULES, RuleChain
from mailcloak.mail.spam.tokenize import TokenIds, tokens
from mailcloak.mail.spam.verdict import (
    EngineUnavailable,
    Reason,
    ScanRequest,
    Thresholds,
    Verdict,
)

if TYPE_CHECKING:
    from mailcloak.settings import Config

log = logging.getLogger(__name__)

ENGINE_NAME = "builtin"
MODEL_RESOURCE = "spam-model.bin"

T = TypeVar("T")
LearnedCounts = tuple[Mapping[int, tuple[int, int]], tuple[int, int]]


class LearnedStore(Protocol):
    """Token counts learned on this installation, on top of the shipped model."""

    def lookup(self, token_ids: Sequence[int]) -> LearnedCounts:
        """Counts of these tokens ({token: (spam, ham)}) and of messages (spam, ham)."""
        ...

    def lookup_in_memory(self, token_ids: Sequence[int]) -> LearnedCounts | None:
        """What `lookup` would answer, when this process knows it without the database;
        None when it takes a query (scans then run `lookup` in a database thread)."""
        ...

    def learn(self, token_ids: Sequence[int], *, is_spam: bool, digest: str) -> None:
        """Count one message; learning a message again with the other label moves it."""
        ...


class MemoryStore:
    """Learned counts kept in this process only (tests, and tools without a database)."""

    def __init__(self) -> None:
        self.counts = TokenCounts()
        self.labels: dict[str, bool] = {}

    def lookup(self, token_ids: Sequence[int]) -> LearnedCounts:
        totals = (self.counts.spam_messages, self.counts.ham_messages)
        if totals == (0, 0):
            return {}, totals
        return {token: self.counts.get(token) for token in token_ids}, totals

    def lookup_in_memory(self, token_ids: Sequence[int]) -> LearnedCounts | None:
        return self.lookup(token_ids)

    def learn(self, token_ids: Sequence[int], *, is_spam: bool, digest: str) -> None:
        previous = self.labels.get(digest)
        if previous == is_spam:
            return
        if previous is not None:
            self.counts.learn(token_ids, is_spam=previous, times=-1)
        self.counts.learn(token_ids, is_spam=is_spam)
        self.labels[digest] = is_spam


@dataclass(frozen=True)
class Analysis:
    """What a scan found before the learned counts are added."""

    view: MessageView
    tokens: TokenIds
    rule_reasons: list[Reason]


class BuiltinEngine:
    name = ENGINE_NAME

    def __init__(self, model: TokenCounts | None = None, *, store: LearnedStore | None = None,
                 rules: RuleChain | None = None, scan_limit: int = DEFAULT_SCAN_LIMIT,
                 test_patterns: bool = False) -> None:
        self._model = model
        self.store: LearnedStore = store if store is not None else MemoryStore()
        self.rules = rules or RuleChain(DEFAULT_RULES)
        self.scan_limit = scan_limit
        self.test_patterns = test_patterns

    @classmethod
    def from_settings(cls, config: Config) -> BuiltinEngine:
        """The engine as configured: model, scan limit, test patterns, database store."""
        from mailcloak.mail.spam.engine import quarantine_pattern_enabled
        from mailcloak.spamdata.store import DatabaseStore

        path = config.spam_model
        model = load_model(Path(path)) if path else None
        return cls(model, store=DatabaseStore(), scan_limit=config.spam_scan_limit,
                   test_patterns=quarantine_pattern_enabled(config))

    @property
    def model(self) -> TokenCounts:
        if self._model is None:
            try:
                self._model = default_model()
            except ModelError as exc:
                raise EngineUnavailable(str(exc)) from None
        return self._model

    # --- scanning ------------------------------------------------------------------------

    async def scan(self, request: ScanRequest, thresholds: Thresholds) -> Verdict:
        forced = self._test_pattern_verdict(request.raw, thresholds)
        if forced is not None:
            return forced
        with _unavailable_on_failure():
            analysis = await asyncio.to_thread(self._analyse_with_model, request)
            learned = self.store.lookup_in_memory(analysis.tokens.all)
            if learned is None:
                learned = await _in_database_thread(self._lookup, analysis.tokens.all)
            return self.decide(request, analysis, thresholds, learned)

    def scan_sync(self, request: ScanRequest, thresholds: Thresholds) -> Verdict:
        """The same verdict as `scan`, for callers outside an event loop (eval, CLI)."""
        forced = self._test_pattern_verdict(request.raw, thresholds)
        if forced is not None:
            return forced
        with _unavailable_on_failure():
            analysis = self.analyse(request)
            return self.decide(request, analysis, thresholds, self._lookup(analysis.tokens.all))

    def _analyse_with_model(self, request: ScanRequest) -> Analysis:
        """analyse(), with the model loaded on the first scan: off the event loop, where
        reading the shipped model (over 100,000 tokens) would hold every session up."""
        _ = self.model
        return self.analyse(request)

    def analyse(self, request: ScanRequest) -> Analysis:
        view = parse(request.raw, scan_limit=self.scan_limit)
        return Analysis(view, tokens(view).ids(), self.rules.run(view))

    def decide(self, request: ScanRequest, analysis: Analysis, thresholds: Thresholds,
               learned: LearnedCounts | None = None) -> Verdict:
        forced = self._decoded_test_pattern(analysis.view, thresholds)
        if forced is not None:
            return forced
        counts, totals = learned or ({}, (0, 0))
        model = self.model
        scores = classifier.score_views(analysis.tokens.words, analysis.tokens.form, model,
                                        counts, totals)
        calibration = model.calibration
        rule_reasons = [replace(reason, score=calibration.rule_points(reason.code, reason.score))
                        for reason in analysis.rule_reasons]
        rule_reasons = [reason for reason in rule_reasons if reason.score]  # weighed out
        reasons = [*request.auth_reasons, *rule_reasons,
                   *classifier_reasons(scores, calibration)]
        total = round(sum(reason.score for reason in reasons), 2)
        return Verdict(total, thresholds.action_for(total), tuple(reasons), self.name,
                       features=tuple(analysis.tokens.all))

    def _test_pattern_verdict(self, raw: bytes, thresholds: Thresholds) -> Verdict | None:
        pattern = testpatterns.find(raw)
        if pattern is None:
            return None
        return testpatterns.verdict(pattern, thresholds, variants_enabled=self.test_patterns,
                                    engine=self.name)

    def _decoded_test_pattern(self, view: MessageView, thresholds: Thresholds) -> Verdict | None:
        """Test patterns inside encoded parts (base64, quoted-printable)."""
        pattern = testpatterns.find(view.plain_text, view.html.visible)
        if pattern is None:
            return None
        return testpatterns.verdict(pattern, thresholds, variants_enabled=self.test_patterns,
                                    engine=self.name)

    def _lookup(self, ids: Sequence[int]) -> LearnedCounts:
        return self.store.lookup(ids)

    # --- learning ------------------------------------------------------------------------

    async def learn(self, raw: bytes, *, is_spam: bool) -> None:
        """Teach the engine an owner's decision; a message learned again with the other
        label is moved, not counted twice."""
        ids = await asyncio.to_thread(self.message_token_ids, raw)
        learn = functools.partial(self.store.learn, is_spam=is_spam, digest=message_digest(raw))
        if isinstance(self.store, MemoryStore):
            learn(ids)
        else:
            await _in_database_thread(learn, ids)

    def learn_sync(self, raw: bytes, *, is_spam: bool) -> None:
        """`learn` for callers that are already in a thread that may use the database (the
        quarantine's actions)."""
        self.store.learn(self.message_token_ids(raw), is_spam=is_spam, digest=message_digest(raw))

    def learn_features(self, features: Sequence[int], *, is_spam: bool, digest: str) -> None:
        """Learn a message from the features its verdict carried (Verdict.features), for mail
        whose content is gone (forwarded mail the owner later reports as spam)."""
        self.store.learn(list(features), is_spam=is_spam, digest=digest)

    def message_token_ids(self, raw: bytes) -> list[int]:
        view = parse(raw, scan_limit=self.scan_limit)
        return tokens(view).ids().all


def classifier_reasons(scores: classifier.ViewScores,
                       calibration: classifier.Calibration) -> list[Reason]:
    """The classifier's reasons: one for the words, one for the form when the model scores
    the views apart."""
    words = scores.words.probability
    if scores.form is None:
        return [_view_reason("BAYES", "Text", words, calibration.text_points(words))]
    form = scores.form.probability
    words_points, form_points = calibration.view_points(words, form)
    return [_view_reason("BAYES", "Text", words, words_points),
            _view_reason("BAYES_FORM", "How the message was written and sent (header, links, "
                         "layout)", form, form_points)]


def _view_reason(code: str, what: str, probability: float, points: float) -> Reason:
    percent = round(probability * 100)
    if probability >= 0.6:
        text = f"{what} resembles spam the filter has learned (spam likelihood {percent}%)"
    elif probability <= 0.4:
        text = f"{what} resembles wanted mail (spam likelihood {percent}%)"
    else:
        text = f"{what}: the classifier is unsure (spam likelihood {percent}%)"
    return Reason(f"{code}_{_band(probability)}", text, points)


def _band(probability: float) -> str:
    for limit, band in ((0.01, "00"), (0.05, "05"), (0.2, "20"), (0.4, "40"), (0.6, "50"),
                        (0.8, "60"), (0.95, "80"), (0.99, "95"), (0.999, "99")):
        if probability < limit:
            return band
    return "999"


def message_digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@contextlib.contextmanager
def _unavailable_on_failure() -> Iterator[None]:
    """A scan that cannot finish is a temporary failure (451 4.7.1, the sender retries):
    never a verdict made without the learned counts, never an unscanned delivery."""
    from django.db import DatabaseError

    try:
        yield
    except EngineUnavailable:
        raise
    except DatabaseError as exc:
        log.warning("spam scan: the learned counts cannot be read: %s", type(exc).__name__)
        raise EngineUnavailable("the spam filter's database is unavailable") from None
    except Exception:
        log.exception("spam scan failed")  # the traceback names our code, never the content
        raise EngineUnavailable("the spam filter failed on this message") from None


async def _in_database_thread(function: Callable[..., T], *args: object) -> T:
    """Run ORM code in Django's sync thread, off the event loop."""
    from asgiref.sync import sync_to_async
    from django.db import close_old_connections

    def call() -> T:
        close_old_connections()
        return function(*args)

    return await sync_to_async(call, thread_sensitive=True)()


# --- models and settings --------------------------------------------------------------------


@functools.cache
def default_model() -> TokenCounts:
    """The model shipped with Mailcloak, loaded once per process."""
    resource = resources.files("mailcloak.mail.spam.model").joinpath(MODEL_RESOURCE)
    try:
        data = resource.read_bytes()
    except OSError:
        raise ModelError("the shipped spam model is missing: run `make model`") from None
    return classifier.loads(data, source="the shipped spam model")


@functools.cache
def load_model(path: Path) -> TokenCounts:
    """A model file, loaded once per process."""
    return classifier.load(path)

