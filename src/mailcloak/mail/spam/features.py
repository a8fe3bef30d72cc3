"""One parse of a message for the builtin spam engine: what its rules and its classifier look at.

The message is read once, tolerantly (a broken header or part never raises), into a
MessageView: decoded header values, the visible text of every text part (HTML turned into
text), links with the text they show, images, attachments and hidden text. Each part gives the
classifier at most `scan_limit` bytes: larger parts are truncated, never skipped (and past
TEXT_BUDGET_PARTS scan limits of text in all, each further part gives its start only).

Attachments are only described (name, type, size); they are never decoded or opened.
"""

from __future__ import annotations

import email
import html as html_entities
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import Message
from urllib.parse import urlsplit

from mailcloak.mail.policy_email import (
    READ_POLICY,
    Mailbox,
    clean_text,
    decode_raw,
    decode_words,
    parse_mailboxes,
)

DEFAULT_SCAN_LIMIT = 256_000
MAX_PARTS = 200  # a message with more parts is scanned on its first MAX_PARTS
TEXT_BUDGET_PARTS = 8  # all text parts together: this many scan limits in full...
MIN_PART_TEXT = 4_000  # ...then the start of every further part
MAX_HEADER_CHARS = 8_000

_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"'`{}|\\^\[\]]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?)'\""
_URL_WORDS = ("://", "www.")  # one of them is in every match of _URL
_LIST_NAME = re.compile(r"(?<![^@<>\s])([^@<>\s]+)@")
_LIST_ID = re.compile(r"<([^<>.\s]+)\.")
# Second-level labels under which a country code TLD registers names (example.co.uk).
_CC_SECOND_LEVELS = frozenset({"co", "com", "net", "org", "gov", "edu", "ac", "or", "ne", "go",
                               "gob", "mil", "nic", "ltd", "plc", "sch"})


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    size: int  # bytes, estimated from the encoded size


@dataclass(frozen=True)
class Link:
    href: str
    text: str  # what the reader sees as the link ("" for an image link)

    @property
    def host(self) -> str:
        return url_host(self.href)


@dataclass
class HtmlText:
    """What an HTML body shows, and what it hides from the reader."""

    visible: str = ""
    hidden: str = ""                                   # text styled so that no one sees it
    links: list[tuple[str, str]] = field(default_factory=list)  # (href, text shown)
    urls: list[str] = field(default_factory=list)      # image and form targets
    images: int = 0
    forms: int = 0
    scripts: int = 0

    @classmethod
    def merge(cls, parts: Iterable[HtmlText]) -> HtmlText:
        merged = cls()
        visible, hidden = [], []
        for part in parts:
            visible.append(part.visible)
            hidden.append(part.hidden)
            merged.links += part.links
            merged.urls += part.urls
            merged.images += part.images
            merged.forms += part.forms
            merged.scripts += part.scripts
        merged.visible = "\n".join(filter(None, visible))
        merged.hidden = "\n".join(filter(None, hidden))
        return merged


# An HTML tag, comment or declaration. Attribute values may hold ">" inside quotes; an
# unterminated tag at the end of the text is still a tag.
_HTML_TOKEN = re.compile(
    r"<(?:!--.*?(?:-->|\Z)|(/?)([a-zA-Z][a-zA-Z0-9:-]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>?"
    r"|[!?][^>]*>?)", re.DOTALL)
_HTML_ATTR = re.compile(r"([a-zA-Z_:][-a-zA-Z0-9_:.]*)\s*(?:=\s*(\"[^\"]*\"|'[^']*'|[^\s\"'>]+))?")
_SKIPPED_ELEMENTS = {name: re.compile(rf"</{name}\s*>", re.IGNORECASE)
                     for name in ("script", "style", "head", "title", "noscript", "template")}
_VOID_ELEMENTS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
                            "meta", "source", "track", "wbr", "o:p"})
_BLOCK_ELEMENTS = frozenset({"p", "div", "br", "tr", "td", "th", "li", "ul", "ol", "table",
                             "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "hr", "center",
                             "section", "article", "header", "footer", "dd", "dt", "pre"})
_HIDING_STYLE = re.compile(
    r"display:none|visibility:hidden|font-size:[01](?:\.0*)?(?:px|pt|em|rem|%)?(?:[;!]|$)"
    r"|opacity:0(?:\.0*)?(?:[;!]|$)|max-height:0(?:px)?(?:[;!]|$)|(?<![-a-z])height:0(?:px)?;"
    r".*overflow:hidden")
