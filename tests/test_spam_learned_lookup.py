"""The builtin engine's learned counts: while nothing is learned (as counted at most
TOTALS_TTL ago), a scan answers without a query and without a hop to a database thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from mailcloak.mail.spam import builtin
from mailcloak.mail.spam.builtin import BuiltinEngine, MemoryStore
from mailcloak.mail.spam.classifier import TokenCounts
from mailcloak.mail.spam.verdict import ScanRequest, Thresholds
from mailcloak.spamdata.store import TOTALS_TTL, DatabaseStore

NORMAL = Thresholds(quarantine=5.0, reject=10.0)
MESSAGE = (b"From: Shop <news@shop.example>\r\nTo: owner@example.test\r\nSubject: offers\r\n"
           b"\r\nZorblax quantum widgets, this week only.\r\n")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def small_model() -> TokenCounts:
    model = TokenCounts()
    model.learn([1, 2, 3], is_spam=True, times=5)
    model.learn([4, 5, 6], is_spam=False, times=5)
    return model


def test_memory_store_always_answers_in_memory() -> None:
    store = MemoryStore()
    assert store.lookup_in_memory([1]) == ({}, (0, 0))
    store.learn([1, 2], is_spam=True, digest="d")
    assert store.lookup_in_memory([1]) == store.lookup([1]) == ({1: (1, 0)}, (1, 0))


def test_database_store_answers_in_memory_only_while_nothing_is_learned(db: None) -> None:
    clock = Clock()
    store = DatabaseStore(clock=clock)
    assert store.lookup_in_memory([1]) is None  # never counted
    assert store.lookup([1]) == ({}, (0, 0))
    assert store.lookup_in_memory([1]) == ({}, (0, 0))
    clock.now += TOTALS_TTL
    assert store.lookup_in_memory([1]) == ({}, (0, 0))
    clock.now += 0.5  # the count is older than TOTALS_TTL: count again
    assert store.lookup_in_memory([1]) is None
    store.lookup([1])
    store.learn([1, 2], is_spam=True, digest="a" * 64)
    assert store.lookup_in_memory([1]) is None  # learning forgets the count
    assert store.lookup([1]) == ({1: (1, 0)}, (1, 0))
    assert store.lookup_in_memory([1]) is None  # something is learned: always a query


def test_a_store_sees_what_another_node_learned_once_its_count_expires(db: None) -> None:
    clock = Clock()
    store, other_node = DatabaseStore(clock=clock), DatabaseStore()
    assert store.lookup([1]) == ({}, (0, 0))
    other_node.learn([1], is_spam=False, digest="b" * 64)
    assert store.lookup_in_memory([1]) == ({}, (0, 0))  # as before: trusted for TOTALS_TTL
    clock.now += TOTALS_TTL + 1
    assert store.lookup_in_memory([1]) is None
    assert store.lookup([1]) == ({1: (0, 1)}, (0, 1))


@pytest.mark.django_db(transaction=True)
def test_scans_hop_to_the_database_thread_only_when_they_must(
        monkeypatch: pytest.MonkeyPatch, small_model: TokenCounts) -> None:
    hops: list[str] = []
    real_hop = builtin._in_database_thread

    async def counting_hop(function: Callable[..., Any], *args: object) -> Any:
        hops.append(getattr(function, "__name__", "?"))
        return await real_hop(function, *args)

    monkeypatch.setattr(builtin, "_in_database_thread", counting_hop)
    engine = BuiltinEngine(small_model, store=DatabaseStore())

    async def scan_three_times() -> list[float]:
        return [(await engine.scan(ScanRequest(MESSAGE), NORMAL)).score for _ in range(3)]

    try:
        scores = asyncio.run(scan_three_times())
        assert hops == ["_lookup"]  # the first scan counts what was learned: nothing
        assert len(set(scores)) == 1
        assert scores[0] == engine.scan_sync(ScanRequest(MESSAGE), NORMAL).score
        asyncio.run(engine.learn(MESSAGE, is_spam=True))
        hops.clear()
        learned_scores = asyncio.run(scan_three_times())
        assert hops == ["_lookup"] * 3  # something is learned: every scan reads its counts
        assert learned_scores[0] > scores[0]
    finally:  # the ORM ran in Django's sync thread: close its connection there
        asyncio.run(sync_to_async(connections.close_all)())
