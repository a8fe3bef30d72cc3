"""Traces allocations in a benchmarked process, for bench/procmem.py's Snapshots.

With this directory on PYTHONPATH and BENCH_TRACEMALLOC=N (frames kept per allocation),
Python imports this module at start-up: tracing starts before anything else is imported, and
each SIGUSR2 writes a snapshot to BENCH_TRACEMALLOC_DIR/<pid>-<n>.tracemalloc. Processes
forked later (the SMTP server's children) inherit both. Without BENCH_TRACEMALLOC it does
nothing. The snapshot is written to a temporary name first, so a reader never sees half a file.
"""

from __future__ import annotations

import os
import signal
import tracemalloc
from pathlib import Path
from types import FrameType

_FRAMES = int(os.environ.get("BENCH_TRACEMALLOC", "0") or 0)
_taken: dict[int, int] = {}


def _snapshot(signum: int, frame: FrameType | None) -> None:
    pid = os.getpid()
    number = _taken.get(pid, 0)
    _taken[pid] = number + 1
    target = Path(os.environ["BENCH_TRACEMALLOC_DIR"]) / f"{pid}-{number}.tracemalloc"
    partial = target.with_suffix(".partial")
    tracemalloc.take_snapshot().dump(str(partial))
    partial.rename(target)


if _FRAMES > 0 and os.environ.get("BENCH_TRACEMALLOC_DIR"):
    tracemalloc.start(_FRAMES)
    signal.signal(signal.SIGUSR2, _snapshot)
