"""Group commit: messages that arrive together share a commit, each keeps its own fate."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.db import OperationalError

from mailcloak.aliases.models import Domain
from mailcloak.mail.committer import GroupCommitter

pytestmark = pytest.mark.django_db(transaction=True)


def add_domain(name: str) -> str:
    Domain.objects.create(name=name)
    return name


def test_waiting_messages_share_one_commit_and_each_gets_its_result() -> None:
    committer = GroupCommitter()
    gate = threading.Event()

    def first() -> str:
        gate.wait(10)  # hold the writer while the others queue up behind it
        return add_domain("first.test")

    async def main() -> list[object]:
        head = asyncio.ensure_future(committer.run(first))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(committer.run(add_domain, f"d{i}.test")) for i in range(5)]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(head, *rest)

    try:
        results = asyncio.run(main())
    finally:
        committer.close()
    assert results == ["first.test"] + [f"d{i}.test" for i in range(5)]
    assert committer.batches == 2  # the first alone, the five waiting ones together
    assert Domain.objects.filter(name__endswith=".test").count() == 6


def test_a_failing_message_is_undone_alone() -> None:
    committer = GroupCommitter()

    def broken() -> None:
        Domain.objects.create(name="half-done.test")
        raise ValueError("bug while storing")

    async def main() -> list[object]:
        return await asyncio.gather(committer.run(add_domain, "a.test"), committer.run(broken),
                                    committer.run(add_domain, "b.test"),
                                    return_exceptions=True)

    try:
        ok_a, failed, ok_b = asyncio.run(main())
    finally:
        committer.close()
    assert (ok_a, ok_b) == ("a.test", "b.test") and isinstance(failed, ValueError)
    assert set(Domain.objects.values_list("name", flat=True)) >= {"a.test", "b.test"}
    assert not Domain.objects.filter(name="half-done.test").exists()


class _Deadlock(Exception):
    sqlstate = "40P01"


def test_a_deadlock_is_tried_again() -> None:
    committer = GroupCommitter()
    attempts = []

    def contended() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            Domain.objects.create(name="first-try.test")  # undone with its savepoint
            raise OperationalError("deadlock detected") from _Deadlock()
        return add_domain("second-try.test")

    try:
        assert asyncio.run(committer.run(contended)) == "second-try.test"
    finally:
        committer.close()
    assert len(attempts) == 2 and committer.batches == 2  # the second try in a batch of its own
    assert not Domain.objects.filter(name="first-try.test").exists()
    assert Domain.objects.filter(name="second-try.test").exists()


def test_a_deadlock_is_tried_again_after_the_rest_of_its_batch_committed() -> None:
    """Its batch's earlier messages hold row locks until the commit; trying again before it
    would meet the other writer again."""
    committer = GroupCommitter()
    gate = threading.Event()
    tries: list[int] = []  # how many batches had committed at each try

    def head() -> str:
        gate.wait(10)  # hold the writer while the others queue up behind it
        return add_domain("head.test")

    def contended() -> str:
        tries.append(committer.batches)
        if committer.batches < 2:  # deadlocks for as long as its batch holds its locks
            raise OperationalError("deadlock detected") from _Deadlock()
        return add_domain("after.test")

    def endless() -> str:
        raise OperationalError("deadlock detected") from _Deadlock()

    async def main() -> list[object]:
        first = asyncio.ensure_future(committer.run(head))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(committer.run(*work)) for work in
                ((add_domain, "before.test"), (contended,), (endless,))]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    try:
        _, before, after, failed = asyncio.run(main())
    finally:
        committer.close()
    assert (before, after) == ("before.test", "after.test")
    # Tried in its batch (all together, then in its own savepoint), and again only once the
    # rest of that batch had committed, not inside it.
    # (and tried again by the retry batch's own fall-back to savepoints, as `endless` failed)
    assert tries[:2] == [1, 1] and tries[2:] and set(tries[2:]) == {2}
    assert isinstance(failed, OperationalError)  # given up after TRANSIENT_ATTEMPTS batches
    assert committer.batches == 4
