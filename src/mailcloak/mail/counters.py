"""Statistics counters (mail forwarded, blocked and replied, per alias and contact), added to
once the transaction that did the work has committed.

Added to inside the mail's transaction, a counter row stays locked until that commits: two
SMTP processes forwarding to the same alias would queue behind each other's whole batch (the
load bench caught them doing so). Added to after the commit, in a statement of its own, the
row is locked for that statement only. A crash between the two loses one count: these are
statistics, never the mail. On SQLite, whose single writer holds the whole database until the
commit anyway, the counters are written inside the transaction instead: a write of its own
after the commit would have to wait for its turn behind every other writer.
"""

from __future__ import annotations

from django.db import connection, models, transaction

from mailcloak.mail.sql import table


def add_after_commit(model: type[models.Model], pk: int, field: str, amount: int = 1) -> None:
    """Add `amount` to `field` of row `pk` with the current transaction's commit (at once
    outside one); forgotten if it rolls back."""
    model._meta.get_field(field)  # a counter the model has (its column has the same name)
    column = connection.ops.quote_name(field)
    sql = f"UPDATE {table(model)} SET {column} = {column} + %s WHERE id = %s"  # noqa: S608

    def add() -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql, [amount, pk])

    if connection.vendor == "sqlite" and connection.in_atomic_block:
        add()  # no row lock to keep from anyone: the whole database is this writer's
        return
    # robust: a counter that cannot be written must not look like a failed commit.
    transaction.on_commit(add, robust=True)
