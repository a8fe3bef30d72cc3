"""Spam accuracy side by side: the builtin engine, Rspamd and SpamAssassin on the same folds.

    .venv/bin/python bench/spam_compare.py --folds 5 --sample 400
    .venv/bin/python bench/spam_compare.py --corpus modern --engines rspamd,spamassassin --json

For each corpus (the SpamAssassin public corpus, and modern-ham with modern-spam) the messages
are split into folds exactly as `mailcloak spam eval` splits them (mailcloak.mail.spam.corpus:
near-identical messages grouped, groups dealt to folds by a seeded shuffle, spam and ham
balanced per fold). For each fold every engine starts from an empty Bayes database, learns the
other folds, and scans the held-out fold: the builtin engine through mailcloak.mail.spam.evaluate,
Rspamd through its controller (learn) and /checkv2 (scan), SpamAssassin through sa-learn (learn)
and spamd (scan). Blocked means quarantined or rejected at the configured thresholds
(MAILCLOAK_SPAM_QUARANTINE_SCORE and _REJECT_SCORE: 5 and 10 points unless set).

The daemons are real (Debian's packages, scripts/install-spam-daemons) and run on loopback with
their own configuration: Rspamd's DNS is an empty loopback server and spamd runs local tests
only, so no network check is made, as for the builtin engine. The corpora carry no SMTP
envelope, so Rspamd's checks of the sending host (HELO, reverse DNS, resolvable From and link
domains) are off too: with no envelope and no DNS they would add the same points to every
message. Spam is hostile content: it is
only ever handed to the engines as bytes; no link in it is opened.

`--sample N` keeps at most N ham and N spam per corpus (the same ones every run: those whose
file names hash lowest): spamd scans a few messages a second.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # tests.support.daemons starts the daemons

from tests.support.daemons import (  # noqa: E402
    RspamdDaemon,
    SpamdDaemon,
    missing,
    running_redis,
    running_rspamd,
    running_spamd,
)

from mailcloak import settings as mailcloak_settings  # noqa: E402
from mailcloak.mail.spam import corpus, evaluate  # noqa: E402
from mailcloak.mail.spam.engine import base_thresholds  # noqa: E402
from mailcloak.mail.spam.rspamd import RspamdEngine  # noqa: E402
from mailcloak.mail.spam.spamassassin import SpamAssassinEngine  # noqa: E402
from mailcloak.mail.spam.verdict import (  # noqa: E402
    EngineUnavailable,
    ScanRequest,
    SpamEngine,
    Thresholds,
)

CORPORA = {
    "spamassassin": (("spamassassin/ham",), ("spamassassin/spam",)),
    "modern": (("modern-ham",), ("modern-spam",)),
}
ENGINES = ("builtin", "rspamd", "spamassassin")
STOCK_MIN_LEARNS = 200  # what Rspamd and SpamAssassin ask for before their Bayes counts
LEARN_CONCURRENCY = 4


@dataclass
class Result:
    corpus: str
    engine: str
    folds: int
    n_ham: int
    n_spam: int
    spam_recall: float
    ham_fp_rate: float
    precision: float
    recall_at_fp_0_5: float
    median_ms: float
    p99_ms: float
    errors: int = 0  # messages the engine could not scan (counted as delivered)


# --- corpora and folds ---------------------------------------------------------------------------


def load_corpus(base: Path, name: str, sample: int) -> list[corpus.CorpusMessage]:
    ham_dirs, spam_dirs = CORPORA[name]
    messages = corpus.read([base / d for d in ham_dirs], [base / d for d in spam_dirs])
    if not sample:
        return messages
    kept = []
    for is_spam in (False, True):
        group = [m for m in messages if m.is_spam == is_spam]
        group.sort(key=lambda m: hashlib.sha256(m.path.name.encode()).hexdigest())
        kept += sorted(group[:sample], key=lambda m: str(m.path))
    return kept


def assign_folds(messages: Sequence[corpus.CorpusMessage], folds: int) -> list[int]:
    """The folds `mailcloak spam eval` uses for these messages."""
    prepared = corpus.prepare(messages)
    groups = corpus.near_duplicate_groups([item.signature for item in prepared])
    return corpus.assign_folds([m.is_spam for m in messages], groups, folds)


def split(messages: Sequence[corpus.CorpusMessage], fold_of: Sequence[int],
          fold: int) -> tuple[list[corpus.CorpusMessage], list[corpus.CorpusMessage]]:
    train = [m for m, f in zip(messages, fold_of, strict=True) if f != fold]
    test = [m for m, f in zip(messages, fold_of, strict=True) if f == fold]
    return train, test


# --- scoring -------------------------------------------------------------------------------------


def result_from(name: str, engine: str, folds: int, outcomes: list[evaluate.Outcome],
                thresholds: Thresholds, errors: int = 0) -> Result:
    """The same measures `mailcloak spam eval` reports, for any engine's outcomes."""
    return result_of(name, engine, folds, evaluate.summarise(outcomes, thresholds), errors)


