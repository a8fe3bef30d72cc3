"""The words and signals the spam classifier learns from, taken from a parsed message.

Only what a message in a user's inbox really carries becomes a token: words of the subject
and of the visible text, the domains of links and of addresses in the text, how the sender's
program wrote the header and the links (fields only it writes, priority marks, encodings,
shapes of addresses and ids), and a few structural signs (HTML only, attachment types,
hidden text, obfuscated words). Routing and archive headers, list headers, dates and
numbers never do: they describe how a message was collected, not what it is. What a mailing
list adds to a message (its subject tag, its footer, the host's advertisement) is removed
first, and domains that stand for the recipient or were anonymised are dropped (`masked`).

Tokens come in two views that the classifier scores apart (`Tokens`): the words (what the
message says: its subject, its text, the sender's name) and the form (how it was written
and sent: header signs, sender and link domains, layout). Scored together, the strongest
clues of a long message were nearly all words and the few dozen signs of its form weighed
little; scored apart, the calibration weighs each view on its own.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass

from mailcloak.mail.spam.features import (
    MessageView,
    header_text,
    may_contain,
    registered_domain,
    url_host,
)

MIN_WORD, MAX_WORD = 3, 20
MAX_CJK_BIGRAMS = 400

_URL = re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)
# The look-behind starts a match only where a run of address characters starts: without it a
# long run with no "@" is rescanned from every position (quadratic time).
_EMAIL = re.compile(r"(?<![\w.+=-])[\w.+=-]+@((?:[\w-]+\.)+[a-z]{2,})", re.IGNORECASE)
_INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f"
                        "\u202a-\u202e\u2060-\u2064\u206a-\u206f\u3164\ufeff\uffa0]")
_EMOJI = re.compile("[\u2600-\u27bf\U0001f000-\U0001faff]")
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_CJK_RUN = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]{2,}")
_DIGITS = re.compile(r"\d+")
_DIGIT = re.compile(r"\d")
_MONEY = re.compile(r"^[$€£¥]\d|^\d[\d,.]*[$€£¥]$")
_PERCENT = re.compile(r"^\d[\d,.]*%$")
_EDGE_PUNCTUATION = ("\"'`.,;:?()[]{}<>*_=+/\\|~^#&"
                     "\u201c\u201d\u2018\u2019\u00ab\u00bb\u2026\u2013\u2014-")
_SUBJECT_PREFIX = re.compile(r"^\s*((?:re|fwd?|aw|sv|vs|antw|tr)\s*(?:\[\d+\])?:\s*)+",
                             re.IGNORECASE)
_SUBJECT_TAG = re.compile(r"\[([^\[\]]{1,40})\]\s*")
_URL_WORD = re.compile(r"[a-z][a-z0-9]{2,}")
MAX_URL_WORDS = 8
_SUBJECT_TAIL_NUMBER = re.compile(r"\s\d{4,}\s*$|\s[a-zA-Z]{2,4}\d+[a-zA-Z]*\s*$")
_SUBJECT_PADDING = re.compile(r"\S[ \t]{4,}\S|\.{6,}|\S[ \t]{8,}$")
_WORD_SPLIT = re.compile(r"[\s,;()\[\]{}<>\"|]+")  # "addresses,and" is two words
_TOLL_FREE = re.compile(r"\b1?[-. (]*8(?:00|88|77|66|55|44)[-. )]*\d{3}[-. ]*\d{4}\b")
_TOLL_FREE_PREFIX = re.compile(r"8(?:00|88|77|66|55|44)")  # a literal start: a fast search
_PHONE = re.compile(r"\(?\b\d{3}\)?[-. ]\d{3}[-. ]\d{4}\b")
_LETTERS = re.compile(r"[^\W\d_]+")
_BOUNDARY = re.compile(r"boundary=\"?([^\";]+)", re.IGNORECASE)
_VIA_LIST = re.compile(r"\s+via\s+.*$", re.IGNORECASE)
_LATIN = re.compile(r"[a-z]")
_ENCODED_WORD = re.compile(r"=\?([^?]{1,40})\?([bq])\?", re.IGNORECASE)
_ADDRESS = re.compile(r"(?<![\w.+=-])[\w.+=-]+@[\w-]+(?:\.[\w-]+)+")  # look-behind: see _EMAIL
_LETTER_RUN = re.compile(r"[a-z]+")
_DIGIT_RUN = re.compile(r"\d+")
# Fields that only the sender's program writes: replies' threading, the organisation, the
# program's own marks. Routing, list and mailbox fields are left out: they say how a message
# travelled and was collected, not what it is.
_SENDER_FIELDS = ("in-reply-to", "references", "organization", "x-accept-language",
                  "thread-index", "content-class", "x-face", "x-operating-system", "x-url",
                  "x-originating-ip", "mime-version", "x-mimeole", "content-disposition")
_SENDER_VALUES = ("x-priority", "x-msmail-priority", "importance")
_LOOKALIKE = re.compile("[\u0250-\u02af\u0370-\u03ff\u0400-\u04ff\u1d00-\u1dbf]")

# Text that list hosts add to every message: platform footers and the hosts' advertisements.
_LIST_BOILERPLATE = re.compile(
    r"^[> ]*(?:You received this message because you are subscribed to the Google Groups"
    r"|To unsubscribe from this group(?: and stop receiving emails from it)?, send an? e-?mail to"
    r"|To (?:view|post to) this (?:discussion|group)|For more options, visit https?://groups"
    r"|Groups\.io Links:|View/Reply Online|Mute This Topic|Mute #|Group Owner:"
    r"|Unsubscribe: https?://groups\.io|Your use of Yahoo! Groups is subject to"
    r"|[-=]{3,}.*(?:Yahoo! Groups Sponsor|~->)|-=-=-=-=-"
    r"|.*\bmailing list\s*$|.*/(?:mailman/)?listinfo\b).*$",
    re.MULTILINE | re.IGNORECASE)
_SPONSOR_BLOCK = re.compile(
    r"^[> ]*(?:-{5,}[^\n]{0,200}Yahoo! Groups Sponsor.{0,4000}?~->"
    r"|This sf\.net e-?mail is sponsored by.{0,4000}?(?=^[> ]*_{10,}|\Z))",
    re.MULTILINE | re.DOTALL | re.IGNORECASE)
# One of these is in every match of _LIST_BOILERPLATE and _SPONSOR_BLOCK (lower case).
_BOILERPLATE_WORDS = ("google groups", "to unsubscribe from this group", "this discussion",
                      "this group", "for more options", "groups.io", "view/reply online",
                      "mute this topic", "mute #", "group owner:", "yahoo! groups", "~->",
                      "-=-=-=-=-", "mailing list", "listinfo", "sponsored by")
_LIST_LINE_HINTS = ("mailing list", "listinfo", "unsubscribe", "@", "http", "list")


@dataclass(frozen=True)
class TokenIds:
    """A message's token ids in the classifier's two views."""

    words: list[int]
    form: list[int]

    @property
    def all(self) -> list[int]:
        """Both views: what the counts are kept for (a token is counted the same way in
        either view)."""
        return self.words + self.form


@dataclass(frozen=True)
class Tokens:
    """Every distinct token of a message (sets: the classifier counts messages, not words),
    in two views: `words`, what the message says, and `form`, how it was written and sent."""

    words: set[str]
    form: set[str]

    def __contains__(self, token: object) -> bool:
        return token in self.words or token in self.form

    def __iter__(self) -> Iterator[str]:
        yield from self.words
        yield from self.form - self.words

    def ids(self) -> TokenIds:
        return TokenIds(token_ids(self.words), token_ids(self.form))


def tokens(view: MessageView, *, masked: Container[str] = frozenset()) -> Tokens:
    """The tokens of a message. `masked`: domains whose mentions are dropped (the
    recipient's, or a corpus's anonymised names)."""
    words: set[str] = set()
    form: set[str] = set()
    _subject_tokens(view, masked, words, form)
    _sender_tokens(view, masked, words, form)
    _header_tokens(view, form)
    text = strip_list_additions(view.visible_text, view.list_names)
    text, text_links = _address_tokens(text, masked, form)
    _text_signs(text, form)
    _word_tokens(text, "", words, masked)
    _link_tokens(view, text_links, masked, form)
    _structure_tokens(view, form)
    return Tokens(words, form)


def token_ids(found: Iterable[str]) -> list[int]:
    """Stable 32-bit ids of tokens (the same in every process, unlike hash())."""
    return [zlib.crc32(token.encode("utf-8", "surrogatepass")) for token in found]


def strip_list_additions(text: str, list_names: frozenset[str]) -> str:
    """The text without the footer, the advertisements and the address lines that a mailing
    list adds: they say which list carried a message, never whether it is spam."""
    if may_contain(text, _BOILERPLATE_WORDS):
        text = _SPONSOR_BLOCK.sub("", text)
        text = _LIST_BOILERPLATE.sub("", text)
    if not list_names:
        return text
    lowered = text.lower()
    if not any(name in lowered for name in list_names):
        return text
    return "\n".join(line for line in text.split("\n") if not _names_list(line, list_names))


def _names_list(line: str, list_names: frozenset[str]) -> bool:
    lowered = line.lower()
    return (any(name in lowered for name in list_names)
            and any(hint in lowered for hint in _LIST_LINE_HINTS))


def clean_subject(subject: str, list_names: frozenset[str]) -> tuple[str, bool]:
    """The subject without reply prefixes and without the tag a list adds ("[Cake]"), and
    whether it was a reply or forward."""
    prefix = _SUBJECT_PREFIX.match(subject)
    if prefix:
        subject = subject[prefix.end():]

    def drop_list_tag(match: re.Match[str]) -> str:
        tag = match.group(1).strip().lower()
        return "" if any(tag in name or name in tag for name in list_names) else match.group(0)

    if list_names and "[" in subject:
        subject = _SUBJECT_TAG.sub(drop_list_tag, subject)
        again = _SUBJECT_PREFIX.match(subject)  # "[list] Re: ..." puts the prefix after the tag
        if again:
            subject, prefix = subject[again.end():], prefix or again
    return subject, prefix is not None


def _subject_tokens(view: MessageView, masked: Container[str], words: set[str],
                    form: set[str]) -> None:
    subject, is_reply = clean_subject(view.subject, view.list_names)
    if is_reply:
        form.add("subject:reply")
    letters = [char for char in subject if char.isalpha()]
    if len(letters) >= 8 and sum(char.isupper() for char in letters) > 0.8 * len(letters):
        form.add("subject:capitals")
    if "!" in subject:
        form.add("subject:exclamation")
    if _SUBJECT_TAIL_NUMBER.search(subject):
        form.add("subject:trailing-number")  # spam tools append counters and random ids
    if _SUBJECT_PADDING.search(view.fields.get("subject", [""])[0]):  # as written, unfolded
        form.add("subject:padded")  # spaces or dots pushing an id out of the reader's view
    _word_tokens(subject, "s:", words, masked)


def _text_signs(text: str, found: set[str]) -> None:
    """Signs in how the text is written: shouting, toll-free numbers, money."""
    words = text.split()
    if len(words) >= 10:
        capitals = sum(len(word) > 2 for word in filter(str.isupper, words))  # filter: in C
        if capitals * 4 > len(words):
            found.add("text:shouting")
    if not _has_digit(text):  # the numbers' expressions are slow to find nothing
        return
    if _TOLL_FREE_PREFIX.search(text) and _TOLL_FREE.search(text):
        found.add("text:toll-free-number")
    elif _PHONE.search(text):
        found.add("text:phone-number")


def _has_digit(text: str) -> bool:
    if text.isascii():
        return any(digit in text for digit in "0123456789")
    return _DIGIT.search(text) is not None  # any script's digits, as \d matches them


def _sender_tokens(view: MessageView, masked: Container[str], words: set[str],
                   form: set[str]) -> None:
    """The sender's name and domain and the program it wrote with, as a user's inbox shows
    them; a list that rewrote From to its own address ("A via List") hides the sender's."""
    local, _, domain = view.from_address.partition("@")
    from_list = any(list_name in local for list_name in view.list_names)
    name = _VIA_LIST.sub("", view.from_name)
    if not from_list or name != view.from_name:  # the list's own name is not the sender's
        _word_tokens(name, "from:", words)
    if domain and not from_list:
        _domain_token("from", domain, masked, form)
    mailer = view.header("X-Mailer") or view.header("User-Agent")
    if mailer:
        program = _DIGITS.sub("", mailer.lower()).replace("(", " ").split()[:3]
        form.add("mailer:" + " ".join(program))
    _shape_tokens(view, form)


