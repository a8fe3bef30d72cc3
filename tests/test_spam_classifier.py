"""The builtin engine's classifier: tokens from content and real signals only, learning by
counting, the model file, and the calibration learned with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailcloak.mail.spam import classifier
from mailcloak.mail.spam.classifier import Calibration, ModelError, TokenCounts
from mailcloak.mail.spam.corpus import ANONYMISED
from mailcloak.mail.spam.features import MessageView, parse
from mailcloak.mail.spam.tokenize import Tokens, token_ids
from mailcloak.mail.spam.tokenize import tokens as view_tokens
from mailcloak.mail.spam.train import fit_calibration

LIST_MESSAGE = (
    b"From: Alice via Devs <devs@lists.example.org>\r\n"
    b"To: devs@lists.example.org\r\n"
    b"Subject: Re: [Devs] Release planning for 2026\r\n"
    b"Date: Mon, 1 Jun 2026 10:00:00 +0000\r\n"
    b"List-Id: Developers <devs.lists.example.org>\r\n"
    b"List-Post: <mailto:devs@lists.example.org>\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    b"We ship version 4.2 on 2026-06-30. See https://docs.project.test/release for the plan.\r\n"
    b"> _______________________________________________\r\n"
    b"> Devs mailing list\r\n"
    b"_______________________________________________\r\n"
    b"Devs mailing list\r\n"
    b"Devs@lists.example.org\r\n"
    b"https://lists.example.org/mailman/listinfo/devs\r\n"
)


def spam_like(word: str) -> bytes:
    return (f"From: Offers <win@prize.test>\r\nSubject: {word} prize\r\n\r\n"
            f"Claim your {word} prize now at http://claim.prize.test/{word}\r\n").encode()


def ham_like(word: str) -> bytes:
    return (f"From: Alice <alice@mailbox.test>\r\nSubject: notes about {word}\r\n\r\n"
            f"The meeting notes about {word} are in the shared folder.\r\n").encode()


def tokens(view: MessageView, **options: frozenset[str]) -> set[str]:
    """Both views of a message's tokens, as one set."""
    return set(view_tokens(view, **options))


def ids(raw: bytes) -> list[int]:
    return view_tokens(parse(raw)).ids().all


# --- tokens ---------------------------------------------------------------------------------


def test_list_additions_dates_and_numbers_are_not_tokens() -> None:
    found = tokens(parse(LIST_MESSAGE))
    assert {"ship", "version", "s:release", "s:planning", "url:project.test",
            "subject:reply", "from:alice"} <= found
    assert not {tok for tok in found if "devs" in tok or "mailing" in tok or "listinfo" in tok}
    assert not {tok for tok in found if "2026" in tok or "4.2" in tok or "30" in tok}
    assert "from:lists.example.org" not in found  # the list rewrote From: not the sender's
    own_name = LIST_MESSAGE.replace(b"Alice via Devs", b"Developers of the project")
    assert not {tok for tok in tokens(parse(own_name)) if tok.startswith("from:")}


def test_anonymised_names_and_masked_domains_are_dropped() -> None:
    raw = (b"From: Bank <alert@bank.test>\r\nTo: user@example.com\r\nSubject: hello\r\n\r\n"
           b"Dear user@example.com, your example.com mailbox: https://login.suspicious.shop/x\r\n")
    found = tokens(parse(raw), masked=ANONYMISED)
    assert not {tok for tok in found if "example" in tok or "suspicious" in tok}
    assert {"dear", "mailbox", "from:bank.test", "url-word:x"} - {"url-word:x"} <= found


def test_signs_of_obfuscation_become_tokens() -> None:
    raw = "Subject: Fr\u200bee g\u0456ft\r\n\r\nW\u200bin a pr\u0456ze \U0001f381 $500\r\n"
    found = tokens(parse(raw.encode()))
    assert {"s:invisible-characters", "invisible-characters", "emoji", "mixed-script-word",
            "amount-of-money"} <= found