_STYLE_COLOR = re.compile(r"(?<![-a-z])color:([#a-z0-9]+)")
_STYLE_BACKGROUND = re.compile(r"background(?:-color)?:([#a-z0-9]+)")
_WHITE = frozenset({"#fff", "#ffffff", "white", "#fefefe", "#fdfdfd"})
_MAX_DEPTH = 512


def html_to_text(markup: str) -> HtmlText:
    """Text of an HTML body as a reader sees it, with its links and its hidden text.
    A tolerant scan, not a full HTML parser: mail HTML is rarely well formed."""
    scanner = _HtmlScanner()
    scanner.feed(markup)
    return scanner.result()


class _HtmlScanner:
    def __init__(self) -> None:
        self.visible: list[str] = []
        self.hidden: list[str] = []
        self.out = HtmlText()
        # Open elements: (name, hides its content, paints a background).
        self.stack: list[tuple[str, bool, bool]] = []
        self.hiding = 0       # open elements that hide their content
        self.backgrounds = 0  # open elements that paint a coloured background
        self.anchor: tuple[str, list[str]] | None = None

    def feed(self, markup: str) -> None:
        position = 0
        while True:
            match = _HTML_TOKEN.search(markup, position)
            if match is None:
                self._text(markup[position:])
                return
            self._text(markup[position:match.start()])
            position = match.end()
            name = (match.group(2) or "").lower()
            if not name:
                continue  # comment, doctype or processing instruction
            if match.group(1):
                self._close(name)
                continue
            skip = _SKIPPED_ELEMENTS.get(name)
            if skip is not None:
                self.out.scripts += name == "script"
                end = skip.search(markup, position)
                position = end.end() if end else len(markup)
                continue
            self._open(name, match.group(3) or "")

    def _text(self, chunk: str) -> None:
        if not chunk or chunk.isspace():
            return
        text = html_entities.unescape(chunk) if "&" in chunk else chunk
        (self.hidden if self.hiding else self.visible).append(text)
        if self.anchor is not None and not self.hiding:
            self.anchor[1].append(text)

    def _open(self, name: str, attr_text: str) -> None:
        attrs = _attributes(attr_text) if attr_text.strip() else {}
        if name in _BLOCK_ELEMENTS:
            self.visible.append("\n")
        if name == "a":
            self._end_anchor()
            href = attrs.get("href", "").strip()
            if href:
                self.anchor = (href, [])
        elif name == "img":
            self.out.images += 1
            if attrs.get("src"):
                self.out.urls.append(attrs["src"].strip())
            if attrs.get("alt"):
                self._text(" " + attrs["alt"] + " ")
        elif name == "form":
            self.out.forms += 1
            if attrs.get("action"):
                self.out.urls.append(attrs["action"].strip())
        if name in _VOID_ELEMENTS or len(self.stack) >= _MAX_DEPTH:
            return
        background = _colours_background(attrs) if attrs else False
        hides = _hides(name, attrs, on_background=bool(self.backgrounds) or background)
        self.stack.append((name, hides, background))
        self.hiding += hides
        self.backgrounds += background

    def _close(self, name: str) -> None:
        if name == "a":
            self._end_anchor()
        if name in _BLOCK_ELEMENTS:
            self.visible.append("\n")
        for depth in range(len(self.stack) - 1, -1, -1):
            if self.stack[depth][0] == name:
                for _, hides, background in self.stack[depth:]:
                    self.hiding -= hides
                    self.backgrounds -= background
                del self.stack[depth:]
                return

    def _end_anchor(self) -> None:
        if self.anchor is not None:
            href, text = self.anchor
            self.out.links.append((href, " ".join("".join(text).split())))
            self.anchor = None

    def result(self) -> HtmlText:
        self._end_anchor()
        self.out.visible = "".join(self.visible)
        self.out.hidden = " ".join(self.hidden)
        return self.out


