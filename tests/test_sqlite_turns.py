"""SQLite transactions take turns through a flock beside the database: a second writer, in
another thread or process, waits in the kernel until the first commits, rolls back or dies."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from django.db.utils import ConnectionHandler

from mailcloak.project.sqlite.base import TURN_SUFFIX, DatabaseWrapper

PATIENCE = 10.0  # seconds: far longer than any of these waits should take


def handler(path: Path) -> ConnectionHandler:
    return ConnectionHandler({"default": {
        "ENGINE": "mailcloak.project.sqlite", "NAME": str(path),
        "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE",
                    "timeout": 30},
    }})


@pytest.fixture(autouse=True)
def own_databases(django_db_blocker: Any) -> Iterator[None]:
    """These tests open databases of their own, not the test database."""
    with django_db_blocker.unblock():
        yield


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "turns.sqlite3"
    connections = handler(path)
    with connections["default"].cursor() as cursor:
        cursor.execute("CREATE TABLE log (writer TEXT)")
    connections.close_all()
    yield path


def write(connections: ConnectionHandler, writer: str) -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("INSERT INTO log VALUES (%s)", [writer])


def written(path: Path) -> list[str]:
    connections = handler(path)
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT writer FROM log ORDER BY rowid")
        rows = [row[0] for row in cursor.fetchall()]
    connections.close_all()
    return rows


def write_in_a_transaction(path: Path, writer: str) -> None:
    connections = handler(path)
    with _atomic(connections):
        write(connections, writer)
    connections.close_all()


def start_writing(path: Path, writer: str) -> tuple[threading.Thread, threading.Event]:
    """A thread that writes in a transaction of its own; the event is set once it is done."""
    done = threading.Event()

    def run() -> None:
        write_in_a_transaction(path, writer)
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, done


def hold_a_turn(path: Path, started: threading.Event, release: threading.Event,
                writer: str, rollback: bool = False) -> None:
    """Write in a transaction that stays open until `release` (then commits or rolls back)."""
    connections = handler(path)
    try:
        with _atomic(connections):
            write(connections, writer)
            started.set()
            release.wait(PATIENCE)
            if rollback:
                raise _RolledBack
    except _RolledBack:
        pass
    finally:
        connections.close_all()


class _RolledBack(Exception):
    pass


class _atomic:
    """BEGIN ... COMMIT (or ROLLBACK on an exception) on a connection of our own handler,
    through the backend's own transaction hooks, as Django's atomic() drives them."""

    def __init__(self, connections: ConnectionHandler) -> None:
        self.connection = cast(DatabaseWrapper, connections["default"])

    def __enter__(self) -> None:
        self.connection.ensure_connection()
        self.connection._start_transaction_under_autocommit()

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is None:
            self.connection._commit()
        else:
            self.connection._rollback()


def test_a_second_transaction_waits_for_the_first_to_commit(database: Path) -> None:
    started, release = threading.Event(), threading.Event()
    first = threading.Thread(target=hold_a_turn, args=(database, started, release, "first"))
    first.start()
    assert started.wait(PATIENCE)
    waiter, second_done = start_writing(database, "second")
    time.sleep(0.3)
    assert not second_done.is_set()  # still waiting for its turn
    release.set()
    first.join(PATIENCE)
    assert second_done.wait(PATIENCE)
    waiter.join(PATIENCE)
    assert written(database) == ["first", "second"]
    assert (database.parent / (database.name + TURN_SUFFIX)).exists()


def turn_taken(database: Path) -> bool:
    """Whether some transaction holds the turn now (the flock on the turn file)."""
    fd = os.open(f"{database}{TURN_SUFFIX}", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # and with it the flock, if it was ours
    return False


def test_a_transaction_holds_the_turn_until_it_ends(database: Path) -> None:
    connections = handler(database)
    assert not turn_taken(database)
    with _atomic(connections):
        write(connections, "one")
        assert turn_taken(database)
    assert not turn_taken(database)
    with pytest.raises(_RolledBack), _atomic(connections):
        assert turn_taken(database)
        raise _RolledBack
    assert not turn_taken(database)
    connections.close_all()
    assert written(database) == ["one"]


def test_a_rollback_ends_the_turn_too(database: Path) -> None:
    started, release = threading.Event(), threading.Event()
    first = threading.Thread(target=hold_a_turn,
                             args=(database, started, release, "undone", True))
    first.start()
    assert started.wait(PATIENCE)
    release.set()
    first.join(PATIENCE)
    write_in_a_transaction(database, "after")
    assert written(database) == ["after"]


def _hold_in_a_child(path: str, started: multiprocessing.synchronize.Event) -> None:
    connections = handler(Path(path))
    with _atomic(connections):
        write(connections, "child")
        started.set()
        time.sleep(PATIENCE * 3)  # until killed


def test_the_turn_of_a_process_killed_mid_transaction_passes_on(database: Path) -> None:
    context = multiprocessing.get_context("fork")
    started = context.Event()
    child = context.Process(target=_hold_in_a_child, args=(str(database), started))
    child.start()
    try:
        assert started.wait(PATIENCE)
        waiter, done = start_writing(database, "parent")
        time.sleep(0.3)
        assert not done.is_set()  # the child holds the turn
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        assert done.wait(PATIENCE)  # the kernel released the dead process's flock
        waiter.join(PATIENCE)
    finally:
        child.join(PATIENCE)
    assert written(database) == ["parent"]  # the child's write died with it


def test_a_forked_child_takes_its_own_turns(database: Path) -> None:
    """The flock belongs to an open file, which a forked child shares: were the child to use
    the file its parent opened, it would "hold" the parent's turn at once. (The child only
    takes a turn here: SQLite itself must not be used across a fork.)"""
    connections = handler(database)
    wrapper = cast(DatabaseWrapper, connections["default"])
    context = multiprocessing.get_context("fork")
    got_turn = context.Event()
    with _atomic(connections):  # the parent holds the turn, with the file it opened
        child = context.Process(target=_take_a_turn, args=(wrapper, got_turn))
        child.start()
        assert not got_turn.wait(0.5)  # the child waits for the parent's turn to end
    assert got_turn.wait(PATIENCE)
    child.join(PATIENCE)
    assert child.exitcode == 0
    connections.close_all()


def _take_a_turn(wrapper: DatabaseWrapper, got_turn: multiprocessing.synchronize.Event) -> None:
    wrapper._take_turn()
    got_turn.set()
    wrapper._end_turn()


def test_an_in_memory_database_needs_no_turns(tmp_path: Path) -> None:
    connections = handler(Path(":memory:"))
    with _atomic(connections), connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
    assert not list(tmp_path.iterdir())
    assert cast(DatabaseWrapper, connections["default"])._turn_fd is None
