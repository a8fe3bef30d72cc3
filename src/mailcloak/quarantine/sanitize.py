"""HTML of held mail made safe to look at: no script, no remote content, no live links.

Three passes. nh3 (ammonia) cleans the markup with a strict allowlist: no script, style
element, form, frame, object or link; style attributes keep only harmless properties and never
a url(); images keep only inline `data:` pictures and every other source becomes a placeholder,
so opening spam never tells the sender the address is live. Then every link loses its href and
shows its real target beside its text. A last nh3 pass checks the result again.

The page that shows the result serves it under its own CSP (`default-src 'none'`) in a
sandboxed iframe without scripts: each layer would hold on its own.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import nh3

BLOCKED_IMAGE = (
    "data:image/svg+xml,"
    "%3Csvg xmlns='http://www.w3.org/2000/svg' width='160' height='40'%3E"
    "%3Crect width='100%25' height='100%25' fill='%23eee' stroke='%23bbb'/%3E"
    "%3Ctext x='50%25' y='55%25' font-family='sans-serif' font-size='11' fill='%23555' "
    "text-anchor='middle'%3ERemote image not loaded%3C/text%3E%3C/svg%3E"
)
SAFE_IMAGE = re.compile(r"^data:image/(?:png|gif|jpeg|webp);base64,[A-Za-z0-9+/=\s]*$",
                        re.IGNORECASE)
UNSAFE_STYLE = re.compile(r"url\s*\(|image-set|expression|@import|\\|/\*", re.IGNORECASE)

TAGS = nh3.ALLOWED_TAGS - {"area", "map"} | {"font", "center", "tfoot"}
ATTRIBUTES: dict[str, set[str]] = {
    "*": {"style", "align", "dir", "lang", "title", "width", "height", "valign", "bgcolor"},
    "a": {"href"},
    "img": {"src", "alt"},
    "font": {"color", "face", "size"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "table": {"border", "cellpadding", "cellspacing"},
    "ol": {"start", "type"},
}
STYLE_PROPERTIES = {
    "color", "background-color", "font", "font-family", "font-size", "font-style",
    "font-weight", "text-align", "text-decoration", "text-transform", "line-height",
    "letter-spacing", "white-space", "vertical-align", "width", "max-width", "min-width",
    "height", "margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
    "padding", "padding-top", "padding-right", "padding-bottom", "padding-left", "border",
    "border-top", "border-right", "border-bottom", "border-left", "border-color",
    "border-style", "border-width", "border-radius", "border-collapse", "border-spacing",
}
LINK_CLASS = "mc-link"
TARGET_CLASS = "mc-target"
DROPPED_CONTENT = {"script", "style", "title", "noscript", "template", "textarea", "select"}


@dataclass(frozen=True)
class Link:
    text: str
    target: str


@dataclass
class SafeHtml:
    html: str
    links: list[Link] = field(default_factory=list)
    blocked_images: int = 0


def sanitise(markup: str) -> SafeHtml:
    """Safe markup for the message view, the links it had and how many images were blocked."""
    counter = _ImageCounter()
    cleaned = nh3.clean(
        markup, tags=TAGS, clean_content_tags=DROPPED_CONTENT, attributes=ATTRIBUTES,
        attribute_filter=counter.filter, url_schemes={"http", "https", "mailto", "data", "cid"},
        link_rel=None, strip_comments=True, filter_style_properties=STYLE_PROPERTIES,
    )
    unlinked = _Unlinker()
    unlinked.feed(cleaned)
    unlinked.close()
    final = nh3.clean(
        unlinked.output(), tags=TAGS | {"span"}, attributes=_FINAL_ATTRIBUTES,
        attribute_filter=_final_filter, url_schemes={"data"}, link_rel=None,
        filter_style_properties=STYLE_PROPERTIES,
        allowed_classes={"a": {LINK_CLASS}, "span": {TARGET_CLASS}},
    )
    return SafeHtml(final, unlinked.links, counter.blocked)


class _ImageCounter:
    def __init__(self) -> None:
        self.blocked = 0

    def filter(self, tag: str, attribute: str, value: str) -> str | None:
        if attribute == "style":
            return None if UNSAFE_STYLE.search(value) else value
        if tag == "img" and attribute == "src":
            if SAFE_IMAGE.match(value):
                return value
            self.blocked += 1
            return BLOCKED_IMAGE
        return value


_FINAL_ATTRIBUTES = {**ATTRIBUTES, "a": {"title"}}


def _final_filter(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "style":
        return None if UNSAFE_STYLE.search(value) else value
    if tag == "img" and attribute == "src":
        return value if value == BLOCKED_IMAGE or SAFE_IMAGE.match(value) else BLOCKED_IMAGE
    return value


class _Unlinker(HTMLParser):
    """Re-serialises nh3's output with every <a href> turned into inert text plus its target.

    nh3's output is well-formed (attributes quoted, entities escaped, no nested links), so
    this parser sees exactly the tree nh3 wrote; everything is escaped again on the way out.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.links: list[Link] = []
        self._open: list[tuple[str, list[str]]] = []  # (target, text) of links being read

    def output(self) -> str:
        return "".join(self.parts)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            target = dict(attrs).get("href") or ""
            self._open.append((target, []))
            link: list[tuple[str, str | None]] = [("class", LINK_CLASS)]
            attrs = link + ([("title", target)] if target else [])
        self.parts.append(_tag(tag, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.parts.append(_tag(tag, attrs))

    def handle_endtag(self, tag: str) -> None:
        self.parts.append(f"</{tag}>")
        if tag == "a" and self._open:
            target, text = self._open.pop()
            if target:
                self.links.append(Link(" ".join("".join(text).split()), target))
                self.parts.append(f'<span class="{TARGET_CLASS}">[{html.escape(target)}]</span>')

    def handle_data(self, data: str) -> None:
        for _, text in self._open:
            text.append(data)
        self.parts.append(html.escape(data, quote=False))


def _tag(tag: str, attrs: list[tuple[str, str | None]]) -> str:
    rendered = "".join(f' {name}="{html.escape(value or "")}"' for name, value in attrs
                       if name != "href")
    return f"<{tag}{rendered}>"
