"""The event loop of the long-running services: uvloop, unless MAILCLOAK_EVENT_LOOP=asyncio.

uvloop (libuv, compiled) runs the loop and its sockets for a fraction of the CPU time asyncio's
pure-Python loop takes, which the SMTP conversation and the delivery workers pay per message.
Where uvloop is not installed (it is an optional dependency on platforms without wheels),
asyncio's own loop runs instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("mailcloak.eventloop")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(kind: str) -> LoopFactory:
    """What makes a new loop of `kind` ("uvloop" or "asyncio")."""
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.info("uvloop is not installed; running on asyncio's event loop")
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], *, kind: str | None = None) -> T:
    """Run `main` to completion on a new loop, like asyncio.run; `kind` defaults to the
    MAILCLOAK_EVENT_LOOP setting."""
    if kind is None:
        from mailcloak import settings as mailcloak_settings

        kind = str(mailcloak_settings.get().event_loop)
    with asyncio.Runner(loop_factory=loop_factory(kind)) as runner:
        return runner.run(main)


def running_loop_name() -> str:
    """"uvloop" or "asyncio": which loop runs the calling coroutine (for start-up logs)."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.split(".")[0] == "uvloop" else "asyncio"