def result_of(name: str, engine: str, folds: int, report: evaluate.Report,
              errors: int = 0) -> Result:
    return Result(corpus=name, engine=engine, folds=folds, n_ham=report.n_ham,
                  n_spam=report.n_spam, spam_recall=report.spam_recall,
                  ham_fp_rate=report.ham_fp_rate, precision=report.precision,
                  recall_at_fp_0_5=report.recall_at_fp_0_5,
                  median_ms=round(report.median_ms, 2), p99_ms=round(report.p99_ms, 2),
                  errors=errors)


async def scan_all(engine: SpamEngine, messages: Sequence[corpus.CorpusMessage],
                   thresholds: Thresholds) -> tuple[list[evaluate.Outcome], int]:
    """Scan one message at a time (the timings are per message, not under load)."""
    outcomes: list[evaluate.Outcome] = []
    errors = 0
    for message in messages:
        started = time.perf_counter()
        try:
            verdict = await engine.scan(ScanRequest(raw=message.raw), thresholds)
        except EngineUnavailable as exc:
            errors += 1
            log(f"  {engine.name} could not scan {message.path.name}: {exc}")
            continue
        elapsed = (time.perf_counter() - started) * 1000
        outcomes.append(evaluate.Outcome(message, verdict.score, verdict.action, elapsed))
    return outcomes, errors


# --- the engines ---------------------------------------------------------------------------------


def run_builtin(name: str, messages: Sequence[corpus.CorpusMessage], folds: int,
                thresholds: Thresholds) -> Result:
    report = evaluate.cross_validate(messages, thresholds, folds=folds, stream=sys.stderr)
    return result_of(name, "builtin", folds, report)


def run_rspamd(daemon: RspamdDaemon, name: str, messages: Sequence[corpus.CorpusMessage],
               fold_of: Sequence[int], folds: int, thresholds: Thresholds) -> Result:
    engine = RspamdEngine(daemon.url, daemon.controller_url, password=daemon.password,
                          timeout=60)
    outcomes: list[evaluate.Outcome] = []
    errors = 0
    for fold in range(folds):
        train, test = split(messages, fold_of, fold)
        daemon.forget_bayes()
        asyncio.run(learn_all(engine, train))
        log(f"  rspamd fold {fold + 1}/{folds}: learned {daemon.bayes_learns()}, "
            f"scanning {len(test)}")
        found, failed = asyncio.run(scan_all(engine, test, thresholds))
        outcomes += found
        errors += failed
    return result_from(name, "rspamd", folds, outcomes, thresholds, errors)


async def learn_all(engine: RspamdEngine, messages: Sequence[corpus.CorpusMessage]) -> None:
    limit = asyncio.Semaphore(LEARN_CONCURRENCY)

    async def learn(message: corpus.CorpusMessage) -> None:
        async with limit:
            await engine.learn(message.raw, is_spam=message.is_spam)

    await asyncio.gather(*(learn(m) for m in messages))


def run_spamassassin(daemon: SpamdDaemon, name: str, messages: Sequence[corpus.CorpusMessage],
                     fold_of: Sequence[int], folds: int, thresholds: Thresholds) -> Result:
    engine = SpamAssassinEngine(daemon.host, daemon.port, timeout=120)
    outcomes: list[evaluate.Outcome] = []
    errors = 0
    for fold in range(folds):
        train, test = split(messages, fold_of, fold)
        daemon.sa_learn("--clear")
        with message_dirs(train) as (ham_dir, spam_dir):
            daemon.sa_learn("--ham", str(ham_dir))
            daemon.sa_learn("--spam", str(spam_dir))
        log(f"  spamassassin fold {fold + 1}/{folds}: learned {daemon.bayes_counts()}, "
            f"scanning {len(test)}")
        found, failed = asyncio.run(scan_all(engine, test, thresholds))
        outcomes += found
        errors += failed
    return result_from(name, "spamassassin", folds, outcomes, thresholds, errors)


