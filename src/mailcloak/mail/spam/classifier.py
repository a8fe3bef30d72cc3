"""A statistical text classifier that learns one message at a time.

For each token it keeps in how many spam and how many ham messages the token was seen.
Scoring follows Gary Robinson's method as SpamBayes uses it: each token's spam probability is
smoothed towards "unknown" when it was seen rarely, the strongest clues are kept, and Fisher's
chi-square combination of their probabilities gives a spam score between 0 and 1 that is
rarely wrong when it is near either end and honestly unsure in between. A message's words
and its form (tokenize.Tokens) are scored apart with the same counts (`score_views`), and
the calibration weighs the two.

Learning is counting, so it is incremental: a user's "spam" / "not spam" adds one message to
the counts (`learn`) and the next scan sees it. Counts are stored in a compact binary file
(never pickle) that loads in a fraction of a second.
"""

from __future__ import annotations

import json
import math
import struct
import sys
import zlib
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path

FORMAT = 1
MAGIC = b"MAILCLOAK-SPAM-MODEL\n"

# Robinson's smoothing: a token seen n times has probability (S*X + n*p) / (S + n).
UNKNOWN_STRENGTH = 0.45   # S: how much weight "unknown" keeps
UNKNOWN_PROBABILITY = 0.5  # X: the probability of a token never seen
MIN_CLUE_STRENGTH = 0.1   # ignore tokens whose probability is within this of 0.5
MAX_CLUES = 150

_LOW = 0xFFFFFFFF


class ModelError(Exception):
    """A model file is missing, damaged or of another format; str() says which and why."""


@dataclass
class TokenCounts:
    """Per token, the number of spam and ham messages that contained it."""

    spam_messages: int = 0
    ham_messages: int = 0
    counts: dict[int, int] = field(default_factory=dict)  # token id -> spam << 32 | ham
    calibration: Calibration = field(default_factory=lambda: Calibration())

    def learn(self, token_ids: Iterable[int], *, is_spam: bool, times: int = 1) -> None:
        """Count one message (`times` < 0 forgets it again)."""
        step = times << 32 if is_spam else times
        counts = self.counts
        for token in set(token_ids):
            value = counts.get(token, 0) + step
            if value > 0:
                counts[token] = value
            else:
                counts.pop(token, None)
        if is_spam:
            self.spam_messages = max(0, self.spam_messages + times)
        else:
            self.ham_messages = max(0, self.ham_messages + times)

    def get(self, token: int) -> tuple[int, int]:
        value = self.counts.get(token, 0)
        return value >> 32, value & _LOW

    def add(self, other: TokenCounts, sign: int = 1) -> None:
        """Add (or with sign=-1 subtract) another set of counts, e.g. one fold's."""
        counts = self.counts
        for token, value in other.counts.items():
            new = counts.get(token, 0) + sign * value
            if new > 0:
                counts[token] = new
            else:
                counts.pop(token, None)
        self.spam_messages += sign * other.spam_messages
        self.ham_messages += sign * other.ham_messages

    def copy(self) -> TokenCounts:
        return TokenCounts(self.spam_messages, self.ham_messages, dict(self.counts),
                           self.calibration)


@dataclass(frozen=True)
class Calibration:
    """How the classifier's probabilities and the rules' hits become points, learned with the
    model (see train.py). Points are `scale` times a logistic model's log-odds, shifted so
    that its decision point (`cut`) lands on the normal quarantine threshold:

        text points = QUARANTINE_POINTS + scale * (bias - cut + text_weight * evidence(words)
                                                   + form_weight * evidence(form))
        rule points = scale * rule_weight(rule) * the rule's own points

    `words` and `form` are the probabilities of the two views of a message's tokens
    (tokenize.Tokens). A model calibrated before the form view (`form_weight` None) scores
    every token as one view, `words`. The default, used before any calibration, keeps each
    rule's own points."""

    bias: float = 0.0
    cut: float = 0.6
    scale: float = 2.0
    text_weight: float = 1.0
    rule_weights: Mapping[str, float] = field(default_factory=dict)
    form_weight: float | None = None

    def text_points(self, words: float, form: float = UNKNOWN_PROBABILITY) -> float:
        return round(_soft_cap(self._uncapped(words, form)), 2)

    def view_points(self, words: float, form: float) -> tuple[float, float]:
        """`text_points` shared between the views, for the verdict's reasons: the form gets
        its part of the evidence (shrunk as the total is when it nears MAX_TEXT_POINTS),
        the words the rest."""
        uncapped = self._uncapped(words, form)
        total = round(_soft_cap(uncapped), 2)  # text_points
        base = QUARANTINE_POINTS + self.scale * (self.bias - self.cut)
        form_points = self.scale * (self.form_weight or 0.0) * text_evidence(form)
        if uncapped > SOFT_TEXT_POINTS and uncapped > base:
            form_points *= min(1.0, max(0.0, (_soft_cap(uncapped) - base) / (uncapped - base)))
        form_points = round(form_points, 2)
        return round(total - form_points, 2), form_points

    def _uncapped(self, words: float, form: float) -> float:
        return QUARANTINE_POINTS + self.scale * (self.bias - self.cut
                                                 + self._evidence(words, form))

    def _evidence(self, words: float, form: float) -> float:
        return (self.text_weight * text_evidence(words)
                + (self.form_weight or 0.0) * text_evidence(form))

    def rule_points(self, rule: str, points: float) -> float:
        return round(self.scale * self.rule_weights.get(rule, DEFAULT_RULE_WEIGHT) * points, 2)

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "bias": self.bias, "cut": self.cut, "scale": self.scale,
            "text_weight": self.text_weight, "rule_weights": dict(self.rule_weights)}
        if self.form_weight is not None:
            data["form_weight"] = self.form_weight
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Calibration:
        weights = data.get("rule_weights") or {}
        if not isinstance(weights, dict):
            raise ValueError("rule_weights is not a mapping")
        form_weight = data.get("form_weight")
        return cls(float(data["bias"]), float(data["cut"]),  # type: ignore[arg-type]
                   float(data["scale"]), float(data["text_weight"]),  # type: ignore[arg-type]
                   {str(k): float(v) for k, v in weights.items()},
                   None if form_weight is None else float(form_weight))  # type: ignore[arg-type]


