"""Shared parts of the PostgreSQL scale benches (bench/rcpt_scale.py, bench/deferred_queue.py).

A fresh data directory and the MAILCLOAK_* environment of the processes under test, Django in
the bench's own process (for bulk SQL and for running a code path to see its queries), the
Mailcloak processes themselves, and EXPLAIN ANALYZE of the queries a code path really runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MAILCLOAK = str(Path(sys.executable).with_name("mailcloak"))
ALIAS_DOMAIN = "alias.bench"


def database_url_or_exit() -> str:
    """The PostgreSQL these benches fill; they refuse SQLite and databases already in use."""
    url = os.environ.get("MAILCLOAK_DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("this bench needs a throwaway PostgreSQL: run it as "
                         "`scripts/with-postgres .venv/bin/python bench/NAME.py`")
    return url


@dataclass
class Stack:
    """A data directory, the environment of the Mailcloak processes, and the processes."""

    env: dict[str, str]
    data_dir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    @contextlib.contextmanager
    def fresh(cls, **settings: str) -> Iterator[Stack]:
        """A new data directory and environment (`settings` are MAILCLOAK_* names without the
        prefix); every process started is stopped and the directory removed on the way out."""
        data_dir = Path(tempfile.mkdtemp(prefix="mailcloak-bench-"))
        env = dict(os.environ, MAILCLOAK_DATA_DIR=str(data_dir), MAILCLOAK_DOMAINS=ALIAS_DOMAIN,
                   MAILCLOAK_LOG_LEVEL="warning")
        env.update({f"MAILCLOAK_{name}": value for name, value in settings.items()})
        stack = cls(env, data_dir)
        try:
            yield stack
        finally:
            stack.stop()
            shutil.rmtree(data_dir, ignore_errors=True)

    def mailcloak(self, *args: str) -> str:
        """Run a `mailcloak` command to completion; returns its output."""
        return subprocess.run([MAILCLOAK, *args], env=self.env, check=True, capture_output=True,
                              text=True).stdout

    def start(self, *command: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(list(command), env=self.env)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def setup_django(self) -> None:
        """Django in this process, on the same database and settings as the processes."""
        os.environ.update(self.env)
        from mailcloak.cli import setup_django

        setup_django()


def drop_indexes(names: list[str]) -> None:
    """Measure without these indexes (to see what one is worth): dropped after migrating."""
    for name in names:
        execute(f'DROP INDEX "{name}"')
        print(f"index {name} dropped for this run")


def refuse_used_database() -> None:
    from mailcloak.aliases.models import Alias
    from mailcloak.mail.models import DeliveryJob

    if Alias.objects.exists() or DeliveryJob.objects.exists():
        raise SystemExit("the database already holds aliases or mail: these benches fill it "
                         "with made-up rows, so give them a throwaway one")


def execute(sql: str, params: list[Any] | tuple[Any, ...] = ()) -> int:
    """Run one statement in its own transaction; returns the rows it touched."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def vacuum_analyze(*tables: str) -> None:
    """Planner statistics and visibility map as autovacuum leaves them after a bulk load, done
    now so that autovacuum does not run on the new rows while latencies are measured."""
    from django.db import connection

    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f'VACUUM (ANALYZE) "{table}"')


# --- what a code path asks the database, and how PostgreSQL answers it ----------------------


def queries_of(action: Callable[[], object]) -> list[str]:
    """The SQL `action` runs, with its parameters bound; its writes are rolled back."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    with transaction.atomic():
        with CaptureQueriesContext(connection) as captured:
            action()
        transaction.set_rollback(True)
    return [query["sql"] for query in captured.captured_queries
            if not query["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK"))]


@dataclass(frozen=True)
class Plan:
    sql: str
    milliseconds: float
    scans: list[str]  # "Index Scan using X on T (rows 1 x1 loops, filtered out 0)" per read
    rows_read: int  # rows the scans of tables read (matched or filtered out), all loops

    def summary(self) -> str:
        verb = self.sql.split(None, 1)[0]
        return (f"{verb} {self.milliseconds:.3f} ms, {self.rows_read:,} rows read: "
                + "; ".join(self.scans or ["no table"]))


def explain(sql: str, *, show: bool = False) -> Plan:
    """EXPLAIN (ANALYZE, BUFFERS) of one statement, run and rolled back; `show` prints the
    plan as PostgreSQL words it."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        if show:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
            print(f"    {sql}", *(f"      {row[0]}" for row in cursor.fetchall()), sep="\n")
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")
        document = cursor.fetchone()[0]
        transaction.set_rollback(True)
    if isinstance(document, str):
        document = json.loads(document)
    top = document[0]
    scans: list[str] = []
    rows_read = _walk(top["Plan"], scans)
    return Plan(sql, float(top["Execution Time"]), scans, rows_read)


def _walk(node: dict[str, Any], scans: list[str]) -> int:
    """Describe the scans under `node`; returns the rows they read."""
    read = 0
    if node.get("Relation Name") and node["Node Type"] != "ModifyTable":
        index = f" using {node['Index Name']}" if "Index Name" in node else ""
        loops = node.get("Actual Loops", 1)
        removed = node.get("Rows Removed by Filter", 0) + node.get(
            "Rows Removed by Index Recheck", 0)
        scans.append(f"{node['Node Type']}{index} on {node['Relation Name']} "
                     f"(rows {node.get('Actual Rows', 0)} x{loops} loops, "
                     f"filtered out {removed})")
        read = (node.get("Actual Rows", 0) + removed) * loops
    return read + sum(_walk(child, scans) for child in node.get("Plans", []))


def explain_all(label: str, action: Callable[[], object], max_rows: int | None = 1000,
                setup: Callable[[], object] | None = None, show: bool = False) -> list[str]:
    """Print the plan summary of every query `action` runs (after `setup`, whose rows are
    rolled back with everything else), and with `show` the plans; returns the problems: a
    query that read more than `max_rows` rows of its tables (None: a query meant to read them
    all, reported only)."""
    from django.db import transaction

    problems: list[str] = []
    print(f"EXPLAIN ANALYZE {label}:")
    with transaction.atomic():
        if setup is not None:
            setup()
        for sql in queries_of(action):
            plan = explain(sql, show=show)
            print(f"  {plan.summary()}")
            if max_rows is not None and plan.rows_read > max_rows:
                problems.append(f"{label}: {plan.rows_read:,} rows read by {sql[:300]}")
        transaction.set_rollback(True)
    return problems
