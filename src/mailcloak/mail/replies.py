"""The catalogue of every SMTP reply Mailcloak's server sends.

One place for codes and texts: each reply has a stable enhanced status code (RFC 3463), and
`.temporary` says whether the client should try again (4xx) or give up (5xx). aiosmtpd's own
replies for plain protocol errors pass through `with_status_code`, which gives them the enhanced
status code that announcing ENHANCEDSTATUSCODES (RFC 2034) promises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Reply:
    code: int
    status: str  # enhanced status code; empty for the few replies that carry none (354)
    text: str

    @property
    def line(self) -> str:
        return " ".join(part for part in (str(self.code), self.status, self.text) if part)

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 400

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    def with_text(self, **values: str) -> Reply:
        """This reply with its `{placeholders}` filled in."""
        return replace(self, text=self.text.format(**values))


# --- accepted -------------------------------------------------------------------------------

OK = Reply(250, "2.0.0", "Ok")
SENDER_OK = Reply(250, "2.1.0", "Sender ok")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient ok")
OK_QUEUED = Reply(250, "2.0.0", "Ok: queued as {queue_id}")
START_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
HELP = Reply(214, "2.0.0", "Commands: {commands}")  # RFC 5321 4.3.2: help is 214, not 250


def queued(queue_id: str) -> Reply:
    return OK_QUEUED.with_text(queue_id=queue_id)


# --- the envelope: MAIL FROM and RCPT TO ----------------------------------------------------

SENDER_SYNTAX = Reply(501, "5.1.7", "Bad sender address syntax")
RECIPIENT_SYNTAX = Reply(501, "5.1.3", "Bad recipient address syntax")
UNQUALIFIED_RECIPIENT = Reply(501, "5.1.3", "Recipient address must include a domain")
NULL_RECIPIENT = Reply(501, "5.1.3", "The null address is not a recipient")
NON_ASCII_ADDRESS = Reply(553, "5.6.7", "Non-ASCII addresses need the SMTPUTF8 parameter")
UNKNOWN_RECIPIENT = Reply(550, "5.1.1", "No such recipient here")
RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")
SENDER_BLOCKED = Reply(550, "5.7.1", "The recipient does not accept mail from this sender")
FORGED_REPLY = Reply(550, "5.7.1",
                     "Only the alias owner's verified mailbox may send through this address")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
CATCH_ALL_LIMIT = Reply(450, "4.7.1",
                        "Too many new addresses at this domain in a short time; try again later")

# --- the message: DATA ----------------------------------------------------------------------

MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
BARE_LINEFEED = Reply(550, "5.6.0",
                      "Bare CR or LF in message data: every line must end with CRLF")
UNPARSEABLE = Reply(554, "5.6.0", "Message could not be parsed")
SPAM_REJECTED = Reply(550, "5.7.1", "Message refused as spam")
DMARC_REJECTED = Reply(550, "5.7.1",
                       "Message refused: it fails DMARC and the sender's domain asks to reject it")
REPLY_NOT_AUTHENTICATED = Reply(
    550, "5.7.1", "Message refused: From must be the alias owner's verified mailbox, and the "
    "message must pass SPF or DKIM aligned with that mailbox's domain")
SENDING_PAUSED = Reply(550, "5.7.1",
                       "Sending paused: too much mail from this address bounced or was "
                       "reported as spam; contact the operator")
SENDING_LIMIT = Reply(452, "4.7.1",
                      "Sending limit reached ({limit} {what}); try again later")
NO_VALID_RECIPIENTS = Reply(554, "5.5.1", "No valid recipients")

# --- our side failed: the client should try again --------------------------------------------

TEMPORARY_FAILURE = Reply(451, "4.3.0", "Storage temporarily unavailable, try again later")
LOCAL_ERROR = Reply(451, "4.3.0", "Local error in processing, try again later")
SCANNER_UNAVAILABLE = Reply(451, "4.7.1",
                            "Message could not be checked for spam, try again later")

# --- the session ----------------------------------------------------------------------------

BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands: {reason}")
SYNTAX_ERROR = Reply(501, "5.5.4", "Syntax error: {reason}")
TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections, try again later")
TOO_MANY_COMMANDS = Reply(421, "4.7.0", "Too many commands, closing connection")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors, closing connection")
IDLE_TIMEOUT = Reply(421, "4.4.2", "Timeout exceeded, closing connection")
SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, try again later")

GREETING_IDENT = "ESMTP"  # the greeting is "220 <hostname> ESMTP"

# --- aiosmtpd's built-in replies -------------------------------------------------------------

_HAS_STATUS = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}(?: |$)")
_STATUS_FOR_CODE = {
    220: "2.0.0", 221: "2.0.0", 250: "2.0.0", 252: "2.0.0",
    421: "4.3.0", 451: "4.3.0", 452: "4.3.1", 454: "4.7.0",
    500: "5.5.2", 501: "5.5.4", 502: "5.5.1", 503: "5.5.1", 504: "5.5.4",
    530: "5.7.0", 550: "5.0.0", 552: "5.3.4", 553: "5.1.3", 554: "5.0.0", 555: "5.5.4",
}
# aiosmtpd closes the connection after this one; say so the way our catalogue does.
_REPLACED = {"502 5.5.1 Too many unrecognized commands": TOO_MANY_ERRORS}


def with_status_code(line: str) -> str:
    """`line` with an enhanced status code: aiosmtpd's own replies carry none."""
    for prefix, reply in _REPLACED.items():
        if line.startswith(prefix):
            return reply.line
    if _HAS_STATUS.match(line) or not line[:3].isdigit():
        return line
    status = _STATUS_FOR_CODE.get(int(line[:3]))
    if status is None:
        return line
    return f"{line[:3]}{line[3:4] or ' '}{status} {line[4:]}".rstrip()