QUARANTINE_POINTS = 5.0   # the normal quarantine threshold the calibration aims at
MAX_TEXT_POINTS = 9.5     # the text alone never reaches the normal reject threshold
SOFT_TEXT_POINTS = 7.0
DEFAULT_RULE_WEIGHT = 0.5  # with scale 2: a rule's own points
EVIDENCE_LIMIT = 1e-6


def _soft_cap(points: float) -> float:
    """Points above SOFT_TEXT_POINTS approach MAX_TEXT_POINTS, keeping their order."""
    if points <= SOFT_TEXT_POINTS:
        return points
    room = MAX_TEXT_POINTS - SOFT_TEXT_POINTS
    return SOFT_TEXT_POINTS + room * (1.0 - math.exp((SOFT_TEXT_POINTS - points) / room))


def text_evidence(probability: float) -> float:
    """The classifier's probability as log-odds, bounded, on a scale near the rules'."""
    p = min(max(probability, EVIDENCE_LIMIT), 1.0 - EVIDENCE_LIMIT)
    return math.log(p / (1.0 - p)) / 4.0


@dataclass(frozen=True)
class Clue:
    token: int
    probability: float


@dataclass(frozen=True)
class Score:
    probability: float            # 0 = surely ham, 1 = surely spam, 0.5 = no idea
    clues: tuple[Clue, ...] = ()  # the tokens that decided it, strongest first


def token_probability(spam: int, ham: int, spam_total: int, ham_total: int) -> float:
    """Robinson's smoothed probability that a message containing the token is spam."""
    seen = spam + ham
    if seen == 0:
        return UNKNOWN_PROBABILITY
    spam_ratio = spam / spam_total if spam_total else 0.0
    ham_ratio = ham / ham_total if ham_total else 0.0
    raw = spam_ratio / (spam_ratio + ham_ratio) if spam_ratio + ham_ratio else 0.5
    return (UNKNOWN_STRENGTH * UNKNOWN_PROBABILITY + seen * raw) / (UNKNOWN_STRENGTH + seen)


def score(token_ids: Iterable[int], model: TokenCounts,
          learned: Mapping[int, tuple[int, int]] | None = None,
          learned_totals: tuple[int, int] = (0, 0)) -> Score:
    """Spam score of a message's tokens with `model`, plus counts learned on this
    installation (`learned`: token -> (spam, ham), `learned_totals`: messages learned)."""
    spam_total = model.spam_messages + learned_totals[0]
    ham_total = model.ham_messages + learned_totals[1]
    if not spam_total or not ham_total:
        return Score(UNKNOWN_PROBABILITY)
    counts = model.counts
    clues: list[tuple[float, int, float]] = []
    for token in set(token_ids):
        value = counts.get(token, 0)
        spam, ham = value >> 32, value & _LOW
        if learned:
            extra_spam, extra_ham = learned.get(token, (0, 0))
            spam, ham = spam + extra_spam, ham + extra_ham
        if spam + ham == 0:
            continue
        probability = token_probability(spam, ham, spam_total, ham_total)
        strength = abs(probability - 0.5)
        if strength >= MIN_CLUE_STRENGTH:
            clues.append((strength, token, probability))
    clues.sort(reverse=True)
    kept = clues[:MAX_CLUES]
    return Score(_chi_combined([p for _, _, p in kept]),
                 tuple(Clue(token, p) for _, token, p in kept))


@dataclass(frozen=True)
class ViewScores:
    words: Score
    form: Score | None  # None: the model scores every token as one view (`words`)