def _shape_tokens(view: MessageView, found: set[str]) -> None:
    """How the sender's program wrote its Message-ID, Date and MIME boundary: spam tools
    write them their own way. Only the shape counts (letters, digits, punctuation), never a
    value: no dates, no host names."""
    message_id = view.header("Message-ID").partition("@")[0]
    found.add("shape:message-id:" + _shape(message_id)[:16])
    found.add("shape:date:" + _shape(view.header("Date"))[:40])
    content_type = view.header("Content-Type")
    boundary = _BOUNDARY.search(content_type)
    if boundary:
        found.add("shape:boundary:" + _shape(boundary.group(1))[:16])


def _header_tokens(view: MessageView, found: set[str]) -> None:
    """Signs of how the sender's program wrote the header: the fields it adds, its priority
    marks, how it encoded the subject, the shape of the sender's address and how many
    people it was sent to. Only fields the sender writes: never a relay's, a list's or the
    collecting mailbox's."""
    for name in _SENDER_FIELDS:
        if name in view.fields:
            found.add("header:" + name)
    for name in _SENDER_VALUES:
        value = view.header(name).lower()
        if value:
            found.add(f"header:{name}:" + " ".join(_DIGITS.sub("#", value).split()[:2]))
    raw_subject = view.fields.get("subject", [""])[0]
    encoded = _ENCODED_WORD.search(raw_subject)
    if encoded:
        found.add(f"subject-encoding:{encoded.group(1).lower()}:{encoded.group(2).lower()}")
    elif not raw_subject.isascii():
        found.add("subject-encoding:8bit")
    local = view.from_address.partition("@")[0]
    if local:
        found.add("from-local:" + _run_shape(local)[:12])
    if not view.from_name:
        found.add("from:no-name")
    elif view.from_name.isupper():
        found.add("from:name-capitals")
    _recipient_tokens(view, found)
    message_id_host = view.header("Message-ID").rpartition("@")[2].strip("<> ").lower()
    if not message_id_host:
        found.add("message-id:no-host")
    elif view.from_domain:
        same = registered_domain(message_id_host) == registered_domain(view.from_domain)
        found.add("message-id:" + ("sender-domain" if same else "other-domain"))
    found.add("top:" + view.message.get_content_type().lower()[:40])
    for encoding in view.text_encodings:
        found.add("encoding:" + encoding)


