"""DMARC (RFC 7489): does the visible From domain vouch for this message, and what does its
owner ask receivers to do when it does not?

The policy record is looked up at the From domain, then at its organisational domain (the
public suffix plus one label, from the public suffix list packaged with authheaders: no list
is ever downloaded at run time). A message passes when SPF or any DKIM signature passes for a
domain aligned with the From domain.
"""

from __future__ import annotations

import functools
import importlib.resources
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from publicsuffix2 import PublicSuffixList

from mailcloak.mail.auth_dkim import DkimResult
from mailcloak.mail.auth_dns import TxtLookups
from mailcloak.mail.auth_spf import SpfResult
from mailcloak.mail.dns import DnsTemporaryError, NoSuchDomain

POLICIES = ("none", "quarantine", "reject")
_STRICTNESS = {policy: rank for rank, policy in enumerate(POLICIES)}


@dataclass(frozen=True)
class DmarcRecord:
    policy: str  # p=
    subdomain_policy: str  # sp=, p= when absent
    adkim: str = "r"  # "r" relaxed (same organisational domain) or "s" strict (same domain)
    aspf: str = "r"
    percent: int = 100  # pct=: the share of failing mail the policy applies to
    testing: bool = False  # t=y (DMARCbis): the owner is only trying the policy out


@dataclass(frozen=True)
class DmarcResult:
    result: str  # pass, fail, none (no policy), temperror or permerror (no usable From)
    domain: str = ""  # the From domain evaluated
    policy: str = ""  # p= of the record found; "" without one
    subdomain_policy: str = ""  # sp= of the record found (p= when it has none)
    record_domain: str = ""  # where the record was found: the From or organisational domain
    spf_aligned: bool = False
    dkim_aligned: bool = False
    disposition: str = "none"  # what to do with this message: none, quarantine or reject

    @property
    def applied_policy(self) -> str:
        """The policy that governs the From domain: sp= when the record is its parent's."""
        return self.subdomain_policy if self.record_domain != self.domain else self.policy


# --- organisational domains ---------------------------------------------------------------------


_suffix_list_lock = threading.Lock()


@functools.cache
def _suffix_list() -> PublicSuffixList:
    # The lock: threads that meet an empty cache together would each build the list (0.15 s).
    with _suffix_list_lock:
        return _read_suffix_list()


@functools.cache
def _read_suffix_list() -> PublicSuffixList:
    resource = importlib.resources.files("authheaders") / "public_suffix_list.txt"
    with resource.open(encoding="utf-8") as handle:
        return PublicSuffixList(handle)


def load_suffix_list() -> None:
    """Read the public suffix list now (about 0.15 s) rather than on the first message."""
    _suffix_list()


def organizational_domain(domain: str) -> str:
    """RFC 7489 3.2: the public suffix (the default rule `*` for unlisted ones) plus one label."""
    domain = domain.lower().rstrip(".")
    suffix = _suffix_list().get_tld(domain) or domain.rpartition(".")[2]
    if domain == suffix or not domain.endswith("." + suffix):
        return domain
    return domain[:-len(suffix) - 1].rpartition(".")[2] + "." + suffix


def aligned(domain: str, from_domain: str, mode: str) -> bool:
    if not domain:
        return False
    if mode == "s":
        return domain == from_domain
    return organizational_domain(domain) == organizational_domain(from_domain)


# --- policy records -----------------------------------------------------------------------------