@contextmanager
def message_dirs(messages: Sequence[corpus.CorpusMessage]) -> Iterator[tuple[Path, Path]]:
    """The messages as files in a ham and a spam directory that spamd's user can read."""
    root = Path(tempfile.mkdtemp(prefix="mailcloak-bench-learn-"))
    try:
        os.chmod(root, 0o755)
        dirs = root / "ham", root / "spam"
        for directory in dirs:
            directory.mkdir(mode=0o755)
        for index, message in enumerate(messages):
            path = dirs[message.is_spam] / f"{index:06d}.eml"
            path.write_bytes(message.raw)
            path.chmod(0o644)
        yield dirs
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- main ----------------------------------------------------------------------------------------


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def min_learns_for(messages: Sequence[corpus.CorpusMessage], folds: int) -> int:
    """Stock Bayes minimums, lowered only when a sample's training folds are smaller."""
    smallest = min(sum(m.is_spam for m in messages), sum(not m.is_spam for m in messages))
    return max(1, min(STOCK_MIN_LEARNS, smallest * (folds - 1) // folds - 5))


def compare(base: Path, corpora: Sequence[str], engines: Sequence[str], folds: int,
            sample: int) -> list[Result]:
    thresholds = base_thresholds(mailcloak_settings.load(create_secret=False))
    results = []
    for name in corpora:
        messages = load_corpus(base, name, sample)
        log(f"{name}: {sum(not m.is_spam for m in messages)} ham, "
            f"{sum(m.is_spam for m in messages)} spam, {folds} folds")
        fold_of = assign_folds(messages, folds)
        for engine in engines:
            started = time.monotonic()
            results.append(run_engine(engine, name, messages, fold_of, folds, thresholds))
            log(f"  {engine} done in {time.monotonic() - started:.0f} s")
    return results


def run_engine(engine: str, name: str, messages: Sequence[corpus.CorpusMessage],
               fold_of: Sequence[int], folds: int, thresholds: Thresholds) -> Result:
    if engine == "builtin":
        return run_builtin(name, messages, folds, thresholds)
    min_learns = min_learns_for(messages, folds)
    if engine == "rspamd":
        with running_redis() as redis, running_rspamd(redis=redis, hyperscan=True,
                                                      min_learns=min_learns,
                                                      host_checks=False) as rspamd:
            return run_rspamd(rspamd, name, messages, fold_of, folds, thresholds)
    with running_spamd(min_learns=min_learns) as spamd:
        return run_spamassassin(spamd, name, messages, fold_of, folds, thresholds)


def table(results: Sequence[Result]) -> str:
    lines = ["| corpus | engine | ham | spam | spam caught | ham blocked (FP) | precision | "
             "recall at FP <= 0.5% | median ms | p99 ms |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        lines.append(f"| {r.corpus} | {r.engine} | {r.n_ham} | {r.n_spam} | "
                     f"{r.spam_recall:.2%} | {r.ham_fp_rate:.2%} | {r.precision:.2%} | "
                     f"{r.recall_at_fp_0_5:.2%} | {r.median_ms:.2f} | {r.p99_ms:.2f} |"
                     + (f" ({r.errors} not scanned)" if r.errors else ""))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus-dir", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--corpus", action="append", choices=sorted(CORPORA),
                        help="corpus to use (repeatable; default: all)")
    parser.add_argument("--engines", default=",".join(ENGINES),
                        help="comma-separated, from " + ", ".join(ENGINES))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--sample", type=int, default=0,
                        help="at most this many ham and this many spam per corpus (0: all)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON lines")
    args = parser.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if unknown := set(engines) - set(ENGINES):
        parser.error(f"unknown engine: {', '.join(sorted(unknown))}")
    if args.folds < 2:
        parser.error("--folds must be at least 2")
    needed = {"rspamd": ("rspamd", "redis-server"), "spamassassin": ("spamd", "sa-learn")}
    for engine in engines:
        if reason := missing(*needed.get(engine, ())):
            parser.error(f"{engine}: {reason}")
    logging.basicConfig(level=logging.ERROR)  # the engines' per-message warnings stay quiet
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the daemons on the way out
    results = compare(args.corpus_dir, args.corpus or sorted(CORPORA), engines, args.folds,
                      args.sample)
    print(table(results))
    if args.json:
        for result in results:
            print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
