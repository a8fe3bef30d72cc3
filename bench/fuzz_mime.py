"""Malformed MIME through the end-of-DATA path, at scale: every case ends in exactly one state.

    .venv/bin/python bench/fuzz_mime.py                      # 10,000 cases, seed 8
    .venv/bin/python bench/fuzz_mime.py --cases 50000 --seed 9 --json
    .venv/bin/python bench/fuzz_mime.py --corpus ../shared/corpus   # every corpus message

The generator is tests/support/mime_fuzz.py; the path is tests/support/pipeline.py (the forward
check, SPF/DKIM/DMARC/ARC with a loopback DNS server answering NXDOMAIN, the builtin spam
engine, then intake in one transaction) against a throwaway SQLite database. Even cases run
with the shipped spam thresholds (quarantine and DATA-time refusal), odd ones with thresholds
no message reaches (the forward path). A crash is an exception, the 451 that intake answers
for an exception it caught, a spam scan that failed on the content, or a state that does not
match what was stored, a forwarded copy with a header field nobody wrote, or a quarantined
message the quarantine cannot show (tests/support/pipeline.py: check_message). Prints the
counts; the exit status is 1 when anything crashed. With --corpus, the messages of a corpus
run instead, all with the shipped thresholds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORPUS_DIRS = ["spamassassin/ham", "spamassassin/spam", "modern-ham", "modern-spam"]
LENIENT = {"MAILCLOAK_SPAM_QUARANTINE_SCORE": "1000", "MAILCLOAK_SPAM_REJECT_SCORE": "2000"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--start", type=int, default=0, help="index of the first case")
    parser.add_argument("--corpus", type=Path, help="run the messages of this corpus instead "
                        "(../shared/corpus: spamassassin/{ham,spam}, modern-{ham,spam})")
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    args = parser.parse_args()

    from tests.support.dns_server import DnsServer

    dns_server = DnsServer().start()
    os.environ.update(MAILCLOAK_DATA_DIR=tempfile.mkdtemp(prefix="mailcloak-fuzz-"),
                      MAILCLOAK_DOMAINS="alias.test", MAILCLOAK_LOG_LEVEL="error",
                      MAILCLOAK_DNS_SERVERS=dns_server.nameserver)
    os.environ.pop("MAILCLOAK_DATABASE_URL", None)
    from mailcloak.cli import setup_django

    setup_django()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    cases = (from_corpus(args.corpus) if args.corpus
             else generated(args.seed, args.start, args.cases))
    summary = run(cases)
    dns_server.stop()
    print_summary(summary, args)
    return 1 if summary["crashes"] else 0


def generated(seed: int, start: int, count: int) -> Iterator[tuple[str, bytes, bool]]:
    """(name, content, lenient thresholds) for each generated case."""
    from tests.support import mime_fuzz

    for number, case in enumerate(mime_fuzz.cases(seed, count, start=start)):
        yield case.name, case.content, number % 2 == 1


def from_corpus(root: Path) -> Iterator[tuple[str, bytes, bool]]:
    """Every message of the corpus under `root`, line ends made CRLF, shipped thresholds."""
    from tests.support.mime_fuzz import crlf

    from mailcloak.mail.spam import corpus

    directories = [root / name for name in CORPUS_DIRS if (root / name).is_dir()]
    for message in corpus.read(directories, []):
        yield f"{message.path.parent.name}/{message.path.name}", crlf(message.raw), False


def run(cases: Iterable[tuple[str, bytes, bool]]) -> dict[str, object]:
    from tests.support.pipeline import check_message

    from mailcloak import settings as mailcloak_settings
    from mailcloak.accounts.services import create_user_with_mailbox
    from mailcloak.aliases.services import create_alias

    alias = create_alias(create_user_with_mailbox("owner@mailbox.test", password="x" * 20))
    states: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    crashes: list[str] = []
    started = time.monotonic()
    for number, (name, content, lenient) in enumerate(cases, 1):
        set_thresholds(lenient=lenient)
        mailcloak_settings.reset()
        result, problem = check_message(content, alias)
        if problem or result is None:
            crashes.append(f"{name}: {problem}")
            continue
        states[result.state] += 1
        if result.state == "rejected":
            codes[f"{result.reply.code} {result.reply.status}"] += 1
        if number % 1000 == 0:
            print(f"{number} cases, {time.monotonic() - started:.0f} s", file=sys.stderr)
    return {"cases": sum(states.values()) + len(crashes), "forwarded": states["forwarded"],
            "quarantined": states["quarantined"], "rejected": states["rejected"],
            "rejected_by_reply": dict(codes), "crashes": len(crashes),
            "crashed_cases": crashes[:50], "seconds": round(time.monotonic() - started, 1),
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


def set_thresholds(*, lenient: bool) -> None:
    for name, value in LENIENT.items():
        if lenient:
            os.environ[name] = value
        else:
            os.environ.pop(name, None)


def print_summary(summary: dict[str, object], args: argparse.Namespace) -> None:
    source = args.corpus or f"seed {args.seed}, from case {args.start}"
    print(f"cases {summary['cases']} ({source}): "
          f"forwarded {summary['forwarded']}, quarantined {summary['quarantined']}, "
          f"rejected {summary['rejected']} {summary['rejected_by_reply']}, "
          f"crashes {summary['crashes']}; {summary['seconds']} s, "
          f"max RSS {summary['max_rss_mb']} MB")
    for line in summary["crashed_cases"]:  # type: ignore[attr-defined]
        print("  crash:", line)
    if args.json:
        print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