def test_how_the_sender_wrote_the_header_becomes_tokens() -> None:
    raw = (b"From: ALICE BANK <abc123x@bank.test>\r\n"
           b"To: a@one.test, b@two.test, c@three.test, d@four.test, e@five.test, f@six.test\r\n"
           b"Subject: =?utf-8?B?SGVsbG8=?=\r\nMessage-ID: <1.2@mailer.bank.test>\r\n"
           b"In-Reply-To: <0.1@elsewhere.test>\r\nX-Priority: 3 (Normal)\r\n"
           b"X-MSMail-Priority: Normal\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           b"PHA+SGVsbG88L3A+\r\n")
    found = tokens(parse(raw))
    assert {"header:in-reply-to", "header:mime-version", "header:x-priority:# (normal)",
            "header:x-msmail-priority:normal", "subject-encoding:utf-8:b", "from-local:a9a",
            "from:name-capitals", "recipients:many", "message-id:sender-domain",
            "top:text/html", "encoding:text/html:base64"} <= found


def test_routing_list_and_mailbox_fields_never_become_tokens() -> None:
    """Relays, lists and the collecting mailbox write these: they tell how a message
    travelled and was stored, not what it is."""
    raw = (b"Received: from relay.test by mx.test; Mon, 1 Jun 2026 10:00:00 +0000\r\n"
           b"Delivered-To: user@mx.test\r\nX-Keywords: Junk\r\nX-Status: RO\r\n"
           b"List-Id: <devs.lists.test>\r\nPrecedence: list\r\nErrors-To: owner@lists.test\r\n"
           b"From: Alice <alice@mailbox.test>\r\nSubject: notes\r\n\r\nThe notes.\r\n")
    found = tokens(parse(raw))
    assert not {tok for tok in found if tok.startswith("header:")}
    assert not {tok for tok in found if any(name in tok for name in (
        "received", "delivered", "keywords", "status", "precedence", "errors", "relay"))}


def test_how_links_are_written_becomes_tokens() -> None:
    raw = (b"From: Bank <alert@bank.test>\r\nSubject: account\r\n\r\n"
           b"Sign in at http://bank.test@login.evil.test:8080/%73ign or "
           b"http://click.mailer.shop.test/offer\r\n")
    found = tokens(parse(raw))
    assert {"url:user-info", "url:port", "url:escaped", "url:evil.test",
            "url-host-word:login", "url-host-word:click"} <= found
    assert "url:bank.test" not in found  # the user-info part is not where the link leads


@pytest.mark.parametrize(("text", "expected", "absent"), [
    ("Visit WWW.Shop.test/deal today", {"url:shop.test"}, set()),
    ("Write to sales@shop.test or HTTPS://Shop.test/a", {"email:shop.test", "url:shop.test"},
     set()),
    ("See http://lists.test/r/x@mail.shop.test", {"url:lists.test", "email:shop.test"},
     set()),
    ("Call 1-800-555-0199 now", {"text:toll-free-number"}, {"text:phone-number"}),
    ("Call (212) 555-0199 now", {"text:phone-number"}, {"text:toll-free-number"}),
    # \d matches every script's digits: Arabic-Indic ones are a number too
    ("Call \u0662\u0661\u0662-\u0665\u0665\u0665-\u0660\u0661\u0669\u0669 now",
     {"text:phone-number"}, set()),
    ("No links, no addresses and no numbers here", set(),
     {"text:phone-number", "text:toll-free-number", "links:elsewhere"}),
])
def test_links_addresses_and_numbers_in_the_text(text: str, expected: set[str],
                                                  absent: set[str]) -> None:
    raw = "From: a@sender.test\r\nSubject: hello\r\nContent-Type: text/plain; charset=utf-8"
    found = tokens(parse((raw + f"\r\n\r\n{text}\r\n").encode()))
    assert expected <= found
    assert not absent & found
    assert not {tok for tok in found if "0199" in tok or tok == "shop"}


@pytest.mark.parametrize(("text", "url"), [
    ("Visit WWW.Shop.test/deal today.", "WWW.Shop.test/deal"),
    ("Go to HTTPS://Shop.test/a, now", "HTTPS://Shop.test/a"),
    ("Caf\u00e9 at Www.shop.test/x!", "Www.shop.test/x"),  # not ASCII: no shortcut taken
    ("No link here, only words", None),
])
def test_links_in_the_text_are_found_in_any_case(text: str, url: str | None) -> None:
    raw = "From: a@sender.test\r\nSubject: hello\r\nContent-Type: text/plain; charset=utf-8"
    view = parse((raw + f"\r\n\r\n{text}\r\n").encode())
    assert view.urls == ([url] if url else [])


@pytest.mark.parametrize("footer", [
    "You received this message because you are subscribed to the Google Groups \"Zebra\".",
    "YOUR USE OF YAHOO! GROUPS IS SUBJECT TO zebra terms",
    "Caf\u00e9 zebra mailing list",  # not ASCII: through the expressions themselves
])
def test_list_boilerplate_is_not_tokens_in_any_case(footer: str) -> None:
    raw = ("From: a@sender.test\r\nSubject: hello\r\nContent-Type: text/plain; "
           f"charset=utf-8\r\n\r\nThe real text.\r\n{footer}\r\n").encode()
    found = tokens(parse(raw))
    assert "real" in found
    assert not {tok for tok in found if "zebra" in tok}


def test_a_subject_padded_to_hide_its_tail_is_a_sign() -> None:
    padded = b"From: a@b.test\r\nSubject: Invites you with open arms          25336\r\n\r\nHi\r\n"
    assert "subject:padded" in tokens(parse(padded))
    plain = padded.replace(b"          ", b" ")
    assert "subject:padded" not in tokens(parse(plain))


def test_words_joined_by_punctuation_are_separate_tokens() -> None:
    found = tokens(parse(b"Subject: x\r\n\r\nThousands of addresses,and (fresh) lists;today\r\n"))
    assert {"addresses", "and", "fresh", "lists", "today"} <= found
    assert not {tok for tok in found if "," in tok or ";" in tok or "(" in tok}


def test_tokens_come_in_two_views_what_a_message_says_and_how_it_was_sent() -> None:
    found = view_tokens(parse(LIST_MESSAGE))
    assert isinstance(found, Tokens)
    assert {"ship", "version", "s:release", "s:planning", "from:alice"} <= found.words
    assert {"url:project.test", "subject:reply", "top:text/plain", "links:few"} <= found.form
    assert not found.words & found.form
    sender = view_tokens(parse(b"From: Alice <alice@mailbox.test>\r\nSubject: x\r\n\r\nHi\r\n"))
    assert "from:alice" in sender.words and "from:mailbox.test" in sender.form
    ids = found.ids()
    assert sorted(ids.words) == sorted(token_ids(found.words))
    assert sorted(ids.all) == sorted(token_ids(found.words) + token_ids(found.form))


def test_token_ids_are_stable_across_processes() -> None:
    assert token_ids(["viagra"]) == [287661370]


# --- learning and scoring -------------------------------------------------------------------


def trained(words: list[str]) -> TokenCounts:
    model = TokenCounts()
    for word in words:
        model.learn(ids(spam_like(word)), is_spam=True)
        model.learn(ids(ham_like(word)), is_spam=False)
    return model


def test_unknown_model_is_unsure() -> None:
    assert classifier.score(ids(spam_like("gold")), TokenCounts()).probability == 0.5


def test_a_few_learned_messages_change_the_score() -> None:
    model = trained(["gold", "silver", "bronze", "copper"])
    message = ids(b"Subject: zorblax offer\r\n\r\nThe zorblax quantum widget is here\r\n")
    before = classifier.score(message, model).probability
    for _ in range(3):
        model.learn(ids(b"Subject: zorblax deal\r\n\r\nzorblax quantum widget\r\n"),
                    is_spam=True)
    after = classifier.score(message, model).probability
    assert after > 0.8 and after - before > 0.5
    assert classifier.score(ids(spam_like("platinum")), model).probability > 0.9
    assert classifier.score(ids(ham_like("platinum")), model).probability < 0.1


def test_learned_counts_add_to_the_model_and_forgetting_undoes_learning() -> None:
    model = trained(["gold", "silver"])
    message = ids(b"Subject: zorblax\r\n\r\nzorblax widget\r\n")
    learned = TokenCounts()
    learned.learn(message, is_spam=False)
    extra = {token: learned.get(token) for token in message}
    with_learned = classifier.score(message, model, extra, (0, 1)).probability
    assert with_learned < classifier.score(message, model).probability
    learned.learn(message, is_spam=False, times=-1)
    assert learned.counts == {} and learned.ham_messages == 0


def test_token_probability_is_smoothed_towards_unknown() -> None:
    rare = classifier.token_probability(1, 0, 10, 10)
    common = classifier.token_probability(9, 0, 10, 10)
    assert 0.5 < rare < common < 1.0
    assert classifier.token_probability(0, 0, 10, 10) == 0.5


# --- model file -----------------------------------------------------------------------------


def test_model_round_trip(tmp_path: Path) -> None:
    model = trained(["gold", "silver", "bronze"])
    model.calibration = Calibration(bias=-0.3, cut=1.2, scale=2.0, text_weight=2.5,
                                    rule_weights={"HTML_ONLY": 1.1}, form_weight=1.8)
    path = tmp_path / "model.bin"
    written = classifier.save(model, path, about={"sources": ["tests"]})
    loaded = classifier.load(path)
    assert written == len(model.counts)
    assert loaded.counts == model.counts
    assert (loaded.spam_messages, loaded.ham_messages) == (3, 3)
    assert loaded.calibration == model.calibration
    assert classifier.read_header(path)["sources"] == ["tests"]


@pytest.mark.parametrize("data", [b"", b"PK\x03\x04 not a model",
                                  classifier.MAGIC + b'{"format": 99}\n',
                                  classifier.MAGIC + b'{"format": 1, "tokens": 5, '
                                  b'"spam_messages": 1, "ham_messages": 1}\nxx'])
def test_damaged_model_files_give_a_clear_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(data)
    with pytest.raises(ModelError, match=str(path)):
        classifier.load(path)


def test_missing_model_file() -> None:
    with pytest.raises(ModelError, match="cannot read"):
        classifier.load(Path("/nonexistent/model.bin"))


# --- calibration ----------------------------------------------------------------------------


def test_default_calibration_keeps_rule_points() -> None:
    calibration = Calibration()
    assert calibration.rule_points("ANY_RULE", 2.5) == 2.5
    assert calibration.text_points(0.999999) <= classifier.MAX_TEXT_POINTS
    assert calibration.text_points(0.01) < calibration.text_points(0.5) < 5.0


def test_fitted_calibration_weighs_rules_by_what_they_tell() -> None:
    # SIGN hits only spam, NOISE hits ham and spam alike; the text alone is unsure.
    probabilities = [(0.5, 0.5)] * 200
    labels = [index % 2 == 0 for index in range(200)]
    hits = [(("SIGN", 1.0),) if label else () for label in labels]
    hits = [(*h, ("NOISE", 1.0)) if index % 3 == 0 else h for index, h in enumerate(hits)]
    calibration = fit_calibration(probabilities, hits, labels)
    assert calibration.rule_weights["SIGN"] > calibration.rule_weights["NOISE"]
    spam_points = calibration.text_points(0.5) + calibration.rule_points("SIGN", 1.0)
    ham_points = calibration.text_points(0.5)
    assert ham_points < 5.0 <= spam_points


def test_fitted_calibration_weighs_each_view_by_what_it_tells() -> None:
    # The form tells spam from ham; the words are right only as often as they are wrong.
    labels = [index % 2 == 0 for index in range(400)]
    words = [0.9 if index % 4 < 2 else 0.1 for index in range(400)]
    form = [0.8 if label else 0.2 for label in labels]
    calibration = fit_calibration(list(zip(words, form, strict=True)), [()] * 400, labels)
    assert calibration.form_weight is not None
    assert calibration.form_weight > 1.0 > calibration.text_weight
    assert calibration.text_points(0.1, 0.8) >= 5.0 > calibration.text_points(0.9, 0.2)


@pytest.mark.parametrize(("words", "form"), [(0.5, 0.5), (0.02, 0.97), (0.99, 0.3),
                                             (0.999999, 0.999999), (1e-9, 1e-9)])
def test_the_views_share_of_the_text_points_adds_up(words: float, form: float) -> None:
    calibration = Calibration(bias=0.2, cut=0.8, scale=2.0, text_weight=1.7, form_weight=2.5)
    words_points, form_points = calibration.view_points(words, form)
    assert words_points + form_points == pytest.approx(calibration.text_points(words, form),
                                                       abs=0.011)
    assert words_points + form_points <= classifier.MAX_TEXT_POINTS
    if form > 0.5:
        assert 0 < form_points <= 2.0 * 2.5 * classifier.text_evidence(form) + 0.01
    elif form < 0.5:
        assert form_points < 0


def test_a_model_calibrated_before_the_form_view_scores_every_token_as_one(
        tmp_path: Path) -> None:
    """Older model files have no form weight: all tokens are scored together, as before."""
    model = trained(["gold", "silver", "bronze"])
    model.calibration = Calibration(bias=-0.3, cut=0.8, scale=2.0, text_weight=1.5)
    path = tmp_path / "model.bin"
    classifier.save(model, path)
    assert "form_weight" not in path.read_bytes().partition(b"\n")[2].partition(b"\n")[0].decode()
    loaded = classifier.load(path)
    assert loaded.calibration.form_weight is None
    message = view_tokens(parse(spam_like("gold"))).ids()
    scores = classifier.score_views(message.words, message.form, loaded)
    assert scores.form is None
    assert scores.words == classifier.score(message.all, loaded)
    loaded.calibration = Calibration(form_weight=1.0)
    scores = classifier.score_views(message.words, message.form, loaded)
    assert scores.form == classifier.score(message.form, loaded)
    assert scores.words == classifier.score(message.words, loaded)
