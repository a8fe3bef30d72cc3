"""RCPT TO latency at scale: the same SMTP server answers with 1,000 and with 1,000,000 aliases.

    scripts/with-postgres .venv/bin/python bench/rcpt_scale.py --json
    scripts/with-postgres .venv/bin/python bench/rcpt_scale.py --aliases 200000 --rcpts 5000
    scripts/with-postgres .venv/bin/python bench/rcpt_scale.py --drop-index blocked_sender_idx

PostgreSQL only (it refuses SQLite and a database that already holds aliases). Starts `mailcloak
smtpd` on loopback with a fresh data directory, fills the alias table with bulk SQL (`INSERT ...
SELECT generate_series`): addresses like the random ones Mailcloak issues, owned by a few users,
one in 16 disabled (half of those set to drop mail), and block rules in proportion: one user is
a heavy blocker with two rules (a domain, an address) for every thousand aliases, for all their
aliases, and one alias in 200 blocks an address of its own. At each size EXPLAIN ANALYZE shows
how many rows each query of the RCPT decision reads, then times RCPT TO round trips over
real SMTP sessions (one command at a time, no pipelining): random existing aliases, unknown
addresses on the alias domain, blocked senders, and other domains (relay denied). Every reply is
checked against what the alias's state calls for.

Prints p50/p99/max per size and per kind of recipient, and with --json one JSON line at the end.
`--drop-index NAME` measures without one of the indexes, to see what it is worth. Exit status 1
when a reply was wrong, a session failed, or a query of the RCPT decision read over 1,000 rows.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.load import free_port, percentile, wait_for_port  # noqa: E402
from bench.scale_support import (  # noqa: E402
    ALIAS_DOMAIN,
    MAILCLOAK,
    Stack,
    database_url_or_exit,
    drop_indexes,
    execute,
    explain_all,
    refuse_used_database,
    vacuum_analyze,
)

RCPTS_PER_SESSION = 10  # well under the server's 20 refusals per connection
INSERT_CHUNK = 250_000
# Which alias indexes carry which block rules (alias i belongs to user i % users). The rules
# for all of a user's aliases belong to user 0, the heavy blocker.
DOMAIN_RULE, ADDRESS_RULE, PER_ALIAS_RULE = (1000, 3), (1000, 5), (200, 7)
HEAVY_BLOCKER = 0
KIND_WEIGHTS = {"alias": 65, "unknown": 20, "blocked": 10, "relay": 5}


# Alias i: its address and its state come from one hash, in Python as in SQL, so that the
# state does not follow the owner (i % users).
HASH_SQL = "md5('bench-alias-' || i)"
ADDRESS_SQL = f"substr({HASH_SQL}, 1, 16) || '@{ALIAS_DOMAIN}'"
ENABLED_SQL = f"substr({HASH_SQL}, 17, 1) <> '0'"  # one in 16 disabled
DROPS_SQL = f"substr({HASH_SQL}, 18, 1) < '8'"  # half of those drop mail, half refuse it


def alias_hash(index: int) -> str:
    return hashlib.md5(f"bench-alias-{index}".encode()).hexdigest()


def alias_address(index: int) -> str:
    return f"{alias_hash(index)[:16]}@{ALIAS_DOMAIN}"


def is_enabled(index: int) -> bool:
    return alias_hash(index)[16] != "0"


def drops_when_disabled(index: int) -> bool:
    return alias_hash(index)[17] < "8"


@dataclass
class Population:
    """The users and the aliases filled in so far (indexes 0 .. size-1)."""

    user_ids: list[int]
    mailbox_ids: list[int]
    domain_id: int
    size: int = 0

    @classmethod
    def create(cls, users: int) -> Population:
        from mailcloak.accounts.services import create_user_with_mailbox
        from mailcloak.aliases.models import Domain
        from mailcloak.aliases.services import sync_configured_domains

        sync_configured_domains()
        owners = [create_user_with_mailbox(f"owner{n}@mailbox.bench") for n in range(users)]
        return cls([u.pk for u in owners], [u.mailboxes.get().pk for u in owners],
                   Domain.objects.get(name=ALIAS_DOMAIN).pk)

    def grow_to(self, size: int) -> float:
        """Insert aliases self.size .. size-1 with their block rules; returns seconds taken."""
        started = time.monotonic()
        for start in range(self.size, size, INSERT_CHUNK):
            self._insert(start, min(size, start + INSERT_CHUNK) - 1)
            print(f"  {min(size, start + INSERT_CHUNK):,} aliases", flush=True)
        self.size = size
        from mailcloak.aliases.models import Alias, BlockedSender

        vacuum_analyze(Alias._meta.db_table, BlockedSender._meta.db_table)
        return time.monotonic() - started

    def _insert(self, first: int, last: int) -> None:
        from mailcloak.aliases.models import Alias, BlockedSender

        owner = "(%s::bigint[])[mod(i, %s) + 1]"
        execute(
            f"""INSERT INTO {Alias._meta.db_table} (address, domain_id, user_id, mailbox_id,
                    enabled, disabled_action, title, display_name, notes, created_at,
                    forwarded_count, blocked_count, replied_count)
                SELECT {ADDRESS_SQL}, %s, {owner}, {owner}, {ENABLED_SQL},
                       CASE WHEN {DROPS_SQL} THEN 'drop' ELSE 'reject' END, '', '', '',
                       now() - mod(i, 5000) * interval '1 hour', 0, 0, 0
                FROM generate_series(%s, %s) AS i""",
            [self.domain_id, self.user_ids, len(self.user_ids), self.mailbox_ids,
             len(self.user_ids), first, last])
        every, at = DOMAIN_RULE
        every2, at2 = ADDRESS_RULE
        execute(
            f"""INSERT INTO {BlockedSender._meta.db_table} (user_id, alias_id, kind, value,
                    created_at)
                SELECT %s, NULL::bigint, 'domain', 'spam' || i || '.bench', now()
                FROM generate_series(%s, %s) AS i WHERE mod(i, {every}) = {at}
                UNION ALL
                SELECT %s, NULL::bigint, 'address', 'spammer@junk' || i || '.bench', now()
                FROM generate_series(%s, %s) AS i WHERE mod(i, {every2}) = {at2}
                """,
            [self.user_ids[HEAVY_BLOCKER], first, last, self.user_ids[HEAVY_BLOCKER], first, last])
        every, at = PER_ALIAS_RULE
        execute(
            f"""INSERT INTO {BlockedSender._meta.db_table} (user_id, alias_id, kind, value,
                    created_at)
                SELECT a.user_id, a.id, 'address', 'pest@nuisance' || i || '.bench', now()
                FROM generate_series(%s, %s) AS i
                JOIN {Alias._meta.db_table} a ON a.address = {ADDRESS_SQL}
                WHERE mod(i, {every}) = {at}""",
            [first, last])


# --- what to ask and what the answer must be ------------------------------------------------


@dataclass(frozen=True)
class Probe:
    address: str
    expected: str  # "550 5.1.1"
    kind: str


@dataclass(frozen=True)
class Session:
    sender: str
    probes: list[Probe]


def replies_expected() -> dict[str, str]:
    from mailcloak.mail import replies

    catalogue = {"ok": replies.RECIPIENT_OK, "unknown": replies.UNKNOWN_RECIPIENT,
                 "blocked": replies.SENDER_BLOCKED, "relay": replies.RELAY_DENIED}
    return {name: f"{reply.code} {reply.status}" for name, reply in catalogue.items()}


class Planner:
    """Random SMTP sessions whose every reply is known in advance."""

    def __init__(self, population: Population, rng: random.Random) -> None:
        self.size = population.size
        self.users = len(population.user_ids)
        self.rng = rng
        self.reply = replies_expected()

    def sessions(self, rcpts: int) -> list[Session]:
        kinds, weights = zip(*KIND_WEIGHTS.items(), strict=True)
        planned: list[Session] = []
        total = 0
        while total < rcpts:
            session = getattr(self, f"_{self.rng.choices(kinds, weights)[0]}")()
            planned.append(session)
            total += len(session.probes)
        return planned

    def _for_alias(self, index: int, blocked: bool, kind: str) -> Probe:
        if not is_enabled(index):
            name = "ok" if drops_when_disabled(index) else "unknown"
        else:
            name = "blocked" if blocked else "ok"
        return Probe(alias_address(index), self.reply[name], kind)

    def _alias(self) -> Session:
        sender = f"friend{self.rng.randrange(1000)}@sender.bench"
        return Session(sender, [self._for_alias(self.rng.randrange(self.size), False, "alias")
                                for _ in range(RCPTS_PER_SESSION)])

    def _unknown(self) -> Session:
        sender = f"friend{self.rng.randrange(1000)}@sender.bench"
        return Session(sender, [
            Probe(f"nx{self.rng.getrandbits(64):016x}@{ALIAS_DOMAIN}", self.reply["unknown"],
                  "unknown") for _ in range(RCPTS_PER_SESSION)])

    def _relay(self) -> Session:
        sender = f"friend{self.rng.randrange(1000)}@sender.bench"
        return Session(sender, [
            Probe(f"someone{self.rng.randrange(10**6)}@elsewhere.example", self.reply["relay"],
                  "relay") for _ in range(RCPTS_PER_SESSION)])

    def _blocked(self) -> Session:
        """A sender blocked by one user's rule, to that user's aliases; or one blocked for a
        single alias, to that alias and to another of its owner's (which takes the mail)."""
        rule = self.rng.choice([DOMAIN_RULE, ADDRESS_RULE, PER_ALIAS_RULE])
        every, at = rule
        index = at + every * self.rng.randrange(max(1, (self.size - at) // every))
        if rule is PER_ALIAS_RULE:
            other = self._alias_of(index % self.users)
            return Session(f"pest@nuisance{index}.bench", [
                self._for_alias(index, True, "blocked"),
                self._for_alias(other, other == index, "blocked")])
        sender = (f"anyone@mail.spam{index}.bench" if rule is DOMAIN_RULE
                  else f"spammer@junk{index}.bench")
        return Session(sender, [self._for_alias(self._alias_of(HEAVY_BLOCKER), True, "blocked")
                                for _ in range(RCPTS_PER_SESSION)])

    def _alias_of(self, user: int) -> int:
        return user + self.users * self.rng.randrange(max(1, (self.size - user) // self.users))


# --- the SMTP client --------------------------------------------------------------------------


@dataclass
class Timings:
    by_kind: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    wrong: list[str] = field(default_factory=list)

    def all(self) -> list[float]:
        return [t for values in self.by_kind.values() for t in values]


async def run_session(port: int, session: Session, timings: Timings | None) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def command(line: str) -> str:
        writer.write(line.encode() + b"\r\n")
        return await reply()

    async def reply() -> str:
        while True:
            line = (await reader.readline()).decode()
            if len(line) < 4 or line[3] != "-":
                return line.strip()

    try:
        await reply()
        await command("EHLO rcpt.bench")
        answer = await command(f"MAIL FROM:<{session.sender}>")
        if not answer.startswith("250"):
            raise ConnectionError(f"MAIL FROM:<{session.sender}>: {answer}")
        for probe in session.probes:
            started = time.perf_counter()
            answer = await command(f"RCPT TO:<{probe.address}>")
            elapsed = time.perf_counter() - started
            if timings is None:
                continue
            timings.by_kind[probe.kind].append(elapsed)
            if not answer.startswith(probe.expected):
                timings.wrong.append(f"{session.sender} -> {probe.address}: {answer!r}, "
                                     f"expected {probe.expected}")
        await command("QUIT")
    finally:
        writer.close()


async def drive(port: int, sessions: list[Session], concurrency: int,
                timings: Timings | None) -> None:
    queue: asyncio.Queue[Session] = asyncio.Queue()
    for session in sessions:
        queue.put_nowait(session)

    async def client() -> None:
        while not queue.empty():
            session = queue.get_nowait()
            try:
                await run_session(port, session, timings)
            except (OSError, ConnectionError) as exc:
                if timings is not None:
                    timings.wrong.append(f"session from {session.sender}: {exc}")

    await asyncio.gather(*(client() for _ in range(concurrency)))


def figures(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"count": 0}
    return {"count": len(values), "p50_ms": round(1000 * statistics.median(values), 3),
            "p99_ms": round(1000 * percentile(values, 0.99), 3),
            "max_ms": round(1000 * max(values), 3)}


# --- the RCPT queries, planned by PostgreSQL --------------------------------------------------


def explain_rcpt(population: Population, show: bool) -> list[str]:
    from mailcloak.mail import policy
    from mailcloak.mail.addresses import Address

    def decide(sender: str, recipient: str) -> policy.Decision:
        (s_local, _, s_domain), (r_local, _, r_domain) = (
            sender.rpartition("@"), recipient.rpartition("@"))
        return policy.decide(Address(s_local, s_domain), Address(r_local, r_domain))

    users = len(population.user_ids)
    # Enabled aliases in the middle of the table: one of the heavy blocker's, one of another's.
    heavy = next(i for i in range(population.size // 2 // users * users, population.size, users)
                 if is_enabled(i))
    other = next(i for i in range(heavy + 1, population.size) if is_enabled(i))
    rule = DOMAIN_RULE[1] + DOMAIN_RULE[0] * ((population.size // DOMAIN_RULE[0]) // 2)
    pest = next(i for i in range(PER_ALIAS_RULE[1], population.size, PER_ALIAS_RULE[0])
                if is_enabled(i))
    cases = {
        "alias, sender not blocked": ("friend@sender.bench", alias_address(other)),
        "heavy blocker's alias, sender not blocked": ("friend@sender.bench",
                                                      alias_address(heavy)),
        "heavy blocker's alias, sender's domain blocked": (f"x@mail.spam{rule}.bench",
                                                           alias_address(heavy)),
        "alias, sender blocked for this alias": (f"pest@nuisance{pest}.bench",
                                                 alias_address(pest)),
        "unknown address": ("friend@sender.bench", f"nobody-here@{ALIAS_DOMAIN}"),
    }
    problems: list[str] = []
    for label, (sender, recipient) in cases.items():
        problems += explain_all(f"RCPT {label} ({population.size:,} aliases)",
                                lambda s=sender, r=recipient: decide(s, r), show=show)
    return problems


# --- the bench --------------------------------------------------------------------------------


def measure(port: int, population: Population, args: argparse.Namespace,
            rng: random.Random) -> tuple[dict[str, object], list[str]]:
    planner = Planner(population, rng)
    asyncio.run(drive(port, planner.sessions(args.warmup), args.sessions, None))
    timings = Timings()
    started = time.monotonic()
    asyncio.run(drive(port, planner.sessions(args.rcpts), args.sessions, timings))
    elapsed = time.monotonic() - started
    result: dict[str, object] = {"aliases": population.size, **figures(timings.all()),
                                 "rcpt_per_s": round(len(timings.all()) / elapsed, 1)}
    result["by_kind"] = {kind: figures(values) for kind, values in sorted(timings.by_kind.items())}
    return result, timings.wrong


def print_result(result: dict[str, object]) -> None:
    print(f"{result['aliases']:>10,} aliases: {result['count']} RCPTs, p50 {result['p50_ms']} ms, "
          f"p99 {result['p99_ms']} ms, max {result['max_ms']} ms, {result['rcpt_per_s']} RCPT/s")
    by_kind = result["by_kind"]
    assert isinstance(by_kind, dict)
    for kind, values in by_kind.items():
        print(f"{'':>20}{kind:>8}: {values}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000, help="aliases for the first pass")
    parser.add_argument("--aliases", type=int, default=1_000_000, help="aliases for the second")
    parser.add_argument("--rcpts", type=int, default=20_000, help="RCPTs timed at each size")
    parser.add_argument("--warmup", type=int, default=1000, help="RCPTs sent first, not timed")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=2, help="concurrent SMTP sessions")
    parser.add_argument("--smtp-processes", type=int, default=1)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--show-plans", action="store_true", help="print the query plans")
    parser.add_argument("--drop-index", action="append", default=[], metavar="NAME",
                        help="measure without this index (dropped after migrating)")
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    args = parser.parse_args()
    database_url_or_exit()

    from tests.support.dns_server import DnsServer

    rng = random.Random(args.seed)
    port = free_port("127.0.0.1")
    results: list[dict[str, object]] = []
    wrong: list[str] = []
    problems: list[str] = []
    with DnsServer() as dns_server, Stack.fresh(
            SMTP_LISTEN=f"127.0.0.1:{port}", DNS_SERVERS=dns_server.nameserver,
            SMTP_PROCESSES=str(args.smtp_processes)) as stack:
        stack.mailcloak("migrate")
        stack.setup_django()
        refuse_used_database()
        drop_indexes(args.drop_index)
        population = Population.create(args.users)
        stack.start(MAILCLOAK, "smtpd")
        wait_for_port("127.0.0.1", port)
        for size in (args.small, args.aliases):
            print(f"filling the alias table up to {size:,}")
            seconds = population.grow_to(size)
            print(f"  done in {seconds:.1f} s")
            problems += explain_rcpt(population, args.show_plans)
            result, errors = measure(port, population, args, rng)
            result["fill_s"] = round(seconds, 1)
            print_result(result)
            results.append(result)
            wrong += errors
    for line in (wrong + problems)[:10]:
        print("FAILED:", line)
    report = {"bench": "rcpt_scale", "database": "postgresql", "sessions": args.sessions,
              "results": results, "wrong_replies": len(wrong), "plan_problems": problems}
    if args.json:
        print(json.dumps(report))
    return 1 if wrong or problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
