"""MIME bytes for a marketing email, written directly.

The stdlib's `EmailMessage` builds a tree of objects, runs header policies and a generator for
every message; a marketing email always has the same shape (`multipart/alternative` with a text
and an HTML part, or one text part), so flowbuilder writes its bytes in one pass: headers folded
(RFC 5322) and RFC 2047-encoded where they are not ASCII, bodies quoted-printable (mostly ASCII)
or base64 (mostly not), CRLF line ends, lines within 78 characters.

    >>> raw = build([("Subject", "Hi")], "Hello\\n", None, "b1")
    >>> raw.startswith(b"Subject: Hi\\r\\nMIME-Version: 1.0\\r\\n")
    True
    >>> header_text("(광고) 환영합니다")
    '=?utf-8?b?KOq0keqzoCkg7ZmY7JiB7ZWp64uI64uk?='
    >>> mailbox("user@bücher.example")
    Mailbox(smtp='user@xn--bcher-kva.example', header='user@xn--bcher-kva.example')
    >>> mailbox("지민@한국.kr").utf8
    True
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

from email_validator import EmailNotValidError, validate_email

_NEEDS_QUOTES = re.compile(r'[()<>\[\]:;@\\,."]')
_BASE64_LINE = re.compile(rb".{1,76}")
# 45 bytes of UTF-8 make 60 base64 characters: with `=?utf-8?b?` and `?=`, 72 in all, on a
# folded line of 73 (RFC 2047: a word within 75, a line with words within 76).
_WORD_BYTES = 45
# The first line also holds the header's name: `List-Unsubscribe: ` is the longest written.
NAME_ROOM = 18


def encode_word(text: str, first: int = NAME_ROOM) -> str:
    """RFC 2047 encoded words (`=?utf-8?b?…?=`), split on character boundaries, one to a folded
    line; the first leaves `first` characters for the header's name."""
    data = text.encode("utf-8")
    words: list[str] = []
    start, end = 0, len(data)
    room = (76 - first - 12) // 4 * 3
    while start < end:
        cut = min(start + (room if not words else _WORD_BYTES), end)
        while cut < end and data[cut] & 0xC0 == 0x80:  # never inside a character
            cut -= 1
        words.append(_b_word(data[start:cut]))
        start = cut
    return "\r\n ".join(words)


def _b_word(data: bytes) -> str:
    return "=?utf-8?b?" + binascii.b2a_base64(data, newline=False).decode("ascii") + "?="


@lru_cache(maxsize=4096)
def header_text(text: str) -> str:
    """An unstructured header value (a subject): ASCII as it is, folded; anything else encoded.
    Many messages share a subject: each is encoded once."""
    text = " ".join(text.split())
    if text.isascii() and text.isprintable() and "=?" not in text:
        return _fold(text)
    return encode_word(text)


def address(name: str | None, addr: str) -> str:
    """`Name <addr>`, with the display name quoted or encoded as it needs."""
    if not name:
        return addr
    if not (name.isascii() and name.isprintable()):
        shown = encode_word(name)
    elif _NEEDS_QUOTES.search(name):
        shown = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:
        shown = name
    return followed_by(shown, f"<{addr}>")


class Mailbox(NamedTuple):
    """An address as it goes out: `smtp` for the envelope, with the domain in its ASCII form
    (IDNA A-labels), and `header` for an address header (To:). An ASCII local part makes both
    ASCII (RFC 5322: an address has no encoded words); one that is not ASCII can only go in
    UTF-8, with SMTPUTF8 (RFC 6531) and a UTF-8 header (RFC 6532)."""

    smtp: str
    header: str

    @property
    def utf8(self) -> bool:
        """The local part is not ASCII: the message needs SMTPUTF8."""
        return not self.smtp.isascii()


def mailbox(address: str) -> Mailbox:
    """`address` (as intake stores it: email-validator's normalized form, maybe not ASCII) as
    it goes out. Raises ValueError for an address email-validator refuses."""
    if address.isascii():
        return Mailbox(address, address)
    return _international(address)


