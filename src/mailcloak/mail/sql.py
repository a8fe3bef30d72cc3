"""Pieces shared by the mail path's statements written out in SQL (lookups, queue_sql, rows,
counters): only names from the models and placeholders are ever formatted into them."""

from __future__ import annotations

import functools
from collections.abc import Sized

from django.db import connection, models


def table(model: type[models.Model]) -> str:
    """The model's table name, quoted for the database in use."""
    return _quoted_table(model, connection.vendor)


@functools.cache
def _quoted_table(model: type[models.Model], vendor: str) -> str:  # once per model and vendor
    return connection.ops.quote_name(model._meta.db_table)


def placeholders(values: Sized) -> str:
    """One `%s` per value, for `IN (...)` and `VALUES (...)`; `NULL` (matching nothing) for none."""
    return ", ".join(["%s"] * len(values)) or "NULL"
