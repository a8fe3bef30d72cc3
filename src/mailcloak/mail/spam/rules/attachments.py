"""Attachment rules: programs, scripts and web pages sent as files. Attachments are judged by
name and declared type only; they are never opened."""

from __future__ import annotations

from mailcloak.mail.spam.features import Attachment, MessageView
from mailcloak.mail.spam.rules.base import Hit, Rule

EXECUTABLE_EXTENSIONS = frozenset({
    "exe", "scr", "com", "pif", "bat", "cmd", "vbs", "vbe", "js", "jse", "wsf", "wsh", "hta",
    "msi", "msp", "jar", "ps1", "lnk", "cpl", "reg", "dll", "iso", "img", "vhd", "vhdx",
    "appx", "msix", "apk", "scf", "chm", "gadget", "application", "xll",
})
EXECUTABLE_TYPES = frozenset({
    "application/x-msdownload", "application/x-msdos-program", "application/x-dosexec",
    "application/x-executable", "application/vnd.microsoft.portable-executable",
    "application/x-ms-shortcut", "application/hta", "application/x-javascript",
    "application/javascript", "text/javascript", "application/x-iso9660-image",
})
WEB_PAGE_EXTENSIONS = frozenset({"html", "htm", "shtml", "xhtml", "svg", "mht", "mhtml"})
DOCUMENT_EXTENSIONS = frozenset({"pdf", "doc", "docx", "xls", "xlsx", "txt", "jpg", "png", "zip"})


def _extensions(attachment: Attachment) -> list[str]:
    name = attachment.filename.strip().lower().rstrip(". ")
    return name.split(".")[1:] if "." in name else []


def executable(view: MessageView) -> Hit | None:
    for attachment in view.attachments:
        extensions = _extensions(attachment)
        if not extensions:
            if attachment.content_type in EXECUTABLE_TYPES:
                return Hit(5.0, f"Executable attachment ({attachment.content_type})")
            continue
        if extensions[-1] in EXECUTABLE_EXTENSIONS or attachment.content_type in EXECUTABLE_TYPES:
            name = attachment.filename
            if len(extensions) >= 2 and extensions[-2] in DOCUMENT_EXTENSIONS:
                return Hit(6.0, f"Executable attachment {name} disguised as a document")
            return Hit(5.0, f"Executable attachment {name}")
    return None


def web_page(view: MessageView) -> Hit | None:
    for attachment in view.attachments:
        extensions = _extensions(attachment)
        if extensions and extensions[-1] in WEB_PAGE_EXTENSIONS:
            return Hit(2.0, f"Web page attached as a file ({attachment.filename}), "
                            "a common way to phish")
    return None


RULES: tuple[Rule, ...] = (
    Rule("ATTACHMENT_EXECUTABLE", "A program or script attached", executable),
    Rule("ATTACHMENT_WEB_PAGE", "A web page or SVG attached as a file", web_page),
)