def _tags(text: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep and name.strip():
            tags.setdefault(name.strip().lower(), value.strip())
    return tags


def is_dmarc(text: str) -> bool:
    """Whether the TXT value starts with the v=DMARC1 tag, as it must."""
    name, _, value = text.split(";", 1)[0].partition("=")
    return name.strip() == "v" and value.strip() == "DMARC1"


def parse_record(text: str) -> DmarcRecord | None:
    """A DMARC record, or None when `text` is not a usable one (RFC 7489 6.3 and 6.6.3)."""
    if not is_dmarc(text):
        return None
    tags = _tags(text)
    policy = tags.get("p", "").lower()
    subdomain_policy = tags.get("sp", policy).lower()
    if policy not in POLICIES or subdomain_policy not in POLICIES:
        if "rua" not in tags:  # 6.6.3: without reporting, an invalid record is no record
            return None
        policy = subdomain_policy = "none"
    return DmarcRecord(
        policy, subdomain_policy,
        adkim="s" if tags.get("adkim", "r").lower() == "s" else "r",
        aspf="s" if tags.get("aspf", "r").lower() == "s" else "r",
        percent=_percent(tags.get("pct", "100")),
        testing=tags.get("t", "n").lower() == "y",
    )


def _percent(text: str) -> int:
    return max(0, min(100, int(text))) if text.isdigit() else 100


def policy_names(from_domains: Sequence[str]) -> list[str]:
    """Every name whose TXT record the evaluation may need, to look them all up at once."""
    names = []
    for domain in from_domains:
        names += [f"_dmarc.{domain}", f"_dmarc.{organizational_domain(domain)}"]
    return list(dict.fromkeys(names))


def _record_at(domain: str, lookups: TxtLookups) -> DmarcRecord | None:
    """The one DMARC record published for `domain`; two or more count as none (6.6.3).
    Raises DnsTemporaryError."""
    try:
        values = lookups.values(f"_dmarc.{domain}")
    except NoSuchDomain:
        return None
    texts = [value.decode("utf-8", "replace") for value in values]
    records = [text for text in texts if is_dmarc(text)]
    return parse_record(records[0]) if len(records) == 1 else None


def find_record(domain: str, lookups: TxtLookups) -> tuple[DmarcRecord, str] | None:
    """(record, where it was found): the From domain first, then its organisational domain."""
    record = _record_at(domain, lookups)
    if record is not None:
        return record, domain
    organizational = organizational_domain(domain)
    if organizational != domain:
        record = _record_at(organizational, lookups)
        if record is not None:
            return record, organizational
    return None


# --- evaluation ---------------------------------------------------------------------------------


def _disposition(policy: str, record: DmarcRecord) -> str:
    """A policy being tried out (t=y) or sampled out (pct=) is applied one step milder."""
    sampled_out = record.percent < 100 and random.random() * 100 >= record.percent
    if (record.testing or sampled_out) and policy != "none":
        return POLICIES[_STRICTNESS[policy] - 1]
    return policy


def evaluate_domain(domain: str, spf: SpfResult, dkim: Sequence[DkimResult],
                    lookups: TxtLookups) -> DmarcResult:
    try:
        found = find_record(domain, lookups)
    except DnsTemporaryError:
        return DmarcResult("temperror", domain)
    if found is None:
        return DmarcResult("none", domain)
    record, record_domain = found
    spf_aligned = spf.result == "pass" and aligned(spf.domain, domain, record.aspf)
    dkim_aligned = any(result.result == "pass" and aligned(result.domain, domain, record.adkim)
                       for result in dkim)
    outcome = DmarcResult("pass", domain, record.policy, record.subdomain_policy, record_domain,
                          spf_aligned, dkim_aligned)
    if spf_aligned or dkim_aligned:
        return outcome
    # A check that could not finish might have passed: never block mail for our DNS trouble.
    if spf.result == "temperror" or any(result.result == "temperror" for result in dkim):
        return DmarcResult("temperror", domain, record.policy, record.subdomain_policy,
                           record_domain)
    return DmarcResult("fail", domain, record.policy, record.subdomain_policy, record_domain,
                       disposition=_disposition(outcome.applied_policy, record))


def evaluate(from_domains: Sequence[str], spf: SpfResult, dkim: Sequence[DkimResult],
             lookups: TxtLookups) -> DmarcResult:
    """The DMARC result for the message. With several From domains each is evaluated and
    the strictest failure wins (RFC 7489 6.6.1)."""
    if not from_domains:
        return DmarcResult("permerror")
    results = [evaluate_domain(domain, spf, dkim, lookups) for domain in from_domains]
    failures = [result for result in results if result.result == "fail"]
    if failures:
        return max(failures, key=lambda result: _STRICTNESS[result.disposition])
    for wanted in ("temperror", "none"):
        for result in results:
            if result.result == wanted:
                return result
    return results[0]
