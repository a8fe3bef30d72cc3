"""Authentication outcomes in two forms: an Authentication-Results value (RFC 8601) for
machines, and scored reasons in plain words for the owner's quarantine page.

Values that come from the message (domains, selectors) are quoted when they are not plain
tokens, so a forged signature cannot smuggle text into our header. Scores use the spam
verdict's SpamAssassin-style points: negative for good signs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from mailcloak.mail.arc import ArcResult
from mailcloak.mail.auth_dkim import DkimResult
from mailcloak.mail.auth_dmarc import DmarcResult, organizational_domain
from mailcloak.mail.auth_spf import SpfResult
from mailcloak.mail.spam.verdict import Reason

_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`{|}~-]+$")  # RFC 2045 token without tspecials
_COMMENT_SAFE = re.compile(r"[^A-Za-z0-9 .,:=_+-]")


def _pvalue(text: str) -> str:
    if _TOKEN.match(text):
        return text
    printable = "".join(char for char in text if char.isprintable() and char.isascii())
    return '"' + printable.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment(text: str) -> str:
    return f" ({_COMMENT_SAFE.sub('', text)})" if text else ""


def _spf_part(spf: SpfResult) -> str:
    prop = "smtp.mailfrom" if spf.identity == "mailfrom" else "smtp.helo"
    # The domain alone: RFC 8601 2.7.2 prefers it, and it keeps local parts out of headers.
    return f"spf={spf.result}" + (f" {prop}={_pvalue(spf.domain)}" if spf.domain else "")


def _dkim_part(result: DkimResult) -> str:
    text = f"dkim={result.result}{_comment(result.comment)} header.d={_pvalue(result.domain)}"
    text += f" header.s={_pvalue(result.selector)}"
    if result.algorithm:
        text += f" header.a={_pvalue(result.algorithm)}"
    if result.signature_prefix:
        text += f" header.b={_pvalue(result.signature_prefix)}"
    return text


def _dmarc_part(dmarc: DmarcResult) -> str:
    details = ""
    if dmarc.policy:
        details = f"p={dmarc.policy} sp={dmarc.subdomain_policy} dis={dmarc.disposition}"
    text = f"dmarc={dmarc.result}{_comment(details)}"
    return text + (f" header.from={_pvalue(dmarc.domain)}" if dmarc.domain else "")


def _arc_part(arc: ArcResult) -> str:
    return f"arc={arc.result}{_comment(arc.comment)}"


def authentication_results(authserv_id: str, spf: SpfResult, dkim: Sequence[DkimResult],
                           dmarc: DmarcResult, arc: ArcResult) -> str:
    """The Authentication-Results field value, unfolded."""
    parts = [_spf_part(spf)]
    parts += [_dkim_part(result) for result in dkim] or ["dkim=none"]
    parts += [_dmarc_part(dmarc), _arc_part(arc)]
    return "; ".join([authserv_id, *parts])


def fold(value: str, linesep: str = "\r\n") -> str:
    """The value folded after each result, as a header field can carry it."""
    return value.replace("; ", ";" + linesep + "\t")


# --- reasons ------------------------------------------------------------------------------------

_SPF_REASONS = {
    "pass": ("SPF_PASS", "SPF passed for {domain}", -0.1),
    "fail": ("SPF_FAIL", "SPF failed for {domain}", 2.0),
    "softfail": ("SPF_SOFTFAIL", "SPF soft-failed for {domain}: it does not vouch for the "
                                 "sending server", 1.0),
    "neutral": ("SPF_NEUTRAL", "SPF is neutral for {domain}", 0.0),
    "none": ("SPF_NONE", "{domain} publishes no SPF record", 0.2),
    "temperror": ("SPF_TEMPERROR", "SPF could not be checked for {domain} (DNS error)", 0.0),
    "permerror": ("SPF_PERMERROR", "The SPF record of {domain} is broken", 0.5),
}


def spf_reasons(spf: SpfResult) -> list[Reason]:
    if not spf.domain:
        return [Reason("SPF_NONE", "The sender gave no domain that SPF could check", 0.2)]
    code, text, score = _SPF_REASONS[spf.result]
    subject = spf.domain if spf.identity == "mailfrom" else f"the server name {spf.domain}"
    return [Reason(code, text.format(domain=subject), score)]


def _aligned_with(domain: str, from_domains: Iterable[str]) -> bool:
    return any(organizational_domain(domain) == organizational_domain(sender)
               for sender in from_domains)


def _best_per_domain(dkim: Sequence[DkimResult]) -> dict[str, DkimResult]:
    """One result per signing domain, the best one: a sender signing with both RSA and
    Ed25519 gets credit once, and a second signature a receiver cannot check costs nothing."""
    rank = {"pass": 0, "fail": 1, "permerror": 2, "neutral": 3, "temperror": 4}
    best: dict[str, DkimResult] = {}
    for result in dkim:
        current = best.get(result.domain)
        if current is None or rank.get(result.result, 9) < rank.get(current.result, 9):
            best[result.domain] = result
    return best


def dkim_reasons(dkim: Sequence[DkimResult], from_domains: Sequence[str]) -> list[Reason]:
    if not dkim:
        return [Reason("DKIM_NONE", "The message has no DKIM signature", 0.1)]
    reasons = []
    for domain, result in _best_per_domain(dkim).items():
        if result.result == "pass" and _aligned_with(domain, from_domains):
            reasons.append(Reason("DKIM_VALID_AU", f"DKIM signature by {domain} is valid", -1.0))
        elif result.result == "pass":
            reasons.append(Reason("DKIM_VALID", f"DKIM signature by {domain} is valid, but "
                                                "it is not the sender's domain", -0.1))
        elif result.result == "fail":
            reasons.append(Reason("DKIM_INVALID", f"DKIM signature by {domain} does not verify"
                                                  f" ({result.comment})", 1.0))
        elif result.result == "temperror":
            reasons.append(Reason("DKIM_TEMPERROR", f"DKIM signature by {domain} could not be "
                                                    "checked (DNS error)", 0.0))
        else:
            reasons.append(Reason("DKIM_PERMERROR", f"DKIM signature by {domain} cannot be "
                                                    f"checked ({result.comment})", 0.5))
    return reasons


_DISPOSITION_SCORES = {"reject": 4.0, "quarantine": 3.0, "none": 1.0}


def dmarc_reasons(dmarc: DmarcResult) -> list[Reason]:
    domain = dmarc.domain
    if dmarc.result == "pass":
        return [Reason("DMARC_PASS", f"DMARC passed for {domain}", -0.2)]
    if dmarc.result == "none":
        return [Reason("DMARC_NONE", f"{domain} publishes no DMARC policy", 0.1)]
    if dmarc.result == "temperror":
        return [Reason("DMARC_TEMPERROR", f"DMARC could not be checked for {domain} "
                                          "(DNS error)", 0.0)]
    if dmarc.result == "permerror":
        return [Reason("DMARC_NO_FROM", "The message has no readable sender address (From), "
                                        "so its domain cannot be verified", 1.0)]
    policy, disposition = dmarc.applied_policy, dmarc.disposition
    if policy == "none":
        text = f"DMARC failed for {domain} (its policy asks for no action)"
    else:
        text = f"DMARC policy of {domain} says {policy}"
        if disposition != policy:
            text += f" (applied as {disposition}: the policy is being phased in)"
    return [Reason(f"DMARC_FAIL_{disposition.upper()}", text, _DISPOSITION_SCORES[disposition])]


def arc_reasons(arc: ArcResult) -> list[Reason]:
    if arc.result == "pass":
        return [Reason("ARC_PASS", f"Forwarded through {arc.sealer or 'a server'}, whose ARC "
                                   "seal vouches for the original checks", -0.1)]
    if arc.result == "fail":
        return [Reason("ARC_FAIL", "The forwarding record (ARC chain) is broken", 0.5)]
    return []