def _recipient_tokens(view: MessageView, found: set[str]) -> None:
    addresses = [address for name in ("to", "cc") for value in view.fields.get(name, [])
                 for address in _ADDRESS.findall(header_text(value))]
    count = len(addresses)
    found.add("recipients:" + ("none" if not count else "one" if count == 1 else
                               "few" if count < 6 else "many"))
    if view.from_address and view.from_address in (a.lower() for a in addresses):
        found.add("recipients:sender-too")


def _run_shape(value: str) -> str:
    """A value with each run of letters written "a" and each run of digits "9"."""
    return _DIGIT_RUN.sub("9", _LETTER_RUN.sub("a", value.lower()))


def _shape(value: str) -> str:
    return _LETTERS.sub("a", _DIGITS.sub("9", value))


def _address_tokens(text: str, masked: Container[str], found: set[str]) -> tuple[str, int]:
    """Tokens for the domains of links and addresses written in the text. Returns the text
    without them (their paths and local parts are noise as words) and the number of links."""
    links = addresses = 0
    # The expressions try every position of the text: run them only where a link or an
    # address can be.
    if "://" in text or "www." in text.lower():
        for match in _URL.finditer(text):
            url = match.group(0).rstrip(_EDGE_PUNCTUATION)
            _domain_token("url", url_host(url), masked, found)
            _url_path_tokens(url, found)
            links += 1
    if "@" in text:
        for match in _EMAIL.finditer(text):  # in links too: mailto: and addresses in paths
            domain = match.group(1).lower()
            _domain_token("email", domain, masked, found)
            local = match.group(0).partition("@")[0].lower()
            if local.isalpha() and len(local) <= 12 and registered_domain(domain) not in masked:
                found.add("email-user:" + local)
            addresses += 1
    if links:
        text = _URL.sub(" ", text)
    if addresses:
        text = _EMAIL.sub(" ", text)
    return text, links