def _attributes(text: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for match in _HTML_ATTR.finditer(text):
        value = match.group(2) or ""
        if value[:1] in {"\"", "'"}:
            value = value[1:-1]
        attrs.setdefault(match.group(1).lower(), html_entities.unescape(value))
    return attrs


def _style(attrs: dict[str, str]) -> str:
    return attrs.get("style", "").lower().replace(" ", "")


def _hides(name: str, attrs: dict[str, str], *, on_background: bool) -> bool:
    """Whether an element hides its content: hidden styles, or white text with no coloured
    background under it (white text on a coloured button is normal)."""
    if "hidden" in attrs:
        return True
    style = _style(attrs)
    if style and _HIDING_STYLE.search(style):
        return True
    if on_background:
        return False
    color = _STYLE_COLOR.search(style)
    font_color = attrs.get("color", "").strip().lower() if name == "font" else ""
    return (color is not None and color.group(1) in _WHITE) or font_color in _WHITE


def _colours_background(attrs: dict[str, str]) -> bool:
    """Whether an element paints a background other than white (or uses an image)."""
    colour = attrs.get("bgcolor", "").strip().lower()
    if colour and colour not in _WHITE:
        return True
    style = _style(attrs)
    if "background-image" in style or "url(" in style:
        return True
    match = _STYLE_BACKGROUND.search(style)
    return match is not None and match.group(1) not in _WHITE


@dataclass
class MessageView:
    message: Message
    fields: dict[str, list[str]] = field(default_factory=dict)  # lower-case name -> raw values
    subject: str = ""
    from_mailboxes: tuple[Mailbox, ...] = ()
    plain_text: str = ""       # text/plain parts
    html: HtmlText = field(default_factory=HtmlText)  # text/html parts, merged
    has_plain: bool = False
    has_html: bool = False
    attachments: list[Attachment] = field(default_factory=list)
    charsets: set[str] = field(default_factory=set)
    text_encodings: set[str] = field(default_factory=set)  # "text/html:base64", ...
    urls: list[str] = field(default_factory=list)   # every URL, from text and from HTML
    list_names: frozenset[str] = frozenset()         # the mailing list that relayed it, if any
    truncated: bool = False                          # some part was longer than the scan limit
    text_budget: int = field(default=0, repr=False)  # bytes of text parts still to read

    def header(self, name: str) -> str:
        """The first value of field `name`, decoded and cleaned ("" when absent)."""
        values = self.fields.get(name.lower())
        return header_text(values[0]) if values else ""

    def headers(self, name: str) -> list[str]:
        return [header_text(value) for value in self.fields.get(name.lower(), [])]

    def has_header(self, name: str) -> bool:
        return name.lower() in self.fields

    @property
    def from_address(self) -> str:
        return self.from_mailboxes[0].address.lower() if self.from_mailboxes else ""

    @property
    def from_name(self) -> str:
        return self.from_mailboxes[0].name if self.from_mailboxes else ""

    @property
    def from_domain(self) -> str:
        return self.from_address.rpartition("@")[2]

    @property
    def visible_text(self) -> str:
        return f"{self.plain_text}\n{self.html.visible}" if self.html.visible else self.plain_text

    @property
    def links(self) -> list[Link]:
        return [Link(href, text) for href, text in self.html.links]


def header_text(value: str) -> str:
    """A raw header value (8-bit bytes kept as surrogate escapes) as clean, decoded text, at
    most MAX_HEADER_CHARS of it: no honest header is longer, and rules need not read more."""
    value = value[:MAX_HEADER_CHARS]
    if not value.isascii():
        value = decode_raw(value.encode("utf-8", "surrogateescape"))
    return clean_text(decode_words(value))


def may_contain(text: str, words: Iterable[str]) -> bool:
    """False only when `text` holds none of `words` (lower case) in any letter case: so an
    IGNORECASE expression each of whose matches holds one of them need not run, which is slow
    to find nothing. Non-ASCII text always may: IGNORECASE folds a few letters (the long s,
    the Kelvin sign) that lower() does not."""
    if not text.isascii():
        return True
    lowered = text.lower()
    return any(word in lowered for word in words)


def parse(raw: bytes, *, scan_limit: int = DEFAULT_SCAN_LIMIT) -> MessageView:
    """Read `raw` into a MessageView. Never raises on malformed input."""
    message = email.message_from_bytes(raw, policy=READ_POLICY)
    view = MessageView(message=message, text_budget=TEXT_BUDGET_PARTS * scan_limit)
    for name, value in message.raw_items():
        view.fields.setdefault(name.lower(), []).append(str(value))
    view.subject = view.header("Subject")
    view.from_mailboxes = tuple(parse_mailboxes(header_text(view.fields.get("from", [""])[0])))
    view.list_names = _list_names(view.fields)
    html_parts: list[HtmlText] = []
    plain_parts: list[str] = []
    for count, part in enumerate(message.walk()):
        if count >= MAX_PARTS:
            break
        if part.is_multipart():
            continue
        _read_part(view, part, scan_limit, plain_parts, html_parts)
    view.plain_text = "\n".join(plain_parts)
    view.html = HtmlText.merge(html_parts)
    view.urls = _urls(view.plain_text) + [href for href, _ in view.html.links] + view.html.urls
    return view


def _read_part(view: MessageView, part: Message, scan_limit: int,
               plain_parts: list[str], html_parts: list[HtmlText]) -> None:
    content_type = _content_type(part)
    filename = _filename(part)
    is_attachment = bool(filename) or _disposition(part) == "attachment"
    if content_type in {"text/plain", "text/html"} and not is_attachment:
        text = _decoded_text(view, part, scan_limit)
        encoding = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()[:20]
        view.text_encodings.add(f"{content_type}:{encoding}")
        if content_type == "text/plain":
            view.has_plain = True
            plain_parts.append(text)
        else:
            view.has_html = True
            html_parts.append(html_to_text(text))
        return
    if content_type.startswith("multipart/"):
        return  # a multipart without parts: nothing to read
    view.attachments.append(Attachment(filename, content_type, _encoded_size(part)))


def _decoded_text(view: MessageView, part: Message, scan_limit: int) -> str:
    payload = _payload_bytes(part)
    limit = min(scan_limit, max(view.text_budget, MIN_PART_TEXT))
    if len(payload) > limit:
        payload = payload[:limit]
        view.truncated = True
    view.text_budget -= len(payload)
    charset = _charset(part)
    if charset:
        view.charsets.add(charset)
    try:
        return payload.decode(charset or "utf-8", errors="replace")
    except (LookupError, ValueError):
        return decode_raw(payload)


def _payload_bytes(part: Message) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # the email package fails on some hostile encodings
        payload = None
    if isinstance(payload, bytes):
        return payload
    raw = _undecoded_payload(part)
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""


def _undecoded_payload(part: Message) -> object:
    """The payload as parsed. get_payload() decodes 8-bit text with the part's charset and
    raises for one no codec takes that way ("idna", a name with a NUL in it)."""
    try:
        return part.get_payload()
    except (UnicodeError, ValueError):
        return None


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type().lower()
    except Exception:
        return "application/octet-stream"


def _disposition(part: Message) -> str:
    value = str(part.get("Content-Disposition", ""))
    return value.split(";", 1)[0].strip().lower()


def _filename(part: Message) -> str:
    try:
        name = part.get_filename() or part.get_param("name") or ""
    except Exception:
        return ""
    if isinstance(name, tuple):  # RFC 2231 value the email package could not decode
        name = name[2]
    return header_text(name)


def _charset(part: Message) -> str:
    try:
        charset = part.get_content_charset() or ""
    except Exception:
        return ""
    return charset.strip().lower()[:40]


def _encoded_size(part: Message) -> int:
    payload = _undecoded_payload(part)
    size = len(payload) if isinstance(payload, str) else 0
    if str(part.get("Content-Transfer-Encoding", "")).strip().lower() == "base64":
        size = size * 3 // 4
    return size


def _urls(text: str) -> list[str]:
    if not may_contain(text, _URL_WORDS):
        return []  # the expression takes long to find nothing in a long text
    return [match.group(0).rstrip(_URL_TRAILING) for match in _URL.finditer(text)]


def _list_names(fields: dict[str, list[str]]) -> frozenset[str]:
    """Names under which a mailing list relayed the message ("cake" for
    cake@lists.bufferbloat.net). Used only to strip what the list added, never as a signal."""
    names: set[str] = set()
    for field_name in ("list-post", "x-beenthere", "mailing-list"):
        for value in fields.get(field_name, []):
            match = _LIST_NAME.search(value.replace("mailto:", " "))
            if match:
                names.add(match.group(1).lower().removeprefix("list "))
    for value in fields.get("list-id", []):
        match = _LIST_ID.search(value)
        if match:
            names.add(match.group(1).lower())
    return frozenset(name for name in names if len(name) >= 3)


def url_host(url: str) -> str:
    """The lower-case host of a URL or www. address ("" when it has none)."""
    if url[:4].lower() == "www.":
        url = "http://" + url
    try:
        host = urlsplit(url.strip()).hostname or ""
    except ValueError:
        return ""
    return host.rstrip(".").lower()


def registered_domain(host: str) -> str:
    """The name a host's owner registered: mail.example.co.uk -> example.co.uk. An
    approximation of the public suffix list that is enough to compare and group hosts."""
    labels = host.rstrip(".").lower().split(".")
    if len(labels) <= 2:
        return ".".join(labels)
    keep = 3 if len(labels[-1]) == 2 and labels[-2] in _CC_SECOND_LEVELS else 2
    return ".".join(labels[-keep:])
