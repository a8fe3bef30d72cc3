"""Sustained load: a fixed offered rate for minutes, with delivery and memory sampled over time.

    .venv/bin/python bench/sustained.py --rate 60 --duration 300 --samples samples.csv
    scripts/with-postgres .venv/bin/python bench/sustained.py --rate 250 --duration 90

Starts the stack bench/load.py measures (a sink MX on 127.0.0.3, `mailcloak smtpd` with several
SMTP processes, `mailcloak worker`, a loopback DNS server; SQLite, or PostgreSQL when
MAILCLOAK_DATABASE_URL names one), then sends open loop: message i is due at i / rate seconds,
and the sessions take turns, each keeping its own schedule. A session waits only for the
replies SMTP makes it wait for; when the server is slower than the schedule the session falls
behind, and the run reports by how much (and what was never sent) instead of quietly measuring
a lower rate. Every --interval seconds it samples: accepted, delivered (first arrivals at the
sink), the backlog between them, how far sending is behind schedule, and VmRSS of each
Mailcloak process and of the PostgreSQL cluster (its RssAnon too).

At the end it prints the rates over the steady part (after --warmup), accept-to-delivery
latency, each process's RSS at the start and end of the steady part with the least-squares
slope in MiB per minute, lost and duplicated counts, and one JSON line. Exit status 1 when a
message that got its 250 never arrived, or when --max-rss-slope is given and a Mailcloak
process grew faster over the later half of the steady part.

BENCH_TRACEMALLOC=N (frames per allocation) traces allocations in the Mailcloak processes,
takes snapshots at the end of the warm-up and of sending, and prints the allocation sites that
grew most (tracing slows the processes: run it at a lower rate).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.load import HERE, MAILBOX_DOMAIN, harness_loop_run, percentile  # noqa: E402
from bench.openloop import Plan, Sending, SmtpClientSession, paced_session  # noqa: E402
from bench.procmem import (  # noqa: E402
    KIB_PER_MIB,
    Memory,
    Snapshots,
    children,
    descendants,
    memory,
    mib_per_minute,
    postgres_postmaster,
    total_memory,
)
from tests.support.processes import (  # noqa: E402
    Deployment,
    free_port,
    fresh_database,
    wait_for_port,
)

NOT_PROCESSES = {"mailcloak", "postgres", "postgres_anon"}  # sums, or not ours


class Arrivals:
    """The sink's record, read as it grows: first arrival time by message, and repeats."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.first: dict[int, float] = {}
        self.repeats: Counter[int] = Counter()

    def poll(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as records:
            records.seek(self.offset)
            chunk = records.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
        self.offset += len(complete)
        for line in complete.splitlines():
            record = json.loads(line)
            if record["id"] in self.first:
                self.repeats[record["id"]] += 1
            else:
                self.first[record["id"]] = record["t"]


@dataclass
class Watched:
    """The processes whose memory is sampled, by name (smtpd, smtpd.1, worker, postgres)."""

    smtpd: int
    workers: list[int]
    postmaster: int | None

    def mailcloak_pids(self) -> dict[int, str]:
        names = {self.smtpd: "smtpd"}
        names |= {pid: f"smtpd.{n}" for n, pid in enumerate(children(self.smtpd), 1)}
        for n, pid in enumerate(self.workers, 1):
            names[pid] = "worker" if len(self.workers) == 1 else f"worker.{n}"
        return names

    def sample(self) -> dict[str, float]:
        """MiB by name; `postgres` sums the cluster's processes, `postgres_anon` their RssAnon."""
        found: dict[str, Memory] = {}
        for pid, name in self.mailcloak_pids().items():
            one = memory(pid) if name.startswith("smtpd") else total_memory(
                [pid, *descendants(pid)])
            if one is not None:
                found[name] = one
        values = {name: one.rss_kib / KIB_PER_MIB for name, one in found.items()}
        values["mailcloak"] = sum(values.values())
        if self.postmaster is not None:
            cluster = total_memory([self.postmaster, *descendants(self.postmaster)])
            if cluster is not None:  # the sum moves with the number of backends, see the row
                values["postgres"] = cluster.rss_kib / KIB_PER_MIB
                values["postgres_anon"] = cluster.anon_kib / KIB_PER_MIB
        return values


@dataclass
class Sampler:
    plan: Plan
    sending: Sending
    arrivals: Arrivals
    watched: Watched
    rows: list[dict[str, float | str]] = field(default_factory=list)

    def take(self, phase: str) -> dict[str, float | str]:
        self.arrivals.poll()
        now = time.time()
        elapsed = now - self.sending.started
        accepted = len(self.sending.accepted)
        undelivered = len(self.sending.accepted.keys() - self.arrivals.first.keys())
        row: dict[str, float | str] = {
            "t": round(elapsed, 2), "phase": phase,
            "scheduled": self.plan.due_by(elapsed) if phase == "send" else self.plan.scheduled,
            "sent": self.sending.sent, "accepted": accepted,
            "delivered": accepted - undelivered, "backlog": undelivered,
            "refused": len(self.sending.failures),
            "load_1min": os.getloadavg()[0],  # other work on the machine shows here
        }
        if self.watched.postmaster is not None:
            row["postgres_processes"] = 1 + len(descendants(self.watched.postmaster))
        row["behind_s"] = round((int(row["scheduled"]) - self.sending.sent) / self.plan.rate, 2)
        row |= {f"rss_{name}_mib": round(mib, 2) for name, mib in self.watched.sample().items()}
        self.rows.append(row)
        return row

    async def every(self, interval: float, phase: str, stop: asyncio.Event) -> None:
        while not stop.is_set():
            print(_progress(self.take(phase)), flush=True)
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


def _progress(row: dict[str, float | str]) -> str:
    return (f"t={row['t']:>7}s {row['phase']:<5} sent={row['sent']:>7} "
            f"accepted={row['accepted']:>7} delivered={row['delivered']:>7} "
            f"backlog={row['backlog']:>6} refused={row['refused']:>5} "
            f"behind={row['behind_s']:>6}s load={row['load_1min']:.1f} "
            f"rss mailcloak={row.get('rss_mailcloak_mib', 0):.0f} MiB")


async def send_and_sample(plan: Plan, host: str, port: int, sampler: Sampler,
                          interval: float, snapshot_at_warmup: float | None,
                          snapshots: Snapshots | None) -> None:
    stop = asyncio.Event()
    sampling = asyncio.create_task(sampler.every(interval, "send", stop))
    work = [paced_session(n, plan, SmtpClientSession(host, port), sampler.sending)
            for n in range(plan.sessions)]
    if snapshots is not None and snapshot_at_warmup is not None:
        work.append(_snapshot_later(snapshot_at_warmup, snapshots, sampler.watched))
    await asyncio.gather(*work)
    stop.set()
    await sampling


async def _snapshot_later(delay: float, snapshots: Snapshots, watched: Watched) -> None:
    await asyncio.sleep(delay)
    await asyncio.to_thread(snapshots.take, watched.mailcloak_pids())


def drain(sampler: Sampler, interval: float, timeout: float, stall: float) -> None:
    """Sample until everything accepted has arrived, nothing arrives for `stall` seconds, or
    `timeout` seconds pass."""
    deadline = time.time() + timeout
    progress_at, delivered = time.time(), -1
    while time.time() < deadline and time.time() - progress_at < stall:
        row = sampler.take("drain")
        print(_progress(row), flush=True)
        if row["backlog"] == 0:
            return
        if int(row["delivered"]) > delivered:
            progress_at, delivered = time.time(), int(row["delivered"])
        time.sleep(interval)


def steady_rows(rows: list[dict[str, float | str]], warmup: float,
                duration: float) -> list[dict[str, float | str]]:
    return [row for row in rows if row["phase"] == "send" and warmup <= float(row["t"]) <= duration]


def memory_report(rows: list[dict[str, float | str]]) -> dict[str, dict[str, float | None]]:
    """For each sampled process: MiB at the first and last steady sample, the slope over them
    all, and over the later half alone (a leak keeps its slope; a process still warming up
    (caches filling, the allocator reaching its working size) flattens out)."""
    names = sorted({key for row in rows for key in row if key.startswith("rss_")})
    report = {}
    for key in names:
        points = [(float(row["t"]), float(row[key]) * KIB_PER_MIB) for row in rows if key in row]
        if not points:
            continue
        slope, late = mib_per_minute(points), mib_per_minute(points[len(points) // 2:])
        report[key.removeprefix("rss_").removesuffix("_mib")] = {
            "start_mib": round(points[0][1] / KIB_PER_MIB, 1),
            "end_mib": round(points[-1][1] / KIB_PER_MIB, 1),
            "slope_mib_per_min": None if slope is None else round(slope, 3),
            "later_half_slope_mib_per_min": None if late is None else round(late, 3)}
    return report


def summarise(plan: Plan, sending: Sending, arrivals: Arrivals,
              rows: list[dict[str, float | str]], warmup: float) -> dict[str, object]:
    window = max(plan.duration - warmup, 1e-9)
    start, end = sending.started + warmup, sending.started + plan.duration
    steady = {i: t for i, t in sending.accepted.items() if start <= t <= end}
    latencies = [arrivals.first[i] - t for i, t in steady.items() if i in arrivals.first]
    lateness = sending.lateness or [0.0]
    lost = sorted(sending.accepted.keys() - arrivals.first.keys())
    send_rows = [row for row in rows if row["phase"] == "send"]
    steady_samples = steady_rows(rows, warmup, plan.duration)
    loads = [float(row["load_1min"]) for row in steady_samples if "load_1min" in row]
    return {
        "offered_per_s": plan.rate, "duration_s": plan.duration, "warmup_s": warmup,
        "sessions": plan.sessions, "size": plan.size, "scheduled": plan.scheduled,
        "sent": sending.sent, "never_sent": plan.scheduled - sending.sent,
        "behind_schedule_s": {"p50": round(statistics.median(lateness), 3),
                              "p99": round(percentile(lateness, 0.99), 3),
                              "max": round(max(lateness), 3)},
        "accepted": len(sending.accepted), "refused": len(sending.failures),
        "accepted_per_s": round(len(steady) / window, 1),
        "delivered_per_s": round(sum(start <= t <= end for t in arrivals.first.values())
                                 / window, 1),
        "latency_p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "latency_p99_ms": round(1000 * percentile(latencies, 0.99), 1) if latencies else None,
        "backlog_at_end_of_sending": int(send_rows[-1]["backlog"]) if send_rows else None,
        "backlog_max": max((int(row["backlog"]) for row in rows), default=0),
        "load_1min_mean": round(statistics.mean(loads), 2) if loads else None,
        "rss": memory_report(steady_samples),
        "lost": len(lost), "lost_first": lost[:10],
        "duplicated": sum(arrivals.repeats.values()),
        "delivered_without_250": len(arrivals.first.keys() - sending.accepted.keys()),
    }


def print_summary(summary: dict[str, object]) -> None:
    rss = summary.pop("rss")
    for key, value in summary.items():
        print(f"{key:>26}: {value}")
    print(f"{'rss (MiB, steady part)':>26}:")
    assert isinstance(rss, dict)
    for name, figures in rss.items():
        print(f"{name:>26}: {figures['start_mib']:>7} -> {figures['end_mib']:>7}, "
              f"slope {figures['slope_mib_per_min']} MiB/min "
              f"(later half {figures['later_half_slope_mib_per_min']})")
    summary["rss"] = rss


def write_samples(path: Path, rows: list[dict[str, float | str]]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


@dataclass
class Stack:
    deployment: Deployment
    aliases: list[str]
    watched: Watched
    sink_log: Path
    database: str  # sqlite or postgresql


@contextmanager
def stack(args: argparse.Namespace, snapshots: Snapshots | None) -> Iterator[Stack]:
    """bench/load.py's stack: sink MX, loopback DNS, `mailcloak smtpd` and `mailcloak worker`."""
    from tests.support.dns_server import DnsServer

    data_dir = Path(tempfile.mkdtemp(prefix="mailcloak-sustained-"))
    sink_port = free_port("127.0.0.3")
    sink_log = data_dir / "sink.jsonl"
    with DnsServer() as dns_server, fresh_database(data_dir) as database_url:
        sink = subprocess.Popen([sys.executable, str(HERE / "sink.py"), "127.0.0.3",
                                 str(sink_port), str(sink_log)])
        deployment = Deployment(
            data_dir, database_url, domains="alias.bench", log_level="warning",
            transports=f"{MAILBOX_DOMAIN}=[127.0.0.3]:{sink_port}",
            smtp_processes=str(args.smtp_processes), dns_servers=dns_server.nameserver)
        try:
            deployment.cli("migrate")
            deployment.cli("user", "add", f"owner@{MAILBOX_DOMAIN}")
            aliases = [deployment.cli("alias", "add", f"owner@{MAILBOX_DOMAIN}").split()[-1]
                       for _ in range(args.aliases)]
            if snapshots is not None:
                deployment.env |= snapshots.environment(args.tracemalloc_frames)
            smtpd = deployment.start("smtpd", "smtpd")
            workers = [deployment.start(f"worker{n}", "worker") for n in range(args.workers)]
            wait_for_port("127.0.0.3", sink_port)
            postgres = urlsplit(database_url).port if database_url.startswith("postgres") else None
            watched = Watched(smtpd.pid, [w.pid for w in workers],
                              postgres_postmaster(postgres) if postgres else None)
            yield Stack(deployment, aliases, watched, sink_log,
                        "postgresql" if postgres else "sqlite")
        finally:
            deployment.stop_all()
            sink.terminate()
            sink.wait(10)
            _print_warnings(deployment, ["smtpd", *(f"worker{n}" for n in range(args.workers))])
            shutil.rmtree(data_dir, ignore_errors=True)


def _print_warnings(deployment: Deployment, names: list[str], last: int = 5) -> None:
    """The processes log warnings and errors only: show how many, and the last few."""
    for name in names:
        lines = deployment.log(name).splitlines()
        if lines:
            print(f"{name} logged {len(lines)} lines; the last:", *lines[-last:], sep="\n  ")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=250, help="messages per second offered")
    parser.add_argument("--duration", type=float, default=300, help="seconds of sending")
    parser.add_argument("--warmup", type=float, default=60,
                        help="seconds left out of the rates and the memory fit")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--aliases", type=int, default=20)
    parser.add_argument("--smtp-processes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--interval", type=float, default=5, help="seconds between samples")
    parser.add_argument("--drain-timeout", type=float, default=600,
                        help="seconds to wait after sending for the backlog to arrive")
    parser.add_argument("--stall", type=float, default=60,
                        help="stop waiting when nothing arrives for this many seconds")
    parser.add_argument("--samples", type=Path, help="write the samples to this CSV file")
    parser.add_argument("--max-rss-slope", type=float,
                        help="fail when a Mailcloak process grows faster over the later half of "
                        "the steady part (MiB per minute)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or not 0 <= args.warmup < args.duration:
        parser.error("need --rate > 0, --duration > 0 and 0 <= --warmup < --duration")
    args.tracemalloc_frames = int(os.environ.get("BENCH_TRACEMALLOC", "0") or 0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    snapshots = None
    if args.tracemalloc_frames > 0:
        snapshots = Snapshots(Path(tempfile.mkdtemp(prefix="mailcloak-tracemalloc-")))
    with stack(args, snapshots) as running:
        plan = Plan(args.rate, args.duration, args.sessions, args.size, running.aliases)
        sending = Sending(started=time.time() + 1)  # the first message is due in a second
        sampler = Sampler(plan, sending, Arrivals(running.sink_log), running.watched)
        harness_loop_run(send_and_sample(plan, running.deployment.host,
                                         running.deployment.smtp_port, sampler, args.interval,
                                         args.warmup + 1, snapshots))
        if snapshots is not None:
            snapshots.take(running.watched.mailcloak_pids())
        drain(sampler, args.interval, args.drain_timeout, args.stall)
        names = running.watched.mailcloak_pids()
    summary = summarise(plan, sending, sampler.arrivals, sampler.rows, args.warmup)
    summary["database"] = running.database
    print_summary(summary)
    if sending.failures:
        print("first refusals:", *sending.failures[:5], sep="\n  ")
    if snapshots is not None:
        print(*snapshots.growth(names), sep="\n")
        print(f"tracemalloc snapshots: {snapshots.directory}")
    if args.samples:
        write_samples(args.samples, sampler.rows)
    print(json.dumps(summary))
    return 1 if summary["lost"] or too_steep(summary, args.max_rss_slope) else 0


def too_steep(summary: Mapping[str, object], limit: float | None) -> bool:
    rss = summary["rss"]
    assert isinstance(rss, dict)
    late = "later_half_slope_mib_per_min"  # a process still warming up is not a leak
    steep = [name for name, figures in rss.items()
             if limit is not None and name not in NOT_PROCESSES
             and (figures[late] or 0) > limit]
    for name in steep:
        print(f"{name} still grew {rss[name][late]} MiB/min in the later half (limit {limit})")
    return bool(steep)


if __name__ == "__main__":
    raise SystemExit(main())