@lru_cache(maxsize=4096)
def _international(address: str) -> Mailbox:
    try:
        info = validate_email(address, check_deliverability=False)
    except EmailNotValidError as e:
        raise ValueError(f"`{address}` is not an address mail can go to: {e}") from None
    ascii_form = f"{info.local_part}@{info.ascii_domain}"
    return Mailbox(ascii_form, ascii_form if info.local_part.isascii() else info.normalized)


def followed_by(value: str, more: str) -> str:
    """`value more`, with `more` on a folded line of its own when the line would be too long."""
    last = value.rpartition("\r\n")[2]
    room = 76 - (0 if "\r\n" in value else NAME_ROOM)
    return f"{value} {more}" if len(last) + 1 + len(more) <= room else f"{value}\r\n {more}"


def _fold(value: str, first: int = NAME_ROOM) -> str:
    if len(value) <= 78 - first:
        return value
    lines: list[str] = []
    line = ""
    for word in value.split(" "):
        if line and len(line) + 1 + len(word) > (76 - first if not lines else 76):
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\r\n ".join(lines)


def _body(text: str) -> tuple[bytes, bytes]:
    """(Content-Transfer-Encoding, encoded body ending in CRLF) for a text part."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    data = text.encode("utf-8")
    if data.isascii() and (len(data) <= 900 or all(len(x) <= 900 for x in data.split(b"\n"))):
        body = data.replace(b"\n", b"\r\n")
        return b"7bit", body if body.endswith(b"\r\n") else body + b"\r\n"
    # Each non-ASCII character takes 2-4 bytes in UTF-8: the bytes beyond one per character,
    # times 1.5, estimate how many bytes are not ASCII. Quoted-printable writes each of them as
    # three characters and base64 every byte as 4/3: past a sixth, base64 is the shorter.
    non_ascii = (len(data) - len(text)) * 3 // 2
    if non_ascii * 6 > len(data):
        encoded = binascii.b2a_base64(data, newline=False)
        return b"base64", b"\r\n".join(_BASE64_LINE.findall(encoded)) + b"\r\n"
    qp = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    body = qp.replace(b"\n", b"\r\n")
    return b"quoted-printable", body if body.endswith(b"\r\n") else body + b"\r\n"


def _part(content_type: bytes, text: str) -> bytes:
    cte, body = _body(text)
    return (
        b"Content-Type: "
        + content_type
        + b"; charset=utf-8\r\nContent-Transfer-Encoding: "
        + cte
        + b"\r\n\r\n"
        + body
    )


def lines(headers: Sequence[tuple[str, str]], *, utf8: bool = False) -> bytes:
    """Header lines; values already encoded and folded. Only with `utf8` (a message that goes
    with SMTPUTF8, RFC 6532) may a value hold more than ASCII."""
    return "".join(f"{name}: {value}\r\n" for name, value in headers).encode(
        "utf-8" if utf8 else "ascii"
    )


def body(text: str, html: str | None, boundary: str) -> tuple[list[tuple[str, str]], bytes]:
    """(the message's MIME headers, everything after the blank line that ends the headers)."""
    if html is None:
        cte, encoded = _body(text)
        return [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Transfer-Encoding", cte.decode("ascii")),
        ], encoded
    b = boundary.encode("ascii")
    return [("Content-Type", f'multipart/alternative; boundary="{boundary}"')], b"".join(
        (
            b"--" + b + b"\r\n",
            _part(b"text/plain", text),
            b"--" + b + b"\r\n",
            _part(b"text/html", html),
            b"--" + b + b"--\r\n",
        )
    )


def build(headers: Sequence[tuple[str, str]], text: str, html: str | None, boundary: str) -> bytes:
    """The whole message: `headers` (already encoded values) then the body parts."""
    content, payload = body(text, html, boundary)
    return lines([*headers, ("MIME-Version", "1.0"), *content]) + b"\r\n" + payload
