"""The database store of learned token counts (builtin.LearnedStore).

Counts are changed with single UPDATE statements (count = count + 1), so that nodes learning
at the same time never lose each other's updates. Scans look up only the tokens of the
message at hand, and not at all while nothing has been learned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q

from mailcloak.spamdata.models import LearnedMessage, LearnedToken

if TYPE_CHECKING:
    from mailcloak.mail.spam.builtin import LearnedCounts

TOTALS_TTL = 30.0  # seconds a process trusts its count of learned messages
LOOKUP_BATCH = 900  # ids per query: below SQLite's oldest limit on variables


class DatabaseStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # (spam, ham) learned messages and when they were counted, in one attribute: the
        # event loop reads it (lookup_in_memory) while a database thread may replace it.
        self._counted: tuple[tuple[int, int], float] | None = None

    def _fresh_totals(self) -> tuple[int, int] | None:
        counted = self._counted
        if counted is None or self._clock() - counted[1] > TOTALS_TTL:
            return None
        return counted[0]

    def totals(self) -> tuple[int, int]:
        """How many spam and ham messages were learned (cached for TOTALS_TTL)."""
        totals = self._fresh_totals()
        if totals is None:
            now = self._clock()
            counts = LearnedMessage.objects.aggregate(
                spam=Count("id", filter=Q(is_spam=True)), ham=Count("id", filter=Q(is_spam=False)))
            totals = (counts["spam"] or 0, counts["ham"] or 0)
            self._counted = (totals, now)
        return totals

    def lookup_in_memory(self, token_ids: Sequence[int]) -> LearnedCounts | None:
        """What `lookup` would answer, when that needs no query: nothing learned, as counted
        less than TOTALS_TTL ago. None: call `lookup` from a thread that may use the database
        (scans then skip the hop to that thread for as long as nothing is learned)."""
        totals = self._fresh_totals()
        return ({}, totals) if totals == (0, 0) else None

    def lookup(self, token_ids: Sequence[int]) -> LearnedCounts:
        totals = self.totals()
        if totals == (0, 0):
            return {}, totals
        found: dict[int, tuple[int, int]] = {}
        unique = list(set(token_ids))
        for start in range(0, len(unique), LOOKUP_BATCH):
            rows = LearnedToken.objects.filter(token__in=unique[start:start + LOOKUP_BATCH])
            for token, spam, ham in rows.values_list("token", "spam", "ham"):
                found[token] = (spam, ham)
        return found, totals

    def learn(self, token_ids: Sequence[int], *, is_spam: bool, digest: str) -> None:
        """Count a message once; learning it again with the other label moves its counts."""
        unique = sorted(set(token_ids))
        try:
            with transaction.atomic():
                self._learn(unique, is_spam=is_spam, digest=digest)
        except IntegrityError:  # another node learned the same message at the same moment
            with transaction.atomic():
                self._learn(unique, is_spam=is_spam, digest=digest)
        self._counted = None

    def _learn(self, unique: list[int], *, is_spam: bool, digest: str) -> None:
        previous = LearnedMessage.objects.select_for_update().filter(digest=digest).first()
        if previous is not None and previous.is_spam == is_spam:
            return
        LearnedToken.objects.bulk_create([LearnedToken(token=token) for token in unique],
                                         ignore_conflicts=True, batch_size=LOOKUP_BATCH)
        for start in range(0, len(unique), LOOKUP_BATCH):
            batch = LearnedToken.objects.filter(token__in=unique[start:start + LOOKUP_BATCH])
            if previous is not None:  # the owner changed their mind: move the message
                field = "spam" if previous.is_spam else "ham"
                batch.filter(**{f"{field}__gt": 0}).update(**{field: F(field) - 1})
            field = "spam" if is_spam else "ham"
            batch.update(**{field: F(field) + 1})
        if previous is None:
            LearnedMessage.objects.create(digest=digest, is_spam=is_spam)
        else:
            previous.is_spam = is_spam
            previous.save(update_fields=["is_spam", "learned_at"])

    def forget_all(self) -> None:
        """Drop everything learned on this installation."""
        with transaction.atomic():
            LearnedToken.objects.all().delete()
            LearnedMessage.objects.all().delete()
        self._counted = None
