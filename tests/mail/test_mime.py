"""MIME bytes written by hand read back through the stdlib's parser exactly: headers folded within
78 characters and RFC 2047-encoded on character boundaries, each part in the encoding that suits
it, CRLF everywhere."""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowbuilder.mail import mime


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def same(content: str, text: str) -> bool:
    return content.replace("\r\n", "\n").rstrip("\n") == text.rstrip("\n")


def lines(raw: bytes) -> list[bytes]:
    assert b"\n" not in raw.replace(b"\r\n", b"")  # no bare line feed anywhere
    return raw.split(b"\r\n")


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=1, max_size=300).filter(lambda s: s.strip()))
def test_any_subject_reads_back_as_written_with_short_lines(subject: str) -> None:
    raw = mime.build([("Subject", mime.header_text(subject))], "x\n", None, "b")
    assert str(parse(raw)["Subject"]) == " ".join(subject.split())
    head = raw.split(b"\r\n\r\n", 1)[0]
    for line in lines(head):
        assert len(line) <= 78, line


def test_a_korean_subject_is_split_into_encoded_words_on_character_boundaries() -> None:
    subject = "(광고) 지민님, Acme Cloud에 오신 것을 환영합니다 — 처음 10분 동안 해 볼 세 가지"
    value = mime.header_text(subject)
    words = value.split("\r\n ")
    assert len(words) > 1 and all(w.startswith("=?utf-8?b?") and len(w) <= 75 for w in words)
    raw = mime.build([("Subject", value)], "x\n", None, "b")
    assert parse(raw)["Subject"] == subject


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("Acme Cloud", "Acme Cloud <hello@acme.example>"),
        ("Acme, Inc.", '"Acme, Inc." <hello@acme.example>'),
        ('Say "hi"', '"Say \\"hi\\"" <hello@acme.example>'),
        ("에이크미 클라우드", None),
    ],
)
def test_display_names_are_quoted_or_encoded_as_they_need(name: str, shown: str | None) -> None:
    value = mime.address(name, "hello@acme.example")
    if shown is not None:
        assert value == shown
    raw = mime.build([("From", value)], "x\n", None, "b")
    parsed = parse(raw)["From"]
    assert parsed.addresses[0].display_name == name
    assert parsed.addresses[0].addr_spec == "hello@acme.example"


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Hello Ann,\nsee you soon.\n", "7bit"),
        ("Hello Ann, café and crème\n" + "plain words " * 40 + "\n", "quoted-printable"),
        ("안녕하세요, 지민님. 가입해 주셔서 감사합니다.\n" * 20, "base64"),
        ("one very long line " * 80 + "\n", "quoted-printable"),
    ],
)
def test_each_part_goes_in_the_encoding_that_suits_it_and_reads_back(
    text: str, encoding: str
) -> None:
    html = "<p>" + text.replace("\n", "<br>") + "</p>"
    raw = mime.build([("Subject", "Hi")], text, html, "=_fb_test")
    msg = parse(raw)
    plain = msg.get_body(("plain",))
    rich = msg.get_body(("html",))
    assert plain is not None and rich is not None
    assert plain["Content-Transfer-Encoding"] == encoding
    # The line end before a boundary belongs to the boundary (RFC 2046): a part's last one goes.
    assert same(plain.get_content(), text)
    assert same(rich.get_content(), html)
    for line in lines(raw):
        assert len(line) <= 998
        if encoding != "7bit":
            assert len(line) <= 78, line


def test_a_text_only_message_is_a_single_part() -> None:
    raw = mime.build([("Subject", "Hi")], "Hello\r\nthere", None, "unused")
    msg = parse(raw)
    assert msg.get_content_type() == "text/plain"
    assert same(msg.get_content(), "Hello\nthere\n")
    assert raw.endswith(b"there\r\n")
