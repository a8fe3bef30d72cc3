"""Worker threads for the SMTP server's database work, so the event loop never waits on it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from django.db import connections

from mailcloak.mail.dbhealth import close_stale_connections

T = TypeVar("T")


class DatabaseThreads:
    """Worker threads for ORM work. Each keeps its database connection between tasks; `close`
    closes them all (tests and shutdown must not leave connections behind)."""

    def __init__(self, size: int) -> None:
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(size, thread_name_prefix="smtpd-db",
                                            initializer=self._register_thread)

    def _register_thread(self) -> None:
        for connection in connections.all():
            connection.inc_thread_sharing()  # so that `close` may close it from another thread
            with self._lock:
                self._connections.append(connection)

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(_database_task, func, *args))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()


def _database_task(func: Callable[..., T], *args: Any) -> T:
    close_stale_connections()  # drop a connection that broke or outlived CONN_MAX_AGE
    return func(*args)
