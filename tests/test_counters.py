"""Statistics counters are added to with the work's commit, and never for work rolled back."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from mailcloak.aliases.models import Alias
from mailcloak.mail.counters import add_after_commit


def count(alias: Alias) -> int:
    alias.refresh_from_db()
    return alias.forwarded_count


@pytest.mark.django_db(transaction=True)
def test_added_with_the_commit(alias: Alias) -> None:
    with transaction.atomic():
        add_after_commit(Alias, alias.pk, "forwarded_count", 2)
        # PostgreSQL: the row is not written (nor locked) inside the transaction. SQLite:
        # the transaction holds the whole database anyway, so it is written there.
        assert count(alias) == (2 if connection.vendor == "sqlite" else 0)
    assert count(alias) == 2
    add_after_commit(Alias, alias.pk, "forwarded_count")  # outside a transaction: at once
    assert count(alias) == 3


@pytest.mark.django_db(transaction=True)
def test_forgotten_with_the_work_rolled_back(alias: Alias) -> None:
    with transaction.atomic():
        add_after_commit(Alias, alias.pk, "forwarded_count")
        with pytest.raises(RuntimeError), transaction.atomic():  # one message's savepoint
            add_after_commit(Alias, alias.pk, "forwarded_count", 10)
            raise RuntimeError("this message failed")
    assert count(alias) == 1
    with pytest.raises(RuntimeError), transaction.atomic():
        add_after_commit(Alias, alias.pk, "forwarded_count", 10)
        raise RuntimeError("the whole batch failed")
    assert count(alias) == 1


def test_only_fields_the_model_has() -> None:
    from django.core.exceptions import FieldDoesNotExist

    with pytest.raises(FieldDoesNotExist):
        add_after_commit(Alias, 1, "no_such_counter")
