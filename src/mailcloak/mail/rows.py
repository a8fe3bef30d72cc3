"""Inserting the rows every message adds (queued message, delivery jobs, forwarded-mail log)
in SQL built from the model's own fields.

`QuerySet.create` and `bulk_create` compile their INSERT anew at every call, at several times
what the database spends on it; on the SMTP server's commit thread, which every message passes
through, that was the largest single cost after the ARC seal. The values are prepared by each
field exactly as the ORM prepares them (`get_db_prep_save`), so what is stored is the same.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection, models

from mailcloak.mail.sql import placeholders, table


def insert(objs: Sequence[models.Model], *, set_ids: bool = True) -> None:
    """INSERT the unsaved instances `objs`, all of one model, in one statement; with
    `set_ids`, give each its primary key (one statement per row where the database cannot
    return them from a multi-row INSERT)."""
    if not objs:
        return
    meta = objs[0]._meta
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    row = f"({placeholders(fields)})"
    pk = connection.ops.quote_name(meta.pk.column) if meta.pk else "id"
    values = [[field.get_db_prep_save(field.pre_save(obj, True), connection)
               for field in fields] for obj in objs]
    sql = f"INSERT INTO {table(type(objs[0]))} ({columns}) VALUES "  # noqa: S608
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
