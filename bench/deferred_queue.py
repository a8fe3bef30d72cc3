"""Fresh mail is not slowed by a deep queue: the same load with an empty queue, then with
100,000 deferred deliveries waiting.

    scripts/with-postgres .venv/bin/python bench/deferred_queue.py --json
    scripts/with-postgres .venv/bin/python bench/deferred_queue.py --deferred 20000 --messages 300
    scripts/with-postgres .venv/bin/python bench/deferred_queue.py --drop-index job_leased_idx

PostgreSQL only (it refuses SQLite and a database that already holds mail). Each pass starts, in
one fresh data directory: a sink MX on 127.0.0.3 (bench/sink.py), `mailcloak smtpd` and
`mailcloak worker` (MAILCLOAK_TRANSPORTS routes the owner's mailbox domain to the sink), sends N
messages to aliases from concurrent SMTP sessions (bench/load.py's client) and waits for all of
them at the sink. Between the two queue states it fills the queue with bulk SQL as real 4xx retries
leave it: messages with their content, and one delivery job each, queued, attempted 1 to 8
times, with the last error and a next attempt 30 to 90 minutes away (so none falls due during
the bench), spread over 200 slow domains. Then EXPLAIN ANALYZE shows how many rows each query of
a worker's cycle (claim, lease renewal, recording outcomes, release) and of the housekeeping
(retention sweep, queue metrics, the operator's deferred list) reads with that queue.

Each queue state gets two passes: "live" (the worker runs while mail comes in: delivered/s and
p50/p99 latency from 250 to arrival at the sink) and "drain" (the worker starts once all of it
is queued: delivered/s from first to last arrival is the worker's own pace, which the SMTP
intake does not cap). Prints both, and with --json one JSON line at the end. `--drop-index NAME`
measures without one of the indexes, to see what it is worth. Exit status 1 when a message was
refused or lost, a deferred job was touched, or a query of the worker's cycle read the deferred
rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.load import (  # noqa: E402
    drive,
    free_port,
    make_message,
    percentile,
    wait_for_arrivals,
    wait_for_port,
)
from bench.scale_support import (  # noqa: E402
    MAILCLOAK,
    Stack,
    database_url_or_exit,
    drop_indexes,
    execute,
    explain_all,
    refuse_used_database,
    vacuum_analyze,
)

MAILBOX_DOMAIN = "mailbox.bench"
OWNER = f"owner@{MAILBOX_DOMAIN}"
DEFERRED_PREFIX = "DEFERRED"  # queue ids of the bulk-loaded messages
SLOW_DOMAINS = 200
LAST_ERROR = "451 4.7.1 Greylisted, please try again later"
WORKER_ID = "bench-explain"


def make_aliases(count: int) -> list[str]:
    from mailcloak.accounts.services import create_user_with_mailbox
    from mailcloak.aliases.services import create_alias

    owner = create_user_with_mailbox(OWNER)
    return [create_alias(owner).address for _ in range(count)]


def fill_deferred(count: int, size: int) -> float:
    """`count` messages waiting for a retry, one job each; returns seconds taken."""
    from mailcloak.aliases.models import Alias
    from mailcloak.mail.models import DeliveryJob, QueuedMessage

    started = time.monotonic()
    alias_ids = list(Alias.objects.values_list("id", flat=True))
    messages, jobs = QueuedMessage._meta.db_table, DeliveryJob._meta.db_table
    execute(
        f"""INSERT INTO {messages} (queue_id, kind, mail_from, content, size, alias_id,
                created_at)
            SELECT '{DEFERRED_PREFIX}' || lpad(i::text, 10, '0'), 'forward',
                   'sender' || mod(i, 5000) || '@sender.bench', %s, %s,
                   (%s::bigint[])[mod(i, %s) + 1], now() - mod(i, 5760) * interval '1 minute'
            FROM generate_series(1, %s) AS i""",
        [make_message(0, size, "alias@alias.bench"), size, alias_ids, len(alias_ids), count])
    execute(
        f"""INSERT INTO {jobs} (message_id, recipient, domain, state, attempts,
                next_attempt_at, expires_at, lease_expires_at, leased_by, last_error,
                last_attempt_at, finished_at, crashes, delivered_to, tls)
            SELECT m.id, 'owner' || mod(m.id, 97) || '@slow' || mod(m.id, {SLOW_DOMAINS})
                       || '.example',
                   'slow' || mod(m.id, {SLOW_DOMAINS}) || '.example', 'queued',
                   1 + mod(m.id, 8),
                   now() + interval '30 minutes' + mod(m.id * 7919, 3600) * interval '1 second',
                   m.created_at + interval '5 days', NULL, '', %s,
                   now() - mod(m.id, 3600) * interval '1 second', NULL, 0, '', NULL
            FROM {messages} m WHERE m.queue_id LIKE %s""",
        [LAST_ERROR, f"{DEFERRED_PREFIX}%"])
    vacuum_analyze(messages, jobs)
    return time.monotonic() - started


def deferred_untouched(count: int) -> bool:
    """Every bulk-loaded job still waits, unleased, as it was loaded."""
    from mailcloak.mail.models import DeliveryJob

    waiting = DeliveryJob.objects.filter(
        message__queue_id__startswith=DEFERRED_PREFIX, state=DeliveryJob.State.QUEUED,
        leased_by="", lease_expires_at__isnull=True, last_error=LAST_ERROR)
    return waiting.count() == count


# --- one pass of fresh mail -------------------------------------------------------------------


@dataclass(frozen=True)
class Ports:
    smtp: int
    sink: int


def fresh_load(stack: Stack, queue: str, aliases: list[str], ports: Ports,
               args: argparse.Namespace, *, drain: bool) -> dict[str, object]:
    """Send the fresh messages and wait for them at the sink. With `drain` the worker starts
    only once all are queued, and delivered/s is the worker's alone (first to last arrival);
    otherwise it runs throughout, and the latency is from 250 to arrival."""
    mode = "drain" if drain else "live"
    results = stack.data_dir / f"sink-{len(list(stack.data_dir.glob('sink-*')))}.jsonl"
    stack.start(sys.executable, str(HERE / "sink.py"), "127.0.0.3", str(ports.sink),
                str(results))
    stack.start(MAILCLOAK, "smtpd")
    if not drain:
        stack.start(MAILCLOAK, "worker")
    try:
        wait_for_port("127.0.0.1", ports.smtp)
        wait_for_port("127.0.0.3", ports.sink)
        accepted, failures, started = asyncio.run(
            drive("127.0.0.1", ports.smtp, args.messages, args.sessions, args.size, aliases))
        accept_done = time.time()
        if drain:
            stack.start(MAILCLOAK, "worker")
        arrivals = wait_for_arrivals(results, set(accepted), accept_done + args.timeout)
    finally:
        stack.stop()
    first = started if not drain else min(arrivals.values(), default=accept_done)
    last = max(arrivals.values(), default=accept_done)
    report: dict[str, object] = {
        "queue": queue, "mode": mode, "accepted": len(accepted), "refused": len(failures),
        "delivered": len(arrivals), "lost": len(set(accepted) - set(arrivals)),
        "accepted_per_s": round(len(accepted) / max(accept_done - started, 1e-9), 1),
        "delivered_per_s": round(len(arrivals) / max(last - first, 1e-9), 1),
    }
    if not drain:
        latencies = [arrivals[i] - accepted[i] for i in arrivals if i in accepted] or [0.0]
        report["latency_p50_ms"] = round(1000 * statistics.median(latencies), 1)
        report["latency_p99_ms"] = round(1000 * percentile(latencies, 0.99), 1)
    print(f"{queue:>18}, {mode:>5}: " + ", ".join(
        f"{k} {v}" for k, v in report.items() if k not in ("queue", "mode")), flush=True)
    for failure in failures[:5]:
        print("  refused:", failure)
    return report


def both_modes(stack: Stack, queue: str, aliases: list[str], ports: Ports,
               args: argparse.Namespace) -> list[dict[str, object]]:
    return [fresh_load(stack, queue, aliases, ports, args, drain=drain)
            for drain in (False, True)]


# --- the queue's queries, planned by PostgreSQL -----------------------------------------------


def enqueue_due(count: int) -> None:
    """Fresh mail for the owner, due now, next to the deferred rows."""
    from mailcloak.mail.queue import enqueue

    for index in range(count):
        enqueue(kind="forward", mail_from="friend@sender.bench", recipients=[OWNER],
                content=make_message(index, 2048, OWNER))


def worker_cycle() -> None:
    """What a worker asks the database for a batch: claim, renew, record, release."""
    from mailcloak.mail.deliver import Delivered, TemporaryFailure
    from mailcloak.mail.jobs import WORKER_LEASE, claim_deliveries, release_leases, renew_leases
    from mailcloak.mail.worker import Outcome, record_outcomes

    deliveries = claim_deliveries(WORKER_ID, 16, WORKER_LEASE)
    renew_leases(WORKER_ID, WORKER_LEASE)
    # All delivered but the first, which is deferred again.
    outcomes = [Outcome(delivery, b"", [
        TemporaryFailure(r, LAST_ERROR) if index == 0
        else Delivered(r, "sink.bench[127.0.0.3]:25", False, "250 2.0.0 Ok")
        for r in delivery.recipients]) for index, delivery in enumerate(deliveries)]
    record_outcomes(outcomes, WORKER_ID)
    release_leases(WORKER_ID)


def explain_queue(show: bool) -> list[str]:
    from django.utils import timezone

    from mailcloak.mail.retention import prune_delivery_records
    from mailcloak.observability import figures, operator

    now = timezone.now()
    problems = explain_all("a worker's cycle with 20 due jobs and the deferred queue",
                           worker_cycle, max_rows=2000, setup=lambda: enqueue_due(20),
                           show=show)
    problems += explain_all("retention sweep", lambda: prune_delivery_records(now),
                            max_rows=2000, show=show)
    # These count or list the waiting jobs: reading them all is their job. Reported only.
    explain_all("queue metrics (reads every waiting job)", lambda: figures.queue_state(now),
                max_rows=None, show=show)
    explain_all("delivery metrics of the last hour",
                lambda: figures.deliveries(now - timedelta(hours=1)), max_rows=None, show=show)
    explain_all("operator's deferred list (first 200)",
                lambda: list(operator.deferred_jobs()[:operator.SHOWN]), max_rows=None,
                show=show)
    return problems


# --- the bench --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deferred", type=int, default=100_000, help="deferred jobs loaded")
    parser.add_argument("--messages", type=int, default=1000, help="fresh messages per pass")
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--aliases", type=int, default=20)
    parser.add_argument("--smtp-processes", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--show-plans", action="store_true", help="print the query plans")
    parser.add_argument("--drop-index", action="append", default=[], metavar="NAME",
                        help="measure without this index (dropped after migrating)")
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    args = parser.parse_args()
    database_url_or_exit()

    from tests.support.dns_server import DnsServer

    ports = Ports(smtp=free_port("127.0.0.1"), sink=free_port("127.0.0.3"))
    with DnsServer() as dns_server, Stack.fresh(
            SMTP_LISTEN=f"127.0.0.1:{ports.smtp}", DNS_SERVERS=dns_server.nameserver,
            SMTP_PROCESSES=str(args.smtp_processes),
            TRANSPORTS=f"{MAILBOX_DOMAIN}=[127.0.0.3]:{ports.sink}") as stack:
        stack.mailcloak("migrate")
        stack.setup_django()
        refuse_used_database()
        drop_indexes(args.drop_index)
        aliases = make_aliases(args.aliases)
        passes = both_modes(stack, "empty queue", aliases, ports, args)
        print(f"loading {args.deferred:,} deferred deliveries")
        print(f"  done in {fill_deferred(args.deferred, args.size):.1f} s")
        problems = explain_queue(args.show_plans)
        passes += both_modes(stack, f"{args.deferred:,} deferred", aliases, ports, args)
        untouched = deferred_untouched(args.deferred)
    if not untouched:
        problems.append("deferred jobs were claimed, finished or changed")
    for problem in problems:
        print("FAILED:", problem)
    report = {"bench": "deferred_queue", "database": "postgresql", "deferred": args.deferred,
              "messages": args.messages, "sessions": args.sessions, "size": args.size,
              "passes": passes, "plan_problems": problems}
    if args.json:
        print(json.dumps(report))
    lost = any(p["lost"] or p["refused"] for p in passes)
    return 1 if lost or problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