def score_views(words: Sequence[int], form: Sequence[int], model: TokenCounts,
                learned: Mapping[int, tuple[int, int]] | None = None,
                learned_totals: tuple[int, int] = (0, 0)) -> ViewScores:
    """`score` of each view of a message's tokens, or of all of them as one view when the
    model was calibrated before the form view."""
    if model.calibration.form_weight is None:
        return ViewScores(score([*words, *form], model, learned, learned_totals), None)
    return ViewScores(score(words, model, learned, learned_totals),
                      score(form, model, learned, learned_totals))


def _chi_combined(probabilities: list[float]) -> float:
    """Fisher's combination of the clues' probabilities, as SpamBayes computes it."""
    if not probabilities:
        return UNKNOWN_PROBABILITY
    spam_product = ham_product = 1.0
    spam_exponent = ham_exponent = 0
    for probability in probabilities:
        # Products of many small numbers underflow: keep mantissa and exponent apart.
        spam_product *= 1.0 - probability
        ham_product *= probability
        if spam_product < 1e-200:
            spam_product, exponent = math.frexp(spam_product)
            spam_exponent += exponent
        if ham_product < 1e-200:
            ham_product, exponent = math.frexp(ham_product)
            ham_exponent += exponent
    log2 = math.log(2.0)
    spam_log = math.log(spam_product) + spam_exponent * log2
    ham_log = math.log(ham_product) + ham_exponent * log2
    freedom = 2 * len(probabilities)
    spamminess = 1.0 - _chi2_q(-2.0 * spam_log, freedom)
    hamminess = 1.0 - _chi2_q(-2.0 * ham_log, freedom)
    return (spamminess - hamminess + 1.0) / 2.0


def _chi2_q(chi2: float, freedom: int) -> float:
    """P(X >= chi2) for a chi-square distribution with an even number of degrees of freedom."""
    half = chi2 / 2.0
    term = total = math.exp(-half)
    for index in range(1, freedom // 2):
        term *= half / index
        total += term
    return min(total, 1.0)


# --- the model file -------------------------------------------------------------------------


def save(model: TokenCounts, path: Path, *,
         about: Mapping[str, object] | None = None) -> int:
    """Write `model` to `path`, every token of it. Returns the number of tokens written. The
    file is replaced atomically."""
    kept = sorted(model.counts.items())
    tokens = array("I", (token for token, _ in kept))
    deltas = array("I", (b - a for a, b in zip([0, *tokens[:-1]], tokens, strict=True)))
    spam = array("I", (value >> 32 for _, value in kept))
    ham = array("I", (value & _LOW for _, value in kept))
    header = {"format": FORMAT, "spam_messages": model.spam_messages,
              "ham_messages": model.ham_messages, "tokens": len(kept), **(about or {}),
              "calibration": model.calibration.to_json()}
    body = b"".join(_little_endian(part) for part in (deltas, spam, ham))
    data = MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + zlib.compress(body, 9)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    temporary.replace(path)
    return len(kept)


def load(path: Path) -> TokenCounts:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read the spam model {path}: {exc.strerror}") from None
    return loads(data, source=str(path))


def loads(data: bytes, *, source: str = "model") -> TokenCounts:
    if not data.startswith(MAGIC):
        raise ModelError(f"{source} is not a Mailcloak spam model")
    try:
        header_line, _, compressed = data[len(MAGIC):].partition(b"\n")
        header = json.loads(header_line)
        if header.get("format") != FORMAT:
            raise ModelError(f"{source} has model format {header.get('format')}, "
                             f"this Mailcloak reads format {FORMAT}")
        count = int(header["tokens"])
        body = zlib.decompress(compressed)
        if len(body) != 12 * count:
            raise ValueError("size does not match the token count")
        deltas, spam, ham = (_array_from(body[i * 4 * count:(i + 1) * 4 * count])
                             for i in range(3))
    except (ValueError, KeyError, TypeError, zlib.error, struct.error) as exc:
        raise ModelError(f"{source} is damaged: {exc}") from None
    counts = {token: s << 32 | h
              for token, s, h in zip(accumulate(deltas), spam, ham, strict=True)}
    try:
        stored = header.get("calibration")
        calibration = Calibration.from_json(stored) if stored else Calibration()
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{source} has a damaged calibration: {exc}") from None
    return TokenCounts(int(header["spam_messages"]), int(header["ham_messages"]), counts,
                       calibration)


def read_header(path: Path) -> dict[str, object]:
    """The description stored with a model (message counts, sources)."""
    with path.open("rb") as handle:
        if handle.read(len(MAGIC)) != MAGIC:
            raise ModelError(f"{path} is not a Mailcloak spam model")
        return dict(json.loads(handle.readline()))


def _little_endian(values: array[int]) -> bytes:
    if sys.byteorder == "big":
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _array_from(data: bytes) -> array[int]:
    values = array("I")
    if values.itemsize != 4:  # pragma: no cover - every platform Mailcloak runs on
        raise ValueError("unsigned int is not 32 bits here")
    values.frombytes(data)
    if sys.byteorder == "big":
        values.byteswap()
    return values
