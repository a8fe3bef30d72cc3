"""SQLite whose writers take turns, across threads and processes.

SQLite lets one writer in at a time. A writer that finds the database locked sleeps and tries
again, after 1, 2, 5 ... and then 100 ms, so under steady load the writers that commit most
often keep winning while one that writes now and then waits for seconds: the delivery worker
fell ever further behind the SMTP server's group commits (messages waited 10 s and more in
the load bench). Here every transaction first takes an exclusive flock on a file beside the
database. Waiters sleep in the kernel, which wakes them as soon as it is released, so each
gets its turn; and the kernel releases the flock of a process that dies, kill -9 included.

The flock only orders the transactions: SQLite's own locks still guard the data, and a
statement outside a transaction still takes SQLite's lock alone. A writer that hangs inside a
transaction holds up the others until it ends or its process dies, as SQLite's lock would
(without SQLite's 30 s timeout: clients see the SMTP timeout instead of a 451).
"""

from __future__ import annotations

import fcntl
import os
from typing import Any

from django.db.backends.sqlite3 import base

TURN_SUFFIX = ".turn"


class DatabaseWrapper(base.DatabaseWrapper):
    _turn_fd: int | None = None
    _turn_pid = 0  # the process that opened _turn_fd: a forked child opens its own
    _turn_held = False

    def _start_transaction_under_autocommit(self) -> None:
        self._take_turn()
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]
        except BaseException:
            self._end_turn()
            raise

    def _commit(self) -> Any:
        try:
            return super()._commit()  # type: ignore[misc]
        finally:
            self._end_turn()

    def _rollback(self) -> Any:
        try:
            return super()._rollback()  # type: ignore[misc]
        finally:
            self._end_turn()

    def _close(self) -> Any:
        try:
            return super()._close()  # type: ignore[misc]
        finally:
            self._end_turn()
            if self._turn_fd is not None and self._turn_pid == os.getpid():
                os.close(self._turn_fd)
            self._turn_fd = None

    def _take_turn(self) -> None:
        if self.is_in_memory_db():
            return  # nobody else can reach it
        if self._turn_fd is None or self._turn_pid != os.getpid():
            path = f"{self.settings_dict['NAME']}{TURN_SUFFIX}"
            self._turn_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._turn_pid = os.getpid()
        fcntl.flock(self._turn_fd, fcntl.LOCK_EX)
        self._turn_held = True

    def _end_turn(self) -> None:
        if self._turn_held and self._turn_fd is not None:
            self._turn_held = False
            fcntl.flock(self._turn_fd, fcntl.LOCK_UN)
