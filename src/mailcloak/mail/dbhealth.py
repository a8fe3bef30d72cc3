"""Dropping database connections that broke or grew old, in the long-running mail threads.

Django's `close_old_connections()` arms a health check ("SELECT 1") for the next query, a
round trip that a web request pays once but the mail hot path would pay per RCPT, per commit
and per delivery batch. Here each thread checks at most once per interval, and at once after
an error, so a connection lost with a database restart is still replaced on the next task.
"""

from __future__ import annotations

import threading
import time

from django.db import close_old_connections, connections

CHECK_INTERVAL = 1.0  # seconds

_checked = threading.local()


def close_stale_connections() -> None:
    """`close_old_connections()`, at most once a second per thread unless a query failed."""
    now = time.monotonic()
    errors = any(conn.errors_occurred for conn in connections.all(initialized_only=True))
    if errors or now - getattr(_checked, "at", float("-inf")) >= CHECK_INTERVAL:
        close_old_connections()
        _checked.at = now
