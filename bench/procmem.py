"""Memory of running processes for benchmarks: resident set sizes read from /proc, the fitted
growth of a series of samples, and tracemalloc snapshots of Mailcloak processes compared.

VmRSS is what the process holds now (VmHWM, its high-water mark, cannot show memory coming
back). RssAnon is VmRSS without mapped files and shared memory: for PostgreSQL, whose backends
each count the shared buffers they have touched, it is the figure that shows a leak.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
import tracemalloc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Put this directory first on PYTHONPATH and its sitecustomize traces allocations (see there).
TRACEMALLOC_HOOK = HERE / "memtrace"
KIB_PER_MIB = 1024


@dataclass(frozen=True)
class Memory:
    rss_kib: int  # VmRSS
    anon_kib: int  # RssAnon

    def __add__(self, other: Memory) -> Memory:
        return Memory(self.rss_kib + other.rss_kib, self.anon_kib + other.anon_kib)


NOTHING = Memory(0, 0)


def memory(pid: int) -> Memory | None:
    """VmRSS and RssAnon of one process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    if "VmRSS" not in fields:  # a zombie: no memory left
        return None
    return Memory(int(fields["VmRSS"].split()[0]), int(fields.get("RssAnon", "0 kB").split()[0]))


def children(pid: int) -> list[int]:
    try:
        return sorted(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except (FileNotFoundError, ProcessLookupError):
        return []


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    for child in children(pid):
        found += [child, *descendants(child)]
    return found


def total_memory(pids: Iterable[int]) -> Memory | None:
    """The sum over the processes still there; None when none is."""
    found = [m for m in map(memory, pids) if m is not None]
    return sum(found, NOTHING) if found else None


def postgres_postmaster(port: int) -> int | None:
    """The postmaster serving `port`, found by the `-c port=N` that scripts/with-postgres
    gives it (a cluster started otherwise is not found: its memory is then not sampled)."""
    wanted = f"port={port}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"postgres") and wanted in args:
            return int(entry.name)
    return None


def mib_per_minute(points: Iterable[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, KiB) points, in MiB per minute; None below 3 points."""
    pairs = list(points)
    if len(pairs) < 3 or len({t for t, _ in pairs}) < 2:
        return None
    slope, _ = statistics.linear_regression([t for t, _ in pairs], [kib for _, kib in pairs])
    return slope * 60 / KIB_PER_MIB


class Snapshots:
    """Asks traced processes (started with TRACEMALLOC_HOOK on PYTHONPATH) for tracemalloc
    snapshots, and tells what grew between two of them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.taken: dict[int, list[Path]] = {}

    def environment(self, frames: int) -> dict[str, str]:
        path = os.pathsep.join(filter(None, [str(TRACEMALLOC_HOOK), os.environ.get("PYTHONPATH")]))
        return {"PYTHONPATH": path, "BENCH_TRACEMALLOC": str(frames),
                "BENCH_TRACEMALLOC_DIR": str(self.directory)}

    def take(self, pids: Iterable[int], timeout: float = 120) -> None:
        """One snapshot of each process; waits until all are written (a big heap takes a while)."""
        waiting: dict[int, Path] = {}
        for pid in pids:
            number = len(self.taken.setdefault(pid, []))
            waiting[pid] = self.directory / f"{pid}-{number}.tracemalloc"
            os.kill(pid, signal.SIGUSR2)
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            for pid, path in list(waiting.items()):
                if path.exists():
                    self.taken[pid].append(waiting.pop(pid))
            time.sleep(0.2)
        for pid in waiting:
            print(f"tracemalloc: process {pid} wrote no snapshot in {timeout:.0f} s")

    def growth(self, names: Mapping[int, str], top: int = 10) -> list[str]:
        """The allocation sites that grew most between each process's first and last snapshot."""
        lines: list[str] = []
        for pid, paths in self.taken.items():
            if len(paths) < 2:
                continue
            first, last = (_load(path) for path in (paths[0], paths[-1]))
            lines.append(f"{names.get(pid, pid)} (pid {pid}): traced "
                         f"{_traced_mib(first):.1f} -> {_traced_mib(last):.1f} MiB; grew most at "
                         "(where allocated, then its callers):")
            grew = [stat for stat in last.compare_to(first, "traceback") if stat.size_diff > 0]
            for stat in sorted(grew, key=lambda stat: stat.size_diff, reverse=True)[:top]:
                lines.append(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks")
                lines += [f"      {frame.filename}:{frame.lineno}"
                          for frame in reversed(stat.traceback)]
        return lines


def _load(path: Path) -> tracemalloc.Snapshot:
    return tracemalloc.Snapshot.load(str(path)).filter_traces([
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    ])


def _traced_mib(snapshot: tracemalloc.Snapshot) -> float:
    return sum(stat.size for stat in snapshot.statistics("filename")) / 2**20
