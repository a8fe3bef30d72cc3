"""Statistics counters (mail forwarded, blocked and replied, per alias and contact), added to
once the transaction that did the work has committed.

Added to inside the mail's transaction, a counter row stays locked until that commits: two
SMTP processes forwarding to the same alias would queue behind each other's whole batch (the
load bench caught them doing so). Added to after the commit, in a statement of its own, the
row is locked for that statement only. A crash between the two loses one count: these are
statistics, never the mail.
"""

from __future__ import annotations

from django.db import connection, models, transaction

from mailcloak.mail.sql import table


def add_after_commit(model: type[models.Model], pk: int, field: str, amount: int = 1) -> None:
    """Add `amount` to `field` of row `pk` once the current transaction commits (at once
    outside one); forgotten if it rolls back."""
    model._meta.get_field(field)  # a counter the model has (its column has the same name)
    column = connection.ops.quote_name(field)
    sql = f"UPDATE {table(model)} SET {column} = {column} + %s WHERE id = %s"  # noqa: S608

    def add() -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql, [amount, pk])

    # robust: a counter that cannot be written must not look like a failed commit.
    transaction.on_commit(add, robust=True)
