"""DKIM signatures (RFC 6376, `relaxed/relaxed`), made with OpenSSL through `cryptography`.

`rsa-sha256` with a PEM RSA key (what every receiver verifies), or `ed25519-sha256` (RFC 8463)
with a base64 Ed25519 key. The key is loaded once; each message costs two SHA-256 hashes and one
signature. dkimpy computes the RSA signature in pure Python (about 13 ms a message, against
0.4 ms in OpenSSL), so flowbuilder signs here and dkimpy verifies in the tests.

The message builder signs from its own header list and body bytes (`DkimKey.header`), so nothing
is parsed back; `DkimKey.sign` signs any message's bytes.

    >>> relaxed_header("Subject", "Hello,\\r\\n   world  ")
    b'subject:Hello, world'
    >>> relaxed_body(b"a  b \\r\\n\\r\\n\\r\\n")
    b'a b\\r\\n'
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

# The headers signed when the message has them: both unsubscribe headers among them, so nobody
# can strip or change the one-click unsubscribe without breaking the signature.
SIGNED_HEADERS = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-id",
    "feedback-id",
    "mime-version",
    "content-type",
)

_EOL_SPACE = re.compile(rb"[ \t]+(?=\r\n)")
_SPACES = re.compile(rb"[ \t]+")
_RUNS = re.compile(rb"[ \t]{2,}|\t")  # what `_SPACES` changes: runs of two, and tabs
_LINE_END = re.compile(rb"\r?\n")
_HEADER_LINE = re.compile(rb"\r?\n(?![ \t])")
_B64_LINE = 72


class DkimKeyError(ValueError):
    """A DKIM key flowbuilder cannot use; the message says what is wrong."""


def relaxed_header(name: str, value: str) -> bytes:
    """One header, as the message builder writes it, in `relaxed` canonical form, without its
    line end. Values are ASCII but in a message that goes with SMTPUTF8, whose headers are
    UTF-8 (RFC 6532), and signed as such (RFC 8616)."""
    if not value.isascii():  # only spaces and tabs are white space to DKIM
        return _relaxed_raw(name.strip().encode("ascii"), value.encode("utf-8"))
    return name.strip().lower().encode("ascii") + b":" + " ".join(value.split()).encode("ascii")


def _relaxed_raw(name: bytes, value: bytes) -> bytes:
    """`relaxed_header` for any header as it came: bytes, maybe not ASCII."""
    return name.rstrip().lower() + b":" + _SPACES.sub(b" ", _LINE_END.sub(b"", value)).strip()


def relaxed_body(body: bytes) -> bytes:
    """The body in `relaxed` canonical form: no space at line ends, runs of spaces made one, no
    empty lines at the end, and a final CRLF when anything is left."""
    # Byte-string tests first: most bodies need neither pass, and a pass over every space costs
    # more than the rest of the signature but the key operation. A tab is looked for first: one
    # byte is found at memory speed, and a body without one needs two of the four tests only.
    tab = b"\t" in body
    if b" \r\n" in body or (tab and b"\t\r\n" in body):
        body = _EOL_SPACE.sub(b"", body)
    if tab or b"  " in body:
        body = _RUNS.sub(b" ", body)
    while body.endswith(b"\r\n\r\n"):
        body = body[:-2]
    if body == b"\r\n":
        return b""
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body


@dataclass(frozen=True)
class DkimKey:
    """A loaded signing key with its selector and domain."""

    selector: str
    domain: str
    algorithm: Literal["rsa-sha256", "ed25519-sha256"]
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

    @classmethod
    def from_bytes(cls, data: bytes, selector: str, domain: str) -> DkimKey:
        """A PEM RSA private key, or an Ed25519 key as base64 of its 32-byte seed (what dkimpy
        takes); a PEM Ed25519 key works too."""
        if not selector or not domain:
            raise DkimKeyError("a DKIM key needs its selector and its signing domain")
        text = data.strip()
        if text.startswith(b"-----BEGIN"):
            try:
                key = serialization.load_pem_private_key(text, password=None)
            except (ValueError, TypeError) as e:
                raise DkimKeyError(f"not a usable PEM private key: {e}") from None
            if isinstance(key, rsa.RSAPrivateKey):
                if key.key_size < 1024:
                    raise DkimKeyError(
                        f"an RSA key of {key.key_size} bits; receivers ignore DKIM keys under "
                        "1024 bits (use 2048)"
                    )
                return cls(selector, domain, "rsa-sha256", key)
            if isinstance(key, ed25519.Ed25519PrivateKey):
                return cls(selector, domain, "ed25519-sha256", key)
            raise DkimKeyError(
                f"a {type(key).__name__} cannot sign DKIM; use an RSA or an Ed25519 key"
            )
        try:
            seed = base64.b64decode(text, validate=True)
        except ValueError:
            seed = b""
        if len(seed) != 32:
            raise DkimKeyError("neither a PEM private key nor an Ed25519 key (base64 of 32 bytes)")
        return cls(
            selector, domain, "ed25519-sha256", ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        )

    @classmethod
    def load(cls, path: Path, selector: str, domain: str) -> DkimKey:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise DkimKeyError(f"cannot read {path}: {e.strerror}") from None
        try:
            return cls.from_bytes(data, selector, domain)
        except DkimKeyError as e:
            raise DkimKeyError(f"{path}: {e}") from None

    def header(
        self, headers: Sequence[tuple[str, str]], body: bytes, *, timestamp: int | None = None
    ) -> bytes:
        """The `DKIM-Signature` header line (with its CRLF) that signs `headers` (ASCII name,
        value as written, folded or not) and `body` (the bytes after the blank line). The signed
        headers are those of `SIGNED_HEADERS` the message has; where a name occurs twice, the
        last occurrence is signed, as verifiers read it."""
        canonical = {name.strip().lower(): (name, value) for name, value in headers}
        return self._header(
            {h: relaxed_header(*canonical[h]) for h in SIGNED_HEADERS if h in canonical},
            body,
            timestamp,
        )

    def sign(self, message: bytes, *, timestamp: int | None = None) -> bytes:
        """`message` (any message's bytes) with its `DKIM-Signature` header on top."""
        head, sep, body = message.partition(b"\r\n\r\n")
        if not sep:
            head, body = message.removesuffix(b"\r\n"), b""
        canonical: dict[str, bytes] = {}
        for line in _HEADER_LINE.split(head):
            name, colon, value = line.partition(b":")
            key = name.strip().lower().decode("ascii", "replace")
            if colon and key in SIGNED_HEADERS:
                canonical[key] = _relaxed_raw(name, value)
        signed = {h: canonical[h] for h in SIGNED_HEADERS if h in canonical}
        return self._header(signed, body, timestamp) + message

    def _header(self, signed: dict[str, bytes], body: bytes, timestamp: int | None) -> bytes:
        todo = self._unsigned(signed, body, timestamp)
        return todo.header(self.signature(todo.data))

    def unsigned(
        self, headers: Sequence[tuple[str, str]], body: bytes, *, timestamp: int | None = None
    ) -> Unsigned:
        """What `header` does but the key operation: `signature(u.data)` makes it, and
        `u.header(signature)` is the header line `header` gives. The key operation is the
        costly part (RSA-2048: a third of a millisecond), and OpenSSL runs it without holding
        the interpreter, so a sender can make it in another thread."""
        canonical = {name.strip().lower(): (name, value) for name, value in headers}
        return self._unsigned(
            {h: relaxed_header(*canonical[h]) for h in SIGNED_HEADERS if h in canonical},
            body,
            timestamp,
        )

    def _unsigned(self, signed: dict[str, bytes], body: bytes, timestamp: int | None) -> Unsigned:
        body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode("ascii")
        tags = f"v=1; a={self.algorithm}; c=relaxed/relaxed; d={self.domain}; s={self.selector};"
        if timestamp is not None:
            tags += f" t={timestamp};"
        value = f"{tags}\r\n\th={':'.join(signed)};\r\n\tbh={body_hash};\r\n\tb="
        data = b"".join(h + b"\r\n" for h in signed.values())
        data += relaxed_header("DKIM-Signature", value)
        return Unsigned(value, data)

    def signature(self, data: bytes) -> bytes:
        """The key operation over the canonical data `Unsigned.data`."""
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return self.key.sign(hashlib.sha256(data).digest())

    def signatures(self, data: Sequence[bytes]) -> list[bytes]:
        """`signature` of each, in one call: one hand-over to a worker thread for many."""
        return [self.signature(d) for d in data]


@dataclass(frozen=True)
class Unsigned:
    """A DKIM-Signature header but its signature: the tag list up to `b=`, and the canonical
    bytes the signature covers (the signed headers, then this header with `b=` empty)."""

    value: str
    data: bytes

    def header(self, signature: bytes) -> bytes:
        """The header line, with its CRLF."""
        b = base64.b64encode(signature).decode("ascii")
        folded = "\r\n\t ".join(b[i : i + _B64_LINE] for i in range(0, len(b), _B64_LINE))
        return f"DKIM-Signature: {self.value}{folded}\r\n".encode("ascii")
