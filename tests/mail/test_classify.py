"""Every message of the inbound corpus is classified as its line in expected.toml says."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from flowbuilder.mail.classify import bounce_kind, classify, enhanced_status

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "mail"
EXPECTED = tomllib.loads((CORPUS / "expected.toml").read_text(encoding="utf-8"))


def test_the_corpus_has_at_least_30_messages_and_every_one_is_listed() -> None:
    files = {p.stem for p in CORPUS.glob("*.eml")}
    assert len(files) >= 30
    assert files == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_message_is_classified_as_expected(name: str) -> None:
    kind, bounce, refers = EXPECTED[name]
    c = classify((CORPUS / f"{name}.eml").read_bytes())
    assert c.kind == kind, c.reason
    if bounce:
        assert c.bounce == bounce, (c.status, c.diagnostic)
    if refers:
        assert refers in c.refers_to


def test_auto_replies_are_never_replies_even_when_they_quote_our_message() -> None:
    autos = [n for n, (kind, _, _) in EXPECTED.items() if kind == "auto_reply"]
    assert len(autos) >= 5
    for name in autos:
        c = classify((CORPUS / f"{name}.eml").read_bytes())
        assert c.refers_to and c.kind == "auto_reply"


def test_status_codes_decide_hard_and_soft() -> None:
    assert [bounce_kind(s) for s in ("5.1.1", "5.1.10", "5.2.1", "5.2.2", "4.4.1", "5.7.1")] == [
        "hard",
        "hard",
        "hard",
        "soft",
        "soft",
        "soft",
    ]
    assert bounce_kind("5.0.0", "550 User unknown") == "hard"
    assert bounce_kind("5.0.0", "554 Transaction failed") == "soft"
    assert enhanced_status("550-5.1.1 The email account") == "5.1.1"


def test_a_non_standard_bounce_is_read_by_the_second_opinion() -> None:
    c = classify((CORPUS / "qmail_failure.eml").read_bytes())
    assert c.second_opinion == "permanent" and c.recipient == "gone@oldhost.example"