def _link_tokens(view: MessageView, text_links: int, masked: Container[str],
                 found: set[str]) -> None:
    urls = [href for href, _ in view.html.links] + view.html.urls
    if view.list_names:  # the list's own links (archive, unsubscribe) say nothing of the mail
        urls = [url for url in urls if not _is_list_url(url.lower(), view.list_names)]
    for url in urls:
        _domain_token("url", url_host(url), masked, found)
        _url_path_tokens(url, found)
    if view.from_domain and (text_links or urls):
        # Whether the links lead to the sender's own site (forged senders' seldom do).
        sender = "url:" + registered_domain(view.from_domain)
        found.add("links:to-sender" if sender in found else "links:elsewhere")
    links = len(urls) + text_links
    found.add("links:" + ("none" if not links else "few" if links < 4 else
                          "some" if links < 15 else "many"))


def _is_list_url(url: str, list_names: frozenset[str]) -> bool:
    return ("listinfo" in url or "groups.google.com" in url
            or any(name in url for name in list_names))


def _url_path_tokens(url: str, found: set[str]) -> None:
    """Words of a link's path and query ("remove", "unsubscribe", "cgi"), not its ids."""
    _, _, rest = url.partition("://")
    path = rest.partition("/")[2] if rest else url.partition("/")[2]
    for word in _URL_WORD.findall(path.lower())[:MAX_URL_WORDS]:
        if len(word) <= MAX_WORD and not word.isdigit():
            found.add("url-word:" + _DIGITS.sub("#", word))
    netloc = rest.partition("/")[0] if rest else url.partition("/")[0]
    if "@" in netloc:
        found.add("url:user-info")  # http://bank.test@elsewhere.test/ shows one host, uses another
    if ":" in netloc.rpartition("@")[2]:
        found.add("url:port")
    if "%" in url:
        found.add("url:escaped")
    first_label = netloc.rpartition("@")[2].lower().split(".", 1)[0]
    if first_label.isalpha() and first_label != "www" and netloc.count(".") >= 2:
        found.add("url-host-word:" + first_label[:MAX_WORD])


