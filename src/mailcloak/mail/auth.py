"""Inbound sender authentication: SPF, DKIM, DMARC and ARC for one message, at end of DATA.

    result = authenticate(raw, peer_ip="192.0.2.1", helo="mx.example.org",
                          mail_from="bounces@example.org")
    if result.dmarc_reject: ...        # 550 5.7.1: the From domain's owner asks for it
    result.authentication_results     # the Authentication-Results value (authserv-id first)
    result.reasons                    # scored Reasons for the spam verdict and the owner

The message is parsed once; every DNS lookup DKIM, ARC and DMARC need starts at once on a
shared thread pool while SPF runs, so the sender waits for the slowest rather than the sum.
All DNS goes through mailcloak.mail.dns.get_resolver(); lookups that fail give `temperror`,
and a temperror never makes a message fail DMARC.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass

from mailcloak import settings as mailcloak_settings
from mailcloak.mail import auth_dns
from mailcloak.mail.arc import ArcResult, key_names, validate_chain
from mailcloak.mail.auth_dkim import DkimResult, find_signatures, verify_signatures
from mailcloak.mail.auth_dkim import key_names as dkim_key_names
from mailcloak.mail.auth_dmarc import DmarcResult, evaluate, load_suffix_list, policy_names
from mailcloak.mail.auth_message import ParsedMessage
from mailcloak.mail.auth_report import (
    arc_reasons,
    authentication_results,
    dkim_reasons,
    dmarc_reasons,
    fold,
    spf_reasons,
)
from mailcloak.mail.auth_spf import SpfResult, check_spf
from mailcloak.mail.dns import get_resolver
from mailcloak.mail.spam.verdict import Reason

__all__ = ["ArcResult", "AuthResult", "DkimResult", "DmarcResult", "SpfResult",
           "authenticate", "authenticate_async", "prepare"]


@dataclass(frozen=True)
class AuthResult:
    spf: SpfResult
    dkim: tuple[DkimResult, ...]  # one per DKIM-Signature, top first; () when unsigned
    dmarc: DmarcResult
    arc: ArcResult
    authentication_results: str  # the header value, unfolded, starting with the authserv-id
    reasons: tuple[Reason, ...]

    @property
    def dmarc_reject(self) -> bool:
        """The From domain fails DMARC and its owner asks receivers to reject such mail:
        the SMTP server answers 550 5.7.1 at DATA."""
        return self.dmarc.result == "fail" and self.dmarc.disposition == "reject"

    @property
    def dmarc_quarantine(self) -> bool:
        """The From domain fails DMARC and its owner asks for quarantine."""
        return self.dmarc.result == "fail" and self.dmarc.disposition == "quarantine"

    @property
    def score(self) -> float:
        return sum(reason.score for reason in self.reasons)

    def header_field(self, linesep: bytes = b"\r\n") -> bytes:
        """The whole Authentication-Results field, folded after each result, ready to be
        prepended to the message."""
        value = fold(self.authentication_results, linesep.decode())
        return b"Authentication-Results: " + value.encode() + linesep


def prepare() -> None:
    """Do the one-off work (the public suffix list) before the first message arrives."""
    load_suffix_list()


def authenticate(raw: bytes, *, peer_ip: str, helo: str, mail_from: str,
                 authserv_id: str = "") -> AuthResult:
    """Authenticate one inbound message as received (`raw`, CRLF or LF line endings).

    `peer_ip` is the connecting client's address, `helo` its EHLO/HELO name and `mail_from`
    the envelope sender ("" for bounces: SPF then checks the HELO name). `authserv_id`
    defaults to MAILCLOAK_HOSTNAME. Blocking: call it from a worker thread, or await
    authenticate_async()."""
    authserv_id = authserv_id or mailcloak_settings.get().hostname
    message = ParsedMessage.parse(raw)
    signatures = find_signatures(message)
    # Every key and policy lookup starts now; SPF's own chain of lookups runs meanwhile here.
    lookups = auth_dns.TxtLookups(get_resolver(), [
        *dkim_key_names(signatures), *key_names(message), *policy_names(message.from_domains)])
    spf = check_spf(peer_ip, helo=helo, mail_from=mail_from)
    dkim = verify_signatures(message, signatures, lookups)
    arc = validate_chain(message, lookups.dkim_dnsfunc)
    dmarc = evaluate(message.from_domains, spf, dkim, lookups)
    reasons = (*spf_reasons(spf), *dkim_reasons(dkim, message.from_domains),
               *dmarc_reasons(dmarc), *arc_reasons(arc))
    return AuthResult(spf, dkim, dmarc, arc,
                      authentication_results(authserv_id, spf, dkim, dmarc, arc), reasons)


async def authenticate_async(raw: bytes, *, peer_ip: str, helo: str, mail_from: str,
                             authserv_id: str = "") -> AuthResult:
    """authenticate() without blocking the event loop."""
    check = functools.partial(authenticate, raw, peer_ip=peer_ip, helo=helo,
                              mail_from=mail_from, authserv_id=authserv_id)
    # Not the loop's default executor: it has a handful of threads, and checks mostly wait.
    return await asyncio.get_running_loop().run_in_executor(auth_dns.check_pool(), check)
