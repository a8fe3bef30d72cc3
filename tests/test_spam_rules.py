"""Each rule of the builtin spam engine on crafted messages: it hits what it is for, with the
sentence the owner sees, and stays quiet on honest mail."""

from __future__ import annotations

import pytest

from mailcloak.mail.spam.features import parse
from mailcloak.mail.spam.rules import (
    DEFAULT_RULES,
    Hit,
    Rule,
    RuleChain,
    attachments,
    bulk,
    headers,
    html,
    links,
)
from mailcloak.mail.spam.verdict import Reason

HONEST_HEADERS = {
    "From": "Alice Martin <alice@mailbox.test>",
    "To": "Bob <bob@alias.test>",
    "Subject": "Notes from the meeting",
    "Date": "Mon, 1 Jun 2026 10:00:00 +0000",
    "Message-ID": "<notes.1@mailbox.test>",
    "MIME-Version": "1.0",
}


def message(body: str = "Hello Bob,\r\n\r\nHere are the notes.\r\n", *,
            content_type: str = "text/plain; charset=utf-8", drop: tuple[str, ...] = (),
            **fields: str) -> bytes:
    values = {**HONEST_HEADERS, **{k.replace("_", "-"): v for k, v in fields.items()}}
    lines = [f"{name}: {value}" for name, value in values.items() if name not in drop]
    lines.append(f"Content-Type: {content_type}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def multipart(*parts: tuple[str, str, str], **fields: str) -> bytes:
    """parts: (content type, extra part headers, body)."""
    chunks = []
    for content_type, extra, body in parts:
        chunks.append(f"--b1\r\nContent-Type: {content_type}\r\n{extra}\r\n{body}\r\n")
    return message("".join(chunks) + "--b1--\r\n",
                   content_type='multipart/mixed; boundary="b1"', **fields)


def hit(rule: Rule, raw: bytes) -> Hit | None:
    return rule.check(parse(raw))


def by_name(name: str) -> Rule:
    return next(rule for rule in DEFAULT_RULES if rule.name == name)


def test_honest_message_hits_no_rule() -> None:
    assert RuleChain(DEFAULT_RULES).run(parse(message())) == []


def test_rule_names_are_unique_and_described() -> None:
    names = [rule.name for rule in DEFAULT_RULES]
    assert len(names) == len(set(names))
    assert all(rule.description for rule in DEFAULT_RULES)
    with pytest.raises(ValueError):
        RuleChain([DEFAULT_RULES[0], DEFAULT_RULES[0]])


def test_chain_records_hits_as_reasons_and_survives_a_broken_rule() -> None:
    def broken(view: object) -> Hit | None:
        raise RuntimeError("bug")

    chain = RuleChain([Rule("BROKEN", "fails", broken), by_name("DATE_MISSING")])
    reasons = chain.run(parse(message(drop=("Date",))))
    assert reasons == [Reason("DATE_MISSING", "Date header is missing", 1.0)]


# --- headers --------------------------------------------------------------------------------


def test_date_missing() -> None:
    assert hit(by_name("DATE_MISSING"), message(drop=("Date",))) == Hit(
        1.0, "Date header is missing")
    assert hit(by_name("DATE_MISSING"), message()) is None


@pytest.mark.parametrize(("date", "text"), [
    ("yesterday at noon", "Date header cannot be read"),
    ("Mon, 1 Jun 2099 10:00:00 +0000", "Date header is in the future"),
])
def test_date_wrong(date: str, text: str) -> None:
    result = hit(headers.RULES[1], message(Date=date))
    assert result is not None and result.text == text


def test_message_id_and_from_missing() -> None:
    assert hit(by_name("MESSAGE_ID_MISSING"), message(drop=("Message-ID",))) is not None
    assert hit(by_name("FROM_MISSING"), message(From="undisclosed")) is not None
    assert hit(by_name("FROM_MISSING"), message()) is None


@pytest.mark.parametrize(("fields", "forged"), [
    ({"X_Mailer": "Microsoft Outlook Express 6.00.2600.0000",
      "Message_ID": "<200208230914.KAA09351@relay.test>"}, "Outlook"),
    ({"X_Mailer": "Microsoft Outlook 16.0",
      "Message_ID": "<000001d5b7e2$5d2b4c80$17815580$@mailbox.test>"}, None),
    ({"X_Mailer": "Microsoft Outlook IMO, Build 9.0.2416 (9.0.2911.0)",
      "Message_ID": "<OFEGLPGPCHPACFLJPAILEEBLEBAA.alice@mailbox.test>"}, None),
    ({"MIME_Version": "1.0 (Mac OS X Mail 16.0 \\(3696.80.82.1.1\\))",
      "Message_ID": "<b1c2d3@spam-tool.test>"}, "Apple Mail"),
    ({"MIME_Version": "1.0 (Mac OS X Mail 16.0 \\(3696.80.82.1.1\\))",
      "Message_ID": "<B0B5D1BB-FC68-4B37-823D-FA74FB114555@icloud.com>"}, None),
    ({"MIME_Version": "1.0 (Mac OS X Mail 16.0 \\(3696.80.82.1.1\\))",
      "Message_ID": "<mailman.8242.1649858545.111203.list@lists.test>"}, None),
])
def test_forged_mail_program(fields: dict[str, str], forged: str | None) -> None:
    result = hit(by_name("FORGED_MAIL_PROGRAM"), message(**fields))
    if forged is None:
        assert result is None
    else:
        assert result is not None and f"Forged {forged} headers" in result.text


def test_brand_in_sender_name_from_another_domain() -> None:
    result = hit(by_name("FROM_NAME_BRAND"), message(From='"PayPal Service" <help@evil.test>'))
    assert result == Hit(2.5, "Sender name says PayPal but the mail comes from evil.test")
    assert hit(by_name("FROM_NAME_BRAND"), message(From="PayPal <service@mail.paypal.com>")) is None


def test_address_in_sender_name() -> None:
    result = hit(by_name("FROM_NAME_ADDRESS"),
                 message(From='"security@bank.test" <x@elsewhere.test>'))
    assert result is not None and "security@bank.test" in result.text
    via_list = message(From="'alice@mailbox.test' via Devs <devs@lists.test>")
    assert hit(by_name("FROM_NAME_ADDRESS"), via_list) is None


def test_reply_to_a_free_mailbox_of_another_domain() -> None:
    rule = by_name("REPLY_TO_FREEMAIL")
    result = hit(rule, message(From="Bank <notice@bank.test>", Reply_To="claims@gmail.com"))
    assert result is not None and "gmail.com" in result.text
    assert hit(rule, message(From="Al <al@gmail.com>", Reply_To="al.work@gmail.com")) is None
    from_list = message(From="Devs <devs@lists.test>", Reply_To="al@gmail.com",
                        List_Post="<mailto:devs@lists.test>")
    assert hit(rule, from_list) is None


def test_obfuscated_subject() -> None:
    rule = by_name("SUBJECT_OBFUSCATED")
    encoded = message(Subject="=?utf-8?q?Fr=E2=80=8Bee_gift?=")  # a zero-width space
    assert hit(rule, encoded) == Hit(2.0, "Subject hides invisible characters between letters")
    assert hit(rule, "Subject: Fr\u200bee gift\r\n\r\nx".encode()) is not None
    assert hit(rule, "Subject: P\u0430yPal account\r\n\r\nx".encode()) is not None  # Cyrillic a
    assert hit(rule, "Subject: Caf\u00e9 tomorrow?\r\n\r\nx".encode()) is None


# --- HTML -----------------------------------------------------------------------------------


def test_html_only_with_hidden_text() -> None:
    hidden = " ".join(["filler"] * 40)
    body = (f"<html><body><p>Great offer for you</p><div style='display: none'>{hidden}</div>"
            "</body></html>")
    raw = message(body, content_type="text/html; charset=utf-8")
    assert hit(by_name("HTML_ONLY"), raw) == Hit(0.5, "HTML-only message (no plain-text version)")
    assert hit(by_name("HTML_HIDDEN_TEXT"), raw) == Hit(2.0, "HTML-only message with hidden text")


def test_short_preheader_and_white_button_text_are_not_hidden_text() -> None:
    body = ("<p style='display:none;max-height:0'>Your June newsletter is here</p>"
            "<table><tr><td bgcolor='#0070c0'><a style='color:#ffffff' href='https://shop.test/'>"
            "Read more</a></td></tr></table>")
    raw = message(body, content_type="text/html")
    assert hit(by_name("HTML_HIDDEN_TEXT"), raw) is None
    white_on_white = "<font color='#ffffff'>" + "hash buster words " * 20 + "</font>"
    assert hit(by_name("HTML_HIDDEN_TEXT"), message(white_on_white,
                                                    content_type="text/html")) is not None


def test_pictures_without_text_and_forms() -> None:
    raw = message("<a href='https://x.test/'><img src='https://x.test/offer.png'></a>",
                  content_type="text/html")
    assert hit(by_name("HTML_IMAGES_NO_TEXT"), raw) is not None
    form = message("<form action='https://x.test/login'><input name='password'></form>",
                   content_type="text/html")
    assert hit(by_name("HTML_FORM"), form) is not None
    assert len(html.RULES) == 4


# --- links ----------------------------------------------------------------------------------


def test_link_text_shows_another_site() -> None:
    raw = message("<a href='http://evil.test/login'>https://www.paypal.com/signin</a>",
                  content_type="text/html")
    assert hit(by_name("LINK_TEXT_MISMATCH"), raw) == Hit(
        2.5, "Link text shows paypal.com but points to evil.test")
    same_site = message("<a href='https://click.paypal.com/x'>paypal.com</a>",
                        content_type="text/html")
    assert hit(by_name("LINK_TEXT_MISMATCH"), same_site) is None
    words = message("<a href='https://evil.test/'>Read more</a>", content_type="text/html")
    assert hit(by_name("LINK_TEXT_MISMATCH"), words) is None


def test_numeric_shortened_and_punycode_links() -> None:
    assert hit(by_name("LINK_NUMERIC_HOST"), message("see http://192.0.2.7/login now")) is not None
    assert hit(by_name("LINK_SHORTENER"), message("go to https://bit.ly/3xYz")) is not None
    assert hit(by_name("LINK_PUNYCODE"), message("https://xn--pypal-4ve.com/")) is not None
    assert hit(by_name("LINK_NUMERIC_HOST"), message("see https://docs.test/page")) is None
    assert len(links.RULES) == 5


def test_links_to_the_senders_own_domain_are_a_good_sign() -> None:
    own = message("Read it at https://news.mailbox.test/june and https://mailbox.test/")
    assert hit(by_name("LINKS_TO_SENDER"), own) == Hit(
        -1.0, "Every link leads to the sender's own domain (mailbox.test)")
    elsewhere = message("https://mailbox.test/ and https://tracker.test/x")
    assert hit(by_name("LINKS_TO_SENDER"), elsewhere) is None
    assert hit(by_name("LINKS_TO_SENDER"), message()) is None


# --- attachments ----------------------------------------------------------------------------


@pytest.mark.parametrize(("filename", "text"), [
    ("invoice.exe", "Executable attachment invoice.exe"),
    ("invoice.pdf.exe", "Executable attachment invoice.pdf.exe disguised as a document"),
    ("update.JS", "Executable attachment update.JS"),
])
def test_executable_attachment(filename: str, text: str) -> None:
    raw = multipart(("text/plain", "", "See attached."),
                    ("application/octet-stream",
                     f'Content-Disposition: attachment; filename="{filename}"\r\n'
                     "Content-Transfer-Encoding: base64\r\n", "TVqQAAMAAAAEAAAA//8AALgAAAA="))
    result = hit(by_name("ATTACHMENT_EXECUTABLE"), raw)
    assert result is not None and result.text == text and result.score >= 5


def test_documents_are_not_executables_and_web_pages_are_flagged() -> None:
    pdf = multipart(("application/pdf", 'Content-Disposition: attachment; filename="a.pdf"\r\n',
                     "JVBERi0xLjQK"))
    assert hit(by_name("ATTACHMENT_EXECUTABLE"), pdf) is None
    page = multipart(("text/html", 'Content-Disposition: attachment; filename="login.html"\r\n',
                      "<form></form>"))
    result = hit(by_name("ATTACHMENT_WEB_PAGE"), page)
    assert result is not None and "login.html" in result.text
    assert len(attachments.RULES) == 2


# --- bulk -----------------------------------------------------------------------------------


def test_unsubscribe_text_without_header() -> None:
    raw = message("Big sale!\r\nTo unsubscribe click here.\r\n")
    assert hit(by_name("BULK_NO_UNSUBSCRIBE_HEADER"), raw) is not None
    honest = message("Big sale!\r\nTo unsubscribe click here.\r\n",
                     List_Unsubscribe="<https://shop.test/unsubscribe>")
    assert hit(by_name("BULK_NO_UNSUBSCRIBE_HEADER"), honest) is None


@pytest.mark.parametrize("text", ["TO UNSUBSCRIBE CLICK HERE", "Click to Opt-Out",
                                  "Pour vous d\u00e9sabonner: unsubscribe", "un\u017fubscribe now"])
def test_unsubscribe_text_in_any_case_or_script(text: str) -> None:
    """Long s (U+017F) matches "s" under the expression's IGNORECASE: non-ASCII text always
    goes through the expression."""
    raw = message(f"Big sale!\r\n{text}\r\n")
    assert hit(by_name("BULK_NO_UNSUBSCRIBE_HEADER"), raw) is not None
    assert hit(by_name("BULK_NO_UNSUBSCRIBE_HEADER"), message("Big sale today!\r\n")) is None


def test_hidden_recipients() -> None:
    undisclosed = message(To="undisclosed-recipients:;")
    assert hit(by_name("BULK_HIDDEN_RECIPIENTS"), undisclosed) is not None
    assert hit(by_name("BULK_HIDDEN_RECIPIENTS"), message(drop=("To",))) is not None
    assert hit(by_name("BULK_HIDDEN_RECIPIENTS"), message()) is None
    assert len(bulk.RULES) == 2
