"""DKIM signatures made with OpenSSL verify with dkimpy (an independent implementation), for RSA
and Ed25519 keys, from the builder's own header list and from any message's bytes; a changed
byte fails; keys flowbuilder cannot use are refused with the reason."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from flowbuilder.mail.signing import DkimKey, DkimKeyError, relaxed_body, relaxed_header

DOMAIN, SELECTOR = "acme.example", "fb2026"
MESSAGE = (
    b"From: Acme Cloud <hello@acme.example>\r\n"
    b"To: ann@example.com\r\n"
    b"Subject: =?utf-8?b?KOq0keqzoCkg7ZmY7JiB7ZWp64uI64uk?=\r\n"
    b"Date: Tue, 03 Mar 2026 03:00:00 +0000\r\n"
    b"Message-ID: <abc@acme.example>\r\n"
    b"List-Unsubscribe: <https://mail.acme.example/u/1.x>,\r\n <mailto:unsubscribe+1.x@acme.example>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hello  Ann, \r\nsee you\t soon.\r\n\r\n\r\n"
)


def rsa_key() -> tuple[bytes, bytes]:
    """(PEM private key, DNS TXT record)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def ed25519_key() -> tuple[bytes, bytes]:
    """(base64 seed, as dkimpy takes it, DNS TXT record)."""
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return base64.b64encode(seed), b"v=DKIM1; k=ed25519; p=" + base64.b64encode(public)


def verifies(message: bytes, record: bytes) -> bool:
    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else None

    return bool(dkim.verify(message, dnsfunc=dns))


def signed_names(message: bytes) -> list[str]:
    header = message.split(b"\r\n\r\n", 1)[0].split(b"DKIM-Signature:", 1)[1]
    tags = dict(
        t.strip().split("=", 1) for t in "".join(header.decode().split()).split(";") if "=" in t
    )
    return tags["h"].split(":")


@pytest.mark.parametrize("make", [rsa_key, ed25519_key], ids=["rsa-sha256", "ed25519-sha256"])
def test_a_signed_message_verifies_with_dkimpy_and_a_changed_one_does_not(make: object) -> None:
    private, record = make()  # type: ignore[operator]
    key = DkimKey.from_bytes(private, SELECTOR, DOMAIN)
    signed = key.sign(MESSAGE, timestamp=1_772_506_800)
    assert verifies(signed, record)
    assert {"list-unsubscribe", "list-unsubscribe-post", "from", "subject"} <= set(
        signed_names(signed)
    )
    assert not verifies(signed.replace(b"Hello  Ann", b"Hello  Bob"), record)
    assert not verifies(
        signed.replace(b"List-Unsubscribe=One-Click", b"List-Unsubscribe=Nope"), record
    )
    # Refolding a signed header and adding spaces at line ends change nothing (relaxed).
    refolded = signed.replace(b",\r\n <mailto:", b", <mailto:").replace(b"see you", b"see you ")
    assert verifies(refolded, record)


def test_the_builders_header_list_and_the_bytes_give_the_same_signature() -> None:
    private, record = rsa_key()
    key = DkimKey.from_bytes(private, SELECTOR, DOMAIN)
    head, body = MESSAGE.split(b"\r\n\r\n", 1)
    headers = []
    for line in head.decode().replace("\r\n ", "\n ").split("\r\n"):
        name, _, value = line.partition(":")
        headers.append((name, value.replace("\n ", "\r\n ")))
    from_list = key.header(headers, body, timestamp=1) + MESSAGE
    from_bytes = key.sign(MESSAGE, timestamp=1)
    assert from_list == from_bytes  # RSA PKCS#1 v1.5 is deterministic
    assert verifies(from_list, record)


@pytest.mark.parametrize("make", [rsa_key, ed25519_key], ids=["rsa-sha256", "ed25519-sha256"])
def test_the_key_operation_made_apart_gives_the_same_header(make: object) -> None:
    """The sender writes the header but its signature on the event loop and makes the key
    operations of many messages in one call to a worker thread: the result is the same header,
    and it verifies."""
    private, record = make()  # type: ignore[operator]
    key = DkimKey.from_bytes(private, SELECTOR, DOMAIN)
    head, body = MESSAGE.split(b"\r\n\r\n", 1)
    headers = []
    for line in head.decode().replace("\r\n ", "\n ").split("\r\n"):
        name, _, value = line.partition(":")
        headers.append((name, value.replace("\n ", "\r\n ")))
    messages = [(headers, body), ([*headers[:1], ("To", "bob@example.com"), *headers[2:]], body)]
    todo = [key.unsigned(h, b, timestamp=7) for h, b in messages]
    signatures = key.signatures([u.data for u in todo])
    for (h, b), u, signature in zip(messages, todo, signatures, strict=True):
        made = u.header(signature)
        assert made == key.header(h, b, timestamp=7)  # PKCS#1 v1.5 and Ed25519: deterministic
        raw = made + "".join(f"{n}:{v}\r\n" for n, v in h).encode() + b"\r\n" + b
        assert verifies(raw, record)
    assert signatures[0] != signatures[1]


def test_relaxed_canonical_forms() -> None:
    assert relaxed_header("List-Id ", " Welcome\r\n\t <welcome.acme.example>  ") == (
        b"list-id:Welcome <welcome.acme.example>"
    )
    assert relaxed_body(b"a \t b  \r\n\r\n") == b"a b\r\n"
    # A lone tab, one at a line's end, a space at a line's end: each body takes its own path.
    assert relaxed_body(b"a\tb\r\n") == b"a b\r\n"
    assert relaxed_body(b"a\t\r\nb\r\n") == b"a\r\nb\r\n"
    assert relaxed_body(b"a b \r\nc\r\n") == b"a b\r\nc\r\n"
    assert relaxed_body(b"a b\r\n") == b"a b\r\n"
    assert relaxed_body(b"\r\n\r\n") == b""
    assert relaxed_body(b"") == b""
    assert relaxed_body(b"no line end") == b"no line end\r\n"


def test_a_pem_key_file_loads_and_an_ed25519_pem_works_too(tmp_path: Path) -> None:
    pem, _ = rsa_key()
    (tmp_path / "rsa.pem").write_bytes(pem)
    assert DkimKey.load(tmp_path / "rsa.pem", SELECTOR, DOMAIN).algorithm == "rsa-sha256"
    ed = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert DkimKey.from_bytes(ed, SELECTOR, DOMAIN).algorithm == "ed25519-sha256"


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"not a key at all", "neither a PEM private key nor an Ed25519 key"),
        (base64.b64encode(b"x" * 31), "neither a PEM private key nor an Ed25519 key"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a usable PEM"),
    ],
)
def test_a_key_that_cannot_sign_is_refused_with_the_reason(data: bytes, says: str) -> None:
    with pytest.raises(DkimKeyError, match=says):
        DkimKey.from_bytes(data, SELECTOR, DOMAIN)


def test_a_short_rsa_key_or_a_missing_file_is_refused(tmp_path: Path) -> None:
    # `cryptography` makes no key under 1024 bits; openssl still does.
    short = tmp_path / "short.pem"
    subprocess.run(
        ["openssl", "genrsa", "-out", str(short), "768"], check=True, capture_output=True
    )
    with pytest.raises(DkimKeyError, match="768 bits"):
        DkimKey.load(short, SELECTOR, DOMAIN)
    with pytest.raises(DkimKeyError, match="cannot read"):
        DkimKey.load(tmp_path / "missing.pem", SELECTOR, DOMAIN)
