"""Labelled mail corpora for training and evaluating the builtin engine.

A corpus is a directory of raw messages, one per file, read as bytes only: spam is hostile
content, and nothing here opens a link or an attachment. Corpora carry traces of how they
were collected and anonymised; the names their owners substituted for the real ones
(example.com, the SpamAssassin corpus's taint.org addresses...) are dropped from the tokens
(`ANONYMISED`), so that no model learns "example.com means spam".

Near-identical messages (the same campaign sent twice, a list message archived twice) are
grouped, so that cross-validation keeps each group inside one fold.
"""

from __future__ import annotations

import random
import re
import sys
import time
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from mailcloak.mail.spam.features import parse
from mailcloak.mail.spam.rules import DEFAULT_RULES, RuleChain
from mailcloak.mail.spam.tokenize import TokenIds, clean_subject, strip_list_additions, tokens

MAX_MESSAGE_BYTES = 20_000_000
_NOT_MESSAGES = re.compile(r"^(?:README|SOURCE|LICENSE|NOTICE|MANIFEST|COPYING)", re.IGNORECASE)
_WORDS = re.compile(r"\w+")
SHINGLE_WORDS = 4
MAX_SHINGLES = 600
SIGNATURE_SIZE = 32
BANDS = 8
NEAR_DUPLICATE_AGREEMENT = 0.75  # share of equal min-hashes, about the Jaccard similarity


class CorpusError(Exception):
    """A corpus directory cannot be read; str() says which and why."""


class AnonymisedNames:
    """Domains that corpus owners put in place of real names (and of the recipient's)."""

    EXACT = frozenset({"localhost", "taint.org", "jmason.org", "netnoteinc.com",
                       "spamassassin.org", "lfdr.de"})
    PREFIXES = ("example.", "example-", "baddomain", "suspicious")

    def __contains__(self, domain: object) -> bool:
        if not isinstance(domain, str):
            return False
        return domain in self.EXACT or domain.startswith(self.PREFIXES)


ANONYMISED = AnonymisedNames()


@dataclass
class CorpusMessage:
    path: Path
    raw: bytes
    is_spam: bool


@dataclass
class Prepared:
    """A message as training needs it: its tokens, and its near-duplicate signature."""

    message: CorpusMessage
    tokens: TokenIds
    signature: tuple[int, ...]
    rule_hits: tuple[tuple[str, float], ...]  # (rule, its own points) for each rule that hit


def read(ham_dirs: Iterable[Path], spam_dirs: Iterable[Path]) -> list[CorpusMessage]:
    messages = [CorpusMessage(path, raw, False) for path, raw in _read_dirs(ham_dirs)]
    messages += [CorpusMessage(path, raw, True) for path, raw in _read_dirs(spam_dirs)]
    return messages


def _read_dirs(dirs: Iterable[Path]) -> Iterator[tuple[Path, bytes]]:
    for directory in dirs:
        if not directory.is_dir():
            raise CorpusError(f"{directory} is not a directory")
        for path in sorted(directory.iterdir()):
            if (path.name.startswith(".") or _NOT_MESSAGES.match(path.name)
                    or not path.is_file() or path.stat().st_size > MAX_MESSAGE_BYTES):
                continue
            yield path, path.read_bytes()


def prepare(messages: Sequence[CorpusMessage], *, progress: Progress | None = None,
            rules: RuleChain | None = None) -> list[Prepared]:
    chain = rules or RuleChain(DEFAULT_RULES)
    prepared = []
    for message in messages:
        view = parse(message.raw)
        ids = tokens(view, masked=ANONYMISED).ids()
        subject, _ = clean_subject(view.subject, view.list_names)
        text = subject + "\n" + strip_list_additions(view.visible_text, view.list_names)
        hits = tuple((reason.code, reason.score) for reason in chain.run(view))
        prepared.append(Prepared(message, ids, signature(text), hits))
        if progress is not None:
            progress.advance()
    return prepared


# --- near-duplicates ------------------------------------------------------------------------

_MASKS = tuple(random.Random(2718).getrandbits(32) for _ in range(SIGNATURE_SIZE))


def signature(text: str) -> tuple[int, ...]:
    """A min-hash signature of the text's word shingles: two texts agree on about as many
    positions as the share of shingles they have in common."""
    words = _WORDS.findall(text.lower())
    if len(words) < SHINGLE_WORDS:
        exact = zlib.crc32(" ".join(words).encode())
        return (exact,) * SIGNATURE_SIZE
    shingles = {zlib.crc32(" ".join(words[i:i + SHINGLE_WORDS]).encode())
                for i in range(min(len(words) - SHINGLE_WORDS + 1, MAX_SHINGLES))}
    return tuple(min(shingle ^ mask for shingle in shingles) for mask in _MASKS)


def near_duplicate_groups(signatures: Sequence[tuple[int, ...]]) -> list[int]:
    """A group number per message; near-identical messages share one."""
    parent = list(range(len(signatures)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    rows = SIGNATURE_SIZE // BANDS
    for band in range(BANDS):
        buckets: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index, sig in enumerate(signatures):
            buckets[sig[band * rows:(band + 1) * rows]].append(index)
        for members in buckets.values():
            first = members[0]
            for other in members[1:]:
                if root(first) != root(other) and _agreement(signatures[first],
                                                             signatures[other]):
                    parent[root(other)] = root(first)
    return [root(index) for index in range(len(signatures))]


def _agreement(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    same = sum(x == y for x, y in zip(a, b, strict=True))
    return same >= NEAR_DUPLICATE_AGREEMENT * SIGNATURE_SIZE


def assign_folds(labels: Sequence[bool], groups: Sequence[int], folds: int,
                 seed: int = 2015) -> list[int]:
    """A fold per message: whole groups go to one fold, and each fold gets about the same
    number of spam and of ham messages."""
    members: dict[int, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    fold_of = [0] * len(labels)
    for label in (False, True):
        label_groups = [m for m in members.values() if labels[m[0]] == label]
        random.Random(seed).shuffle(label_groups)
        label_groups.sort(key=len, reverse=True)  # stable: equal sizes keep the shuffle
        sizes = [0] * folds
        for group_members in label_groups:
            fold = sizes.index(min(sizes))
            sizes[fold] += len(group_members)
            for index in group_members:
                fold_of[index] = fold
    return fold_of


# --- progress -------------------------------------------------------------------------------


class Progress:
    """A progress bar on stderr (a line per quarter when stderr is not a terminal)."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.done = 0
        self.tty = self.stream.isatty()
        self.shown = -1
        self.started = time.monotonic()

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self.tty:
            percent = self.done * 100 // self.total
            if percent != self.shown:
                self.shown = percent
                bar = "#" * (percent // 4)
                self.stream.write(f"\r{self.label} [{bar:<25}] {self.done}/{self.total}")
                self.stream.flush()
        else:
            quarter = self.done * 4 // self.total
            if quarter != self.shown:
                self.shown = quarter
                self.stream.write(f"{self.label}: {self.done}/{self.total}\n")
                self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            elapsed = time.monotonic() - self.started
            self.stream.write(f"\r{self.label} [{'#' * 25}] {self.done}/{self.total} "
                              f"({elapsed:.0f} s)\n")
            self.stream.flush()
