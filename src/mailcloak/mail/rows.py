"""Inserting the rows every message adds (queued message, delivery jobs, forwarded-mail log)
in SQL built from the model's own fields.

`QuerySet.create` and `bulk_create` compile their INSERT anew at every call, at several times
what the database spends on it; on the SMTP server's commit thread, which every message passes
through, that was the largest single cost after the ARC seal. The values are prepared by each
field exactly as the ORM prepares them (`get_db_prep_save`), so what is stored is the same.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper

from mailcloak.mail.sql import placeholders, table


@dataclass(frozen=True)
class _Statement:
    fields: list[models.Field]
    sql: str  # INSERT INTO table (columns) VALUES
    row: str  # (%s, %s, ...)
    pk: str


@functools.cache
def _statement(model: type[models.Model], vendor: str) -> _Statement:
    """The parts of the model's INSERT, quoted once per process rather than at every row."""
    ops = connections[DEFAULT_DB_ALIAS].ops
    meta = model._meta
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    columns = ", ".join(ops.quote_name(field.column) for field in fields)
    return _Statement(fields=fields, sql=f"INSERT INTO {table(model)} ({columns}) VALUES ",  # noqa: S608
                      row=f"({placeholders(fields)})",
                      pk=ops.quote_name(meta.pk.column) if meta.pk else "id")


def insert(objs: Sequence[models.Model], *, set_ids: bool = True) -> None:
    """INSERT the unsaved instances `objs`, all of one model, in one statement; with
    `set_ids`, give each its primary key (one statement per row where the database cannot
    return them from a multi-row INSERT)."""
    if not objs:
        return
    connection: BaseDatabaseWrapper = connections[DEFAULT_DB_ALIAS]
    statement = _statement(type(objs[0]), connection.vendor)
    sql, row, pk = statement.sql, statement.row, statement.pk
    values = [[field.get_db_prep_save(field.pre_save(obj, True), connection)
               for field in statement.fields] for obj in objs]
    with connection.cursor() as cursor:
        if not set_ids:
            cursor.execute(sql + ", ".join([row] * len(objs)),
                           [value for one in values for value in one])
        elif connection.features.can_return_rows_from_bulk_insert:
            cursor.execute(sql + ", ".join([row] * len(objs)) + f" RETURNING {pk}",
                           [value for one in values for value in one])
            for obj, (new_id,) in zip(objs, cursor.fetchall(), strict=True):
                obj.pk = new_id
        else:
            for obj, one in zip(objs, values, strict=True):
                cursor.execute(sql + row, one)
                obj.pk = cursor.lastrowid
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias
