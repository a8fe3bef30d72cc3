"""bench/sustained.py's parts: the open-loop schedule, the sink record read as it grows, the
memory figures read from /proc and fitted, the tracemalloc hook, and the final counts."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bench.openloop import Plan, Sending, SmtpClientSession, paced_session
from bench.procmem import (
    Snapshots,
    descendants,
    memory,
    mib_per_minute,
    postgres_postmaster,
    total_memory,
)
from bench.sustained import Arrivals, memory_report, summarise, too_steep, write_samples

from tests.support.sink import SmtpSink

ALIASES = ["a@alias.bench", "b@alias.bench"]


def plan(rate: float = 10, duration: float = 2, sessions: int = 3) -> Plan:
    return Plan(rate=rate, duration=duration, sessions=sessions, size=1024, aliases=ALIASES)


def test_the_sessions_share_the_schedule_between_them_each_message_once() -> None:
    schedule = plan(rate=10, duration=2, sessions=3)

    shares = [list(schedule.session_share(n)) for n in range(3)]

    assert sorted(i for share in shares for i in share) == list(range(20))
    assert shares[1][:3] == [1, 4, 7]
    assert schedule.due(7) == pytest.approx(0.7)
    assert schedule.due_by(-1) == 0
    assert schedule.due_by(0.55) == 6  # messages 0..5 are due by then
    assert schedule.due_by(60) == 20


def test_messages_a_server_accepts_are_timed_and_its_refusals_kept() -> None:
    schedule = Plan(rate=40, duration=0.5, sessions=2, size=1024,
                    aliases=["ok@alias.bench", "gone@alias.bench"])
    sending = Sending(started=time.time())
    with SmtpSink(reject=["gone@alias.bench"]) as sink:
        async def both() -> None:
            await asyncio.gather(*(paced_session(n, schedule, SmtpClientSession(*sink.address),
                                                 sending) for n in range(2)))
        asyncio.run(both())

    assert sending.sent >= 2  # the first two were due at once
    received = {int(m.content.split(b"X-Bench-Id: ")[1].split(b"\r\n")[0]) for m in sink.messages}
    assert set(sending.accepted) == received
    assert all(index % 2 == 0 for index in received)
    assert len(sending.failures) == sending.sent - len(received)
    assert sending.failures[0].startswith("1: 550 5.1.1")
    assert all("550 5.1.1" in failure for failure in sending.failures)


def test_a_server_slower_than_the_schedule_leaves_messages_unsent_and_says_so() -> None:
    schedule = plan(rate=100, duration=0.5, sessions=1)  # 50 due; each reply waits 0.25 s
    sending = Sending(started=time.time())
    with SmtpSink(delay=0.25) as sink:
        asyncio.run(paced_session(0, schedule, SmtpClientSession(*sink.address), sending))

    assert sending.sent < schedule.scheduled
    assert max(sending.lateness) > 0.2
    assert len(sending.accepted) == sending.sent == len(sink.messages)


async def serve_two_messages_per_connection(reader: asyncio.StreamReader,
                                           writer: asyncio.StreamWriter) -> None:
    """A server whose command limit ends each session after two messages, the way
    `mailcloak smtpd` does: 421 to the next MAIL, then it closes."""
    writer.write(b"220 limited.test ESMTP\r\n")
    messages = 0
    while line := await reader.readline():
        command = line[:4].upper()
        if command == b"MAIL" and messages == 2:
            writer.write(b"421 4.7.0 Too many commands, closing connection\r\n")
            await writer.drain()
            break
        if command == b"DATA":
            writer.write(b"354 go ahead\r\n")
            while await reader.readline() != b".\r\n":
                pass
            messages += 1
        if command == b"QUIT":
            writer.write(b"221 bye\r\n")
            break
        writer.write(b"250 ok\r\n")
    writer.close()


def test_a_session_the_server_ends_between_messages_is_opened_again() -> None:
    schedule = plan(rate=10, duration=0.5, sessions=1)  # 5 messages, due 0.1 s apart
    sending = Sending(started=time.time())

    async def run() -> None:
        server = await asyncio.start_server(serve_two_messages_per_connection, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            await paced_session(0, schedule, SmtpClientSession("127.0.0.1", port), sending)

    asyncio.run(run())

    assert sending.sent >= 3  # the third needed a new session
    assert sending.failures == []
    assert sorted(sending.accepted) == list(range(sending.sent))


def test_the_sink_record_is_read_as_it_grows_counting_repeats(tmp_path: Path) -> None:
    path = tmp_path / "sink.jsonl"
    arrivals = Arrivals(path)
    arrivals.poll()  # nothing written yet
    with path.open("w") as out:
        out.write(json.dumps({"id": 1, "t": 10.0}) + "\n" + '{"id": 2, "t"')
    arrivals.poll()
    assert arrivals.first == {1: 10.0}
    with path.open("a") as out:
        out.write(': 11.0}\n' + json.dumps({"id": 1, "t": 12.0}) + "\n")
    arrivals.poll()

    assert arrivals.first == {1: 10.0, 2: 11.0}
    assert arrivals.repeats == {1: 1}


def test_slope_is_fitted_in_mib_per_minute() -> None:
    growing = [(t, 1000 + 2048 * t / 60) for t in range(0, 300, 5)]  # 2 MiB a minute

    assert mib_per_minute(growing) == pytest.approx(2.0)
    assert mib_per_minute([(t, 500.0) for t in range(10)]) == 0
    assert mib_per_minute([(0, 1.0), (5, 2.0)]) is None


def test_memory_is_read_for_a_process_tree_and_gone_processes_are_left_out() -> None:
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(30)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        own = memory(os.getpid())
        assert own is not None and own.rss_kib >= own.anon_kib > 0
        assert descendants(parent.pid) == [child]
        both = total_memory([parent.pid, child])
        one = memory(parent.pid)
        assert both is not None and one is not None and both.rss_kib > one.rss_kib
    finally:
        parent.kill()
        parent.wait()
    assert memory(parent.pid) is None
    assert total_memory([parent.pid]) is None


def test_the_postgres_cluster_is_found_by_its_port() -> None:
    port = 50000 + os.getpid() % 10000
    fake = subprocess.Popen(["/opt/fake/bin/postgres", "-c", "import time; time.sleep(30)",
                             "-c", f"port={port}"], executable=sys.executable)
    try:
        deadline = time.monotonic() + 10
        while postgres_postmaster(port) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert postgres_postmaster(port) == fake.pid
        assert postgres_postmaster(port + 1) is None
    finally:
        fake.kill()
        fake.wait()


def test_tracemalloc_snapshots_name_the_line_that_keeps_memory(tmp_path: Path) -> None:
    program = tmp_path / "hoarder.py"
    program.write_text(  # it frees more than it keeps: what it keeps must still be named
        "import sys\n"
        "kept, scratch = [], bytearray(16 << 20)\n"
        "print('ready', flush=True)\n"
        "for line in sys.stdin:\n"
        "    kept.append(bytearray(4 << 20))\n"
        "    scratch = None\n"
        "    print('grew', flush=True)\n")
    snapshots = Snapshots(tmp_path)
    process = subprocess.Popen([sys.executable, str(program)],
                               env=os.environ | snapshots.environment(1),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdin is not None and process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        snapshots.take([process.pid], timeout=20)
        process.stdin.write("more\n")
        process.stdin.flush()
        assert process.stdout.readline() == "grew\n"
        snapshots.take([process.pid], timeout=20)
        report = snapshots.growth({process.pid: "hoarder"})
    finally:
        process.kill()
        process.wait()

    assert report[0].startswith(f"hoarder (pid {process.pid})")
    assert "+4096" in report[1]
    assert report[2].strip() == f"{program}:5"


def test_summary_counts_lost_and_duplicated_mail_over_the_steady_part(tmp_path: Path) -> None:
    schedule = plan(rate=2, duration=10, sessions=1)
    sending = Sending(started=1000.0, accepted={1: 1001.0, 5: 1005.0, 6: 1006.0, 7: 1007.0},
                      lateness=[0.0] * 18)
    arrivals = Arrivals(tmp_path / "none")
    arrivals.first = {1: 1001.5, 5: 1005.1, 6: 1006.3, 9: 1009.0}
    arrivals.repeats.update({5: 2})
    rows: list[dict[str, float | str]] = [
        {"t": float(t), "phase": "send", "backlog": t % 3, "rss_worker_mib": 50 + t / 60}
        for t in range(0, 11)]

    summary = summarise(schedule, sending, arrivals, rows, warmup=4)

    assert summary["never_sent"] == 2
    assert summary["accepted_per_s"] == pytest.approx(3 / 6, abs=0.05)
    assert summary["delivered_per_s"] == pytest.approx(3 / 6, abs=0.05)
    assert summary["latency_p50_ms"] == pytest.approx(200)  # of 5 and 6: 7 never arrived
    assert summary["lost"] == 1 and summary["lost_first"] == [7]
    assert summary["duplicated"] == 2
    assert summary["delivered_without_250"] == 1
    assert summary["rss"] == {"worker": {"start_mib": 50.1, "end_mib": 50.2,
                                         "slope_mib_per_min": 1.0,
                                         "later_half_slope_mib_per_min": 1.0}}


def test_memory_report_fits_each_process_over_the_rows_given() -> None:
    minutes = range(0, 8 * 60, 60)
    rows: list[dict[str, float | str]] = [
        {"t": float(t), "rss_smtpd_mib": 70.0 + min(t, 180) / 60, "rss_worker_mib": 60 + t / 30}
        for t in minutes]

    report = memory_report(rows)

    assert report["worker"] == {"start_mib": 60.0, "end_mib": 74.0, "slope_mib_per_min": 2.0,
                                "later_half_slope_mib_per_min": 2.0}
    overall = report["smtpd"]["slope_mib_per_min"]
    assert overall is not None and overall > 0.3  # grew for 3 minutes, then flat
    assert report["smtpd"]["later_half_slope_mib_per_min"] == 0


def test_samples_are_written_with_every_column_seen(tmp_path: Path) -> None:
    path = tmp_path / "samples.csv"
    write_samples(path, [{"t": 1.0, "rss_worker_mib": 60.0},
                         {"t": 2.0, "rss_worker_mib": 61.0, "rss_smtpd.1_mib": 70.0}])

    with path.open() as samples:
        rows = list(csv.DictReader(samples))
    assert rows[0] == {"t": "1.0", "rss_worker_mib": "60.0", "rss_smtpd.1_mib": ""}
    assert rows[1]["rss_smtpd.1_mib"] == "70.0"


def test_only_a_mailcloak_process_still_growing_in_the_later_half_fails_the_run() -> None:
    def figures(overall: float, later: float) -> dict[str, float]:
        return {"slope_mib_per_min": overall, "later_half_slope_mib_per_min": later}

    warming = {"rss": {"worker": figures(3.0, 0.1), "postgres": figures(9.0, 9.0)}}
    leaking = {"rss": {"worker": figures(3.0, 0.1), "smtpd.2": figures(1.5, 1.5)}}

    assert not too_steep(warming, 1.0)
    assert too_steep(leaking, 1.0)
    assert not too_steep(leaking, None)