def _domain_token(kind: str, host: str, masked: Container[str], found: set[str]) -> None:
    if not host:
        return
    if host.replace(".", "").replace(":", "").isdigit() or host.startswith("["):
        found.add(f"{kind}:ip-address")
        return
    domain = registered_domain(host)
    if domain in masked or host in masked or "." not in domain:
        return
    found.add(f"{kind}:{domain}")
    found.add(f"{kind}-tld:{domain.rsplit('.', 1)[-1]}")
    if host.startswith("xn--") or ".xn--" in host:
        found.add(f"{kind}:punycode")


def _structure_tokens(view: MessageView, found: set[str]) -> None:
    if view.has_html:
        found.add("body:html+text" if view.has_plain else "body:html-only")
    elif not view.has_plain:
        found.add("body:no-text")
    visible = len(view.visible_text.split())
    found.add("words:" + ("none" if visible < 3 else "few" if visible < 40 else
                          "some" if visible < 400 else "many"))
    if len(view.html.hidden.split()) >= 10:
        found.add("html:hidden-text")
    if view.html.images:
        found.add("html:images" if view.html.images > 2 else "html:image")
    if view.html.forms:
        found.add("html:form")
    for charset in view.charsets:
        found.add("charset:" + charset)
    for attachment in view.attachments[:20]:
        found.add("attachment:" + attachment.content_type)
        extension = attachment.filename.rpartition(".")[2].lower()
        if extension and extension != attachment.filename.lower() and len(extension) <= 5:
            found.add("attachment-ext:" + extension)


def _word_tokens(text: str, prefix: str, found: set[str],
                 masked: Container[str] = frozenset()) -> None:
    if not text.isascii():
        if _INVISIBLE.search(text):
            found.add(prefix + "invisible-characters")
            text = _INVISIBLE.sub("", text)
        if _EMOJI.search(text):
            found.add(prefix + "emoji")
        if _CJK.search(text):
            _cjk_tokens(text, prefix, found)
        text = unicodedata.normalize("NFKC", text)
    seen: set[str] = set()
    for raw_word in _WORD_SPLIT.split(text.lower()):
        if raw_word in seen:  # most words of a text come back again and again
            continue
        seen.add(raw_word)
        word = raw_word.strip(_EDGE_PUNCTUATION)
        if len(word) < MIN_WORD or ("." in word and registered_domain(word) in masked):
            continue
        token = _word_token(word)
        if token:
            found.add(prefix + token)


def _word_token(word: str) -> str:
    if not word.isascii():
        if _LOOKALIKE.search(word) and _LATIN.search(word):
            return "mixed-script-word"
        if _CJK.search(word):
            return ""  # counted as bigrams
    if not word.isalpha() and any(char.isdigit() for char in word):
        if _MONEY.search(word):
            return "amount-of-money"
        if _PERCENT.match(word):
            return "percentage"
        word = _DIGITS.sub("#", word)  # no numbers, dates or years: they tell when, not what
        if sum(char.isalpha() for char in word) < 2:
            return ""
    if len(word) > MAX_WORD:
        return f"long-word:{word[0]}:{min(len(word) // 10, 9)}"
    return word


def _cjk_tokens(text: str, prefix: str, found: set[str]) -> None:
    count = 0
    for run in _CJK_RUN.findall(text):
        for index in range(len(run) - 1):
            found.add(prefix + "cjk:" + run[index:index + 2])
            count += 1
            if count >= MAX_CJK_BIGRAMS:
                return
